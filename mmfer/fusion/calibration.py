"""Temperature scaling (Guo et al., 2017) of a branch's probabilities, fitted on that branch's own
held-out predictions, with the expected calibration error before and after (the ECE lives here,
beside the temperature it judges; :mod:`mmfer.evaluation.metrics` re-exports it)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

T_BOUNDS = (0.05, 20.0)
ECE_BINS = 15


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over equal-width confidence bins (0, 1] of |accuracy - confidence| * bin share."""
    y = np.asarray(y_true).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds confidences in (edges[b], edges[b + 1]]; a confidence of exactly 0 goes to bin 0
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the same as dividing the logits by T (log p differs from them by a constant)."""
    z = _log(probs) / temperature
    z -= z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-_log(probs)[np.arange(len(y)), y].mean())


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T in T_BOUNDS that minimises the negative log-likelihood of the labels ``y``."""
    from scipy.optimize import minimize_scalar  # ~1 s to import: only when fitting, never for inference

    y = np.asarray(y)
    if len(y) == 0:
        raise ValueError("no predictions to fit a temperature on")
    res = minimize_scalar(lambda lt: nll(apply_temperature(probs, float(np.exp(lt))), y),
                          bounds=tuple(np.log(T_BOUNDS)), method="bounded")
    return float(np.exp(res.x))


@dataclasses.dataclass
class Calibration:
    temperature: float
    source: str  # what it was fitted on
    n: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def calibrate(probs: np.ndarray, y: np.ndarray, source: str) -> Calibration:
    """Fit T on (probs, y) and report ECE/NLL before and after on the same predictions."""
    t = fit_temperature(probs, y)
    after = apply_temperature(probs, t)
    return Calibration(t, source, int(len(y)), expected_calibration_error(y, probs),
                       expected_calibration_error(y, after), nll(probs, y), nll(after, y))
