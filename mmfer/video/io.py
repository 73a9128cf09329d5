"""Reading videos with PyAV: frames sampled at a chosen rate, streamed so memory stays flat
however long the video is, rotated upright from phone metadata, capped in size.

Sampling follows presentation timestamps, so variable-frame-rate videos are sampled evenly in
time. Problems that do not stop decoding (damaged packets, which are skipped; a corrupt or
missing tail; a missing timestamp) are collected in ``reader.notes``; files that cannot be
decoded at all raise :class:`VideoLoadError`, whose message starts with the file name. Frames
larger than :data:`MAX_PIXELS` are refused from the header, and the decoder is told the same
limit, so a stream that lies about its size cannot make it allocate more.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.io.containers import mp4_damage
from mmfer.io.media import Media

DEFAULT_SAMPLE_FPS = 10.0
MAX_SIDE = 1280  # frames larger than this are downscaled while decoding (4K phone video -> 1280 px)
MAX_PIXELS = 7680 * 4320  # 8K UHD: the largest frame decoded at all


class VideoLoadError(ValueError):
    """A video that cannot be used; the message starts with its name and says why."""


class NoVideoTrack(VideoLoadError):
    """A readable container with no video stream (an audio-only .m4a/.mp4, say)."""


@dataclasses.dataclass
class VideoInfo:
    path: str
    fps: float | None  # the container's average frame rate
    duration_s: float | None
    frames: int | None  # as the header says (None when it does not)
    width: int
    height: int
    rotation: int  # clockwise degrees a player turns the stored frames (phones' display matrix)
    codec: str
    has_audio: bool


@dataclasses.dataclass
class Frame:
    index: int  # position among the sampled frames
    time_s: float
    image: np.ndarray  # (H, W, 3) uint8 BGR, upright


def _fail(path: str | Path, problem: str) -> VideoLoadError:
    return VideoLoadError(f"{path}: {problem}")


def _open(path: Path):  # noqa: ANN202 - av.container.InputContainer
    import av

    try:
        st = path.stat()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    if path.is_dir():
        raise _fail(path, "is a directory")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise _fail(path, "not a regular file")
    if st.st_size == 0:
        raise _fail(path, "empty file (0 bytes)")
    try:
        return av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - FFmpeg raises many types for non-videos
        raise _fail(path, mp4_damage(path) or f"not a readable video, or corrupt ({type(exc).__name__})") from None


class VideoReader:
    """Iterate sampled frames of one video; ``info`` is read from the header at construction."""

    def __init__(self, path: str | Path, sample_fps: float | None = DEFAULT_SAMPLE_FPS, max_side: int = MAX_SIDE,
                 media: Media | None = None, audio_sink: Callable[[Any], None] | None = None):
        """``media``: the file already opened by :func:`~mmfer.io.media.open_media` (read in place, one
        pass). ``audio_sink``: called with every audio packet met while demuxing the frames, so the
        audio track is decoded from the same pass (with ``media`` only)."""
        self.path = Path(path)
        self.sample_fps, self.max_side = sample_fps, max_side
        self.notes: list[str] = []
        self.frames_used = 0
        self._container = media.container if media is not None else None
        self._audio_sink = audio_sink if self._container is not None else None
        self._passes = 0
        self._complete = False  # every packet demuxed (so no audio packet is left for the sink)
        with self._opened() as c:
            if not c.streams.video:
                kinds = sorted({s.type for s in c.streams}) or ["no streams"]
                raise NoVideoTrack(f"{self.path}: has no video track (it holds {', '.join(kinds)})")
            s = c.streams.video[0]
            try:
                fps = float(s.average_rate) if s.average_rate else None
                # The video stream's own length; the container's may include a longer audio track.
                self._stream_s = float(s.duration * s.time_base) if s.duration and s.time_base else None
                duration = self._stream_s or (c.duration / 1_000_000 if c.duration else None)
                codec = s.codec_context.name
            except Exception as exc:  # noqa: BLE001 - a header FFmpeg parsed but PyAV cannot describe
                raise _fail(self.path, f"unusable video stream header ({type(exc).__name__})") from None
            self.info = VideoInfo(str(path), fps, duration, int(s.frames) or None, int(s.width or 0),
                                  int(s.height or 0), 0, codec, bool(c.streams.audio))
        w, h = self.info.width, self.info.height
        if w * h > MAX_PIXELS:
            raise _fail(self.path, f"video frames are {w}x{h} ({w * h / 1e6:.0f} MP), larger than the "
                                   f"{MAX_PIXELS / 1e6:.0f} MP (8K) that mmfer decodes")

    def attach_audio(self, sink: Callable[[Any], None]) -> None:
        """Hand every audio packet met while demuxing the frames to ``sink`` (a shared container only)."""
        if self._container is None:
            raise ValueError(f"{self.path}: audio packets come with the frames only from a shared container")
        self._audio_sink = sink

    def finish_audio(self) -> None:
        """Hand the audio sink the packets a stopped frame loop (a frame cap, an error) did not reach."""
        c, sink = self._container, self._audio_sink
        if sink is None or c is None or not c.streams.audio or self._complete:
            return
        import av

        self._complete = True
        try:
            for packet in c.demux(c.streams.audio[0]):
                sink(packet)
        except av.FFmpegError:  # the audio reader notes a track that ends early
            pass

    def _opened(self) -> contextlib.AbstractContextManager[Any]:
        """The shared container (left open for its owner) or the file opened for this use."""
        return contextlib.nullcontext(self._container) if self._container is not None else _open(self.path)

    def _convert(self, frame) -> np.ndarray:  # noqa: ANN001 - av.VideoFrame
        w, h = frame.width, frame.height
        scale = min(1.0, self.max_side / max(w, h))
        if scale < 1.0:
            frame = frame.reformat(width=max(2, int(w * scale)) & ~1, height=max(2, int(h * scale)) & ~1)
        img = frame.to_ndarray(format="bgr24")
        # FFmpeg gives the display matrix angle counter-clockwise; phones' "rotate" tag (and info.rotation)
        # is the clockwise turn a player applies to show the frame upright.
        clockwise = -int(getattr(frame, "rotation", 0) or 0) % 360
        if clockwise:
            if clockwise % 180 and self.info.rotation != clockwise:  # report the upright (display) size
                self.info.width, self.info.height = self.info.height, self.info.width
            self.info.rotation = clockwise
            img = np.ascontiguousarray(np.rot90(img, k=-(clockwise // 90)))
        return img

    def __iter__(self) -> Iterator[Frame]:
        import av

        step = 1.0 / self.sample_fps if self.sample_fps else 0.0
        next_t, n, last_t, i, end_t = 0.0, 0, -1.0, -1, None
        bad, first_error, concealed = 0, "", 0
        self._passes += 1
        if self._container is not None and self._passes > 1:
            raise RuntimeError(f"{self.path}: a reader on a shared container is read once")
        with self._opened() as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.options = {"max_pixels": str(MAX_PIXELS)}
            sink = self._audio_sink
            streams = (stream, c.streams.audio[0]) if sink is not None and c.streams.audio else (stream,)
            try:
                for packet in c.demux(*streams):
                    if packet.stream is not stream:
                        sink(packet)  # the audio track, decoded by its reader from this same pass
                        continue
                    try:
                        frames = packet.decode()
                    except (av.FFmpegError, ValueError) as exc:  # a damaged packet: skip it, keep the rest
                        bad += 1
                        first_error = first_error or type(exc).__name__
                        continue
                    for frame in frames:
                        i += 1
                        concealed += bool(frame.is_corrupt)  # decoded, with damage the decoder papered over
                        t = frame.time
                        if t is None:  # no timestamp: fall back on the frame count and the nominal rate
                            t = i / (self.info.fps or 30.0)
                            if "missing timestamps" not in " ".join(self.notes):
                                self.notes.append("missing timestamps: times estimated from the frame rate")
                        end_t = t if end_t is None else max(end_t, t)
                        if t < last_t:
                            continue  # out-of-order/duplicate timestamps
                        if t + 1e-6 < next_t:
                            continue
                        try:
                            img = self._convert(frame)
                        except (av.FFmpegError, ValueError) as exc:
                            bad += 1
                            first_error = first_error or type(exc).__name__
                            continue
                        last_t = t
                        next_t = (next_t + step) if step and t < next_t + step else t + step
                        yield Frame(n, float(t), img)
                        n += 1
                        self.frames_used = n
            except av.FFmpegError as exc:  # the container itself breaks off
                if n == 0:
                    raise _fail(self.path, f"corrupt or truncated video data ({type(exc).__name__})") from None
                self.notes.append(f"truncated or corrupt after {last_t:.2f} s ({type(exc).__name__}); "
                                  f"used the {n} frames before it")
        self._complete = True  # every packet was demuxed (the audio ones went to the sink)
        if n == 0:
            detail = f": none of its {bad} damaged packets could be decoded ({first_error})" if bad else ""
            raise _fail(self.path, "contains no decodable video frames" + detail)
        if bad:
            self.notes.append(f"corrupt: {bad} damaged video packet(s) or frame(s) skipped ({first_error})")
        if concealed:
            self.notes.append(f"corrupt: {concealed} of {i + 1} decoded frames are damaged (errors concealed by the "
                              "decoder); faces in them may be misread")
        dur = self._stream_s
        if dur and end_t is not None and end_t < dur - max(1.0, 0.05 * dur):
            self.notes.append(f"truncated: the header promises {dur:.2f} s, the frames end at {end_t:.2f} s")


class ImageSequenceReader:
    """A folder of frames (e.g. a CK+ sequence, ``S005_001_00000001.png`` ...) read like a video.

    Frames are taken in file-name order at a nominal ``source_fps`` (CK+ was filmed at 30 fps)
    and sampled to ``sample_fps`` the same way as videos.
    """

    def __init__(self, folder: str | Path, sample_fps: float | None = DEFAULT_SAMPLE_FPS, max_side: int = MAX_SIDE,
                 source_fps: float = 30.0):
        from mmfer.io.images import IMAGE_SUFFIXES

        self.path = Path(folder)
        if not self.path.is_dir():
            raise _fail(folder, "not a folder of frames")
        self.files = sorted(f for f in self.path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise _fail(folder, "no image frames in the folder")
        self.sample_fps, self.max_side, self.source_fps = sample_fps, max_side, source_fps
        self.notes: list[str] = []
        self.frames_used = 0
        self.info = VideoInfo(str(folder), source_fps, len(self.files) / source_fps, len(self.files), 0, 0, 0,
                              "image-sequence", False)

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        from mmfer.io.images import ImageLoadError, load_image

        step = 1.0 / self.sample_fps if self.sample_fps else 0.0
        next_t, n = 0.0, 0
        for i, f in enumerate(self.files):
            t = i / self.source_fps
            if t + 1e-6 < next_t:
                continue
            next_t = t + step
            try:
                img = load_image(f)
            except ImageLoadError as exc:
                self.notes.append(f"skipped frame: {exc}")
                continue
            h, w = img.shape[:2]
            scale = min(1.0, self.max_side / max(h, w))
            if scale < 1.0:
                img = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
            self.info.width, self.info.height = img.shape[1], img.shape[0]
            yield Frame(n, t, img)
            n += 1
            self.frames_used = n
        if n == 0:
            raise _fail(self.path, "no readable frames")


def open_frames(path: str | Path, sample_fps: float | None = DEFAULT_SAMPLE_FPS, max_side: int = MAX_SIDE
                ) -> VideoReader | ImageSequenceReader:
    """A video file, or a folder of frames."""
    return ImageSequenceReader(path, sample_fps, max_side) if Path(path).is_dir() else \
        VideoReader(path, sample_fps, max_side)
