"""RAVDESS (Livingstone & Russo, 2018) and folder-per-label audio datasets.

RAVDESS file names are seven two-digit fields, ``MM-VV-EE-II-SS-RR-AA``: modality (01 audio-video,
02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion (01 neutral, 02 calm,
03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised), intensity (01 normal,
02 strong), statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the door"),
repetition (01, 02) and actor (01-24; odd male, even female).

Labels go through :mod:`mmfer.emotions`: fearful -> fear, surprised -> surprise, and ``calm`` stays
its own class for the audio branch (the RAVDESS benchmark is 8-way); it folds into neutral when
an audio prediction is compared or fused with 7-class models.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmfer.audio.io import is_audio_path
from mmfer.data.fer2013 import DatasetError
from mmfer.emotions import AUDIO_EMOTIONS, EXTRA_CLASSES, audio_label, label_set, normalize_name
from mmfer.paths import data_root

NAME_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
CHANNELS = {1: "speech", 2: "song"}
INTENSITIES = {1: "normal", 2: "strong"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
RAVDESS_SUFFIXES = (".wav", ".flac", ".mp4")


@dataclasses.dataclass(frozen=True)
class RavdessFile:
    """One RAVDESS recording, with every field of its official file name."""

    path: Path
    modality: str
    vocal_channel: str
    emotion: str  # the RAVDESS name (e.g. fearful)
    intensity: str
    statement: int
    repetition: int
    actor: int

    @property
    def gender(self) -> str:
        return "male" if self.actor % 2 == 1 else "female"

    @property
    def label(self) -> str:
        """The audio branch's class name (canonical, or calm)."""
        return audio_label(self.emotion, "ravdess")


def parse_ravdess_name(path: str | Path) -> RavdessFile:
    """Parse an official RAVDESS file name; raises ValueError naming the field that is wrong."""
    p = Path(path)
    m = NAME_RE.match(p.stem)
    if not m:
        raise ValueError(f"{p.name}: not a RAVDESS name (expected seven 2-digit fields like 03-01-05-02-01-01-12)")
    mod, chan, emo, inten, stmt, rep, actor = (int(g) for g in m.groups())
    checks = [("modality", mod, MODALITIES), ("vocal channel", chan, CHANNELS), ("intensity", inten, INTENSITIES),
              ("statement", stmt, STATEMENTS)]
    for field, value, allowed in checks:
        if value not in allowed:
            raise ValueError(f"{p.name}: {field} code {value:02d} is not one of {sorted(allowed)}")
    if not 1 <= emo <= 8:
        raise ValueError(f"{p.name}: emotion code {emo:02d} is not in 01-08")
    if rep not in (1, 2):
        raise ValueError(f"{p.name}: repetition code {rep:02d} is not 01 or 02")
    if not 1 <= actor <= 24:
        raise ValueError(f"{p.name}: actor {actor:02d} is not in 01-24")
    return RavdessFile(p, MODALITIES[mod], CHANNELS[chan], label_set("ravdess")[emo - 1], INTENSITIES[inten],
                       stmt, rep, actor)


def find_ravdess(root: str | Path | None = None, channel: str | Sequence[str] = "speech",
                 modality: str = "audio-only") -> list[RavdessFile]:
    """Every RAVDESS file under ``root`` (``<root>/ravdess`` when it exists), sorted by name.

    Accepts the original 48 kHz WAV download and the 16 kHz FLAC copy; when both exist for a
    clip the WAV (original) is used. Files whose names do not parse are ignored.
    """
    base = data_root(root)
    if (base / "ravdess").is_dir():
        base = base / "ravdess"
    if not base.is_dir():
        raise DatasetError(f"RAVDESS not found: {base} is not a folder (set --data-root or $MMFER_DATA_ROOT; "
                           "see data/README.md)")
    channels = {channel} if isinstance(channel, str) else set(channel)
    by_stem: dict[str, RavdessFile] = {}
    for f in sorted(base.rglob("*")):
        if f.suffix.lower() not in RAVDESS_SUFFIXES or not NAME_RE.match(f.stem):
            continue
        try:
            item = parse_ravdess_name(f)
        except ValueError:
            continue
        if item.vocal_channel not in channels or item.modality != modality:
            continue
        if f.stem not in by_stem or f.suffix.lower() == ".wav":
            by_stem[f.stem] = item
    if not by_stem:
        raise DatasetError(f"no RAVDESS {modality} {'/'.join(sorted(channels))} files under {base} "
                           "(expected Actor_XX/03-01-EE-II-SS-RR-AA.wav or .flac)")
    return [by_stem[k] for k in sorted(by_stem)]


def actor_folds(actors: Sequence[int], k: int, seed: int = 0) -> list[list[int]]:
    """Split actors into ``k`` test folds: each actor in exactly one, both genders in every fold.

    Males and females are shuffled separately (seeded) and dealt round-robin, so folds are as
    balanced in size and gender as the actor list allows.
    """
    actors = sorted(set(actors))
    males = [a for a in actors if a % 2 == 1]
    females = [a for a in actors if a % 2 == 0]
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    if k > min(len(males), len(females)):
        raise ValueError(f"{k} folds need at least {k} male and {k} female actors; have {len(males)} and "
                         f"{len(females)}")
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for i, a in enumerate(rng.permutation(males)):
        folds[i % k].append(int(a))
    for i, a in enumerate(rng.permutation(females)):
        folds[k - 1 - i % k].append(int(a))  # the other way round, so fold sizes stay even
    return [sorted(f) for f in folds]


def normalize_audio_label(name: str) -> str:
    """A user's folder name -> an audio class (canonical names, synonyms, or an extra class like calm)."""
    key = name.strip().lower()
    return key if key in EXTRA_CLASSES else normalize_name(key)


def find_labelled_folder(root: str | Path) -> list[tuple[Path, str]]:
    """A user's recordings laid out as ``<root>/<emotion>/*.wav`` (any audio/video format).

    Folder names go through the vocabulary (``anger`` -> angry, ``calm`` stays calm). Raises
    DatasetError naming a folder whose name is not an emotion.
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: not a folder")
    items = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        try:
            label = normalize_audio_label(d.name)
        except ValueError:
            raise DatasetError(f"{d}: folder name is not an emotion mmfer knows "
                               f"(expected one of {list(AUDIO_EMOTIONS)})") from None
        items += [(f, label) for f in sorted(d.rglob("*")) if f.is_file() and is_audio_path(f)]
    if not items:
        raise DatasetError(f"{base}: no audio files in <emotion>/ sub-folders")
    return items
