"""Face emotion recognition on photos: detect every face, crop, classify.

Example:
    >>> from mmfer import FaceEmotionRecognizer
    >>> rec = FaceEmotionRecognizer()                    # shipped default model
    >>> faces = rec.predict_image("photo.jpg")           # every face: box, emotion, probabilities
    >>> probs = rec.predict_crops(crops_48x48)           # already-cropped faces -> (N, 7)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mmfer.face.artifact import card_tta_zooms, load_face_model
from mmfer.face.models import LogitsAndFeatures, tta_views
from mmfer.io.images import load_image

CROP_SIZE = 48


@dataclass
class FacePrediction:
    """One face: ``box`` (x, y, w, h) in image pixels (None for a given crop), detector score,
    top ``emotion`` and the probability of every class."""

    emotion: str
    confidence: float
    probabilities: dict[str, float]
    box: tuple[int, int, int, int] | None = None
    score: float | None = None
    landmarks: list[list[float]] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, rounded to 4 decimals (the object itself keeps full precision)."""
        return {"box": list(self.box) if self.box is not None else None,
                "detector_score": None if self.score is None else round(self.score, 4),
                "emotion": self.emotion, "confidence": round(self.confidence, 4),
                "probabilities": {c: round(v, 4) for c, v in self.probabilities.items()}}


def to_grey_crop(img: np.ndarray) -> np.ndarray:
    """Any crop (grey, BGR, BGRA; uint8/uint16/float) -> (48, 48) uint8 grey."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3:
        a = cv2.cvtColor(a[:, :, :3], cv2.COLOR_BGR2GRAY) if a.shape[2] >= 3 else a[:, :, 0]
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"a face crop must be a 2-D grey or 3-D colour image, got shape {np.shape(img)}")
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = ((a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)).astype(np.uint8)
    if a.shape != (CROP_SIZE, CROP_SIZE):
        interp = cv2.INTER_AREA if min(a.shape) > CROP_SIZE else cv2.INTER_LINEAR
        a = cv2.resize(a, (CROP_SIZE, CROP_SIZE), interpolation=interp)
    return a


class FaceEmotionRecognizer:
    """Detector + face expression model, loaded once and reused.

    Args:
        model: a shipped model name (``face_lite0``) or a folder with model.safetensors + card.json.
        detector: a :class:`~mmfer.face.detect.FaceDetector`, or a backend name (auto, yunet, haar).
        device: ``cpu``, ``cuda`` or ``auto``.
        tta_flip: test-time augmentation (the mirrored face, and the centre zooms the card lists in
            ``tta_zooms``); default: what the model card says. False: one view per face.
        yunet_model: path of a YuNet ONNX file (otherwise the user cache / a download / Haar).
        optimize: on CPU, run a frozen TorchScript copy of the net (batch-norm folded into the
            convolutions, oneDNN kernels): about 2x the throughput, same outputs to ~1e-6.
    """

    crop_size = CROP_SIZE  # side of the face crops the model reads
    colour_crops = False  # grey crops (FER-2013 models); transformers checkpoints take colour

    def __init__(self, model: str | Path | None = None, detector: Any = "auto", device: str = "auto",
                 tta_flip: bool | None = None, yunet_model: str | Path | None = None, optimize: bool = True):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model, self.card = load_face_model(model, self.device)
        self.classes: tuple[str, ...] = tuple(self.card["classes"])
        self.tta_flip = bool(self.card.get("config", {}).get("tta_flip", True)) if tta_flip is None else tta_flip
        self.tta_zooms = card_tta_zooms(self.card)
        self._detector = detector
        self._yunet_model = yunet_model
        self._optimize = optimize and self.device.type == "cpu"
        self._fast: torch.nn.Module | None = None
        self._lock = threading.Lock()

    def _net(self) -> torch.nn.Module:
        """(logits, embeddings) in one pass: the frozen TorchScript copy when optimising, built once
        (under a lock: the first requests of a server may arrive together)."""
        if self._fast is not None:
            return self._fast
        with self._lock:
            if self._fast is None:
                self._fast = self._build_net()
        return self._fast

    def _build_net(self) -> torch.nn.Module:
        both = LogitsAndFeatures(self.model).eval()
        if not self._optimize:
            return both
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript deprecation notices
                traced = torch.jit.trace(both, torch.zeros(2, 1, CROP_SIZE, CROP_SIZE, device=self.device))
                return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        except Exception as exc:  # noqa: BLE001 - a speed-up only: fall back to the eager net
            warnings.warn(f"TorchScript optimisation unavailable ({exc}); using the eager model", stacklevel=2)
            return both

    @property
    def detector(self) -> Any:
        """Created on first use, so crop-only users never load a detector."""
        from mmfer.face.detect import FaceDetector

        if not isinstance(self._detector, FaceDetector):
            with self._lock:
                if not isinstance(self._detector, FaceDetector):
                    self._detector = FaceDetector(backend=self._detector or "auto", model_path=self._yunet_model)
        return self._detector

    def embed_crops(self, crops: np.ndarray | Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """(N, feat_dim) float32 backbone embeddings of face crops (what the temporal branch reads)."""
        return self.classify_crops(crops, batch_size, embed=True)[1]

    def predict_crops(self, crops: np.ndarray | Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N, K) for already-cropped faces (any size, grey or BGR)."""
        return self.classify_crops(crops, batch_size)[0]

    @torch.inference_mode()
    def classify_crops(self, crops: np.ndarray | Sequence[np.ndarray], batch_size: int = 256, embed: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (N, K) and, with ``embed``, the (N, feat_dim) float32 embeddings of the faces as
        they are (not their test-time views), from one forward pass per batch."""
        if isinstance(crops, np.ndarray) and crops.ndim == 2:
            crops = crops[None]
        arr = np.stack([to_grey_crop(c) for c in crops]) if len(crops) else np.zeros((0, 48, 48), np.uint8)
        probs, embs, net = [], [], self._net()
        zooms = self.tta_zooms if self.tta_flip else ()
        for i in range(0, len(arr), batch_size):
            x = torch.from_numpy(arr[i : i + batch_size]).to(self.device).float().div_(255).unsqueeze(1)
            views = tta_views(x, self.tta_flip, zooms)
            logits, feats = net(torch.cat(views) if len(views) > 1 else x)
            probs.append(logits.float().softmax(1).view(len(views), len(x), -1).mean(0).cpu().numpy())
            if embed:
                embs.append(feats[: len(x)].float().cpu().numpy())
        if not probs:
            return np.zeros((0, len(self.classes)), np.float32), np.zeros((0, self.model.feat_dim), np.float32)
        return np.concatenate(probs), np.concatenate(embs) if embed else None

    def _wrap(self, probs: np.ndarray, faces: Sequence[Any] | None = None) -> list[FacePrediction]:
        preds = []
        for i, p in enumerate(probs):
            k = int(p.argmax())
            face = faces[i] if faces is not None else None
            preds.append(FacePrediction(
                emotion=self.classes[k], confidence=float(p[k]),
                probabilities={c: float(v) for c, v in zip(self.classes, p, strict=True)},
                box=tuple(int(v) for v in face.box) if face is not None else None,
                score=float(face.score) if face is not None else None,
                landmarks=face.landmarks.tolist() if face is not None and face.landmarks is not None else None,
            ))
        return preds

    def predict_image(self, image: str | Path | np.ndarray, detect: bool = True) -> list[FacePrediction]:
        """Every face in an image (a path or a BGR array). With ``detect=False`` the whole image
        is taken as one face crop (FER-style 48x48 inputs)."""
        from mmfer.face.detect import crop_faces

        img = load_image(image) if isinstance(image, (str, Path)) else np.asarray(image)
        if not detect:
            return self._wrap(self.predict_crops([img]))
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        faces = self.detector.detect(img)
        if not faces:
            return []
        crops = crop_faces(img, faces, size=self.crop_size, colour=self.colour_crops)
        return self._wrap(self.predict_crops(crops), faces)

    def predict_batch(self, images: Sequence[str | Path | np.ndarray],
                      detect: bool = True) -> list[list[FacePrediction]]:
        """:meth:`predict_image` over many images; all faces are classified in one batch."""
        from mmfer.face.detect import crop_faces

        loaded = [load_image(i) if isinstance(i, (str, Path)) else np.asarray(i) for i in images]
        if not detect:
            return [[p] for p in self._wrap(self.predict_crops(loaded))]
        per_image, all_crops = [], []
        for img in loaded:
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            faces = self.detector.detect(img)
            per_image.append(faces)
            if faces:
                all_crops.append(crop_faces(img, faces, size=self.crop_size, colour=self.colour_crops))
        probs = self.predict_crops(np.concatenate(all_crops)) if all_crops else np.zeros((0, len(self.classes)))
        out, j = [], 0
        for faces in per_image:
            out.append(self._wrap(probs[j : j + len(faces)], faces))
            j += len(faces)
        return out
