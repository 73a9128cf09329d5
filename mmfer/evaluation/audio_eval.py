"""Evaluate the audio branch: actor-disjoint cross-validation (the headline number), or a trained
model on a folder-per-label set of recordings. Same report format as the face branch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.audio.artifact import audio_classes
from mmfer.branches.registry import create_branch
from mmfer.config import AudioTrainCfg
from mmfer.data.ravdess import find_labelled_folder
from mmfer.evaluation.face_eval import _display_path
from mmfer.evaluation.metrics import classification_report
from mmfer.evaluation.report import write_oof, write_report


def _speakers(names: list[Any]) -> str:
    return ", ".join(f"{a:02d}" if isinstance(a, (int, np.integer)) else str(a) for a in names)


def _per_corpus_section(cv: dict[str, Any]) -> str:
    from mmfer.evaluation.speech_scoring import corpus_table

    rows = cv["per_corpus"]
    lines = corpus_table(rows, "Per corpus (out-of-fold, each speaker scored by the fold that never saw them)")
    lines += ["", "| corpus | own-class accuracy per fold | mean ± std |", "|---|---|---|"]
    for r in rows:
        o = r["own"]
        folds = ", ".join(f"{100 * a:.1f}" for a in o["fold_accuracy"])
        lines.append(f"| {r['corpus']} | {folds} | {100 * o['accuracy_mean']:.1f} ± {100 * o['accuracy_std']:.1f} |")
    lines += ["", "Own classes: the corpus's labels the model knows (RAVDESS: all 8, calm its own class); "
              "4-class: angry, happy, neutral, sad. Where a corpus lacks calm, the model's calm probability counts "
              "as neutral (as in every user-facing prediction); probabilities are renormalised over the classes "
              "scored."]
    return "\n".join(lines)


def _cv_section(cv: dict[str, Any]) -> str:
    agg = cv["aggregate"]["metrics"]
    lines = [f"## Speaker-disjoint {len(cv['folds'])}-fold cross-validation (headline: mean ± std over folds)", "",
             "| metric | mean | std |", "|---|---|---|"]
    names = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("balanced_accuracy", "UAR (balanced acc.)"))
    for name, label in names:
        m = agg[name]
        lines.append(f"| {label} | {m['mean']:.4f} | {m['std']:.4f} |")
    lines += ["", "| fold | test speakers | clips | accuracy | macro F1 | UAR |", "|---|---|---|---|---|---|"]
    for row in cv["folds"]:
        actors = _speakers(row["test_actors"])
        lines.append(f"| {row['fold']} | {actors} | {row['n']} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} "
                     f"| {row['uar']:.4f} |")
    lines += ["", "Each speaker is in exactly one test fold and never in that fold's training data; each fold "
              "model is trained for a fixed number of epochs and scored once (no checkpoint or epoch chosen on "
              "test speakers). Random splits over clips put the same voices in training and test and are not "
              "comparable."]
    if cv.get("per_corpus"):
        lines += ["", _per_corpus_section(cv)]
    return "\n".join(lines)


def write_cv_report(cv: dict[str, Any], out_dir: str | Path, cfg: AudioTrainCfg, run_dir: str | Path | None = None
                    ) -> dict[str, Path]:
    agg = cv["aggregate"]["metrics"]
    meta = {
        "model": cfg.name,
        "protocol": f"speaker-disjoint {len(cv['folds'])}-fold cross-validation",
        "dataset": ",".join(cfg.data.corpora) if cfg.data.corpora else cfg.data.dataset,
        "clips": cv["n_clips"],
        "accuracy_mean": round(agg["accuracy"]["mean"], 4),
        "accuracy_std": round(agg["accuracy"]["std"], 4),
        "macro_f1_mean": round(agg["macro_f1"]["mean"], 4),
        "macro_f1_std": round(agg["macro_f1"]["std"], 4),
        "data_hash": cv["data_hash"],
        "run_dir": _display_path(str(run_dir)) if run_dir else None,
        "folds": cv["folds"],
        "per_corpus": cv.get("per_corpus"),
        "aggregate": cv["aggregate"],
        "config": cv["config"],
    }
    paths = write_report(cv["pooled"], out_dir, f"{cfg.name}: speech emotion, speaker-disjoint cross-validation",
                         meta, y_true=cv.get("y"), probs=cv.get("probs"), sections=[_cv_section(cv)],
                         summary_title="All folds' predictions pooled")
    if cv.get("probs") is not None:  # what the fusion calibrates the audio branch on
        extra = {"corpus": np.asarray(cv["corpus"])} if cv.get("corpus") is not None else {}
        paths["oof_predictions"] = write_oof(out_dir, classes=np.array(audio_classes(cfg.model.num_classes)),
                                             y=cv["y"], probs=cv["probs"], fold=cv["fold"], **extra)
    return paths


def write_loco_report(res: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """``loco.json`` and ``loco.md`` of :func:`mmfer.training.train_audio.leave_one_corpus_out`'s result."""
    from mmfer.evaluation.speech_scoring import cells

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "loco.json", "markdown": out / "loco.md"}
    paths["json"].write_text(json.dumps(res, indent=2, default=str) + "\n")
    lines = ["# Leave-one-corpus-out", "", "Trained on the other corpora, scored on the held-out one over the classes "
             "both sides know (probabilities renormalised over them); no speaker or corpus on both sides.", "",
             "| held out | language | trained on | shared classes | n | accuracy | UAR | macro-F1 | 4-class n | "
             "4-class accuracy | 4-class UAR |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["loco"]:
        lines.append(f"| {r['held_out']} | {r['language']} | {', '.join(r['trained_on'])} | {len(r['classes'])} | "
                     f"{cells(r)} | {cells(r.get('core'), with_f1=False)} |")
    lines += ["", "4-class: angry, happy, neutral, sad (chance 25%). A model trained with RAVDESS's calm counts its "
              "calm probability as neutral on corpora without calm."]
    paths["markdown"].write_text("\n".join(lines) + "\n")
    return paths


def _file_probs(rec: Any, path: str | Path, skipped: list[str]) -> list[float] | None:
    """The model's probabilities for one recording, or None (and why, appended to ``skipped``) when it
    cannot be read or holds no sound."""
    try:
        pred = rec.predict_file(path)
    except ValueError as exc:
        skipped.append(str(exc))
        return None
    if pred.emotion is None:
        skipped.append(f"{path}: silent")
        return None
    return [pred.probabilities[c] for c in rec.classes]


def evaluate_audio_folder(model: str | Path | None, data_dir: str | Path, out_dir: str | Path | None = None,
                          local_files_only: bool = False, trust_remote_code: bool = False) -> dict[str, Any]:
    """Score a trained model (mmfer's, or a transformers audio classifier) on ``data_dir/<emotion>/*``
    recordings; writes a report when ``out_dir`` is given."""
    rec = create_branch("audio", model, local_files_only=local_files_only,
                        trust_remote_code=trust_remote_code).recognizer
    items = find_labelled_folder(data_dir)
    y, probs, skipped = [], [], []
    for path, label in items:
        if label not in rec.classes:
            skipped.append(f"{path}: label {label} is not a class of the model")
            continue
        p = _file_probs(rec, path, skipped)
        if p is not None:
            y.append(rec.classes.index(label))
            probs.append(p)
    if not y:
        raise ValueError(f"{data_dir}: no usable recordings ({len(skipped)} skipped)")
    yt, pr = np.array(y), np.array(probs)
    rep = classification_report(yt, pr, rec.classes)
    rep["skipped"] = skipped
    if out_dir:
        meta = {"model": rec.card.get("name"), "data": _display_path(str(data_dir)), "skipped": len(skipped)}
        rep["paths"] = write_report(rep, out_dir, f"{rec.card.get('name')} on {Path(data_dir).name}", meta, yt, pr)
    return rep


def evaluate_audio_corpora(model: str | Path | None, corpora: str, data_root: str | Path | None = None,
                           out_dir: str | Path | None = None, local_files_only: bool = False,
                           trust_remote_code: bool = False) -> dict[str, Any]:
    """Score a trained model on whole speech corpora (``"emovo,casia"``), each on its own classes the model
    knows and on the core four (see :mod:`mmfer.evaluation.speech_scoring`); writes ``corpora.{json,md}``
    when ``out_dir`` is given. A clip that cannot be read or is silent is skipped and listed."""
    from mmfer.data.speech_corpora import corpus_classes, load_speech_corpora
    from mmfer.evaluation.speech_scoring import corpus_rows, corpus_table

    rec = create_branch("audio", model, local_files_only=local_files_only,
                        trust_remote_code=trust_remote_code).recognizer
    clips = load_speech_corpora(corpora, data_root)
    labels, names, probs, skipped = [], [], [], []
    for c in clips:
        p = _file_probs(rec, c.path, skipped)
        if p is not None:
            labels.append(c.label)
            names.append(c.corpus)
            probs.append(p)
    if not labels:
        raise ValueError(f"{corpora}: no usable recordings ({len(skipped)} skipped)")
    rows = corpus_rows(labels, names, np.array(probs), rec.classes, corpus_classes(clips))
    res = {"model": rec.card.get("name"), "corpora": rows, "skipped": skipped}
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "corpora.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        md = [f"# {rec.card.get('name')} on {corpora}", "", *corpus_table(rows, "Whole corpora"), "",
              f"Skipped clips: {len(skipped)}."]
        (out / "corpora.md").write_text("\n".join(md) + "\n")
        res["paths"] = {"json": out / "corpora.json", "markdown": out / "corpora.md"}
    return res
