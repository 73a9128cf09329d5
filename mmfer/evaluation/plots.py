"""Report figures (confusion matrix, ROC curves), drawn with matplotlib's Agg backend: no display needed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mmfer.evaluation.metrics import roc_curves  # noqa: E402


def plot_confusion(report: dict[str, Any], path: str | Path, normalized: bool = False) -> Path:
    """Confusion matrix of a :func:`~mmfer.evaluation.metrics.classification_report` (rows: true class)."""
    conf = report["confusion"]
    labels = list(conf["labels"])
    data = np.asarray(conf["normalized"] if normalized else conf["counts"], dtype=np.float64)
    k = len(labels)
    size = max(4.5, 0.75 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    try:
        vmax = 1.0 if normalized else max(float(data.max()), 1.0)
        im = ax.imshow(data, cmap="Blues", vmin=0.0, vmax=vmax)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(k), labels=labels, rotation=45, ha="right")
        ax.set_yticks(range(k), labels=labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(k):
            for j in range(k):
                value = data[i, j]
                text = f"{value:.2f}" if normalized else f"{int(value)}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if value > 0.5 * vmax else "black")
        kind = "row-normalised" if normalized else "counts"
        ax.set_title(f"Confusion matrix ({kind}), n={report.get('n', int(np.sum(conf['counts'])))}\n"
                     f"accuracy {report['accuracy']:.4f}")
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    finally:
        plt.close(fig)
    return out


def plot_roc(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: str | Path) -> Path:
    """One-vs-rest ROC curve per class with its AUC in the legend; classes absent from y_true are listed as n/a."""
    curves = roc_curves(y_true, probs, classes)
    fig, ax = plt.subplots(figsize=(6.5, 6.0))
    try:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
        for cls, c in curves.items():
            if c["auc"] is None:
                ax.plot([], [], linestyle="none", label=f"{cls} (AUC n/a: no positives or negatives)")
                continue
            ax.plot(c["fpr"], c["tpr"], linewidth=1.5, label=f"{cls} (AUC {c['auc']:.3f})")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("ROC, one-vs-rest")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    finally:
        plt.close(fig)
    return out
