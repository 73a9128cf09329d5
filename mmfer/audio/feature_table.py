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
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from mmfer.audio.augment import perturb, utterance_cmvn
from mmfer.audio.features import FeatureExtractor, Features
from mmfer.audio.io import load_audio
from mmfer.config import AudioDataCfg, AudioFeatureCfg, to_dict
from mmfer.paths import cache_dir

log = logging.getLogger(__name__)
TABLE_VERSION = 2  # 2: sources not at 16 kHz are resampled with soxr (was torchaudio)


CMVN_MODES = ("none", "utterance")


def apply_cmvn(x: torch.Tensor, n_mels: int, mode: str = "none") -> torch.Tensor:
    """The network input under the card's ``features.cmvn``: ``utterance`` scales each mel band of
    ``x`` ((n_mels + 6, T)) to unit variance over the clip (means are already removed); prosody rows
    are left alone (their zeros mean "unvoiced")."""
    if mode == "none":
        return x
    if mode != "utterance":
        raise ValueError(f"features.cmvn must be one of {CMVN_MODES}, got {mode!r}")
    mel = utterance_cmvn(x[:n_mels])
    return torch.cat([mel.to(x.dtype), x[n_mels:]], 0)


def feature_matrix(f: Features, cmvn: str = "none") -> torch.Tensor:
    """(n_mels + 6, T): the network input of one clip."""
    return apply_cmvn(torch.cat([f.mel, f.prosody], 0), f.mel.shape[0], cmvn)


@dataclasses.dataclass
class FeatureTable:
    """``frames`` (total, C) float16; rows of clip i, variant v are ``offsets[i, v]:offsets[i, v] + lengths[i, v]``."""

    frames: np.ndarray
    offsets: np.ndarray  # (n_clips, 1 + variants)
    lengths: np.ndarray
    key: str
    mode: str = "features"  # features (log-mel + prosody) | layer_means | waveform (mmfer.hf.audio)
    cmvn: str = "none"  # features.cmvn, applied on reading (see apply_cmvn); not part of the cached frames
    n_mels: int = 0

    @property
    def variants(self) -> int:
        return self.offsets.shape[1] - 1

    def get(self, clip: int, variant: int = 0) -> torch.Tensor:
        o, n = self.offsets[clip, variant], self.lengths[clip, variant]
        x = torch.from_numpy(self.frames[o : o + n].astype(np.float32).T)
        return apply_cmvn(x, self.n_mels, self.cmvn) if self.mode == "features" else x


def _key(files: Sequence[Path], feat: AudioFeatureCfg, data: AudioDataCfg, variants: int, seed: int,
         codec: str = "") -> str:
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)};".encode())
    aug = {k: v for k, v in to_dict(data).items() if k in ("speeds", "noise_prob", "snr_db", "gain_db")}
    feat_key = {k: v for k, v in to_dict(feat).items() if k != "cmvn"}  # applied on reading: same frames
    robust = {k: v for k, v in to_dict(data).items() if k.endswith("_prob") and k != "noise_prob" and v}
    if robust:  # keys of recipes without channel effects stay as they were (their caches stay valid)
        aug["robust"] = robust
    h.update(json.dumps([TABLE_VERSION, feat_key, aug, variants, seed, codec], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _chunks(n: int, workers: int | None) -> list[range]:
    """Contiguous clip ranges, one per worker (default: one per CPU core; serial for small sets)."""
    w = max(1, min(workers or os.cpu_count() or 1, n // 50 or 1))
    bounds = np.linspace(0, n, w + 1).astype(int)
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _encode_clips(files: Sequence[Path], feat: AudioFeatureCfg, data: AudioDataCfg, variants: int, seed: int,
                  clips: range, codec: Callable[[np.ndarray], np.ndarray] | None
                  ) -> tuple[list[np.ndarray], np.ndarray]:
    """float16 (T, C) matrices of ``clips`` (clean, then ``variants`` copies each) and their lengths."""
    fx = FeatureExtractor(feat) if codec is None else None
    chunks, lengths = [], np.zeros((len(clips), 1 + variants), np.int64)
    for row, i in enumerate(clips):
        x = load_audio(files[i]).samples
        rng = np.random.default_rng([seed, i])
        for v in range(1 + variants):
            y = x if v == 0 else perturb(x, data, rng)
            m = codec(y) if codec is not None else feature_matrix(fx(y)).T.numpy()  # type: ignore[misc]
            chunks.append(m.astype(np.float16))
            lengths[row, v] = m.shape[0]
    return chunks, lengths


def build_feature_table(files: Sequence[Path], feat: AudioFeatureCfg, data: AudioDataCfg, variants: int | None = None,
                        seed: int = 0, use_cache: bool = True, codec: Callable[[np.ndarray], np.ndarray] | None = None,
                        workers: int | None = None) -> FeatureTable:
    """Features of every file (variant 0 clean, 1..variants augmented), from the cache when possible.

    ``codec`` replaces the log-mel features with another encoding of the samples, (rows, C) per clip
    (``codec.mode`` and ``codec.key`` name it: see :class:`mmfer.hf.audio.EncoderTableCodec`; always
    computed in this process). ``workers`` processes share the clips (default: one per CPU core).
    """
    files = [Path(f) for f in files]
    variants = data.variants if variants is None else variants
    mode = getattr(codec, "mode", "features") if codec is not None else "features"
    key = _key(files, feat, data, variants, seed, getattr(codec, "key", "") if codec is not None else "")
    path = cache_dir("audio-features") / f"{key}.npz"
    read = {"cmvn": feat.cmvn, "n_mels": feat.n_mels}
    if use_cache and path.is_file():
        with np.load(path) as z:
            return FeatureTable(z["frames"], z["offsets"], z["lengths"], key, mode, **read)
    started = time.time()
    jobs = _chunks(len(files), workers if codec is None else 1)
    if len(jobs) == 1:
        parts = [_encode_clips(files, feat, data, variants, seed, jobs[0], codec)]
    else:  # the clips are independent and seeded by index: the same table whatever the worker count
        from concurrent.futures import ProcessPoolExecutor

        # the platform's default start method, as torch's DataLoader workers use (spawn would re-run
        # a user's unguarded script); one torch thread per worker, so workers do not oversubscribe the cores
        with ProcessPoolExecutor(len(jobs), initializer=torch.set_num_threads, initargs=(1,)) as pool:
            parts = list(pool.map(_encode_clips, *zip(*[(files, feat, data, variants, seed, j, None) for j in jobs],
                                                     strict=True)))
    chunks = [c for part, _ in parts for c in part]
    lengths = np.concatenate([ln for _, ln in parts]) if parts else np.zeros((0, 1 + variants), np.int64)
    log.info("features of %d clips in %.0f s (%d process(es))", len(files), time.time() - started, len(jobs))
    frames = np.concatenate(chunks)
    offsets = np.concatenate([[0], np.cumsum(lengths.ravel())[:-1]]).reshape(lengths.shape)
    if use_cache:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, frames=frames, offsets=offsets, lengths=lengths)
        tmp.replace(path)
    return FeatureTable(frames, offsets, lengths, key, mode, **read)
