"""One model registry for every family (face, audio, temporal), timm-style.

Architectures register themselves with :func:`register_model`, with the preprocessing their
inputs need; :func:`create_model` builds one by (family, arch) and :func:`list_models` names them.
A trained model's card stores the same preprocessing beside its weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

FAMILIES = ("face", "audio", "temporal")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    family: str
    arch: str
    build: Callable[..., nn.Module]
    preprocessing: dict[str, Any]
    doc: str = ""


_MODELS: dict[tuple[str, str], ModelEntry] = {}


def register_model(family: str, arch: str, preprocessing: dict[str, Any] | None = None
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``build(cfg, ...) -> nn.Module`` as ``family/arch``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _MODELS[(family, arch)] = ModelEntry(family, arch, fn, dict(preprocessing or {}), doc)
        return fn

    return deco


def model_entry(family: str, arch: str) -> ModelEntry:
    try:
        return _MODELS[(family, arch)]
    except KeyError:
        raise ValueError(f"unknown {family} model arch {arch!r}; known: {', '.join(list_models(family))}") from None


def create_model(family: str, arch: str, *args: Any, **kwargs: Any) -> nn.Module:
    """Build the ``family/arch`` network (arguments as its builder takes them)."""
    return model_entry(family, arch).build(*args, **kwargs)


def list_models(family: str | None = None) -> list[str]:
    """Registered architectures: names within ``family``, or ``family/arch`` for all."""
    if family is not None:
        return sorted(a for f, a in _MODELS if f == family)
    return sorted(f"{f}/{a}" for f, a in _MODELS)
