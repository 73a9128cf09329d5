"""The audio branch: speech emotion from 16 kHz samples or an opened audio track."""

from __future__ import annotations

import numpy as np

from mmfer.audio.io import AudioClip, AudioSource
from mmfer.branches.base import BranchOutput, RecognizerBranch, canonical


class AudioBranch(RecognizerBranch):
    """``predict(clip)``: an :class:`~mmfer.audio.io.AudioClip` (decoded samples) or an
    :class:`~mmfer.audio.io.AudioSource` (a track read as it streams, in windows when long)."""

    modality = "audio"

    def predict(self, media: AudioClip | AudioSource | np.ndarray) -> BranchOutput:
        if isinstance(media, AudioClip):
            pred = self.recognizer.predict_clip(media)
        elif isinstance(media, AudioSource):
            pred = self.recognizer.predict_file(media)
        else:
            pred = self.recognizer.predict_samples(media)
        if pred.emotion is None:
            return BranchOutput(None, details=pred, skipped="; ".join(pred.notes) or "nothing to classify")
        probs = np.array([pred.probabilities[c] for c in self.classes], np.float64)
        return BranchOutput(canonical(probs, self.classes), details=pred)
