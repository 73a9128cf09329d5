"""Build, measure and ship the default speech emotion model, resumably, in one command:

1. actor-disjoint k-fold cross-validation of the recipe (one model per fold, fixed epochs,
   each scored once on its unseen actors) -> reports/audio/<name>/ (the headline number);
2. the same recipe trained on every actor -> runs/<name>/model;
3. that model copied into mmfer/weights/<name>, its card carrying the CV summary.

    python scripts/ship_audio_model.py --config configs/audio_crnn_cpu.yaml --data-root ../shared/data

Interrupted? Run the same command again: finished folds are kept, a fold in progress resumes
from its last epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from mmfer.config import AudioTrainCfg, load_config
from mmfer.evaluation.audio_eval import write_cv_report
from mmfer.paths import WEIGHTS_DIR
from mmfer.training.train_audio import cross_validate, train_audio

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data-root")
    ap.add_argument("--runs", type=Path, default=REPO / "runs")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    overrides = args.overrides + ([f"data.root={args.data_root}"] if args.data_root else [])
    cfg: AudioTrainCfg = load_config(args.config, AudioTrainCfg, overrides)

    cv_dir = args.runs / f"{cfg.name}_cv"
    cv = cross_validate(cfg, cv_dir)
    report_dir = REPO / "reports" / "audio" / cfg.name
    write_cv_report(cv, report_dir, cfg, cv_dir)
    agg = cv["aggregate"]["metrics"]
    summary = {
        "protocol": f"actor-disjoint {len(cv['folds'])}-fold CV on RAVDESS speech",
        "accuracy_mean": round(agg["accuracy"]["mean"], 4),
        "accuracy_std": round(agg["accuracy"]["std"], 4),
        "macro_f1_mean": round(agg["macro_f1"]["mean"], 4),
        "macro_f1_std": round(agg["macro_f1"]["std"], 4),
        "uar_mean": round(agg["balanced_accuracy"]["mean"], 4),
        "folds": cv["folds"],
        "report": "reports/audio/" + cfg.name + "/report.md",
    }
    print(f"CV accuracy {summary['accuracy_mean']:.4f} ± {summary['accuracy_std']:.4f}, "
          f"macro-F1 {summary['macro_f1_mean']:.4f} ± {summary['macro_f1_std']:.4f} -> {report_dir}")

    model_dir = train_audio(cfg, args.runs / cfg.name, metrics={"cross_validation": summary})
    dest = WEIGHTS_DIR / cfg.name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model_dir / "model.safetensors", dest / "model.safetensors")
    # The CV's out-of-fold predictions travel with the model: the fusion calibrates on them.
    shutil.copy2(report_dir / "oof_predictions.npz", dest / "oof_predictions.npz")
    card = json.loads((model_dir / "card.json").read_text())
    card["config"]["data"]["root"] = None  # a path on the training machine means nothing to users
    (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"shipped {dest}")


if __name__ == "__main__":
    main()
