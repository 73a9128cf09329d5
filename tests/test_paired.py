"""Paired audio-visual / face+scene dataset loaders (RAVDESS AV, CREMA-D, MELD, CAER-S, EMOTIC) on
generated layouts with the official file names, the real CREMA-D samples, and subject-disjoint folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import RAVDESS, SHARED_DATA
from mmfer.data.fer2013 import DatasetError
from mmfer.data.paired import (
    PairedItem,
    group_folds,
    load_crema_d,
    load_emotic_paired,
    load_meld,
    load_paired,
    subject_folds,
)
from mmfer.emotions import EMOTIONS, LABEL_SETS, MAPPINGS, to_canonical

CREMA = SHARED_DATA / "crema_d_samples"
needs_crema = pytest.mark.skipif(not (CREMA / "1001_DFA_ANG_XX.flv").is_file(),
                                 reason=f"CREMA-D samples not found at {CREMA} (../shared absent)")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")  # the loaders read names, not content
    return path


# -- label vocabulary ------------------------------------------------------------------------------

def test_crema_d_and_meld_labels_map_explicitly() -> None:
    assert {c: to_canonical(c, "crema_d") for c in LABEL_SETS["crema_d"]} == {
        "ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
    assert MAPPINGS["meld"] == {"neutral": "neutral", "joy": "happy", "sadness": "sad", "anger": "angry",
                                "surprise": "surprise", "fear": "fear", "disgust": "disgust"}
    with pytest.raises(ValueError, match="not a crema_d label"):
        to_canonical("SUR", "crema_d")
    with pytest.raises(DatasetError, match="'bored' is not in the emotion vocabulary"):
        PairedItem(Path("x.mp4"), "bored", "s1", "test")


# -- RAVDESS ---------------------------------------------------------------------------------------

def test_ravdess_av_keeps_audio_video_speech_and_folds_calm(tmp_path: Path) -> None:
    root = tmp_path / "ravdess"
    for actor in (1, 2):
        a = root / f"Actor_{actor:02d}"
        _touch(a / f"01-01-05-02-01-01-{actor:02d}.mp4")  # AV speech, angry
        _touch(a / f"01-01-02-01-02-01-{actor:02d}.mp4")  # AV speech, calm -> neutral
        _touch(a / f"02-01-05-02-01-01-{actor:02d}.mp4")  # video-only: not paired
        _touch(a / f"03-01-05-02-01-01-{actor:02d}.wav")  # audio-only: not paired
        _touch(a / f"01-02-03-01-01-01-{actor:02d}.mp4")  # song
        _touch(a / "notes.txt")  # not a media file: ignored
    ds = load_paired("ravdess", tmp_path)
    assert [(i.path.name, i.label, i.subject, i.sentence) for i in ds] == [
        ("01-01-02-01-02-01-01.mp4", "neutral", "actor01", "statement02"),
        ("01-01-05-02-01-01-01.mp4", "angry", "actor01", "statement01"),
        ("01-01-02-01-02-01-02.mp4", "neutral", "actor02", "statement02"),
        ("01-01-05-02-01-01-02.mp4", "angry", "actor02", "statement01")]
    assert ds.skipped == {"video-only files (not paired audio-video)": 2, "song files (speech only)": 2,
                          "audio-only files (not paired audio-video)": 2}
    assert "calm" in ds.notes[0] and ds.subjects == ["actor01", "actor02"]
    _touch(root / "Actor_01" / "01-01-05-02-01-01.mp4")
    with pytest.raises(DatasetError, match=r"01-01-05-02-01-01\.mp4.*not a RAVDESS name"):
        load_paired("ravdess", tmp_path)
    with pytest.raises(DatasetError, match="nowhere: data folder not found"):
        load_paired("ravdess", tmp_path / "nowhere")


@pytest.mark.skipif(not RAVDESS.is_dir(), reason=f"RAVDESS not found at {RAVDESS} (../shared absent)")
def test_ravdess_audio_only_copy_is_not_paired_data() -> None:
    with pytest.raises(DatasetError, match=r"no RAVDESS audio-video speech files.*audio-only files.*1440"):
        load_paired("ravdess", SHARED_DATA)


# -- CREMA-D ---------------------------------------------------------------------------------------

def test_crema_d_video_flash_layout(tmp_path: Path) -> None:
    vf = tmp_path / "CREMA-D" / "VideoFlash"
    for name in ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_DFA_SAD_LO", "1002_TIE_NEU_XX"):
        _touch(vf / f"{name}.flv")
    _touch(vf / "1003_DFA_FEA_XX.mp3")
    ds = load_paired("crema-d", tmp_path)
    assert [(i.label, i.subject, i.sentence) for i in ds] == [
        ("angry", "1001", "DFA"), ("happy", "1001", "IEO"), ("sad", "1002", "DFA"), ("neutral", "1002", "TIE")]
    assert ds.skipped == {"audio-only files (not paired audio-video)": 1}
    assert load_crema_d(vf).items == ds.items  # the flat folder itself
    _touch(vf / "1003_DFA_SUR_XX.flv")
    with pytest.raises(DatasetError, match=r"1003_DFA_SUR_XX\.flv: emotion code SUR is not a CREMA-D code"):
        load_paired("crema-d", tmp_path)
    (vf / "1003_DFA_SUR_XX.flv").unlink()
    _touch(vf / "clip.flv")
    with pytest.raises(DatasetError, match=r"clip\.flv: not a CREMA-D name"):
        load_paired("crema-d", tmp_path)


@needs_crema
def test_real_crema_d_samples() -> None:
    ds = load_paired("crema-d", CREMA)
    assert len(ds) == 6 and ds.subjects == ["1001"] and {i.sentence for i in ds} == {"DFA"}
    assert sorted(i.label for i in ds) == sorted(e for e in EMOTIONS if e != "surprise")
    assert ds.skipped == {"audio-only files (not paired audio-video)": 6}  # actor 1002's mp3s
    with pytest.raises(DatasetError, match=r"one subject only \(1001\).*cv: none"):
        subject_folds(ds.items)


# -- MELD ------------------------------------------------------------------------------------------

MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def _meld(root: Path) -> None:
    rows = {"train": [("Oh my God!", "Rachel", "surprise", 0, 0), ("Hi.", "Joey", "joy", 0, 1),
                      ("No.", "Ross", "anger", 1, 0)],
            "dev": [("Okay.", "Monica", "neutral", 0, 0), ("Sure, fine.", "Chandler", "sadness", 0, 1)],
            "test": [("What?", "Phoebe", "fear", 0, 0)]}
    folders = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
    for split, rs in rows.items():
        lines = [f'{i + 1},"{u}",{s},{e},x,{d},{n},1,1,00:00:01,00:00:02\n' for i, (u, s, e, d, n) in enumerate(rs)]
        (root / f"{split}_sent_emo.csv").write_text(MELD_HEADER + "".join(lines))
        for _, _, _, d, n in rs:
            _touch(root / folders[split] / f"dia{d}_utt{n}.mp4")


def test_meld_layout_reports_missing_videos(tmp_path: Path) -> None:
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    _meld(root)
    (root / "dev_splits_complete" / "dia0_utt1.mp4").unlink()  # MELD's own archives lack a few clips
    ds = load_paired("meld", tmp_path)
    assert [(i.label, i.subject, i.split, i.sentence) for i in ds] == [
        ("surprise", "Rachel", "train", "Oh my God!"), ("happy", "Joey", "train", "Hi."),
        ("angry", "Ross", "train", "No."), ("neutral", "Monica", "dev", "Okay."), ("fear", "Phoebe", "test", "What?")]
    assert ds.skipped == {"meld dev: video missing": 1} and "dia0_utt1.mp4" in ds.notes[0]
    assert [i.split for i in load_meld(root, splits=["test"])] == ["test"]
    # the official split has no speaker in both train/dev and test here, so it is allowed
    (fold,) = subject_folds(ds.items, "official")
    assert fold.test_subjects == ("Phoebe",) and len(fold.train) == 4


def test_meld_bad_input_is_named(tmp_path: Path) -> None:
    _meld(tmp_path)
    csv = tmp_path / "test_sent_emo.csv"
    csv.write_text(MELD_HEADER + '1,"Hm.",Phoebe,contempt,x,0,0,1,1,00:00:01,00:00:02\n')
    with pytest.raises(DatasetError, match=r"test_sent_emo\.csv: row 2: emotion 'contempt' is not a MELD label"):
        load_paired("meld", tmp_path)
    csv.write_text("Utterance,Emotion\nHm.,joy\n")
    with pytest.raises(DatasetError, match=r"test_sent_emo\.csv: missing column\(s\) \['Speaker'"):
        load_paired("meld", tmp_path)
    csv.unlink()
    for f in (tmp_path / "train_splits").iterdir():
        f.unlink()
    (tmp_path / "train_splits").rmdir()
    with pytest.raises(DatasetError, match="MELD train videos not found.*train_splits"):
        load_paired("meld", tmp_path)


# -- CAER-S and EMOTIC -----------------------------------------------------------------------------

def test_caer_s_has_no_subjects_so_only_the_official_split(tmp_path: Path) -> None:
    for split, cls in (("train", "Anger"), ("train", "Happy"), ("test", "Sad")):
        d = tmp_path / "CAER-S" / split / cls
        d.mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(d / "0001.png")
    ds = load_paired("caer-s", tmp_path)
    assert [(i.label, i.split, i.subject) for i in ds] == [("angry", "train", None), ("happy", "train", None),
                                                          ("sad", "test", None)]
    assert "official split is the only subject-safe split" in ds.notes[0]
    with pytest.raises(DatasetError, match="caer-s: items have no subject ids.*cv: official"):
        subject_folds(ds.items, "group-kfold")
    (fold,) = subject_folds(ds.items, "official")
    assert fold.train.tolist() == [0, 1] and fold.test.tolist() == [2]


def _emotic_mat(path: Path) -> None:
    """A small Annotations.mat in EMOTIC's struct layout: one person per image."""
    from scipy.io import savemat

    def person(box: list[float], cats: list[str]) -> np.ndarray:
        cont = np.zeros((1,), dtype=[("valence", "O"), ("arousal", "O"), ("dominance", "O")])
        cont[0] = (5, 5, 5)
        p = np.zeros((1,), dtype=[("body_bbox", "O"), ("combined_categories", "O"), ("combined_continuous", "O")])
        p[0] = (np.array(box), np.array(cats, dtype=object), cont)
        return p

    entry = [("filename", "O"), ("folder", "O"), ("person", "O")]
    splits = {}
    for split, cats in (("train", [["Happiness"], ["Anger", "Fear"]]), ("val", [["Peace"]]), ("test", [["Sadness"]])):
        e = np.zeros((len(cats),), dtype=entry)
        for i, c in enumerate(cats):
            e[i] = (f"{split}{i}.jpg", "mscoco/images", person([10, 20, 60, 90], c))
        splits[split] = e
    path.parent.mkdir(parents=True)
    savemat(str(path), splits)


def test_emotic_keeps_single_label_persons(tmp_path: Path) -> None:
    _emotic_mat(tmp_path / "Annotations" / "Annotations.mat")
    ds = load_paired("emotic", tmp_path)
    assert [(i.path.name, i.label, i.split, i.body_box, i.subject) for i in ds] == [
        ("train0.jpg", "happy", "train", (10, 20, 50, 70), None), ("test0.jpg", "sad", "test", (10, 20, 50, 70), None)]
    assert ds.skipped == {"several canonical labels": 1, "no canonical label": 1}
    assert len(load_emotic_paired(tmp_path, splits=["train"])) == 1


# -- folds and dispatch ----------------------------------------------------------------------------

def test_subject_folds_are_disjoint() -> None:
    items = [PairedItem(Path(f"{s}_{k}.flv"), EMOTIONS[k % 7], s, "crema-d") for s in "abcdef" for k in range(7)]
    for method, n in (("group-kfold", 3), ("loso", 6)):
        folds = subject_folds(items, method, folds=3)
        assert len(folds) == n
        assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(items)))
        for f in folds:
            assert not {items[i].subject for i in f.train} & {items[i].subject for i in f.test}
            assert set(f.test_subjects) == {items[i].subject for i in f.test}
    with pytest.raises(DatasetError, match="7 folds asked for, but there are 6 subjects"):
        subject_folds(items, "group-kfold", folds=7)
    with pytest.raises(DatasetError, match="unknown cv method 'random'"):
        subject_folds(items, "random")
    with pytest.raises(DatasetError, match="not subject-disjoint"):
        group_folds(["a", "b", "a"], ["train", "train", "test"], "meld", "official")
    with pytest.raises(DatasetError, match="unknown paired dataset 'affectnet'"):
        load_paired("affectnet", ".")
