"""RAVDESS, EMOVO and CASIA as one list of speech clips, and speaker-/corpus-disjoint splits."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SHARED_DATA, needs_ravdess
from mmfer.data.fer2013 import DatasetError
from mmfer.data.speech_corpora import (
    CLASS_ORDER,
    SpeechClip,
    check_no_text_leak,
    class_mask,
    corpus_classes,
    leave_one_corpus_out,
    load_casia,
    load_emovo,
    load_ravdess_speech,
    load_speech_corpora,
    load_speech_corpus,
    speaker_folds,
)
from mmfer.emotions import AUDIO_EMOTIONS, EMOTIONS, LABEL_SETS, MAPPINGS, to_canonical

EMOVO = SHARED_DATA / "emovo"
CASIA = SHARED_DATA / "casia"
needs_emovo = pytest.mark.skipif(not (EMOVO / "labels.tsv").is_file(),
                                 reason=f"EMOVO not found at {EMOVO} (../shared absent)")
needs_casia = pytest.mark.skipif(not (CASIA / "labels.tsv").is_file(),
                                 reason=f"CASIA not found at {CASIA} (../shared absent)")


def tiny_audio(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(160, np.float32), 16_000)  # format from the suffix (WAV or FLAC)


def clip(corpus: str, speaker: str, label: str, sentence: str = "1") -> SpeechClip:
    return SpeechClip(Path(f"{corpus}/{speaker}/{label}-{sentence}.wav"), label, speaker, corpus, "xx", sentence)


# ------------------------------------------------------------------------------------- vocabulary


def test_emovo_and_casia_codes_are_explicit_mappings():
    for source in ("emovo", "casia"):
        assert set(MAPPINGS[source]) == set(LABEL_SETS[source])
        assert all(t in EMOTIONS for t in MAPPINGS[source].values())
    assert {c: to_canonical(c, "emovo") for c in LABEL_SETS["emovo"]} == {
        "dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear", "rab": "angry", "sor": "surprise",
        "tri": "sad"}
    assert "disgust" not in LABEL_SETS["casia"]
    assert CLASS_ORDER[: len(AUDIO_EMOTIONS)] == AUDIO_EMOTIONS  # class lists come out in the audio order


# -------------------------------------------------------------------------------- real corpora


@needs_emovo
def test_emovo_real_labels_and_names_agree():
    clips = load_emovo(SHARED_DATA)
    assert len(clips) == 588
    assert {c.speaker for c in clips} == {"f1", "f2", "f3", "m1", "m2", "m3"}
    assert Counter(c.label for c in clips) == {e: 84 for e in EMOTIONS}
    assert {c.language for c in clips} == {"it"} and len({c.sentence for c in clips}) == 14
    assert load_emovo(SHARED_DATA, layout="names") == clips  # the original-name parser reads the same corpus
    assert sf.info(str(clips[0].path)).samplerate == 16_000


@needs_casia
def test_casia_real_labels_and_folders_agree():
    clips = load_casia(SHARED_DATA)
    assert len(clips) == 1200 and len({c.speaker for c in clips}) == 4
    assert Counter(c.label for c in clips) == {e: 200 for e in EMOTIONS if e != "disgust"}
    assert {c.language for c in clips} == {"zh"}
    assert {c.sentence for c in clips} == {str(n) for n in range(201, 251)}
    assert load_casia(SHARED_DATA, layout="names") == clips


@needs_ravdess
def test_ravdess_speech_keeps_calm():
    clips = load_ravdess_speech(SHARED_DATA)
    assert len(clips) == 1440 and len({c.speaker for c in clips}) == 24
    assert Counter(c.label for c in clips)["calm"] == 192
    assert {c.sentence for c in clips} == {"01", "02"} and {c.language for c in clips} == {"en"}


@needs_ravdess
@needs_emovo
@needs_casia
def test_real_loco_and_folds():
    clips = load_speech_corpora(["ravdess", "emovo", "casia"], SHARED_DATA)
    assert len(clips) == 1440 + 588 + 1200
    assert len({c.speaker_id for c in clips}) == 34
    splits = {s.held_out: s for s in leave_one_corpus_out(clips)}
    assert splits["emovo"].shared_classes == EMOTIONS  # RAVDESS brings disgust, which CASIA lacks
    assert splits["casia"].shared_classes == tuple(e for e in EMOTIONS if e != "disgust")
    assert splits["ravdess"].shared_classes == EMOTIONS  # no calm: neither EMOVO nor CASIA has it
    assert len(splits["ravdess"].test) == 1440 - 192
    assert len(splits["emovo"].test) == 588 and len(splits["casia"].test) == 1200
    for s in splits.values():
        assert all(clips[i].label != "calm" for i in s.test)
    folds = speaker_folds(clips, 4)
    tests = [set(te) for _, te in folds]
    assert set().union(*tests) == set(range(len(clips))) and sum(map(len, tests)) == len(clips)
    for _, te in folds:  # every corpus has >= 4 speakers, so every fold holds all three
        assert {clips[i].corpus for i in te} == {"ravdess", "emovo", "casia"}


# ------------------------------------------------------------------------ original layouts, bad input


def test_emovo_original_names(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "emovo"
    for name in ("f1/dis-f1-b1.wav", "f1/gio-f1-n5.flac", "m2/rab-m2-l3.flac", "m2/rab-m2-l3.wav", "m2/pau-m2-d1.flac"):
        tiny_audio(root / name)
    for bad in ("f1/dis-m2-b1.wav", "f1/take2.wav", "stray.flac", "m2/x/tri-m2-b1.wav"):
        tiny_audio(root / bad)
    (root / "f1" / "notes.txt").write_text("not audio, not a clip")
    with caplog.at_level(logging.WARNING, logger="mmfer.data.speech_corpora"):
        clips = load_emovo(tmp_path)
    assert [(c.path.relative_to(root).as_posix(), c.label, c.speaker, c.sentence) for c in clips] == [
        ("f1/dis-f1-b1.wav", "disgust", "f1", "b1"),
        ("f1/gio-f1-n5.flac", "happy", "f1", "n5"),
        ("m2/pau-m2-d1.flac", "fear", "m2", "d1"),
        ("m2/rab-m2-l3.wav", "angry", "m2", "l3"),  # the original WAV wins over a FLAC copy
    ]
    assert all(c.corpus == "emovo" and c.language == "it" for c in clips)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    for bad in ("f1/dis-m2-b1.wav", "f1/take2.wav", "stray.flac", "m2/x/tri-m2-b1.wav"):
        assert warnings[0].count(bad) == 1
    assert "notes.txt" not in warnings[0]
    assert load_emovo(root) == clips  # the corpus folder itself may be given


def test_emovo_unknown_code_and_nothing_parses(tmp_path: Path):
    tiny_audio(tmp_path / "emovo" / "f1" / "dis-f1-b1.wav")
    tiny_audio(tmp_path / "emovo" / "f1" / "xyz-f1-b2.wav")
    with pytest.raises(DatasetError, match=r"f1/xyz-f1-b2\.wav.*'xyz'"):
        load_emovo(tmp_path)
    other = tmp_path / "other"
    tiny_audio(other / "emovo" / "f1" / "hello.wav")
    with pytest.raises(DatasetError, match="no labels.tsv and no file named like"):
        load_emovo(other)


def test_casia_original_folders(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "casia"
    for name in ("liuchanhg/angry/201.wav", "liuchanhg/happy/250.flac", "wangzhe/neutral/233.flac"):
        tiny_audio(root / name)
    for bad in ("liuchanhg/angry/199.wav", "liuchanhg/angry/abc.wav", "wangzhe/201.wav"):
        tiny_audio(root / bad)
    with caplog.at_level(logging.WARNING, logger="mmfer.data.speech_corpora"):
        clips = load_casia(tmp_path)
    assert [(c.label, c.speaker, c.sentence, c.language) for c in clips] == [
        ("angry", "liuchanhg", "201", "zh"), ("happy", "liuchanhg", "250", "zh"), ("neutral", "wangzhe", "233", "zh")]
    (msg,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert all(msg.count(b) == 1 for b in ("liuchanhg/angry/199.wav", "liuchanhg/angry/abc.wav", "wangzhe/201.wav"))
    tiny_audio(root / "wangzhe" / "bored" / "201.wav")
    with pytest.raises(DatasetError, match=r"wangzhe/bored/201\.wav.*'bored'"):
        load_casia(tmp_path)


def test_missing_folder_is_one_clear_error(tmp_path: Path):
    for load, name in ((load_emovo, "EMOVO"), (load_casia, "CASIA")):
        with pytest.raises(DatasetError, match=f"{name} not found: .*{name.lower()} is not a folder"):
            load(tmp_path)
    with pytest.raises(DatasetError, match="RAVDESS not found"):
        load_ravdess_speech(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown speech corpus 'iemocap'"):
        load_speech_corpus("iemocap", tmp_path)


def write_labels(folder: Path, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "labels.tsv"
    path.write_text("file\temotion\tspeaker\tsentence\n" + "".join(r + "\n" for r in rows))
    return path


def test_labels_tsv_missing_clips_listed_once(tmp_path: Path):
    root = tmp_path / "casia"
    tiny_audio(root / "s1" / "angry" / "201.flac")
    labels = write_labels(root, ["s1/angry/201.flac\tangry\ts1\t201", "s1/sad/202.flac\tsad\ts1\t202",
                                 "s1/sad/202.flac\tsad\ts1\t202", "s2/fear/203.flac\tfear\ts2\t203"])
    with pytest.raises(DatasetError, match="labels.tsv names 2 clip") as err:
        load_casia(tmp_path)
    msg = str(err.value)
    assert str(labels) in msg and msg.count("s1/sad/202.flac") == 1 and msg.count("s2/fear/203.flac") == 1
    assert "201.flac" not in msg


def test_labels_tsv_read_and_bad_emotion(tmp_path: Path):
    root = tmp_path / "emovo"
    tiny_audio(root / "a.flac")
    tiny_audio(root / "b.flac")
    write_labels(root, ["a.flac\tanger\tf1\tb1", "", "b.flac\tsurprise\tm1\t"])
    clips = load_emovo(tmp_path)  # labels.tsv wins over file names; synonyms normalise
    assert [(c.label, c.speaker, c.sentence) for c in clips] == [("angry", "f1", "b1"), ("surprise", "m1", None)]
    write_labels(root, ["a.flac\tbored\tf1\tb1"])
    with pytest.raises(DatasetError, match=r"labels\.tsv:2 \(a\.flac\): emotion 'bored' is not in the vocabulary"):
        load_emovo(tmp_path)
    (root / "labels.tsv").write_text("file\temotion\na.flac\tangry\n")
    with pytest.raises(DatasetError, match=r"labels\.tsv: missing column\(s\) \['speaker'\]"):
        load_emovo(tmp_path)


# --------------------------------------------------------------------------------------- splits


def synthetic() -> list[SpeechClip]:
    """Three corpora like the real ones: RAVDESS has calm, CASIA lacks disgust; speaker names collide."""
    out = []
    for spk in ("01", "02", "03", "04"):
        out += [clip("ravdess", spk, e) for e in AUDIO_EMOTIONS]
    for spk in ("f1", "m1", "01"):  # "01" also in RAVDESS: a different person
        out += [clip("emovo", spk, e, s) for e in EMOTIONS for s in ("b1", "b2")]
    for spk in ("liuchanhg", "wangzhe"):
        out += [clip("casia", spk, e, s) for e in EMOTIONS if e != "disgust" for s in ("201", "202")]
    return out


def test_loco_shared_classes_and_disjointness():
    clips = synthetic()
    splits = leave_one_corpus_out(clips)
    assert [s.held_out for s in splits] == ["casia", "emovo", "ravdess"]
    shared = {s.held_out: s.shared_classes for s in splits}
    assert shared == {"casia": ("angry", "fear", "happy", "sad", "surprise", "neutral"), "emovo": EMOTIONS,
                      "ravdess": EMOTIONS}
    for train_idx, test_idx, held, classes in splits:  # unpacks as a plain 4-tuple
        train, test = [clips[i] for i in train_idx], [clips[i] for i in test_idx]
        assert {c.corpus for c in test} == {held} and held not in {c.corpus for c in train}
        assert not {c.speaker_id for c in train} & {c.speaker_id for c in test}
        assert {c.label for c in test} == set(classes) and "calm" not in classes
        assert len(train) == sum(c.corpus != held for c in clips)  # training keeps every class, calm included
    # Without RAVDESS nobody else brings disgust: EMOVO held out is tested on CASIA's six only.
    two = [c for c in clips if c.corpus != "ravdess"]
    _, emovo = leave_one_corpus_out(two)
    assert "disgust" not in emovo.shared_classes and len(emovo.test) == 3 * 6 * 2
    assert all(two[i].label != "disgust" for i in emovo.test)
    with pytest.raises(ValueError, match="at least 2 corpora"):
        leave_one_corpus_out([c for c in clips if c.corpus == "emovo"])


def test_speaker_folds_are_disjoint_and_cover_everything():
    clips = synthetic()
    folds = speaker_folds(clips, 3, seed=1)
    assert len(folds) == 3
    seen: set[str] = set()
    for train, test in folds:
        assert sorted([*train, *test]) == list(range(len(clips)))
        spk = {clips[i].speaker_id for i in test}
        assert not spk & {clips[i].speaker_id for i in train} and not spk & seen
        seen |= spk
    assert seen == {c.speaker_id for c in clips}  # "ravdess/01" and "emovo/01" are two speakers
    assert [t.tolist() for _, t in folds] == [t.tolist() for _, t in speaker_folds(clips, 3, seed=1)]
    assert {clips[i].corpus for i in folds[0][1]} >= {"ravdess", "emovo"}  # corpora spread over folds
    with pytest.raises(ValueError, match="need at least 2 folds"):
        speaker_folds(clips, 1)
    with pytest.raises(ValueError, match="10 folds need at least 10 speakers"):
        speaker_folds(clips, 10)


def test_class_mask_and_text_leak_check():
    clips = synthetic()
    per = corpus_classes(clips)
    assert per["ravdess"] == AUDIO_EMOTIONS and "disgust" not in per["casia"]
    m = class_mask(per["casia"], AUDIO_EMOTIONS)
    assert m.dtype == bool and m.tolist() == [True, False, True, True, True, True, True, False]
    assert class_mask(per["ravdess"], AUDIO_EMOTIONS).all()
    with pytest.raises(ValueError, match=r"\['calm'\] are not among the model's classes"):
        class_mask(per["ravdess"], EMOTIONS)
    a, b = clip("casia", "wangzhe", "angry", "201"), clip("casia", "wangzhe", "sad", "201")
    with pytest.raises(ValueError, match="casia/wangzhe"):
        check_no_text_leak([a], [b])
    check_no_text_leak([a], [clip("casia", "liuchanhg", "angry", "201")])  # same text, other speaker: fine
