"""Uncertainty for accuracies measured on few clips: percentile bootstrap intervals over samples
(scipy.stats.bootstrap) and the exact McNemar test of two classifiers on the same samples."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(correct: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval for the mean of 0/1 ``correct`` by resampling samples with replacement."""
    c = np.asarray(correct, np.float64)
    if len(c) == 0:
        return float("nan"), float("nan")
    if c.min() == c.max():  # every resample has the same mean
        return float(c[0]), float(c[0])
    from scipy.stats import bootstrap

    res = bootstrap((c,), np.mean, confidence_level=level, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> dict[str, float | int]:
    """Exact (binomial) McNemar test: does A differ from B on the samples where exactly one is right?
    ``a_only``/``b_only`` count those samples; ``p`` is two-sided (1.0 when they never disagree)."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs paired results, got {a.shape} and {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    if a_only + b_only == 0:
        return {"a_only": 0, "b_only": 0, "p": 1.0}
    from scipy.stats import binomtest

    return {"a_only": a_only, "b_only": b_only, "p": float(binomtest(a_only, a_only + b_only, 0.5).pvalue)}
