"""Trained models on disk, whatever the branch: ``model.safetensors`` + ``card.json`` (config,
classes, preprocessing, metrics, data hash). Loading never unpickles anything."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmfer.core.errors import ModelLoadError
from mmfer.paths import WEIGHTS_DIR

__all__ = ["CARD_VERSION", "load_weights", "read_card", "resolve_model_dir", "save_artifact", "weights_digest"]

CARD_VERSION = 1
DEFAULT_MODEL = "face_lite0"  # what a model name of None means (the shipped face model)


def save_artifact(model: torch.nn.Module, out_dir: str | Path, card: dict[str, Any]) -> Path:
    """``model.safetensors`` + ``card.json`` (``card`` gets card_version and the parameter count)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": f"mmfer-{card['kind']}"})
    card = {"card_version": CARD_VERSION, **card, "parameters": sum(p.numel() for p in model.parameters())}
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return out


def resolve_model_dir(name_or_path: str | Path | None, default: str = DEFAULT_MODEL) -> Path:
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


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def weights_digest(model_dir: str | Path) -> str:
    """Short sha256 of a model's weights: what a model trained on its outputs records and checks.

    Hashed once per process per file version (cached on the resolved path, size and mtime).
    """
    weights = (Path(model_dir) / "model.safetensors").resolve()
    st = weights.stat()
    return _file_digest(str(weights), st.st_size, st.st_mtime_ns)


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


def read_tensors(weights: Path, loader: Any = load_file) -> dict[str, Any]:
    """The tensors of a safetensors file (never pickle), or ModelLoadError naming the file; ``loader``
    is safetensors' torch (default) or numpy ``load_file``."""
    try:
        return loader(str(weights))
    except FileNotFoundError:
        raise ModelLoadError(f"{weights}: missing weights file") from None
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{weights}: not a valid safetensors file ({exc})") from None


def load_weights(model: torch.nn.Module, weights: Path) -> None:
    """Fill ``model`` from a safetensors file (never pickle), or raise ModelLoadError naming the file."""
    state = read_tensors(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelLoadError(f"{weights}: weights do not fit the card's architecture ({first})") from None
