"""Shared fixtures: where the real datasets are, and a private cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMFER_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
FER_CSV = SHARED_DATA / "fer2013" / "fer2013.csv.xz"
YUNET_640 = SHARED / "models" / "yunet" / "yunet_n_640_640.onnx"

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
