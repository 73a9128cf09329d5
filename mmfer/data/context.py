"""Context (scene) emotion datasets: CAER-S and EMOTIC, in the layouts their authors distribute.

- **CAER-S** (Lee et al., 2019): ``<root>/CAER-S/{train,test}/<Class>/<image>.png`` with the 7
  classes Anger, Disgust, Fear, Happy, Neutral, Sad, Surprise (one label per image).
- **EMOTIC** (Kosti et al., 2019): images under ``<root>/emotic/<folder>/<filename>`` and
  ``<root>/Annotations/Annotations.mat`` (MATLAB structs ``train``, ``val``, ``test``; one entry
  per image, one ``person`` per annotated body with ``body_bbox`` [x1 y1 x2 y2] and 26 discrete
  categories, plus valence/arousal/dominance). EMOTIC is multi-label over its own 26
  categories; six of them have a canonical counterpart (Anger, Aversion -> disgust, Fear,
  Happiness, Sadness, Surprise) and the rest map to None (kept in ``categories``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.data.fer2013 import DatasetError
from mmfer.emotions import EMOTIONS, label_set, to_canonical
from mmfer.io.images import IMAGE_SUFFIXES
from mmfer.paths import data_root

CAER_CLASSES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
EMOTIC_CATEGORIES = label_set("emotic")


@dataclasses.dataclass(frozen=True)
class ContextSample:
    image: Path
    labels: tuple[str, ...]  # canonical emotions (empty when none of the annotations has a counterpart)
    body_box: tuple[int, int, int, int] | None = None  # x, y, w, h of the annotated person (EMOTIC)
    categories: tuple[str, ...] = ()  # the dataset's own labels
    vad: tuple[float, float, float] | None = None  # EMOTIC valence, arousal, dominance (1-10)


def _base(root: str | Path | None, name: str) -> Path:
    base = data_root(root)
    return base / name if (base / name).is_dir() else base


def load_caer_s(split: str = "train", root: str | Path | None = None) -> list[ContextSample]:
    """CAER-S images of ``split`` (train or test) with their single canonical label."""
    base = _base(root, "CAER-S") / split
    if not base.is_dir():
        raise DatasetError(f"CAER-S split not found: {base} (expected CAER-S/{split}/<Class>/*.png)")
    out = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        if d.name not in CAER_CLASSES:
            raise DatasetError(f"{d}: not a CAER-S class (expected one of {list(CAER_CLASSES)})")
        label = to_canonical(d.name.lower(), "caer")
        out += [ContextSample(f, (label,), categories=(d.name,)) for f in sorted(d.iterdir())
                if f.suffix.lower() in IMAGE_SUFFIXES]
    if not out:
        raise DatasetError(f"{base}: no images in <Class>/ folders")
    return out


def _as_list(x: Any) -> list[Any]:
    """loadmat(squeeze_me=True) turns 1-element arrays into scalars/structs: always give a list."""
    if isinstance(x, np.ndarray):
        return list(x.ravel())
    return [x]


def _strings(x: Any) -> list[str]:
    return [str(s) for s in _as_list(x) if str(s)]


def _person_categories(person: Any) -> list[str]:
    # train: one annotator (annotations_categories.categories); val/test: several, merged in combined_categories
    if hasattr(person, "combined_categories"):
        return _strings(person.combined_categories)
    cats: list[str] = []
    for ann in _as_list(person.annotations_categories):
        cats += [c for c in _strings(ann.categories) if c not in cats]
    return cats


def load_emotic(split: str = "train", root: str | Path | None = None) -> list[ContextSample]:
    """One sample per annotated person of EMOTIC ``split`` (train, val or test)."""
    from scipy.io import loadmat

    base = data_root(root)
    candidates = [base / "Annotations" / "Annotations.mat", base / "emotic" / "Annotations" / "Annotations.mat",
                  base / "EMOTIC" / "Annotations" / "Annotations.mat"]
    ann = next((c for c in candidates if c.is_file()), None)
    if ann is None:
        raise DatasetError(f"EMOTIC annotations not found under {base} (expected Annotations/Annotations.mat)")
    images = ann.parent.parent / "emotic" if (ann.parent.parent / "emotic").is_dir() else ann.parent.parent
    try:
        mat = loadmat(str(ann), squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # noqa: BLE001 - scipy raises several types for bad files
        raise DatasetError(f"{ann}: not a readable MATLAB file ({type(exc).__name__})") from None
    if split not in mat:
        raise DatasetError(f"{ann}: no {split!r} split (has {sorted(k for k in mat if not k.startswith('__'))})")
    out = []
    for entry in _as_list(mat[split]):
        path = images / str(entry.folder) / str(entry.filename)
        for person in _as_list(entry.person):
            cats = _person_categories(person)
            unknown = [c for c in cats if c not in EMOTIC_CATEGORIES]
            if unknown:
                raise DatasetError(f"{ann}: {entry.filename}: unknown EMOTIC categories {unknown}")
            labels = tuple(dict.fromkeys(lab for c in cats if (lab := to_canonical(c, "emotic")) is not None))
            x1, y1, x2, y2 = (int(round(float(v))) for v in _as_list(person.body_bbox)[:4])
            vad = None
            cont = getattr(person, "annotations_continuous", None) or getattr(person, "combined_continuous", None)
            if cont is not None:
                c0 = _as_list(cont)[0]
                vad = (float(c0.valence), float(c0.arousal), float(c0.dominance))
            out.append(ContextSample(path, labels, (x1, y1, x2 - x1, y2 - y1), tuple(cats), vad))
    return out


def multi_hot(samples: list[ContextSample]) -> np.ndarray:
    """(N, 7) 0/1 matrix of canonical labels."""
    y = np.zeros((len(samples), len(EMOTIONS)), np.float32)
    for i, s in enumerate(samples):
        for lab in s.labels:
            y[i, EMOTIONS.index(lab)] = 1
    return y
