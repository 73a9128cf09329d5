"""Where mmfer finds data, caches and shipped weights."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"
#: The speech model used when none is named (a folder of WEIGHTS_DIR).
DEFAULT_AUDIO_MODEL = "audio_crnn"


def data_root(root: str | Path | None = None) -> Path:
    """The dataset root: ``root`` if given, else ``$MMFER_DATA_ROOT``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MMFER_DATA_ROOT")
    return Path(env).expanduser() if env else Path("data")


def cache_dir(*parts: str) -> Path:
    """A writable cache folder: ``$MMFER_CACHE``, else ``$XDG_CACHE_HOME/mmfer``, else ``~/.cache/mmfer``."""
    env = os.environ.get("MMFER_CACHE")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "mmfer"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
