"""mmfer.face.detect on real photos (skimage), with both backends, plus the YuNet download path."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from conftest import YUNET_640 as YUNET
from conftest import iou, needs_yunet
from mmfer.face import detect as det_mod
from mmfer.face.detect import (
    YUNET_FILE,
    DetectorUnavailableError,
    Face,
    FaceDetector,
    crop_faces,
    eye_angle,
    yunet_model_path,
)

BACKENDS = ["haar", pytest.param("yunet", marks=needs_yunet)]


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return _bgr(data.astronaut())  # 512x512; the face spans about x 178-270, y 65-176


@pytest.fixture(scope="module")
def detectors() -> dict[str, FaceDetector]:
    out = {"haar": FaceDetector("haar")}
    if YUNET.is_file():
        out["yunet"] = FaceDetector("yunet", model_path=YUNET)
    return out


def _contains(box: tuple[int, int, int, int], x: float, y: float) -> bool:
    return box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]


# --------------------------------------------------------------------------- detection

@pytest.mark.parametrize("backend", BACKENDS)
def test_astronaut_has_exactly_one_face(backend: str, detectors: dict[str, FaceDetector], astronaut: np.ndarray):
    d = detectors[backend]
    assert d.backend == backend and d.fallback_reason is None
    faces = d.detect(astronaut)
    assert len(faces) == 1
    f = faces[0]
    x, y, w, h = f.box
    assert all(isinstance(v, int) for v in f.box)
    assert 0.7 <= f.score < 1.0
    for px, py in ((205, 105), (245, 105), (225, 128), (205, 143), (243, 143)):  # eyes, nose, mouth corners
        assert _contains(f.box, px, py), (f.box, px, py)
    assert 160 <= x <= 195 and 45 <= y <= 85 and 75 <= w <= 125 and 75 <= h <= 140, f.box
    if backend == "yunet":
        lm = f.landmarks
        assert lm is not None and lm.shape == (5, 2)
        assert lm[0, 0] < lm[2, 0] < lm[1, 0]  # subject's right eye on the image's left, nose between
        assert lm[0, 1] < lm[2, 1] < lm[3, 1]  # eyes above nose above mouth
        assert abs(eye_angle(lm)) < 5
    else:
        assert f.landmarks is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("photo", ["coffee", "rocket", "chelsea"])
def test_photos_without_faces(backend: str, photo: str, detectors: dict[str, FaceDetector]):
    assert detectors[backend].detect(_bgr(getattr(data, photo)())) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic(backend: str, detectors: dict[str, FaceDetector], astronaut: np.ndarray):
    d = detectors[backend]
    first, second = d.detect(astronaut), d.detect(astronaut.copy())
    assert first == second and len(first) == 1
    assert np.array_equal(crop_faces(astronaut, first), crop_faces(astronaut, second))
    fresh = FaceDetector(backend, model_path=YUNET if backend == "yunet" else None)
    assert fresh.detect(astronaut) == first


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_faces_sorted(backend: str, detectors: dict[str, FaceDetector], astronaut: np.ndarray):
    face = astronaut[30:230, 120:320]
    pair = np.ascontiguousarray(np.hstack([face, face[:, ::-1]]))  # the face and its mirror image
    faces = detectors[backend].detect(pair)
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    assert sorted(f.box[0] < 200 for f in faces) == [False, True]  # one in each half


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_image_boxes_mapped_back(backend: str, detectors: dict[str, FaceDetector], astronaut: np.ndarray):
    d = detectors[backend]
    small = d.detect(astronaut)[0].box
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_LINEAR)  # detected at 640: 0.3125x
    faces = d.detect(big)
    assert len(faces) == 1
    assert iou(faces[0].box, tuple(4 * v for v in small)) > 0.7
    if faces[0].landmarks is not None:
        assert _contains(faces[0].box, *faces[0].landmarks[2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_grey_and_bgra_input(backend: str, detectors: dict[str, FaceDetector], astronaut: np.ndarray):
    d = detectors[backend]
    ref = d.detect(astronaut)[0].box
    assert iou(d.detect(cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA))[0].box, ref) > 0.99
    grey = d.detect(cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY))
    assert len(grey) == 1 and iou(grey[0].box, ref) > 0.7
    with pytest.raises(ValueError, match="uint8"):
        d.detect(astronaut.astype(np.float32))
    assert d.detect(np.zeros((0, 0, 3), np.uint8)) == []


@needs_yunet
def test_yunet_letterbox_mode_agrees(astronaut: np.ndarray):
    d = FaceDetector("yunet", model_path=YUNET)
    ref = d.detect(astronaut)[0]
    d._reshapeable = False  # what a truly fixed 640x640 model gets: letterbox + map back
    lb = d.detect(astronaut)
    assert len(lb) == 1 and iou(lb[0].box, ref.box) > 0.7
    assert np.abs(lb[0].landmarks - ref.landmarks).max() < 10


def test_face_to_dict_is_json():
    f = Face((1, 2, 3, 4), 0.912345, np.arange(10, dtype=np.float32).reshape(5, 2))
    d = json.loads(json.dumps(f.to_dict()))
    assert d == {"box": [1, 2, 3, 4], "score": 0.9123, "landmarks": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]}
    assert Face((1, 2, 3, 4), 0.5).to_dict()["landmarks"] is None


# --------------------------------------------------------------------------- crops

def test_crop_at_border_pads_instead_of_shrinking():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    pad = 80
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    lm = np.array([[10, 12], [30, 18], [20, 25], [12, 35], [28, 38]], np.float32)
    for face in (Face((0, 0, 40, 44), 0.9), Face((0, 0, 40, 44), 0.9, lm), Face((90, 70, 30, 30), 0.9)):
        shifted = Face((face.box[0] + pad, face.box[1] + pad, *face.box[2:]), face.score,
                       None if face.landmarks is None else face.landmarks + pad)
        a, b = crop_faces(img, [face]), crop_faces(padded, [shifted])
        assert a.shape == (1, 48, 48) and a.dtype == np.uint8
        assert np.abs(a.astype(int) - b).max() <= 1  # same scale and centre as if the image went on


def test_crop_shapes_and_empty(astronaut: np.ndarray):
    assert crop_faces(astronaut, []).shape == (0, 48, 48)
    faces = [Face((178, 65, 91, 111), 0.9), Face((10, 10, 20, 20), 0.8)]
    out = crop_faces(astronaut, faces, size=64, margin=0.0)
    assert out.shape == (2, 64, 64) and out.dtype == np.uint8
    grey = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(crop_faces(grey, faces, size=64, margin=0.0), out)
    # margin 0, no rotation: the crop is the box's square (111 px tall) resized
    ref = cv2.resize(grey[65:176, 168:279], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(out[0].astype(int) - ref).mean() < 3


@needs_yunet
def test_face_touching_the_border_gives_full_crop(detectors: dict[str, FaceDetector], astronaut: np.ndarray):
    cut = np.ascontiguousarray(astronaut[:, 200:])  # the face's left third is outside
    faces = detectors["yunet"].detect(cut)
    assert len(faces) == 1 and faces[0].box[0] == 0
    crop = crop_faces(cut, faces)
    assert crop.shape == (1, 48, 48)
    assert crop[0].std() > 20  # real content, not a flat pad


def test_alignment_levels_the_eyes():
    img = np.full((200, 200), 40, np.uint8)
    eyes = np.array([[80.0, 110.0], [120.0, 90.0]])  # tilted by atan2(-20, 40) = -26.6 degrees
    for x, y in eyes:
        cv2.circle(img, (int(x), int(y)), 4, 255, -1)
    lm = np.vstack([eyes, [[100, 110], [85, 130], [115, 120]]]).astype(np.float32)
    face = Face((60, 60, 80, 80), 0.9, lm)
    assert eye_angle(lm) == pytest.approx(-26.565, abs=1e-3)
    for align, level in ((True, True), (False, False)):
        crop = crop_faces(img, [face], size=96, margin=0.0, align=align)[0]
        blobs = cv2.connectedComponentsWithStats((crop > 150).astype(np.uint8))[3][1:]
        assert len(blobs) == 2
        dy = abs(blobs[0][1] - blobs[1][1])
        assert (dy < 1.5) == level, (align, blobs)


@needs_yunet
def test_alignment_on_rotated_photo(detectors: dict[str, FaceDetector], astronaut: np.ndarray):
    d = detectors["yunet"]
    upright = d.detect(astronaut)
    m = cv2.getRotationMatrix2D((224, 120), 20, 1.0)  # counter-clockwise by 20 degrees about the face
    rotated = cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    faces = d.detect(rotated)
    assert len(faces) == 1
    # The eye line tilts the right way; YuNet-n's landmarks under-read tilt (about -10 for -19 here).
    assert -25 < eye_angle(faces[0].landmarks) < -5
    ref = crop_faces(astronaut, upright).astype(int)
    aligned = np.abs(crop_faces(rotated, faces, align=True).astype(int) - ref).mean()
    unaligned = np.abs(crop_faces(rotated, faces, align=False).astype(int) - ref).mean()
    assert aligned < 0.8 * unaligned


# --------------------------------------------------------------------------- model lookup and download

def test_bad_arguments_and_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MMFER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="unknown face detector backend"):
        FaceDetector("mtcnn")
    missing = tmp_path / "nope.onnx"
    with pytest.raises(DetectorUnavailableError, match="nope.onnx"):
        FaceDetector("yunet", model_path=missing)
    d = FaceDetector("auto", model_path=missing)
    assert d.backend == "haar" and "not found" in d.fallback_reason
    monkeypatch.setenv("MMFER_YUNET_MODEL", str(missing))
    assert FaceDetector("auto").fallback_reason == f"YuNet model {missing} ($MMFER_YUNET_MODEL) not found"
    monkeypatch.delenv("MMFER_YUNET_MODEL")
    d = FaceDetector("auto", download=False)
    assert d.backend == "haar" and "download disabled" in d.fallback_reason
    assert yunet_model_path(download=False) is None


@needs_yunet
def test_model_from_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MMFER_YUNET_MODEL", str(YUNET))
    assert yunet_model_path() == YUNET
    d = FaceDetector()
    assert d.backend == "yunet" and d.model_path == YUNET and d.fallback_reason is None


@contextmanager
def _serve(directory: Path) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MMFER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MMFER_YUNET_MODEL", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    monkeypatch.setattr(det_mod, "_failed_downloads", {})
    monkeypatch.delenv("MMFER_OFFLINE", raising=False)  # conftest's offline mode forbids these downloads
    return tmp_path / "cache" / "models" / "yunet"


@needs_yunet
def test_download_verifies_caches_and_uses(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                           astronaut: np.ndarray):
    served = tmp_path / "www"
    served.mkdir()
    shutil.copy(YUNET, served / "model.onnx")
    with _serve(served) as url:
        monkeypatch.setenv("MMFER_YUNET_URL", f"{url}/model.onnx")
        d = FaceDetector()
    assert d.backend == "yunet" and d.fallback_reason is None
    assert d.model_path == cache / YUNET_FILE
    assert sorted(p.name for p in cache.iterdir()) == [YUNET_FILE]  # no temporary file left over
    assert (cache / YUNET_FILE).read_bytes() == YUNET.read_bytes()
    assert len(d.detect(astronaut)) == 1
    # The server is gone: the cached copy is used from now on.
    assert yunet_model_path(download=False) == cache / YUNET_FILE
    assert FaceDetector().backend == "yunet"


def test_garbage_download_falls_back_to_haar(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
    served = tmp_path / "www"
    served.mkdir()
    (served / "model.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with _serve(served) as url:
        monkeypatch.setenv("MMFER_YUNET_URL", f"{url}/model.onnx")
        d = FaceDetector()
        assert d.backend == "haar"
        assert "not a usable YuNet model" in d.fallback_reason and "\n" not in d.fallback_reason
        assert list(cache.iterdir()) == []
        monkeypatch.setenv("MMFER_YUNET_URL", f"{url}/missing.onnx")
        d = FaceDetector()
        assert d.backend == "haar" and "404" in d.fallback_reason
    assert list(cache.iterdir()) == []
    with pytest.raises(DetectorUnavailableError, match="failed"):
        FaceDetector("yunet")


def test_unreachable_url_falls_back_fast(cache: Path, monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MMFER_YUNET_URL", f"http://127.0.0.1:{port}/yunet.onnx")
    t = time.perf_counter()
    d = FaceDetector()
    assert time.perf_counter() - t < 5
    assert d.backend == "haar" and "download" in d.fallback_reason and "failed" in d.fallback_reason
    assert list(cache.iterdir()) == []
    t = time.perf_counter()
    assert "not retried" in FaceDetector().fallback_reason  # a failure is not retried in-process
    assert time.perf_counter() - t < 1


def test_non_finite_detections_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """YuNet can return inf/NaN boxes on degenerate inputs (seen on a 1x4000 strip); they are not faces."""
    d = FaceDetector("haar")
    lm = np.zeros((5, 2), np.float32)
    rows = [(np.inf, 0.0, 50.0, 50.0, 0.9, lm), (0.0, np.nan, 50.0, 50.0, 0.9, lm), (5.0, 5.0, 40.0, 40.0, 0.9, lm)]
    monkeypatch.setattr(d, "_detect_haar", lambda image: rows)
    faces = d.detect(np.zeros((1, 4000, 3), np.uint8) + 1)
    assert faces == [] or all(np.isfinite(f.box).all() for f in faces)
    faces = d.detect(np.zeros((100, 100, 3), np.uint8))
    assert [f.box for f in faces] == [(5, 5, 40, 40)]
