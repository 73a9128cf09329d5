"""Ship a trained face model: copy it into mmfer/weights/<name>, score it on the held-out split
(with and without flip TTA), record those numbers in its card and keep the reports.

    python scripts/ship_face_model.py runs/face_lite0/model --data-root ../shared/data

PrivateTest is only ever read here, after training and checkpoint selection (on PublicTest) are over.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from mmfer.evaluation.face_eval import evaluate_face
from mmfer.paths import WEIGHTS_DIR

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path, help="a training run's model folder (model.safetensors + card.json)")
    ap.add_argument("--name", help="shipped name (default: the card's name)")
    ap.add_argument("--data-root", help="dataset root (default: $MMFER_DATA_ROOT, then ./data)")
    ap.add_argument("--split", default="PrivateTest")
    args = ap.parse_args()

    card = json.loads((args.model_dir / "card.json").read_text())
    name = args.name or card["name"]
    dest = WEIGHTS_DIR / name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(args.model_dir / "model.safetensors", dest / "model.safetensors")
    card["name"] = name
    (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")

    scores = {}
    for tta in (False, True):
        out = REPO / "reports" / "face" / name / (args.split + ("_tta" if tta else ""))
        rep = evaluate_face(dest, split=args.split, data_root=args.data_root, tta_flip=tta, out_dir=out)
        scores["tta" if tta else "plain"] = rep
        print(f"{args.split} tta={tta}: accuracy {rep['accuracy']:.4f} macro-F1 {rep['macro_f1']:.4f} -> {out}")

    main_rep = scores["tta" if card["config"].get("tta_flip", True) else "plain"]
    card["metrics"][args.split] = {
        "accuracy": round(main_rep["accuracy"], 4),
        "macro_f1": round(main_rep["macro_f1"], 4),
        "accuracy_no_tta": round(scores["plain"]["accuracy"], 4),
        "accuracy_tta": round(scores["tta"]["accuracy"], 4),
        "n": main_rep["n"],
        "tta_flip": bool(card["config"].get("tta_flip", True)),
        "report": f"reports/face/{name}/{args.split}{'_tta' if card['config'].get('tta_flip', True) else ''}/report.md",
    }
    (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"shipped {name} -> {dest}")


if __name__ == "__main__":
    main()
