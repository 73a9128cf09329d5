"""One way to get a scene classifier (CLIP + zero-shot prompts or a trained probe), shared by the
``mmfer scene`` command and the fusion pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.scene.clip_encoder import ClipSceneEncoder, SceneEncoderUnavailable, default_clip_spec


@dataclasses.dataclass
class SceneClassifier:
    encoder: ClipSceneEncoder
    scores: Callable[[Any], np.ndarray]  # (N, D) embeddings -> (N, 7) probabilities
    name: str  # what it is, for reports
    model: str
    pretrained: str | None


def load_scene_classifier(clip_model: str | None = None, clip_pretrained: str | None = None,
                          probe: str | Path | None = None, prompts: str | Path | None = None,
                          device: str = "auto", local_only: bool = False) -> SceneClassifier:
    """CLIP weights: the explicit arguments, else the probe card's, else $MMFER_CLIP_* / the defaults.

    Raises SceneEncoderUnavailable (with what to do) and, for a bad probe folder, ProbeError.
    """
    model, pretrained = default_clip_spec()
    net = None
    if probe:
        from mmfer.scene.probe import load_probe

        net, card = load_probe(probe)
        model, pretrained = card["clip"]["model"], card["clip"]["pretrained"]
    model, pretrained = clip_model or model, clip_pretrained or pretrained
    enc = clip_encoder(model, pretrained, device, local_only)
    pretrained = enc.pretrained
    if net is not None:
        import torch

        def scores(emb: Any) -> np.ndarray:
            with torch.no_grad():
                return net(emb).softmax(-1).numpy()

        return SceneClassifier(enc, scores, f"{_named(model, pretrained)} + probe {Path(probe).name}", model,
                               pretrained)
    from mmfer.scene.zero_shot import ZeroShotSceneClassifier

    return SceneClassifier(enc, ZeroShotSceneClassifier(enc, prompts).scores, f"{_named(model, pretrained)} zero-shot",
                           model, pretrained)


def _named(model: str, pretrained: str | None) -> str:
    return model if pretrained is None else f"{model}/{pretrained}"


def clip_encoder(model: str, pretrained: str | None, device: str = "auto", local_only: bool = False) -> Any:
    """An open_clip encoder, or for ``hf:<id or dir>`` names the transformers CLIPModel backend."""
    from mmfer.hf.hub import HF_PREFIX

    if model.startswith(HF_PREFIX):
        from mmfer.hf.clip_scene import HFClipSceneEncoder

        return HFClipSceneEncoder(model, device=device, local_only=local_only)
    try:
        return ClipSceneEncoder(model, pretrained, device=device, local_only=local_only)
    except SceneEncoderUnavailable:
        local = pretrained and Path(pretrained).expanduser().exists() or model.startswith("local-dir:")
        if local or not local_only:
            raise
        raise SceneEncoderUnavailable(
            f"no CLIP weights for {model} / {pretrained} in the local cache and downloading is off: pass "
            "--clip-download (about 600 MB for ViT-B-32) or --clip-pretrained FILE") from None
