"""A checkpoint's ``id2label`` mapped onto mmfer's emotion vocabulary, explicitly.

Every checkpoint label is either matched to an mmfer class (by the spellings in
:data:`mmfer.emotions.CHECKPOINT_LABELS`) or listed as unmapped. The branch predicts over the
mmfer classes that were matched, in mmfer's order; labels that share a class are summed. The
probability of unmapped labels is reported per prediction (``unmapped_mass``) and the rest is
renormalised, so nothing is dropped silently or reordered.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mmfer.core.hub import HFModelError
from mmfer.emotions import AUDIO_EMOTIONS, EXTRA_CLASSES, match_checkpoint_label

_ORDER = (*AUDIO_EMOTIONS, *(c for c in EXTRA_CLASSES if c not in AUDIO_EMOTIONS))


@dataclasses.dataclass(frozen=True)
class LabelMap:
    model_labels: tuple[str, ...]  # the checkpoint's labels, in its index order
    targets: tuple[str | None, ...]  # the mmfer class of each checkpoint label, or None
    classes: tuple[str, ...]  # mmfer classes the branch predicts, in mmfer order

    @property
    def unmapped(self) -> list[str]:
        return [lab for lab, t in zip(self.model_labels, self.targets, strict=True) if t is None]

    @property
    def missing(self) -> list[str]:
        """Canonical emotions the checkpoint cannot predict (they get probability 0)."""
        return [c for c in AUDIO_EMOTIONS[:7] if c not in self.classes]

    @property
    def matrix(self) -> np.ndarray:
        """(n_labels, n_classes) 0/1: checkpoint probabilities @ matrix = mmfer class probabilities."""
        m = np.zeros((len(self.model_labels), len(self.classes)), np.float32)
        for i, t in enumerate(self.targets):
            if t is not None:
                m[i, self.classes.index(t)] = 1.0
        return m

    def convert(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, n_labels) checkpoint probabilities -> (N, n_classes) renormalised, and (N,) unmapped mass."""
        probs = np.asarray(probs, np.float64)
        mapped = probs @ self.matrix
        kept = mapped.sum(-1, keepdims=True)
        out = np.divide(mapped, kept, out=np.full_like(mapped, 1.0 / mapped.shape[-1]), where=kept > 0)
        return out.astype(np.float32), (1.0 - kept[..., 0]).clip(0, 1).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint_labels": {lab: t for lab, t in zip(self.model_labels, self.targets, strict=True)},
                "classes": list(self.classes), "unmapped": self.unmapped, "missing": self.missing}


def map_labels(id2label: dict[Any, str], where: str) -> LabelMap:
    """Build the mapping; raises :class:`HFModelError` when no label names an emotion mmfer knows."""
    try:
        items = sorted(((int(k), str(v)) for k, v in id2label.items()), key=lambda kv: kv[0])
    except (TypeError, ValueError):
        raise HFModelError(f"{where}: id2label in config.json must map integer ids to names") from None
    if [i for i, _ in items] != list(range(len(items))):
        raise HFModelError(f"{where}: id2label ids are not 0..{len(items) - 1}")
    labels = tuple(v for _, v in items)
    targets = tuple(match_checkpoint_label(v) for v in labels)
    if all(t is None for t in targets):
        raise HFModelError(f"{where}: none of its labels {list(labels)} names an emotion mmfer knows "
                           "(a generic LABEL_i head, or not an emotion model); set id2label in its config.json")
    classes = tuple(c for c in _ORDER if c in targets)
    return LabelMap(labels, targets, classes)
