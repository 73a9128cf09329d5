"""Trained face models on disk: ``model.safetensors`` + ``card.json`` (config, classes,
preprocessing, metrics, data hash). Loading never unpickles anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmfer.config import ConfigError, FaceTrainCfg, from_dict, to_dict
from mmfer.emotions import EMOTIONS, check_classes
from mmfer.face.models import FaceNet, create_model
from mmfer.paths import WEIGHTS_DIR

CARD_VERSION = 1
DEFAULT_FACE_MODEL = "face_lite0"


class ModelLoadError(RuntimeError):
    """A model folder or file that cannot be used; the message names it and why."""


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


def save_artifact(model: torch.nn.Module, out_dir: str | Path, card: dict[str, Any]) -> Path:
    """``model.safetensors`` + ``card.json`` (``card`` gets card_version and the parameter count)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": f"mmfer-{card['kind']}"})
    card = {"card_version": CARD_VERSION, **card, "parameters": sum(p.numel() for p in model.parameters())}
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return out


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


def resolve_model_dir(name_or_path: str | Path | None, default: str = DEFAULT_FACE_MODEL) -> Path:
    """A shipped model name (``face_lite0``) or a folder with model.safetensors + card.json."""
    if name_or_path is None:
        name_or_path = default
    path = Path(name_or_path)
    if not path.exists() and (WEIGHTS_DIR / str(name_or_path)).is_dir():
        path = WEIGHTS_DIR / str(name_or_path)
    if path.is_file() and path.name in ("card.json", "model.safetensors"):
        path = path.parent
    if not path.is_dir():
        shipped = sorted(p.name for p in WEIGHTS_DIR.iterdir() if p.is_dir()) if WEIGHTS_DIR.is_dir() else []
        raise ModelLoadError(f"{name_or_path}: no such model folder or shipped model (shipped: {shipped})")
    return path


def weights_digest(model_dir: str | Path) -> str:
    """Short sha256 of a model's weights: what a model trained on its outputs records and checks."""
    import hashlib

    h = hashlib.sha256()
    with open(Path(model_dir) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def read_card(model_dir: Path, kind: str = "face") -> dict[str, Any]:
    card_path = model_dir / "card.json"
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{card_path}: missing model card") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelLoadError(f"{card_path}: not valid JSON") from None
    if not isinstance(card, dict) or card.get("kind") != kind:
        found = card.get("kind") if isinstance(card, dict) else None
        raise ModelLoadError(f"{card_path}: not a {kind} model card (kind: {found!r})")
    return card


def load_weights(model: torch.nn.Module, weights: Path) -> None:
    """Fill ``model`` from a safetensors file (never pickle), or raise ModelLoadError naming the file."""
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise ModelLoadError(f"{weights}: missing weights file") from None
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{weights}: not a valid safetensors file ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelLoadError(f"{weights}: weights do not fit the card's architecture ({first})") from None


def init_from_trained(model: FaceNet, cfg: FaceTrainCfg) -> dict[str, Any]:
    """Start ``model`` from the trained face model ``cfg.model.init_from``; returns its card.

    The source must have the same architecture, classes and input size, so a second training
    stage (e.g. another cosine cycle) continues exactly where the first one ended.
    """
    model_dir = resolve_model_dir(cfg.model.init_from)
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
    model_dir = resolve_model_dir(name_or_path)
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
