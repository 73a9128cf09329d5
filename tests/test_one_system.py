"""One system: every registered branch builds from a spec and runs on decoded media; files are
recognised by content and opened once; the real CREMA-D talking-face clips (.flv) are analysed with
face, temporal and audio; a container whose video cannot be decoded still gets its audio analysed;
a file cut while it is read is named, never a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import cv2
import hf_tiny
import numpy as np
import pytest

from conftest import (
    EXAMPLE_PHOTO,
    RAVDESS_CLIP,
    SHARED_DATA,
    TINY_CLIP,
    YUNET_640,
    face_frames,
    needs_ravdess,
    voice,
    write_video,
)
from mmfer.branches import MODALITIES, Branch, BranchOutput, backend_for, create_branch, list_branches
from mmfer.cli.main import main
from mmfer.core.errors import ModelLoadError
from mmfer.emotions import EMOTIONS
from mmfer.io.media import AUDIO, IMAGE, VIDEO, open_media
from mmfer.pipeline import EmotionPipeline

CREMA = SHARED_DATA / "crema_d_samples"
needs_crema = pytest.mark.skipif(not (CREMA / "1001_DFA_ANG_XX.flv").is_file(),
                                 reason=f"CREMA-D samples not found at {CREMA} (../shared absent)")
DETECTOR = dict(detector="yunet", yunet_model=str(YUNET_640)) if YUNET_640.is_file() else {}


@pytest.fixture(scope="module")
def pipe() -> EmotionPipeline:
    return EmotionPipeline(scene=False, **DETECTOR)


def _check(out: BranchOutput, expect_embedding: bool = False) -> None:
    assert out.probs is not None and out.probs.shape == (len(EMOTIONS),) and out.probs.dtype == np.float64
    assert abs(out.probs.sum() - 1) < 1e-5 and (out.probs >= 0).all()
    assert out.emotion == EMOTIONS[int(out.probs.argmax())]
    assert (out.embedding is not None) == expect_embedding


# -- the registry ----------------------------------------------------------------------------------

def test_spec_routing_lives_in_the_registry(tmp_path: Path) -> None:
    assert {(e.modality, e.backend) for e in list_branches()} == {
        ("face", "mmfer"), ("face", "transformers"), ("audio", "mmfer"), ("audio", "transformers"),
        ("temporal", "mmfer"), ("scene", "open_clip"), ("scene", "transformers")}
    assert backend_for("face", None) == backend_for("face", "face_lite0") == "mmfer"
    assert backend_for("face", "trpakov/vit-face-expression") == backend_for("audio", "hf:org/x@v1") == "transformers"
    assert backend_for("scene", "ViT-B-32") == "open_clip" and backend_for("scene", "hf:openai/clip") == "transformers"
    hf_dir = hf_tiny.face_classifier(tmp_path / "vit")
    assert backend_for("face", hf_dir) == "transformers"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a model folder"):
        backend_for("face", tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown modality"):
        backend_for("smell", None)


def test_every_registered_branch_builds_and_runs(tmp_path: Path, tiny_clip, tiny_clip_checkpoint: Path) -> None:  # noqa: ANN001
    """Each (modality, backend) from a spec, predicting on decoded media (arrays, an opened track)."""
    photo = cv2.imread(str(EXAMPLE_PHOTO))
    samples = voice(180, 2.0, vibrato=30)
    built: dict[tuple[str, str], Branch] = {}
    face = create_branch("face", None, **DETECTOR)
    built[("face", "mmfer")] = face
    out = face.predict(photo)
    _check(out)
    assert len(out.details) == 1 and out.details[0].box is not None
    probs, emb = face.classify_crops(np.zeros((3, 48, 48), np.uint8), embed=True)
    assert probs.shape == (3, 7) and emb.shape == (3, face.recognizer.model.feat_dim)
    np.testing.assert_allclose(face.classify_crops(np.zeros((3, 48, 48), np.uint8))[0], probs, atol=1e-6)

    hf_face = create_branch("face", hf_tiny.face_classifier(tmp_path / "vit"), **DETECTOR)
    built[("face", "transformers")] = hf_face
    _check(hf_face.predict(photo))

    temporal = create_branch("temporal", None, face=face)
    built[("temporal", "mmfer")] = temporal
    seq = np.random.default_rng(0).normal(size=(12, face.recognizer.model.feat_dim)).astype(np.float32)
    _check(temporal.predict((seq, np.ones(12, bool))))
    assert temporal.predict((seq, np.zeros(12, bool))).probs is None  # no face to follow: skipped, not a crash

    audio = create_branch("audio", None)
    built[("audio", "mmfer")] = audio
    out = audio.predict(samples)
    _check(out)
    assert out.details.duration_s == pytest.approx(2.0)
    hf_audio = create_branch("audio", hf_tiny.speech_classifier(tmp_path / "w2v"))
    built[("audio", "transformers")] = hf_audio
    _check(hf_audio.predict(samples))

    scene = create_branch("scene", TINY_CLIP, clip_pretrained=str(tiny_clip_checkpoint), device="cpu")
    built[("scene", "open_clip")] = scene
    out = scene.predict(([photo, photo[:, ::-1]], [[], []]))
    _check(out, expect_embedding=True)
    assert out.details.shape == (2, 7)
    hf_scene = create_branch("scene", f"hf:{hf_tiny.clip(tmp_path / 'clip')}", device="cpu")
    built[("scene", "transformers")] = hf_scene
    _check(hf_scene.predict(([photo], [[]])), expect_embedding=True)

    assert set(built) == {(e.modality, e.backend) for e in list_branches()}
    for (modality, backend), b in built.items():
        assert isinstance(b, Branch) and b.modality == modality and b.backend.startswith(backend)
        assert b.modality in MODALITIES and b.name and b.classes and isinstance(b.card, dict)


def test_models_command_lists_the_registry(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for e in list_branches():
        assert f"{e.modality:8s} {e.backend}" in out
    assert "face/lite0" in out and "face_lite0" in out


# -- content, not names ----------------------------------------------------------------------------

def _encode(path: Path, fmt: str, codec: str, audio: str | None = None) -> Path:
    """A 1 s 128x96 clip (and a tone) in the given container, whatever the name says."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"  # (H.263 takes only its standard sizes)
        a = c.add_stream(audio, rate=16000) if audio else None
        if a is not None:
            a.layout = "mono"
        for i in range(10):
            img = np.full((96, 128, 3), 20 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            tone = voice(200, 1.0)
            step = a.codec_context.frame_size or 1024
            for i in range(0, len(tone), step):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[None, i : i + step]), format="fltp",
                                                layout="mono")
                fr.sample_rate = 16000
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def test_kind_comes_from_the_content(tmp_path: Path) -> None:
    jpeg_as_png = tmp_path / "photo.png"
    shutil.copy(EXAMPLE_PHOTO, jpeg_as_png)
    cases = {
        jpeg_as_png: IMAGE,
        _encode(tmp_path / "clip.dat", "mp4", "mpeg4", "aac"): VIDEO,
        _encode(tmp_path / "clip.mkv", "matroska", "mpeg4", "aac"): VIDEO,
        _encode(tmp_path / "clip.webm", "webm", "libvpx", "libopus"): VIDEO,
        _encode(tmp_path / "clip.3gp", "3gp", "h263"): VIDEO,
        _encode(tmp_path / "clip.flv", "flv", "flv"): VIDEO,
    }
    import soundfile as sf

    sf.write(tmp_path / "speech.mp4", voice(200, 1.0), 16000, format="WAV")  # a WAV named .mp4
    cases[tmp_path / "speech.mp4"] = AUDIO
    for path, kind in cases.items():
        with open_media(path) as m:
            assert m.kind == kind, path.name
            assert (m.container is not None) == (m.reader == "av"), path.name
    (tmp_path / "notes.txt").write_text("hello\n" * 50)
    with open_media(tmp_path / "notes.txt") as m:  # nothing recognises it: the name decides who explains
        assert m.by_suffix and m.kind == IMAGE


def test_lying_extensions_are_analysed_by_content(pipe: EmotionPipeline, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    frames = face_frames(10)
    video = tmp_path / "talk.mp4"
    write_video(video, frames, fps=10, audio=voice(170, 1.0, vibrato=20), audio_sr=16000)
    shutil.copy(video, tmp_path / "talk.dat")
    shutil.copy(EXAMPLE_PHOTO, tmp_path / "photo.png")
    (tmp_path / "fake.jpg").write_text("not a photo at all")
    code = main(["analyze", str(tmp_path / "talk.dat"), str(tmp_path / "photo.png"), str(tmp_path / "fake.jpg"),
                 "--no-scene", "--json", *sum(([f"--{k.replace('_', '-')}", v] for k, v in DETECTOR.items()), [])])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == 1  # one bad file: named on stderr, the others analysed
    assert "fake.jpg" in captured.err and len(captured.err.strip().splitlines()) == 1
    kinds = {Path(r["file"]).name: r["kind"] for r in doc["results"] if "kind" in r}
    assert kinds == {"talk.dat": "video", "photo.png": "image"}
    dat = next(r for r in doc["results"] if r["file"].endswith("talk.dat"))
    assert {"face", "audio"} <= set(dat["branches"])


# -- each file opened once -------------------------------------------------------------------------

def test_a_video_is_opened_once_and_each_crop_runs_once(pipe: EmotionPipeline, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    video = tmp_path / "talk.mp4"
    write_video(video, face_frames(12), fps=10, audio=voice(170, 1.2, vibrato=20), audio_sr=16000)
    expected = pipe.analyze(video).to_dict()  # warm: models loaded
    opens: list[str] = []
    real_open = av.open

    def counting_open(file, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        opens.append(str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(av, "open", counting_open)
    face = pipe.require("face")
    calls: list[int] = []
    real_classify = type(face.recognizer).classify_crops

    def counting_classify(self, crops, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(len(crops))
        return real_classify(self, crops, *a, **k)

    monkeypatch.setattr(type(face.recognizer), "classify_crops", counting_classify)
    got = pipe.analyze(video).to_dict()
    assert opens == [str(video)]  # one container open for header, frames and audio
    assert sum(calls) == got["video"]["frames_with_face"]  # one forward pass per face crop
    for d in (expected, got):
        d.pop("timings_ms")
    assert got == expected
    assert {"face", "temporal", "audio"} <= set(got["branches"])


# -- real audio-visual clips -----------------------------------------------------------------------

@needs_crema
def test_crema_d_flv_clips_use_face_temporal_and_audio(pipe: EmotionPipeline) -> None:
    clips = sorted(CREMA.glob("*.flv"))
    assert len(clips) == 6
    hits = 0
    for clip in clips:
        d = pipe.analyze(clip).to_dict()
        assert d["kind"] == "video", clip.name
        assert {"face", "temporal", "audio"} <= set(d["branches"]), (clip.name, d["skipped"])
        assert d["video"]["frames_with_face"] >= 0.8 * d["video"]["frames_used"] > 0
        assert d["audio"]["duration_s"] > 1.0 and d["fused"] is not None
        hits += d["emotion"] == {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral",
                                 "SAD": "sad"}[clip.stem.split("_")[2]]
    assert hits >= 2  # six acted clips of one unseen actor: a sanity floor, not a benchmark


@needs_crema
def test_crema_d_mp3_is_audio_by_content(pipe: EmotionPipeline, tmp_path: Path) -> None:
    src = CREMA / "1002_DFA_ANG_XX.mp3"
    renamed = tmp_path / "voice.bin"
    shutil.copy(src, renamed)
    a, b = pipe.analyze(src).to_dict(), pipe.analyze(renamed).to_dict()
    assert a["kind"] == b["kind"] == "audio" and a["branches"] == b["branches"]


# -- damaged containers ----------------------------------------------------------------------------

def test_undecodable_video_with_good_audio_still_gets_its_audio(pipe: EmotionPipeline, tmp_path: Path) -> None:
    good = tmp_path / "talk.mp4"
    write_video(good, face_frames(10), fps=10, audio=voice(170, 1.5, vibrato=20), audio_sr=16000)
    bad = tmp_path / "garbled.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(good)) as src, av.open(str(bad), "w") as out:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        vo, ao = out.add_stream_from_template(vin), out.add_stream_from_template(ain)
        for pkt in src.demux(vin, ain):
            if pkt.dts is None:
                continue
            if pkt.stream is vin:  # same timing, random bytes: no frame can be decoded
                junk = av.Packet(rng.integers(0, 256, pkt.size, dtype=np.uint8).tobytes())
                junk.pts, junk.dts, junk.time_base, junk.stream = pkt.pts, pkt.dts, pkt.time_base, vo
                out.mux(junk)
            else:
                pkt.stream = ao
                out.mux(pkt)
    ref = pipe.analyze(good).to_dict()
    d = pipe.analyze(bad).to_dict()
    assert d["kind"] == "video" and set(d["branches"]) == {"audio"}
    assert "video unreadable" in d["skipped"]["face"] and "decodable" in d["skipped"]["face"]
    assert any("the audio track was analysed on its own" in n for n in d["notes"])
    assert d["branches"]["audio"] == ref["branches"]["audio"]


def test_a_file_cut_while_it_is_read_is_named(pipe: EmotionPipeline, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The file shrinks between being opened and being decoded (a copy still running, a sync tool):
    one line or a note naming it, never a traceback; the batch goes on."""
    import mmfer.pipeline as pipeline_mod

    video = tmp_path / "growing.mp4"
    write_video(video, face_frames(40), fps=10, audio=voice(170, 4.0), audio_sr=16000)
    photo = tmp_path / "photo.jpg"
    shutil.copy(EXAMPLE_PHOTO, photo)
    real = pipeline_mod.open_media

    def open_then_cut(path):  # noqa: ANN001, ANN202
        m = real(path)
        if Path(path).parent == tmp_path:  # only the copies: the shipped example stays whole
            with open(path, "r+b") as f:
                f.truncate(max(64, Path(path).stat().st_size // 3))
        return m

    monkeypatch.setattr(pipeline_mod, "open_media", open_then_cut)
    code = main(["analyze", str(video), str(photo), str(EXAMPLE_PHOTO), "--no-scene", "--json",
                 *sum(([f"--{k.replace('_', '-')}", v] for k, v in DETECTOR.items()), [])])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "Traceback" not in captured.err and code in (0, 1)
    by_name = {Path(r["file"]).name: r for r in doc["results"]}
    assert by_name["astronaut.jpg"]["kind"] == "image"  # the batch went on
    for name in ("growing.mp4", "photo.jpg"):
        r = by_name[name]
        named = name in captured.err or any("truncated" in n or "corrupt" in n for n in r.get("notes", []))
        assert named, (name, r, captured.err)


@needs_ravdess
def test_audio_by_content_matches_the_audio_branch(pipe: EmotionPipeline) -> None:
    d = pipe.analyze(RAVDESS_CLIP).to_dict()
    out = pipe.audio(RAVDESS_CLIP)
    assert d["kind"] == "audio" and d["branches"]["audio"]["probabilities"] == {
        e: round(float(p), 4) for e, p in zip(EMOTIONS, out.probs, strict=True)}
