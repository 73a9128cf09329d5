"""Cross-validate (leave-one-subject-out) and ship the temporal head trained on all CK+ clips:

    python scripts/ship_video_model.py --config configs/video_ckplus_cpu.yaml --data-root ../shared/data \\
        --set data.detector=yunet --set data.yunet_model=../shared/models/yunet/yunet_n_640_640.onnx

Writes reports/video/<name>/ and mmfer/weights/<name>/ (safetensors + card with the CV summary).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from mmfer.config import VideoTrainCfg, load_config
from mmfer.evaluation.video_eval import write_video_cv_report
from mmfer.paths import WEIGHTS_DIR
from mmfer.training.train_video import cross_validate_video, train_video

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data-root")
    ap.add_argument("--runs", type=Path, default=REPO / "runs")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    overrides = args.overrides + ([f"data.root={args.data_root}"] if args.data_root else [])
    cfg: VideoTrainCfg = load_config(args.config, VideoTrainCfg, overrides)
    cv = cross_validate_video(cfg, args.runs / f"{cfg.name}_cv")
    write_video_cv_report(cv, REPO / "reports" / "video" / cfg.name, cfg)
    a, b = cv["aggregate"]["metrics"], cv["baseline"]["metrics"]
    summary = {"protocol": f"leave-one-subject-out CV, {cv['n_clips']} CK+ clips, {cv['n_subjects']} subjects",
               "accuracy_mean": round(a["accuracy"]["mean"], 4), "accuracy_std": round(a["accuracy"]["std"], 4),
               "macro_f1_mean": round(a["macro_f1"]["mean"], 4),
               "frame_average_accuracy_mean": round(b["accuracy"]["mean"], 4), "folds": cv["folds"],
               "report": f"reports/video/{cfg.name}/report.md"}
    print(f"LOSO accuracy {summary['accuracy_mean']:.4f} ± {summary['accuracy_std']:.4f} "
          f"(frame average {summary['frame_average_accuracy_mean']:.4f})")
    model_dir = train_video(cfg, args.runs / cfg.name, metrics={"cross_validation": summary})
    dest = WEIGHTS_DIR / cfg.name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model_dir / "model.safetensors", dest / "model.safetensors")
    # The CV's out-of-fold predictions travel with the model: the fusion calibrates on them.
    shutil.copy2(REPO / "reports" / "video" / cfg.name / "oof_predictions.npz", dest / "oof_predictions.npz")
    card = json.loads((model_dir / "card.json").read_text())
    card["config"]["data"].update({"root": None, "yunet_model": None, "detector": "auto"})  # machine-specific
    (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"shipped {dest}")


if __name__ == "__main__":
    main()
