"""Moved to :mod:`mmfer.core.hub` (finding and loading a transformers checkpoint is not tied to any
branch); re-exported here so ``from mmfer.hf.hub import ...`` keeps working."""

from __future__ import annotations

from mmfer.core.hub import (
    HF_PREFIX,
    HFModelError,
    HFSpec,
    is_hf_spec,
    parse_spec,
    pretrained,
    require_modality,
    resolve,
)

__all__ = ["HF_PREFIX", "HFModelError", "HFSpec", "is_hf_spec", "parse_spec", "pretrained", "require_modality",
           "resolve"]
