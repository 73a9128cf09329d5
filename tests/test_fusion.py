"""Late fusion: exact decomposition, any subset of modalities, unknown classes, calibration that
improves ECE on held-out predictions, and the fusion card."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from mmfer.emotions import EMOTIONS
from mmfer.evaluation.metrics import expected_calibration_error
from mmfer.fusion.calibration import apply_temperature, calibrate, fit_temperature
from mmfer.fusion.late_fusion import MODALITIES, FittedRule, FusionError, LateFusion, ModalityCal, class_prior

RNG = np.random.default_rng(0)


def _probs(n: int = 1, sharp: float = 2.0) -> np.ndarray:
    z = RNG.normal(0, sharp, (n, 7))
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _fusion() -> LateFusion:
    no_neutral = [True] * 6 + [False]
    return LateFusion({
        "face": ModalityCal(temperature=1.3, prior=class_prior([4000, 400, 4000, 7000, 4800, 3100, 4900])),
        "temporal": ModalityCal(temperature=0.8, weight=0.7, prior=class_prior([5, 4, 3, 6, 4, 5, 0]),
                                known=no_neutral),
        "audio": ModalityCal(temperature=1.1, prior=class_prior([1, 1, 1, 1, 1, 1, 3])),
        "scene": ModalityCal(weight=0.5),
    })


def _fitted(fusion: LateFusion, subset: tuple[str, ...], use: bool) -> FittedRule:
    w = {m: float(RNG.uniform(0, 2)) for m in subset}
    return FittedRule(subset, w, tuple(RNG.normal(0, 0.5, 7)), use, subset[-1], reference=subset[-1],
                      data="toy")


def test_scores_decompose_exactly_for_every_subset() -> None:
    """For the default card and for cards with fitted rules (used or fallen back) on every subset:
    the stored fused scores equal prior + offsets + the sum of contributions, and softmax gives the probs."""
    base = _fusion()
    subsets = [s for r in range(1, 5) for s in itertools.combinations(MODALITIES, r)]
    for use in (None, True, False):
        rules = () if use is None else [_fitted(base, s, use) for s in subsets if len(s) > 1]
        fusion = base.replace(rules=rules)
        for subset in subsets:
            outputs = {m: _probs()[0] for m in subset}
            res = fusion.fuse(outputs)
            plan = fusion.plan(subset)
            assert list(res.contributions) == list(subset) and res.reference == plan.reference
            total = res.prior_term + res.offset + sum(res.contributions.values())
            np.testing.assert_allclose(res.scores, total, atol=1e-12)
            z = np.exp(res.scores - res.scores.max())
            np.testing.assert_allclose(res.probs, z / z.sum(), atol=1e-12)
            for m, w in res.weights.items():  # a left-out modality adds exactly nothing
                assert (w == 0) == (not res.contributions[m].any()) or not outputs[m].any()
            k = int(res.probs.argmax())
            centred = res.scores[k] - res.scores.mean()
            assert sum(res.pushes().values()) == pytest.approx(centred, abs=1e-9)
            batch = fusion.fuse_batch({m: v[None] for m, v in outputs.items()})
            np.testing.assert_allclose(batch[0], res.probs, atol=1e-12)
            doc = res.to_dict()
            assert doc["emotion"] == EMOTIONS[k] and sum(doc["probabilities"].values()) == pytest.approx(1, abs=1e-3)
            if use is False and len(subset) > 1:  # the fallback: only the best single branch counts
                assert [m for m, w in res.weights.items() if w > 0] == [subset[-1]]
                np.testing.assert_allclose(res.probs, fusion.fuse({subset[-1]: outputs[subset[-1]]}).probs)
                assert all("did not beat" in res.notes[m] for m in subset[:-1])


def test_face_and_temporal_share_evidence_and_count_once() -> None:
    fusion = _fusion()  # the temporal head knows no neutral
    face, temporal = _probs()[0], np.array([0.1, 0.1, 0.1, 0.5, 0.1, 0.1, 0.0])
    neutral = EMOTIONS.index("neutral")
    res = fusion.fuse({"face": face, "temporal": temporal})
    # the face CNN counts once: through the temporal head on the six classes it knows, and through the
    # frame average only on neutral, which the temporal head never saw
    assert np.flatnonzero(res.contributions["face"]).tolist() == [neutral]
    assert res.contributions["temporal"][neutral] == 0 and res.reference == "temporal"
    assert "counted only on neutral, which temporal never saw" in res.notes["face"]
    alone = fusion.fuse({"temporal": temporal})
    np.testing.assert_allclose(res.scores[:neutral], alone.scores[:neutral], atol=1e-12)
    # neutral's prior is the face's (the temporal head's smoothed zero count would rule neutral out)
    assert res.prior_term[neutral] == fusion.modalities["face"].log_prior[neutral]
    # a temporal head that knows every class: the face frame average is left out entirely
    full = fusion.replace(modalities={**fusion.modalities, "temporal": ModalityCal(temperature=0.8, weight=0.7)})
    res = full.fuse({"face": face, "temporal": temporal})
    assert res.weights["face"] == 0 and not res.contributions["face"].any()
    assert "counted once with temporal" in res.notes["face"]
    np.testing.assert_allclose(res.probs, full.fuse({"temporal": temporal}).probs, atol=1e-12)
    # alone, the face counts in full; with audio too, face + temporal still count once
    assert fusion.fuse({"face": face}).weights == {"face": 1.0}
    three = full.fuse({"face": face, "temporal": temporal, "audio": _probs()[0]})
    assert three.weights["face"] == 0.0 and three.weights["audio"] == 1.0
    # without the group (a card that declares none), the product of experts counts both everywhere
    both = fusion.replace(groups=()).fuse({"face": face, "temporal": temporal})
    assert both.weights["face"] == 1.0 and np.count_nonzero(both.contributions["face"]) == 7


def test_a_lone_branch_passes_through_and_missing_ones_are_skipped() -> None:
    fusion = LateFusion({"face": ModalityCal(prior=class_prior([10, 1, 5, 20, 8, 6, 12]), floor=0.0),
                         "audio": ModalityCal(floor=0.0)})
    p = _probs(5)
    np.testing.assert_allclose(fusion.fuse_batch({"face": p}), p, atol=1e-9)
    np.testing.assert_allclose(fusion.fuse({"face": p[0], "audio": None}).probs, p[0], atol=1e-9)
    both = fusion.fuse({"face": p[0], "audio": p[1]})
    # Product of experts: equal, uniform-prior audio evidence multiplies face's probabilities.
    expected = p[0] * p[1] / (p[0] * p[1]).sum()
    np.testing.assert_allclose(both.probs, expected, atol=1e-9)
    with pytest.raises(FusionError, match="nothing to fuse"):
        fusion.fuse({"face": None})
    with pytest.raises(FusionError, match=r"no fusion settings for \['scene'\]"):
        fusion.fuse({"scene": p[0]})


def test_classes_a_branch_never_saw_get_no_evidence() -> None:
    fusion = _fusion()
    temporal = np.array([0.1, 0.1, 0.1, 0.5, 0.1, 0.1, 0.0])  # a CK+ head: no neutral
    c = fusion.fuse({"face": _probs()[0], "temporal": temporal}).contributions["temporal"]  # temporal counts
    assert c[EMOTIONS.index("neutral")] == 0.0 and c[EMOTIONS.index("happy")] > 0
    # Weight 0 turns a modality off without changing anything else.
    no_neutral = [True] * 6 + [False]
    off = fusion.replace(modalities={**fusion.modalities, "temporal": ModalityCal(weight=0.0, known=no_neutral)},
                         groups=())
    face = _probs()[0]
    np.testing.assert_allclose(off.fuse({"face": face, "temporal": temporal}).probs, off.fuse({"face": face}).probs)


def test_temperature_fitting_improves_ece_on_held_out_predictions() -> None:
    n = 4000
    y = RNG.integers(0, 7, n)
    logits = RNG.normal(0, 1, (n, 7))
    logits[np.arange(n), y] += 1.5  # so the true posterior is softmax(1.5 * logits)
    overconfident = apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 1 / 3)
    cal = calibrate(overconfident[:2000], y[:2000], "first half")  # softmax(3 * logits): the right T is 2
    assert 1.7 < cal.temperature < 2.3 and cal.ece_after < cal.ece_before and cal.nll_after < cal.nll_before
    held_out = overconfident[2000:]
    before = expected_calibration_error(y[2000:], held_out)
    after = expected_calibration_error(y[2000:], apply_temperature(held_out, cal.temperature))
    assert after < 0.5 * before, (before, after)
    assert (apply_temperature(held_out, cal.temperature).argmax(1) == held_out.argmax(1)).all()  # ranking kept
    assert fit_temperature(apply_temperature(held_out, cal.temperature), y[2000:]) == pytest.approx(1.0, abs=0.15)


def test_fusion_card_round_trip_and_bad_cards(tmp_path: Path) -> None:
    fusion = _fusion()
    path = fusion.save(tmp_path / "fusion.json")
    again = LateFusion.load(path)
    outputs = {"face": _probs()[0], "audio": _probs()[0], "temporal": _probs()[0]}
    np.testing.assert_allclose(again.fuse(outputs).probs, fusion.fuse(outputs).probs)
    doc = json.loads(path.read_text())
    doc["modalities"]["face"]["temperature"] = -1
    path.write_text(json.dumps(doc))
    with pytest.raises(FusionError, match="fusion.json: temperature must be positive"):
        LateFusion.load(path)
    path.write_text("{")
    with pytest.raises(FusionError, match="fusion.json"):
        LateFusion.load(path)
    with pytest.raises(FusionError, match="no such fusion card"):
        LateFusion.load(tmp_path / "nope.json")
    with pytest.raises(FusionError, match="unknown modalities"):
        LateFusion({"smell": ModalityCal()})
    with pytest.raises(FusionError, match="prior must be positive"):
        ModalityCal(prior=[1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(FusionError, match="expected finite non-negative probabilities"):
        fusion.fuse({"face": np.full(7, np.nan)})
    # fitted rules and groups survive the round trip
    fitted = fusion.replace(rules=[_fitted(fusion, ("face", "audio"), True)])
    again = LateFusion.load(fitted.save(tmp_path / "fitted.json"))
    assert again.rules == fitted.rules and again.groups == fitted.groups
    np.testing.assert_allclose(again.fuse(outputs).probs, fitted.fuse(outputs).probs)
    doc = json.loads((tmp_path / "fitted.json").read_text())
    doc["fitted"][0]["modalities"] = ["face", "smell"]
    path.write_text(json.dumps(doc))
    with pytest.raises(FusionError, match="fusion.json: .*weights for"):
        LateFusion.load(path)


def test_older_and_newer_cards(tmp_path: Path) -> None:
    doc = _fusion().to_dict()
    for key in ("version", "shared_evidence", "fitted"):
        doc.pop(key)  # what version 1 wrote
    (tmp_path / "v1.json").write_text(json.dumps(doc))
    old = LateFusion.load(tmp_path / "v1.json")
    assert old.groups and not old.rules and "version-1 fusion card" in old.notes[0]
    assert "mmfer train fusion" in old.notes[0]
    doc["version"] = 99
    (tmp_path / "v99.json").write_text(json.dumps(doc))
    with pytest.raises(FusionError, match="v99.json: card version 99 is newer.*upgrade mmfer, or rebuild it with"):
        LateFusion.load(tmp_path / "v99.json")
