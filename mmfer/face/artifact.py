"""Trained face models on disk: ``model.safetensors`` + ``card.json`` (config, classes,
preprocessing, metrics, data hash). Loading never unpickles anything; the generic artifact I/O is
:mod:`mmfer.core.artifact` (re-exported here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmfer.config import ConfigError, FaceTrainCfg, from_dict, to_dict
from mmfer.core.artifact import (  # noqa: F401 - re-exported: the generic artifact I/O lived here
    CARD_VERSION,
    load_weights,
    read_card,
    resolve_model_dir,
    save_artifact,
    weights_digest,
)
from mmfer.core.errors import ModelLoadError  # noqa: F401 - re-exported
from mmfer.emotions import EMOTIONS, check_classes
from mmfer.face.models import FaceNet, create_model

DEFAULT_FACE_MODEL = "face_lite0"


def preprocessing_spec(cfg: FaceTrainCfg) -> dict[str, Any]:
    return {
        "input": "grey face crop, float in [0, 1], shape (B, 1, 48, 48); the model resizes internally",
        "crop": "detector box enlarged by the margin in mmfer.face.detect, squared, eye-aligned when landmarks exist",
        "network_input_size": cfg.data.image_size,
        "tta_flip": cfg.tta_flip,
        "tta_zooms": list(cfg.tta_zooms),
    }


def card_tta_zooms(card: dict[str, Any]) -> list[float]:
    """The centre zooms a model card's TTA averages (none for transformers checkpoints, and for cards
    written before zooms existed)."""
    if card.get("backend", "mmfer") != "mmfer":
        return []
    return [float(z) for z in card.get("config", {}).get("tta_zooms", [])]


def save_face_model(model: FaceNet, cfg: FaceTrainCfg, out_dir: str | Path, metrics: dict[str, Any],
                    data_hash: str, extra: dict[str, Any] | None = None) -> Path:
    return save_artifact(model, out_dir, {
        "kind": "face",
        "name": cfg.name,
        "classes": list(EMOTIONS[: cfg.model.num_classes]),
        "config": to_dict(cfg),
        "preprocessing": preprocessing_spec(cfg),
        "metrics": metrics,
        "data_hash": data_hash,
        **(extra or {}),
    })


def init_from_trained(model: FaceNet, cfg: FaceTrainCfg) -> dict[str, Any]:
    """Start ``model`` from the trained face model ``cfg.model.init_from``; returns its card.

    The source must have the same architecture, classes and input size, so a second training
    stage (e.g. another cosine cycle) continues exactly where the first one ended.
    """
    model_dir = resolve_model_dir(cfg.model.init_from, DEFAULT_FACE_MODEL)
    card = read_card(model_dir)
    src = card.get("config", {})
    want = {"arch": cfg.model.arch, "num_classes": cfg.model.num_classes, "image_size": cfg.data.image_size}
    have = {"arch": src.get("model", {}).get("arch"), "num_classes": src.get("model", {}).get("num_classes"),
            "image_size": src.get("data", {}).get("image_size")}
    if want != have:
        raise ModelLoadError(f"model.init_from {cfg.model.init_from}: it is {have}, this config needs {want}")
    load_weights(model, model_dir / "model.safetensors")
    return card


def load_face_model(name_or_path: str | Path | None = None,
                    device: str | torch.device = "cpu") -> tuple[FaceNet, dict[str, Any]]:
    """Load a trained face model and its card (safetensors only: no pickle)."""
    model_dir = resolve_model_dir(name_or_path, DEFAULT_FACE_MODEL)
    card = read_card(model_dir)
    try:
        cfg = from_dict(FaceTrainCfg, card["config"])
        classes = check_classes(card["classes"])
    except (ConfigError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{model_dir / 'card.json'}: {exc}") from None
    cfg.model.pretrained = False  # the trained weights below replace any initialisation
    model = create_model(cfg.model, cfg.data.image_size)
    load_weights(model, model_dir / "model.safetensors")
    if len(classes) != cfg.model.num_classes:
        raise ModelLoadError(
            f"{model_dir / 'card.json'}: {len(classes)} classes but the net has {cfg.model.num_classes}")
    model.eval().to(device)
    card["_dir"] = str(model_dir)
    return model, card
