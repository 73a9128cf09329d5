"""The scene branch: CLIP (open_clip or transformers) image embeddings, faces masked, scored by
zero-shot prompts or a trained probe."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mmfer.branches.base import BranchOutput
from mmfer.emotions import EMOTIONS


@dataclasses.dataclass
class SceneClassifier:
    encoder: Any  # ClipSceneEncoder / HFClipSceneEncoder
    scores: Callable[[Any], np.ndarray]  # (N, D) embeddings -> (N, 7) probabilities
    name: str  # what it is, for reports
    model: str
    pretrained: str | None


class SceneBranch:
    """``predict((images, boxes))``: BGR images and the face boxes to mask in each; the mean over images."""

    modality = "scene"
    classes = EMOTIONS

    def __init__(self, classifier: SceneClassifier, backend: str):
        self.classifier = classifier
        self.backend = backend
        self.name = classifier.name
        self.card: dict[str, Any] = {"name": classifier.name, "kind": "scene", "clip": {
            "model": classifier.model, "pretrained": classifier.pretrained}, "classes": list(EMOTIONS)}

    def embed(self, images_bgr: Sequence[np.ndarray], boxes: Sequence[Sequence[Any]]) -> np.ndarray:
        rgb = [np.ascontiguousarray(i[:, :, ::-1]) for i in images_bgr]
        return self.classifier.encoder.embed_images(rgb, list(boxes))

    def predict(self, media: tuple[Sequence[np.ndarray], Sequence[Sequence[Any]]]) -> BranchOutput:
        images, boxes = media
        emb = self.embed(images, boxes)
        per_image = np.asarray(self.classifier.scores(emb), np.float64)
        return BranchOutput(per_image.mean(0), embedding=np.asarray(emb), details=per_image)
