"""One pipeline, one face detector, one running demo shared by many threads at once (the demo serves
several requests concurrently): every concurrent answer must be exactly the one a single caller gets,
and nothing a request does may leak into another's result or change process-wide settings."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import (
    EXAMPLE_PHOTO,
    RAVDESS,
    RAVDESS_CLIP,
    SHARED_DATA,
    TINY_CLIP,
    YUNET_640,
    needs_yunet,
    voice,
    write_video,
)

CKPLUS = SHARED_DATA / "ckplus_videos"
CREMA_D_CLIP = SHARED_DATA / "crema_d_samples" / "1001_DFA_HAP_XX.flv"
RAVDESS_HAPPY = RAVDESS / "audio_speech_actors_01-24" / "Actor_01" / "03-01-03-02-01-01-01.flac"
PHOTO_CLIPS = ("happiness_S052_004", "surprise_S074_002", "sadness_S106_002", "anger_S111_006", "fear_S124_003")
needs_media = pytest.mark.skipif(
    not (CKPLUS.is_dir() and CREMA_D_CLIP.is_file() and RAVDESS_CLIP.is_file() and RAVDESS_HAPPY.is_file()),
    reason=f"CK+ videos, CREMA-D clips or RAVDESS not found under {SHARED_DATA} (../shared absent)")
THREADS = 8


def _pipeline_kwargs() -> dict[str, Any]:
    return dict(scene=False, yunet_model=str(YUNET_640) if YUNET_640.is_file() else None)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Real inputs, short so that 8 threads finish quickly: the apex frame of five CK+ clips as PNG photos,
    the first second of a CREMA-D talking face (its own voice as an AAC track) and two RAVDESS clips."""
    import av

    from mmfer.audio.io import load_audio

    root = tmp_path_factory.mktemp("concurrency-media")
    photos = []
    for name in PHOTO_CLIPS:
        with av.open(str(CKPLUS / f"{name}.mp4")) as c:
            *_, apex = (f.to_ndarray(format="bgr24") for f in c.decode(video=0))
        photos.append(root / f"{name}.png")
        cv2.imwrite(str(photos[-1]), apex)
    with av.open(str(CREMA_D_CLIP)) as c:
        fps = round(float(c.streams.video[0].average_rate or 30))
        frames = []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="bgr24"))
            if len(frames) >= fps:  # one second
                break
    samples = load_audio(CREMA_D_CLIP).samples[:16_000]
    video = root / "1001_DFA_HAP_first_second.mp4"
    write_video(video, frames, fps=fps, audio=samples, audio_sr=16_000)
    return {"photos": photos, "video": video, "audio": [RAVDESS_CLIP, RAVDESS_HAPPY]}


def _answer(pipe: Any, path: Path) -> dict[str, Any]:
    d = pipe.analyze(path).to_dict()
    d.pop("timings_ms")
    return d


# -- the whole pipeline ---------------------------------------------------------------------------

@needs_media
def test_eight_threads_on_one_fresh_pipeline_get_the_single_thread_answers(media: dict[str, Any]) -> None:
    from mmfer.pipeline import EmotionPipeline

    files = [*media["photos"][:4], media["video"], media["audio"][0]]
    reference = EmotionPipeline(**_pipeline_kwargs())
    expected = {f: _answer(reference, f) for f in files}
    assert all(expected[f]["emotion"] for f in files), expected
    assert {"face", "temporal", "audio"} <= set(expected[media["video"]]["branches"]), expected[media["video"]]
    assert all(expected[f]["faces"] for f in files[:4])

    # every thread analyses every input, each in its own order
    orders = [files[i:] + files[:i] for i in range(len(files))] + [files[::-1], files[1::2] + files[::2]]
    assert len(orders) == THREADS and len({tuple(o) for o in orders}) == THREADS
    pipe = EmotionPipeline(**_pipeline_kwargs())  # fresh: its models load lazily while 8 threads already call it
    start = threading.Barrier(THREADS)

    def work(order: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
        start.wait()
        return [(f, _answer(pipe, f)) for f in order]

    with ThreadPoolExecutor(THREADS) as pool:
        results = [r for batch in pool.map(work, orders, timeout=600) for r in batch]
    assert len(results) == THREADS * len(files)
    for f, got in results:
        assert got == expected[f], f"{f.name}: a concurrent answer differs from the single-thread one"


# -- the face detector ------------------------------------------------------------------------------

def _sized_faces() -> list[np.ndarray]:
    """The example face at three image sizes (and so three detector input sizes)."""
    face = cv2.imread(str(EXAMPLE_PHOTO))
    wide = np.full((300, 400, 3), 90, np.uint8)
    wide[:, 50:350] = cv2.resize(face, (300, 300))
    small = np.full((300, 260, 3), 60, np.uint8)
    small[40:280, 10:250] = cv2.resize(face, (240, 240))
    return [wide, small, face]


@pytest.mark.parametrize("backend", ["haar", pytest.param("yunet", marks=needs_yunet)])
def test_one_detector_shared_by_threads_gives_the_sequential_boxes(backend: str) -> None:
    from mmfer.face.detect import FaceDetector

    det = FaceDetector(backend, model_path=YUNET_640 if backend == "yunet" else None)
    images = _sized_faces()
    expected = [det.detect(img) for img in images]
    assert all(len(e) == 1 for e in expected), expected
    start = threading.Barrier(len(images) * 2)

    def work(i: int) -> list[list[Any]]:
        start.wait()
        return [det.detect(images[i % len(images)]) for _ in range(15)]

    with ThreadPoolExecutor(len(images) * 2) as pool:
        for i, runs in enumerate(pool.map(work, range(len(images) * 2), timeout=300)):
            assert all(r == expected[i % len(images)] for r in runs), (i, runs[0], expected[i % len(images)])
    # each thread has its own OpenCV detector (created once, lazily), so they never share its input size
    own = threading.Barrier(2)

    def detector_object(_: int) -> tuple[int, int]:
        own.wait()
        return id(det._thread_yunet() if backend == "yunet" else det._thread_haar()), threading.get_ident()

    with ThreadPoolExecutor(2) as pool:
        objects = list(pool.map(detector_object, range(2)))
    assert objects[0][0] != objects[1][0]
    mine = det._thread_yunet() if backend == "yunet" else det._thread_haar()
    assert mine is (det._thread_yunet() if backend == "yunet" else det._thread_haar())


# -- per-call notes of the transformers audio branch --------------------------------------------------

def test_audio_notes_travel_with_their_call(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import hf_tiny

    from mmfer.hf.audio import HFAudioRecognizer

    # two of four labels name no mmfer emotion: a random head sends about half its probability there
    path = hf_tiny.speech_classifier(tmp_path / "cls", labels={0: "neu", 1: "hap", 2: "xyzzy", 3: "plugh"})
    rec = HFAudioRecognizer(str(path), device="cpu")
    x = voice(180.0, 1.5, vibrato=20.0)
    single = rec.predict_samples(x)
    lost = [n for n in single.notes if "no mmfer class" in n]
    assert len(lost) == 1 and "xyzzy" in lost[0], single.notes
    rec._score(x)  # a scoring started by another request (here left unfinished) ...
    silent = rec.predict_samples(np.zeros(8000, np.float32))
    assert not any("no mmfer class" in n for n in silent.notes), silent.notes  # ... leaves nothing behind
    with ThreadPoolExecutor(THREADS) as pool:
        notes = list(pool.map(lambda _: rec.predict_samples(x).notes, range(2 * THREADS)))
    assert all(n == single.notes for n in notes), notes


# -- CLIP from the local cache only, with no process-wide switch ---------------------------------------

def test_clip_local_only_reads_the_cache_without_global_switches(tiny_clip, tiny_clip_checkpoint: Path,  # noqa: ANN001
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants
    import open_clip
    from open_clip import pretrained as oc_pretrained

    from mmfer.scene.clip_encoder import ClipSceneEncoder, SceneEncoderUnavailable

    # a pretrained tag whose weights live on the hub, already in the local HF cache (as after one download)
    monkeypatch.setitem(oc_pretrained._PRETRAINED, TINY_CLIP, {"tiny": {
        "hf_hub": "mmfer-test/tiny-clip/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}})
    cache = tmp_path / "hub"
    repo = cache / "models--mmfer-test--tiny-clip"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(tiny_clip_checkpoint, repo / "snapshots" / commit / "open_clip_model.safetensors")

    root = logging.getLogger()
    before = (hub_constants.HF_HUB_OFFLINE, root.level, os.environ.get("HF_HUB_OFFLINE"))
    seen = []
    real = open_clip.create_model_and_transforms

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((hub_constants.HF_HUB_OFFLINE, root.level, os.environ.get("HF_HUB_OFFLINE")))
        return real(*args, **kwargs)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", spy)
    enc = ClipSceneEncoder(TINY_CLIP, pretrained="tiny", device="cpu", cache_dir=str(cache), local_only=True)
    assert seen == [before]  # offline by arguments, not by flipping HF_HUB_OFFLINE or the root logger's level
    ours, cached = enc.model.state_dict(), tiny_clip.model.state_dict()
    assert all(np.array_equal(ours[k].numpy(), cached[k].numpy()) for k in cached)  # the cached weights
    assert tuple(enc.model.visual.preprocess_cfg["mean"]) == (0.5, 0.5, 0.5)  # with the tag's preprocessing
    with pytest.raises(SceneEncoderUnavailable) as err:
        ClipSceneEncoder(TINY_CLIP, pretrained="tiny", device="cpu", cache_dir=str(tmp_path / "empty"), local_only=True)
    assert "'tiny'" in str(err.value) and "mmfer-test/tiny-clip" in str(err.value)
    assert "face and audio branches work" in str(err.value)
    assert (hub_constants.HF_HUB_OFFLINE, root.level, os.environ.get("HF_HUB_OFFLINE")) == before


# -- the demo: several users at once ------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A result without what differs between two runs on the same content: timings, and the path (gradio
    hands the handler its own copy of the upload)."""
    d = json.loads(json.dumps(doc))  # as it comes back through the API
    for k in ("timings_ms", "file"):
        d.pop(k, None)
    d.get("audio", {}).pop("source", None)
    d.get("video", {}).pop("video", None)
    return d


@needs_media
def test_eight_gradio_users_at_once_each_get_their_own_answer(media: dict[str, Any]) -> None:
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    from mmfer.demo.app import DemoHandlers, launch
    from mmfer.io.images import load_image
    from mmfer.pipeline import EmotionPipeline

    pipe = EmotionPipeline(max_video_s=20.0, **_pipeline_kwargs())
    jobs = ([("/analyze_image", p) for p in media["photos"]] + [("/analyze_audio", a) for a in media["audio"]]
            + [("/analyze_video", media["video"])])
    assert len(jobs) == THREADS
    expected = {}
    for api, f in jobs:  # the pipeline called directly on the same file
        if api == "/analyze_image":
            expected[f] = pipe.analyze_image(load_image(f), f.name).to_dict()
        else:
            expected[f] = pipe.analyze(f).to_dict()
            if api == "/analyze_video":
                expected[f].pop("audio")  # the video tab leaves the audio details out of its JSON
    assert len({json.dumps(_comparable(e)["fused"]) for e in expected.values()}) == THREADS  # all different

    # a session that loads other models gets its own pipeline; the shared one (every other user's) stays
    h = DemoHandlers(pipe)
    table, msg, mine = h.session_models("face_lite0", "", None)
    assert msg.startswith("Models loaded") and mine is not pipe and h.pipe is pipe

    port = _free_port()
    demo = launch(pipe, port=port, prevent_thread_lock=True, quiet=True, concurrency_limit=4)
    try:
        url = f"http://127.0.0.1:{port}/"
        start = threading.Barrier(THREADS)

        def run(job: tuple[str, Path]) -> tuple:
            client = Client(url, verbose=False)
            start.wait()
            return client.predict(handle_file(str(job[1])), api_name=job[0])

        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(run, jobs, timeout=300))
    finally:
        demo.close()
    for (api, f), out in zip(jobs, results, strict=True):
        doc, want = out[-1], expected[f]
        summary = out[-2]
        assert summary.startswith(f"**Fused: {want['emotion']}**"), (f.name, summary)
        assert _comparable(doc) == _comparable(want), f.name
        label = out[1] if api == "/analyze_image" else out[2] if api == "/analyze_video" else out[0]
        top = want["emotion"] if api != "/analyze_audio" else want["audio"]["emotion"]
        assert label["label"] == top, (f.name, label)
