"""The branch interface every modality and backend implements.

A branch knows its name, modality (face, temporal, audio, scene), backend (mmfer, transformers,
open_clip) and the classes its model predicts, and turns *decoded* media (arrays, an opened audio
track; never a path) into a :class:`BranchOutput`: canonical probabilities as an array, an
optional embedding, and the details a display needs. Nothing is rounded here; rounding happens
when results are printed or serialised.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmfer.emotions import EMOTIONS, fold_matrix

MODALITIES = ("face", "temporal", "audio", "scene")


@dataclasses.dataclass(frozen=True)
class BranchOutput:
    """One branch's answer for one input.

    ``probs``: (7,) float64 over :data:`~mmfer.emotions.EMOTIONS`, or None when there was nothing to
    classify (``skipped`` says why). ``embedding``: what the branch's encoder saw (when it has one).
    ``details``: the branch's own result object for display (faces, audio windows, ...).
    """

    probs: np.ndarray | None
    embedding: np.ndarray | None = None
    details: Any = None
    skipped: str | None = None

    @property
    def emotion(self) -> str | None:
        return None if self.probs is None else EMOTIONS[int(np.argmax(self.probs))]


def canonical(probs: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """Probabilities over a model's ``classes`` -> (…, 7) over EMOTIONS (calm -> neutral, contempt -> disgust)."""
    p = np.asarray(probs, np.float64)
    return p if tuple(classes) == EMOTIONS else p @ fold_matrix(classes)


class RecognizerBranch:
    """A branch around a recogniser object (face, audio): name, card and classes are the recogniser's."""

    modality = ""

    def __init__(self, recognizer: Any, backend: str):
        self.recognizer = recognizer
        self.backend = backend
        self.card: dict[str, Any] = recognizer.card
        self.name: str = self.card.get("name", self.modality)
        self.classes: tuple[str, ...] = tuple(recognizer.classes)


@runtime_checkable
class Branch(Protocol):
    """What the pipeline, the CLI, the demo and the evaluations know about a branch."""

    name: str  # the model's name (its card's)
    modality: str  # face | temporal | audio | scene
    backend: str  # mmfer | transformers | open_clip
    classes: tuple[str, ...]  # what the model predicts, in its own order
    card: dict[str, Any]  # config, classes, preprocessing, metrics

    def predict(self, media: Any) -> BranchOutput: ...
