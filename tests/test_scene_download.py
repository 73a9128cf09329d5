"""The scene branch downloads its CLIP weights on first use, and offline mode downloads nothing.

A local stand-in for the Hugging Face hub (HEAD/GET of ``/{repo}/resolve/{revision}/{file}``, the
headers huggingface_hub checks) serves a tiny randomly initialised open_clip model; the HF cache is a
temporary folder, so nothing here touches the network or the user's cache.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import EXAMPLE_PHOTO, TINY_CLIP
from mmfer.emotions import EMOTIONS
from mmfer.pipeline import EmotionPipeline
from mmfer.scene.clip_encoder import ClipSceneEncoder, SceneEncoderUnavailable, _size

REPO_ID = "mmfer-test/tiny-clip-hub"
HF_HUB_MODEL = f"hf-hub:{REPO_ID}"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
NOTICE = "mmfer: the scene (CLIP) branch downloads"


class FakeHub:
    """Just enough of the hub's file API for ``hf_hub_download``; records every request."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path.split("?")[0])
                data = hub.files.get(m[3]) if m and m[1] == REPO_ID else None
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound" if m and m[1] == REPO_ID else "RepoNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._reply(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._reply(body=True)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def tiny_files(tiny_clip: ClipSceneEncoder) -> dict[str, bytes]:  # noqa: ANN001
    """conftest's tiny CLIP as a hub repository: open_clip_config.json + open_clip_model.safetensors."""
    import open_clip
    from safetensors.torch import save

    config = {"model_cfg": open_clip.get_model_config(TINY_CLIP),
              "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    weights = save({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()})
    return {"open_clip_config.json": json.dumps(config).encode(), "open_clip_model.safetensors": weights}


@pytest.fixture
def hub(tiny_files: dict[str, bytes]) -> Iterator[FakeHub]:
    fake = FakeHub(tiny_files)
    threading.Thread(target=fake.server.serve_forever, daemon=True).start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache (huggingface_hub read HF_HOME at import: its constant is what it uses) and an empty
    mmfer cache (no YuNet), and the hub endpoint pointed at nothing until a test serves one."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("MMFER_CACHE", str(tmp_path / "mmfer-cache"))
    monkeypatch.delenv("MMFER_YUNET_MODEL", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return cache


@pytest.fixture
def online(hub: FakeHub, hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """Downloads allowed (conftest turns offline mode on for the session), from the fake hub."""
    monkeypatch.delenv("MMFER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("MMFER_HF_ENDPOINT", hub.url)
    return hub


def _refuse_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every connection attempt from this process from now on is recorded and refused."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("test: no network connection allowed here")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    return _refuse_connections(monkeypatch)


def _photo() -> np.ndarray:
    return cv2.imread(str(EXAMPLE_PHOTO))


def _notices(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(NOTICE)]


def _scene_probs(pipe: EmotionPipeline) -> np.ndarray:
    probs = pipe.scene([_photo()]).probs
    assert probs.shape == (len(EMOTIONS),) == (7,) and abs(float(probs.sum()) - 1) < 1e-5
    return probs


def test_first_use_downloads_with_one_notice_then_offline_reads_the_cache(
        online: FakeHub, hf_cache: Path, tiny_files: dict[str, bytes], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # (a) first use: one notice line with the size, then the download into the HF cache
    pipe = EmotionPipeline(clip_model=HF_HUB_MODEL, temporal=False, detector="haar")
    first = _scene_probs(pipe)
    methods = [m for m, _ in online.requests]
    assert methods.count("GET") == 2 and set(methods) == {"HEAD", "GET"}  # config and weights, once each
    (notice,) = _notices(capsys.readouterr().err)
    size = _size(sum(len(b) for b in tiny_files.values()))
    assert "open_clip_config.json, open_clip_model.safetensors" in notice and f"({size})" in notice
    assert f"from {online.url}/{REPO_ID}" in notice and str(hf_cache) in notice
    assert "--offline / MMFER_OFFLINE=1" in notice
    assert (hf_cache / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT
            / "open_clip_model.safetensors").is_file()
    assert pipe.status()["scene"]["available"]

    # (b) from the cache, offline: no request, no connection, no notice, the same probabilities
    online.requests.clear()
    monkeypatch.setenv("MMFER_OFFLINE", "1")
    attempts = _refuse_connections(monkeypatch)
    again = EmotionPipeline(clip_model=HF_HUB_MODEL, temporal=False, detector="haar")
    np.testing.assert_allclose(_scene_probs(again), first, atol=1e-6)
    assert online.requests == [] and attempts == [] and _notices(capsys.readouterr().err) == []


def test_a_pretrained_tag_on_the_hub_downloads_its_weights_file(online: FakeHub, tiny_clip: ClipSceneEncoder,
                                                                tiny_files: dict[str, bytes],
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The default ViT-B-32 / laion2b_s34b_b79k is such a tag: a built-in model, its weights in a hub repo."""
    from open_clip import pretrained as oc_pretrained

    monkeypatch.setitem(oc_pretrained._PRETRAINED, TINY_CLIP, {"tiny": {"hf_hub": f"{REPO_ID}/"}})
    enc = ClipSceneEncoder(TINY_CLIP, pretrained="tiny", device="cpu")
    (notice,) = _notices(capsys.readouterr().err)
    size = _size(len(tiny_files["open_clip_model.safetensors"]))
    assert f"{TINY_CLIP}/tiny once: open_clip_model.safetensors ({size})" in notice
    assert {p.rsplit("/", 1)[-1] for _, p in online.requests} == {"open_clip_model.safetensors"}
    ours, want = enc.model.state_dict(), tiny_clip.model.state_dict()
    assert all(np.array_equal(ours[k].numpy(), want[k].numpy()) for k in want)
    online.requests.clear()
    ClipSceneEncoder(TINY_CLIP, pretrained="tiny", device="cpu")  # cached now: the hub is not asked again
    assert online.requests == [] and _notices(capsys.readouterr().err) == []


def test_offline_with_an_empty_cache_connects_nowhere_and_the_face_still_works(
        hub: FakeHub, hf_cache: Path, monkeypatch: pytest.MonkeyPatch, no_sockets: list[Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MMFER_OFFLINE", "1")
    monkeypatch.setenv("MMFER_HF_ENDPOINT", hub.url)  # would be asked if anything tried
    pipe = EmotionPipeline(clip_model=HF_HUB_MODEL, temporal=False)  # detector auto: no YuNet download either
    status = pipe.status()
    reason = status["scene"]["reason"]
    assert not status["scene"]["available"] and "\n" not in reason
    assert reason.startswith(f"unavailable offline: no CLIP weights for {HF_HUB_MODEL} in the local cache"), reason
    assert "run once without --offline" in reason
    a = pipe.analyze_image(_photo(), "astronaut.jpg")
    assert len(a.faces) == 1 and a.emotion in EMOTIONS and a.skipped["scene"] == reason
    assert "offline" in pipe.detector.fallback_reason  # Haar, because YuNet was not downloaded
    default = EmotionPipeline(temporal=False, detector="haar").status()["scene"]["reason"]
    assert default.startswith("unavailable offline: no CLIP weights for ViT-B-32/laion2b_s34b_b79k in the local "
                              "cache"), default
    assert "--clip-pretrained FILE" in default
    assert hub.requests == [] and no_sockets == [] and _notices(capsys.readouterr().err) == []


def test_explicit_offline_argument_wins_over_the_environment(online: FakeHub, no_sockets: list[Any]) -> None:
    pipe = EmotionPipeline(clip_model=HF_HUB_MODEL, temporal=False, offline=True)
    assert pipe.status()["scene"]["reason"].startswith("unavailable offline")
    assert pipe.detector.backend == "haar"  # no YuNet download either
    assert online.requests == [] and no_sockets == []


def test_cli_offline_flag(online: FakeHub, no_sockets: list[Any], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mmfer.cli.main import main

    for var in ("MMFER_OFFLINE", "HF_HUB_OFFLINE"):  # main() sets both in os.environ: recorded here, undone after
        monkeypatch.setenv(var, "0")
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), _photo())
    code = main(["analyze", str(photo), "--offline", "--clip-model", HF_HUB_MODEL, "--no-temporal", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    reason = doc["branches"]["scene"]["reason"]
    assert not doc["branches"]["scene"]["available"] and reason.startswith("unavailable offline: no CLIP weights")
    assert doc["results"][0]["skipped"]["scene"] == reason and doc["results"][0]["faces"]
    code = main(["scene", str(photo), "--clip-model", HF_HUB_MODEL, "--hf-offline"])  # the old name
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "unavailable offline" in err[0], err
    assert online.requests == [] and no_sockets == []


def test_a_failed_download_leaves_the_scene_unavailable_with_one_line(hf_cache: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("MMFER_OFFLINE", raising=False)
    monkeypatch.setenv("MMFER_HF_ENDPOINT", f"http://127.0.0.1:{port}")
    pipe = EmotionPipeline(clip_model=HF_HUB_MODEL, temporal=False, detector="haar")
    with pytest.raises(SceneEncoderUnavailable) as err:
        pipe.scene([_photo()])
    msg = str(err.value)
    assert f"could not be downloaded from http://127.0.0.1:{port}/{REPO_ID}" in msg and "\n" not in msg
    assert pipe.analyze_image(_photo()).faces  # everything else runs
