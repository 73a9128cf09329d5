"""Reading audio: formats, rates, channels, video audio tracks, windows, and every kind of bad file."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import RAVDESS_CLIP, needs_ravdess, voice
from mmfer.audio.io import SAMPLE_RATE, AudioLoadError, audio_info, iter_audio_files, iter_windows, load_audio


def _write_video(path: Path, with_audio: bool, seconds: float = 2.0, f0: float = 220.0) -> None:
    import av

    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        st = None
        if with_audio:  # every stream must exist before the first packet is muxed
            st = c.add_stream("aac", rate=44100)
            st.layout = "stereo"
        for _ in range(int(seconds * 10)):
            for p in vs.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if st is not None:
            x = voice(f0, seconds, 44100)
            for i in range(0, len(x), 1024):
                blk = np.ascontiguousarray(np.stack([x[i : i + 1024]] * 2))
                fr = av.AudioFrame.from_ndarray(blk, format="fltp", layout="stereo")
                fr.sample_rate = 44100
                for p in st.encode(fr):
                    c.mux(p)
            for p in st.encode():
                c.mux(p)


@pytest.mark.parametrize(("fmt", "rate", "channels"), [("WAV", 48000, 2), ("FLAC", 22050, 1), ("OGG", 44100, 2),
                                                      ("WAV", 8000, 1), ("MP3", 44100, 1)])
def test_formats_rates_channels_become_16k_mono(tmp_path: Path, fmt: str, rate: int, channels: int) -> None:
    x = voice(200, 1.5, rate)
    data = np.stack([x] * channels, 1) if channels > 1 else x
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, data, rate, format=fmt)
    clip = load_audio(path)
    assert clip.source_rate == rate and clip.source_channels == channels
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.duration_s == pytest.approx(1.5, abs=0.06)  # MP3 adds encoder padding
    # The tone survives resampling: its spectrum peaks at 200 Hz.
    spec = np.abs(np.fft.rfft(clip.samples[: SAMPLE_RATE]))
    assert np.argmax(spec) == pytest.approx(200, abs=2)


def test_audio_track_of_a_video(tmp_path: Path) -> None:
    path = tmp_path / "talk.mp4"
    _write_video(path, with_audio=True, f0=330.0)
    clip = load_audio(path)
    assert clip.source_rate == 44100 and clip.duration_s == pytest.approx(2.0, abs=0.1)
    spec = np.abs(np.fft.rfft(clip.samples[: SAMPLE_RATE]))
    assert np.argmax(spec) == pytest.approx(330, abs=2)


def test_video_without_audio_track_is_named(tmp_path: Path) -> None:
    path = tmp_path / "silent_film.mp4"
    _write_video(path, with_audio=False)
    with pytest.raises(AudioLoadError, match=r"silent_film\.mp4: has no audio track"):
        load_audio(path)


def test_dead_stereo_channel_is_left_out(tmp_path: Path) -> None:
    x = voice(150, 1.0, 16000)
    path = tmp_path / "one_side.wav"
    sf.write(path, np.stack([x, np.zeros_like(x)], 1), 16000)
    clip = load_audio(path)
    assert any("channel 2 of 2 is silent" in n for n in clip.notes)
    np.testing.assert_allclose(clip.samples, x - x.mean(), atol=1e-4)  # not halved by mixing in silence


def test_dc_offset_removed_and_clipping_noted(tmp_path: Path) -> None:
    x = voice(180, 1.0, 16000) + 0.2
    sf.write(tmp_path / "dc.wav", x, 16000, subtype="FLOAT")
    clip = load_audio(tmp_path / "dc.wav")
    assert abs(float(clip.samples.mean())) < 1e-3 and any("DC offset" in n for n in clip.notes)
    sf.write(tmp_path / "loud.wav", np.clip(x * 8, -1, 1), 16000)
    assert any(n.startswith("clipped") for n in load_audio(tmp_path / "loud.wav").notes)


def test_narrow_band_source_is_noted(tmp_path: Path) -> None:
    sf.write(tmp_path / "phone.wav", voice(180, 1.0, 8000), 8000)
    assert any("8000 Hz" in n for n in load_audio(tmp_path / "phone.wav").notes)


@pytest.mark.parametrize(("content", "match"), [
    (b"", "empty file"),
    (b"hello, this is not audio at all\n" * 20, "is a text file, not audio"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not a readable audio"),
])
def test_unreadable_files_are_named(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioLoadError, match=rf"bad\.wav: {match}"):
        load_audio(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioLoadError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioLoadError, match="is a directory"):
        load_audio(tmp_path)


def test_truncated_wav_keeps_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, voice(200, 2.0, 16000), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    clip = load_audio(path)
    assert clip.duration_s == pytest.approx(1.0, abs=0.05)
    assert any(n.startswith("truncated") for n in clip.notes)


def test_truncated_flac_is_an_error_or_a_note(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    sf.write(path, voice(200, 3.0, 16000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    try:
        clip = load_audio(path)
    except AudioLoadError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        assert clip.duration_s < 3.0 and any(n.startswith("truncated") for n in clip.notes)


def test_windows_stream_a_two_hour_file_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "meeting.wav"
    rate = 8000
    minute = np.zeros(60 * rate, np.int16)
    minute[:rate] = (voice(200, 1.0, rate) * 20000).astype(np.int16)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(120):
            f.write(minute)
    assert audio_info(path)["duration_s"] == pytest.approx(7200.0)
    with pytest.raises(AudioLoadError, match="120.0 min long"):
        load_audio(path)
    tracemalloc.start()
    n, loud = 0, 0
    for w in iter_windows(path, window_s=4.0):
        n += 1
        loud += int(np.abs(w.samples).max() > 0.1)
        assert len(w.samples) == 4 * SAMPLE_RATE
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 1800 and loud == 120
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB: windows should not hold the file (230 MB at 16 kHz float)"


def test_windows_overlap_and_keep_a_long_enough_tail(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", voice(200, 10.5, 16000), 16000)
    starts = [w.offset_s for w in iter_windows(tmp_path / "a.wav", 4.0, 2.0)]
    assert starts == [0.0, 2.0, 4.0, 6.0]  # a window at 8 s would add only 0.5 s nobody has seen (< 1 s)
    tail = list(iter_windows(tmp_path / "a.wav", 4.0))
    assert [round(w.duration_s, 2) for w in tail] == [4.0, 4.0, 2.5]


def test_folder_listing_keeps_audio_and_video(tmp_path: Path) -> None:
    for name in ("b.wav", "a.flac", "c.mp4", "notes.txt", "sub/d.ogg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in iter_audio_files([tmp_path])]
    assert names == ["a.flac", "b.wav", "c.mp4", "sub/d.ogg"]


@needs_ravdess
def test_real_ravdess_flac() -> None:
    clip = load_audio(RAVDESS_CLIP)
    assert clip.source_rate == 16000 and 2.5 < clip.duration_s < 6 and not clip.notes


@pytest.mark.parametrize("rate", [48_001, 22_051, 8_001, 384_000])
def test_any_rate_resamples_in_linear_time_and_memory(tmp_path: Path, rate: int) -> None:
    """Rates with no small ratio to 16 kHz cost what any other does (torchaudio's kernel took 13 GB at 48,001)."""
    t = np.arange(rate) / rate
    sf.write(tmp_path / "odd.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate, subtype="FLOAT")
    tracemalloc.start()
    clip = load_audio(tmp_path / "odd.wav")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5 * rate * 4 + 2e6, f"peak {peak / 1e6:.1f} MB for one second of audio"
    assert clip.source_rate == rate and len(clip.samples) == pytest.approx(SAMPLE_RATE, abs=2)
    spec = np.abs(np.fft.rfft(clip.samples))
    assert np.argmax(spec) == pytest.approx(200, abs=1)


def test_windows_resample_as_one_stream(tmp_path: Path) -> None:
    """Windows of a 44.1 kHz file are cut from one continuous resampled stream: no seams, same samples."""
    x = voice(190, 9.0, 44_100)
    sf.write(tmp_path / "a.wav", x, 44_100, subtype="FLOAT")
    whole = load_audio(tmp_path / "a.wav").samples
    joined = np.concatenate([w.samples for w in iter_windows(tmp_path / "a.wav", 3.0)])
    assert len(joined) == len(whole)
    np.testing.assert_allclose(joined, whole, atol=2e-3)  # each window removes its own (tiny) DC


@pytest.mark.parametrize(("rate", "channels", "match"), [
    (1, 1, "sample rate 1 Hz is outside the 4,000-384,000 Hz"),
    (3_999, 1, "sample rate 3,999 Hz"),
    (384_001, 1, "sample rate 384,001 Hz"),
    (9_999_999, 1, "sample rate 9,999,999 Hz"),
    (16_000, 65, "65 channels; mmfer reads up to 64"),
])
def test_impossible_headers_are_refused_before_decoding(tmp_path: Path, rate: int, channels: int,
                                                        match: str) -> None:
    path = tmp_path / "odd.wav"
    sf.write(path, np.zeros((1000, channels), np.int16), 16_000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    i = data.find(b"fmt ")
    data[i + 12 : i + 16] = rate.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(AudioLoadError, match=rf"odd\.wav: {match}"):
        load_audio(path)
    with pytest.raises(AudioLoadError, match=match):
        next(iter_windows(path))


def test_sixty_four_channels_are_mixed(tmp_path: Path) -> None:
    x = voice(200, 1.0, 16_000)
    data = np.zeros((len(x), 64), np.float32)
    data[:, ::2] = x[:, None]  # odd channels dead
    sf.write(tmp_path / "array.wav", data, 16_000, subtype="FLOAT")
    clip = load_audio(tmp_path / "array.wav")
    assert clip.source_channels == 64 and any("of 64 is silent" in n for n in clip.notes)
    np.testing.assert_allclose(clip.samples, x - x.mean(), atol=1e-4)


def test_non_finite_and_over_range_samples_are_repaired(tmp_path: Path) -> None:
    x = voice(200, 1.0, 16_000)
    x[::10], x[5::10] = np.nan, -np.inf
    sf.write(tmp_path / "nan.wav", x, 16_000, subtype="FLOAT")
    clip = load_audio(tmp_path / "nan.wav")
    assert np.isfinite(clip.samples).all()
    assert any("3,200 non-finite values" in n for n in clip.notes)
    sf.write(tmp_path / "loud.wav", voice(200, 1.0, 16_000) * 1e30, 16_000, subtype="FLOAT")
    loud = load_audio(tmp_path / "loud.wav")
    assert np.abs(loud.samples).max() <= 2.0 and any("beyond full scale" in n for n in loud.notes)


def test_whole_file_decoding_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmfer.audio.io as audio_io

    sf.write(tmp_path / "wide.wav", np.zeros((3 * 16_000, 8), np.int16), 16_000, subtype="PCM_16")
    monkeypatch.setattr(audio_io, "MAX_LOAD_VALUES", 8 * 16_000 * 2)  # 2 s of 8 channels
    with pytest.raises(audio_io.AudioTooLong, match=r"wide\.wav: has 8 channels x 3 s; files this large are "
                                                    "processed in windows"):
        load_audio(tmp_path / "wide.wav")
    assert sum(w.duration_s for w in iter_windows(tmp_path / "wide.wav", 1.0)) == pytest.approx(3.0)


def test_fifo_and_tiny_files_are_named(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.wav")
    with pytest.raises(AudioLoadError, match="pipe.wav: not a regular file"):
        load_audio(tmp_path / "pipe.wav")  # would block forever if opened
    (tmp_path / "one.wav").write_bytes(b"R")
    with pytest.raises(AudioLoadError, match="one.wav: only 1 byte: too small"):
        load_audio(tmp_path / "one.wav")
