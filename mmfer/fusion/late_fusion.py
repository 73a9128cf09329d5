"""Late fusion whose fused score is an exact sum of per-modality terms.

Every branch gives probabilities over the canonical :data:`~mmfer.emotions.EMOTIONS` (audio folds
calm into neutral first). For a present modality m, on the classes it was trained on (``known``):

    p~_m = temperature-scaled p_m, renormalised on its known classes, floored by a little uniform mass
    c_m,k = w_m * (log p~_m,k - log prior_m,k)      (its evidence: a log-likelihood ratio)
    c_m,k = 0 for classes m never saw                 (no evidence either way)

and the fused score is ``s_k = log prior_ref,k + sum_m c_m,k``, ``p = softmax(s)``. This is the
product of experts under conditional independence with each branch's own training prior divided
out, so no paired multimodal data are needed; ``w_m`` are reliability weights (1 by default,
fittable where paired data exist). The reference prior is that of the first present modality
in MODALITIES order, so a lone branch passes through unchanged (up to its calibration).
Contributions are therefore exact: ``scores == prior_term + sum(contributions)``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.emotions import EMOTIONS, NUM_EMOTIONS
from mmfer.fusion.calibration import apply_temperature

MODALITIES: tuple[str, ...] = ("face", "temporal", "audio", "scene")


class FusionError(ValueError):
    """A fusion config or input that cannot be used."""


def class_prior(counts: Any, smoothing: float = 1.0) -> list[float]:
    """Laplace-smoothed class distribution over EMOTIONS from training counts."""
    c = np.asarray(counts, np.float64)
    if c.shape != (NUM_EMOTIONS,) or (c < 0).any():
        raise FusionError(f"class counts must be {NUM_EMOTIONS} non-negative numbers, got {counts!r}")
    p = (c + smoothing) / (c.sum() + smoothing * NUM_EMOTIONS)
    return [round(float(v), 6) for v in p]


@dataclasses.dataclass
class ModalityCal:
    """How one branch enters the fusion (all of it is data, stored in the fusion card)."""

    temperature: float = 1.0
    weight: float = 1.0
    prior: list[float] | None = None  # its training class distribution over EMOTIONS (None: uniform)
    known: list[bool] | None = None  # the classes it was trained on (None: all)
    floor: float = 1e-3  # uniform mass mixed in so one confident zero cannot veto a class
    calibration: dict[str, Any] | None = None  # how the temperature was fitted (source, n, ECE before/after)
    model: str | None = None  # the branch model these numbers belong to

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise FusionError(f"temperature must be positive, got {self.temperature}")
        if not (self.weight >= 0 and np.isfinite(self.weight)):
            raise FusionError(f"weight must be >= 0, got {self.weight}")
        for name in ("prior", "known"):
            v = getattr(self, name)
            if v is not None and len(v) != NUM_EMOTIONS:
                raise FusionError(f"{name} must list {NUM_EMOTIONS} values (one per {', '.join(EMOTIONS)})")
        if self.prior is not None and (min(self.prior) <= 0 or abs(sum(self.prior) - 1) > 1e-3):
            raise FusionError("prior must be positive and sum to 1 (smooth training counts with class_prior)")
        if self.known is not None and sum(self.known) < 2:
            raise FusionError("a modality must know at least two classes")

    @property
    def known_mask(self) -> np.ndarray:
        return np.ones(NUM_EMOTIONS, bool) if self.known is None else np.asarray(self.known, bool)

    @property
    def log_prior(self) -> np.ndarray:
        p = np.full(NUM_EMOTIONS, 1 / NUM_EMOTIONS) if self.prior is None else np.asarray(self.prior, np.float64)
        return np.log(p)

    def evidence(self, probs: np.ndarray) -> np.ndarray:
        """(..., 7) probabilities -> (..., 7) contributions c_m (zero on unknown classes)."""
        p = np.asarray(probs, np.float64)
        if p.shape[-1] != NUM_EMOTIONS or not np.isfinite(p).all() or (p < 0).any():
            raise FusionError(f"expected finite non-negative probabilities over {NUM_EMOTIONS} emotions, "
                              f"got shape {p.shape}")
        k = self.known_mask
        pk = p[..., k]
        total = pk.sum(-1, keepdims=True)
        pk = np.where(total > 0, pk / np.where(total > 0, total, 1), 1 / k.sum())
        pk = apply_temperature(pk, self.temperature)
        pk = (1 - self.floor) * pk + self.floor / k.sum()
        lp = self.log_prior[k]
        lp = lp - np.log(np.exp(lp).sum())  # the prior restricted to the known classes
        out = np.zeros(p.shape, np.float64)
        out[..., k] = self.weight * (np.log(pk) - lp)
        return out


@dataclasses.dataclass
class FusionResult:
    probs: np.ndarray  # (7,) fused probabilities
    prior_term: np.ndarray  # (7,) log prior of the reference modality
    contributions: dict[str, np.ndarray]  # modality -> (7,) its exact additive term
    reference: str  # whose prior is the prior term

    @property
    def scores(self) -> np.ndarray:
        return self.prior_term + sum(self.contributions.values())

    @property
    def emotion(self) -> str:
        return EMOTIONS[int(self.probs.argmax())]

    def pushes(self) -> dict[str, float]:
        """How far each modality moved the winning class's score above the average class: the
        centred contributions at the winner; with the prior's they sum to the winner's centred score."""
        k = int(self.probs.argmax())
        out = {m: float(c[k] - c.mean()) for m, c in self.contributions.items()}
        out["prior"] = float(self.prior_term[k] - self.prior_term.mean())
        return out

    def to_dict(self) -> dict[str, Any]:
        r = lambda v: {e: round(float(x), 4) for e, x in zip(EMOTIONS, v, strict=True)}  # noqa: E731
        return {"emotion": self.emotion, "probabilities": r(self.probs), "modalities": list(self.contributions),
                "prior": {"from": self.reference, "log_prior": r(self.prior_term)},
                "contributions": {m: r(c) for m, c in self.contributions.items()},
                "push_to_winner": {m: round(v, 4) for m, v in self.pushes().items()}}


def _softmax(s: np.ndarray) -> np.ndarray:
    z = s - s.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


class LateFusion:
    """Fuse any subset of MODALITIES; a card (JSON) holds every number it uses."""

    def __init__(self, modalities: Mapping[str, ModalityCal], name: str = "fusion"):
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise FusionError(f"unknown modalities {sorted(unknown)}; expected some of {list(MODALITIES)}")
        self.modalities = dict(modalities)
        self.name = name

    def _present(self, outputs: Mapping[str, Any]) -> list[str]:
        extra = set(outputs) - set(self.modalities)
        if extra:
            raise FusionError(f"no fusion settings for {sorted(extra)} (this fusion has {list(self.modalities)})")
        present = [m for m in MODALITIES if m in outputs and outputs[m] is not None]
        if not present:
            raise FusionError("nothing to fuse: no modality gave a prediction")
        return present

    def fuse(self, outputs: Mapping[str, Any]) -> FusionResult:
        """One sample: ``{"face": probs7, "audio": probs7, ...}`` (missing/None modalities are skipped)."""
        present = self._present(outputs)
        contrib = {m: self.modalities[m].evidence(np.asarray(outputs[m])) for m in present}
        prior = self.modalities[present[0]].log_prior
        return FusionResult(_softmax(prior + sum(contrib.values())), prior, contrib, present[0])

    def fuse_batch(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N, 7) arrays per modality -> (N, 7) fused probabilities (same maths as ``fuse``)."""
        present = self._present(outputs)
        s = self.modalities[present[0]].log_prior + sum(self.modalities[m].evidence(outputs[m]) for m in present)
        return _softmax(s)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "fusion", "name": self.name, "classes": list(EMOTIONS),
                "modalities": {m: dataclasses.asdict(c) for m, c in self.modalities.items()}}

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> LateFusion:
        p = Path(path)
        try:
            doc = json.loads(p.read_text())
            if doc.get("kind") != "fusion":
                raise FusionError("not a fusion card")
            if list(doc.get("classes", [])) != list(EMOTIONS):
                raise FusionError(f"classes {doc.get('classes')} are not {list(EMOTIONS)}")
            mods = {m: ModalityCal(**c) for m, c in doc["modalities"].items()}
        except FileNotFoundError:
            raise FusionError(f"{p}: no such fusion card") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError, FusionError) as exc:
            raise FusionError(f"{p}: {exc}") from None
        return cls(mods, doc.get("name", p.stem))
