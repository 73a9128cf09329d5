"""Leave-one-corpus-out models scored on their held-out corpus heard through other channels.

The held-out corpora are clean studio recordings, so a leave-one-corpus-out table cannot show what
channel augmentation is for. This replays each held-out corpus through a telephone line, a
reverberant room, a low-bitrate MP3 and pink noise (seeded, the same for every recipe), and scores
each recipe's fold models (trained by ``mmfer eval audio --loco``) on the four shared classes.

    python scripts/benchmark_audio_channels.py --config configs/audio_multicorpus_cpu.yaml \\
        --run base=runs/base_loco:data.reverb_prob=0,data.band_prob=0,data.telephone_prob=0,\\
data.codec_prob=0,data.level_prob=0 \\
        --run robust=runs/audio_multicorpus_loco --out reports/audio/audio_multicorpus

Each ``--run`` is NAME=RUN_DIR[:OVERRIDE,OVERRIDE...] (the overrides the run was trained with).
Writes channels.json and channels.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mmfer.audio import augment as A
from mmfer.audio.artifact import audio_classes
from mmfer.audio.feature_table import build_feature_table, feature_matrix
from mmfer.audio.features import FeatureExtractor
from mmfer.config import AudioTrainCfg, load_config
from mmfer.data.speech_corpora import leave_one_corpus_out
from mmfer.evaluation.speech_scoring import CORE_CLASSES, score_on
from mmfer.training.audio_module import AudioClassifier, predict_table
from mmfer.training.train_audio import load_corpus

CONDITIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "clean": lambda x, g: x,
    "telephone": lambda x, g: A.telephone(x, g),
    "room": lambda x, g: A.reverberate(x, g, rt60=(0.5, 0.9), drr_db=(-3.0, 3.0)),
    "mp3": lambda x, g: A.codec_round_trip(x, "mp3", 16_000),
    "noise": lambda x, g: A.add_noise(x, 10.0, g, colour="pink"),
}
DESCRIPTIONS = {"clean": "as recorded", "telephone": "telephone line (300-3400 Hz, 8 kHz, mu-law)",
                "room": "reverberant room (RT60 0.5-0.9 s, DRR -3..3 dB)", "mp3": "MP3 at 16 kbit/s",
                "noise": "pink noise at 10 dB SNR"}


class _Channel:
    """A feature-table codec: the condition, then the recipe's features (seeded by call order)."""

    mode = "features"

    def __init__(self, name: str, cfg: AudioTrainCfg):
        self.name, self.key = name, f"channel:{name}"
        self.effect, self.fx = CONDITIONS[name], FeatureExtractor(cfg.features)  # CMVN: the table applies it
        self.rng = np.random.default_rng(0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.clip(self.effect(x, self.rng), -1.0, 1.0).astype(np.float32)
        return feature_matrix(self.fx(y)).T.numpy()


def _fold_model(cfg: AudioTrainCfg, run_dir: Path, held_out: str) -> torch.nn.Module:
    ckpt = torch.load(run_dir / f"held_out_{held_out}" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True)
    system = AudioClassifier(cfg)
    system.load_state_dict(ckpt["state_dict"])
    return system.model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR[:OVERRIDE,...]")
    ap.add_argument("--data-root")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated subset of: "
                    + ", ".join(CONDITIONS))
    args = ap.parse_args()
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        ap.error(f"unknown conditions {unknown}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    results: dict[str, dict[str, dict[str, dict]]] = {}
    tables: dict[tuple[str, str], object] = {}
    for spec in args.run:
        name, rest = spec.split("=", 1)
        run_dir, _, ov = rest.partition(":")
        overrides = [o for o in ov.split(",") if o] + ([f"data.root={args.data_root}"] if args.data_root else [])
        cfg = load_config(args.config, AudioTrainCfg, overrides)
        corpus = load_corpus(cfg)
        classes = audio_classes(cfg.model.num_classes)
        results[name] = {}
        for split in leave_one_corpus_out(corpus.items or []):
            model = _fold_model(cfg, Path(run_dir), split.held_out)
            files = [corpus.files[i] for i in split.test]
            labels = [classes[int(k)] for k in corpus.labels[split.test]]
            for cond in conditions:
                key = (cond, split.held_out)
                if key not in tables:  # the same degraded audio for every recipe
                    tables[key] = build_feature_table(files, cfg.features, cfg.data, variants=0,
                                                      codec=_Channel(cond, cfg))
                probs = predict_table(model, tables[key], np.arange(len(files)))  # type: ignore[arg-type]
                rep = score_on(labels, probs, classes, CORE_CLASSES)
                results[name].setdefault(cond, {})[split.held_out] = {k: rep[k] for k in ("n", "accuracy", "uar")}
                logging.info("%s / %s / %s: 4-class accuracy %.3f", name, cond, split.held_out, rep["accuracy"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "channels.json").write_text(json.dumps(results, indent=2) + "\n")
    corpora = sorted(next(iter(next(iter(results.values())).values())))
    lines = ["# Held-out corpora through other channels", "",
             "Leave-one-corpus-out fold models (each never heard the corpus, its speakers or its language), "
             "scored on angry/happy/neutral/sad (chance 25%) after the held-out audio passes through each "
             "channel. 4-class accuracy, %.", "",
             "| recipe | channel | " + " | ".join(corpora) + " | mean |", "|---|---|" + "---|" * (len(corpora) + 1)]
    for name, by_cond in results.items():
        for cond, by_corpus in by_cond.items():
            accs = [100 * by_corpus[c]["accuracy"] for c in corpora]
            cells = " | ".join(f"{a:.1f}" for a in accs)
            lines.append(f"| {name} | {DESCRIPTIONS[cond]} | {cells} | {np.mean(accs):.1f} |")
    (args.out / "channels.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
