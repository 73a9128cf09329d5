"""Write an evaluation report folder: report.json, report.md and PNG figures.

Modality-neutral: the face, audio and video branches all pass a
:func:`~mmfer.evaluation.metrics.classification_report` dict plus free-form ``meta``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.evaluation.plots import plot_confusion, plot_roc

FILES = {
    "json": "report.json",
    "markdown": "report.md",
    "confusion": "confusion.png",
    "confusion_normalized": "confusion_normalized.png",
    "roc": "roc.png",
}


def mmfer_version() -> str | None:
    """The installed mmfer version, or None when it is run from a source tree without metadata."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("mmfer")
    except PackageNotFoundError:
        import mmfer

        return getattr(mmfer, "__version__", None)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _markdown(report: dict[str, Any], title: str, meta: dict[str, Any], has_roc: bool,
              sections: list[str] | None = None, summary_title: str = "Summary") -> str:
    lines = [f"# {title}", ""]
    for key, value in meta.items():
        if isinstance(value, (dict, list)):
            continue
        lines.append(f"- **{key}**: {value if value is not None else 'n/a'}")
    for section in sections or []:
        lines += ["", section.rstrip()]
    lines += [
        "",
        f"## {summary_title}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {_fmt(report['accuracy'])} |",
        f"| macro F1 | {_fmt(report['macro_f1'])} |",
        f"| macro AUC (one-vs-rest) | {_fmt(report.get('macro_auc'))} |",
        f"| ECE (15 bins, top-label) | {_fmt(report.get('ece'))} |",
        f"| weighted F1 | {_fmt(report.get('weighted_f1'))} |",
        f"| balanced accuracy | {_fmt(report.get('balanced_accuracy'))} |",
        f"| NLL | {_fmt(report.get('nll'))} |",
        f"| n | {report['n']} |",
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | AUC | support |",
        "|---|---|---|---|---|---|",
    ]
    for cls, m in report["per_class"].items():
        lines.append(f"| {cls} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} "
                     f"| {_fmt(m['auc'])} | {m['support']} |")
    labels = report["confusion"]["labels"]
    lines += [
        "",
        "## Confusion matrix (rows: true, columns: predicted)",
        "",
        "| true \\ predicted | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for cls, row in zip(labels, report["confusion"]["counts"], strict=True):
        lines.append(f"| **{cls}** | " + " | ".join(str(int(v)) for v in row) + " |")
    lines += [
        "",
        "## Figures",
        "",
        f"- [Confusion matrix (counts)]({FILES['confusion']})",
        f"- [Confusion matrix (row-normalised)]({FILES['confusion_normalized']})",
    ]
    if has_roc:
        lines.append(f"- [ROC curves, one-vs-rest]({FILES['roc']})")
    lines += ["", f"![confusion matrix]({FILES['confusion_normalized']})", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: str | Path, title: str, meta: dict[str, Any],
                 y_true: np.ndarray | None = None, probs: np.ndarray | None = None,
                 sections: list[str] | None = None, summary_title: str = "Summary") -> dict[str, Path]:
    """Write report.json, report.md, confusion.png, confusion_normalized.png (and roc.png when
    ``y_true`` and ``probs`` are given) to ``out_dir``; return {kind: path}.

    ``meta`` is stored under ``"meta"`` in report.json, with ``n``, ``timestamp`` (UTC ISO 8601)
    and ``mmfer_version`` filled in when missing. ``sections`` are Markdown blocks placed before
    the summary (e.g. cross-validation mean and std per fold).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full_meta = {
        **meta,
        "n": meta.get("n", report["n"]),
        "timestamp": meta.get("timestamp", datetime.now(timezone.utc).isoformat(timespec="seconds")),
        "mmfer_version": meta.get("mmfer_version", mmfer_version()),
    }
    has_roc = y_true is not None and probs is not None
    paths: dict[str, Path] = {}
    paths["confusion"] = plot_confusion(report, out / FILES["confusion"], normalized=False)
    paths["confusion_normalized"] = plot_confusion(report, out / FILES["confusion_normalized"], normalized=True)
    if has_roc:
        paths["roc"] = plot_roc(y_true, probs, report["confusion"]["labels"], out / FILES["roc"])
    body = {k: v for k, v in report.items() if k not in ("paths", "meta", "title")}
    doc = _jsonable({"title": title, "meta": full_meta, **body})
    paths["json"] = out / FILES["json"]
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n")
    paths["markdown"] = out / FILES["markdown"]
    paths["markdown"].write_text(_markdown(report, title, _jsonable(full_meta), has_roc, sections, summary_title))
    return paths


def write_oof(out_dir: str | Path, **arrays: np.ndarray) -> Path:
    """Out-of-fold predictions next to a cross-validation report (small: they are committed)."""
    path = Path(out_dir) / "oof_predictions.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path
