"""FER-2013 in its three published layouts: Kaggle CSV, image folders, and FER+ votes.

Decoding 35,887 rows of space-separated pixels takes ~15 s, so the decoded array is cached
once as ``.npy`` files (memory-mapped on later loads) in :func:`mmfer.paths.cache_dir`,
keyed by the CSV's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmfer.emotions import EMOTIONS, LABEL_SETS, index_map, normalize_name
from mmfer.paths import cache_dir, data_root

SPLITS = ("Training", "PublicTest", "PrivateTest")
CSV_NAMES = ("fer2013.csv", "fer2013.csv.gz", "fer2013.csv.xz", "fer2013.csv.bz2")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# Folder layout split names -> Kaggle split names
FOLDER_SPLITS = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


class DatasetError(RuntimeError):
    """The dataset is missing or malformed; the message names the file."""


@dataclass
class FaceArrays:
    """Decoded faces of one split: ``images`` uint8 (N, 48, 48), ``labels`` int64 canonical
    indices (N,), optional ``soft`` float32 (N, 7) label distributions, and ``source``
    row indices into the original file."""

    images: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    soft: np.ndarray | None = None
    data_hash: str = ""

    def __len__(self) -> int:
        return len(self.labels)


def find_csv(root: str | Path | None = None) -> Path:
    """Locate ``fer2013.csv[.gz|.xz]`` under the data root (``root/fer2013/`` or ``root/``)."""
    base = data_root(root)
    for folder in (base / "fer2013", base):
        for name in CSV_NAMES:
            if (folder / name).is_file():
                return folder / name
    raise DatasetError(
        f"no {CSV_NAMES[0]} (or .gz/.xz) under {base}/fer2013 or {base}; "
        "download FER-2013 (see data/README.md) and set MMFER_DATA_ROOT or --data-root"
    )


def file_digest(path: Path) -> str:
    """sha256 of a file, cached next to the decoded arrays (hashing 75 MB costs ~0.3 s)."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    memo = cache_dir("fer2013") / f"{key}.sha256"
    if memo.is_file():
        return memo.read_text().strip()
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    memo.write_text(digest)
    return digest


def _decode_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype={"emotion": "int64", "pixels": "string", "Usage": "string"})
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{path}: cannot read as FER-2013 CSV ({exc})") from None
    missing = {"emotion", "pixels", "Usage"} - set(df.columns)
    if missing:
        raise DatasetError(f"{path}: missing column(s) {sorted(missing)}; expected emotion,pixels,Usage")
    flat = " ".join(df["pixels"].tolist())
    pixels = np.array(flat.split(" "), dtype=np.uint8) if flat else np.zeros(0, np.uint8)
    if pixels.size != len(df) * 48 * 48:
        raise DatasetError(f"{path}: pixel strings do not all hold 2304 values (48x48)")
    images = pixels.reshape(len(df), 48, 48)
    labels = df["emotion"].to_numpy(np.int64)
    if labels.min() < 0 or labels.max() > 6:
        raise DatasetError(f"{path}: emotion values outside 0..6")
    usage = df["Usage"].to_numpy(str)
    bad = set(np.unique(usage)) - set(SPLITS)
    if bad:
        raise DatasetError(f"{path}: unknown Usage value(s) {sorted(bad)}")
    split_codes = np.array([SPLITS.index(u) for u in usage], dtype=np.int8)
    return images, labels, split_codes


def load_csv_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All rows of a FER-2013 CSV as (images, labels, split codes), via the .npy cache."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = cache_dir("fer2013") / key
    files = [folder / n for n in ("images.npy", "labels.npy", "splits.npy")]
    if all(f.is_file() for f in files):
        try:
            return (np.load(files[0], mmap_mode="r"), np.load(files[1]), np.load(files[2]))
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    images, labels, splits = _decode_csv(path)
    folder.mkdir(parents=True, exist_ok=True)
    for f, arr in zip(files, (images, labels, splits), strict=True):
        tmp = f.with_suffix(".tmp.npy")
        np.save(tmp, arr)
        tmp.replace(f)  # atomic: a killed process never leaves a half-written cache
    (folder / "source.json").write_text(json.dumps({"csv": str(path.resolve()), "rows": len(labels)}))
    return np.load(files[0], mmap_mode="r"), labels, splits


def load_ferplus_votes(path: Path, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """FER+ votes as canonical (N, 7) float counts and a keep mask.

    Rows FER+ dropped (empty ``Image name``) or whose votes are mostly ``unknown``/``NF``
    are not kept; ``contempt`` has no canonical class and its votes are discarded.
    """
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{path}: cannot read FER+ votes ({exc})") from None
    cols = list(LABEL_SETS["ferplus"])
    missing = set(cols + ["Image name", "unknown", "NF"]) - set(df.columns)
    if missing:
        raise DatasetError(f"{path}: missing FER+ column(s) {sorted(missing)}")
    if len(df) != n_rows:
        raise DatasetError(f"{path}: has {len(df)} rows but fer2013.csv has {n_rows}; they must align")
    votes = df[cols].to_numpy(np.float32)
    mapping = index_map("ferplus")
    canon = np.zeros((len(df), len(EMOTIONS)), np.float32)
    for src, dst in enumerate(mapping):
        if dst >= 0:
            canon[:, dst] += votes[:, src]
    named = df["Image name"].notna().to_numpy() & (df["Image name"].astype(str).str.strip() != "").to_numpy()
    other = df[["unknown", "NF"]].to_numpy(np.float32).sum(1) + votes[:, cols.index("contempt")]
    keep = named & (canon.sum(1) > other)
    return canon, keep


def load_fer2013(
    split: str,
    root: str | Path | None = None,
    labels: str = "fer2013",
) -> FaceArrays:
    """One official split of FER-2013.

    Args:
        split: Training, PublicTest or PrivateTest (train/val/test also accepted).
        root: data root; default ``$MMFER_DATA_ROOT`` then ``./data``.
        labels: ``fer2013`` (original labels), ``ferplus`` (FER+ majority vote, dropped rows
            removed) or ``ferplus-soft`` (FER+ vote distributions in ``soft``).
    """
    split = FOLDER_SPLITS.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    base = data_root(root)
    folder_root = _find_folder_layout(base)
    if folder_root is not None and labels == "fer2013":
        return load_image_folder(folder_root, split)
    path = find_csv(root)
    images, y, splits = load_csv_arrays(path)
    idx = np.flatnonzero(splits == SPLITS.index(split))
    soft = None
    if labels in ("ferplus", "ferplus-soft"):
        votes_path = path.parent / "fer2013new.csv"
        if not votes_path.is_file():
            raise DatasetError(f"{votes_path}: FER+ votes not found (needed for labels={labels!r})")
        votes, keep = load_ferplus_votes(votes_path, len(y))
        idx = idx[keep[idx]]
        dist = votes[idx] / votes[idx].sum(1, keepdims=True)
        y_sel = dist.argmax(1).astype(np.int64)
        if labels == "ferplus-soft":
            soft = dist.astype(np.float32)
    elif labels == "fer2013":
        y_sel = y[idx]
    else:
        raise ValueError(f"unknown labels {labels!r}; expected fer2013, ferplus or ferplus-soft")
    return FaceArrays(
        images=np.asarray(images[idx]), labels=y_sel, source=idx, soft=soft, data_hash=file_digest(path)
    )


def _find_folder_layout(base: Path) -> Path | None:
    for cand in (base / "fer2013", base):
        if (cand / "train").is_dir() and (cand / "test").is_dir():
            return cand
    return None


def load_image_folder(root: str | Path, split: str) -> FaceArrays:
    """The image-folder layout (``train/<class>/*.jpg``, ``test/<class>/*.jpg``).

    ``train`` is Training; ``test`` is PrivateTest; PublicTest is ``val/`` when present,
    otherwise a fixed, stratified 10% of ``train`` held out (the Training split then
    excludes it), so model selection never sees the test images.
    """
    import cv2

    root = Path(root)
    split = FOLDER_SPLITS.get(split, split)
    sub = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}[split]
    carve = split in ("Training", "PublicTest") and not (root / "val").is_dir()
    folder = root / ("train" if carve else sub)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: split folder not found")
    paths, labels = [], []
    for cls_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            label = EMOTIONS.index(normalize_name(cls_dir.name))
        except ValueError as exc:
            raise DatasetError(f"{cls_dir}: {exc}") from None
        files = sorted(p for p in cls_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise DatasetError(f"{folder}: no images in <class>/ subfolders")
    labels_arr = np.array(labels, np.int64)
    idx = np.arange(len(paths))
    if carve:
        rng = np.random.default_rng(0)
        held = np.zeros(len(paths), bool)
        for c in np.unique(labels_arr):
            members = idx[labels_arr == c]
            held[rng.choice(members, size=max(1, len(members) // 10), replace=False)] = True
        idx = idx[held] if split == "PublicTest" else idx[~held]
    images = np.zeros((len(idx), 48, 48), np.uint8)
    for j, i in enumerate(idx):
        img = cv2.imread(str(paths[i]), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DatasetError(f"{paths[i]}: not a readable image")
        images[j] = img if img.shape == (48, 48) else cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
    digest = hashlib.sha256("\n".join(str(paths[i].relative_to(root)) for i in idx).encode()).hexdigest()
    return FaceArrays(images=images, labels=labels_arr[idx], source=idx, data_hash=digest)
