import pytest

from mmfer.emotions import EMOTIONS, LABEL_SETS, MAPPINGS, index_map, normalize_name, to_canonical


def test_canonical_order_is_fer2013():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert index_map("fer2013") == list(range(7))


@pytest.mark.parametrize("source", list(LABEL_SETS))
def test_every_source_label_has_an_explicit_mapping(source):
    assert set(MAPPINGS[source]) == set(LABEL_SETS[source])
    for target in MAPPINGS[source].values():
        assert target is None or target in EMOTIONS


def test_ferplus_mapping_by_name():
    m = index_map("ferplus")
    names = LABEL_SETS["ferplus"]
    assert EMOTIONS[m[names.index("happiness")]] == "happy"
    assert EMOTIONS[m[names.index("anger")]] == "angry"
    assert m[names.index("contempt")] == -1
    assert index_map("ferplus", fold=True)[names.index("contempt")] == EMOTIONS.index("disgust")


def test_ravdess_calm_and_ckplus_contempt_have_no_counterpart():
    assert to_canonical("calm", "ravdess") is None
    assert to_canonical("calm", "ravdess", fold=True) == "neutral"
    assert to_canonical("contempt", "ckplus") is None
    assert to_canonical("fearful", "ravdess") == "fear"
    assert index_map("ravdess") == [6, -1, 3, 4, 0, 2, 1, 5]
    assert index_map("ckplus") == [6, 0, -1, 1, 2, 3, 4, 5]


def test_unknown_labels_are_rejected():
    with pytest.raises(ValueError, match="not a ravdess label"):
        to_canonical("bored", "ravdess")
    with pytest.raises(ValueError, match="unknown label set"):
        index_map("affectnet")
    assert normalize_name(" Happiness ") == "happy"
    with pytest.raises(ValueError, match="not an emotion"):
        normalize_name("bored")
