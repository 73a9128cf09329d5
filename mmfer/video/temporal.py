"""Clip-level prediction of a temporal head over one face track."""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def temporal_probs(head: torch.nn.Module, seq: np.ndarray, present: np.ndarray, span: int) -> tuple[np.ndarray, int]:
    """The head reads the track in windows of ``span`` frames (``seq``: (T, D) embeddings or (T, 48, 48)
    crops; ``present``: (T,) where the face was found); the windows' probabilities are averaged.
    Returns (probabilities over the head's classes, windows used); raises ValueError without a face."""
    outs = []
    for s in range(0, len(seq), span):
        if present[s : s + span].any():
            e, p = torch.from_numpy(seq[None, s : s + span]), torch.from_numpy(present[None, s : s + span])
            outs.append(head(e, p).softmax(-1)[0].numpy())
    if not outs:
        raise ValueError("no frame with a face to follow")
    return np.mean(outs, 0), len(outs)
