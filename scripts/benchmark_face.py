"""Face branch speed on this machine: classifier faces/s (batch 1 and batched) and
detect + classify frames/s on a 640x480 photo with one face. Writes JSON + Markdown.

    python scripts/benchmark_face.py --yunet-model ../shared/models/yunet/yunet_n_640_640.onnx

Each measurement runs for --seconds after a warm-up and reports the median of the per-call
times (throughput = items per median call), plus the 90th percentile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import cv2
import numpy as np
import torch

from mmfer.evaluation.benchmark import cpu_name, timeit
from mmfer.face.detect import FaceDetector
from mmfer.face.predictor import FaceEmotionRecognizer

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "mmfer" / "examples" / "astronaut.jpg"


def frame_640x480() -> np.ndarray:
    """The example portrait (512x512) centred on a 640x480 canvas: one face, a realistic frame size."""
    img = cv2.imread(str(EXAMPLE))
    img = cv2.resize(img, (480, 480), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 127, np.uint8)
    frame[:, 80:560] = img
    return frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="shipped model name or folder (default: face_lite0)")
    ap.add_argument("--yunet-model", help="YuNet ONNX file (default: $MMFER_YUNET_MODEL / cache)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks" / "face_cpu")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rec = FaceEmotionRecognizer(args.model, device="cpu")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (args.batch, 48, 48), dtype=np.uint8)
    results: dict[str, dict] = {}

    for tta in (False, True):
        rec.tta_flip = tta
        for bs in (1, args.batch):
            t = timeit(lambda bs=bs: rec.predict_crops(crops[:bs], batch_size=bs), args.seconds)
            key = f"classifier_batch{bs}" + ("_tta" if tta else "")
            results[key] = {**t, "items_per_s": bs / t["median_s"], "unit": "faces/s"}
            print(f"{key:28s} {results[key]['items_per_s']:9.1f} faces/s  (median {t['median_s'] * 1e3:.2f} ms)")

    frame = frame_640x480()
    for backend in ("yunet", "haar"):
        try:
            det = FaceDetector(backend=backend, model_path=args.yunet_model)
        except Exception as exc:  # noqa: BLE001 - a missing YuNet file is reported, not fatal
            print(f"{backend}: skipped ({exc})")
            results[f"detect_classify_{backend}"] = {"skipped": str(exc)}
            continue
        rec = FaceEmotionRecognizer(args.model, detector=det, device="cpu")
        n_faces = len(rec.predict_image(frame))
        t_det = timeit(lambda det=det: det.detect(frame), args.seconds)
        t_all = timeit(lambda rec=rec: rec.predict_image(frame), args.seconds)
        results[f"detect_classify_{backend}"] = {
            **t_all, "items_per_s": 1 / t_all["median_s"], "unit": "frames/s", "faces_found": n_faces,
            "detect_only_frames_per_s": 1 / t_det["median_s"], "tta_flip": rec.tta_flip,
        }
        print(f"detect+classify {backend:5s}        {1 / t_all['median_s']:9.1f} frames/s "
              f"(detect alone {1 / t_det['median_s']:.1f}/s, {n_faces} face)")

    doc = {
        "model": rec.card.get("name"), "parameters": rec.card.get("parameters"),
        "network_input_size": rec.card["config"]["data"]["image_size"],
        "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "opencv": cv2.__version__, "python": platform.python_version()},
        "targets": {"detect_classify_frames_per_s": 30, "classifier_batched_faces_per_s": 1000},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Face branch benchmark: {doc['model']}", "",
             f"{doc['machine']['cpu']}, {args.threads} threads, torch {torch.__version__}, OpenCV {cv2.__version__}.",
             "Median over repeated calls after warm-up.", "",
             "| measurement | throughput | median latency | p90 latency |", "|---|---|---|---|"]
    for key, r in results.items():
        if "skipped" in r:
            lines.append(f"| {key} | skipped: {r['skipped']} | | |")
        else:
            lines.append(f"| {key} | {r['items_per_s']:.1f} {r['unit']} | {r['median_s'] * 1e3:.2f} ms | "
                         f"{r['p90_s'] * 1e3:.2f} ms |")
    lines += ["", "Targets: >= 30 frames/s detect+classify (one face, 640x480), >= 1,000 faces/s classifier batched."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
