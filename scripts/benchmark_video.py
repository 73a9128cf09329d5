"""Video timeline speed and memory: a 640x480, 30 fps clip with one moving face, sampled at
10 fps, processed end to end (decode, detect, classify, track, smooth), for a 1-minute and a
10-minute clip, each in a fresh process so that its peak memory (max RSS) is its own.

    python scripts/benchmark_video.py --yunet-model ../shared/models/yunet/yunet_n_640_640.onnx

Writes reports/benchmarks/video_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mmfer.evaluation.benchmark import cpu_name

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time
from mmfer.face.predictor import FaceEmotionRecognizer
from mmfer.video.timeline import video_timeline
rec = FaceEmotionRecognizer(detector=sys.argv[3], yunet_model=sys.argv[2] or None, device="cpu")
t0 = time.perf_counter()
tl = video_timeline(sys.argv[1], rec, sample_fps=float(sys.argv[4]))
took = time.perf_counter() - t0
print(json.dumps({"seconds": took, "frames_used": len(tl.times), "frames_with_face": int(tl.face_found.sum()),
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_video(path: Path, seconds: float, fps: int = 30) -> None:
    import av

    face = cv2.resize(cv2.imread(str(REPO / "mmfer" / "examples" / "astronaut.jpg")), (240, 240))
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt, s.bit_rate = 640, 480, "yuv420p", 2_000_000
        for i in range(int(seconds * fps)):
            img = np.full((480, 640, 3), 80, np.uint8)
            x = int(200 + 150 * np.sin(i / 45))
            img[120:360, x : x + 240] = face
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--yunet-model", default=os.environ.get("MMFER_YUNET_MODEL", ""))
    ap.add_argument("--detector", default="auto", choices=["auto", "yunet", "haar"])
    ap.add_argument("--sample-fps", type=float, default=10.0)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks" / "video_cpu")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            video = Path(tmp) / f"clip_{minutes:g}min.mp4"
            t0 = time.perf_counter()
            make_video(video, minutes * 60)
            made = time.perf_counter() - t0
            run = subprocess.run([sys.executable, "-c", CHILD, str(video), args.yunet_model, args.detector,
                                  str(args.sample_fps)], capture_output=True, text=True, check=True)
            r = json.loads(run.stdout.strip().splitlines()[-1])
            r.update({"minutes": minutes, "x_real_time": minutes * 60 / r["seconds"], "encode_seconds": made,
                      "file_mb": video.stat().st_size / 1e6})
            results.append(r)
            print(f"{minutes:g} min: {r['seconds']:.1f} s ({r['x_real_time']:.2f}x real time), "
                  f"{r['frames_used']} frames, face in {r['frames_with_face']}, peak RSS {r['max_rss_mb']:.0f} MB")
    doc = {"machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count()}, "video": "640x480, 30 fps, MPEG-4, one "
           "moving face", "sample_fps": args.sample_fps, "detector": args.detector if not args.yunet_model else "yunet",
           "targets": {"x_real_time": 1.0, "memory": "independent of clip length"}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["# Video timeline benchmark", "", f"{doc['machine']['cpu']}, {os.cpu_count()} logical CPUs; "
             f"{doc['video']}, sampled at {args.sample_fps:g} fps; detector {doc['detector']}; each length in a fresh "
             "process.", "", "| clip | processing time | speed | frames used | peak RSS |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['minutes']:g} min | {r['seconds']:.1f} s | {r['x_real_time']:.2f}x real time | "
                     f"{r['frames_used']} | {r['max_rss_mb']:.0f} MB |")
    lines += ["", "Targets: faster than real time; peak memory independent of the clip's length."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
