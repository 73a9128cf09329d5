"""Audio branch speed on this machine: feature extraction (log-mel + YIN prosody) for a 4-second
clip, the encoder alone, a whole 4-second file through the public API, a long file (x real
time), and, for reference, librosa's pYIN on the same clip. Writes JSON + Markdown.

    python scripts/benchmark_audio.py [--clip path/to/4s.wav] [--no-pyin] [--device cuda]

Each measurement runs for --seconds after a warm-up and reports the median of the per-call
times, plus the 90th percentile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mmfer.audio.feature_table import feature_matrix
from mmfer.audio.io import SAMPLE_RATE, load_audio
from mmfer.audio.predictor import AudioEmotionRecognizer
from mmfer.evaluation.benchmark import cpu_name, timeit

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "ravdess" / "audio_speech_actors_01-24" / "Actor_01" / \
    "03-01-05-02-01-01-01.flac"


def four_seconds(clip: Path | None) -> np.ndarray:
    """4.0 s of real speech (looped if the clip is shorter), or a synthetic voice when no clip exists."""
    if clip and clip.is_file():
        x = load_audio(clip).samples
        return np.resize(x, 4 * SAMPLE_RATE).astype(np.float32)
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    f0 = 160 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (np.sin(2 * np.pi * 3 * t) > -0.3)
    return (0.2 * x).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="shipped model name or folder (default: audio_crnn)")
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a speech clip (looped/cut to 4 s)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="length of the long-file test")
    ap.add_argument("--no-pyin", action="store_true", help="skip the librosa.pyin reference (~30 s JIT)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or REPO / "reports" / "benchmarks" / f"audio_{'gpu' if args.device.startswith('cuda') else 'cpu'}"

    torch.set_num_threads(args.threads)
    rec = AudioEmotionRecognizer(args.model, device=args.device)
    x = four_seconds(args.clip)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    results: dict[str, dict] = {}

    def feats() -> None:
        rec.features(x)
        sync()

    results["features_4s_clip"] = {**timeit(feats, args.seconds), "unit": "clips/s"}
    m = feature_matrix(rec.features(x))[None].to(rec.device)

    def encoder() -> None:
        with torch.no_grad():
            rec.model(m)
        sync()

    results["encoder_4s_clip"] = {**timeit(encoder, args.seconds), "unit": "clips/s"}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "clip.wav"
        sf.write(wav, x, SAMPLE_RATE)  # timed through the file path: decoding included
        results["predict_file_4s"] = {**timeit(lambda: rec.predict_file(wav), args.seconds), "unit": "files/s"}
        long = Path(tmp) / "long.flac"
        reps = int(args.long_minutes * 60 / 4)
        with sf.SoundFile(long, "w", SAMPLE_RATE, 1) as f:
            for _ in range(reps):
                f.write(x)
        t0 = time.perf_counter()
        pred = rec.predict_file(long)
        took = time.perf_counter() - t0
        results["predict_file_long"] = {"minutes": args.long_minutes, "seconds": took, "windows": len(pred.windows),
                                        "x_real_time": args.long_minutes * 60 / took}
    for key in ("features_4s_clip", "encoder_4s_clip", "predict_file_4s"):
        r = results[key]
        r["items_per_s"] = 1 / r["median_s"]
        print(f"{key:22s} median {r['median_s'] * 1e3:7.2f} ms  p90 {r['p90_s'] * 1e3:7.2f} ms")
    lr = results["predict_file_long"]
    print(f"predict_file_long      {lr['minutes']:.0f} min in {lr['seconds']:.1f} s "
          f"({lr['x_real_time']:.0f}x real time)")

    if not args.no_pyin:
        import librosa

        t0 = time.perf_counter()
        librosa.pyin(x[:16000], fmin=60, fmax=500, sr=SAMPLE_RATE, frame_length=1024, hop_length=160)
        first = time.perf_counter() - t0
        t = timeit(lambda: librosa.pyin(x, fmin=60, fmax=500, sr=SAMPLE_RATE, frame_length=1024, hop_length=160),
                   args.seconds, warmup=1)
        results["librosa_pyin_4s_clip"] = {**t, "first_call_s": first, "unit": "clips/s",
                                           "items_per_s": 1 / t["median_s"]}
        print(f"librosa.pyin (reference) median {t['median_s'] * 1e3:.0f} ms (first call {first:.1f} s)")

    doc = {
        "model": rec.card.get("name"), "parameters": rec.card.get("parameters"), "device": args.device,
        "clip": str(args.clip.name) if args.clip and args.clip.is_file() else "synthetic voice",
        "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
        "targets": {"features_4s_clip_ms": 100},
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Audio branch benchmark: {doc['model']} ({doc['parameters']:,} parameters)", "",
             f"{doc['machine']['gpu'] or doc['machine']['cpu']}, {args.threads} threads, torch {torch.__version__}; "
             f"clip: {doc['clip']} cut/looped to 4.0 s. Median over repeated calls after warm-up.", "",
             "| measurement | median | p90 | throughput |", "|---|---|---|---|"]
    for key, r in results.items():
        if "median_s" in r:
            lines.append(f"| {key} | {r['median_s'] * 1e3:.2f} ms | {r['p90_s'] * 1e3:.2f} ms | "
                         f"{r['items_per_s']:.1f} {r['unit']} |")
    lines += [f"| predict_file_long ({lr['minutes']:.0f} min FLAC, {lr['windows']} windows) | {lr['seconds']:.1f} s | "
              f"| {lr['x_real_time']:.0f}x real time |", "",
              "Target: feature extraction for a 4-second clip well under 100 ms."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
