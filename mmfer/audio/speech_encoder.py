"""A transformers speech encoder (wav2vec2 / HuBERT / WavLM) as an mmfer audio model.

:class:`SpeechEncoderNet`: the encoder (``AutoModel``) with a learned softmax-weighted sum over its
hidden layers, mean or attention pooling over time and a small head: the SUPERB
emotion-recognition recipe. The backbone is frozen by default, and then it is not part of the saved
artifact: the card names it (hub id + revision, or a directory) and only the layer weights and the
head are stored. transformers is imported only when one is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mmfer.audio.io import SAMPLE_RATE, resample
from mmfer.config import AudioModelCfg
from mmfer.core.hub import HFModelError, HFSpec, parse_spec, pretrained, require_modality, resolve


def encoder_spec(cfg: AudioModelCfg) -> HFSpec:
    if not cfg.hf_model:
        raise HFModelError("model.arch=hf_encoder needs model.hf_model (a hub id such as microsoft/wavlm-base-plus, "
                           "or a local save_pretrained directory)")
    return parse_spec(cfg.hf_model, cfg.hf_revision, trust_remote_code=cfg.trust_remote_code)


class SpeechEncoderNet(nn.Module):
    """Frozen (or fine-tuned) transformers speech encoder + weighted layer sum + pooling + head.

    ``forward`` takes either the checkpoint's ``input_values`` as (B, 1, N) with valid lengths in
    samples, or cached per-layer time means as (B, D, L+1): with a frozen backbone and mean
    pooling the weighted sum commutes with the mean, so training on cached layer means is exact.
    """

    takes_waveform = True

    def __init__(self, cfg: AudioModelCfg):
        super().__init__()
        if cfg.pooling not in ("mean", "attention"):
            raise HFModelError(f"model.pooling must be mean or attention, got {cfg.pooling!r}")
        self.cfg = cfg
        spec = encoder_spec(cfg)
        config, spec = resolve(spec)  # first: it says so when transformers is missing
        require_modality(config, "speech-encoder", spec)
        from transformers import AutoFeatureExtractor, AutoModel

        self.spec = spec
        self.extractor = pretrained(AutoFeatureExtractor, spec)
        backbone = pretrained(AutoModel, spec)
        if not hasattr(backbone, "_get_feat_extract_output_lengths"):
            raise HFModelError(f"{spec.label}: {type(backbone).__name__} is not a wav2vec2-style speech encoder")
        bc = backbone.config
        self.n_layers, self.dim = int(bc.num_hidden_layers) + 1, int(bc.hidden_size)
        if cfg.freeze_backbone:
            backbone.requires_grad_(False).eval()
            object.__setattr__(self, "backbone", backbone)  # not a submodule: not saved, not trained
        else:
            self.backbone = backbone
        self.layer_weights = nn.Parameter(torch.zeros(self.n_layers))
        self.attention = (nn.Sequential(nn.Linear(self.dim, 128), nn.Tanh(), nn.Linear(128, 1))
                          if cfg.pooling == "attention" else None)
        self.head = nn.Sequential(nn.Linear(self.dim, cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.drop_rate),
                                  nn.Linear(cfg.hidden, cfg.num_classes))

    def _apply(self, fn: Any, recurse: bool = True) -> SpeechEncoderNet:  # keep the frozen backbone on our device
        super()._apply(fn, recurse)
        if self.cfg.freeze_backbone:
            self.backbone._apply(fn, recurse)
        return self

    def train(self, mode: bool = True) -> SpeechEncoderNet:
        super().train(mode)
        if self.cfg.freeze_backbone:
            self.backbone.eval()  # no dropout / masking inside a frozen encoder
        return self

    @property
    def sampling_rate(self) -> int:
        return int(getattr(self.extractor, "sampling_rate", SAMPLE_RATE))

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz mono samples -> the checkpoint's ``input_values`` (its own normalisation)."""
        x = resample(np.asarray(samples, np.float32), SAMPLE_RATE, self.sampling_rate)
        return np.asarray(self.extractor(x, sampling_rate=self.sampling_rate, return_tensors="np")["input_values"][0],
                          np.float32)

    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) input values -> stacked hidden states (B, L+1, T, D) and the valid-frame mask (B, T)."""
        b, n = wave.shape
        if lengths is None:
            lengths = torch.full((b,), n, dtype=torch.long, device=wave.device)
        mask = torch.arange(n, device=wave.device)[None] < lengths[:, None]
        # checkpoints whose extractor gives no attention mask (wav2vec2-base: group norm) expect zero padding only
        use_mask = bool(getattr(self.extractor, "return_attention_mask", True))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.freeze_backbone):
            out = self.backbone(wave, attention_mask=mask.long() if use_mask else None, output_hidden_states=True)
        hs = torch.stack(out.hidden_states, 1)
        frames = self.backbone._get_feat_extract_output_lengths(lengths).clamp(1, hs.shape[2])
        return hs, torch.arange(hs.shape[2], device=wave.device)[None] < frames[:, None]

    def layer_means(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L+1, D): every layer's mean over valid frames (what the frozen + mean recipe caches)."""
        hs, mask = self.hidden_states(wave, lengths)
        m = mask[:, None, :, None].to(hs.dtype)
        return (hs * m).sum(2) / m.sum(2)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        w = self.layer_weights.softmax(0)
        if x.dim() == 3 and x.shape[1] == 1:  # input values (B, 1, N)
            hs, mask = self.hidden_states(x[:, 0], lengths)
            h = torch.einsum("l,bltd->btd", w.to(hs.dtype), hs)
            if self.attention is not None:
                a = self.attention(h).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(-1)
                return torch.einsum("bt,btd->bd", a, h)
            m = mask[..., None].to(h.dtype)
            return (h * m).sum(1) / m.sum(1)
        if self.attention is not None:
            raise ValueError("attention pooling needs frames, not cached layer means")
        return torch.einsum("l,bdl->bd", w.to(x.dtype), x)  # cached layer means (B, D, L+1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(x, lengths))

    @property
    def cache_mode(self) -> str:
        """What the training table stores: exact layer means, or the input values themselves."""
        return "layer_means" if self.cfg.freeze_backbone and self.cfg.pooling == "mean" else "waveform"
