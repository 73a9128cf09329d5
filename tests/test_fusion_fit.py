"""Fitted fusion: the verdict and its fallback, nested CV that never leaks a subject, the train command
on the shipped CK+ predictions, and bad paired data / configs / cards refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmfer.cli.main import main
from mmfer.config import ConfigError, FusionTrainCfg, load_config
from mmfer.fusion.fit import FitLog, PairedPredictions, check_no_leak, fit_rule, load_predictions, subject_folds
from mmfer.fusion.late_fusion import FusionError, LateFusion, ModalityCal
from mmfer.training.train_fusion import train_fusion

RNG = np.random.default_rng(0)


def _onehotish(labels: np.ndarray, conf: float) -> np.ndarray:
    p = np.full((len(labels), 7), (1 - conf) / 6)
    p[np.arange(len(labels)), labels] = conf
    return p


def _toy(helpful: bool, n_subj: int = 6, per: int = 12, seed: int = 0) -> PairedPredictions:
    """Face: right on every sample but barely confident. Audio: either a second, independent weak view
    that is often right (fusion helps), or a confident habit per subject that is wrong half the time
    (nothing to add to a face that is always right: fusion cannot help)."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat([f"s{i}" for i in range(n_subj)], per)
    y = rng.integers(0, 7, len(subjects))
    if helpful:
        noisy = np.where(rng.random(len(y)) < 0.55, y, rng.integers(0, 7, len(y)))
        face = _onehotish(noisy, 0.4)
        noisy2 = np.where(rng.random(len(y)) < 0.55, y, rng.integers(0, 7, len(y)))
        audio = _onehotish(noisy2, 0.4)
    else:
        face = _onehotish(y, 0.2)
        habit = {s: rng.integers(0, 7) for s in np.unique(subjects)}
        audio = _onehotish(np.array([habit[s] if rng.random() < 0.5 else t for s, t in zip(subjects, y, strict=True)]),
                           0.9)
    return PairedPredictions(y, {"face": face, "audio": audio}, subjects, "toy paired predictions")


FUSION = LateFusion({"face": ModalityCal(), "audio": ModalityCal()}, groups=())


def test_fallback_when_fusion_cannot_help_and_use_when_it_does() -> None:
    rule, held = fit_rule(FUSION, _toy(helpful=False), ["face", "audio"])
    s = rule.scores
    assert not rule.use and rule.fallback == "face" and s["fused_cv_accuracy"] < s["single_accuracy"]["face"] == 1.0
    assert "falls back to face" in rule.verdict
    assert s["nested_accuracy"] == pytest.approx(1.0)  # the whole procedure kept the face on every outer fold
    card = FUSION.replace(rules=[rule])
    res = card.fuse({"face": held["single"]["face"][0], "audio": _toy(False).outputs["audio"][0]})
    assert res.weights["audio"] == 0 and "did not beat face alone" in res.notes["audio"]

    rule, held = fit_rule(FUSION, _toy(helpful=True), ["face", "audio"])
    s = rule.scores
    assert rule.use and s["fused_cv_accuracy"] > max(s["single_accuracy"].values())
    fitted = FUSION.replace(rules=[rule]).fuse({"face": _toy(True).outputs["face"][0],
                                                "audio": _toy(True).outputs["audio"][0]})
    assert fitted.rule.startswith("fitted on toy") and fitted.offset.any()
    np.testing.assert_allclose(fitted.scores, fitted.prior_term + fitted.offset + sum(fitted.contributions.values()),
                               atol=1e-12)


def test_nested_cv_never_fits_on_the_subject_it_scores() -> None:
    log = FitLog()
    data = _toy(helpful=True, n_subj=5)
    fit_rule(FUSION, data, ["face", "audio"], log=log)
    check_no_leak(log)
    # 5 outer folds x 4 inner fits, the 5 outer fits that were used, the 5-fold CV, and nothing scored twice
    inner = [e for e in log.entries if e[0].startswith("nested inner")]
    assert len(inner) == 20 and all(len(seen) == 3 and len(scored) == 1 for _, seen, scored in inner)
    cv = [e for e in log.entries if e[0] == "cross-validated fit"]
    assert sorted(next(iter(sc)) for _, _, sc in cv) == sorted(set(data.subjects))
    with pytest.raises(AssertionError, match="saw subjects it is scored on"):
        log.add("leaky", np.array(["s1", "s2"]), np.array(["s2"]))
    # many subjects: grouped into 10 subject-disjoint folds
    folds = subject_folds(np.repeat(np.arange(40), 3).astype(str))
    assert len(np.unique(folds)) == 10 and all(len(np.unique(folds[np.repeat(np.arange(40), 3) == s])) == 1
                                               for s in range(40))


def test_bad_paired_data_is_refused_by_name(tmp_path: Path) -> None:
    data = _toy(helpful=True)
    one = PairedPredictions(data.y, data.outputs, np.full(len(data.y), "s0"), "one.npz")
    with pytest.raises(FusionError, match="one.npz: 1 subject"):
        fit_rule(FUSION, one, ["face", "audio"])
    nan = PairedPredictions(data.y, {**data.outputs, "audio": np.full_like(data.outputs["audio"], np.nan)},
                            data.subjects, "nan.npz")
    with pytest.raises(FusionError, match="nan.npz: audio predictions contain NaN"):
        fit_rule(FUSION, nan, ["face", "audio"])
    with pytest.raises(FusionError, match="unknown modality 'smell'"):
        fit_rule(FUSION, data, ["face", "smell"])
    no_neutral = FUSION.replace(modalities={**FUSION.modalities, "audio": ModalityCal(known=[True] * 6 + [False])})
    y = data.y.copy()
    y[0] = 6
    with pytest.raises(FusionError, match=r"labels \['neutral'\] are classes the audio branch never saw"):
        fit_rule(no_neutral, PairedPredictions(y, data.outputs, data.subjects, "x"), ["face", "audio"])
    # a user's predictions file
    np.savez(tmp_path / "p.npz", y=np.array(["happy", "sad", "cheerful"]), subject=np.array(["a", "b", "c"]),
             probs_face=np.full((3, 7), 1 / 7))
    with pytest.raises(FusionError, match=r"p.npz: labels \['cheerful'\] are not among"):
        load_predictions(tmp_path / "p.npz")
    np.savez(tmp_path / "q.npz", y=np.array([1, 2]), probs_face=np.full((2, 7), 1 / 7))
    with pytest.raises(FusionError, match="q.npz: no 'subject' array"):
        load_predictions(tmp_path / "q.npz")


def test_train_fusion_command_on_the_shipped_ckplus_predictions(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "fusion", "--config", "configs/fusion_ckplus.yaml", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "verdict:" in out and "nested CV" in out
    card = LateFusion.load(tmp_path / "fusion.json")
    rule = card.rule_for(["face", "temporal"])
    assert rule is not None and rule.scores["n"] == 27 and len(rule.scores["subjects"]) == 7
    best = max(rule.scores["single_accuracy"].values())
    assert rule.use == (rule.scores["fused_cv_accuracy"] >= best)
    report = json.loads((tmp_path / "fusion_report.json").read_text())
    assert report["metrics"]["nested"]["accuracy"] == pytest.approx(rule.scores["nested_accuracy"], abs=1e-6)
    assert "Verdict" in (tmp_path / "fusion_report.md").read_text()
    # the shipped card is this fit (re-run: `mmfer train fusion --config configs/fusion_ckplus.yaml --out
    # mmfer/weights/fusion`), and the pipeline uses it on clips with a face and the temporal head
    shipped = LateFusion.load("mmfer/weights/fusion/fusion.json").rule_for(["face", "temporal"])
    assert shipped is not None and shipped.weights == pytest.approx(rule.weights, abs=1e-6)


def test_bad_fusion_configs(tmp_path: Path) -> None:
    cfg = tmp_path / "f.yaml"
    cfg.write_text("name: x\nmodalities: [face, smell]\n")
    with pytest.raises(ConfigError, match=r"modalities: unknown \['smell'\]"):
        train_fusion(load_config(cfg, FusionTrainCfg), tmp_path)
    cfg.write_text("name: x\nmodalities: [face, temporal]\ncard: nowhere.json\n")
    with pytest.raises(FusionError, match="nowhere.json: no such fusion card"):
        train_fusion(load_config(cfg, FusionTrainCfg), tmp_path)
    cfg.write_text("name: x\ndata: {set: predictions}\n")
    with pytest.raises(ConfigError, match="data.predictions"):
        train_fusion(load_config(cfg, FusionTrainCfg), tmp_path)
    cfg.write_text("name: x\ncolour: red\n")
    with pytest.raises(ConfigError, match="unknown config key 'colour'"):
        load_config(cfg, FusionTrainCfg)
    assert main(["train", "fusion", "--config", str(cfg)]) == 2
