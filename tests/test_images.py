"""mmfer.io.images: every mode loads to 8-bit BGR, every bad file gives one clear ImageLoadError."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_png_header_only
from mmfer.io.images import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    ImageLoadError,
    _to_rgb_array,
    iter_image_files,
    load_image,
    load_image_bytes,
)

RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # (H, W, 3) RGB


def _check_bgr(a: np.ndarray, shape: tuple[int, int]) -> None:
    assert isinstance(a, np.ndarray) and a.dtype == np.uint8
    assert a.shape == (*shape, 3)
    assert a.flags.c_contiguous


def _load_error(path: Path, **kw) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(path, **kw)
    msg = str(info.value)
    assert msg.startswith(str(path) + ": "), msg
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- bad input

def test_missing_directory_and_empty(tmp_path: Path) -> None:
    assert _load_error(tmp_path / "nope.jpg").endswith("no such file")
    assert _load_error(tmp_path).endswith("is a directory")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _load_error(tmp_path / "empty.jpg").endswith("empty file")
    with pytest.raises(ImageLoadError, match=r"^upload\.png: empty file$"):
        load_image_bytes(b"", "upload.png")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "noise.jpg").write_bytes(RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (tmp_path / "notes.png").write_text("this is not a picture\n" * 20)
    for name in ("noise.jpg", "notes.png"):
        assert "not an image (unrecognised format)" in _load_error(tmp_path / name)
    with pytest.raises(ImageLoadError, match=r"^notes\.png: not an image"):
        load_image_bytes(b"hello world", "notes.png")
    assert issubclass(ImageLoadError, ValueError)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    full = tmp_path / f"full.{fmt.lower()}"
    Image.fromarray(RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(full, fmt)
    data = full.read_bytes()
    half = tmp_path / f"half.{fmt.lower()}"
    half.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt image data" in _load_error(half)
    with pytest.raises(ImageLoadError, match=r"^half: truncated or corrupt"):
        load_image_bytes(data[: len(data) // 2], "half")
    _check_bgr(load_image(full), (120, 160))


def test_huge_header_rejected_without_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    write_png_header_only(bomb, 20000, 20000)  # 400 MP: past Pillow's own bomb limit too
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    msg = _load_error(bomb)
    assert msg == f"{bomb}: image is 20000x20000 (400.0 MP), larger than the 40 MP limit"
    big = tmp_path / "big.png"
    write_png_header_only(big, 8000, 6000)  # 48 MP: below Pillow's limits, so only ours catches it
    assert _load_error(big).endswith("image is 8000x6000 (48.0 MP), larger than the 40 MP limit")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100_000, f"peak memory grew by {grown_kib} KiB: pixels were decoded"
    assert MAX_PIXELS == 40_000_000


def test_max_pixels_argument(tmp_path: Path) -> None:
    p = tmp_path / "small.png"
    Image.fromarray(PHOTO).save(p)
    assert "larger than the 0.001 MP limit" in _load_error(p, max_pixels=1000)
    _check_bgr(load_image(p, max_pixels=None), (30, 40))
    with pytest.raises(ImageLoadError, match="MP limit"):
        load_image_bytes(p.read_bytes(), "small.png", max_pixels=1000)


# --------------------------------------------------------------------------- modes

def test_rgb_formats_round_trip(tmp_path: Path) -> None:
    bgr = PHOTO[:, :, ::-1]
    for suffix in (".png", ".bmp", ".tif", ".webp"):
        p = tmp_path / f"photo{suffix}"
        Image.fromarray(PHOTO).save(p, **({"lossless": True} if suffix == ".webp" else {}))
        out = load_image(p)
        _check_bgr(out, (30, 40))
        assert np.array_equal(out, bgr), suffix
        assert np.array_equal(load_image_bytes(p.read_bytes(), p.name), out)
    smooth = np.zeros((30, 40, 3), np.uint8)  # JPEG would wreck random noise; gradients survive
    smooth[..., 0] = np.linspace(0, 255, 40, dtype=np.uint8)
    smooth[..., 1] = np.linspace(0, 255, 30, dtype=np.uint8)[:, None]
    p = tmp_path / "photo.jpg"
    Image.fromarray(smooth).save(p, quality=95)
    assert np.abs(load_image(p).astype(int) - smooth[:, :, ::-1]).mean() < 5  # the right channel order


def test_16bit_grey_uses_full_range(tmp_path: Path) -> None:
    a = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (8, 1))  # 12-bit data in a 16-bit PNG
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode in ("I;16", "I")
    out = load_image(p)
    _check_bgr(out, (8, 64))
    assert out.min() == 0 and out.max() == 255  # stretched, not clipped to 255 nor divided by 257
    assert np.all(np.diff(out[0, :, 0].astype(int)) >= 0)
    assert abs(int(out[0, 32, 0]) - round(a[0, 32] / 4095 * 255)) <= 1
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_int32_and_float_grey(tmp_path: Path) -> None:
    p = tmp_path / "i.tif"
    Image.fromarray(np.arange(-50, 50, dtype=np.int32).reshape(10, 10)).save(p)
    out = load_image(p)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    f = np.linspace(0.0, 1.0, 100, dtype=np.float32).reshape(10, 10)
    f[0, 1] = np.nan
    p = tmp_path / "f.tif"
    Image.fromarray(f).save(p)
    out = load_image(p)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and out[0, 1, 0] == 0


def test_rgba_composited_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent black
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black
    p = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(p)
    out = load_image(p)
    _check_bgr(out, (4, 4))
    assert out[0, 0].tolist() == [0, 0, 255]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert 120 <= out[0, 2, 0] <= 135
    la = tmp_path / "la.png"
    Image.fromarray(rgba, "RGBA").convert("LA").save(la)
    assert load_image(la)[0, 1].tolist() == [255, 255, 255]


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    pal = Image.fromarray(PHOTO).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p = tmp_path / "p.png"
    pal.save(p)
    out = load_image(p)
    _check_bgr(out, (30, 40))
    assert np.array_equal(out, np.asarray(pal.convert("RGB"))[:, :, ::-1])
    idx = int(np.asarray(pal)[0, 0])
    for name in ("pt.png", "pt.gif"):
        q = tmp_path / name
        pal.save(q, transparency=idx)
        assert Image.open(q).mode == "P"
        out = load_image(q)
        _check_bgr(out, (30, 40))
        assert out[0, 0].tolist() == [255, 255, 255]


def test_grey_bilevel_cmyk_ycbcr(tmp_path: Path) -> None:
    grey = tmp_path / "l.png"
    Image.fromarray(PHOTO[:, :, 0]).save(grey)
    out = load_image(grey)
    _check_bgr(out, (30, 40))
    assert np.array_equal(out[:, :, 0], PHOTO[:, :, 0]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    bw = tmp_path / "b.png"
    Image.fromarray(PHOTO).convert("1").save(bw)
    assert set(np.unique(load_image(bw))) <= {0, 255}
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(red).convert("CMYK").save(cmyk, quality=95)
    assert Image.open(cmyk).mode == "CMYK"
    out = load_image(cmyk)
    _check_bgr(out, (16, 16))
    assert np.abs(out.astype(int) - [0, 0, 255]).max() < 20
    # Pillow cannot write a YCbCr or LAB file it reads back, so check the mode conversion itself.
    for mode in ("YCbCr", "LAB", "HSV"):
        rgb = _to_rgb_array(Image.new("RGB", (16, 8), (200, 30, 30)).convert(mode))
        assert rgb.shape == (8, 16, 3) and np.abs(rgb.astype(int) - [200, 30, 30]).max() <= 4, mode


def test_exif_orientation_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    p = tmp_path / "rot.jpg"
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(p, exif=exif)
    _check_bgr(load_image(p), (40, 20))


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (10, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    out = load_image(p)
    _check_bgr(out, (8, 10))
    assert out[0, 0].tolist() == [0, 0, 255]


# --------------------------------------------------------------------------- folders

def test_iter_image_files(tmp_path: Path) -> None:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    (d / ".git").mkdir()
    for name in ("b.jpg", "A.PNG", "c.txt", ".hidden.jpg", "sub/d.webp", "sub/e.TIFF", ".git/f.jpg", "g.jpeg"):
        (d / name).write_bytes(b"x")
    explicit = tmp_path / "notes.txt"
    explicit.write_text("not an image")
    missing = tmp_path / "missing.jpg"
    got = list(iter_image_files([d, str(explicit), missing]))
    assert got == [d / "A.PNG", d / "b.jpg", d / "g.jpeg", d / "sub" / "d.webp", d / "sub" / "e.TIFF",
                   explicit, missing]
    assert all(isinstance(p, Path) for p in got)
    assert {".jpg", ".png", ".gif", ".webp", ".tif"} <= IMAGE_SUFFIXES
    assert list(iter_image_files([])) == []


# --------------------------------------------------------------------------- damage Pillow lets through

def _png(tmp_path: Path, name: str, chunks: list[tuple[bytes, bytes]], bad_crc: bytes | None = None) -> Path:
    import struct
    import zlib

    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, data in chunks:
        crc = zlib.crc32(kind + data) ^ (1 if kind == bad_crc else 0)
        out += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
    (tmp_path / name).write_bytes(bytes(out))
    return tmp_path / name


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    import struct

    out, pos = [], 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out.append((kind, data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return out


def test_png_damage_after_the_pixels_is_caught(tmp_path: Path) -> None:
    """Pillow decodes these silently (it stops reading once it has the pixels); libpng rejects them."""
    Image.fromarray(PHOTO).convert("P").save(tmp_path / "p.png")
    good = (tmp_path / "p.png").read_bytes()
    chunks = _chunks(good)
    assert load_image(tmp_path / "p.png").shape == (30, 40, 3)
    for cut in (1, 12, 20):
        (tmp_path / f"cut{cut}.png").write_bytes(good[:-cut])
        assert "truncated PNG" in _load_error(tmp_path / f"cut{cut}.png")
    plte7 = _png(tmp_path, "plte7.png", [(k, d[:7] if k == b"PLTE" else d) for k, d in chunks])
    assert "palette is 7 bytes, not 1-256 RGB colours" in _load_error(plte7)
    idat = _png(tmp_path, "idat.png", chunks, bad_crc=b"IDAT")
    assert "CRC of its 'IDAT' chunk does not match" in _load_error(idat)
    no_iend = _png(tmp_path, "no_iend.png", [c for c in chunks if c[0] != b"IEND"])
    assert "ends before its IEND chunk" in _load_error(no_iend)
    trailing = tmp_path / "trailing.png"
    trailing.write_bytes(good + b"\0" * 100)  # bytes after IEND harm nothing
    assert load_image(trailing).shape == (30, 40, 3)


def test_only_photo_formats_are_opened(tmp_path: Path) -> None:
    (tmp_path / "doc.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    assert "not an image" in _load_error(tmp_path / "doc.jpg")  # Pillow would hand EPS to Ghostscript
    (tmp_path / "sig.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    assert "corrupt PNG (its header cannot be parsed)" in _load_error(tmp_path / "sig.png")
    Image.fromarray(PHOTO).save(tmp_path / "real.ppm")
    assert load_image(tmp_path / "real.ppm").shape == (30, 40, 3)


def test_big_16bit_scan_converts_without_a_float_copy() -> None:
    import tracemalloc

    from mmfer.io.images import _stretch

    a = RNG.integers(100, 4000, (3000, 4000), dtype=np.uint16)
    tracemalloc.start()
    out = _stretch(a)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < a.size + 20e6, f"{peak / 1e6:.0f} MB"  # the uint8 result and 8 MB float64 blocks (not 96 MB)
    expect = np.rint((a.astype(np.float64) - a.min()) * (255.0 / (int(a.max()) - int(a.min())))).astype(np.uint8)
    np.testing.assert_array_equal(out, expect)
