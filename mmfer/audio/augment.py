"""Audio augmentation: waveform perturbations (computed once per copy and cached) and
SpecAugment-style masking with random time crops (applied on the fly to features)."""

from __future__ import annotations

import math

import numpy as np
import torch

from mmfer.audio.io import SAMPLE_RATE
from mmfer.config import AudioAugmentCfg, AudioDataCfg


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster: tempo and pitch move together (Kaldi-style speed perturbation)."""
    if abs(factor - 1.0) < 1e-6:
        return x
    import torchaudio.functional as AF

    src = int(round(SAMPLE_RATE * factor / 100)) * 100
    g = math.gcd(src, SAMPLE_RATE)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(x)), src // g, SAMPLE_RATE // g).numpy()


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """Add white or pink noise at ``snr_db`` relative to the signal's power."""
    n = rng.standard_normal(len(x)).astype(np.float32)
    if colour == "pink":  # 1/f power: scale the spectrum by 1/sqrt(f)
        spec = np.fft.rfft(n)
        spec[1:] /= np.sqrt(np.arange(1, len(spec)))
        n = np.fft.irfft(spec, len(x)).astype(np.float32)
    p_sig = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
    p_noise = float(np.mean(n.astype(np.float64) ** 2)) + 1e-12
    return x + n * np.float32(math.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10))))


def perturb(x: np.ndarray, cfg: AudioDataCfg, rng: np.random.Generator) -> np.ndarray:
    """One random waveform copy: speed (and so pitch), additive noise, gain."""
    y = change_speed(x, float(rng.choice(cfg.speeds)))
    if rng.random() < cfg.noise_prob:
        y = add_noise(y, float(rng.uniform(*cfg.snr_db)), rng, colour=str(rng.choice(["white", "pink"])))
    y = y * np.float32(10 ** (rng.uniform(*cfg.gain_db) / 20))
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def spec_augment(feats: torch.Tensor, n_mels: int, cfg: AudioAugmentCfg, gen: torch.Generator | None = None
                 ) -> torch.Tensor:
    """Mask ``freq_masks`` mel bands and ``time_masks`` time spans of (C, T) features (mel rows first).

    Frequency masks touch only the mel rows; time masks blank every row, prosody included.
    """
    feats = feats.clone()
    t = feats.shape[-1]
    for _ in range(cfg.freq_masks):
        w = int(torch.randint(0, cfg.freq_width + 1, (1,), generator=gen))
        f0 = int(torch.randint(0, max(1, n_mels - w), (1,), generator=gen))
        feats[f0 : f0 + w] = 0
    for _ in range(cfg.time_masks):
        w = min(int(torch.randint(0, cfg.time_width + 1, (1,), generator=gen)), t // 5)
        t0 = int(torch.randint(0, max(1, t - w), (1,), generator=gen))
        feats[:, t0 : t0 + w] = 0
    return feats
