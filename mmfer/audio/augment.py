"""Audio augmentation: waveform perturbations (computed once per copy and cached) and
SpecAugment-style masking with random time crops (applied on the fly to features)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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
    probs = robust_probs(cfg)
    if probs:  # only then: recipes without channel effects draw exactly the random numbers they always did
        y = robust_perturb(np.clip(y, -1.0, 1.0).astype(np.float32), rng, probs)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def robust_probs(cfg: AudioDataCfg) -> dict[str, float]:
    """The channel effects a data config switches on, by name (see :func:`robust_perturb`)."""
    probs = {"reverb": cfg.reverb_prob, "band": cfg.band_prob, "telephone": cfg.telephone_prob,
             "codec": cfg.codec_prob, "level": cfg.level_prob}
    return {k: float(v) for k, v in probs.items() if v > 0}


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


# ---------------------------------------------------------------------------------------------
# Channel robustness: other microphones, rooms, phone lines and codecs than the training corpora.
# Each is a pure function of 16 kHz mono float32 speech (plus an explicit rng where it draws):
# same length out, float32, finite, and kept inside [-1, 1] whenever the input was.
# ---------------------------------------------------------------------------------------------

Range = float | tuple[float, float]

ROBUST_AUGMENTS = ("reverb", "band", "telephone", "codec", "level")
"""Names :func:`robust_perturb` accepts in ``probs``, in the order they are applied (room -> microphone ->
line -> codec -> level, as the sound travels)."""

# What robust_perturb draws from when an augmentation fires; typical consumer devices and links.
_BAND_LOW_HZ, _BAND_HIGH_HZ = (50.0, 400.0), (3000.0, 7500.0)  # cheap mics: weak bass, dull top
_CODEC_BITRATES = {"mp3": (16_000, 24_000, 32_000, 48_000), "opus": (8_000, 12_000, 16_000, 24_000)}
_LEVEL_DB = (-20.0, 12.0)  # quiet far-field phones to hot headsets
_CODECS = {  # name -> (encoders to try, container that carries the codec delay, so the decoder removes it)
    "mp3": (("libmp3lame", "mp3"), "mp3"),  # LAME writes its encoder delay/padding into the Xing header
    "opus": (("libopus", "opus"), "ogg"),  # Ogg Opus carries the pre-skip
}


class CodecUnavailable(RuntimeError):
    """The installed PyAV (FFmpeg) build has no encoder for the requested codec."""


def _draw(v: Range, rng: np.random.Generator) -> float:
    """A fixed value, or a uniform draw from a (low, high) range."""
    if isinstance(v, tuple):
        return float(rng.uniform(v[0], v[1]))
    return float(v)


def _finish(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """float32, finite, the input's length, and no new clipping: a filter can overshoot a full-scale input,
    so the whole output is scaled (linearly, not clipped) back under 1 when the input was inside [-1, 1]."""
    n = len(x)
    y = np.nan_to_num(np.asarray(y, dtype=np.float64).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
    if n and float(np.max(np.abs(x))) <= 1.0:
        peak = float(np.max(np.abs(y)))
        if peak > 1.0:
            y = y / peak
    return y.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return math.sqrt(float(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _match_level(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Scale ``y`` to the RMS of ``x``, so an augmentation changes the colour of the sound, not its level
    (level is :func:`change_level`'s job)."""
    ry = _rms(y)
    return y * (_rms(x) / ry) if ry > 1e-12 else y


def room_impulse_response(rng: np.random.Generator, rt60: float, drr_db: float, sr: int = SAMPLE_RATE,
                          predelay_ms: float = 3.0) -> np.ndarray:
    """A simulated room impulse response: a unit direct path, then a noise tail whose energy decays 60 dB
    in ``rt60`` seconds (Sabine's statistical model of a diffuse field), scaled so direct / reverberant
    energy is ``drr_db``. No geometry (pyroomacoustics is not a dependency); enough to smear speech the way
    rooms do."""
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive, got {rt60}")
    n = max(1, int(round(rt60 * sr)))  # energy is 60 dB down by then: the rest is inaudible
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-3 * math.log(10) * t / rt60)  # amplitude: -60 dB at t = rt60
    tail[: int(predelay_ms * sr / 1000) + 1] = 0.0  # first reflections arrive after the direct sound
    e_tail = float(np.sum(tail**2)) + 1e-12
    h = tail * math.sqrt(10 ** (-drr_db / 10) / e_tail)  # direct path energy is 1
    h[0] = 1.0
    return h


def reverberate(x: np.ndarray, rng: np.random.Generator, rt60: Range = (0.2, 0.8),
                drr_db: Range = (-3.0, 12.0)) -> np.ndarray:
    """Room reverberation: convolve with :func:`room_impulse_response` (``rt60`` seconds, direct-to-
    reverberant ratio ``drr_db``; each a value or a (low, high) range drawn from ``rng``), trimmed to
    the input (the direct path is at lag 0, so nothing shifts) and level-matched to it."""
    from scipy.signal import fftconvolve

    r, d = _draw(rt60, rng), _draw(drr_db, rng)  # drawn in a fixed order: same seed, same room
    h = room_impulse_response(rng, r, d)
    if len(x) == 0:
        return x.astype(np.float32)
    y = fftconvolve(x.astype(np.float64), h)[: len(x)]
    return _finish(_match_level(y, x), x)


def band_limit(x: np.ndarray, low_hz: float | None, high_hz: float | None, sr: int = SAMPLE_RATE,
               order: int = 4) -> np.ndarray:
    """Keep ``low_hz``..``high_hz`` (e.g. 300-3400 Hz for a phone, 100-7000 Hz for a cheap headset): a
    Butterworth filter run forwards and backwards (zero phase, so nothing shifts against the labels; the
    slopes double to 2 x 6 x ``order`` dB per octave). ``None`` (or 0 / Nyquist) leaves that side open."""
    from scipy.signal import butter, sosfiltfilt

    nyq = sr / 2
    lo = low_hz if low_hz is not None and low_hz > 0 else None
    hi = high_hz if high_hz is not None and high_hz < nyq else None
    if lo is not None and hi is not None and lo >= hi:
        raise ValueError(f"band_limit needs low_hz < high_hz, got {low_hz} and {high_hz}")
    if (lo is None and hi is None) or len(x) < 2:
        return _finish(x, x)
    if lo is not None and hi is not None:
        sos = butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    elif lo is not None:
        sos = butter(order, lo, btype="highpass", fs=sr, output="sos")
    else:
        sos = butter(order, hi, btype="lowpass", fs=sr, output="sos")
    padlen = min(3 * (2 * len(sos) + 1), len(x) - 1)  # scipy's default, shortened for very short clips
    return _finish(sosfiltfilt(sos, x.astype(np.float64), padlen=padlen), x)


def _mu_compress(x: np.ndarray, mu: float) -> np.ndarray:
    return np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)


def _mu_expand(y: np.ndarray, mu: float) -> np.ndarray:
    return np.sign(y) * np.expm1(np.abs(y) * math.log1p(mu)) / mu


def telephone(x: np.ndarray, rng: np.random.Generator, low_hz: float = 300.0, high_hz: float = 3400.0,
              mu: Range = (2.0, 16.0), g711: bool = True) -> np.ndarray:
    """A narrow-band phone line: down to 8 kHz and back (soxr, so nothing above 4 kHz survives), the
    ``low_hz``..``high_hz`` telephone band, a mild mu-law-style compression of the dynamics (``mu``,
    drawn from ``rng``: small, so quiet syllables come up a few dB as line AGC does), and with ``g711``
    the 8-bit mu-law (mu = 255) quantisation of a G.711 line, whose noise follows the level. Level-matched
    to the input."""
    import soxr

    line_sr = 8_000
    m = _draw(mu, rng)
    if len(x) == 0:
        return x.astype(np.float32)
    y = soxr.resample(x.astype(np.float64), SAMPLE_RATE, line_sr)
    y = band_limit(y, low_hz, min(high_hz, 0.49 * line_sr), sr=line_sr).astype(np.float64)
    peak = float(np.max(np.abs(y)))
    if peak > 1e-9:
        y = _mu_compress(y / peak, m) * peak  # relative to the peak: compresses dynamics, not absolute level
        if g711:  # everything stays at 8 kHz, so the quantisation noise stays below 4 kHz too
            s = 0.99 / peak  # the line's full scale
            q = np.round(_mu_compress(np.clip(y * s, -1, 1), 255.0) * 127) / 127
            y = _mu_expand(q, 255.0) / s
        # the receiving end filters to the band again (G.712), taking out what the nonlinearity spread
        y = band_limit(y, low_hz, min(high_hz, 0.49 * line_sr), sr=line_sr).astype(np.float64)
    y = soxr.resample(y, line_sr, SAMPLE_RATE)
    return _finish(_match_level(y, x), x)


def _encoder(codec: str) -> tuple[str, str]:
    """The first PyAV encoder for ``codec`` in this FFmpeg build, and its container."""
    import av

    if codec not in _CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(_CODECS)}")
    names, container = _CODECS[codec]
    for name in names:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - UnknownCodecError, or an FFmpeg without the encoder compiled in
            continue
        return name, container
    raise CodecUnavailable(f"the installed PyAV {av.__version__} (FFmpeg) has no {codec} encoder "
                           f"(tried {', '.join(names)}); install a PyAV wheel built with it or drop 'codec'")


def codec_available(codec: str) -> bool:
    """Whether :func:`codec_round_trip` can use ``codec`` ("mp3" or "opus") with the installed PyAV."""
    try:
        _encoder(codec)
    except CodecUnavailable:
        return False
    return True


def codec_round_trip(x: np.ndarray, codec: str = "mp3", bitrate: int = 32_000) -> np.ndarray:
    """Encode and decode in memory with PyAV (MP3 or Opus at ``bitrate`` bit/s), as speech sent through a
    messaging app or a stored voice note is. The container carries the codec delay (LAME's header for
    MP3, Ogg's pre-skip for Opus) and FFmpeg's decoder drops it, so the output lines up with the input;
    what remains (the padding to a whole frame) is trimmed. Raises :class:`CodecUnavailable` if this
    PyAV build lacks the encoder."""
    import io

    import av
    import soxr

    enc, container = _encoder(codec)
    if len(x) == 0:
        return x.astype(np.float32)
    src = np.ascontiguousarray(x, dtype=np.float32)
    if float(np.max(np.abs(src))) > 1.0:  # encoders assume full scale 1: keep louder inputs, scaled
        scale = float(np.max(np.abs(src)))
        src = src / scale
    else:
        scale = 1.0
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(enc, rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = int(bitrate)
        frame = av.AudioFrame.from_ndarray(src[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, 0
        for packet in stream.encode(frame):  # PyAV reframes to the codec's frame size and sample format
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    chunks, rate = [], SAMPLE_RATE
    with av.open(io.BytesIO(buf.getvalue()), "r") as inp:
        stream = inp.streams.audio[0]
        for fr in inp.decode(stream):
            rate = fr.sample_rate
            a = fr.to_ndarray().astype(np.float64)
            chunks.append(a.reshape(-1) if fr.format.is_planar else a.reshape(-1, len(fr.layout.channels))[:, 0])
    y = np.concatenate(chunks) if chunks else np.zeros(0)
    if rate != SAMPLE_RATE:  # Opus always decodes at 48 kHz
        y = soxr.resample(y, rate, SAMPLE_RATE)
    return _finish(y * scale, x)


def _soft_limit(y: np.ndarray, knee: float = 0.9, ceiling: float = 0.99) -> np.ndarray:
    """Identity below ``knee``, then a tanh curve that meets it with slope 1 and approaches ``ceiling``
    without reaching it: loud peaks are rounded like an analogue limiter instead of clipped. The ceiling
    sits below mmfer.audio.io's clip detector (0.999), so a limited clip is never reported as clipped."""
    if not 0 < knee < ceiling <= 1:
        raise ValueError(f"need 0 < knee < ceiling <= 1, got knee={knee}, ceiling={ceiling}")
    a = np.abs(y)
    over = a > knee
    out = y.copy()
    w = ceiling - knee
    out[over] = np.sign(y[over]) * (knee + w * np.tanh((a[over] - knee) / w))
    return out


def change_level(x: np.ndarray, gain_db: float, knee: float = 0.9) -> np.ndarray:
    """Change the level by ``gain_db``, peaks above ``knee`` softly limited so nothing reaches full scale
    (a near, loud talker on a hot microphone). The RMS moves by ``gain_db`` exactly while no peak passes
    the knee."""
    y = x.astype(np.float64) * 10 ** (gain_db / 20)
    return _finish(_soft_limit(y, knee), x)


def robust_perturb(x: np.ndarray, rng: np.random.Generator, probs: Mapping[str, float]) -> np.ndarray:
    """Apply each channel augmentation with its own probability: ``probs`` maps names from
    :data:`ROBUST_AUGMENTS` ("reverb", "band", "telephone", "codec", "level") to probabilities; missing
    names never fire. Every draw happens whether or not an augmentation fires, so one seed gives one
    result whatever ``probs`` holds for the others. A missing codec raises :class:`CodecUnavailable`
    rather than silently changing the recipe."""
    unknown = set(probs) - set(ROBUST_AUGMENTS)
    if unknown:
        raise ValueError(f"unknown augmentations {sorted(unknown)}; expected some of {list(ROBUST_AUGMENTS)}")
    for name, p in probs.items():
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"probability of {name!r} must be in [0, 1], got {p}")
    # One sub-generator per augmentation: its parameters never depend on what fired before it.
    subs = dict(zip(ROBUST_AUGMENTS, rng.spawn(len(ROBUST_AUGMENTS)), strict=True))
    fire = {name: bool(rng.random() < float(probs.get(name, 0.0))) for name in ROBUST_AUGMENTS}
    y = np.asarray(x, dtype=np.float32)
    if fire["reverb"]:
        y = reverberate(y, subs["reverb"])
    if fire["band"]:
        g = subs["band"]
        y = band_limit(y, _draw(_BAND_LOW_HZ, g), _draw(_BAND_HIGH_HZ, g))
    if fire["telephone"]:
        y = telephone(y, subs["telephone"])
    if fire["codec"]:
        g = subs["codec"]
        codec = str(g.choice(sorted(_CODEC_BITRATES)))
        y = codec_round_trip(y, codec, int(g.choice(_CODEC_BITRATES[codec])))
    if fire["level"]:
        y = change_level(y, _draw(_LEVEL_DB, subs["level"]))
    return _finish(y, x)


# ---------------------------------------------------------------------------------------------
# Feature normalisation (cepstral mean and variance normalisation, CMVN)
# ---------------------------------------------------------------------------------------------

Feats = np.ndarray | torch.Tensor


def _cmvn_apply(feats: Feats, mean: np.ndarray, std: np.ndarray) -> Feats:
    if isinstance(feats, torch.Tensor):
        m = torch.as_tensor(mean, dtype=torch.float64, device=feats.device)
        s = torch.as_tensor(std, dtype=torch.float64, device=feats.device)
        return ((feats.double() - m) / s).to(feats.dtype if feats.is_floating_point() else torch.float32)
    out = (np.asarray(feats, dtype=np.float64) - mean) / std
    return out.astype(feats.dtype if np.issubdtype(feats.dtype, np.floating) else np.float32)


def _moments(feats: Feats, time_axis: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Sum and sum of squares over time (float64, keepdims) and the frame count."""
    a = feats.detach().cpu().double().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats, np.float64)
    return a.sum(axis=time_axis, keepdims=True), np.square(a).sum(axis=time_axis, keepdims=True), a.shape[time_axis]


def _stats(s1: np.ndarray, s2: np.ndarray, n: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    mean = s1 / max(n, 1)
    var = np.maximum(s2 / max(n, 1) - mean**2, 0.0)
    return mean, np.sqrt(var + eps)  # eps: a constant feature (silence, a dead band) maps to 0, not NaN


def utterance_cmvn(feats: Feats, time_axis: int = -1, eps: float = 1e-8) -> Feats:
    """Per-utterance CMVN: every feature (row of a (F, T) array, or any layout with time on ``time_axis``)
    to zero mean and unit variance over the utterance's frames. A microphone or room adds a roughly
    constant offset to log-mel features (a convolution is an addition in the log spectrum) and a level
    change scales them; removing each utterance's mean and variance takes both out, so the model sees
    how the voice moves rather than what it was recorded with. numpy in, numpy out; torch in, torch out."""
    mean, std = _stats(*_moments(feats, time_axis), eps)
    return _cmvn_apply(feats, mean, std)


def speaker_cmvn(feats_list: Sequence[Feats], time_axis: int = -1, eps: float = 1e-8) -> list[Feats]:
    """Per-speaker CMVN: the statistics are pooled over all frames of all of one speaker's utterances
    (weighted by length) and applied to each. This removes the speaker's (and their channel's) constant
    offset but, unlike :func:`utterance_cmvn`, keeps the differences between that speaker's utterances:
    an angry utterance stays louder and higher than the same speaker's neutral one, which is the signal
    emotion recognition needs; per-utterance CMVN would erase it for short clips."""
    if not feats_list:
        return []
    moments = [_moments(f, time_axis) for f in feats_list]
    s1 = sum(m[0] for m in moments)
    s2 = sum(m[1] for m in moments)
    mean, std = _stats(s1, s2, sum(m[2] for m in moments), eps)
    return [_cmvn_apply(f, mean, std) for f in feats_list]
