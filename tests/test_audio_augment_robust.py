"""Channel-robustness augmentations (reverb, band limits, phone line, codecs, level) and CMVN: each
changes generated signals the way it claims, keeps length / dtype / range, and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import welch

from mmfer.audio import augment as A
from mmfer.audio.io import SAMPLE_RATE as SR


def tone(f: float = 440.0, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def white(seconds: float = 1.0, seed: int = 0, amp: float = 0.1) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


def speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Band-limited noise with a syllable-rate envelope: broadband and dynamic, like speech."""
    from scipy.signal import butter, sosfilt

    n = int(SR * seconds)
    x = sosfilt(butter(4, [100, 6000], btype="band", fs=SR, output="sos"), white(seconds, seed, 1.0))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / SR)
    x = x * env
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def band_db(x: np.ndarray, lo: float, hi: float) -> float:
    f, p = welch(x.astype(np.float64), fs=SR, nperseg=1024)
    sel = (f >= lo) & (f <= hi)
    return float(10 * np.log10(np.sum(p[sel]) + 1e-30))


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-30))


def check_output(y: np.ndarray, x: np.ndarray) -> None:
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.all(np.isfinite(y))
    assert len(y) == 0 or np.max(np.abs(y)) <= 1.0


# -- reverberation -----------------------------------------------------------------------------

def burst() -> np.ndarray:
    """0.3 s tone burst, then 0.7 s of silence."""
    x = np.zeros(SR, dtype=np.float32)
    x[: int(0.3 * SR)] = tone(700.0, 0.3, 0.5)
    return x


def tail_ratio_db(y: np.ndarray) -> float:
    """Energy in the 50-400 ms after the burst, relative to the burst."""
    end = int(0.3 * SR)
    return rms_db(y[end + SR // 20 : end + int(0.4 * SR)]) - rms_db(y[:end])


def test_reverb_adds_a_decaying_tail_that_grows_with_rt60() -> None:
    x = burst()
    ratios = []
    for rt60 in (0.2, 0.5, 1.0):
        y = A.reverberate(x, np.random.default_rng(1), rt60=rt60, drr_db=0.0)
        check_output(y, x)
        assert abs(rms_db(y) - rms_db(x)) < 0.1  # level-matched
        ratios.append(tail_ratio_db(y))
    assert ratios[0] > -60  # the dry signal has no tail at all
    assert ratios[0] < ratios[1] < ratios[2], ratios
    assert ratios[2] - ratios[0] > 10


def test_reverb_keeps_the_direct_path_aligned() -> None:
    x = white(0.5)
    y = A.reverberate(x, np.random.default_rng(2), rt60=0.3, drr_db=10.0)
    c = np.correlate(y[:4000], x[:4000], mode="full")
    assert int(np.argmax(c)) - 3999 == 0


def test_room_impulse_response_has_the_requested_drr() -> None:
    h = A.room_impulse_response(np.random.default_rng(0), rt60=0.4, drr_db=6.0)
    assert h[0] == 1.0 and len(h) == int(0.4 * SR)
    assert 10 * np.log10(1.0 / np.sum(h[1:] ** 2)) == pytest.approx(6.0, abs=1e-6)


# -- band limits and the phone line ------------------------------------------------------------

def test_band_limit_removes_energy_outside_the_band() -> None:
    x = white(2.0)
    y = A.band_limit(x, 300, 3400)
    check_output(y, x)
    assert band_db(y, 1000, 2500) == pytest.approx(band_db(x, 1000, 2500), abs=1.0)  # passband untouched
    assert band_db(x, 0, 150) - band_db(y, 0, 150) > 30
    assert band_db(x, 5000, 8000) - band_db(y, 5000, 8000) > 30
    # open sides: only a high-pass or only a low-pass
    assert band_db(x, 0, 150) - band_db(A.band_limit(x, None, 3400), 0, 150) < 1
    assert band_db(x, 5000, 8000) - band_db(A.band_limit(x, 300, None), 5000, 8000) < 1
    with pytest.raises(ValueError):
        A.band_limit(x, 3000, 300)


def test_band_limit_keeps_full_scale_inputs_unclipped_and_short_inputs_work() -> None:
    sq = np.sign(tone(200.0)).astype(np.float32)  # a full-scale square wave overshoots when filtered
    check_output(A.band_limit(sq, 300, 3400), sq)
    short = white(0.001)
    check_output(A.band_limit(short, 300, 3400), short)


def test_telephone_round_trip_removes_energy_above_4khz() -> None:
    x = white(2.0)
    y = A.telephone(x, np.random.default_rng(0))
    check_output(y, x)
    assert band_db(x, 4200, 8000) - band_db(y, 4200, 8000) > 30
    assert band_db(x, 0, 150) - band_db(y, 0, 150) > 20
    assert abs(rms_db(y) - rms_db(x)) < 0.5  # level-matched
    assert np.corrcoef(A.band_limit(x, 300, 3400), y)[0, 1] > 0.9  # still the same signal in the band


def test_telephone_compresses_dynamics() -> None:
    x = speechlike()
    y = A.telephone(x, np.random.default_rng(0), mu=16.0, g711=False)
    crest = lambda s: float(np.max(np.abs(s)) / np.sqrt(np.mean(s.astype(np.float64) ** 2)))  # noqa: E731
    assert crest(y) < crest(A.band_limit(x, 300, 3400)) - 0.2


# -- codecs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec,bitrate", [("mp3", 32_000), ("opus", 16_000)])
def test_codec_round_trip_keeps_length_and_alignment(codec: str, bitrate: int) -> None:
    if not A.codec_available(codec):
        pytest.skip(f"no {codec} encoder in this PyAV build")
    x = tone(440.0, 0.77) + 0.3 * speechlike(0.77)  # an odd length: not a whole number of codec frames
    y = A.codec_round_trip(x, codec, bitrate)
    check_output(y, x)
    assert np.corrcoef(x, y)[0, 1] > 0.9  # aligned: no codec delay left
    assert not np.allclose(x, y, atol=1e-3)  # but lossy
    c = np.correlate(y[2000:10000], x[2000:10000], mode="full")
    assert abs(int(np.argmax(c)) - 7999) <= 1


def test_codec_round_trip_on_a_pure_tone_and_tiny_inputs() -> None:
    x = tone(300.0, 0.5)
    for codec in ("mp3", "opus"):
        if A.codec_available(codec):
            assert np.corrcoef(x, A.codec_round_trip(x, codec))[0, 1] > 0.9
            for n in (0, 1, 100):
                check_output(A.codec_round_trip(x[:n], codec), x[:n])


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        A.codec_round_trip(tone(), "vorbis")


def test_missing_encoder_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(A._CODECS, "mp3", (("no-such-encoder",), "mp3"))
    assert not A.codec_available("mp3")
    with pytest.raises(A.CodecUnavailable, match="no mp3 encoder"):
        A.codec_round_trip(tone(), "mp3")


# -- level -------------------------------------------------------------------------------------

@pytest.mark.parametrize("gain_db", [-20.0, -6.0, 0.0, 3.0, 6.0])
def test_change_level_moves_rms_by_the_requested_db(gain_db: float) -> None:
    x = tone(440.0, 0.5, amp=0.25)
    y = A.change_level(x, gain_db)
    check_output(y, x)
    assert rms_db(y) - rms_db(x) == pytest.approx(gain_db, abs=0.5)


def test_change_level_never_clips() -> None:
    x = tone(440.0, 0.5, amp=0.9)
    y = A.change_level(x, 20.0)
    check_output(y, x)
    assert np.max(np.abs(y)) < 1.0
    assert rms_db(y) > rms_db(x) + 2  # louder all the same
    assert np.all(np.diff(y[np.argsort(x)]) >= 0)  # monotone: limited, never folded over


# -- robust_perturb ----------------------------------------------------------------------------

ALL = {name: 1.0 for name in A.ROBUST_AUGMENTS}


def test_robust_perturb_is_deterministic_for_a_seed() -> None:
    x = speechlike(0.5)
    a = A.robust_perturb(x, np.random.default_rng(7), ALL)
    b = A.robust_perturb(x, np.random.default_rng(7), ALL)
    c = A.robust_perturb(x, np.random.default_rng(8), ALL)
    check_output(a, x)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_robust_perturb_probabilities() -> None:
    x = speechlike(0.5)
    assert np.array_equal(A.robust_perturb(x, np.random.default_rng(0), {}), x)
    assert np.array_equal(A.robust_perturb(x, np.random.default_rng(0), {"reverb": 0.0}), x)
    y = A.robust_perturb(x, np.random.default_rng(0), {"telephone": 1.0})
    assert band_db(x, 4200, 8000) - band_db(y, 4200, 8000) > 30
    with pytest.raises(ValueError, match="unknown"):
        A.robust_perturb(x, np.random.default_rng(0), {"echo": 1.0})
    with pytest.raises(ValueError):
        A.robust_perturb(x, np.random.default_rng(0), {"level": 1.5})


@pytest.mark.parametrize("fn", [
    lambda x, g: A.reverberate(x, g),
    lambda x, g: A.telephone(x, g),
    lambda x, g: A.robust_perturb(x, g, {"reverb": 0.5, "band": 0.5, "level": 0.5}),
])
def test_seeded_augmentations_are_deterministic(fn) -> None:  # noqa: ANN001
    x = speechlike(0.3)
    assert np.array_equal(fn(x, np.random.default_rng(3)), fn(x, np.random.default_rng(3)))


# -- CMVN --------------------------------------------------------------------------------------

def test_utterance_cmvn_gives_zero_mean_unit_variance_per_feature() -> None:
    rng = np.random.default_rng(0)
    feats = (rng.standard_normal((5, 200)) * np.arange(1, 6)[:, None] + 10 * np.arange(5)[:, None])
    out = A.utterance_cmvn(feats.astype(np.float32))
    assert out.dtype == np.float32 and out.shape == feats.shape
    np.testing.assert_allclose(out.mean(axis=-1), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=-1), 1, atol=1e-3)
    t = A.utterance_cmvn(torch.from_numpy(feats.astype(np.float32)))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), out, atol=1e-5)
    const = A.utterance_cmvn(np.ones((3, 10), dtype=np.float32))  # no variance: zeros, not NaN
    assert np.all(const == 0)


def test_utterance_cmvn_removes_a_channel_offset() -> None:
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((4, 100)).astype(np.float32)
    shifted = feats * 2.0 + rng.standard_normal((4, 1)).astype(np.float32) * 5  # another mic: gain and tilt
    np.testing.assert_allclose(A.utterance_cmvn(shifted), A.utterance_cmvn(feats), atol=1e-4)


def test_speaker_cmvn_uses_pooled_statistics() -> None:
    rng = np.random.default_rng(2)
    utts = [(rng.standard_normal((3, n)) + rng.standard_normal((3, 1))).astype(np.float32) for n in (50, 120, 7)]
    out = A.speaker_cmvn(utts)
    assert [o.shape for o in out] == [u.shape for u in utts]
    pooled = np.concatenate(utts, axis=-1)
    expected = (pooled - pooled.mean(-1, keepdims=True)) / pooled.std(-1, keepdims=True)
    np.testing.assert_allclose(np.concatenate(out, axis=-1), expected, atol=1e-4)
    # not per-utterance: a single utterance is not zero-mean on its own
    assert np.max(np.abs(out[0].mean(-1))) > 0.05
    tout = A.speaker_cmvn([torch.from_numpy(u) for u in utts])
    np.testing.assert_allclose(torch.cat(tout, dim=-1).numpy(), expected, atol=1e-4)
    assert A.speaker_cmvn([]) == []
