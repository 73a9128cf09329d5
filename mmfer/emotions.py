"""The one emotion vocabulary of mmfer and explicit mappings from dataset label sets.

Every model in mmfer predicts over :data:`EMOTIONS`, in this order. Dataset labels are
converted with :func:`to_canonical`; a class with no canonical counterpart maps to ``None``
and the caller must decide (drop the sample, or fold it with :data:`FOLD_UNMAPPED`).
Nothing is ever silently reordered: each mapping is written out by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Canonical classes (the FER-2013 set, in FER-2013 index order, so FER-2013 labels are identity).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_EMOTIONS = len(EMOTIONS)

#: Source label sets, in each dataset's own index order.
LABEL_SETS: dict[str, tuple[str, ...]] = {
    # Kaggle fer2013.csv: 0=Angry 1=Disgust 2=Fear 3=Happy 4=Sad 5=Surprise 6=Neutral
    "fer2013": ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    # FER+ fer2013new.csv vote columns, in file order (unknown/NF are not emotions: see fer2013 loader)
    "ferplus": ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"),
    # RAVDESS file-name code 01..08 -> index 0..7
    "ravdess": ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    # CK+ Emotion labels 0..7 (0 = neutral in the original coding, 1..7 the expressions)
    "ckplus": ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"),
    # CAER-S class folders, alphabetical as distributed
    "caer": ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    # EMOTIC's 26 discrete categories (multi-label), in the order of the EMOTIC paper
    "emotic": ("Affection", "Anger", "Annoyance", "Anticipation", "Aversion", "Confidence", "Disapproval",
               "Disconnection", "Disquietment", "Doubt/Confusion", "Embarrassment", "Engagement", "Esteem",
               "Excitement", "Fatigue", "Fear", "Happiness", "Pain", "Peace", "Pleasure", "Sadness", "Sensitivity",
               "Suffering", "Surprise", "Sympathy", "Yearning"),
    # CREMA-D file-name codes <actor>_<sentence>_<EMO>_<intensity> (six emotions, no surprise)
    "crema_d": ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"),
    # MELD *_sent_emo.csv Emotion column, in the order of the MELD paper
    "meld": ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"),
    # EMOVO file-name codes <emo>-<speaker>-<sentence> (Italian), alphabetical as the codes sort
    "emovo": ("dis", "gio", "neu", "pau", "rab", "sor", "tri"),
    # CASIA public part, emotion folder names <speaker>/<emotion>/<201-250>, alphabetical (no disgust)
    "casia": ("angry", "fear", "happy", "neutral", "sad", "surprise"),
}

#: Per source label -> canonical label, or None when the class has no counterpart.
MAPPINGS: dict[str, dict[str, str | None]] = {
    "fer2013": {e: e for e in EMOTIONS},
    "ferplus": {
        "neutral": "neutral",
        "happiness": "happy",
        "surprise": "surprise",
        "sadness": "sad",
        "anger": "angry",
        "disgust": "disgust",
        "fear": "fear",
        "contempt": None,  # no FER-2013 counterpart
    },
    "ravdess": {
        "neutral": "neutral",
        "calm": None,  # a low-arousal neutral; kept as its own class by the audio branch, see FOLD_UNMAPPED
        "happy": "happy",
        "sad": "sad",
        "angry": "angry",
        "fearful": "fear",
        "disgust": "disgust",
        "surprised": "surprise",
    },
    "caer": {
        "anger": "angry",
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happy",
        "neutral": "neutral",
        "sad": "sad",
        "surprise": "surprise",
    },
    # Only categories that name the same emotion; the others (Annoyance, Peace, Pleasure, ...) are
    # related but not the same state, so they stay unmapped rather than being guessed.
    "emotic": {
        **{c: None for c in ("Affection", "Annoyance", "Anticipation", "Confidence", "Disapproval", "Disconnection",
                             "Disquietment", "Doubt/Confusion", "Embarrassment", "Engagement", "Esteem",
                             "Excitement", "Fatigue", "Pain", "Peace", "Pleasure", "Sensitivity", "Suffering",
                             "Sympathy", "Yearning")},
        "Anger": "angry",
        "Aversion": "disgust",
        "Fear": "fear",
        "Happiness": "happy",
        "Sadness": "sad",
        "Surprise": "surprise",
    },
    "crema_d": {
        "ANG": "angry",
        "DIS": "disgust",
        "FEA": "fear",
        "HAP": "happy",
        "NEU": "neutral",
        "SAD": "sad",
    },
    "meld": {
        "neutral": "neutral",
        "joy": "happy",
        "sadness": "sad",
        "anger": "angry",
        "surprise": "surprise",
        "fear": "fear",
        "disgust": "disgust",
    },
    # Italian codes: disgusto, gioia, neutrale, paura, rabbia, sorpresa, tristezza
    "emovo": {
        "dis": "disgust",
        "gio": "happy",
        "neu": "neutral",
        "pau": "fear",
        "rab": "angry",
        "sor": "surprise",
        "tri": "sad",
    },
    "casia": {
        "angry": "angry",
        "fear": "fear",
        "happy": "happy",
        "neutral": "neutral",
        "sad": "sad",
        "surprise": "surprise",
    },
    "ckplus": {
        "neutral": "neutral",
        "anger": "angry",
        "contempt": None,
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happy",
        "sadness": "sad",
        "surprise": "surprise",
    },
}

#: Optional folding of unmapped classes for users who want every sample kept.
#: contempt is closest to disgust (both in FACS AU14/AU9-10 families); calm to neutral.
FOLD_UNMAPPED: dict[str, dict[str, str]] = {
    "ferplus": {"contempt": "disgust"},
    "ckplus": {"contempt": "disgust"},
    "ravdess": {"calm": "neutral"},
}

# Common spellings accepted from users and folder names.
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "mad": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "neutrality": "neutral",
}


def label_set(name: str) -> tuple[str, ...]:
    """Return a dataset's label set in its own order."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ValueError(f"unknown label set {name!r}; known: {', '.join(LABEL_SETS)}") from None


def to_canonical(label: str, source: str, fold: bool = False) -> str | None:
    """Map one source label to the canonical vocabulary.

    Args:
        label: the label as the source dataset names it.
        source: a key of :data:`LABEL_SETS`.
        fold: map classes with no counterpart through :data:`FOLD_UNMAPPED` instead of to None.
    """
    mapping = MAPPINGS[source] if source in MAPPINGS else None
    if mapping is None:
        raise ValueError(f"unknown label set {source!r}; known: {', '.join(MAPPINGS)}")
    if label not in mapping:
        raise ValueError(f"{label!r} is not a {source} label; expected one of {list(mapping)}")
    target = mapping[label]
    if target is None and fold:
        target = FOLD_UNMAPPED.get(source, {}).get(label)
    return target


def index_map(source: str, fold: bool = False) -> list[int]:
    """Source index -> canonical index (-1 where the class has no counterpart)."""
    out = []
    for lab in label_set(source):
        target = to_canonical(lab, source, fold=fold)
        out.append(EMOTIONS.index(target) if target is not None else -1)
    return out


def normalize_name(name: str) -> str:
    """Canonical name for a user-supplied label (case, synonyms); raises on unknown names."""
    key = name.strip().lower()
    key = SYNONYMS.get(key, key)
    if key not in EMOTIONS:
        raise ValueError(f"{name!r} is not an emotion mmfer knows; expected one of {list(EMOTIONS)}")
    return key


def check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Validate a model's class list against the vocabulary (order included)."""
    classes = tuple(classes)
    unknown = [c for c in classes if c not in EMOTIONS]
    if unknown:
        raise ValueError(f"classes {unknown} are not in the emotion vocabulary {list(EMOTIONS)}")
    return classes


#: Classes a model may predict beyond the canonical seven, and where each folds for fusion and
#: comparison with 7-class models. The audio branch keeps RAVDESS ``calm`` as its own class
#: (the RAVDESS benchmark is 8-way); its probability is added to ``neutral`` when folded.
EXTRA_CLASSES: dict[str, str] = {"calm": "neutral", "contempt": "disgust"}

#: The audio branch's classes: the canonical seven in canonical order, then calm.
AUDIO_EMOTIONS: tuple[str, ...] = (*EMOTIONS, "calm")


def check_model_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Like :func:`check_classes`, but also accepts the :data:`EXTRA_CLASSES` (e.g. calm)."""
    classes = tuple(classes)
    unknown = [c for c in classes if c not in EMOTIONS and c not in EXTRA_CLASSES]
    if unknown:
        raise ValueError(f"classes {unknown} are neither in the emotion vocabulary {list(EMOTIONS)} "
                         f"nor extra classes {list(EXTRA_CLASSES)}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate classes in {list(classes)}")
    return classes


def fold_to_canonical(probs: dict[str, float]) -> dict[str, float]:
    """Probabilities over a model's classes -> over :data:`EMOTIONS` (extra classes added to their fold target)."""
    out = {e: 0.0 for e in EMOTIONS}
    for name, p in probs.items():
        out[EXTRA_CLASSES.get(name, name)] += float(p)
    return out


def audio_label(label: str, source: str) -> str:
    """A dataset label -> the audio branch's class name (canonical, or an extra class such as calm)."""
    target = to_canonical(label, source)
    if target is None:
        if label in EXTRA_CLASSES:
            return label
        raise ValueError(f"{source} label {label!r} has no audio-branch class")
    return target


#: Spellings of each mmfer class found in the ``id2label`` of published emotion checkpoints
#: (FER/AffectNet image models, IEMOCAP/RAVDESS/TESS/CREMA-D speech models). Matching is on the
#: lower-cased label with separators removed; anything else is reported as unmapped, never guessed.
CHECKPOINT_LABELS: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "anger", "ang", "mad", "annoyed"),
    "disgust": ("disgust", "disgusted", "dis", "disgusting"),
    "fear": ("fear", "fearful", "fea", "scared", "afraid"),
    "happy": ("happy", "happiness", "hap", "joy", "joyful", "happy/joy", "happiness/joy"),
    "sad": ("sad", "sadness", "sorrow", "unhappy"),
    "surprise": ("surprise", "surprised", "sur", "pleasant surprise", "ps", "surprised/astonished"),
    "neutral": ("neutral", "neu", "neutrality", "none/neutral"),
    "calm": ("calm",),
    "contempt": ("contempt", "contemptuous"),
}
_CHECKPOINT_INDEX = {s.replace("_", " ").replace("-", " "): k for k, v in CHECKPOINT_LABELS.items() for s in v}


def match_checkpoint_label(label: str) -> str | None:
    """A checkpoint's class name -> an mmfer class (canonical, or calm/contempt), or None when it names
    no emotion mmfer knows (e.g. ``LABEL_3``, ``frustrated``, ``excited``)."""
    key = " ".join(str(label).strip().lower().replace("_", " ").replace("-", " ").split())
    return _CHECKPOINT_INDEX.get(key)


def fold_matrix(classes: Sequence[str]) -> np.ndarray:
    """(K, 7) matrix taking probabilities over a model's ``classes`` to :data:`EMOTIONS` (extra classes
    such as calm or contempt added to their fold target): ``canonical = probs @ fold_matrix(classes)``."""
    m = np.zeros((len(classes), len(EMOTIONS)), np.float64)
    for i, c in enumerate(classes):
        m[i, EMOTIONS.index(EXTRA_CLASSES.get(c, c))] = 1.0
    return m
