"""The one-call pipeline on real files of every kind: a photo (one face, ten faces), an audio
clip, an audio-only container, a video with face and voice, a video with a voice and no face;
branches that are unavailable are reported, and the fused result decomposes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import EXAMPLE_PHOTO, TINY_CLIP, YUNET_640, face_frames, needs_yunet, voice, write_video
from mmfer.emotions import EMOTIONS
from mmfer.pipeline import EmotionPipeline


@pytest.fixture(scope="module")
def pipe() -> EmotionPipeline:
    detector = dict(detector="yunet", yunet_model=str(YUNET_640)) if YUNET_640.is_file() else {}
    return EmotionPipeline(**detector)


def _check_fused(doc: dict) -> None:
    fused = doc["fused"]
    scores = np.array([fused["prior"]["log_prior"][e] for e in EMOTIONS])
    for c in fused["contributions"].values():
        scores = scores + np.array([c[e] for e in EMOTIONS])
    z = np.exp(scores - scores.max())
    probs = np.array([fused["probabilities"][e] for e in EMOTIONS])
    np.testing.assert_allclose(z / z.sum(), probs, atol=2e-3)  # rounded to 4 decimals in JSON
    assert fused["emotion"] == EMOTIONS[int(probs.argmax())]
    assert set(fused["modalities"]) == set(doc["branches"])


def test_photo_without_clip_weights(pipe: EmotionPipeline) -> None:
    a = pipe.analyze(EXAMPLE_PHOTO)
    doc = json.loads(json.dumps(a.to_dict()))
    assert doc["kind"] == "image" and len(doc["faces"]) == 1 and list(doc["branches"]) == ["face"]
    assert "unavailable offline" in doc["skipped"]["scene"] and doc["skipped"]["audio"] == "not in a still image"
    # With the face alone and no fusion card for other data, the fused result is the face's.
    assert doc["emotion"] == doc["faces"][0]["emotion"] == doc["branches"]["face"]["emotion"]
    _check_fused(doc)
    assert doc["timings_ms"]["face"] > 0
    status = pipe.status()
    assert status["face"]["available"] and not status["scene"]["available"] and status["audio"]["available"]


def test_ten_faces_each_get_their_own_fusion(pipe: EmotionPipeline, tiny_clip, tiny_clip_checkpoint: Path) -> None:  # noqa: ANN001
    face = cv2.resize(cv2.imread(str(EXAMPLE_PHOTO)), (160, 160))
    img = np.full((2 * 200, 5 * 200, 3), 90, np.uint8)
    for i in range(10):
        y, x = 20 + 200 * (i // 5), 20 + 200 * (i % 5)
        img[y : y + 160, x : x + 160] = face
    scene = EmotionPipeline(detector=pipe.opts["detector"], yunet_model=pipe.opts["yunet_model"],
                            clip_model=TINY_CLIP, clip_pretrained=str(tiny_clip_checkpoint))
    a = scene.analyze_image(img, "ten.png")
    doc = a.to_dict()
    assert len(doc["faces"]) == 10 and "10 faces" in doc["notes"][0]
    assert set(doc["branches"]) == {"face", "scene"} and "scene" not in doc["skipped"]
    for f in doc["faces"]:
        assert set(f["fused"]["contributions"]) == {"face", "scene"}
        # The same scene term is added to every face.
        assert f["fused"]["contributions"]["scene"] == doc["faces"][0]["fused"]["contributions"]["scene"]
    _check_fused(doc)


def test_audio_clip_and_audio_only_container(pipe: EmotionPipeline, tmp_path: Path) -> None:
    import soundfile as sf

    wav = tmp_path / "hello.wav"
    sf.write(wav, voice(180, 2.0, vibrato=20), 16000)
    doc = pipe.analyze(wav).to_dict()
    assert doc["kind"] == "audio" and list(doc["branches"]) == ["audio"] and doc["audio"]["emotion"]
    assert doc["skipped"]["face"] == "not in an audio clip"
    _check_fused(doc)
    m4a = tmp_path / "voice.mp4"  # an .mp4 that holds only sound
    import av

    with av.open(str(m4a), "w") as c:
        st = c.add_stream("aac", rate=16000)
        st.layout = "mono"
        x = voice(200, 1.5)
        for i in range(0, len(x), 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, i : i + 1024]), format="fltp",
                                            layout="mono")
            fr.sample_rate = 16000
            for p in st.encode(fr):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    assert pipe.analyze(m4a).kind == "audio"


@needs_yunet
def test_video_with_face_and_voice(pipe: EmotionPipeline, tmp_path: Path) -> None:
    path = tmp_path / "talk.mp4"
    write_video(path, face_frames(20), fps=10, audio=voice(200, 2.0, sr=44100, vibrato=15))
    a = pipe.analyze(path)
    doc = a.to_dict()
    assert doc["kind"] == "video" and set(doc["branches"]) == {"face", "temporal", "audio"}
    assert "unavailable offline" in doc["skipped"]["scene"]
    assert doc["video"]["frames_used"] == 20 and doc["video"]["temporal"]["model"] == "video_bigru_ckplus"
    assert len(a.timeline.key_frames) == 3 and all(k.boxes for k in a.timeline.key_frames)
    _check_fused(doc)
    assert set(doc["timings_ms"]) >= {"face+temporal", "audio", "fusion"}


@needs_yunet
def test_video_with_a_voice_and_no_face(pipe: EmotionPipeline, tmp_path: Path) -> None:
    path = tmp_path / "dark.mp4"
    write_video(path, [np.full((240, 320, 3), 30, np.uint8)] * 15, audio=voice(150, 1.5, sr=44100))
    doc = pipe.analyze(path).to_dict()
    assert list(doc["branches"]) == ["audio"] and doc["skipped"]["face"] == "no face found in any sampled frame"
    assert doc["skipped"]["temporal"] == "no face to follow"
    assert doc["fused"]["modalities"] == ["audio"] and doc["emotion"] == doc["branches"]["audio"]["emotion"]


def test_bad_inputs_are_named(pipe: EmotionPipeline, tmp_path: Path) -> None:
    from mmfer.io.images import ImageLoadError
    from mmfer.video.io import VideoLoadError

    txt = tmp_path / "notes.jpg"
    txt.write_text("hello")
    with pytest.raises(ImageLoadError, match="notes.jpg"):
        pipe.analyze(txt)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 50)
    with pytest.raises(VideoLoadError, match="broken.mp4"):
        pipe.analyze(bad)
    long = EmotionPipeline(max_video_s=1.0, temporal=False, scene=False)
    path = tmp_path / "long.mp4"
    write_video(path, [np.zeros((64, 64, 3), np.uint8)] * 30)
    with pytest.raises(VideoLoadError, match="longer than the 1 s allowed"):
        long.analyze(path)
