"""Temporal heads over per-frame face embeddings, built by name from a VideoModelCfg."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmfer.config import VideoModelCfg
from mmfer.core.models import create_model, list_models, register_model

PREPROCESSING = {"input": "per-frame face embeddings (B, T, feat_dim) of the face CNN the card names, or 48x48 grey "
                          "crops for a fine-tuned head, with a (B, T) mask of the frames where the face was found"}


def register(name: str) -> Callable:
    """Register a temporal architecture (``temporal/<name>`` in :func:`mmfer.core.models.list_models`)."""
    return register_model("temporal", name, PREPROCESSING)


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


class FineTunedTemporalNet(nn.Module):
    """The face CNN itself under the temporal head, trained end to end: reads the main face's grey
    crops (B, T, 48, 48), uint8 or float in [0, 1], instead of frozen embeddings. BatchNorm
    statistics of the CNN stay frozen: a few clips per batch would only make them noisy."""

    def __init__(self, frames: nn.Module, head: TemporalEmotionNet):
        super().__init__()
        self.frames, self.head = frames, head
        self.feat_dim = int(frames.feat_dim)
        self.train()  # Lightning keeps submodules' modes as it finds them: set the frozen BatchNorms now

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 48, 48) crops -> (N, feat_dim) embeddings from the fine-tuned CNN."""
        x = crops.float().div(255) if crops.dtype == torch.uint8 else crops.float()
        return self.frames.forward_features(x.unsqueeze(1))

    def attend(self, crops: torch.Tensor, present: torch.Tensor, lengths: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = present.shape
        emb = torch.zeros(b, t, self.feat_dim, device=present.device)
        if present.any():  # only frames with a face go through the CNN
            emb = emb.index_put((present,), self.embed(crops[present]))
        return self.head.attend(emb, present, lengths)

    def forward(self, crops: torch.Tensor, present: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self.attend(crops, present, lengths)[0]

    def train(self, mode: bool = True) -> FineTunedTemporalNet:
        super().train(mode)
        for m in self.frames.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self


@register("bigru")
def _bigru(cfg: VideoModelCfg, feat_dim: int) -> nn.Module:
    return TemporalEmotionNet(cfg, feat_dim)


def create_temporal_model(cfg: VideoModelCfg, feat_dim: int, frames: nn.Module | None = None
                          ) -> TemporalEmotionNet | FineTunedTemporalNet:
    """The head named by ``cfg.arch``; with ``cfg.finetune`` wrapped around ``frames`` (a face CNN)."""
    if cfg.arch not in list_models("temporal"):
        raise ValueError(f"unknown video model.arch {cfg.arch!r}; known: {', '.join(list_models('temporal'))}")
    head = create_model("temporal", cfg.arch, cfg, feat_dim)
    if not cfg.finetune:
        return head
    if frames is None:
        raise ValueError("model.finetune needs the face CNN to fine-tune")
    return FineTunedTemporalNet(frames, head)
