"""The ``mmfer`` command: train, eval, predict, models.

Exit codes: 0 success; 1 some input failed (each named on stderr; the rest was processed);
2 bad usage, config or model (nothing was processed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="dataset root (default: $MMFER_DATA_ROOT, then ./data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmfer", description="Multimodal emotion recognition.")
    parser.add_argument("--version", action="version", version=f"mmfer {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model from a YAML config")
    train.add_argument("modality", choices=["face"])
    train.add_argument("--config", required=True, help="configs/face_*.yaml")
    train.add_argument("--out", help="run folder (default: runs/<config name>)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set trainer.epochs=5 (repeatable)")
    train.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    train.add_argument("--fast-dev-run", action="store_true", help="one batch of train and val, no export")
    _add_data_root(train)

    ev = sub.add_parser("eval", help="evaluate a model on a dataset split")
    ev.add_argument("modality", choices=["face"])
    ev.add_argument("--model", default=None, help="shipped model name or model folder (default: face_lite0)")
    ev.add_argument("--split", default="PrivateTest", help="Training | PublicTest | PrivateTest")
    ev.add_argument("--labels", default="fer2013", choices=["fer2013", "ferplus"], help="label source")
    ev.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False, help="flip test-time augmentation")
    ev.add_argument("--out", help="report folder (default: reports/face/<model>/<split>)")
    ev.add_argument("--limit", type=int, help="first N samples only (quick checks)")
    _add_data_root(ev)

    pr = sub.add_parser("predict", help="recognise emotions of every face in images or folders")
    pr.add_argument("paths", nargs="+", help="image files and/or folders")
    pr.add_argument("--json", action="store_true", help="one JSON document on stdout")
    pr.add_argument("--no-detect", action="store_true", help="treat each image as an already cropped face")
    pr.add_argument("--model", default=None, help="shipped model name or model folder")
    pr.add_argument("--detector", default="auto", choices=["auto", "yunet", "haar"])
    pr.add_argument("--yunet-model", help="YuNet ONNX file (default: $MMFER_YUNET_MODEL, cache, download)")
    pr.add_argument("--no-tta", action="store_true", help="no flip test-time augmentation")
    pr.add_argument("--device", default="auto")

    sub.add_parser("models", help="list the shipped models and their metrics")
    return parser


def _version() -> str:
    from mmfer import __version__

    return __version__


def _err(msg: str) -> None:
    print(f"mmfer: {msg}", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    from mmfer.config import FaceTrainCfg, load_config
    from mmfer.training.train_face import train_face

    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    cfg: FaceTrainCfg = load_config(args.config, FaceTrainCfg, overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    metrics = train_face(cfg, out, resume=not args.no_resume, fast_dev_run=args.fast_dev_run)
    if metrics:
        print(f"model written to {out / 'model'}; PublicTest accuracy {metrics['PublicTest']['accuracy']:.4f}")
        print(f"evaluate it: mmfer eval face --model {out / 'model'} --split PrivateTest --tta")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from mmfer.evaluation.face_eval import evaluate_face

    rep = evaluate_face(args.model, split=args.split, data_root=args.data_root, labels=args.labels,
                        tta_flip=args.tta, out_dir=args.out, limit=args.limit)
    print(f"{args.split}: accuracy {rep['accuracy']:.4f}  macro-F1 {rep['macro_f1']:.4f}  n={rep['n']}")
    for name, path in rep.get("paths", {}).items():
        print(f"  {name}: {path}")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from mmfer.face.predictor import FaceEmotionRecognizer
    from mmfer.io.images import ImageLoadError, iter_image_files, load_image

    rec = FaceEmotionRecognizer(args.model, detector=args.detector, device=args.device,
                                tta_flip=False if args.no_tta else None, yunet_model=args.yunet_model)
    results, failed = [], 0
    for path in iter_image_files(args.paths):
        try:
            img = load_image(path)
            faces = rec.predict_image(img, detect=not args.no_detect)
        except ImageLoadError as exc:
            failed += 1
            _err(str(exc))
            results.append({"file": str(path), "error": str(exc)})
            continue
        if not faces:
            _err(f"{path}: no face found")
        results.append({"file": str(path), "faces": [f.to_dict() for f in faces]})
        if not args.json:
            _print_faces(path, faces)
    if not results:
        _err("no image files found in " + ", ".join(args.paths))
        return EXIT_SOME_FAILED
    if args.json:
        doc = {"model": rec.card.get("name"), "detector": None if args.no_detect else rec.detector.backend,
               "classes": list(rec.classes), "results": results}
        print(json.dumps(doc, indent=2))
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _print_faces(path: Path, faces: list) -> None:
    for i, f in enumerate(faces):
        box = "whole image" if f.box is None else "box x={} y={} w={} h={}".format(*f.box)
        probs = "  ".join(f"{k} {v:.2f}" for k, v in sorted(f.probabilities.items(), key=lambda kv: -kv[1]))
        print(f"{path}  face {i + 1}/{len(faces)}  {box}  -> {f.emotion} ({f.confidence:.2f})  [{probs}]")


def cmd_models(_: argparse.Namespace) -> int:
    from mmfer.paths import WEIGHTS_DIR

    for card_path in sorted(WEIGHTS_DIR.glob("*/card.json")):
        card = json.loads(card_path.read_text())
        test = card.get("metrics", {}).get("PrivateTest", {})
        acc = test.get("accuracy")
        print(f"{card_path.parent.name:20s} {card.get('kind', '?'):6s} {card.get('parameters', 0) / 1e6:.1f}M params  "
              f"PrivateTest acc {acc if acc is None else f'{acc:.4f}'}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(format="mmfer: %(message)s", level=logging.WARNING)  # e.g. the detector's fallback note
    from mmfer.config import ConfigError
    from mmfer.data.fer2013 import DatasetError
    from mmfer.face.artifact import ModelLoadError

    handlers = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "models": cmd_models}
    try:
        return handlers[args.command](args)
    except (ConfigError, DatasetError, ModelLoadError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted (training can be resumed by running the same command again)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
