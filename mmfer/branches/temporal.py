"""The temporal branch: a head over the main face track of a video (CNN-LSTM/GRU)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmfer.branches.base import BranchOutput, canonical
from mmfer.emotions import EMOTIONS
from mmfer.video.temporal import temporal_probs


class TemporalBranch:
    """``predict((seq, present))``: (T, D) face embeddings (or (T, 48, 48) crops for a fine-tuned head)
    and a (T,) mask of the frames where the face was found."""

    modality = "temporal"
    backend = "mmfer"

    def __init__(self, loaded: tuple[Any, dict[str, Any], Any]):
        self.loaded = loaded  # (head, card, config): what video_timeline takes
        self.head, self.card, self.cfg = loaded
        self.name: str = self.card["name"]
        self.classes: tuple[str, ...] = tuple(self.card.get("classes", EMOTIONS))
        self.finetuned: bool = bool(self.cfg.model.finetune)

    def predict(self, media: tuple[np.ndarray, np.ndarray]) -> BranchOutput:
        seq, present = media
        try:
            probs, windows = temporal_probs(self.head, seq, present, self.cfg.data.max_frames)
        except ValueError as exc:
            return BranchOutput(None, skipped=str(exc))
        return BranchOutput(canonical(probs, self.classes), details={"windows": windows})
