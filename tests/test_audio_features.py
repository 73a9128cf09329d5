"""Features: shapes, pitch accuracy (synthetic and against librosa's pYIN on a real clip),
invariance to recording level, and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from conftest import RAVDESS_CLIP, needs_ravdess, voice
from mmfer.audio.features import PROSODY_NAMES, FeatureExtractor, yin
from mmfer.audio.io import load_audio
from mmfer.config import AudioFeatureCfg


@pytest.fixture(scope="module")
def fx() -> FeatureExtractor:
    return FeatureExtractor()


@pytest.mark.parametrize("f0", [70.0, 110.0, 196.0, 261.6, 440.0])
def test_yin_finds_the_pitch_of_harmonic_tones(f0: float) -> None:
    est, aperiodicity = yin(torch.from_numpy(voice(f0, 1.0)))
    inner = est[10:-10]  # frames away from the padded edges
    cents = 1200 * torch.log2(inner / f0).abs()
    assert float(cents.max()) < 10, f"worst frame {float(cents.max()):.1f} cents off"
    assert float(aperiodicity[10:-10].max()) < 0.05


def test_yin_follows_a_gliding_pitch() -> None:
    sr, n = 16000, 16000
    f = np.linspace(120, 240, n)
    x = np.sin(2 * np.pi * np.cumsum(f) / sr).astype(np.float32)
    est = yin(torch.from_numpy(x))[0].numpy()
    truth = f[np.clip(np.arange(len(est)) * 160, 0, n - 1)]
    cents = 1200 * np.abs(np.log2(est[10:-10] / truth[10:-10]))
    assert np.median(cents) < 15


def test_noise_and_silence_are_unvoiced(fx: FeatureExtractor) -> None:
    noise = np.random.default_rng(0).normal(0, 0.1, 16000 * 2).astype(np.float32)
    assert float(fx(noise).voiced.float().mean()) < 0.02
    tone = fx(voice(150, 2.0))
    assert float(tone.voiced.float().mean()) > 0.95


def test_shapes_trim_and_alignment(fx: FeatureExtractor) -> None:
    cfg = AudioFeatureCfg()
    x = np.concatenate([np.zeros(16000, np.float32), voice(200, 2.0), np.zeros(8000, np.float32)])
    f = fx(x)
    assert f.mel.shape[0] == cfg.n_mels and f.prosody.shape == (len(PROSODY_NAMES), f.frames)
    assert f.f0_hz.shape == f.voiced.shape == f.rms_db.shape == (f.frames,)
    # 1 s + 0.5 s of silence trimmed down to a 100 ms margin on each side.
    assert f.frames * 0.01 == pytest.approx(2.0 + 0.2, abs=0.06)
    assert f.active_s == pytest.approx(2.0, abs=0.06)
    untrimmed = FeatureExtractor(AudioFeatureCfg(trim=False))(x)
    assert untrimmed.frames == len(x) // 160 + 1


def test_per_utterance_normalisation_ignores_recording_level(fx: FeatureExtractor) -> None:
    # Invariance holds above the -100 dB power floor of the log: a room-noise bed keeps every band above it.
    rng = np.random.default_rng(2)
    x = voice(180, 1.5, vibrato=20.0) * (0.6 + 0.4 * np.hanning(24000)).astype(np.float32)
    x = x + rng.normal(0, 0.003, x.shape).astype(np.float32)
    a, b = fx(x), fx(0.05 * x)
    diff = (a.mel - b.mel).abs()  # normalised units (the utterance's spread is 1)
    assert float(diff.mean()) < 2e-3 and float(diff.max()) < 0.1
    torch.testing.assert_close(a.prosody, b.prosody, atol=1e-3, rtol=1e-3)


def test_pitch_features_separate_high_and_low_voices(fx: FeatureExtractor) -> None:
    pitch_abs = PROSODY_NAMES.index("pitch_abs")
    low, high = fx(voice(100, 1.0)), fx(voice(300, 1.0))
    assert float(high.prosody[pitch_abs].mean()) > float(low.prosody[pitch_abs].mean()) + 0.5
    rel = PROSODY_NAMES.index("pitch_rel")  # relative contour: a flat tone is flat whatever its pitch
    assert float(low.prosody[rel].abs().max()) < 0.05 and float(high.prosody[rel].abs().max()) < 0.05


def test_four_second_clip_costs_well_under_100_ms(fx: FeatureExtractor) -> None:
    x = voice(150, 4.0, vibrato=10)
    x = x + np.random.default_rng(1).normal(0, 0.01, x.shape).astype(np.float32)
    fx(x)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        fx(x)
        times.append(time.perf_counter() - t0)
    assert float(np.median(times)) < 0.05, f"median {np.median(times) * 1000:.1f} ms"


@needs_ravdess
@pytest.mark.slow
def test_pitch_agrees_with_pyin_on_real_speech() -> None:
    """Where we call a speech frame voiced, pYIN agrees and the pitch matches within a few cents.

    Our voicing decision is deliberately conservative (a YIN dip under 0.15): it misses about half
    of pYIN's voiced frames (weakly periodic onsets and glides), which the continuous
    periodicity track still carries. Frames outside speech (more than 45 dB under the loudest
    frame) are left out: pYIN calls mains hum in the pauses voiced.
    """
    librosa = pytest.importorskip("librosa")
    x = load_audio(RAVDESS_CLIP).samples
    f = FeatureExtractor(AudioFeatureCfg(trim=False))(x)
    ref, ref_voiced, _ = librosa.pyin(x, fmin=60, fmax=500, sr=16000, frame_length=1024, hop_length=160)
    n = min(len(ref), f.frames)
    speech = f.rms_db.numpy()[:n] > -45
    ours_v, ref_v = f.voiced.numpy()[:n] & speech, ref_voiced[:n] & speech
    both = ours_v & ref_v
    precision, recall = both.sum() / ours_v.sum(), both.sum() / ref_v.sum()
    assert both.sum() > 50 and precision > 0.95 and recall > 0.3, (precision, recall)
    cents = 1200 * np.abs(np.log2(f.f0_hz.numpy()[:n][both] / ref[:n][both]))
    assert np.median(cents) < 15 and np.mean(cents < 50) > 0.95, (np.median(cents), np.mean(cents < 50))
