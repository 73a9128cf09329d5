"""Acted speech-emotion corpora in three languages (RAVDESS, EMOVO, CASIA) as one list of clips.

Every corpus loads into :class:`SpeechClip` items whose ``label`` is the audio branch's class name:
the canonical :data:`mmfer.emotions.EMOTIONS`, or ``calm`` for RAVDESS (kept as its own class, never
folded here). Dataset codes go through the explicit mappings in :mod:`mmfer.emotions`.

Layouts accepted (``root`` is the data root; ``<root>/<corpus>`` is used when it exists):

* EMOVO (Italian): ``emovo/labels.tsv`` (``file, emotion, speaker, sentence``), or the original
  ``<speaker>/<emo>-<speaker>-<sentence>.wav|flac`` with codes dis, gio, neu, pau, rab, sor, tri.
* CASIA (Mandarin): ``casia/labels.tsv``, or the original ``<speaker>/<emotion>/<201-250>.wav|flac``.
* RAVDESS (English): through :func:`mmfer.data.ravdess.find_ravdess` (speech channel).

Evaluation must be speaker-independent: :func:`speaker_folds` and :func:`leave_one_corpus_out`
never put one speaker on both sides, and LOCO tests only the classes both sides know.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from mmfer.data.fer2013 import DatasetError
from mmfer.data.ravdess import find_ravdess, normalize_audio_label
from mmfer.emotions import EMOTIONS, EXTRA_CLASSES, label_set, to_canonical
from mmfer.paths import data_root

log = logging.getLogger(__name__)

#: Every class a speech clip may carry, in the one order used for class lists (canonical, then extras).
CLASS_ORDER: tuple[str, ...] = (*EMOTIONS, *EXTRA_CLASSES)
LANGUAGES: dict[str, str] = {"ravdess": "en", "emovo": "it", "casia": "zh"}
CORPUS_SUFFIXES = (".wav", ".flac")
LABEL_COLUMNS = ("file", "emotion", "speaker")  # ``sentence`` is optional
Layout = Literal["auto", "labels", "names"]

EMOVO_RE = re.compile(r"^([a-z]{3})-([a-z]+\d+)-([a-z]+\d+)$", re.IGNORECASE)
CASIA_TEXTS = range(201, 251)  # the public 1,200-clip part: texts 201-250 in every emotion


@dataclasses.dataclass(frozen=True)
class SpeechClip:
    """One labelled utterance of any speech corpus.

    ``label`` is an audio class name (canonical, or calm); ``speaker`` is unique within ``corpus``
    only, so splits use :attr:`speaker_id`; ``sentence`` is the corpus's text code (None if unknown).
    """

    path: Path
    label: str
    speaker: str
    corpus: str
    language: str
    sentence: str | None = None

    @property
    def speaker_id(self) -> str:
        """``corpus/speaker``: speaker names are only unique inside one corpus."""
        return f"{self.corpus}/{self.speaker}"


def _corpus_dir(root: str | Path | None, name: str) -> Path:
    base = data_root(root)
    if (base / name).is_dir():
        return base / name
    if base.is_dir() and base.name.lower() == name:  # the corpus folder itself was given
        return base
    raise DatasetError(f"{name.upper()} not found: {base / name} is not a folder (set --data-root or "
                       "$MMFER_DATA_ROOT; see data/README.md)")


def _audio_label(value: str, where: str) -> str:
    try:
        return normalize_audio_label(value)
    except ValueError:
        raise DatasetError(f"{where}: emotion {value!r} is not in the vocabulary "
                           f"{list(CLASS_ORDER)}") from None


def _read_labels(folder: Path, corpus: str) -> list[SpeechClip]:
    """``labels.tsv`` -> clips; one error listing every missing clip (each once)."""
    path = folder / "labels.tsv"
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing_cols = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise DatasetError(f"{path}: missing column(s) {missing_cols}; expected {[*LABEL_COLUMNS, 'sentence']}")
        rows = list(reader)
    clips, missing = [], []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        name, emotion, speaker = ((row.get(c) or "").strip() for c in LABEL_COLUMNS)
        if not name or not emotion or not speaker:
            raise DatasetError(f"{path}:{line}: empty file, emotion or speaker field")
        label = _audio_label(emotion, f"{path}:{line} ({name})")
        clip_path = folder / name
        if not clip_path.is_file():
            missing.append(name)
            continue
        sentence = (row.get("sentence") or "").strip() or None
        clips.append(SpeechClip(clip_path, label, speaker, corpus, LANGUAGES[corpus], sentence))
    if missing:
        uniq = list(dict.fromkeys(missing))
        raise DatasetError(f"{path} names {len(uniq)} clip(s) not found under {folder}: {', '.join(uniq)}")
    if not clips:
        raise DatasetError(f"{path}: no clips listed")
    return sorted(clips, key=lambda c: str(c.path))


def _scan(folder: Path, depth: int, parse: Callable[[Path], SpeechClip | None],
          pattern: str) -> list[SpeechClip]:
    """Original file-name layout: every audio file ``depth`` levels down is parsed; names that do not
    parse are warned about once (all in one message) and skipped; an error only if none parses."""
    by_key: dict[Path, SpeechClip] = {}
    bad: list[str] = []
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or f.suffix.lower() not in CORPUS_SUFFIXES:
            continue  # READMEs, .DS_Store, ...: not clips
        rel = f.relative_to(folder)
        clip = parse(rel) if len(rel.parts) == depth else None
        if clip is None:
            bad.append(str(rel))
            continue
        key = rel.with_suffix("")
        # The original download is WAV; when a FLAC copy sits beside it, keep the original (as RAVDESS does).
        if key not in by_key or f.suffix.lower() == ".wav":
            by_key[key] = dataclasses.replace(clip, path=f)
    if bad:
        log.warning("%s: %d file name(s) do not match %s and were skipped: %s", folder, len(bad), pattern,
                    ", ".join(dict.fromkeys(bad)))
    if not by_key:
        raise DatasetError(f"{folder}: no labels.tsv and no file named like {pattern}")
    return [by_key[k] for k in sorted(by_key)]


def _layout(folder: Path, layout: Layout) -> bool:
    """True when labels.tsv is to be read."""
    if layout not in ("auto", "labels", "names"):
        raise ValueError(f"layout must be 'auto', 'labels' or 'names', got {layout!r}")
    has = (folder / "labels.tsv").is_file()
    if layout == "labels" and not has:
        raise DatasetError(f"{folder / 'labels.tsv'}: not found")
    return layout == "labels" or (layout == "auto" and has)


def parse_emovo_name(rel: str | Path) -> SpeechClip | None:
    """``<speaker>/<emo>-<speaker>-<sentence>.wav`` -> clip; None if the name does not fit the pattern.

    Raises DatasetError for a well-formed name whose emotion code is not an EMOVO code.
    """
    rel = Path(rel)
    m = EMOVO_RE.match(rel.stem)
    if not m or len(rel.parts) != 2 or m.group(2).lower() != rel.parts[0].lower():
        return None  # the speaker in the name must be the folder's: anything else is not EMOVO's layout
    code, speaker, sentence = (g.lower() for g in m.groups())
    if code not in label_set("emovo"):
        raise DatasetError(f"{rel}: emotion code {code!r} is not an EMOVO code {list(label_set('emovo'))}")
    label = to_canonical(code, "emovo")
    assert label is not None  # every EMOVO code has a canonical counterpart
    return SpeechClip(rel, label, speaker, "emovo", LANGUAGES["emovo"], sentence)


def parse_casia_name(rel: str | Path) -> SpeechClip | None:
    """``<speaker>/<emotion>/<201-250>.wav`` -> clip; None if the path does not fit the pattern.

    Raises DatasetError for an emotion folder that is not a CASIA emotion.
    """
    rel = Path(rel)
    if len(rel.parts) != 3 or not rel.stem.isdigit() or int(rel.stem) not in CASIA_TEXTS:
        return None
    speaker, emotion = rel.parts[0], rel.parts[1].lower()
    if emotion not in label_set("casia"):
        raise DatasetError(f"{rel}: emotion folder {rel.parts[1]!r} is not a CASIA emotion "
                           f"{list(label_set('casia'))}")
    label = to_canonical(emotion, "casia")
    assert label is not None
    return SpeechClip(rel, label, speaker, "casia", LANGUAGES["casia"], str(int(rel.stem)))


def load_emovo(root: str | Path | None = None, layout: Layout = "auto") -> list[SpeechClip]:
    """EMOVO clips from ``<root>/emovo``: ``labels.tsv`` when present (``layout="auto"``), else file names."""
    folder = _corpus_dir(root, "emovo")
    if _layout(folder, layout):
        return _read_labels(folder, "emovo")
    return _scan(folder, 2, parse_emovo_name, "<speaker>/<emo>-<speaker>-<sentence>.wav|flac")


def load_casia(root: str | Path | None = None, layout: Layout = "auto") -> list[SpeechClip]:
    """CASIA clips from ``<root>/casia``: ``labels.tsv`` when present (``layout="auto"``), else folders.

    ``sentence`` is the text number: the same 50 texts are spoken in every emotion, so a text says
    nothing about the label, but the speaker does: split by speaker (see :func:`check_no_text_leak`).
    """
    folder = _corpus_dir(root, "casia")
    if _layout(folder, layout):
        return _read_labels(folder, "casia")
    return _scan(folder, 3, parse_casia_name, "<speaker>/<emotion>/<201-250>.wav|flac")


def load_ravdess_speech(root: str | Path | None = None) -> list[SpeechClip]:
    """RAVDESS speech clips (actor = speaker, statement code = sentence); ``calm`` stays its own class."""
    return [SpeechClip(f.path, f.label, f"{f.actor:02d}", "ravdess", LANGUAGES["ravdess"], f"{f.statement:02d}")
            for f in find_ravdess(root, channel="speech")]


LOADERS: dict[str, Callable[[str | Path | None], list[SpeechClip]]] = {
    "ravdess": load_ravdess_speech,
    "emovo": load_emovo,
    "casia": load_casia,
}


def load_speech_corpus(name: str, root: str | Path | None = None) -> list[SpeechClip]:
    """One corpus by name (``ravdess``, ``emovo`` or ``casia``)."""
    key = name.strip().lower()
    if key not in LOADERS:
        raise ValueError(f"unknown speech corpus {name!r}; known: {', '.join(LOADERS)}")
    return LOADERS[key](root)


def load_speech_corpora(names: str | Sequence[str], root: str | Path | None = None) -> list[SpeechClip]:
    """Several corpora concatenated in the order given (``names`` may be ``"ravdess,emovo"``)."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    keys = [n.strip().lower() for n in names]
    if not keys:
        raise ValueError("no speech corpus named")
    if len(set(keys)) != len(keys):
        raise ValueError(f"corpus named twice in {list(names)}")
    return [c for k in keys for c in load_speech_corpus(k, root)]


# ---------------------------------------------------------------------------------------------- splits


def corpus_classes(clips: Sequence[SpeechClip]) -> dict[str, tuple[str, ...]]:
    """Corpus -> the classes its clips carry, in :data:`CLASS_ORDER` (never in order of appearance)."""
    seen: dict[str, set[str]] = {}
    for c in clips:
        seen.setdefault(c.corpus, set()).add(c.label)
    return {k: tuple(x for x in CLASS_ORDER if x in v) for k, v in seen.items()}


def class_mask(corpus_classes: Sequence[str], model_classes: Sequence[str]) -> np.ndarray:
    """Boolean mask over ``model_classes``: True where the corpus labels that class.

    A corpus that never labels a class (CASIA has no disgust, only RAVDESS has calm) says nothing about
    it, so a loss should ignore those logits for its clips rather than count them as negatives.
    Raises ValueError when the corpus has a class the model cannot predict (it would be dropped silently).
    """
    model = list(model_classes)
    unknown = [c for c in corpus_classes if c not in model]
    if unknown:
        raise ValueError(f"corpus classes {unknown} are not among the model's classes {model}")
    wanted = set(corpus_classes)
    return np.array([c in wanted for c in model], dtype=bool)


def check_no_text_leak(train: Sequence[SpeechClip], test: Sequence[SpeechClip]) -> None:
    """Raise ValueError if a speaker (or, for LOCO, a corpus) would be on both sides of a split.

    The leak to fear in acted corpora is the speaker, not the text: CASIA's 50 texts (and RAVDESS's 2,
    EMOVO's 14) are each spoken in every emotion, so a sentence carries no label information and may
    appear on both sides by design. A clip-level split, though, lets a model recognise a voice (and its
    recording session) it was trained on, so every split here is by speaker; this is the check.
    """
    shared = sorted({c.speaker_id for c in train} & {c.speaker_id for c in test})
    if shared:
        raise ValueError(f"speaker(s) on both sides of the split: {', '.join(shared)}")


def speaker_folds(clips: Sequence[SpeechClip], k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` speaker-disjoint (train_idx, test_idx) folds over ``clips``.

    Each corpus's speakers are shuffled (seeded) and dealt round-robin on their own, continuing where
    the previous corpus stopped, so every fold holds speakers of every corpus that has at least ``k``
    and fold sizes stay even. A speaker is in exactly one test fold.
    """
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    speakers: dict[str, list[str]] = {}
    for c in clips:
        lst = speakers.setdefault(c.corpus, [])
        if c.speaker_id not in lst:
            lst.append(c.speaker_id)
    total = sum(len(v) for v in speakers.values())
    if k > total:
        raise ValueError(f"{k} folds need at least {k} speakers; have {total}")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    nxt = 0
    for corpus in sorted(speakers):  # sorted: the folds do not depend on the order corpora were loaded
        for s in rng.permutation(sorted(speakers[corpus])):
            fold_of[str(s)] = nxt % k
            nxt += 1
    assign = np.array([fold_of[c.speaker_id] for c in clips])
    out = []
    for i in range(k):
        test = np.flatnonzero(assign == i)
        train = np.flatnonzero(assign != i)
        check_no_text_leak([clips[j] for j in train], [clips[j] for j in test])
        out.append((train, test))
    return out


class LocoSplit(NamedTuple):
    """One leave-one-corpus-out split; unpacks as ``train_idx, test_idx, held_out, shared_classes``."""

    train: np.ndarray
    test: np.ndarray
    held_out: str
    shared_classes: tuple[str, ...]


def leave_one_corpus_out(clips: Sequence[SpeechClip]) -> list[LocoSplit]:
    """One split per corpus (sorted by name): train on all the others, test on it.

    ``shared_classes`` are the classes both the training corpora (together) and the held-out corpus
    label, in :data:`CLASS_ORDER`; the test indices hold only clips of those classes, since a model
    cannot be scored on a class it never saw (e.g. calm, which only RAVDESS has, is never tested).
    The training indices keep every clip of the other corpora.
    """
    per_corpus = corpus_classes(clips)
    if len(per_corpus) < 2:
        raise ValueError(f"leave-one-corpus-out needs at least 2 corpora; got {sorted(per_corpus)}")
    corpora = np.array([c.corpus for c in clips])
    out = []
    for held in sorted(per_corpus):
        train = np.flatnonzero(corpora != held)
        train_classes = {clips[i].label for i in train}
        shared = tuple(x for x in per_corpus[held] if x in train_classes)
        test = np.array([i for i in np.flatnonzero(corpora == held) if clips[i].label in shared], dtype=np.int64)
        train_clips, test_clips = [clips[i] for i in train], [clips[i] for i in test]
        # Invariants, checked always (not `assert`, which -O strips): no corpus, no speaker on both sides.
        both = {c.corpus for c in train_clips} & {c.corpus for c in test_clips}
        if both:
            raise RuntimeError(f"corpus {sorted(both)} on both sides of the LOCO split")
        check_no_text_leak(train_clips, test_clips)
        out.append(LocoSplit(train, test, held, shared))
    return out
