"""RAVDESS file names, discovery in both layouts, actor-disjoint folds, labels and folder datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import RAVDESS, needs_ravdess, voice
from mmfer.data.fer2013 import DatasetError
from mmfer.data.ravdess import actor_folds, find_labelled_folder, find_ravdess, parse_ravdess_name
from mmfer.emotions import AUDIO_EMOTIONS, EMOTIONS, audio_label, fold_to_canonical


def test_parse_every_field() -> None:
    r = parse_ravdess_name("Actor_12/03-01-06-02-02-01-12.wav")
    assert (r.modality, r.vocal_channel, r.emotion, r.intensity, r.statement, r.repetition, r.actor) == (
        "audio-only", "speech", "fearful", "strong", 2, 1, 12)
    assert r.gender == "female" and r.label == "fear"
    assert parse_ravdess_name("01-02-02-01-01-02-07.mp4").gender == "male"
    assert parse_ravdess_name("03-01-02-01-01-01-01.flac").label == "calm"


@pytest.mark.parametrize(("name", "field"), [
    ("03-01-09-01-01-01-01.wav", "emotion code 09"), ("04-01-01-01-01-01-01.wav", "modality code 04"),
    ("03-01-01-01-01-01-25.wav", "actor 25"), ("03-01-01-03-01-01-01.wav", "intensity code 03"),
    ("03-01-01-01-01-03-01.wav", "repetition code 03"), ("hello.wav", "not a RAVDESS name"),
])
def test_bad_names_say_which_field(name: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        parse_ravdess_name(name)


def test_labels_through_the_vocabulary() -> None:
    mapped = {e: audio_label(e, "ravdess") for e in
              ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")}
    assert mapped == {"neutral": "neutral", "calm": "calm", "happy": "happy", "sad": "sad", "angry": "angry",
                      "fearful": "fear", "disgust": "disgust", "surprised": "surprise"}
    assert AUDIO_EMOTIONS[:7] == EMOTIONS and AUDIO_EMOTIONS[7] == "calm"
    folded = fold_to_canonical({"neutral": 0.2, "calm": 0.3, "happy": 0.5})
    assert folded["neutral"] == pytest.approx(0.5) and set(folded) == set(EMOTIONS)


@pytest.mark.parametrize("k", [2, 3, 4, 6, 12])
def test_actor_folds_are_disjoint_cover_everyone_and_mix_genders(k: int) -> None:
    folds = actor_folds(range(1, 25), k, seed=3)
    flat = [a for f in folds for a in f]
    assert sorted(flat) == list(range(1, 25))  # every actor in exactly one test fold
    for f in folds:
        assert any(a % 2 for a in f) and any(a % 2 == 0 for a in f)
        assert len(f) == 24 // k
    assert actor_folds(range(1, 25), k, seed=3) == folds  # seeded
    with pytest.raises(ValueError, match="13 male"):
        actor_folds(range(1, 25), 13)


def _fake_tree(root: Path) -> None:
    for actor in (1, 2):
        d = root / "ravdess" / f"Actor_{actor:02d}"
        d.mkdir(parents=True)
        for emo in (1, 5):
            stem = f"03-01-{emo:02d}-01-01-01-{actor:02d}"
            sf.write(d / f"{stem}.flac", voice(150, 0.6), 16000)
            sf.write(d / f"{stem}.wav", voice(150, 0.6, 48000), 48000)  # an original next to the FLAC copy
        sf.write(d / f"03-02-05-01-01-01-{actor:02d}.wav", voice(300, 0.6), 16000)  # song
        (d / "readme.txt").write_text("not audio")


def test_find_ravdess_layouts_and_filters(tmp_path: Path) -> None:
    _fake_tree(tmp_path)
    items = find_ravdess(tmp_path)
    assert [i.path.name for i in items] == ["03-01-01-01-01-01-01.wav", "03-01-01-01-01-01-02.wav",
                                            "03-01-05-01-01-01-01.wav", "03-01-05-01-01-01-02.wav"]
    assert len(find_ravdess(tmp_path / "ravdess", channel=("speech", "song"))) == 6
    with pytest.raises(DatasetError, match="RAVDESS not found"):
        find_ravdess(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="no RAVDESS"):
        find_ravdess(tmp_path / "ravdess" / "Actor_01", modality="video-only")


@needs_ravdess
def test_shared_ravdess_is_complete() -> None:
    items = find_ravdess(RAVDESS)
    assert len(items) == 1440
    actors = np.array([i.actor for i in items])
    assert set(actors) == set(range(1, 25)) and all((actors == a).sum() == 60 for a in range(1, 25))
    labels = [i.label for i in items]
    assert {lab: labels.count(lab) for lab in set(labels)} == {
        "neutral": 96, "calm": 192, "happy": 192, "sad": 192, "angry": 192, "fear": 192, "disgust": 192,
        "surprise": 192}


def test_labelled_folder(tmp_path: Path) -> None:
    for folder in ("Anger", "calm", "happiness"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "x.wav", voice(150, 0.6), 16000)
    (tmp_path / "happiness" / "notes.txt").write_text("skip me")
    assert [(p.parent.name, lab) for p, lab in find_labelled_folder(tmp_path)] == [
        ("Anger", "angry"), ("calm", "calm"), ("happiness", "happy")]
    (tmp_path / "bored").mkdir()
    with pytest.raises(DatasetError, match="bored: folder name is not an emotion"):
        find_labelled_folder(tmp_path)
