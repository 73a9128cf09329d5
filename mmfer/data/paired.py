"""Paired multimodal datasets (the same moment seen as face, scene and/or voice), one item type for all.

Every loader gives a :class:`PairedSet`: :class:`PairedItem` rows with a canonical label (see
:mod:`mmfer.emotions`), the subject (the person, for subject-disjoint evaluation), and what was
left out and why (``skipped``: reason -> count). Layouts, as the authors distribute them:

- ``ravdess``: RAVDESS audio-visual speech, ``Actor_XX/01-01-EE-II-SS-RR-AA.mp4``. Only modality 01
  (audio-video) pairs a face with its voice: video-only (02), audio-only (03) and song files are
  counted in ``skipped``. RAVDESS ``calm`` (02) has no canonical class and is folded into
  **neutral** explicitly (:data:`mmfer.emotions.FOLD_UNMAPPED`). Subject = actor.
- ``crema-d``: CREMA-D ``VideoFlash/*.flv`` (or a flat folder of them) named
  ``<actor>_<sentence>_<EMO>_<intensity>`` with EMO in ANG DIS FEA HAP NEU SAD (no surprise).
  Subject = actor; ``sentence`` = the sentence code (the same sentences are said in every emotion).
  Audio-only files (``.mp3``/``.wav``) in the folder are counted in ``skipped``.
- ``meld``: ``{train,dev,test}_sent_emo.csv`` + ``train_splits/``, ``dev_splits_complete/``,
  ``output_repeated_splits_test/`` holding ``dia{Dialogue_ID}_utt{Utterance_ID}.mp4``. Subject =
  Speaker, ``split`` = the official split, ``sentence`` = the utterance text. Rows whose video is
  missing are counted in ``skipped`` (MELD's own archives lack a few).
- ``caer-s``: CAER-S images (:func:`mmfer.data.context.load_caer_s`). CAER-S has **no subject ids**:
  its official train/test split is the only subject-safe split (``cv: official``).
- ``emotic``: EMOTIC persons (:func:`mmfer.data.context.load_emotic`), multi-label: only persons whose
  annotations map to exactly one canonical class are kept. No subject ids either (``cv: official``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from mmfer.data.context import load_caer_s, load_emotic
from mmfer.data.fer2013 import DatasetError
from mmfer.data.ravdess import RAVDESS_SUFFIXES, parse_ravdess_name
from mmfer.emotions import EMOTIONS, label_set, to_canonical
from mmfer.paths import data_root

log = logging.getLogger(__name__)

DATASETS = ("ravdess", "crema-d", "meld", "caer-s", "emotic")
_ALIASES = {"ravdess-av": "ravdess", "crema_d": "crema-d", "cremad": "crema-d", "caer": "caer-s",
            "caer_s": "caer-s"}
CV_METHODS = ("group-kfold", "loso", "official")
TRAIN_SPLITS = ("train", "dev", "val")  # what ``official`` fits on; it scores on ``test``

CREMA_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
CREMA_INTENSITIES = ("LO", "MD", "HI", "XX")
CREMA_VIDEO = (".flv", ".mp4")
AUDIO_ONLY = (".mp3", ".wav", ".flac")

MELD_SPLITS = {"train": ("train_sent_emo.csv", "train_splits"),
               "dev": ("dev_sent_emo.csv", "dev_splits_complete"),
               "test": ("test_sent_emo.csv", "output_repeated_splits_test")}
MELD_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


@dataclasses.dataclass(frozen=True)
class PairedItem:
    """One labelled moment. ``label`` is canonical; ``subject`` is None where the dataset names no person."""

    path: Path
    label: str
    subject: str | None
    dataset: str
    sentence: str | None = None
    split: str | None = None
    body_box: tuple[int, int, int, int] | None = None  # x, y, w, h of the annotated person (EMOTIC)

    def __post_init__(self) -> None:
        if self.label not in EMOTIONS:
            raise DatasetError(f"{self.path}: label {self.label!r} is not in the emotion vocabulary "
                               f"{list(EMOTIONS)}")


@dataclasses.dataclass
class PairedSet:
    """A loaded dataset: its items, and what was left out (reason -> count) so nothing vanishes silently."""

    name: str
    root: Path
    items: list[PairedItem]
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[PairedItem]:
        return iter(self.items)

    def __getitem__(self, i: int) -> PairedItem:
        return self.items[i]

    @property
    def subjects(self) -> list[str]:
        return sorted({i.subject for i in self.items if i.subject is not None})

    def summary(self) -> dict[str, object]:
        return {"dataset": self.name, "root": str(self.root), "items": len(self.items),
                "subjects": len(self.subjects), "labels": dict(sorted(Counter(i.label for i in self.items).items())),
                "skipped": dict(self.skipped), "notes": list(self.notes)}


def _base(root: str | Path | None, names: Sequence[str]) -> Path:
    """``root`` (default: the data root), or its sub-folder named like the dataset when there is one."""
    base = data_root(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: data folder not found (set --data-root or $MMFER_DATA_ROOT)")
    return next((base / n for n in names if (base / n).is_dir()), base)


# -- RAVDESS ---------------------------------------------------------------------------------------

def load_ravdess_av(root: str | Path | None = None) -> PairedSet:
    """RAVDESS audio-video speech clips (modality 01); calm is folded into neutral (see the module doc)."""
    base = _base(root, ("ravdess", "RAVDESS"))
    items, skipped, calm = [], Counter(), 0
    for f in sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in RAVDESS_SUFFIXES):
        try:
            r = parse_ravdess_name(f)
        except ValueError as exc:
            raise DatasetError(f"{f}: {exc}") from None
        if r.modality != "audio-video":
            skipped[f"{r.modality} files (not paired audio-video)"] += 1
            continue
        if r.vocal_channel != "speech":
            skipped["song files (speech only)"] += 1
            continue
        label = to_canonical(r.emotion, "ravdess", fold=True)  # calm -> neutral, explicitly
        assert label is not None
        calm += r.emotion == "calm"
        items.append(PairedItem(f, label, f"actor{r.actor:02d}", "ravdess", sentence=f"statement{r.statement:02d}"))
    if not items:
        found = f" (found {dict(skipped)})" if skipped else ""
        raise DatasetError(f"{base}: no RAVDESS audio-video speech files (Actor_XX/01-01-EE-II-SS-RR-AA.mp4)"
                           f"{found}")
    notes = [f"{calm} RAVDESS calm clips are labelled neutral (calm has no canonical class)"] if calm else []
    return PairedSet("ravdess", base, items, dict(skipped), notes)


# -- CREMA-D ---------------------------------------------------------------------------------------

def parse_crema_name(path: str | Path) -> tuple[str, str, str, str]:
    """``1001_DFA_ANG_XX`` -> (actor, sentence, canonical label, intensity); DatasetError naming the file."""
    p = Path(path)
    m = CREMA_RE.match(p.stem)
    if not m:
        raise DatasetError(f"{p}: not a CREMA-D name (expected <actor>_<sentence>_<EMO>_<intensity> like "
                           "1001_DFA_ANG_XX)")
    actor, sentence, emo, intensity = m.groups()
    if emo not in label_set("crema_d"):
        raise DatasetError(f"{p}: emotion code {emo} is not a CREMA-D code {list(label_set('crema_d'))}")
    if intensity not in CREMA_INTENSITIES:
        raise DatasetError(f"{p}: intensity {intensity} is not one of {list(CREMA_INTENSITIES)}")
    label = to_canonical(emo, "crema_d")
    assert label is not None
    return actor, sentence, label, intensity


def load_crema_d(root: str | Path | None = None) -> PairedSet:
    """CREMA-D talking-face videos: ``VideoFlash/*.flv`` under ``root`` (or ``root/CREMA-D``), or a flat folder."""
    base = _base(root, ("CREMA-D", "crema-d", "crema_d"))
    if (base / "VideoFlash").is_dir():
        base = base / "VideoFlash"
    items, skipped = [], Counter()
    for f in sorted(p for p in base.iterdir() if p.is_file()):
        suffix = f.suffix.lower()
        if suffix in AUDIO_ONLY:
            skipped["audio-only files (not paired audio-video)"] += 1
            continue
        if suffix not in CREMA_VIDEO:
            continue
        actor, sentence, label, _ = parse_crema_name(f)
        items.append(PairedItem(f, label, actor, "crema-d", sentence=sentence))
    if not items:
        raise DatasetError(f"{base}: no CREMA-D videos (VideoFlash/<actor>_<sentence>_<EMO>_<intensity>.flv)")
    return PairedSet("crema-d", base, items, dict(skipped))


# -- MELD ------------------------------------------------------------------------------------------

def _find_dir(base: Path, name: str) -> Path | None:
    """``base/name`` or ``base/*/name`` (the MELD archives extract one level down or flat)."""
    if (base / name).is_dir():
        return base / name
    return next((d / name for d in sorted(base.iterdir()) if d.is_dir() and (d / name).is_dir()), None)


def load_meld(root: str | Path | None = None, splits: Sequence[str] | None = None) -> PairedSet:
    """MELD utterance videos of the official ``splits`` (default: every split whose csv is there)."""
    import pandas as pd  # lazy: only MELD needs it here

    base = _base(root, ("MELD.Raw", "MELD", "meld"))
    wanted = list(splits) if splits else [s for s, (csv, _) in MELD_SPLITS.items() if (base / csv).is_file()]
    if not wanted:
        raise DatasetError(f"{base}: no MELD csv (expected {', '.join(c for c, _ in MELD_SPLITS.values())})")
    items, skipped, notes = [], Counter(), []
    for split in wanted:
        if split not in MELD_SPLITS:
            raise DatasetError(f"MELD split {split!r} is not one of {list(MELD_SPLITS)}")
        csv_name, folder = MELD_SPLITS[split]
        csv = base / csv_name
        if not csv.is_file():
            raise DatasetError(f"{csv}: MELD {split} annotations not found")
        videos = _find_dir(base, folder)
        if videos is None:
            raise DatasetError(f"{base}: MELD {split} videos not found (expected a {folder}/ folder)")
        df = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding_errors="replace")
        missing = [c for c in MELD_COLUMNS if c not in df.columns]
        if missing:
            raise DatasetError(f"{csv}: missing column(s) {missing} (have {list(df.columns)})")
        lost = []
        for i, row in enumerate(df.itertuples(index=False)):
            emotion, speaker = str(row.Emotion).strip().lower(), str(row.Speaker).strip()
            if emotion not in label_set("meld"):
                raise DatasetError(f"{csv}: row {i + 2}: emotion {row.Emotion!r} is not a MELD label "
                                   f"{list(label_set('meld'))}")
            if not speaker:
                raise DatasetError(f"{csv}: row {i + 2}: empty Speaker (needed as the subject)")
            video = videos / f"dia{int(row.Dialogue_ID)}_utt{int(row.Utterance_ID)}.mp4"
            if not video.is_file():
                lost.append(video.name)
                continue
            label = to_canonical(emotion, "meld")
            assert label is not None
            items.append(PairedItem(video, label, speaker, "meld", sentence=str(row.Utterance), split=split))
        if lost:
            skipped[f"meld {split}: video missing"] = len(lost)
            notes.append(f"MELD {split}: {len(lost)} of {len(df)} rows have no video in {videos} "
                         f"(e.g. {', '.join(lost[:3])})")
            log.warning(notes[-1])
    if not items:
        raise DatasetError(f"{base}: no MELD rows with a video")
    return PairedSet("meld", base, items, dict(skipped), notes)


# -- CAER-S and EMOTIC (face + scene, images) --------------------------------------------------------

NO_SUBJECTS = "{name} has no subject ids: its official split is the only subject-safe split (cv: official)"


def load_caer_s_paired(root: str | Path | None = None) -> PairedSet:
    """CAER-S train and test images (whichever split folders exist), ``subject`` None (see the module doc)."""
    base = data_root(root)
    caer = base / "CAER-S" if (base / "CAER-S").is_dir() else base
    splits = [s for s in ("train", "test") if (caer / s).is_dir()] or ["train"]  # load_caer_s names the miss
    items = [PairedItem(s.image, s.labels[0], None, "caer-s", split=split)
             for split in splits for s in load_caer_s(split, root)]
    return PairedSet("caer-s", caer, items, notes=[NO_SUBJECTS.format(name="CAER-S")])


def load_emotic_paired(root: str | Path | None = None, splits: Sequence[str] = ("train", "val", "test")) -> PairedSet:
    """EMOTIC persons with exactly one canonical label (of every split), ``subject`` None."""
    items, skipped = [], Counter()
    for split in splits:
        for s in load_emotic(split, root):
            if len(s.labels) != 1:
                skipped["no canonical label" if not s.labels else "several canonical labels"] += 1
                continue
            items.append(PairedItem(s.image, s.labels[0], None, "emotic", split=split, body_box=s.body_box))
    if not items:
        raise DatasetError(f"{data_root(root)}: no EMOTIC person has exactly one canonical label")
    return PairedSet("emotic", data_root(root), items, dict(skipped), [NO_SUBJECTS.format(name="EMOTIC")])


LOADERS: dict[str, Callable[[str | Path | None], PairedSet]] = {
    "ravdess": load_ravdess_av, "crema-d": load_crema_d, "meld": load_meld, "caer-s": load_caer_s_paired,
    "emotic": load_emotic_paired}


def dataset_name(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LOADERS:
        raise DatasetError(f"unknown paired dataset {name!r}; known: {', '.join(DATASETS)}")
    return key


def load_paired(name: str, root: str | Path | None = None) -> PairedSet:
    """The paired dataset ``name`` (ravdess, crema-d, meld, caer-s, emotic) under ``root`` (default: the data root)."""
    return LOADERS[dataset_name(name)](root)


# -- subject-disjoint folds ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Fold:
    train: np.ndarray  # item indices the head is fitted on
    test: np.ndarray  # item indices it is scored on
    test_subjects: tuple[str, ...]


def subject_folds(items: Sequence[PairedItem], method: str = "group-kfold", folds: int = 5) -> list[Fold]:
    """Outer folds in which no subject is both fitted and scored.

    ``group-kfold`` (sklearn GroupKFold over subjects, ``folds`` folds), ``loso`` (LeaveOneGroupOut: one
    fold per subject) or ``official`` (fit on train/dev/val, score on test; the only choice for datasets
    without subject ids, and refused when a subject is in both).
    """
    if not items:
        raise DatasetError("no items to split")
    return group_folds([i.subject for i in items], [i.split for i in items], items[0].dataset, method, folds)


def group_folds(subjects: Sequence[str | None], splits: Sequence[str | None], dataset: str = "dataset",
                method: str = "group-kfold", folds: int = 5) -> list[Fold]:
    """:func:`subject_folds` on bare subject and split lists (e.g. the rows of an embedding table)."""
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    if method not in CV_METHODS:
        raise DatasetError(f"unknown cv method {method!r}; expected one of {list(CV_METHODS)} (or none)")
    if not len(subjects):
        raise DatasetError(f"{dataset}: no items to split")
    if method == "official":
        return [_official_fold(subjects, splits, dataset)]
    if any(s is None for s in subjects):
        raise DatasetError(f"{dataset}: items have no subject ids, so the official split is the only subject-safe "
                           f"split (cv: official); {method} needs a subject for every item")
    groups = np.array(subjects)
    n = len(set(subjects))
    if n < 2:
        raise DatasetError(f"{dataset}: one subject only ({subjects[0]}): subject-disjoint cross-validation needs "
                           "at least 2 subjects (use cv: none to fit without validation)")
    if method == "group-kfold" and not 2 <= folds <= n:
        raise DatasetError(f"{dataset}: {folds} folds asked for, but there are {n} subjects (use 2..{n}, or loso)")
    splitter = LeaveOneGroupOut() if method == "loso" else GroupKFold(n_splits=folds)
    return [Fold(train, test, tuple(sorted(set(groups[test]))))
            for train, test in splitter.split(np.zeros(len(groups)), groups=groups)]


def _official_fold(subjects: Sequence[str | None], splits: Sequence[str | None], dataset: str) -> Fold:
    names = np.array([s or "" for s in splits])
    train, test = np.flatnonzero(np.isin(names, TRAIN_SPLITS)), np.flatnonzero(names == "test")
    if not len(train) or not len(test):
        raise DatasetError(f"{dataset}: cv official needs items of a train (or dev/val) split and of the test "
                           f"split; have {sorted(set(names))}")
    fit_subjects = {subjects[i] for i in train} - {None}
    test_subjects = {subjects[i] for i in test} - {None}
    shared = fit_subjects & test_subjects
    if shared:
        raise DatasetError(f"{dataset}: the official split is not subject-disjoint ({len(shared)} subjects in both, "
                           f"e.g. {sorted(shared)[:3]}): use cv group-kfold or loso")
    return Fold(train, test, tuple(sorted(test_subjects)))
