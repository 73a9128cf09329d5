"""Build, measure and ship the default speech emotion model, resumably, in one command:

1. speaker-disjoint k-fold cross-validation of the recipe (one model per fold, fixed epochs,
   each scored once on its unseen speakers) -> reports/audio/<name>/ (the headline number; with
   several corpora, per-corpus tables too);
2. with several corpora: leave-one-corpus-out (train on the others, score the held-out corpus and
   language) -> reports/audio/<name>/loco.md;
3. the same recipe trained on every speaker -> runs/<name>/model;
4. that model copied into mmfer/weights/<name>, its card carrying the CV (and LOCO) summary.

    python scripts/ship_audio_model.py --config configs/audio_crnn_cpu.yaml --data-root ../shared/data
    python scripts/ship_audio_model.py --config configs/audio_multicorpus_cpu.yaml --data-root ../shared/data

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
from mmfer.evaluation.audio_eval import write_cv_report, write_loco_report
from mmfer.paths import WEIGHTS_DIR
from mmfer.training.train_audio import cross_validate, leave_one_corpus_out, train_audio

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
    corpora = cfg.data.corpora
    summary = {
        "protocol": (f"speaker-disjoint {len(cv['folds'])}-fold CV on {', '.join(corpora)}" if corpora else
                     f"actor-disjoint {len(cv['folds'])}-fold CV on RAVDESS speech"),
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
    metrics: dict = {"cross_validation": summary}
    if corpora:
        summary["per_corpus"] = _without_confusions(cv["per_corpus"])
        loco = leave_one_corpus_out(cfg, args.runs / f"{cfg.name}_loco")
        write_loco_report(loco, report_dir)
        metrics["leave_one_corpus_out"] = {"report": f"reports/audio/{cfg.name}/loco.md",
                                           "held_out": _without_confusions(loco["loco"])}
        for r in loco["loco"]:
            core = r.get("core") or {}
            print(f"held out {r['held_out']}: accuracy {r['accuracy']:.4f} UAR {r['uar']:.4f}; "
                  f"4-class accuracy {core.get('accuracy', float('nan')):.4f}")

    model_dir = train_audio(cfg, args.runs / cfg.name, metrics=metrics)
    dest = WEIGHTS_DIR / cfg.name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model_dir / "model.safetensors", dest / "model.safetensors")
    # The CV's out-of-fold predictions travel with the model: the fusion calibrates on them.
    shutil.copy2(report_dir / "oof_predictions.npz", dest / "oof_predictions.npz")
    card = json.loads((model_dir / "card.json").read_text())
    card["config"]["data"]["root"] = None  # a path on the training machine means nothing to users
    (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"shipped {dest}")


def _without_confusions(rows: list[dict]) -> list[dict]:
    """Rows for a model card: the numbers, not the confusion matrices (those are in the reports)."""
    def strip(v: object) -> object:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "confusion"}
        return v
    return [strip(r) for r in rows]  # type: ignore[misc]


if __name__ == "__main__":
    main()
