"""FER-2013 loaders: the real shared CSV, and generated CSV / folder / FER+ files."""

import gzip

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, needs_fer
from mmfer.data.fer2013 import DatasetError, load_csv_arrays, load_fer2013, load_ferplus_votes
from mmfer.emotions import EMOTIONS


def _write_csv(path, n_per_split=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for i in range(n_per_split):
            px = rng.integers(0, 256, 48 * 48)
            rows.append({"emotion": i % 7, "pixels": " ".join(map(str, px)), "Usage": usage})
    df = pd.DataFrame(rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            df.to_csv(fh, index=False)
    else:
        df.to_csv(path, index=False)
    return df


@needs_fer
def test_real_official_splits_and_class_counts():
    tr = load_fer2013("Training", SHARED_DATA)
    assert tr.images.shape == (28709, 48, 48) and tr.images.dtype == np.uint8
    assert np.bincount(tr.labels).tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    for split in ("PublicTest", "PrivateTest"):
        assert len(load_fer2013(split, SHARED_DATA)) == 3589
    assert len(tr.data_hash) == 64


@needs_fer
def test_real_ferplus_majority_and_soft():
    hard = load_fer2013("PrivateTest", SHARED_DATA, labels="ferplus")
    soft = load_fer2013("PrivateTest", SHARED_DATA, labels="ferplus-soft")
    assert 3000 < len(hard) < 3589  # dropped / mostly-unknown rows are removed
    assert np.array_equal(hard.source, soft.source)
    assert np.allclose(soft.soft.sum(1), 1.0)
    assert np.array_equal(soft.soft.argmax(1), hard.labels)
    # FER+ relabels a real share of images; it is not a copy of the FER-2013 labels
    orig = load_fer2013("PrivateTest", SHARED_DATA)
    agree = (orig.labels[np.searchsorted(orig.source, hard.source)] == hard.labels).mean()
    assert 0.5 < agree < 0.95


def test_csv_and_gz_load_the_same_and_cache_is_reused(tmp_path):
    for name in ("plain", "gz"):
        (tmp_path / name / "fer2013").mkdir(parents=True)
    df = _write_csv(tmp_path / "plain" / "fer2013" / "fer2013.csv")
    _write_csv(tmp_path / "gz" / "fer2013" / "fer2013.csv.gz")
    a = load_fer2013("PublicTest", tmp_path / "plain")
    b = load_fer2013("PublicTest", tmp_path / "gz")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    first = df[df.Usage == "PublicTest"].iloc[0]
    assert a.images[0].ravel().tolist() == [int(v) for v in first.pixels.split()]
    images, _, _ = load_csv_arrays(tmp_path / "plain" / "fer2013" / "fer2013.csv")
    assert isinstance(images, np.memmap)  # second load comes from the memory-mapped cache


def test_malformed_csv_names_the_file(tmp_path):
    (tmp_path / "fer2013").mkdir()
    bad = tmp_path / "fer2013" / "fer2013.csv"
    bad.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    with pytest.raises(DatasetError, match="fer2013.csv.*2304"):
        load_fer2013("Training", tmp_path)
    with pytest.raises(DatasetError, match="no fer2013.csv"):
        load_fer2013("Training", tmp_path / "nowhere")


def test_ferplus_votes_drop_rows(tmp_path):
    cols = ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
            "contempt", "unknown", "NF"]
    rows = [
        ["Training", "fer0.png", 0, 9, 1, 0, 0, 0, 0, 0, 0, 0],  # happy
        ["Training", "", 0, 0, 0, 0, 10, 0, 0, 0, 0, 0],  # dropped by FER+
        ["Training", "fer2.png", 1, 0, 0, 0, 0, 0, 0, 0, 0, 9],  # not a face
        ["Training", "fer3.png", 0, 0, 0, 0, 2, 0, 0, 8, 0, 0],  # contempt: no counterpart
    ]
    p = tmp_path / "fer2013new.csv"
    pd.DataFrame(rows, columns=cols).to_csv(p, index=False)
    votes, keep = load_ferplus_votes(p, 4)
    assert keep.tolist() == [True, False, False, False]
    assert EMOTIONS[int(votes[0].argmax())] == "happy"
    with pytest.raises(DatasetError, match="rows"):
        load_ferplus_votes(p, 5)


def test_image_folder_layout(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 20), ("test", 3)):
        for cls in ("angry", "happy", "surprise"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                size = 48 if i % 2 else 64  # other sizes are resized to 48x48
                cv2.imwrite(str(d / f"{i}.png"), rng.integers(0, 255, (size, size), dtype=np.uint8))
    test = load_fer2013("PrivateTest", tmp_path)
    assert len(test) == 9 and test.images.shape[1:] == (48, 48)
    assert sorted(set(test.labels.tolist())) == [EMOTIONS.index(c) for c in ("angry", "happy", "surprise")]
    train, val = load_fer2013("Training", tmp_path), load_fer2013("PublicTest", tmp_path)
    assert len(train) + len(val) == 60 and len(val) == 6  # a fixed 10% of train held out for selection
    assert not set(train.source) & set(val.source)
    (tmp_path / "train" / "bored").mkdir()
    with pytest.raises(DatasetError, match="bored"):
        load_fer2013("Training", tmp_path)


def test_data_root_from_environment(tmp_path, monkeypatch):
    (tmp_path / "fer2013").mkdir()
    _write_csv(tmp_path / "fer2013" / "fer2013.csv", n_per_split=2)
    monkeypatch.setenv("MMFER_DATA_ROOT", str(tmp_path))
    assert len(load_fer2013("PrivateTest")) == 2
