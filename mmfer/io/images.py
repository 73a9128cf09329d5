"""Loading user images robustly: any common format and pixel mode -> 8-bit BGR, or one clear error.

Every failure raises :class:`ImageLoadError` with a one-line message that starts with the file
name, so a CLI can print it as is and go on with the next file.
"""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000
"""Largest image (width x height) accepted; checked from the header, before any pixel is decoded."""

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}

# Photo formats Pillow may open. The others are scientific or legacy containers nobody sends as a
# photo, and some hand the file to outside programs (EPS runs Ghostscript): not for untrusted input.
# (Phones' multi-picture JPEGs open through the JPEG plugin; formats this Pillow lacks are left out.)
PHOTO_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "JPEG2000", "PPM", "TGA", "ICO", "QOI")


@functools.cache
def _photo_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in PHOTO_FORMATS if f in Image.OPEN)

# Transparent pixels are composited onto white: it is what browsers, viewers and documents show
# behind a transparent PNG/GIF, so the model sees the face the way the user sees it. (The colour
# stored under alpha=0 is arbitrary, often black, and would otherwise leak into the image.)
ALPHA_BACKGROUND = 255


class ImageLoadError(ValueError):
    """An image that cannot be used; the message starts with its name and says why."""


def load_image(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 BGR array (OpenCV order).

    EXIF orientation is applied; 16-bit/float grey is stretched to 8 bits over its real range;
    alpha is composited onto white; multi-frame files (GIF, TIFF) give their first frame.

    Args:
        path: the file.
        max_pixels: reject larger images (from the header, before decoding); None for no limit
            of our own (Pillow's decompression-bomb limit still applies).

    Raises:
        ImageLoadError: missing, unreadable, empty, not an image, too large, truncated or corrupt.
    """
    p = Path(path)
    name = str(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except OSError as e:
        raise ImageLoadError(f"{name}: cannot access ({_reason(e)})") from None
    if p.is_dir():
        raise ImageLoadError(f"{name}: is a directory")
    if not p.is_file():
        raise ImageLoadError(f"{name}: not a regular file")
    if st.st_size == 0:
        raise ImageLoadError(f"{name}: empty file")
    try:
        fh = open(p, "rb")
    except OSError as e:
        raise ImageLoadError(f"{name}: cannot read ({_reason(e)})") from None
    with fh:
        return _decode(fh, name, max_pixels)


def load_image_bytes(data: bytes, name: str, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """:func:`load_image` for in-memory data (uploads); ``name`` is used in error messages."""
    if not data:
        raise ImageLoadError(f"{name}: empty file")
    return _decode(io.BytesIO(data), name, max_pixels)


def iter_image_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand folders into their image files; pass everything else through.

    Folders are walked recursively in sorted order, keeping files whose suffix (any case) is in
    :data:`IMAGE_SUFFIXES` and skipping hidden files and folders. Explicit files are yielded
    whatever their suffix, and missing paths too, so that :func:`load_image` reports them
    instead of them being skipped silently.
    """
    for item in paths:
        p = Path(item)
        if not p.is_dir():
            yield p
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES:
                    yield Path(root) / f


def _reason(e: BaseException) -> str:
    """A short, single-line reason from an exception."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]


_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"BM", "BMP"))


def _signature(fp: IO[bytes]) -> str | None:
    """The photo format a file's first bytes announce, when Pillow could not open it."""
    fp.seek(0)
    head = fp.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for magic, fmt in _SIGNATURES if head.startswith(magic)), None)


def _too_large(name: str, w: int, h: int, limit: int) -> ImageLoadError:
    return ImageLoadError(f"{name}: image is {w}x{h} ({w * h / 1e6:.1f} MP), larger than the {limit / 1e6:g} MP limit")


def _header_size(fp: IO[bytes]) -> tuple[int, int] | None:
    """Width and height from the header only, bypassing Pillow's bomb check (which hides them)."""
    fp.seek(0)
    prefix = fp.read(16)
    for fmt in _photo_formats():
        factory, accept = Image.OPEN[fmt]
        try:
            if accept is not None and not accept(prefix):
                continue
            fp.seek(0)
            return factory(fp, "").size  # plugin constructors parse the header only
        except Exception:  # any plugin may choke on foreign data
            continue
    return None


def _decode(fp: IO[bytes], name: str, max_pixels: int | None) -> np.ndarray:
    try:
        im = Image.open(fp, formats=_photo_formats())
    except Image.DecompressionBombError as e:
        size = _header_size(fp)
        if size is not None:
            raise _too_large(name, *size, max_pixels or Image.MAX_IMAGE_PIXELS) from None
        m = re.search(r"\((\d+) pixels\)", str(e))
        mp = f"{int(m.group(1)) / 1e6:.1f} MP" if m else "too many pixels"
        raise ImageLoadError(f"{name}: image is {mp}, larger than Pillow's decompression-bomb limit") from None
    except UnidentifiedImageError:
        fmt = _signature(fp)
        if fmt:
            raise ImageLoadError(f"{name}: corrupt {fmt} (its header cannot be parsed)") from None
        raise ImageLoadError(f"{name}: not an image (unrecognised format)") from None
    except Exception as e:  # header parsers raise anything (SyntaxError, struct.error, ...)
        raise ImageLoadError(f"{name}: not a valid image ({_reason(e)})") from None
    with im:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageLoadError(f"{name}: image has no pixels ({w}x{h})")
        if max_pixels is not None and w * h > max_pixels:
            raise _too_large(name, w, h, max_pixels)
        try:
            im.load()  # truncated data fails here: Pillow's LOAD_TRUNCATED_IMAGES stays False on purpose
        except MemoryError:
            raise ImageLoadError(f"{name}: not enough memory to decode a {w}x{h} image") from None
        except Exception as e:  # decoders raise OSError, SyntaxError, EOFError, ValueError, ...
            raise ImageLoadError(f"{name}: truncated or corrupt image data ({_reason(e)})") from None
        damage = _png_damage(fp) if im.format == "PNG" else None
        if damage:
            raise ImageLoadError(f"{name}: {damage}")
        try:
            out = ImageOps.exif_transpose(im)
        except Exception:  # a broken EXIF block should not cost the whole image
            out = im
        try:
            rgb = _to_rgb_array(out if out is not None else im)
        except ImageLoadError:
            raise
        except Exception as e:
            raise ImageLoadError(f"{name}: cannot convert {im.mode} pixels ({_reason(e)})") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _png_damage(fp: IO[bytes]) -> str | None:
    """What is wrong with a PNG that Pillow decoded anyway, or None.

    Pillow stops reading once it has the pixels, so a file cut short after its last pixel row, a
    critical chunk whose CRC does not match, or a palette whose length is not whole colours all
    load silently; libpng (browsers, viewers) rejects them. Walks the chunks, reading at most 1 MB
    at a time.
    """
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    fp.seek(8)
    while True:
        head = fp.read(8)
        if len(head) < 8:
            return "truncated PNG (the file ends before its IEND chunk)"
        length, kind = struct.unpack(">I4s", head)
        label = kind.decode("latin-1")
        if fp.tell() + length + 4 > size:
            return f"truncated PNG (the file ends inside its {label!r} chunk)"
        crc, left = zlib.crc32(kind), length
        while left:
            piece = fp.read(min(left, 1 << 20))
            crc, left = zlib.crc32(piece, crc), left - len(piece)
        critical = kind[:1].isupper()  # ancillary chunks with a bad CRC are skipped by decoders, as here
        if critical and struct.unpack(">I", fp.read(4))[0] != crc:
            return f"corrupt PNG (the CRC of its {label!r} chunk does not match)"
        if not critical:
            fp.seek(4, os.SEEK_CUR)
        if kind == b"PLTE" and (length == 0 or length % 3 or length > 768):
            return f"corrupt PNG (its palette is {length} bytes, not 1-256 RGB colours)"
        if kind == b"IEND":
            return None


_STRETCH_VALUES = 1 << 20  # pixels converted at a time: a 40 MP 16-bit scan never gets a full float copy


def _stretch(a: np.ndarray) -> np.ndarray:
    """High-bit-depth or float grey -> uint8 over its real (finite) min..max range.

    Clipping would turn 12/16-bit data black or white; a constant image keeps its value clipped
    to 0..255 since it has no range to stretch.
    """
    is_float = a.dtype.kind == "f"
    if is_float:
        finite = np.isfinite(a)
        if not finite.any():
            return np.zeros(a.shape, np.uint8)
        lo, hi = float(a.min(where=finite, initial=np.inf)), float(a.max(where=finite, initial=-np.inf))
        del finite
    else:
        lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.full(a.shape, np.clip(round(lo), 0, 255), np.uint8)
    out = np.empty(a.shape, np.uint8)
    scale = 255.0 / (hi - lo)
    step = max(1, _STRETCH_VALUES // max(1, a[0].size))
    for r in range(0, a.shape[0], step):
        rows = a[r : r + step].astype(np.float64)
        if is_float:
            rows[~np.isfinite(rows)] = lo
        rows -= lo
        rows *= scale
        out[r : r + step] = np.rint(rows, out=rows)
    return out


def _composite(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3) uint8 over :data:`ALPHA_BACKGROUND`."""
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    out = rgba[:, :, :3].astype(np.float32) * alpha + ALPHA_BACKGROUND * (1.0 - alpha)
    return np.rint(out).astype(np.uint8)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        grey = _stretch(np.asarray(im))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
    elif mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
        mode = "RGBA"
    elif mode in ("L", "1") and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        return _composite(np.asarray(im))
    if mode == "RGB":
        return np.asarray(im)
    if mode in ("L", "1"):
        grey = np.asarray(im.convert("L"))
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, RGBX, ...
