"""Speech emotion encoders, built by name from an :class:`~mmfer.config.AudioModelCfg`.

Input is the feature matrix of :mod:`mmfer.audio.features`: ``n_mels`` log-mel rows followed by
the prosody rows, shape (B, n_mels + 6, T), plus the valid length of each clip in frames.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmfer.audio.features import PROSODY_NAMES
from mmfer.audio.speech_encoder import SpeechEncoderNet  # transformers: imported only when one is built
from mmfer.config import AudioModelCfg
from mmfer.core.models import create_model, list_models, register_model

TIME_STRIDE = 4  # frames per encoder step (two 2x time poolings)


PREPROCESSING = {"input": "feature matrix of mmfer.audio.features: log-mel rows then prosody rows, (B, n_mels + 6, T)"}


def register(name: str) -> Callable:
    """Register an audio architecture (``audio/<name>`` in :func:`mmfer.core.models.list_models`)."""
    return register_model("audio", name, PREPROCESSING)


def list_audio_models() -> list[str]:
    return list_models("audio")


def _mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


class AttentiveStatsPool(nn.Module):
    """Attention weights over time -> weighted mean and std (Okabe et al., 2018); padding is ignored."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        w = logits.softmax(-1)
        mean = torch.einsum("bt,btd->bd", w, h)
        var = torch.einsum("bt,btd->bd", w, h.square()) - mean.square()
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], -1), w


class SpeechEmotionNet(nn.Module):
    """CNN over the log-mel spectrogram, prosody fused per step, BiGRU, attentive statistics pooling.

    ``forward`` gives class logits; :meth:`embed` gives the utterance embedding (for fusion) and the
    attention weights over encoder steps (which moments mattered).
    """

    def __init__(self, cfg: AudioModelCfg, n_mels: int):
        super().__init__()
        self.cfg = cfg
        self.n_mels = n_mels
        w = cfg.width
        chans = [w, 2 * w, 4 * w, 4 * w]
        pools = [(2, 2), (2, 2), (2, 1), (2, 1)]  # (freq, time)
        layers: list[nn.Module] = []
        cin = 1
        for c, p in zip(chans, pools, strict=True):
            layers += [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(p)]
            cin = c
        self.cnn = nn.Sequential(*layers)
        freq_out = n_mels // 16
        n_pros = len(PROSODY_NAMES) if cfg.use_prosody else 0
        self.proj = nn.Sequential(nn.Conv1d(cin * freq_out + n_pros, cfg.hidden, 1, bias=False),
                                  nn.BatchNorm1d(cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.drop_rate / 2))
        self.rnn = nn.GRU(cfg.hidden, cfg.hidden, batch_first=True, bidirectional=True)
        self.pool = AttentiveStatsPool(2 * cfg.hidden)
        self.embedding = nn.Sequential(nn.Linear(4 * cfg.hidden, cfg.embed_dim), nn.BatchNorm1d(cfg.embed_dim),
                                       nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(cfg.drop_rate), nn.Linear(cfg.embed_dim, cfg.num_classes))

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, t = x.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=x.device)
        mel = x[:, None, : self.n_mels]
        h = self.cnn(mel)  # (B, C, F', T/4)
        steps = h.shape[-1]
        h = h.flatten(1, 2)
        if self.cfg.use_prosody:
            pros = F.avg_pool1d(x[:, self.n_mels :], TIME_STRIDE, TIME_STRIDE)[..., :steps]
            h = torch.cat([h, pros], 1)
        h = self.proj(h).transpose(1, 2)  # (B, T', H)
        step_len = (lengths // TIME_STRIDE).clamp(1, steps)
        packed = pack_padded_sequence(h, step_len.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        pooled, weights = self.pool(out, _mask(step_len, steps))
        return self.embedding(pooled), weights

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(x, lengths)[0])


@register("crnn")
def _crnn(cfg: AudioModelCfg, n_mels: int) -> nn.Module:
    return SpeechEmotionNet(cfg, n_mels)


@register("hf_encoder")
def _hf_encoder(cfg: AudioModelCfg, n_mels: int) -> nn.Module:
    return SpeechEncoderNet(cfg)


def create_audio_model(cfg: AudioModelCfg, n_mels: int) -> SpeechEmotionNet:
    """Build the architecture ``cfg.arch`` (see :func:`list_audio_models`)."""
    if cfg.arch not in list_audio_models():
        raise ValueError(f"unknown audio model.arch {cfg.arch!r}; known: {', '.join(list_audio_models())}")
    if n_mels % 16:
        raise ValueError(f"features.n_mels must be a multiple of 16 for {cfg.arch!r}, got {n_mels}")
    return create_model("audio", cfg.arch, cfg, n_mels)
