"""Finding every face in a photo: YuNet (OpenCV DNN) when its model is available, else Haar.

YuNet (Wu et al., libfacedetection) is a 75k-parameter CNN that gives boxes, scores and five
landmarks; it is far more accurate than the Haar cascade and, at 640 px, faster too. Its ONNX file
is not in opencv-python, so it is looked up in this order: an explicit path, ``$MMFER_YUNET_MODEL``,
the user cache, then a one-time download from the OpenCV Zoo (verified before it is cached; never
offline: ``--offline`` / ``MMFER_OFFLINE=1``). When none of that works, ``backend="auto"`` falls back
to the Haar cascade that ships with OpenCV and says why in :attr:`FaceDetector.fallback_reason`.

Example:
    >>> det = FaceDetector()                       # YuNet if possible, else Haar
    >>> faces = det.detect(image_bgr)              # [Face(box=(x, y, w, h), score, landmarks)]
    >>> crops = crop_faces(image_bgr, faces)       # (N, 48, 48) uint8, eye-aligned
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mmfer.core.offline import OFFLINE_HOW, offline_mode
from mmfer.paths import cache_dir

log = logging.getLogger(__name__)

YUNET_URL = "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
"""Official YuNet model (OpenCV Zoo, MIT licence); ``$MMFER_YUNET_URL`` overrides it (mirrors, tests)."""
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_FIXED_INPUT = (640, 640)
"""Input size used if a model cannot be reshaped (a truly fixed-shape export): images are letterboxed to it."""
DOWNLOAD_TIMEOUT_S = 20.0
MAX_DOWNLOAD_BYTES = 20 * 2**20  # the real file is ~230 kB; anything huge is not it
HAAR_FILE = "haarcascade_frontalface_default.xml"
BACKENDS = ("auto", "yunet", "haar")

# Haar score: a logistic squash of the cascade's last-stage sum ("level weight") of the best window
# in each group. It is a noisy confidence: the same face gives 7.45 in skimage's astronaut and 4.6-5.5
# once padded to 640x480 (the scan grid moves); 27 CK+ frames give 7.5-12; false positives that
# survive minNeighbors=5 gave -1.1-2.9 and one 5.5. Centre 2 / scale 1.5 puts the default 0.7
# threshold at a weight of ~3.3, dropping the weak false positives and keeping every face we saw.
HAAR_WEIGHT_CENTRE = 2.0
HAAR_WEIGHT_SCALE = 1.5

_failed_downloads: dict[tuple[str, str], str] = {}  # (url, dest) -> reason: try once per process
_download_lock = threading.Lock()
_create_lock = threading.Lock()  # creating OpenCV detectors toggles cv2's process-wide log level: one at a time


class DetectorUnavailableError(RuntimeError):
    """The requested detector backend cannot be used; the message says why."""


@dataclass(eq=False)
class Face:
    """One detected face.

    Attributes:
        box: (x, y, w, h) in original-image pixels, clipped to the image.
        score: detector confidence in (0, 1).
        landmarks: (5, 2) float32 points (right eye, left eye, nose tip, right and left mouth corner,
            the subject's right being on the image's left) for YuNet; None for Haar.
    """

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"box": [int(v) for v in self.box], "score": round(float(self.score), 4),
                "landmarks": None if self.landmarks is None else np.round(self.landmarks, 2).tolist()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Face):
            return NotImplemented
        if self.box != other.box or self.score != other.score:
            return False
        if self.landmarks is None or other.landmarks is None:
            return self.landmarks is None and other.landmarks is None
        return bool(np.array_equal(self.landmarks, other.landmarks))


def _one_line(e: object) -> str:
    """cv2 and urllib errors span lines and carry source paths; keep the informative part."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    if "error: (" in text:  # "OpenCV(4.x) file.cpp:123: error: (-215:...) what in function 'f'"
        text = text.split("error: ", 1)[1]
    return text[:300]


# --------------------------------------------------------------------------- model file

def yunet_model_path(model_path: str | Path | None = None, download: bool = True) -> Path | None:
    """The YuNet ONNX file to use, or None: ``model_path``, ``$MMFER_YUNET_MODEL``, the cached file,
    or (``download=True`` and not offline, :func:`~mmfer.core.offline.offline_mode`) a fresh verified
    download into the cache."""
    return _find_yunet(model_path, download)[0]


def _find_yunet(model_path: str | Path | None, download: bool) -> tuple[Path | None, str]:
    """(path, "") or (None, why not)."""
    for given, origin in ((model_path, "model_path"), (os.environ.get("MMFER_YUNET_MODEL"), "$MMFER_YUNET_MODEL")):
        if given:  # an explicit choice is never silently replaced by another file
            p = Path(given).expanduser()
            return (p, "") if p.is_file() else (None, f"YuNet model {p} ({origin}) not found")
    try:
        cached = cache_dir("models", "yunet") / YUNET_FILE
    except OSError as e:
        return None, f"no YuNet model: the cache folder cannot be created ({_one_line(e)})"
    if cached.is_file():
        return cached, ""
    if not download:
        return None, f"no YuNet model (none given, none in {cached.parent}, download disabled)"
    if offline_mode():
        return None, f"no YuNet model (none given, none in {cached.parent}; offline: {OFFLINE_HOW})"
    url = os.environ.get("MMFER_YUNET_URL") or YUNET_URL
    try:
        return download_yunet(url, cached), ""
    except DetectorUnavailableError as e:
        return None, str(e)


def download_yunet(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` atomically, after checking that OpenCV can run it as YuNet.

    A failure leaves nothing behind, raises :class:`DetectorUnavailableError`, and is remembered
    so that a process without network does not wait on every detector it creates.
    """
    key = (url, str(dest))
    with _download_lock:
        if key in _failed_downloads:
            raise DetectorUnavailableError(_failed_downloads[key] + " (not retried in this process)")
        if dest.is_file():  # another thread got it meanwhile
            return dest
        try:
            _download_verified(url, dest, timeout)
        except DetectorUnavailableError as e:
            _failed_downloads[key] = str(e)
            raise
    log.info("downloaded the YuNet face detector to %s", dest)
    return dest


def _download_verified(url: str, dest: Path, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as dest, so the final os.replace is atomic; hidden, so a crash leaves no look-alike.
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".onnx", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        deadline = time.monotonic() + timeout
        size = 0
        # The socket timeout bounds each connect/read; the deadline bounds a slow trickle.
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 16):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise DetectorUnavailableError(f"YuNet download from {url} exceeds {MAX_DOWNLOAD_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise DetectorUnavailableError(f"YuNet download from {url} timed out after {timeout:g} s")
                out.write(chunk)
        if size == 0:
            raise DetectorUnavailableError(f"YuNet download from {url} is empty")
        try:
            _load_yunet(tmp)
        except (cv2.error, ValueError, OSError) as e:
            why = _one_line(e)
            raise DetectorUnavailableError(f"file downloaded from {url} is not a usable YuNet model ({why})") from None
        os.replace(tmp, dest)
    except DetectorUnavailableError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:  # incl. HTTPError, timeouts, refused
        reason = e.reason if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError) else e
        raise DetectorUnavailableError(f"YuNet download from {url} failed ({_one_line(reason)})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _load_yunet(path: Path | np.ndarray, score_threshold: float = 0.7, nms_threshold: float = 0.3
                ) -> tuple[Any, bool]:
    """Create a ``cv2.FaceDetectorYN`` and run it once on a blank image.

    Returns (detector, reshapeable). OpenCV 4.x reshapes even the "640x640" export to any input size
    (internally padding to a multiple of 32), which is exact and much cheaper for small images;
    a model that refuses is used letterboxed to :data:`YUNET_FIXED_INPUT` instead.
    """
    # from bytes: no dependence on the file's suffix
    buf = path if isinstance(path, np.ndarray) else np.frombuffer(Path(path).read_bytes(), np.uint8)
    with _create_lock:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # importer errors go to stderr otherwise
        try:
            return _try_yunet(buf, score_threshold, nms_threshold)
        finally:
            cv2.utils.logging.setLogLevel(level)


def _create_yunet(buf: np.ndarray, score_threshold: float, nms_threshold: float) -> Any:
    """A fresh ``cv2.FaceDetectorYN`` from the model's bytes (already checked by :func:`_load_yunet`)."""
    return cv2.FaceDetectorYN.create("onnx", buf, np.zeros(0, np.uint8), YUNET_FIXED_INPUT, score_threshold,
                                     nms_threshold, 5000)


def _try_yunet(buf: np.ndarray, score_threshold: float, nms_threshold: float) -> tuple[Any, bool]:
    """Create and check a detector: (detector, reshapeable)."""
    net = _create_yunet(buf, score_threshold, nms_threshold)
    net.detect(np.zeros((*YUNET_FIXED_INPUT[::-1], 3), np.uint8))  # a non-YuNet ONNX fails here
    try:
        net.setInputSize((160, 120))
        net.detect(np.zeros((120, 160, 3), np.uint8))
        return net, True
    except cv2.error:
        net.setInputSize(YUNET_FIXED_INPUT)
        return net, False


def _load_haar() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / HAAR_FILE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise DetectorUnavailableError(f"cannot load the Haar cascade {path}")
    return cascade


# --------------------------------------------------------------------------- detection

def _as_bgr(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {a.dtype} (use mmfer.io.images.load_image)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    if a.ndim == 3 and a.shape[2] == 4:
        return cv2.cvtColor(a, cv2.COLOR_BGRA2BGR)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _fit(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale so the longer side is at most ``max_side`` (detection cost stays bounded)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


class FaceDetector:
    """Detects all faces in BGR images.

    Args:
        backend: ``"yunet"`` (fails if no model), ``"haar"``, or ``"auto"`` (YuNet, else Haar).
        model_path: a YuNet ONNX file; default: ``$MMFER_YUNET_MODEL``, the cache, a download.
        score_threshold: minimum score in (0, 1) (for Haar see :data:`HAAR_WEIGHT_CENTRE`).
        nms_threshold: boxes overlapping a better one by more than this IoU are dropped.
        min_face: smallest face side, in original-image pixels.
        download: allow downloading the YuNet model when it is not cached.
        max_side: images are downscaled to this longer side for detection; boxes are mapped back.

    One instance is safe to share between threads, and they detect in parallel: the OpenCV detector
    (stateful: ``setInputSize`` then ``detect``) is not shared, each thread gets its own copy, made
    on its first call from the same model bytes and parameters.
    """

    def __init__(self, backend: str = "auto", model_path: str | Path | None = None, score_threshold: float = 0.7,
                 nms_threshold: float = 0.3, min_face: int = 20, download: bool = True, max_side: int = 640):
        if backend not in BACKENDS:
            raise ValueError(f"unknown face detector backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32, got {max_side}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_face = int(min_face)
        self.max_side = int(max_side)
        self.model_path: Path | None = None
        self.fallback_reason: str | None = None
        self._yunet: Any = None  # the model's bytes once YuNet loaded (each thread builds its detector from them)
        self._reshapeable = True
        self._local = threading.local()  # this thread's OpenCV detector: .yunet or .haar
        if backend in ("auto", "yunet"):
            path, reason = _find_yunet(model_path, download)
            if path is not None:
                try:
                    buf = np.frombuffer(path.read_bytes(), np.uint8)
                    self._local.yunet, self._reshapeable = _load_yunet(buf, self.score_threshold, self.nms_threshold)
                    self._yunet = buf
                    self.model_path = path
                except (cv2.error, OSError, ValueError) as e:
                    reason = f"YuNet model {path} cannot be used ({_one_line(e)})"
            if self._yunet is None:
                if backend == "yunet":
                    raise DetectorUnavailableError(reason)
                self.fallback_reason = reason
                log.warning("face detector: using the Haar cascade, because %s", reason)
        if self._yunet is None:
            self._local.haar = _load_haar()  # fails here, not on the first detection

    def _thread_yunet(self) -> Any:
        """This thread's ``cv2.FaceDetectorYN``, created on its first call."""
        net = getattr(self._local, "yunet", None)
        if net is None:
            with _create_lock:  # creation is rare; detection itself runs unlocked
                net = self._local.yunet = _create_yunet(self._yunet, self.score_threshold, self.nms_threshold)
        return net

    def _thread_haar(self) -> cv2.CascadeClassifier:
        """This thread's Haar cascade, loaded on its first call."""
        haar = getattr(self._local, "haar", None)
        if haar is None:
            with _create_lock:
                haar = self._local.haar = _load_haar()
        return haar

    @property
    def backend(self) -> str:
        """The backend in use: ``"yunet"`` or ``"haar"``."""
        return "yunet" if self._yunet is not None else "haar"

    def __repr__(self) -> str:
        return (f"FaceDetector(backend={self.backend!r}, score_threshold={self.score_threshold}, "
                f"min_face={self.min_face}, max_side={self.max_side})")

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        """All faces in a uint8 BGR (or grey/BGRA) image, best score first, then top-left first."""
        image = _as_bgr(image_bgr)
        h, w = image.shape[:2]
        if h == 0 or w == 0:
            return []
        raw = self._detect_yunet(image) if self._yunet is not None else self._detect_haar(image)
        faces = []
        for x, y, bw, bh, score, lm in raw:
            if not np.isfinite((x, y, bw, bh, score)).all():  # YuNet on degenerate inputs (a 1-pixel strip)
                continue
            if min(bw, bh) < self.min_face or score < self.score_threshold:
                continue
            x0, y0 = max(0, round(x)), max(0, round(y))
            x1, y1 = min(w, round(x + bw)), min(h, round(y + bh))
            if x1 > x0 and y1 > y0:
                faces.append(Face((x0, y0, x1 - x0, y1 - y0), float(score), lm))
        faces.sort(key=lambda f: (-f.score, f.box[1], f.box[0], f.box[3], f.box[2]))
        return faces

    def _detect_yunet(self, image: np.ndarray) -> list[tuple[float, float, float, float, float, np.ndarray]]:
        if self._reshapeable:
            small, scale = _fit(image, self.max_side)
            size = (small.shape[1], small.shape[0])
        else:  # letterbox: keep the aspect ratio, pad right/bottom, so coordinates only need a scale
            tw, th = YUNET_FIXED_INPUT
            scale = min(tw / image.shape[1], th / image.shape[0])
            fitted = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                                interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            small = cv2.copyMakeBorder(fitted, 0, th - fitted.shape[0], 0, tw - fitted.shape[1], cv2.BORDER_CONSTANT)
            size = (tw, th)
        net = self._thread_yunet()
        net.setInputSize(size)  # this thread's own detector: the size and the detection belong together
        _, out = net.detect(small)
        if out is None:
            return []
        pts = out[:, :14].astype(np.float64) / scale  # rows: x, y, w, h, 5 landmark (x, y), score
        return [(p[0], p[1], p[2], p[3], float(r[14]), p[4:14].reshape(5, 2).astype(np.float32))
                for p, r in zip(pts, out, strict=True)]

    def _detect_haar(self, image: np.ndarray) -> list[tuple[float, float, float, float, float, None]]:
        haar = self._thread_haar()
        grey, scale = _fit(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), self.max_side)
        grey = cv2.equalizeHist(grey)  # the cascade was trained on normalised faces; helps dim photos
        m = max(1, round(self.min_face * scale))
        rects, _, weights = haar.detectMultiScale3(grey, scaleFactor=1.1, minNeighbors=5, minSize=(m, m),
                                                   outputRejectLevels=True)
        if len(rects) == 0:
            return []
        rects = np.asarray(rects, np.float64).reshape(-1, 4)
        weights = np.asarray(weights, np.float64).reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-(weights - HAAR_WEIGHT_CENTRE) / HAAR_WEIGHT_SCALE))
        # Grouping can leave nested boxes around one face; the same IoU rule as YuNet removes them.
        keep = cv2.dnn.NMSBoxes(rects.tolist(), scores.tolist(), 0.0, self.nms_threshold)
        return [(*(rects[i] / scale), float(scores[i]), None) for i in np.asarray(keep).reshape(-1)]


# --------------------------------------------------------------------------- crops

def eye_angle(landmarks: np.ndarray) -> float:
    """In-plane tilt in degrees from the eye line (positive: the image-right eye is lower)."""
    (rx, ry), (lx, ly) = np.asarray(landmarks, np.float64)[:2]
    return math.degrees(math.atan2(ly - ry, lx - rx))


def crop_faces(image_bgr: np.ndarray, faces: list[Face], size: int = 48, margin: float = 0.2,
               align: bool = True, colour: bool = False) -> np.ndarray:
    """Square grey crops (N, size, size) uint8, one per face (``colour``: BGR, (N, size, size, 3)).

    The square has side ``max(w, h) * (1 + margin)`` around the box centre; parts outside the image
    are filled by replicating the border, so faces at the edge keep their scale. With ``align`` and
    landmarks, the crop is rotated about the box centre so that the eyes are level.
    """
    a = np.asarray(image_bgr)
    if colour:
        grey = _as_bgr(a)
    else:
        grey = a if a.ndim == 2 and a.dtype == np.uint8 else cv2.cvtColor(_as_bgr(a), cv2.COLOR_BGR2GRAY)
    out = np.zeros((len(faces), size, size, 3) if colour else (len(faces), size, size), np.uint8)
    for i, face in enumerate(faces):
        x, y, w, h = face.box
        cx, cy = x + w / 2.0, y + h / 2.0
        side = max(w, h) * (1.0 + margin)
        angle = 0.0
        if align and face.landmarks is not None and np.all(np.isfinite(face.landmarks[:2])):
            if np.linalg.norm(face.landmarks[1] - face.landmarks[0]) > 1e-3:
                angle = eye_angle(face.landmarks)
        # Warp at (at least) native resolution, then area-downsample: warpAffine alone would alias.
        work = max(size, int(math.ceil(side)))
        m = cv2.getRotationMatrix2D((cx, cy), angle, work / side)
        m[0, 2] += work / 2.0 - cx
        m[1, 2] += work / 2.0 - cy
        patch = cv2.warpAffine(grey, m, (work, work), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[i] = patch if work == size else cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out
