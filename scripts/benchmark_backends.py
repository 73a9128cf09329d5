"""Speed of the transformers backends beside mmfer's own models, on this machine.

Face (faces/s, batch 1 and batched): mmfer face_lite0 vs ViT-Base/16 and ConvNeXt-Tiny image
classifiers. Audio (4-second clips/s): mmfer audio_crnn vs wav2vec2-Base, HuBERT-Base and
WavLM-Base+ classifiers, and a frozen WavLM-Base+ encoder with mmfer's weighted-layer head.
Scene (images/s): open_clip ViT-B-32 vs transformers CLIP ViT-B/32.

The transformers models are built from their architectures' default (base-size) configs with
random weights, saved with ``save_pretrained`` and loaded through mmfer's loaders, exactly as a
downloaded checkpoint would be: speed does not depend on the weights, and no download is needed.
Accuracy is not measured here.

    python scripts/benchmark_backends.py [--device cuda] [--seconds 3] [--only face,audio,scene]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mmfer.evaluation.benchmark import cpu_name, timeit

REPO = Path(__file__).resolve().parents[1]
FER8 = {0: "anger", 1: "contempt", 2: "disgust", 3: "fear", 4: "happiness", 5: "neutral", 6: "sadness", 7: "surprise"}
SPEECH4 = {0: "neu", 1: "hap", 2: "ang", 3: "sad"}


def _labels(labels: dict[int, str]) -> dict[str, object]:
    return {"num_labels": len(labels), "id2label": labels, "label2id": {v: k for k, v in labels.items()}}


def _save(model: torch.nn.Module, processor: object, out: Path) -> Path:
    model.save_pretrained(out)
    processor.save_pretrained(out)  # type: ignore[attr-defined]
    return out


def face_models(tmp: Path) -> dict[str, Path | None]:
    from transformers import (
        ConvNextConfig,
        ConvNextForImageClassification,
        ConvNextImageProcessor,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    return {
        "mmfer face_lite0": None,
        "ViT-Base/16 (transformers)": _save(ViTForImageClassification(ViTConfig(**_labels(FER8))), ViTImageProcessor(),
                                            tmp / "vit"),
        "ConvNeXt-Tiny (transformers)": _save(ConvNextForImageClassification(ConvNextConfig(**_labels(FER8))),
                                              ConvNextImageProcessor(), tmp / "convnext"),
    }


def speech_models(tmp: Path) -> dict[str, Path | None]:
    from transformers import (
        HubertConfig,
        HubertForSequenceClassification,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
        WavLMConfig,
        WavLMForSequenceClassification,
        WavLMModel,
    )

    fx = Wav2Vec2FeatureExtractor(return_attention_mask=True)
    _save(WavLMModel(WavLMConfig()), fx, tmp / "wavlm_encoder")  # the shape of microsoft/wavlm-base-plus
    return {
        "mmfer audio_crnn": None,
        "wav2vec2-Base classifier (transformers)": _save(
            Wav2Vec2ForSequenceClassification(Wav2Vec2Config(**_labels(SPEECH4))), fx, tmp / "w2v"),
        "HuBERT-Base classifier (transformers)": _save(
            HubertForSequenceClassification(HubertConfig(**_labels(SPEECH4))), fx, tmp / "hubert"),
        "WavLM-Base+ classifier (transformers)": _save(
            WavLMForSequenceClassification(WavLMConfig(**_labels(SPEECH4))), fx, tmp / "wavlm"),
    }


def bench_face(tmp: Path, device: str, seconds: float, batch: int) -> list[dict]:
    from mmfer.branches.loaders import load_face_recognizer

    rows = []
    crops = np.random.default_rng(0).integers(0, 255, (batch, 96, 96, 3), dtype=np.uint8)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for name, path in face_models(tmp).items():
        rec = load_face_recognizer(path, device=device, tta_flip=False)

        def run(n: int, rec=rec) -> Callable[[], None]:  # noqa: ANN001
            return lambda: (rec.predict_crops(crops[:n]), sync())

        one, many = timeit(run(1), seconds), timeit(run(batch), seconds)
        params = sum(p.numel() for p in rec.model.parameters())
        rows.append({"branch": "face", "model": name, "parameters_m": round(params / 1e6, 2),
                     "batch1_per_s": 1 / one["median_s"], f"batch{batch}_per_s": batch / many["median_s"],
                     "batch1_ms": one["median_s"] * 1e3})
        print(f"face  {name:34s} batch 1 {rows[-1]['batch1_per_s']:8.1f}/s   batch {batch} "
              f"{rows[-1][f'batch{batch}_per_s']:8.1f}/s")
    return rows


def bench_audio(tmp: Path, device: str, seconds: float) -> list[dict]:
    from mmfer.audio.predictor import AudioEmotionRecognizer
    from mmfer.audio.speech_encoder import SpeechEncoderNet
    from mmfer.branches.loaders import load_audio_recognizer
    from mmfer.config import AudioModelCfg

    t = np.arange(4 * 16000) / 16000
    x = (0.2 * np.sin(2 * np.pi * (160 + 30 * np.sin(2 * np.pi * 0.7 * t)) * t)).astype(np.float32)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    recs: dict[str, object] = {n: load_audio_recognizer(p, device=device) for n, p in speech_models(tmp).items()}
    head = AudioEmotionRecognizer(None, device=device)  # a native recognizer, its net swapped for the encoder head
    head.model = SpeechEncoderNet(AudioModelCfg(arch="hf_encoder", hf_model=str(tmp / "wavlm_encoder"),
                                                hidden=256)).eval().to(device)
    head.classes = tuple(f"c{i}" for i in range(8))
    recs["WavLM-Base+ frozen encoder + mmfer head"] = head
    rows = []
    for name, rec in recs.items():
        r = timeit(lambda rec=rec: (rec.predict_samples(x), sync()), seconds)  # type: ignore[attr-defined]
        model = rec.model  # type: ignore[attr-defined]
        params = sum(p.numel() for p in model.parameters()) + sum(
            p.numel() for p in getattr(model, "backbone", torch.nn.Module()).parameters()
            if not any(p is q for q in model.parameters()))
        rows.append({"branch": "audio", "model": name, "parameters_m": round(params / 1e6, 2),
                     "clip_4s_ms": r["median_s"] * 1e3, "x_real_time": 4.0 / r["median_s"]})
        print(f"audio {name:40s} 4 s clip {rows[-1]['clip_4s_ms']:8.1f} ms  ({rows[-1]['x_real_time']:.0f}x real time)")
    return rows


def bench_scene(tmp: Path, device: str, seconds: float) -> list[dict]:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from mmfer.hf.clip_scene import HFClipSceneEncoder
    from mmfer.scene.clip_encoder import ClipSceneEncoder

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{c: i + 2 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}}
    (tmp / "vocab.json").write_text(json.dumps(vocab))
    (tmp / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp / "vocab.json"), str(tmp / "merges.txt"))
    _save(CLIPModel(CLIPConfig()), CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tok), tmp / "clip")
    encoders = {"open_clip ViT-B-32": ClipSceneEncoder("ViT-B-32", None, device=device, allow_random=True),
                "transformers CLIP ViT-B/32": HFClipSceneEncoder(str(tmp / "clip"), device=device)}
    img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for name, enc in encoders.items():
        one = timeit(lambda enc=enc: (enc.embed_images([img], [[(200, 100, 120, 140)]]), sync()), seconds)
        eight = timeit(lambda enc=enc: (enc.embed_images([img] * 8), sync()), seconds)
        rows.append({"branch": "scene", "model": name, "batch1_per_s": 1 / one["median_s"],
                     "batch8_per_s": 8 / eight["median_s"], "batch1_ms": one["median_s"] * 1e3})
        print(f"scene {name:34s} batch 1 {rows[-1]['batch1_per_s']:6.1f}/s   batch 8 {rows[-1]['batch8_per_s']:6.1f}/s")
    return rows


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# Backends: mmfer vs transformers ({doc['device']})", "",
             f"{m['cpu']}, {m['threads']} threads, torch {m['torch']}, transformers {m['transformers']}"
             + (f", GPU {m['gpu']}" if m["gpu"] else ""), "",
             "transformers models: base-size default configs, random weights (speed only), loaded through mmfer's "
             "loaders. Median of repeated calls after a warm-up.", ""]
    b = doc["batch"]
    tables = [  # branch, heading, columns, one row
        ("face", "Face (detected crops -> 7 emotions)",
         ["model", "params (M)", "batch 1 faces/s", f"batch {b} faces/s"],
         lambda r: [r["model"], f"{r['parameters_m']:.1f}", f"{r['batch1_per_s']:.1f}", f"{r[f'batch{b}_per_s']:.1f}"]),
        ("audio", "Audio (a 4-second clip through predict_samples)",
         ["model", "params (M)", "ms per clip", "x real time"],
         lambda r: [r["model"], f"{r['parameters_m']:.1f}", f"{r['clip_4s_ms']:.1f}", f"{r['x_real_time']:.0f}"]),
        ("scene", "Scene (640x480 photo, face masked -> CLIP embedding)",
         ["backend", "batch 1 images/s", "batch 8 images/s"],
         lambda r: [r["model"], f"{r['batch1_per_s']:.1f}", f"{r['batch8_per_s']:.1f}"]),
    ]
    for branch, heading, columns, row in tables:
        rows = [r for r in doc["results"] if r["branch"] == branch]
        if rows:
            lines += [f"## {heading}", "", "| " + " | ".join(columns) + " |",
                      "|---|" + "---:|" * (len(columns) - 1)]
            lines += ["| " + " | ".join(row(r)) + " |" for r in rows] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    import transformers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    ap.add_argument("--batch", type=int, default=32, help="batched face measurement")
    ap.add_argument("--only", default="face,audio,scene")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or REPO / "reports" / "benchmarks" / f"backends_{'gpu' if args.device.startswith('cuda') else 'cpu'}"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    only = set(args.only.split(","))
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        if "face" in only:
            results += bench_face(Path(tmp), args.device, args.seconds, args.batch)
        if "audio" in only:
            results += bench_audio(Path(tmp), args.device, args.seconds)
        if "scene" in only:
            results += bench_scene(Path(tmp), args.device, args.seconds)
    doc = {"device": args.device, "batch": args.batch, "results": results,
           "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "threads": args.threads,
                       "torch": torch.__version__, "transformers": transformers.__version__,
                       "python": platform.python_version(),
                       "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    print(f"wrote {out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
