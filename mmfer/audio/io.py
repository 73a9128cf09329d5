"""Reading user audio robustly: any rate, any channel count, audio files or the audio track of
a video -> 16 kHz mono float32, or one clear error that starts with the file name.

soundfile (libsndfile) reads WAV/FLAC/OGG/MP3/AIFF...; everything else (MP4, MKV, WebM, M4A, AVI)
goes through PyAV. Long recordings are read in windows (:func:`iter_windows`), so memory stays
bounded however long the file is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16_000
MAX_LOAD_SECONDS = 600.0
"""Longest file :func:`load_audio` decodes whole; longer ones must be read with :func:`iter_windows`."""

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf"}
VIDEO_SUFFIXES = {".mp4", ".m4a", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".aac", ".wma", ".3gp"}

DEAD_CHANNEL_DB = -40.0  # a channel this far below the loudest one is treated as unconnected
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.001  # more than 0.1 % of samples at full scale: audibly clipped
DC_LEVEL = 0.01


class AudioLoadError(ValueError):
    """An audio file that cannot be used; the message starts with its name and says why."""


@dataclasses.dataclass
class AudioClip:
    """Mono float32 samples at :data:`SAMPLE_RATE`, with what was noticed while reading them."""

    samples: np.ndarray
    path: str
    source_rate: int
    source_channels: int
    offset_s: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _fail(path: str | Path, problem: str) -> AudioLoadError:
    return AudioLoadError(f"{path}: {problem}")


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as e:
        raise _fail(path, f"cannot access ({e.strerror or e})") from None
    if path.is_dir():
        raise _fail(path, "is a directory")
    if st.st_size == 0:
        raise _fail(path, "empty file (0 bytes)")


def _looks_like_text(path: Path) -> bool:
    head = path.open("rb").read(512)
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unreadable(path: Path, detail: str) -> AudioLoadError:
    if _looks_like_text(path):
        return _fail(path, "is a text file, not audio (check the file; the name's extension is misleading)")
    return _fail(path, f"not a readable audio or video file, or corrupt ({detail})")


def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    """(channels, n) float32 at ``rate`` -> (channels, m) at SAMPLE_RATE."""
    if rate == SAMPLE_RATE or x.shape[-1] == 0:
        return x
    import torchaudio.functional as AF

    g = math.gcd(rate, SAMPLE_RATE)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(x)), rate // g, SAMPLE_RATE // g).numpy()


def _declared_wav_frames(path: Path) -> int | None:
    """Frames that a RIFF/WAVE header's data chunk claims (libsndfile silently shortens truncated files)."""
    with path.open("rb") as f:
        head = f.read(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, None
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 22 <= len(head):
            block_align = int.from_bytes(head[pos + 20 : pos + 22], "little")
        if chunk == b"data":
            return size // block_align if block_align else None
        pos += 8 + size + (size & 1)
    return None


class _Source:
    """One opened file: rate, channel count, duration (None when unknown) and a block reader."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        _check_file(self.path)
        self.kind = "soundfile"
        self.rate, self.channels, self.frames = 0, 0, None
        import soundfile as sf

        try:
            info = sf.info(str(self.path))
            self.rate, self.channels, self.frames = int(info.samplerate), int(info.channels), int(info.frames)
        except Exception as sf_exc:  # libsndfile cannot read it: maybe a container FFmpeg knows
            self.kind = "av"
            self._probe_av(sf_exc)
        if self.rate <= 0 or self.channels <= 0:
            raise _fail(self.path, f"invalid header (rate {self.rate} Hz, {self.channels} channels)")
        self.problems: list[str] = []
        declared = _declared_wav_frames(self.path)
        if declared is not None and self.frames is not None and declared > self.frames * 1.02:
            self.problems.append(f"truncated: header promises {declared / self.rate:.2f} s, the file holds "
                                 f"{self.frames / self.rate:.2f} s")

    def _probe_av(self, sf_exc: Exception) -> None:
        import av

        try:
            with av.open(str(self.path)) as c:
                if not c.streams.audio:
                    kinds = sorted({s.type for s in c.streams}) or ["no streams"]
                    raise _fail(self.path, f"has no audio track (it holds {', '.join(kinds)})")
                s = c.streams.audio[0]
                self.rate, self.channels = int(s.rate or 0), int(s.channels or 0)
                if s.duration is not None and s.time_base is not None:
                    self.frames = int(float(s.duration * s.time_base) * self.rate)
                elif c.duration:
                    self.frames = int(c.duration / 1_000_000 * self.rate)
        except AudioLoadError:
            raise
        except Exception as av_exc:
            raise _unreadable(self.path, f"{type(sf_exc).__name__}; {type(av_exc).__name__}") from None

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.rate

    def blocks(self, seconds: float) -> Iterator[np.ndarray]:
        """Blocks of about ``seconds`` of (channels, n) float32 at the source rate."""
        size = max(1, int(seconds * self.rate))
        if self.kind == "soundfile":
            import soundfile as sf

            read = 0
            try:
                for block in sf.blocks(str(self.path), blocksize=size, dtype="float32", always_2d=True):
                    read += len(block)
                    yield block.T
            except sf.LibsndfileError as e:
                if read == 0:
                    raise _fail(self.path, f"corrupt or truncated audio data ({e.error_string.strip()})") from None
                self.problems.append(f"truncated: decoding stopped at {read / self.rate:.2f} s "
                                     f"({e.error_string.strip()}); used what could be read")
            return
        yield from self._av_blocks(size)

    def _av_blocks(self, size: int) -> Iterator[np.ndarray]:
        import av

        pending: list[np.ndarray] = []
        have = 0
        try:
            with av.open(str(self.path)) as c:
                stream = c.streams.audio[0]
                # Convert to planar float at the source rate/layout: our own mixer handles dead channels.
                res = av.AudioResampler(format="fltp", layout=stream.layout, rate=self.rate)
                for packet in c.demux(stream):
                    for frame in packet.decode():
                        for out in res.resample(frame):
                            arr = out.to_ndarray().reshape(self.channels, -1).astype(np.float32)
                            pending.append(arr)
                            have += arr.shape[1]
                            while have >= size:
                                buf = np.concatenate(pending, axis=1)
                                yield buf[:, :size]
                                pending, have = [buf[:, size:]], buf.shape[1] - size
        except av.FFmpegError as e:
            if have == 0 and not pending:
                raise _fail(self.path, f"corrupt or truncated audio data ({type(e).__name__})") from None
        if have:
            yield np.concatenate(pending, axis=1)


def _to_mono(x: np.ndarray, notes: list[str]) -> np.ndarray:
    """Mix channels, leaving out channels that carry (almost) nothing."""
    if x.shape[0] == 1:
        return x[0]
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=1)) + 1e-12
    live = 20 * np.log10(rms / rms.max()) > DEAD_CHANNEL_DB
    if not live.all():
        dead = [str(i + 1) for i in np.flatnonzero(~live)]
        msg = f"channel {', '.join(dead)} of {x.shape[0]} is silent; used the others"
        if msg not in notes:
            notes.append(msg)
        x = x[live]
    return x.mean(axis=0)


def _quality_notes(x: np.ndarray, source_rate: int, notes: list[str]) -> np.ndarray:
    """Remove a DC offset; note clipping and narrow-band sources. Returns the corrected signal."""
    if x.size == 0:
        return x
    dc = float(x.mean())
    if abs(dc) > DC_LEVEL:
        notes.append(f"DC offset {dc:+.3f} removed")
    x = x - dc
    clipped = float(np.mean(np.abs(x + dc) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        notes.append(f"clipped: {clipped:.1%} of samples at full scale (distorted; lower confidence)")
    if source_rate < SAMPLE_RATE:
        notes.append(f"recorded at {source_rate} Hz: nothing above {source_rate // 2} Hz (e.g. telephone audio); "
                     "the model was trained on 16 kHz speech, expect lower accuracy")
    return x.astype(np.float32, copy=False)


def audio_info(path: str | Path) -> dict[str, float | int | None | str]:
    """Rate, channels and duration from the header (nothing decoded)."""
    src = _Source(path)
    return {"path": str(path), "sample_rate": src.rate, "channels": src.channels, "duration_s": src.duration_s,
            "reader": src.kind}


def load_audio(path: str | Path, max_seconds: float | None = MAX_LOAD_SECONDS) -> AudioClip:
    """Decode a whole file to 16 kHz mono float32.

    Raises:
        AudioLoadError: missing, empty, not audio, corrupt, no audio track, or longer than
            ``max_seconds`` (read those with :func:`iter_windows`).
    """
    src = _Source(path)
    if max_seconds is not None and src.duration_s is not None and src.duration_s > max_seconds:
        raise _fail(path, f"is {src.duration_s / 60:.1f} min long; files over {max_seconds / 60:.0f} min are "
                          "processed in windows (iter_windows / the predictor does this automatically)")
    notes: list[str] = []
    blocks = list(src.blocks(60.0))
    if not blocks:
        raise _fail(path, "contains no audio samples")
    x = np.concatenate(blocks, axis=1)
    notes.extend(src.problems)
    mono = _to_mono(x, notes)[None]
    mono = _resample(mono, src.rate)[0]
    mono = _quality_notes(mono, src.rate, notes)
    return AudioClip(mono, str(path), src.rate, src.channels, 0.0, notes)


def iter_windows(path: str | Path, window_s: float = 4.0, hop_s: float | None = None,
                 min_last_s: float = 1.0) -> Iterator[AudioClip]:
    """Stream a file of any length as 16 kHz mono windows of ``window_s`` seconds.

    Memory holds one window (plus one decoder block), so a two-hour file costs what a minute does.
    The last window is kept when it is at least ``min_last_s`` long (or when it is the only one).
    """
    hop_s = hop_s or window_s
    src = _Source(path)
    win, hop = int(window_s * src.rate), int(hop_s * src.rate)
    said: set[str] = set()
    buf = np.zeros((src.channels, 0), np.float32)
    start = 0  # source-rate sample index of buf[:, 0]
    emitted = False

    def make(chunk: np.ndarray, at: int) -> AudioClip:
        local: list[str] = [p for p in src.problems if p not in said]
        said.update(local)
        mono = _to_mono(chunk, local)[None]
        mono = _quality_notes(_resample(mono, src.rate)[0], src.rate, local)
        return AudioClip(mono, str(path), src.rate, src.channels, at / src.rate, local)

    for block in src.blocks(max(window_s, 10.0)):
        buf = np.concatenate([buf, block], axis=1)
        while buf.shape[1] >= win:
            yield make(buf[:, :win], start)
            emitted = True
            buf, start = buf[:, hop:], start + hop
    fresh = buf.shape[1] - max(0, win - hop) if emitted else buf.shape[1]  # samples no window has covered
    if not emitted and buf.shape[1] == 0:
        raise _fail(path, "contains no audio samples")
    if not emitted or fresh >= min_last_s * src.rate:
        yield make(buf, start)


def is_audio_path(path: Path) -> bool:
    s = path.suffix.lower()
    return s in AUDIO_SUFFIXES or s in VIDEO_SUFFIXES


def iter_audio_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given, and audio/video files inside folders (recursively, sorted)."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and is_audio_path(f))
        else:
            yield p
