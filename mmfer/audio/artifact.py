"""Trained audio models on disk: ``model.safetensors`` + ``card.json`` (config, classes, feature
settings, metrics, data hash), in the same format as the face branch. Loading never unpickles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmfer.audio.io import SAMPLE_RATE
from mmfer.audio.models import SpeechEmotionNet, create_audio_model
from mmfer.config import AudioTrainCfg, ConfigError, from_dict, to_dict
from mmfer.core.artifact import load_weights, read_card, resolve_model_dir, save_artifact
from mmfer.core.errors import ModelLoadError
from mmfer.emotions import AUDIO_EMOTIONS, EXTRA_CLASSES, check_model_classes
from mmfer.paths import DEFAULT_AUDIO_MODEL


def preprocessing_spec(cfg: AudioTrainCfg) -> dict[str, Any]:
    f = cfg.features
    m = cfg.model
    if m.arch == "hf_encoder":
        return {
            "input": f"mono float32 at {SAMPLE_RATE} Hz, resampled to the encoder's rate when it differs",
            "encoder": m.hf_model + (f"@{m.hf_revision}" if m.hf_revision else ""),
            "encoder_frozen": m.freeze_backbone,
            "features": "the checkpoint's own feature extractor (input_values); softmax-weighted sum of all hidden "
                        f"layers; {m.pooling} pooling over time",
            "window_s": 4.0,
        }
    return {
        "input": f"mono float32 at {SAMPLE_RATE} Hz (any file is converted by mmfer.audio.io)",
        "features": f"{f.n_mels} log-mel bands ({f.fmin:g}-{f.fmax:g} Hz, {f.win_ms:g} ms window, {f.hop_ms:g} ms hop) "
                    "+ 6 prosody tracks (YIN F0 relative and absolute, periodicity, RMS energy, deltas)",
        "normalisation": "per utterance: band means removed, scaled by the utterance's spread; F0 relative to the "
                         "utterance median; energy relative to the loudest frame",
        "silence_trim": f.trim,
        "window_s": 4.0,
    }


def audio_classes(num_classes: int) -> tuple[str, ...]:
    return AUDIO_EMOTIONS[:num_classes]


def save_audio_model(model: SpeechEmotionNet, cfg: AudioTrainCfg, out_dir: str | Path, metrics: dict[str, Any],
                     data_hash: str, extra: dict[str, Any] | None = None) -> Path:
    classes = audio_classes(cfg.model.num_classes)
    return save_artifact(model, out_dir, {
        "kind": "audio",
        "name": cfg.name,
        "classes": list(classes),
        "fold_to_canonical": {c: EXTRA_CLASSES[c] for c in classes if c in EXTRA_CLASSES},
        "config": to_dict(cfg),
        "preprocessing": preprocessing_spec(cfg),
        "metrics": metrics,
        "data_hash": data_hash,
        **(extra or {}),
    })


def load_audio_model(name_or_path: str | Path | None = None, device: str | torch.device = "cpu"
                     ) -> tuple[SpeechEmotionNet, dict[str, Any], AudioTrainCfg]:
    """Load a trained audio model, its card and config (safetensors only: no pickle)."""
    model_dir = resolve_model_dir(name_or_path, DEFAULT_AUDIO_MODEL)
    card = read_card(model_dir, kind="audio")
    try:
        cfg = from_dict(AudioTrainCfg, card["config"])
        classes = check_model_classes(card["classes"])
        model = create_audio_model(cfg.model, cfg.features.n_mels)
    except (ConfigError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{model_dir / 'card.json'}: {exc}") from None
    if len(classes) != cfg.model.num_classes:
        raise ModelLoadError(f"{model_dir / 'card.json'}: {len(classes)} classes but the net has "
                             f"{cfg.model.num_classes}")
    load_weights(model, model_dir / "model.safetensors")
    model.eval().to(device)
    card["_dir"] = str(model_dir)
    return model, card, cfg
