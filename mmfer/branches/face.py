"""The face branch: a detector plus a face expression model (mmfer's CNN or a transformers classifier)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mmfer.branches.base import BranchOutput, RecognizerBranch, canonical


def largest(faces: Sequence[Any]) -> Any:
    """The main face of a photo: the largest box."""
    return max(faces, key=lambda f: f.box[2] * f.box[3] if f.box else 0)


class FaceBranch(RecognizerBranch):
    """``predict(image)``: every face of a BGR photo; the largest one is the branch's answer."""

    modality = "face"

    @property
    def detector(self) -> Any:
        return self.recognizer.detector

    def faces(self, image: np.ndarray) -> list[Any]:
        """Every face (:class:`~mmfer.face.predictor.FacePrediction`, full precision)."""
        return self.recognizer.predict_image(image)

    def classify_crops(self, crops: Any, embed: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities over ``classes`` and (with ``embed``) embeddings, from one forward pass."""
        return self.recognizer.classify_crops(crops, embed=embed)

    def canonical(self, probs: np.ndarray) -> np.ndarray:
        return canonical(probs, self.classes)

    def vector(self, face: Any) -> np.ndarray:
        """One FacePrediction's canonical probabilities."""
        return self.canonical(np.array([face.probabilities[c] for c in self.classes], np.float64))

    def predict(self, image: np.ndarray) -> BranchOutput:
        faces = self.faces(image)
        if not faces:
            return BranchOutput(None, details=faces, skipped="no face found")
        return BranchOutput(self.vector(largest(faces)), details=faces)
