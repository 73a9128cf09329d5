"""Report of the temporal head's subject-disjoint cross-validation (same format as the other branches)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmfer.config import VideoTrainCfg
from mmfer.emotions import EMOTIONS
from mmfer.evaluation.report import write_oof, write_report


def _section(cv: dict[str, Any]) -> str:
    a, b = cv["aggregate"]["metrics"], cv["baseline"]["metrics"]
    lines = [f"## Leave-one-subject-out cross-validation ({cv['n_clips']} clips, {cv['n_subjects']} subjects)", "",
             "| model | accuracy (mean ± std over folds) | macro F1 |", "|---|---|---|",
             f"| temporal head (BiGRU + attention over frames) | {a['accuracy']['mean']:.4f} ± "
             f"{a['accuracy']['std']:.4f} "
             f"| {a['macro_f1']['mean']:.4f} ± {a['macro_f1']['std']:.4f} |",
             f"| per-frame face model, averaged over the clip | {b['accuracy']['mean']:.4f} ± "
             f"{b['accuracy']['std']:.4f} | {b['macro_f1']['mean']:.4f} ± {b['macro_f1']['std']:.4f} |", "",
             "| fold | test subject | clips | temporal head | frame average |", "|---|---|---|---|---|"]
    for r in cv["folds"]:
        lines.append(f"| {r['fold']} | {', '.join(r['test_subjects'])} | {r['n']} | {r['accuracy']:.4f} | "
                     f"{r['frame_average_accuracy']:.4f} |")
    lines += ["", "Every clip of a subject is in the same test fold and never in its training data; each fold is "
              "trained for a fixed number of epochs and scored once. With so few clips (3-5 per fold) the fold "
              "accuracies move in steps of 20-33 points: treat these numbers as a sanity check, not a benchmark."]
    return "\n".join(lines)


def write_video_cv_report(cv: dict[str, Any], out_dir: str | Path, cfg: VideoTrainCfg) -> dict[str, Path]:
    a = cv["aggregate"]["metrics"]["accuracy"]
    meta = {"model": cfg.name, "protocol": "leave-one-subject-out cross-validation", "dataset": cfg.data.dataset,
            "clips": cv["n_clips"], "subjects": cv["n_subjects"], "accuracy_mean": round(a["mean"], 4),
            "accuracy_std": round(a["std"], 4),
            "frame_average_accuracy_mean": round(cv["baseline"]["metrics"]["accuracy"]["mean"], 4),
            "folds": cv["folds"], "aggregate": cv["aggregate"], "baseline": cv["baseline"], "config": cv["config"]}
    paths = write_report(cv["pooled"], out_dir, f"{cfg.name}: temporal face emotion, subject-disjoint CV", meta,
                         y_true=cv["y"], probs=cv["probs"], sections=[_section(cv)],
                         summary_title="All folds' predictions pooled")
    # Out-of-fold clip predictions of the head and of the face model's frame average (fusion, ablations).
    paths["oof_predictions"] = write_oof(out_dir, classes=np.array(EMOTIONS), y=cv["y"], probs=cv["probs"],
                                         face_probs=cv["face_probs"], fold=cv["fold"], clips=np.array(cv["clips"]))
    return paths
