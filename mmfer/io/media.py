"""What a file is, decided by its content, and opened once.

:func:`open_media` reads the first bytes and, when they do not name an image or a libsndfile
audio format, asks FFmpeg (PyAV) what the container holds. The name's extension is only a last
resort for files nothing recognises, so that the loader of the kind the name promises can say
what is wrong with it. A ``.flv`` talking-face clip is a video, a JPEG named ``.png`` an image,
an MP4 named ``.dat`` a video.

A container FFmpeg opened stays open in :class:`Media` and is handed to the readers (frames and
audio come from one demuxing pass), so each file is opened once per analysis.
"""

from __future__ import annotations

import dataclasses
import queue
from pathlib import Path
from typing import Any

IMAGE, AUDIO, VIDEO = "image", "audio", "video"

HEAD_BYTES = 4096
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf", ".aac",
                  ".wma", ".m4a"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".3gp", ".flv", ".m4v", ".wmv", ".ts"}

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\0", b"MM\0*", b"BM")
_SNDFILE_MAGIC = (b"fLaC", b"OggS", b".snd", b"caff", b"riff")  # + RIFF/WAVE and FORM/AIFF below
# FFmpeg demuxers that read single pictures: a file they open is a photo, not a one-frame video.
_IMAGE_DEMUXERS = ("image2", "_pipe", "gif", "webp", "apng")
# Demuxers that render text or raw bytes as "video": what they open is not a recording.
_NOT_MEDIA = {"tty", "bin", "xbin", "idf", "adf", "data", "srt", "ass", "webvtt", "subviewer", "microdvd"}


class MediaError(ValueError):
    """A path that is not a readable file; the message starts with its name."""


@dataclasses.dataclass
class Media:
    """One input file: its kind, how it is read, and the FFmpeg container when one was opened."""

    path: Path
    kind: str  # image | audio | video
    reader: str  # pil | soundfile | av
    head: bytes  # the first bytes, read once
    container: Any = None  # av InputContainer, open until close()
    by_suffix: bool = False  # nothing recognised the content; the extension chose the kind

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def __enter__(self) -> Media:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def has_audio(self) -> bool:
        return self.container is not None and bool(self.container.streams.audio)


def _check_file(path: Path) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except OSError as e:
        raise MediaError(f"{path}: cannot access ({e.strerror or e})") from None
    if path.is_dir():
        raise MediaError(f"{path}: is a directory")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise MediaError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    return st.st_size


def sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, reader) from a file's first bytes, for the formats whose signature is certain."""
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return IMAGE, "pil"
    if (head[:4] == b"RIFF" and head[8:12] == b"WAVE") or (head[:4] == b"FORM" and head[8:11] == b"AIF") or \
            head.startswith(_SNDFILE_MAGIC):
        return AUDIO, "soundfile"
    return None


def _real_video(stream: Any) -> bool:
    """A moving-picture stream, not an MP3/M4A's cover art."""
    import av

    disp = getattr(stream, "disposition", 0)
    return not (disp & av.stream.Disposition.attached_pic)


def _ask_ffmpeg(path: Path) -> tuple[str, Any] | None:
    """(kind, open container) when FFmpeg reads the file as audio or video; None otherwise."""
    import av

    try:
        c = av.open(str(path))
    except Exception:  # noqa: BLE001 - FFmpeg raises many types for what it cannot read
        return None
    fmt = c.format.name if c.format is not None else ""
    if fmt in _NOT_MEDIA:
        c.close()
        return None
    if any(d in fmt for d in _IMAGE_DEMUXERS):
        c.close()
        return IMAGE, None
    if any(_real_video(s) for s in c.streams.video):
        return VIDEO, c
    if c.streams.audio:
        return AUDIO, c
    c.close()
    return None


def _by_suffix(path: Path) -> str:
    s = path.suffix.lower()
    if s in VIDEO_SUFFIXES:
        return VIDEO
    return AUDIO if s in AUDIO_SUFFIXES else IMAGE


def open_media(path: str | Path) -> Media:
    """Decide what ``path`` holds by its content and open it once. Close the result (or use ``with``).

    Raises:
        MediaError: missing, a directory, not a regular file, or empty.
    """
    p = Path(path)
    _check_file(p)
    try:
        with p.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as e:
        raise MediaError(f"{p}: cannot read ({e.strerror or e})") from None
    known = sniff(head)
    if known is not None:
        return Media(p, known[0], known[1], head)
    found = _ask_ffmpeg(p)
    if found is not None:
        kind, container = found
        return Media(p, kind, "pil" if kind == IMAGE else "av", head, container)
    # Nothing recognised it: the loader for the kind its name promises explains what is wrong.
    kind = _by_suffix(p)
    return Media(p, kind, {IMAGE: "pil", AUDIO: "soundfile", VIDEO: "av"}[kind], head, by_suffix=True)


def media_kind(path: str | Path) -> str:
    """image, audio or video, by content (the file is opened and closed)."""
    with open_media(path) as m:
        return m.kind


class PacketFeed:
    """Audio packets from the demuxing pass to the audio reader in another thread.

    Bounded, so a slow reader holds the demuxer back instead of memory growing; a reader that
    stops early (an error) calls :meth:`abandon` and the demuxer's puts become no-ops.
    """

    def __init__(self, maxsize: int = 256):
        self._q: queue.Queue[Any] = queue.Queue(maxsize)
        self._abandoned = False

    def put(self, packet: Any) -> None:
        while not self._abandoned:
            try:
                self._q.put(packet, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        self.put(None)

    def abandon(self) -> None:
        self._abandoned = True

    def __iter__(self) -> Any:
        while (packet := self._q.get()) is not None:
            yield packet
