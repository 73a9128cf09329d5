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


def _cv_section(cv: dict[str, Any]) -> str:
    agg = cv["aggregate"]["metrics"]
    lines = [f"## Actor-disjoint {len(cv['folds'])}-fold cross-validation (headline: mean ± std over folds)", "",
             "| metric | mean | std |", "|---|---|---|"]
    names = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("balanced_accuracy", "UAR (balanced acc.)"))
    for name, label in names:
        m = agg[name]
        lines.append(f"| {label} | {m['mean']:.4f} | {m['std']:.4f} |")
    lines += ["", "| fold | test actors | clips | accuracy | macro F1 | UAR |", "|---|---|---|---|---|---|"]
    for row in cv["folds"]:
        actors = ", ".join(f"{a:02d}" for a in row["test_actors"])
        lines.append(f"| {row['fold']} | {actors} | {row['n']} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} "
                     f"| {row['uar']:.4f} |")
    lines += ["", "Each actor is in exactly one test fold and never in that fold's training data; each fold "
              "model is trained for a fixed number of epochs and scored once (no checkpoint or epoch chosen on "
              "test actors). Random splits over clips put the same voices in training and test and are not "
              "comparable."]
    return "\n".join(lines)


def write_cv_report(cv: dict[str, Any], out_dir: str | Path, cfg: AudioTrainCfg, run_dir: str | Path | None = None
                    ) -> dict[str, Path]:
    agg = cv["aggregate"]["metrics"]
    meta = {
        "model": cfg.name,
        "protocol": f"actor-disjoint {len(cv['folds'])}-fold cross-validation",
        "dataset": cfg.data.dataset,
        "clips": cv["n_clips"],
        "accuracy_mean": round(agg["accuracy"]["mean"], 4),
        "accuracy_std": round(agg["accuracy"]["std"], 4),
        "macro_f1_mean": round(agg["macro_f1"]["mean"], 4),
        "macro_f1_std": round(agg["macro_f1"]["std"], 4),
        "data_hash": cv["data_hash"],
        "run_dir": _display_path(str(run_dir)) if run_dir else None,
        "folds": cv["folds"],
        "aggregate": cv["aggregate"],
        "config": cv["config"],
    }
    paths = write_report(cv["pooled"], out_dir, f"{cfg.name}: speech emotion, actor-disjoint cross-validation",
                         meta, y_true=cv.get("y"), probs=cv.get("probs"), sections=[_cv_section(cv)],
                         summary_title="All folds' predictions pooled")
    if cv.get("probs") is not None:  # what the fusion calibrates the audio branch on
        paths["oof_predictions"] = write_oof(out_dir, classes=np.array(audio_classes(cfg.model.num_classes)),
                                             y=cv["y"], probs=cv["probs"], fold=cv["fold"])
    return paths


def write_loco_report(res: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """``loco.json`` and ``loco.md`` of :func:`mmfer.training.train_audio.leave_one_corpus_out`'s result."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "loco.json", "markdown": out / "loco.md"}
    paths["json"].write_text(json.dumps(res, indent=2, default=str) + "\n")
    lines = ["# Leave-one-corpus-out", "", "Trained on the other corpora, scored on the held-out one over the classes "
             "both sides know (probabilities renormalised over them); no speaker or corpus on both sides.", "",
             "| held out | language | trained on | classes | n | accuracy | UAR | macro-F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["loco"]:
        lines.append(f"| {r['held_out']} | {r['language']} | {', '.join(r['trained_on'])} | {len(r['classes'])} | "
                     f"{r['n']} | {100 * r['accuracy']:.1f} | {100 * r['uar']:.1f} | {100 * r['macro_f1']:.1f} |")
    paths["markdown"].write_text("\n".join(lines) + "\n")
    return paths


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
        try:
            pred = rec.predict_file(path)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        if pred.emotion is None:
            skipped.append(f"{path}: silent")
            continue
        y.append(rec.classes.index(label))
        probs.append([pred.probabilities[c] for c in rec.classes])
    if not y:
        raise ValueError(f"{data_dir}: no usable recordings ({len(skipped)} skipped)")
    yt, pr = np.array(y), np.array(probs)
    rep = classification_report(yt, pr, rec.classes)
    rep["skipped"] = skipped
    if out_dir:
        meta = {"model": rec.card.get("name"), "data": _display_path(str(data_dir)), "skipped": len(skipped)}
        rep["paths"] = write_report(rep, out_dir, f"{rec.card.get('name')} on {Path(data_dir).name}", meta, yt, pr)
    return rep
