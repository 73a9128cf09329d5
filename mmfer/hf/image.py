"""A ready ``AutoModelForImageClassification`` facial-expression checkpoint (ViT, ConvNeXt, ...) as
the face branch: mmfer detects and crops the faces, the checkpoint's own image processor prepares
them, and its ``id2label`` is mapped onto mmfer's seven emotions.

The face branch is 7-way everywhere (timelines, fusion, FER-2013 evaluation), so a checkpoint's
extra classes fold as :data:`mmfer.emotions.EXTRA_CLASSES` says (contempt -> disgust); labels
with no counterpart are excluded and reported, and emotions the checkpoint does not know get 0.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mmfer.core.hub import HFModelError, HFSpec, parse_spec, pretrained, require_modality, resolve
from mmfer.emotions import EMOTIONS, EXTRA_CLASSES
from mmfer.face.predictor import FaceEmotionRecognizer
from mmfer.hf.labels import map_labels


def _processor_size(processor: Any) -> int:
    size = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
    if isinstance(size, dict):
        size = size.get("shortest_edge") or size.get("height") or 224
    elif not isinstance(size, int):
        size = getattr(size, "shortest_edge", None) or getattr(size, "height", None) or 224
    return int(size)


def _rgb(crop: np.ndarray) -> np.ndarray:
    a = np.asarray(crop)
    if a.dtype != np.uint8:
        a = cv2.normalize(a.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return cv2.cvtColor(a[:, :, :3], cv2.COLOR_BGR2RGB)
    raise ValueError(f"a face crop must be a 2-D grey or 3-D colour image, got shape {a.shape}")


class HFFaceRecognizer(FaceEmotionRecognizer):
    """Detector + a transformers image classifier; the same API as :class:`FaceEmotionRecognizer`."""

    colour_crops = True

    def __init__(self, spec: HFSpec | str, detector: Any = "auto", device: str = "auto", tta_flip: bool = False,
                 yunet_model: str | Path | None = None):
        spec = parse_spec(spec) if isinstance(spec, str) else spec
        config, spec = resolve(spec)
        require_modality(config, "face", spec)
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.labels = map_labels(config.get("id2label") or {}, spec.label)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.processor = pretrained(AutoImageProcessor, spec)
        self.model = pretrained(AutoModelForImageClassification, spec).eval().to(self.device)
        if int(self.model.config.num_labels) != len(self.labels.model_labels):
            raise HFModelError(f"{spec.label}: the head has {self.model.config.num_labels} outputs but id2label "
                               f"names {len(self.labels.model_labels)}")
        self.spec = spec
        self.crop_size = _processor_size(self.processor)
        self.classes = EMOTIONS
        fold = np.zeros((len(self.labels.classes), len(EMOTIONS)), np.float32)
        for i, c in enumerate(self.labels.classes):
            fold[i, EMOTIONS.index(EXTRA_CLASSES.get(c, c))] = 1.0
        self._fold = fold
        self.tta_flip = tta_flip
        self.card: dict[str, Any] = {
            "kind": "face", "name": spec.label, "backend": "transformers", "classes": list(EMOTIONS),
            "architecture": type(self.model).__name__, "labels": self.labels.to_dict(),
            "folded": {c: EXTRA_CLASSES[c] for c in self.labels.classes if c in EXTRA_CLASSES},
            "preprocessing": {"processor": type(self.processor).__name__, "crop": f"{self.crop_size}px colour face "
                              "crop (box + 20% margin, eyes levelled), then the checkpoint's processor"},
        }
        self._detector, self._yunet_model = detector, yunet_model
        self._lock = threading.Lock()

    def embed_crops(self, crops: Any, batch_size: int = 256) -> np.ndarray:
        raise HFModelError(f"{self.spec.label}: mmfer's temporal heads read the embeddings of mmfer's own face CNN; "
                           "use the shipped face model for them")

    def classify_crops(self, crops: np.ndarray | Sequence[np.ndarray], batch_size: int = 64, embed: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        if embed:
            self.embed_crops(crops)  # raises: no embeddings for mmfer's temporal heads
        return self.predict_crops(crops, batch_size), None

    @torch.inference_mode()
    def predict_crops(self, crops: np.ndarray | Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """(N, 7) canonical probabilities for face crops (grey or BGR, any size)."""
        if isinstance(crops, np.ndarray) and crops.ndim == 2:
            crops = crops[None]
        out = []
        for s in range(0, len(crops), batch_size):
            rgb = [_rgb(c) for c in crops[s : s + batch_size]]
            x = self.processor(images=rgb, return_tensors="pt")["pixel_values"].to(self.device)
            p = self.model(pixel_values=x).logits.float().softmax(-1)
            if self.tta_flip:
                p = (p + self.model(pixel_values=x.flip(-1)).logits.float().softmax(-1)) / 2
            mapped, _ = self.labels.convert(p.cpu().numpy())
            out.append(mapped @ self._fold)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(EMOTIONS)), np.float32)
