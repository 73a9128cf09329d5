"""Temporal heads over per-frame face embeddings, built by name from a VideoModelCfg."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmfer.config import VideoModelCfg

_REGISTRY: dict[str, Callable[[VideoModelCfg, int], nn.Module]] = {}


def register(name: str) -> Callable:
    def deco(fn: Callable[[VideoModelCfg, int], nn.Module]) -> Callable[[VideoModelCfg, int], nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return deco


class TemporalEmotionNet(nn.Module):
    """Frame embeddings (+ motion: change since the first face and since the previous one) ->
    BiGRU -> attention over frames -> clip logits. ``attend`` also returns the per-frame weights."""

    def __init__(self, cfg: VideoModelCfg, feat_dim: int):
        super().__init__()
        self.cfg = cfg
        n_in = feat_dim * (3 if cfg.motion else 1) + 1
        self.norm = nn.LayerNorm(feat_dim)
        self.proj = nn.Sequential(nn.Linear(n_in, cfg.hidden), nn.GELU(), nn.Dropout(cfg.drop_rate))
        self.rnn = nn.GRU(cfg.hidden, cfg.hidden, batch_first=True, bidirectional=True)
        self.score = nn.Linear(2 * cfg.hidden, 1)
        self.head = nn.Sequential(nn.Dropout(cfg.drop_rate), nn.Linear(2 * cfg.hidden, cfg.num_classes))

    def _inputs(self, emb: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        p = present.unsqueeze(-1).to(emb.dtype)
        x = self.norm(emb) * p
        if not self.cfg.motion:
            return torch.cat([x, p], -1)
        first_idx = present.float().argmax(1)  # the first frame with a face
        first = x[torch.arange(x.shape[0], device=x.device), first_idx].unsqueeze(1)
        prev = torch.cat([x[:, :1], x[:, :-1]], 1)
        prev_p = torch.cat([p[:, :1], p[:, :-1]], 1)
        return torch.cat([x, (x - first) * p, (x - prev) * p * prev_p, p], -1)

    def attend(self, emb: torch.Tensor, present: torch.Tensor, lengths: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = emb.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=emb.device)
        h = self.proj(self._inputs(emb, present))
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        valid = torch.arange(t, device=emb.device)[None] < lengths[:, None]
        seen = valid & present
        mask = torch.where(seen.any(1, keepdim=True), seen, valid)  # a clip without any face attends to all frames
        w = self.score(out).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(-1)
        return self.head(torch.einsum("bt,btd->bd", w, out)), w

    def forward(self, emb: torch.Tensor, present: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(emb, present, lengths)[0]


@register("bigru")
def _bigru(cfg: VideoModelCfg, feat_dim: int) -> nn.Module:
    return TemporalEmotionNet(cfg, feat_dim)


def create_temporal_model(cfg: VideoModelCfg, feat_dim: int) -> TemporalEmotionNet:
    if cfg.arch not in _REGISTRY:
        raise ValueError(f"unknown video model.arch {cfg.arch!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[cfg.arch](cfg, feat_dim)
