"""Scoring a speech model on a corpus whose label set differs from the model's.

Corpora label different classes (CASIA has no disgust, only RAVDESS has calm), so a model is scored
on a stated class subset: the clips labelled in it, the model's probabilities folded to the canonical
vocabulary where the subset lacks an extra class (calm counts as neutral, as in every user-facing
prediction) and renormalised over the subset. The same rule serves leave-one-corpus-out, per-corpus
cross-validation and a shipped model scored on a corpus, so their numbers compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mmfer.emotions import EXTRA_CLASSES
from mmfer.evaluation.metrics import classification_report

#: The four classes every corpus here (and most speech corpora) labels: the cross-corpus headline.
CORE_CLASSES: tuple[str, ...] = ("angry", "happy", "neutral", "sad")


def restrict(labels: Sequence[str], probs: np.ndarray, model_classes: Sequence[str], keep: Sequence[str]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y over ``keep``, probabilities over ``keep``, the selected rows) for the clips labelled in ``keep``.

    An extra model class (calm) absent from ``keep`` adds its probability to its canonical class (neutral)
    first; a class of ``keep`` the model cannot predict raises ValueError (it would score as never right).
    """
    mc, keep = list(model_classes), list(keep)
    p = np.asarray(probs, dtype=np.float64).copy()
    for extra, canonical in EXTRA_CLASSES.items():
        if extra in mc and extra not in keep and canonical in mc:
            p[:, mc.index(canonical)] += p[:, mc.index(extra)]
    missing = [c for c in keep if c not in mc]
    if missing:
        raise ValueError(f"classes {missing} are not among the model's classes {mc}")
    rows = np.flatnonzero([lab in keep for lab in labels])
    q = p[rows][:, [mc.index(c) for c in keep]]
    q /= np.clip(q.sum(1, keepdims=True), 1e-12, None)
    y = np.array([keep.index(labels[i]) for i in rows], dtype=np.int64)
    return y, q, rows


def score_on(labels: Sequence[str], probs: np.ndarray, model_classes: Sequence[str], keep: Sequence[str]
             ) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1 and confusion of the clips labelled in ``keep`` (see :func:`restrict`)."""
    y, q, _ = restrict(labels, probs, model_classes, keep)
    if len(y) == 0:
        raise ValueError(f"no clip is labelled with any of {list(keep)}")
    rep = classification_report(y, q, tuple(keep))
    return {"classes": list(keep), "n": int(len(y)), "accuracy": rep["accuracy"], "uar": rep["balanced_accuracy"],
            "macro_f1": rep["macro_f1"], "confusion": rep["confusion"]}


def corpus_rows(labels: Sequence[str], corpora: Sequence[str], probs: np.ndarray, model_classes: Sequence[str],
                own_classes: dict[str, Sequence[str]]) -> list[dict[str, Any]]:
    """One row per corpus: scored on its own classes the model knows (``own``) and on :data:`CORE_CLASSES`
    (``core``, when the corpus labels all four)."""
    from mmfer.data.speech_corpora import LANGUAGES

    rows = []
    for name in sorted(set(corpora)):
        sel = np.flatnonzero(np.asarray(corpora) == name)
        lab = [labels[i] for i in sel]
        own = [c for c in own_classes[name] if c in model_classes]
        row: dict[str, Any] = {"corpus": name, "language": LANGUAGES.get(name, "?"),
                               "own": score_on(lab, probs[sel], model_classes, own)}
        if set(CORE_CLASSES) <= set(own_classes[name]):
            row["core"] = score_on(lab, probs[sel], model_classes, CORE_CLASSES)
        rows.append(row)
    return rows


def cells(score: dict[str, Any] | None, with_f1: bool = True) -> str:
    """``n | accuracy | UAR [| macro-F1]`` of a :func:`score_on` result, in percent ("-" when None)."""
    if score is None:
        return " | ".join(["-"] * (4 if with_f1 else 3))
    vals = [str(score["n"]), f"{100 * score['accuracy']:.1f}", f"{100 * score['uar']:.1f}"]
    return " | ".join(vals + ([f"{100 * score['macro_f1']:.1f}"] if with_f1 else []))


def corpus_table(rows: Sequence[dict[str, Any]], title: str) -> list[str]:
    """Markdown lines of :func:`corpus_rows`: accuracy / UAR / macro-F1 on own classes and on the core four."""
    lines = [f"### {title}", "", "| corpus | language | own classes | n | accuracy | UAR | macro-F1 | 4-class n | "
             "4-class accuracy | 4-class UAR |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o = r["own"]
        lines.append(f"| {r['corpus']} | {r['language']} | {len(o['classes'])} | {cells(o)} | "
                     f"{cells(r.get('core'), with_f1=False)} |")
    return lines
