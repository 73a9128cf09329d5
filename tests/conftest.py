"""Shared fixtures: where the real datasets are, and a private cache per test session."""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

# No test may reach the Hugging Face hub or touch the user's HF cache: an unreachable endpoint and a
# private HF_HOME are set before anything imports huggingface_hub (it reads them at import).
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="mmfer-test-hf-")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.pop("HF_HUB_OFFLINE", None)
# mmfer downloads on first use (CLIP, checkpoints, YuNet): offline for the whole session, subprocesses
# included; a test of a download unsets it (monkeypatch) and serves the files from 127.0.0.1 itself.
os.environ["MMFER_OFFLINE"] = "1"
os.environ.pop("MMFER_HF_ENDPOINT", None)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMFER_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
FER_CSV = SHARED_DATA / "fer2013" / "fer2013.csv.xz"
YUNET_640 = SHARED / "models" / "yunet" / "yunet_n_640_640.onnx"

RAVDESS = SHARED_DATA / "ravdess"
RAVDESS_CLIP = RAVDESS / "audio_speech_actors_01-24" / "Actor_01" / "03-01-05-02-01-01-01.flac"  # angry, strong
needs_ravdess = pytest.mark.skipif(not RAVDESS_CLIP.is_file(), reason=f"RAVDESS not found at {RAVDESS} "
                                   "(../shared absent)")
needs_fer = pytest.mark.skipif(not FER_CSV.is_file(), reason=f"FER-2013 not found at {FER_CSV} (../shared absent)")
needs_yunet = pytest.mark.skipif(not YUNET_640.is_file(), reason=f"YuNet model not found at {YUNET_640}")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the user's cache, and never try to download the detector."""
    if "MMFER_TEST_CACHE" in os.environ:  # reuse a decoded FER-2013 cache between local runs
        os.environ["MMFER_CACHE"] = os.environ["MMFER_TEST_CACHE"]
    else:
        os.environ["MMFER_CACHE"] = str(tmp_path_factory.mktemp("mmfer-cache"))
    os.environ["MMFER_YUNET_URL"] = "http://127.0.0.1:9/unreachable.onnx"
    os.environ.pop("MMFER_DATA_ROOT", None)


def iou(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def write_png_header_only(path: Path, w: int, h: int) -> None:
    """A valid PNG signature + IHDR (1-bit grey) claiming w x h, with a tiny IDAT: no real pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def voice(f0: float, seconds: float, sr: int = 16_000, harmonics: int = 6, vibrato: float = 0.0,
          amp: float = 0.3) -> np.ndarray:
    """A harmonic tone (a crude voiced vowel) at ``f0`` Hz, optionally with vibrato (Hz of depth at 5 Hz)."""
    t = np.arange(int(seconds * sr)) / sr
    inst = f0 + vibrato * np.sin(2 * np.pi * 5 * t)
    phase = 2 * np.pi * np.cumsum(inst) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return (amp * x / np.abs(x).max()).astype(np.float32)


EXAMPLE_PHOTO = REPO / "mmfer" / "examples" / "astronaut.jpg"


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, pts_ms: list[int] | None = None,
                audio: np.ndarray | None = None, audio_sr: int = 44100) -> None:
    """BGR frames -> MPEG-4 video; ``pts_ms`` gives each frame's own timestamp (variable frame rate);
    ``audio`` (mono float) adds an AAC track."""
    from fractions import Fraction

    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        a = None
        if audio is not None:  # every stream must exist before the first packet is muxed
            a = c.add_stream("aac", rate=audio_sr)
            a.layout = "mono"
        if pts_ms is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            if pts_ms is not None:
                vf.pts, vf.time_base = pts_ms[i], Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            x = np.asarray(audio, np.float32)
            for i in range(0, len(x), 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, i : i + 1024]), format="fltp",
                                                layout="mono")
                fr.sample_rate = audio_sr
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)


def set_display_rotation(path: Path, clockwise: int) -> None:
    """Write a display matrix into the MP4's track header (tkhd), as phones do for portrait video:
    the stored frames stay as they are and players turn them ``clockwise`` degrees (90/180/270)."""
    import struct

    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    assert i > 0, f"{path}: no tkhd box"
    # version/flags, times, track id, reserved, duration, reserved, layer, group, volume, reserved
    off = i + 8 + (32 if data[i + 4] == 1 else 20) + 16
    cos, sin = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[clockwise]
    one = 1 << 16
    data[off : off + 36] = struct.pack(">9i", cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


def face_frames(n: int, blank: set[int] = frozenset(), two: bool = False) -> list[np.ndarray]:
    import cv2

    face = cv2.resize(cv2.imread(str(EXAMPLE_PHOTO)), (320, 320))
    small = cv2.resize(face, (200, 200))
    out = []
    for i in range(n):
        img = np.full((480, 640, 3), 90, np.uint8)
        if i not in blank:
            x = 40 + 4 * i
            img[80:400, x : x + 320] = face
            if two:
                img[140:340, 420:620] = small
        out.append(img)
    return out


TINY_CLIP = "mmfer-tiny-clip"


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a ClipSceneEncoder
    """The real open_clip code path on a tiny randomly initialised config (no downloads)."""
    import json

    import open_clip
    import torch

    from mmfer.scene.clip_encoder import ClipSceneEncoder

    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8,
                                           "head_width": 32},
           "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    path = tmp_path_factory.mktemp("clipcfg") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    torch.manual_seed(0)
    return ClipSceneEncoder(TINY_CLIP, pretrained=None, device="cpu", allow_random=True)


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tiny_clip, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    """The tiny CLIP's weights as a local checkpoint file, the way a user passes downloaded weights."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("clipckpt") / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(path))
    return path
