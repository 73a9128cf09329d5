"""Features of a whole dataset, clean and waveform-augmented copies, computed once and cached.

Extraction is cheap (about 10 ms a clip), but speed perturbation and noise are waveform-level,
so each augmented copy is computed up front: ``variants`` random copies per clip, seeded, stored
as one float16 array in the mmfer cache (``$MMFER_CACHE/audio-features/<key>.npz``). The key
hashes the file list (names, sizes, mtimes), the feature config and the augmentation config, so
a change to any of them recomputes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from mmfer.audio.augment import perturb
from mmfer.audio.features import FeatureExtractor, Features
from mmfer.audio.io import load_audio
from mmfer.config import AudioDataCfg, AudioFeatureCfg, to_dict
from mmfer.paths import cache_dir

log = logging.getLogger(__name__)
TABLE_VERSION = 2  # 2: sources not at 16 kHz are resampled with soxr (was torchaudio)


def feature_matrix(f: Features) -> torch.Tensor:
    """(n_mels + 6, T): the network input of one clip."""
    return torch.cat([f.mel, f.prosody], 0)


@dataclasses.dataclass
class FeatureTable:
    """``frames`` (total, C) float16; rows of clip i, variant v are ``offsets[i, v]:offsets[i, v] + lengths[i, v]``."""

    frames: np.ndarray
    offsets: np.ndarray  # (n_clips, 1 + variants)
    lengths: np.ndarray
    key: str
    mode: str = "features"  # features (log-mel + prosody) | layer_means | waveform (mmfer.hf.audio)

    @property
    def variants(self) -> int:
        return self.offsets.shape[1] - 1

    def get(self, clip: int, variant: int = 0) -> torch.Tensor:
        o, n = self.offsets[clip, variant], self.lengths[clip, variant]
        return torch.from_numpy(self.frames[o : o + n].astype(np.float32).T)


def _key(files: Sequence[Path], feat: AudioFeatureCfg, data: AudioDataCfg, variants: int, seed: int,
         codec: str = "") -> str:
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)};".encode())
    aug = {k: v for k, v in to_dict(data).items() if k in ("speeds", "noise_prob", "snr_db", "gain_db")}
    robust = {k: v for k, v in to_dict(data).items() if k.endswith("_prob") and k != "noise_prob" and v}
    if robust:  # keys of recipes without channel effects stay as they were (their caches stay valid)
        aug["robust"] = robust
    h.update(json.dumps([TABLE_VERSION, to_dict(feat), aug, variants, seed, codec], sort_keys=True).encode())
    return h.hexdigest()[:16]


def build_feature_table(files: Sequence[Path], feat: AudioFeatureCfg, data: AudioDataCfg, variants: int | None = None,
                        seed: int = 0, use_cache: bool = True, codec: Callable[[np.ndarray], np.ndarray] | None = None
                        ) -> FeatureTable:
    """Features of every file (variant 0 clean, 1..variants augmented), from the cache when possible.

    ``codec`` replaces the log-mel features with another encoding of the samples, (rows, C) per clip
    (``codec.mode`` and ``codec.key`` name it: see :class:`mmfer.hf.audio.EncoderTableCodec`).
    """
    files = [Path(f) for f in files]
    variants = data.variants if variants is None else variants
    mode = getattr(codec, "mode", "features") if codec is not None else "features"
    key = _key(files, feat, data, variants, seed, getattr(codec, "key", "") if codec is not None else "")
    path = cache_dir("audio-features") / f"{key}.npz"
    if use_cache and path.is_file():
        with np.load(path) as z:
            return FeatureTable(z["frames"], z["offsets"], z["lengths"], key, mode)
    fx = FeatureExtractor(feat)

    def encode(x: np.ndarray) -> np.ndarray:
        return codec(x) if codec is not None else feature_matrix(fx(x)).T.numpy()
    chunks, lengths = [], np.zeros((len(files), 1 + variants), np.int64)
    started = time.time()
    for i, f in enumerate(files):
        x = load_audio(f).samples
        rng = np.random.default_rng([seed, i])
        for v in range(1 + variants):
            m = encode(x if v == 0 else perturb(x, data, rng))
            chunks.append(m.astype(np.float16))
            lengths[i, v] = m.shape[0]
        if (i + 1) % 200 == 0:
            log.info("features: %d/%d clips (%.0f s)", i + 1, len(files), time.time() - started)
    frames = np.concatenate(chunks)
    offsets = np.concatenate([[0], np.cumsum(lengths.ravel())[:-1]]).reshape(lengths.shape)
    if use_cache:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, frames=frames, offsets=offsets, lengths=lengths)
        tmp.replace(path)
    return FeatureTable(frames, offsets, lengths, key, mode)
