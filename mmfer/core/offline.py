"""One switch for every download mmfer may start, and the hub endpoint those downloads use.

Downloads (CLIP weights for the scene branch, transformers checkpoints, the YuNet face detector)
happen on first use unless offline mode is on: ``--offline`` on the command line (which sets
``MMFER_OFFLINE=1``), ``EmotionPipeline(offline=True)``, or ``MMFER_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``
in the environment. Offline, nothing opens a network connection; whatever is not in a local cache
is reported as unavailable.
"""

from __future__ import annotations

import os

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
OFFLINE_HOW = "--offline / MMFER_OFFLINE=1"

_TRUE = ("1", "true", "yes", "on")


def offline_mode() -> bool:
    """True when the environment forbids downloads: ``MMFER_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true/yes/on.

    Read on every call (not at import), so a command-line flag set after import still counts."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("MMFER_OFFLINE", "HF_HUB_OFFLINE"))


def hub_endpoint() -> str:
    """The Hugging Face hub to download from: ``$MMFER_HF_ENDPOINT``, else ``$HF_ENDPOINT``, else the public hub.

    Passed explicitly (``endpoint=``) to huggingface_hub, which reads ``HF_ENDPOINT`` only once, at import."""
    for key in ("MMFER_HF_ENDPOINT", "HF_ENDPOINT"):
        value = os.environ.get(key, "").strip()
        if value:
            return value.rstrip("/")
    return DEFAULT_HF_ENDPOINT
