"""The audio branch: speech emotion from 16 kHz samples or an opened audio track."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmfer.audio.io import AudioClip, AudioSource
from mmfer.branches.base import BranchOutput, canonical


class AudioBranch:
    """``predict(clip)``: an :class:`~mmfer.audio.io.AudioClip` (decoded samples) or an
    :class:`~mmfer.audio.io.AudioSource` (a track read as it streams, in windows when long)."""

    modality = "audio"

    def __init__(self, recognizer: Any, backend: str):
        self.recognizer = recognizer
        self.backend = backend
        self.card: dict[str, Any] = recognizer.card
        self.name: str = self.card.get("name", "audio")
        self.classes: tuple[str, ...] = tuple(recognizer.classes)

    def predict(self, media: AudioClip | AudioSource | np.ndarray) -> BranchOutput:
        if isinstance(media, AudioClip):
            pred = self.recognizer.predict_clip(media)
        elif isinstance(media, AudioSource):
            pred = self.recognizer.predict_source(media)
        else:
            pred = self.recognizer.predict_samples(media)
        if pred.emotion is None:
            return BranchOutput(None, details=pred, skipped="; ".join(pred.notes) or "nothing to classify")
        probs = np.array([pred.probabilities[c] for c in self.classes], np.float64)
        return BranchOutput(canonical(probs, self.classes), details=pred)
