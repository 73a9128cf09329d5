"""Ablations and the fusion card on real held-out predictions, and the analyze command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE_PHOTO, FER_CSV, SHARED_DATA, needs_fer
from mmfer.cli.main import main
from mmfer.emotions import EMOTIONS
from mmfer.evaluation.ablation import LabelledSet, ckplus_set, fuse_held_out, ravdess_set
from mmfer.fusion.calibration import fit_temperature
from mmfer.fusion.late_fusion import LateFusion, ModalityCal


def test_held_out_temperatures_never_see_the_scored_fold() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 60)
    probs = rng.dirichlet(np.ones(7), 60)
    fold = np.repeat([0, 1, 2], 20)
    ds = LabelledSet("toy", "toy", y, {"audio": probs}, fold, refit=("audio",))
    fusion = LateFusion({"audio": ModalityCal(floor=0.0)})
    out = fuse_held_out(fusion, ds, ("audio",))
    t0 = fit_temperature(probs[fold != 0], y[fold != 0])  # fold 0 scored with a T fitted on folds 1-2 only
    expected = LateFusion({"audio": ModalityCal(temperature=t0, floor=0.0)}).fuse_batch({"audio": probs[:20]})
    np.testing.assert_allclose(out[:20], expected, atol=1e-9)


def test_shipped_out_of_fold_sets() -> None:
    ck, rav = ckplus_set("video_bigru_ckplus", None), ravdess_set("audio_crnn")
    assert len(ck.y) == 27 and set(ck.outputs) == {"face", "temporal"} and len(set(ck.fold)) == 7
    assert len(rav.y) == 1440 and rav.outputs["audio"].shape == (1440, 7)
    assert np.allclose(rav.outputs["audio"].sum(1), 1, atol=1e-4)
    assert "calm" not in EMOTIONS and (rav.y == EMOTIONS.index("neutral")).sum() == 288  # 96 neutral + 192 calm


def test_ablate_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sets = "ckplus,ravdess,fer2013" if FER_CSV.is_file() else "ckplus,ravdess"
    args = ["ablate", "--sets", sets, "--out", str(tmp_path), "--no-scene", "--limit", "300"]
    if FER_CSV.is_file():
        args += ["--data-root", str(SHARED_DATA)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ckplus (27): face only" in out and "best single temporal" in out
    rows = list(csv.DictReader(open(tmp_path / "ablation.csv")))
    ck = {r["modalities"]: r for r in rows if r["set"] == "ckplus"}
    assert set(ck) == {"face", "temporal", "face+temporal", "face+temporal fitted"}
    assert all(r["n"] == "27" for r in ck.values()) and ck["face+temporal fitted"]["kind"] == "fitted (nested CV)"
    assert float(ck["face"]["delta_accuracy_vs_face"]) == 0.0
    delta = float(ck["face+temporal"]["accuracy"]) - float(ck["face"]["accuracy"])
    assert float(ck["face+temporal"]["delta_accuracy_vs_face"]) == pytest.approx(delta)
    # the default rule counts the face CNN once: face+temporal is the temporal head's answer
    assert ck["face+temporal"]["accuracy"] == ck["temporal"]["accuracy"]
    for r in ck.values():  # 95% bootstrap interval around each accuracy
        assert float(r["ci_low"]) <= float(r["accuracy"]) <= float(r["ci_high"])
    rav = [r for r in rows if r["set"] == "ravdess"]
    assert len(rav) == 1 and rav[0]["modalities"] == "audio" and rav[0]["delta_accuracy_vs_face"] == ""
    md = (tmp_path / "ablation.md").read_text()
    assert md.index("| set | n | face only | best single | fused |") < md.index("## ckplus")  # the first table
    assert "Δ vs face-only" in md and "the CK+ clips are silent" in md and "McNemar" in md
    assert (tmp_path / "ablation.png").stat().st_size > 10_000
    doc = json.loads((tmp_path / "ablation.json").read_text())
    assert {c["modality"] for c in doc["calibration"] if c["set"] == "ckplus"} == {"face", "temporal"}
    head = {h["set"]: h for h in doc["headline"]}
    assert head["ravdess"]["fused"]["accuracy"] == head["ravdess"]["best_single"]["accuracy"]  # audio unchanged
    assert head["ckplus"]["fused"]["modalities"] == "face+temporal fitted"
    assert 0 <= head["ckplus"]["mcnemar"]["p"] <= 1
    if FER_CSV.is_file():
        fer = [r for r in rows if r["set"] == "fer2013"]
        assert [r["modalities"] for r in fer] == ["face"] and fer[0]["n"] == "300"
        assert "scene: switched off" in md


@needs_fer
@pytest.mark.slow
def test_calibrate_builds_a_usable_fusion_card(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    card = tmp_path / "fusion.json"
    assert main(["calibrate", "--data-root", str(SHARED_DATA), "--out", str(card)]) == 0
    fusion = LateFusion.load(card)
    face = fusion.modalities["face"]
    assert face.calibration["source"] == "FER-2013 PublicTest" and face.calibration["n"] == 3589
    assert face.calibration["held_out"] == "FER-2013 PrivateTest"
    assert fusion.modalities["temporal"].known[EMOTIONS.index("neutral")] is False  # CK+ has no neutral clips
    assert abs(sum(face.prior) - 1) < 1e-3 and face.prior[EMOTIONS.index("happy")] > 0.2  # FER-2013's skew
    for m in ("face", "audio", "temporal"):
        cal = fusion.modalities[m].calibration
        assert cal["nll_after"] <= cal["nll_before"] + 1e-9  # the temperature minimises NLL on these predictions
        assert {"held_out_ece_before", "held_out_ece_after"} <= set(cal)
    assert "fusion card written" in capsys.readouterr().out


def test_analyze_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    wav = EXAMPLE_PHOTO.parent / "voice.wav"
    code = main(["analyze", str(EXAMPLE_PHOTO), str(wav), str(bad), "--json", "--no-scene", "--no-temporal"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == 1 and "bad.wav" in captured.err
    photo, voice, broken = doc["results"]
    assert photo["kind"] == "image" and photo["fused"]["modalities"] == ["face"]
    assert voice["kind"] == "audio" and voice["fused"]["modalities"] == ["audio"]
    assert "error" in broken and doc["branches"]["scene"]["reason"] == "switched off"
    assert main(["analyze", str(EXAMPLE_PHOTO), "--no-scene"]) == 0
    out = capsys.readouterr().out
    assert "push towards" in out and "scene: skipped (switched off)" in out
