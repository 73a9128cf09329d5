"""Labelled video clips: the layouts a user can fill, and the CK+ clips shipped with this project's data.

- ``table``: a folder of videos plus ``labels.csv`` or ``labels.tsv`` with columns ``file``,
  ``label`` and optionally ``subject`` (needed for subject-disjoint evaluation).
- ``folder``: ``<root>/<emotion>/<video>``.
- ``ckplus``: ``<root>/ckplus_videos/labels.tsv`` + ``<label>_<subject>_<sequence>.mp4``.
- ``ckplus-sequences``: the original CK+ frame folders and Emotion/ label files.
- ``ravdess``: RAVDESS speech videos by their official names (:func:`load_ravdess_videos`).

Labels go through the vocabulary (``anger`` -> angry, ``happiness`` -> happy).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from mmfer.data.fer2013 import DatasetError
from mmfer.data.ravdess import find_ravdess
from mmfer.emotions import normalize_name, to_canonical
from mmfer.paths import data_root

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclasses.dataclass(frozen=True)
class Clip:
    path: Path
    label: str  # canonical
    subject: str | None = None


def _label(value: str, where: str) -> str:
    try:
        return normalize_name(str(value))
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from None


def load_clip_table(root: str | Path) -> list[Clip]:
    base = Path(root)
    table = next((base / n for n in ("labels.csv", "labels.tsv") if (base / n).is_file()), None)
    if table is None:
        raise DatasetError(f"{base}: no labels.csv or labels.tsv")
    df = pd.read_csv(table, sep="\t" if table.suffix == ".tsv" else ",", dtype=str)
    missing = {"file", "label"} - set(df.columns)
    if missing:
        raise DatasetError(f"{table}: missing column(s) {sorted(missing)} (have {list(df.columns)})")
    clips = []
    for i, row in df.iterrows():
        path = base / row["file"]
        if not path.is_file():
            raise DatasetError(f"{table}: row {i + 2}: {row['file']} not found")
        subject = row.get("subject") if "subject" in df.columns and isinstance(row.get("subject"), str) else None
        clips.append(Clip(path, _label(row["label"], f"{table}: row {i + 2}"), subject))
    return clips


def load_clip_folders(root: str | Path) -> list[Clip]:
    base = Path(root)
    clips = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        label = _label(d.name, str(d))
        clips += [Clip(f, label) for f in sorted(d.iterdir()) if f.suffix.lower() in VIDEO_SUFFIXES]
    if not clips:
        raise DatasetError(f"{base}: no videos in <emotion>/ sub-folders")
    return clips


def load_ckplus_videos(root: str | Path | None = None) -> list[Clip]:
    base = data_root(root)
    base = base / "ckplus_videos" if (base / "ckplus_videos").is_dir() else base
    if not (base / "labels.tsv").is_file():
        raise DatasetError(f"CK+ clips not found: {base / 'labels.tsv'} is missing (see data/README.md)")
    clips = load_clip_table(base)
    out = []
    for c in clips:
        parts = c.path.stem.split("_")
        if len(parts) < 3:
            raise DatasetError(f"{c.path.name}: expected <label>_<subject>_<sequence>")
        out.append(Clip(c.path, c.label, parts[-2]))
    return out


def load_ravdess_videos(root: str | Path | None = None, modality: str = "audio-video") -> list[Clip]:
    """RAVDESS speech videos (``01-01-...mp4`` or video-only ``02-01-...mp4``), subject = actor.

    The 7-class temporal model has no ``calm``: those clips are left out (RAVDESS calm has no
    canonical counterpart; see mmfer.emotions).
    """
    clips = []
    for item in find_ravdess(root, channel="speech", modality=modality):
        label = to_canonical(item.emotion, "ravdess")
        if label is not None:
            clips.append(Clip(item.path, label, f"actor{item.actor:02d}"))
    return clips


CKPLUS_CODES = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


def load_ckplus_sequences(root: str | Path | None = None) -> list[Clip]:
    """The original CK+ release: ``cohn-kanade-images/S005/001/*.png`` frame folders and
    ``Emotion/S005/001/S005_001_<frame>_emotion.txt`` (one code 0-7). Sequences without an
    emotion file are unlabelled and left out, and so is contempt (no canonical counterpart)."""
    base = data_root(root)
    for cand in (base, base / "CK+", base / "ckplus"):
        if (cand / "cohn-kanade-images").is_dir() and (cand / "Emotion").is_dir():
            base = cand
            break
    else:
        raise DatasetError(f"CK+ not found under {base} (expected cohn-kanade-images/ and Emotion/)")
    clips = []
    for label_file in sorted((base / "Emotion").glob("S*/*/*_emotion.txt")):
        subject, seq = label_file.parent.parent.name, label_file.parent.name
        try:
            code = int(float(label_file.read_text().split()[0]))
            name = CKPLUS_CODES[code]
        except (ValueError, IndexError):
            raise DatasetError(f"{label_file}: not a CK+ emotion code (0-7)") from None
        frames = base / "cohn-kanade-images" / subject / seq
        label = to_canonical(name, "ckplus")
        if label is not None and frames.is_dir():
            clips.append(Clip(frames, label, subject))
    if not clips:
        raise DatasetError(f"{base}: no labelled CK+ sequences")
    return clips


def load_clips(dataset: str, root: str | Path | None) -> list[Clip]:
    if dataset == "ckplus":
        return load_ckplus_videos(root)
    if dataset == "ravdess":
        return load_ravdess_videos(root)
    if dataset == "ckplus-sequences":
        return load_ckplus_sequences(root)
    if root is None:
        raise DatasetError(f"data.dataset={dataset} needs data.root")
    if dataset == "table":
        return load_clip_table(root)
    if dataset == "folder":
        return load_clip_folders(root)
    raise DatasetError(f"unknown video data.dataset {dataset!r}; expected ckplus, ckplus-sequences, ravdess, "
                       "table or folder")


def subject_folds(clips: list[Clip]) -> list[list[str]]:
    """Leave-one-subject-out: one test fold per subject (every clip of a subject in the same fold)."""
    subjects = sorted({c.subject for c in clips if c.subject is not None})
    if len(subjects) < 2 or any(c.subject is None for c in clips):
        raise DatasetError("subject-disjoint evaluation needs a subject for every clip and at least 2 subjects")
    return [[s] for s in subjects]
