"""Reading user audio robustly: any rate, any channel count, audio files or the audio track of
a video -> 16 kHz mono float32, or one clear error that starts with the file name.

soundfile (libsndfile) reads WAV/FLAC/OGG/MP3/AIFF...; everything else (MP4, MKV, WebM, M4A, AVI)
goes through PyAV. Every file is decoded in bounded blocks and resampled as a stream (soxr), so
memory and time stay proportional to the file whatever its rate, channel count or length; long
recordings are read in windows (:func:`iter_windows`), so memory stays bounded however long the
file is. Headers that cannot be true (rates outside 4-384 kHz, more than 64 channels) are refused
before anything is decoded, and samples that are not numbers are repaired and noted.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.io.containers import mp4_damage
from mmfer.io.media import AUDIO_SUFFIXES as MEDIA_AUDIO_SUFFIXES
from mmfer.io.media import VIDEO_SUFFIXES as MEDIA_VIDEO_SUFFIXES
from mmfer.io.media import Media

SAMPLE_RATE = 16_000
MAX_LOAD_SECONDS = 600.0
"""Longest file :func:`load_audio` decodes whole; longer ones must be read with :func:`iter_windows`."""
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 4_000, 384_000
"""Sample rates mmfer reads; anything else is a broken header (or not speech)."""
MAX_CHANNELS = 64
MAX_LOAD_VALUES = 32 * 2**20
"""Samples x channels (at 16 kHz) :func:`load_audio` holds at once (128 MB of float32); more is read in windows."""
MIN_FILE_BYTES = 16  # no audio format fits in less
BLOCK_VALUES = 2**21  # source samples x channels per decoded block (8 MB), so no rate or channel count blows memory

# Folders are walked by these names; a file given by name is read by its content (mmfer.io.media).
AUDIO_SUFFIXES, VIDEO_SUFFIXES = MEDIA_AUDIO_SUFFIXES, MEDIA_VIDEO_SUFFIXES

DEAD_CHANNEL_DB = -40.0  # a channel this far below the loudest one is treated as unconnected
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.001  # more than 0.1 % of samples at full scale: audibly clipped
DC_LEVEL = 0.01


class AudioLoadError(ValueError):
    """An audio file that cannot be used; the message starts with its name and says why."""


class AudioTooLong(AudioLoadError):
    """A file too long (or too many channels) for :func:`load_audio`; :func:`iter_windows` reads it."""


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
    if not path.is_file():  # a FIFO or a device would block or never end
        raise _fail(path, "not a regular file")
    if st.st_size == 0:
        raise _fail(path, "empty file (0 bytes)")
    if st.st_size < MIN_FILE_BYTES:
        raise _fail(path, f"only {st.st_size} byte{'s' * (st.st_size != 1)}: too small to hold audio")


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
    return _fail(path, mp4_damage(path) or f"not a readable audio or video file, or corrupt ({detail})")


class _ForFFmpeg(Exception):
    """Not for libsndfile: read it with PyAV."""


def _mpeg_audio(path: Path, head: bytes) -> bool:
    """MP3 (or ADTS AAC): read by FFmpeg, whose decoder is quiet; libsndfile's mpg123 prints warnings on damage."""
    sync = len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0  # an MPEG audio frame header
    return path.suffix.lower() == ".mp3" or head[:3] == b"ID3" or sync


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """(n,) or (n, channels) float32 from ``rate`` to ``target`` Hz (soxr: linear cost for any ratio)."""
    if rate == target or x.shape[0] == 0:
        return x
    import soxr

    return soxr.resample(np.ascontiguousarray(x, np.float32), rate, target, quality="HQ")


def _declared_wav_frames(head: bytes) -> int | None:
    """Frames that a RIFF/WAVE header's data chunk claims (libsndfile silently shortens truncated files)."""
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
    """One opened file: rate, channel count, duration (None when unknown) and a block reader.

    The header is checked before anything is decoded; blocks hold at most :data:`BLOCK_VALUES`
    samples x channels, with non-finite samples silenced and float samples beyond full scale
    clipped (both counted in ``repaired`` for the notes).
    """

    def __init__(self, path: str | Path, media: Media | None = None, packets: Iterable[Any] | None = None):
        self.path = Path(path)
        self.kind = "soundfile"
        self.rate, self.channels, self.frames = 0, 0, None
        # An already opened container (from open_media) is read in place; ``packets`` are its audio
        # packets when someone else demuxes it (the video reader, in the same pass as the frames).
        self._container, self._packets = (media.container, packets) if media is not None else (None, None)
        if self._container is not None:
            self.kind = "av"
            self._describe_av(self._container)
            head = media.head
        else:
            import soundfile as sf

            if media is None:
                _check_file(self.path)
                with self.path.open("rb") as f:
                    head = f.read(4096)
            else:
                head = media.head
            try:
                if _mpeg_audio(self.path, head):
                    raise _ForFFmpeg
                info = sf.info(str(self.path))
                self.rate, self.channels, self.frames = int(info.samplerate), int(info.channels), int(info.frames)
            except Exception as sf_exc:  # libsndfile cannot read it: maybe a container FFmpeg knows
                self.kind = "av"
                self._probe_av(sf_exc)
        if self.rate <= 0 or self.channels <= 0:
            raise _fail(self.path, f"invalid header (rate {self.rate} Hz, {self.channels} channels)")
        if not MIN_SOURCE_RATE <= self.rate <= MAX_SOURCE_RATE:
            raise _fail(self.path, f"sample rate {self.rate:,} Hz is outside the {MIN_SOURCE_RATE:,}-"
                                   f"{MAX_SOURCE_RATE:,} Hz that mmfer reads (a broken header, or not a recording)")
        if self.channels > MAX_CHANNELS:
            raise _fail(self.path, f"{self.channels} channels; mmfer reads up to {MAX_CHANNELS}")
        self.problems: list[str] = []
        self.repaired = {"non-finite": 0, "beyond full scale": 0}
        declared = _declared_wav_frames(head)
        if declared is not None and self.frames is not None and declared > self.frames * 1.02:
            self.problems.append(f"truncated: header promises {declared / self.rate:.2f} s, the file holds "
                                 f"{self.frames / self.rate:.2f} s")

    def _probe_av(self, sf_exc: Exception) -> None:
        import av

        try:
            with av.open(str(self.path)) as c:
                self._describe_av(c)
        except AudioLoadError:
            raise
        except Exception as av_exc:
            tried = "" if isinstance(sf_exc, _ForFFmpeg) else f"{type(sf_exc).__name__}; "
            raise _unreadable(self.path, f"{tried}{type(av_exc).__name__}") from None

    def _describe_av(self, c: Any) -> None:
        if not c.streams.audio:
            kinds = sorted({s.type for s in c.streams}) or ["no streams"]
            raise _fail(self.path, f"has no audio track (it holds {', '.join(kinds)})")
        s = c.streams.audio[0]
        try:
            layout = s.layout  # the decoder's output layout: what _av_blocks converts every frame to
            self.rate, self.channels = int(s.rate or 0), len(layout.channels) if layout else int(s.channels or 0)
        except Exception as exc:  # noqa: BLE001 - a header FFmpeg parsed but PyAV cannot describe
            raise _fail(self.path, f"unusable audio stream header ({type(exc).__name__})") from None
        self.layout = layout
        if s.duration is not None and s.time_base is not None:
            self.frames = int(float(s.duration * s.time_base) * self.rate)
        elif c.duration:
            self.frames = int(c.duration / 1_000_000 * self.rate)

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.rate

    def _repair(self, x: np.ndarray) -> np.ndarray:
        finite = np.isfinite(x)
        if not finite.all():
            self.repaired["non-finite"] += int(x.size - np.count_nonzero(finite))
            x = np.where(finite, x, np.float32(0))
        peak = float(np.abs(x).max()) if x.size else 0.0
        if peak > 1.0:  # only float files can do this; a player or DAC clips them
            self.repaired["beyond full scale"] += int(np.count_nonzero(np.abs(x) > 1.0))
            x = np.clip(x, -1.0, 1.0)
        return x

    def repair_notes(self) -> list[str]:
        """Notes for the samples repaired since the last call."""
        out = []
        if self.repaired["non-finite"]:
            out.append(f"corrupt samples: {self.repaired['non-finite']:,} non-finite values (NaN or infinity) "
                       "replaced by silence")
        if self.repaired["beyond full scale"]:
            out.append(f"clipped: {self.repaired['beyond full scale']:,} float samples beyond full scale (|x| > 1) "
                       "clipped, as a player would")
        self.repaired = dict.fromkeys(self.repaired, 0)
        return out

    def blocks(self, seconds: float) -> Iterator[np.ndarray]:
        """Blocks of about ``seconds`` (fewer with many channels) of (channels, n) float32 at the source rate."""
        size = max(1, min(int(seconds * self.rate), BLOCK_VALUES // self.channels))
        raw = self._sf_blocks(size) if self.kind == "soundfile" else self._av_blocks(size)
        for block in raw:
            yield self._repair(block)

    def _sf_blocks(self, size: int) -> Iterator[np.ndarray]:
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

    def _av_blocks(self, size: int) -> Iterator[np.ndarray]:
        import av

        pending: list[np.ndarray] = []
        have, bad, good = 0, 0, 0
        try:
            with contextlib.nullcontext(self._container) if self._container is not None else \
                    av.open(str(self.path)) as c:
                stream = c.streams.audio[0]
                # Planar float at the source rate and layout: our own mixer handles dead channels.
                res = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
                for packet in self._packets if self._packets is not None else c.demux(stream):
                    if packet.stream is not stream:
                        continue
                    try:
                        frames = [out for frame in packet.decode() for out in res.resample(frame)]
                    except (av.FFmpegError, ValueError):  # a damaged packet: skip it, keep the rest
                        bad += 1
                        continue
                    for out in frames:
                        arr = out.to_ndarray().reshape(self.channels, -1).astype(np.float32, copy=False)
                        good += arr.shape[1]
                        pending.append(arr)
                        have += arr.shape[1]
                        while have >= size:
                            buf = np.concatenate(pending, axis=1)
                            yield buf[:, :size]
                            pending, have = [buf[:, size:]], buf.shape[1] - size
        except (av.FFmpegError, ValueError) as e:
            if good == 0:
                raise _fail(self.path, f"corrupt or truncated audio data ({type(e).__name__})") from None
            self.problems.append(f"truncated or corrupt after {good / self.rate:.2f} s ({type(e).__name__}); "
                                 "used what could be read")
        if bad:
            if good == 0:
                raise _fail(self.path, f"corrupt audio data: none of its {bad} damaged packets could be decoded")
            self.problems.append(f"corrupt: {bad} damaged audio packet(s) skipped")
        if self.frames and good < self.frames - max(self.rate, 0.05 * self.frames):
            self.problems.append(f"truncated: the header promises {self.frames / self.rate:.2f} s, the audio ends at "
                                 f"{good / self.rate:.2f} s")
        if have:
            yield np.concatenate(pending, axis=1)


def _blocks_16k(src: _Source, seconds: float) -> Iterator[np.ndarray]:
    """The source's blocks as (channels, n) float32 at :data:`SAMPLE_RATE`, resampled as one stream."""
    if src.rate == SAMPLE_RATE:
        yield from src.blocks(seconds)
        return
    import soxr

    stream = soxr.ResampleStream(src.rate, SAMPLE_RATE, src.channels, dtype="float32", quality="HQ")
    for block in src.blocks(seconds):
        out = stream.resample_chunk(np.ascontiguousarray(block.T))
        if len(out):
            yield out.T
    out = stream.resample_chunk(np.zeros((0, src.channels), np.float32), last=True)
    if len(out):
        yield out.T


def _to_mono(x: np.ndarray, notes: list[str]) -> np.ndarray:
    """Mix channels, leaving out channels that carry (almost) nothing."""
    if x.shape[0] == 1:
        return x[0]
    n = max(1, x.shape[1])
    rms = np.sqrt([float(np.dot(c, c)) / n for c in x]) + 1e-12  # BLAS dot: no float64 copy of the clip
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


AudioSource = _Source
"""An opened audio file or track: :func:`load_audio` and :func:`iter_windows` take one in place of a path."""


def _source(path: str | Path | _Source) -> _Source:
    return path if isinstance(path, _Source) else _Source(path)


def audio_info(path: str | Path | _Source) -> dict[str, float | int | None | str]:
    """Rate, channels and duration from the header (nothing decoded)."""
    src = _source(path)
    return {"path": str(path), "sample_rate": src.rate, "channels": src.channels, "duration_s": src.duration_s,
            "reader": src.kind}


def load_audio(path: str | Path | _Source, max_seconds: float | None = MAX_LOAD_SECONDS) -> AudioClip:
    """Decode a whole file to 16 kHz mono float32.

    Raises:
        AudioTooLong: longer than ``max_seconds``, or more than :data:`MAX_LOAD_VALUES` samples x
            channels at 16 kHz (read those with :func:`iter_windows`); checked from the header
            before decoding, and again while decoding for headers that lie or say nothing.
        AudioLoadError: missing, empty, not audio, corrupt, impossible header, no audio track.
    """
    src = _source(path)
    path = src.path
    limit = MAX_LOAD_VALUES // src.channels  # 16 kHz frames
    if max_seconds is not None:
        limit = min(limit, int(max_seconds * SAMPLE_RATE))
    dur = src.duration_s
    if dur is not None and dur * SAMPLE_RATE > limit:
        raise _too_long(path, dur, src.channels, max_seconds)
    blocks, n = [], 0
    for block in _blocks_16k(src, 60.0):
        n += block.shape[1]
        if n > limit + SAMPLE_RATE:  # a header that understated the length (a second of slack for padding)
            raise _too_long(path, None, src.channels, max_seconds)
        blocks.append(block)
    if not n:
        raise _fail(path, "contains no audio samples")
    notes = src.problems + src.repair_notes()
    x = np.concatenate(blocks, axis=1)
    del blocks
    mono = _quality_notes(_to_mono(x, notes), src.rate, notes)
    return AudioClip(mono, str(path), src.rate, src.channels, 0.0, notes)


def _span(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _too_long(path: str | Path, dur: float | None, channels: int, max_seconds: float | None) -> AudioTooLong:
    if dur is not None and max_seconds is not None and dur > max_seconds:
        why = f"is {_span(dur)} long; files over {_span(max_seconds)}"
    elif dur is not None:
        why = f"has {channels} channels x {_span(dur)}; files this large"
    else:
        why = "decodes to more than its header says; files this long"
    return AudioTooLong(f"{path}: {why} are processed in windows (iter_windows; the predictor does this "
                        "automatically)")


def iter_windows(path: str | Path | _Source, window_s: float = 4.0, hop_s: float | None = None,
                 min_last_s: float = 1.0) -> Iterator[AudioClip]:
    """Stream a file of any length as 16 kHz mono windows of ``window_s`` seconds.

    Memory holds one window (plus one decoder block), so a two-hour file costs what a minute does.
    The last window is kept when it is at least ``min_last_s`` long (or when it is the only one).
    """
    hop_s = hop_s or window_s
    src = _source(path)
    path = src.path
    win, hop = int(window_s * SAMPLE_RATE), int(hop_s * SAMPLE_RATE)
    said: set[str] = set()
    buf = np.zeros((src.channels, 0), np.float32)
    start = 0  # 16 kHz sample index of buf[:, 0]
    emitted = False

    def make(chunk: np.ndarray, at: int) -> AudioClip:
        local: list[str] = [p for p in src.problems if p not in said] + src.repair_notes()
        said.update(local)
        mono = _quality_notes(_to_mono(chunk, local), src.rate, local)
        return AudioClip(mono, str(path), src.rate, src.channels, at / SAMPLE_RATE, local)

    for block in _blocks_16k(src, max(window_s, 10.0)):
        buf = np.concatenate([buf, block], axis=1)
        while buf.shape[1] >= win:
            yield make(buf[:, :win], start)
            emitted = True
            buf, start = buf[:, hop:], start + hop
    fresh = buf.shape[1] - max(0, win - hop) if emitted else buf.shape[1]  # samples no window has covered
    if not emitted and buf.shape[1] == 0:
        raise _fail(path, "contains no audio samples")
    if not emitted or fresh >= min_last_s * SAMPLE_RATE:
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
