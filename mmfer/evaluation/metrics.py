"""Classification metrics shared by the face, audio and video branches.

Everything returned is plain Python (floats, ints, lists, None), so it can go straight to JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from mmfer.fusion.calibration import ECE_BINS, expected_calibration_error

__all__ = ["ECE_BINS", "SCALAR_METRICS", "aggregate_folds", "classification_report", "expected_calibration_error",
           "negative_log_likelihood", "roc_curves"]

#: Scalar metrics summarised by :func:`aggregate_folds`.
SCALAR_METRICS = ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "nll", "ece", "macro_auc")
_EPS = 1e-12


def _check_inputs(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"probs must have shape (N, {k}) for {k} classes, got {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} labels but probs has {p.shape[0]} rows")
    if y.size == 0:
        raise ValueError("cannot report on an empty set (N = 0)")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"y_true holds labels outside 0..{k - 1}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs holds NaN or infinite values")
    return y, p


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean -log p(true class), probabilities clipped at 1e-12."""
    y = np.asarray(y_true).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0)).mean())


def _has_both(y: np.ndarray, k: int) -> bool:
    """One-vs-rest AUC for class k needs positives and negatives."""
    pos = int((y == k).sum())
    return 0 < pos < len(y)


def roc_curves(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One-vs-rest ROC per class: {cls: {"fpr", "tpr", "auc"}}; None entries where the class is absent
    from y_true (or is every sample), since the curve is then undefined."""
    y, p = _check_inputs(y_true, probs, classes)
    out: dict[str, dict[str, Any]] = {}
    for k, cls in enumerate(classes):
        if not _has_both(y, k):
            out[cls] = {"fpr": None, "tpr": None, "auc": None}
            continue
        fpr, tpr, _ = roc_curve(y == k, p[:, k])
        out[cls] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": float(roc_auc_score(y == k, p[:, k]))}
    return out


def _confusion_block(counts: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    counts = np.asarray(counts, dtype=np.int64)
    rows = counts.sum(1, keepdims=True)
    normalized = np.divide(counts, rows, out=np.zeros(counts.shape, np.float64), where=rows > 0)
    return {"labels": list(classes), "counts": counts.tolist(), "normalized": normalized.tolist()}


def classification_report(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, F1, per-class precision/recall/F1/AUC, confusion matrix, NLL and ECE.

    Predictions are ``probs.argmax(1)``. ``macro_f1`` averages over the classes present in
    y_true or the predictions (scikit-learn's default); ``balanced_accuracy`` is the mean recall
    over classes present in y_true. A class absent from y_true has ``auc`` None, and
    ``macro_auc`` averages the classes that have one (None if none do).
    """
    y, p = _check_inputs(y_true, probs, classes)
    classes = list(classes)
    k = len(classes)
    labels = list(range(k))
    pred = p.argmax(1)
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    curves = roc_curves(y, p, classes)
    per_class = {
        cls: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "auc": curves[cls]["auc"],
        }
        for i, cls in enumerate(classes)
    }
    aucs = [v["auc"] for v in per_class.values() if v["auc"] is not None]
    present = support > 0
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, average="weighted", zero_division=0)),
        "balanced_accuracy": float(rec[present].mean()),
        "nll": negative_log_likelihood(y, p),
        "ece": expected_calibration_error(y, p, ECE_BINS),
        "per_class": per_class,
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "confusion": _confusion_block(confusion_matrix(y, pred, labels=labels), classes),
    }


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None, 0
    arr = np.asarray(vals, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=0)), len(vals)


def aggregate_folds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and population std (ddof=0) of each scalar metric over cross-validation folds.

    Folds where a metric is None (e.g. ``macro_auc``) are left out of that metric's mean and
    std; ``count`` says how many folds contributed. Per-class precision/recall/F1/AUC are
    averaged the same way. The confusion matrices are summed, and ``pooled_accuracy`` is the
    accuracy of that summed matrix (every sample weighted equally, unlike the fold mean).
    """
    if not reports:
        raise ValueError("aggregate_folds needs at least one fold report")
    classes = reports[0]["confusion"]["labels"]
    for i, r in enumerate(reports[1:], start=1):
        if r["confusion"]["labels"] != classes:
            raise ValueError(f"fold {i} has classes {r['confusion']['labels']}, fold 0 has {classes}")
    metrics: dict[str, dict[str, Any]] = {}
    for name in SCALAR_METRICS:
        values = [r.get(name) for r in reports]
        mean, std, count = _mean_std(values)
        metrics[name] = {"mean": mean, "std": std, "count": count, "folds": values}
    per_class: dict[str, dict[str, Any]] = {}
    for cls in classes:
        entry: dict[str, Any] = {}
        for field in ("precision", "recall", "f1", "auc"):
            mean, std, _ = _mean_std([r["per_class"][cls][field] for r in reports])
            entry[field] = {"mean": mean, "std": std}
        entry["support"] = int(sum(r["per_class"][cls]["support"] for r in reports))
        per_class[cls] = entry
    counts = np.sum([np.asarray(r["confusion"]["counts"], np.int64) for r in reports], axis=0)
    total = int(counts.sum())
    return {
        "n_folds": len(reports),
        "n": int(sum(r["n"] for r in reports)),
        "std_ddof": 0,
        "metrics": metrics,
        "per_class": per_class,
        "pooled_accuracy": float(np.trace(counts) / total) if total else None,
        "confusion": _confusion_block(counts, classes),
    }
