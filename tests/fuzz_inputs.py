"""A seeded generator of hostile, malformed and odd inputs: images, audio, videos and configs.

Every case says what mmfer must do with it:

- ``error``: refuse it with a one-line error that names the file (CLI exit code 1, or 2 for configs);
- ``ok``: read it and give a result (which may be "no face" or "too short to score", said on stderr);
- ``either``: one of the two, whichever is honest for the bytes at hand (a video cut in half can
  still hold frames; a GIF missing its last byte still has all its pixels).

``note`` is a word the output must contain when the file is read (e.g. ``truncated`` for a
video whose frames stop early), so damage that does not stop decoding is still reported.

``python tests/fuzz_inputs.py DIR`` writes the suite to DIR with a ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import sys
import zlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "mmfer" / "examples"
SEED = 20261203


@dataclasses.dataclass
class Case:
    path: Path
    kind: str  # image | audio | video | config
    expect: str  # error | ok | either
    what: str
    note: str | None = None  # a word the output must contain when the file is read
    no_audio: bool = False  # a video with no sound: what reads only audio must say so

    def to_dict(self) -> dict[str, str | None]:
        return dataclasses.asdict(self) | {"path": str(self.path)}


class _Suite:
    def __init__(self, root: Path, seed: int):
        self.root, self.rng, self.cases = root, np.random.default_rng(seed), []
        for kind in ("image", "audio", "video", "config"):
            (root / kind).mkdir(parents=True, exist_ok=True)

    def add(self, kind: str, name: str, data: bytes | Callable[[Path], None], expect: str, what: str,
            note: str | None = None, no_audio: bool = False) -> Path:
        path = self.root / kind / name
        if callable(data):
            data(path)
        else:
            path.write_bytes(data)
        self.cases.append(Case(path, kind, expect, what, note, no_audio))
        return path

    def noise(self, n: int) -> bytes:
        return self.rng.integers(0, 256, n, dtype=np.uint8).tobytes()

    def flip_bytes(self, data: bytes, start: int, count: int) -> bytes:
        b = bytearray(data)
        for k in self.rng.integers(start, len(b), count):
            b[k] = int(self.rng.integers(0, 256))
        return bytes(b)


# -- images ------------------------------------------------------------------------------------------

def _face_rgb(size: int = 160) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").resize((size, size)))


def _save(img: np.ndarray | object, fmt: str, **kw: object) -> bytes:
    from PIL import Image

    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out.append((kind, data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return out


def _png_build(chunks: list[tuple[bytes, bytes]], bad_crc: bytes | None = None) -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, data in chunks:
        crc = zlib.crc32(kind + data) ^ (0xDEADBEEF if kind == bad_crc else 0)
        out += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)
    return bytes(out)


def _jpeg_with_size(data: bytes, w: int, h: int) -> bytes:
    b = bytearray(data)
    i = b.find(b"\xff\xc0")
    struct.pack_into(">HH", b, i + 5, h, w)
    return bytes(b)


def _images(s: _Suite) -> None:
    from PIL import Image

    face = _face_rgb()
    im = Image.fromarray(face)
    good = {"jpg": _save(face, "JPEG", quality=90), "png": _save(face, "PNG"), "webp": _save(face, "WEBP"),
            "bmp": _save(face, "BMP"), "tif": _save(face, "TIFF"), "gif": _save(im.convert("P"), "GIF")}
    for ext, data in good.items():
        s.add("image", f"good.{ext}", data, "ok", f"a face as {ext}")
    s.add("image", "grey.png", _save(im.convert("L"), "PNG"), "ok", "8-bit grey")
    s.add("image", "rgba.png", _save(im.convert("RGBA"), "PNG"), "ok", "with alpha")
    s.add("image", "palette.png", _save(im.convert("P"), "PNG"), "ok", "palette")
    s.add("image", "grey16.png", _save(Image.fromarray(face[:, :, 0].astype(np.uint16) * 257), "PNG"), "ok",
          "16-bit grey")
    s.add("image", "float.tif", _save(Image.fromarray(np.where(face[:, :, 1] > 250, np.nan,
                                                               face[:, :, 1].astype(np.float32))), "TIFF"),
          "ok", "float grey with NaN pixels")
    s.add("image", "cmyk.jpg", _save(im.convert("CMYK"), "JPEG"), "ok", "CMYK JPEG")
    s.add("image", "bilevel.png", _save(im.convert("1"), "PNG"), "ok", "1-bit")
    frames = [im.convert("P"), Image.fromarray(face[::-1]).convert("P")]
    s.add("image", "animated.gif", lambda p: frames[0].save(p, save_all=True, append_images=frames[1:]), "ok",
          "animated GIF")
    s.add("image", "one_pixel.png", _save(np.zeros((1, 1, 3), np.uint8), "PNG"), "ok", "1x1 pixel")
    s.add("image", "strip.png", _save(np.zeros((1, 4000, 3), np.uint8), "PNG"), "ok", "1x4000 strip")
    exif = im.getexif()
    exif[0x0112] = 99  # an orientation that does not exist
    s.add("image", "bad_exif.jpg", _save(face, "JPEG", exif=exif), "ok", "invalid EXIF orientation")
    big = np.asarray(Image.fromarray(face).resize((5000, 4000)))
    s.add("image", "big_20mp.jpg", _save(big, "JPEG", quality=70), "ok", "a real 20 MP photo")
    s.add("image", "big_16bit.tif", _save(Image.fromarray(np.ascontiguousarray(big[:, :, 0]).astype(np.uint16) * 257),
                                          "TIFF"), "ok", "a real 20 MP 16-bit grey scan")
    del big

    for ext in ("jpg", "png", "gif", "webp"):
        s.add("image", f"empty.{ext}", b"", "error", "empty file")
        s.add("image", f"one_byte.{ext}", b"\xff", "error", "1-byte file")
        s.add("image", f"text.{ext}", b"this is not a picture\n" * 30, "error", "text file")
        for n in (16, 4096):
            s.add("image", f"random_{n}.{ext}", s.noise(n), "error", f"{n} random bytes")
    for ext, data in good.items():
        for frac in (0.3, 0.7):
            s.add("image", f"cut_{int(frac * 100)}.{ext}", data[: int(len(data) * frac)], "error",
                  f"{ext} cut to {frac:.0%}")
    for cut in (1, 2, 12, 20):  # the case: a PNG cut 20 bytes short decoded silently
        s.add("image", f"cut_tail_{cut}.png", good["png"][:-cut], "error", f"PNG cut {cut} bytes short")
    s.add("image", "cut_tail_1.gif", good["gif"][:-1], "either", "GIF missing its trailer byte (pixels complete)")
    s.add("image", "cut_tail_2.jpg", good["jpg"][:-2], "error", "JPEG missing its EOI marker")
    chunks = _png_chunks(_save(im.convert("P"), "PNG"))
    plte7 = [(k, d[:7] if k == b"PLTE" else d) for k, d in chunks]
    s.add("image", "plte_7_bytes.png", _png_build(plte7), "error", "palette PNG with an invalid 7-byte PLTE")
    plte0 = [(k, b"" if k == b"PLTE" else d) for k, d in chunks]
    s.add("image", "plte_empty.png", _png_build(plte0), "error", "palette PNG with an empty PLTE")
    s.add("image", "bad_idat_crc.png", _png_build(_png_chunks(good["png"]), bad_crc=b"IDAT"), "error",
          "PNG with a corrupt IDAT CRC")
    s.add("image", "bad_text_crc.png", _png_build([*_png_chunks(good["png"])[:1], (b"tEXt", b"Comment\0hi"),
                                                   *_png_chunks(good["png"])[1:]], bad_crc=b"tEXt"), "either",
          "PNG with a bad CRC on an ancillary chunk (libpng skips the chunk, Pillow refuses the file)")
    no_iend = [(k, d) for k, d in _png_chunks(good["png"]) if k != b"IEND"]
    s.add("image", "no_iend.png", _png_build(no_iend), "error", "PNG without IEND")
    ihdr = _png_chunks(good["png"])[0][1]
    for w, h, what in ((100_000, 100_000, "10 GP"), (0, 0, "0x0"), (2**31 - 1, 1, "2^31 wide"),
                       (50_000, 1_000, "50 MP")):
        fake = [(b"IHDR", struct.pack(">II", w, h) + ihdr[8:]), (b"IDAT", zlib.compress(b"\0" * 64)), (b"IEND", b"")]
        s.add("image", f"huge_{w}x{h}.png", _png_build(fake), "error", f"PNG header claiming {what}")
    s.add("image", "huge_65000.jpg", _jpeg_with_size(good["jpg"], 65000, 65000), "error",
          "JPEG claiming 65000x65000")
    s.add("image", "zero_width.jpg", _jpeg_with_size(good["jpg"], 0, 160), "error", "JPEG claiming width 0")
    gif = bytearray(good["gif"])
    struct.pack_into("<HH", gif, 6, 65535, 65535)
    s.add("image", "huge_screen.gif", bytes(gif), "either", "GIF claiming a 65535x65535 screen")
    bmp = bytearray(good["bmp"])
    struct.pack_into("<ii", bmp, 18, 60000, 60000)
    s.add("image", "huge.bmp", bytes(bmp), "error", "BMP claiming 60000x60000")
    struct.pack_into("<ii", bmp, 18, 160, -2**31)
    s.add("image", "negative_height.bmp", bytes(bmp), "error", "BMP with height -2^31")
    s.add("image", "huge.ppm", b"P6 100000 100000 255\n" + s.noise(1000), "error", "PPM claiming 10 GP")
    s.add("image", "bomb_ztxt.png", _png_build([*_png_chunks(good["png"])[:1],
                                               (b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * 50_000_000, 9)),
                                               *_png_chunks(good["png"])[1:]]), "either",
          "PNG with a 50 MB zTXt decompression bomb")
    s.add("image", "eps_as.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "error",
          "PostScript (Pillow would run Ghostscript) named .jpg")
    s.add("image", "svg_as.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "error",
          "SVG named .png")
    s.add("image", "html_as.jpg", b"<!doctype html><html><body>hello</body></html>", "error", "HTML named .jpg")
    s.add("image", "wav_as.jpg", _wav(_tone(16_000, 1.0), 16_000), "ok", "a WAV named .jpg (read by content)")
    s.add("image", "mp4_as.png", (EXAMPLES / "talking.mp4").read_bytes(), "ok", "an MP4 named .png (by content)")
    s.add("image", "jpg_noext", good["jpg"], "ok", "a JPEG without an extension")
    s.add("image", "png_as.jpg", good["png"], "ok", "a PNG named .jpg")
    for k in range(6):
        s.add("image", f"flipped_{k}.jpg", s.flip_bytes(good["jpg"], 600, 40), "either", "JPEG with bit flips")
    for k in range(3):
        s.add("image", f"flipped_{k}.png", s.flip_bytes(good["png"], 60, 20), "either", "PNG with bit flips")
    s.add("image", "nul_bytes.png", b"\0" * 10_000, "error", "10 kB of NUL bytes")
    s.add("image", "png_signature_only.png", b"\x89PNG\r\n\x1a\n", "error", "a PNG signature and nothing else")
    s.add("image", "jpeg_soi_only.jpg", b"\xff\xd8\xff", "error", "a JPEG start marker and nothing else")


# -- audio -------------------------------------------------------------------------------------------

def _tone(rate: int, seconds: float, f0: float = 180.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) if len(t) else t
    env = np.clip(np.minimum(t, t[::-1] if len(t) else t) * 20, 0, 1)
    return (amp * env * x / 1.5).astype(np.float32)


def _wav(x: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    import soundfile as sf

    b = io.BytesIO()
    sf.write(b, x, rate, subtype=subtype, format=fmt)
    return b.getvalue()


def _patch_wav(data: bytes, rate: int | None = None, channels: int | None = None,
               data_size: int | None = None) -> bytes:
    b = bytearray(data)
    i = b.find(b"fmt ")
    if channels is not None:
        struct.pack_into("<H", b, i + 10, channels)
    if rate is not None:
        struct.pack_into("<I", b, i + 12, rate)
        struct.pack_into("<I", b, i + 16, rate * struct.unpack_from("<H", b, i + 20)[0])
    if data_size is not None:
        j = b.find(b"data")
        struct.pack_into("<I", b, j + 4, data_size)
    return bytes(b)


def _audio(s: _Suite) -> None:
    for rate in (4_000, 8_000, 8_001, 11_025, 22_050, 22_051, 44_100, 48_000, 48_001, 96_000, 192_000, 384_000):
        s.add("audio", f"rate_{rate}.wav", _wav(_tone(rate, 1.0), rate), "ok", f"1 s at {rate:,} Hz")
    for rate, n, what in ((1, 100_000, "1 Hz, 100,000 samples (27.8 h)"), (100, 1000, "100 Hz"),
                          (3_999, 4000, "3,999 Hz"), (384_001, 20_000, "384,001 Hz"),
                          (9_999_999, 200_000, "9,999,999 Hz, 0.02 s"), (2**31 - 1, 1000, "2^31-1 Hz")):
        s.add("audio", f"rate_{rate}_hz.wav", _patch_wav(_wav(np.zeros(n, np.float32), 16_000), rate=rate), "error",
              f"WAV header at {what}")
    s.add("audio", "rate_0.wav", _patch_wav(_wav(_tone(16_000, 0.5), 16_000), rate=0), "error", "rate 0")
    for subtype in ("PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW", "IMA_ADPCM", "MS_ADPCM",
                    "GSM610"):
        rate = 8_000 if subtype == "GSM610" else 16_000
        s.add("audio", f"subtype_{subtype.lower()}.wav", _wav(_tone(rate, 1.0), rate, subtype), "ok",
              f"{subtype} WAV")
    for fmt, ext, rate in (("FLAC", "flac", 22_051), ("OGG", "ogg", 44_100), ("MP3", "mp3", 44_100),
                           ("AIFF", "aiff", 11_025), ("AU", "au", 8_000), ("CAF", "caf", 48_000)):
        s.add("audio", f"format.{ext}", _wav(_tone(rate, 1.5), rate, "PCM_16" if fmt not in ("OGG", "MP3") else
                                             {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[fmt], fmt), "ok",
              f"{fmt} at {rate:,} Hz")
    s.add("audio", "ten_ms.wav", _wav(_tone(16_000, 0.01), 16_000), "ok", "a 10 ms clip (too short: a note)")
    s.add("audio", "hundred_ms.wav", _wav(_tone(16_000, 0.1), 16_000), "ok", "a 100 ms clip")
    s.add("audio", "one_sample.wav", _wav(np.full(1, 0.5, np.float32), 16_000), "ok", "one sample")
    s.add("audio", "no_samples.wav", _wav(np.zeros(0, np.float32), 16_000), "error", "a header with no samples")
    full = _wav(_tone(16_000, 2.0), 16_000)
    s.add("audio", "cut_at_1000.wav", full[:1000], "ok", "WAV truncated at byte 1,000", note="truncated")
    s.add("audio", "cut_half.wav", full[: len(full) // 2], "ok", "WAV cut in half", note="truncated")
    s.add("audio", "header_only.wav", full[:44], "either", "a WAV header alone")
    s.add("audio", "cut_40.wav", full[:40], "error", "a WAV cut inside its header")
    s.add("audio", "lying_size.wav", _patch_wav(full, data_size=0x7FFFFFF0), "ok", "data chunk claims 2 GB",
          note="truncated")
    flac = _wav(_tone(16_000, 3.0), 16_000, fmt="FLAC")
    s.add("audio", "cut_third.flac", flac[: len(flac) // 3], "either", "FLAC cut to a third")
    mp3 = _wav(_tone(44_100, 3.0), 44_100, "MPEG_LAYER_III", "MP3")
    s.add("audio", "cut_half.mp3", mp3[: len(mp3) // 2], "either", "MP3 cut in half")
    s.add("audio", "flipped.mp3", s.flip_bytes(mp3, 200, 60), "either", "MP3 with bit flips")
    x = _tone(16_000, 1.5)
    x[::7], x[::11] = np.nan, np.inf
    s.add("audio", "nan_inf.wav", _wav(x, 16_000, "FLOAT"), "ok", "NaN and inf samples", note="non-finite")
    s.add("audio", "all_nan.wav", _wav(np.full(16_000, np.nan, np.float32), 16_000, "FLOAT"), "ok",
          "every sample NaN", note="non-finite")
    s.add("audio", "huge_float.wav", _wav(_tone(16_000, 1.0) * 1e30, 16_000, "FLOAT"), "ok",
          "float samples at 1e30", note="clipped")
    s.add("audio", "silence.wav", _wav(np.zeros(32_000, np.float32), 16_000), "ok", "digital silence",
          note="silent")
    s.add("audio", "dc_only.wav", _wav(np.full(16_000, 0.5, np.float32), 16_000), "ok", "a constant DC level")
    s.add("audio", "clipped.wav", _wav(np.clip(_tone(16_000, 1.0) * 20, -1, 1), 16_000), "ok", "hard clipped",
          note="clipped")
    s.add("audio", "ch64.wav", _wav(np.tile(_tone(16_000, 1.0)[:, None], (1, 64)), 16_000), "ok", "64 channels")
    s.add("audio", "ch65.wav", _wav(np.tile(_tone(16_000, 0.2)[:, None], (1, 65)), 16_000), "error", "65 channels")
    s.add("audio", "ch0.wav", _patch_wav(full, channels=0), "error", "0 channels")
    s.add("audio", "ch1000.wav", _patch_wav(full, channels=1000), "either", "header claiming 1,000 channels")
    stereo_dead = np.stack([_tone(16_000, 1.0), np.zeros(16_000, np.float32)], 1)
    s.add("audio", "dead_channel.wav", _wav(stereo_dead, 16_000), "ok", "one dead stereo channel", note="silent")
    s.add("audio", "long_44k_stereo.wav", _wav(np.tile(_tone(44_100, 25.0)[:, None], (1, 2)), 44_100), "ok",
          "25 s stereo at 44.1 kHz (streamed in windows)")
    for ext in ("wav", "mp3", "flac", "ogg", "m4a"):
        s.add("audio", f"empty.{ext}", b"", "error", "empty file")
        s.add("audio", f"one_byte.{ext}", b"R", "error", "1-byte file")
        s.add("audio", f"random.{ext}", s.noise(5000), "error", "random bytes")
        s.add("audio", f"text.{ext}", b"hello, this is not audio\n" * 40, "error", "text file")
    s.add("audio", "riff_garbage.wav", b"RIFF\xff\xff\xff\xffWAVEfmt " + s.noise(200), "error",
          "RIFF header then garbage")
    s.add("audio", "jpg_as.wav", _save(_face_rgb(), "JPEG"), "ok", "a JPEG named .wav (read by content)")
    s.add("audio", "nul.wav", b"\0" * 10_000, "error", "NUL bytes")


# -- video -------------------------------------------------------------------------------------------

def _frames(n: int, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    """A face (the astronaut photo, big enough to detect) drifting right over a grey background."""
    w, h = size
    side = min(w, h)
    face = _face_rgb(side)[:, :, ::-1]
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 90, np.uint8)
        x = min(w - side, 2 * i)
        img[:, x : x + side] = face
        out.append(img)
    return out


def _video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "mpeg4", audio: bool = True,
           options: dict[str, str] | None = None, audio_codec: str = "aac", pix_fmt: str = "yuv420p") -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options=options or {}) as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        a = None
        if audio:
            a = c.add_stream(audio_codec, rate=48_000 if audio_codec == "libopus" else 44_100)
            a.layout = "mono"
        for img in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a is not None:
            rate = a.rate
            x = _tone(rate, len(frames) / fps)
            for i in range(0, len(x), 960):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, i : i + 960]), format="fltp",
                                                layout="mono")
                fr.sample_rate, fr.pts, fr.time_base = rate, i, Fraction(1, rate)
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)


def _box(data: bytes, kind: bytes) -> int:
    """Offset of a top-level MP4 box."""
    pos = 0
    while pos + 8 <= len(data):
        size, k = struct.unpack(">I4s", data[pos : pos + 8])
        if k == kind:
            return pos
        if size < 8:
            break
        pos += size
    raise ValueError(f"no {kind!r} box")


def _videos(s: _Suite) -> None:
    work = s.root / "video" / "_src"
    work.mkdir(exist_ok=True)
    frames = _frames(20)
    plain, fast = work / "plain.mp4", work / "fast.mp4"
    _video(plain, frames)
    _video(fast, frames, options={"movflags": "faststart"})
    s.add("video", "good.mp4", plain.read_bytes(), "ok", "face + voice, MPEG-4 + AAC")
    s.add("video", "good_faststart.mp4", fast.read_bytes(), "ok", "moov first")
    s.add("video", "no_audio.mp4", lambda p: _video(p, frames, audio=False), "ok", "no audio track", no_audio=True)
    s.add("video", "h264.mkv", lambda p: _video(p, frames, codec="libx264", audio_codec="libopus"), "ok",
          "H.264 + Opus in Matroska")
    s.add("video", "vp8.webm", lambda p: _video(p, frames, codec="libvpx", audio_codec="libopus"), "ok",
          "VP8 + Opus in WebM")
    s.add("video", "mjpeg.avi", lambda p: _video(p, frames, codec="mjpeg", audio=False, pix_fmt="yuvj420p"), "ok",
          "MJPEG in AVI", no_audio=True)
    s.add("video", "one_frame.mp4", lambda p: _video(p, frames[:1], audio=False), "ok", "a single frame", no_audio=True)
    s.add("video", "tiny_16x16.mp4", lambda p: _video(p, _frames(10, (16, 16)), audio=False), "ok", "16x16 pixels",
          no_audio=True)
    s.add("video", "fps_1000.mp4", lambda p: _video(p, frames, fps=1000, audio=False), "ok", "1,000 fps", no_audio=True)
    s.add("video", "fps_1.mp4", lambda p: _video(p, frames[:4], fps=1, audio=False), "ok", "1 fps", no_audio=True)
    s.add("video", "audio_only.m4a", lambda p: _audio_only(p), "ok", "an audio-only MP4 container")
    s.add("video", "wav_as.mp4", _wav(_tone(16_000, 1.0), 16_000), "ok", "a WAV named .mp4 (audio only)")
    s.add("video", "jpg_as.mp4", _save(_face_rgb(), "JPEG"), "either", "a JPEG named .mp4")
    plain_b, fast_b = plain.read_bytes(), fast.read_bytes()
    for name, data in (("plain", plain_b), ("faststart", fast_b)):
        i = _box(data, b"moov")
        size = struct.unpack(">I", data[i : i + 4])[0]
        s.add("video", f"moov_missing_{name}.mp4", data[:i] + data[i + size :], "error", f"{name}: moov removed")
        for tag in (b"xxxx", b"skip", b"mdat"):
            s.add("video", f"moov_as_{tag.decode()}_{name}.mp4", data[: i + 4] + tag + data[i + 8 :], "error",
                  f"{name}: moov renamed {tag.decode()}")
        s.add("video", f"moov_as_free_{name}.mp4", data[: i + 4] + b"free" + data[i + 8 :], "either",
              f"{name}: moov renamed free (FFmpeg still finds it)")
        s.add("video", f"moov_zero_{name}.mp4", data[:i] + b"\0" * size + data[i + size :], "error",
              f"{name}: moov zeroed")
    for frac in (0.1, 0.5, 0.9):
        s.add("video", f"cut_{int(frac * 100)}_plain.mp4", plain_b[: int(len(plain_b) * frac)], "error",
              f"cut to {frac:.0%} (moov at the end is lost)")
    for frac in (0.3, 0.6):
        s.add("video", f"cut_{int(frac * 100)}_faststart.mp4", fast_b[: int(len(fast_b) * frac)], "either",
              f"moov first, cut to {frac:.0%}", note="truncated")
    mdat = _box(fast_b, b"mdat")
    for k in range(5):
        s.add("video", f"flipped_{k}.mp4", s.flip_bytes(fast_b, mdat + 16, 60), "either", "bit flips in mdat")
    huge = bytearray(fast_b)
    j = huge.find(b"mp4v")
    struct.pack_into(">HH", huge, j + 4 + 24, 60000, 60000)  # the visual sample entry's width, height
    s.add("video", "huge_sample_entry.mp4", bytes(huge), "either", "stsd claims 60000x60000")
    mj = work / "mjpeg.avi"
    _video(mj, frames[:3], codec="mjpeg", audio=False, pix_fmt="yuvj420p")
    data = mj.read_bytes()
    patched = data.replace(b"\xff\xc0\x00\x11\x08\x00\x78\x00\xa0", b"\xff\xc0\x00\x11\x08\x3e\x80\x3e\x80")
    s.add("video", "mjpeg_16000x16000.avi", patched, "either", "MJPEG frames claiming 16000x16000 (256 MP)")
    for ext in ("mp4", "mov", "mkv", "webm", "avi"):
        s.add("video", f"empty.{ext}", b"", "error", "empty file")
        s.add("video", f"one_byte.{ext}", b"\0", "error", "1-byte file")
        s.add("video", f"random.{ext}", s.noise(20_000), "error", "random bytes")
        s.add("video", f"text.{ext}", b"this is not a video\n" * 100, "error", "text file")
    s.add("video", "ftyp_only.mp4", plain_b[: _box(plain_b, b"mdat")], "error", "an ftyp box and nothing else")
    s.add("video", "mdat_only.mp4", plain_b[_box(plain_b, b"mdat") : _box(plain_b, b"moov")], "error",
          "media data without a header")
    s.add("video", "no_ftyp.mp4", plain_b[_box(plain_b, b"mdat") :], "either",
          "ftyp removed: every chunk offset now points 28 bytes off")


def _audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=44_100)
        a.layout = "mono"
        x = _tone(44_100, 1.5)
        for i in range(0, len(x), 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, i : i + 1024]), format="fltp", layout="mono")
            fr.sample_rate = 44_100
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)


# -- configs -----------------------------------------------------------------------------------------

CANARY = "mmfer-fuzz-canary"  # a file the !!python tags would create if YAML ever ran code


def _configs(s: _Suite) -> None:
    canary = s.root / CANARY
    # Billion laughs: ten levels, each a list of ten aliases of the level below (10^10 values once expanded).
    levels = ["&l0 [" + ", ".join(["x"] * 10) + "]"] + [f"&l{k} [{', '.join([f'*l{k - 1}'] * 10)}]"
                                                          for k in range(1, 10)]
    as_list = "".join(f"\n    - {lv}" for lv in levels)
    add = lambda name, text, what: s.add("config", name, text.encode() if isinstance(text, str) else text,  # noqa: E731
                                         "error", what)
    add("bomb_top.yaml", "".join(f"k{k}: {lv}\n" for k, lv in enumerate(levels)), "billion laughs at the top level")
    add("bomb_name.yaml", f"name:{as_list}\n", "billion laughs in a known string field")
    add("bomb_tuple.yaml", f"augment:\n  crop_scale:{as_list}\n", "billion laughs in a tuple field")
    add("bomb_merge.yaml", "base: &b {name: x}\n" + "\n".join(f"m{k}: &m{k}\n  <<: *{'b' if k == 0 else f'm{k-1}'}"
                                                             for k in range(40)) + "\nname: 3\n",
        "chained merge keys")
    for tag, body in (("apply", f'!!python/object/apply:os.system ["touch {canary}"]'),
                      ("new", f'!!python/object/new:subprocess.Popen [["touch", "{canary}"]]'),
                      ("name", "!!python/name:os.system"),
                      ("module", "!!python/module:os"),
                      ("object", "!!python/object:argparse.Namespace {x: 1}")):
        add(f"python_{tag}.yaml", f"name: {body}\n", f"!!python/{tag} tag")
        add(f"python_{tag}_top.yaml", f"{body}\n", f"!!python/{tag} tag at the top level")
    for name, text, what in (
        ("deep_lists.yaml", "name: " + "[" * 20_000 + "]" * 20_000 + "\n", "lists nested 20,000 deep"),
        ("deep_maps.yaml", "".join(f"{'  ' * k}k{k}:\n" for k in range(300)) + "  " * 300 + "v: 1\n",
         "mappings nested 300 deep"),
        ("huge.yaml", "name: " + "x" * (2 << 20) + "\n", "a 2 MB config"),
        ("binary.yaml", s.noise(3000), "random bytes"),
        ("latin1.yaml", "name: caf\xe9\n".encode("latin-1"), "not UTF-8"),
        ("nul.yaml", b"name: a\0b\n", "a NUL byte"),
        ("list_top.yaml", "- 1\n- 2\n", "a list at the top level"),
        ("scalar_top.yaml", "42\n", "a number at the top level"),
        ("unknown_key.yaml", "nmae: typo\n", "an unknown key"),
        ("wrong_type.yaml", "trainer:\n  epochs: many\n", "a wrong type"),
        ("mixed_keys.yaml", "1: one\nname: x\n", "an integer key beside string keys"),
        ("list_key.yaml", "? [a, b]\n: 1\n", "a list as a key"),
        ("tabs.yaml", "trainer:\n\tepochs: 3\n", "tab indentation"),
        ("unclosed.yaml", "name: [a, b\n", "an unclosed list"),
        ("section_scalar.yaml", "trainer: 5\n", "a section given as a number"),
        ("bool_as_int.yaml", "trainer:\n  epochs: true\n", "a boolean for an integer"),
        ("nan_lr.yaml", "optim:\n  lr: .nan\n", "NaN learning rate"),
        ("duplicate.yaml", "name: a\nname: b\nnmae: c\n", "duplicate and misspelt keys"),
    ):
        add(name, text, what)
    s.add("config", "folder.yaml", lambda p: p.mkdir(), "error", "a folder")
    s.cases.append(Case(s.root / "config" / "missing.yaml", "config", "error", "a file that does not exist"))


# -- the suite ---------------------------------------------------------------------------------------

def generate(root: Path, seed: int = SEED) -> list[Case]:
    """Write every case under ``root`` (image/, audio/, video/, config/) and return them."""
    s = _Suite(Path(root), seed)
    _images(s)
    _audio(s)
    _videos(s)
    _configs(s)
    (Path(root) / "manifest.json").write_text(json.dumps([c.to_dict() for c in s.cases], indent=1))
    return s.cases


if __name__ == "__main__":
    cases = generate(Path(sys.argv[1]))
    kinds = {k: sum(c.kind == k for c in cases) for k in ("image", "audio", "video", "config")}
    print(f"{len(cases)} cases: {kinds}")
