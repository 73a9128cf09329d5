"""How the speech model is scored off its training corpus: class subsets with calm folded into neutral,
per-corpus speaker-disjoint CV, a shipped model scored on whole corpora, utterance CMVN, parallel
feature extraction that gives the same table, and a short multi-corpus run that beats chance on a
corpus (and a language) it never heard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.stats import binomtest

from conftest import SHARED_DATA
from mmfer.audio.feature_table import apply_cmvn, build_feature_table
from mmfer.cli.main import main
from mmfer.config import AudioDataCfg, AudioFeatureCfg, AudioTrainCfg, ConfigError, load_config
from mmfer.evaluation.speech_scoring import CORE_CLASSES, restrict, score_on

REPO = Path(__file__).resolve().parents[1]
MULTI = REPO / "configs" / "audio_multicorpus_cpu.yaml"
MODEL8 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "calm")
needs_corpora = pytest.mark.skipif(not all((SHARED_DATA / c).is_dir() for c in ("ravdess", "emovo", "casia")),
                                   reason=f"RAVDESS, EMOVO and CASIA not all found under {SHARED_DATA}")
TINY = ["--set", "model.width=8", "--set", "model.hidden=16", "--set", "model.embed_dim=16"]


def test_restrict_folds_calm_into_neutral_and_renormalises() -> None:
    p = np.zeros((3, 8))
    p[0, MODEL8.index("calm")], p[0, MODEL8.index("sad")] = 0.5, 0.3  # calm + neutral beats sad once folded
    p[0, MODEL8.index("neutral")] = 0.2
    p[1, MODEL8.index("fear")], p[1, MODEL8.index("angry")] = 0.9, 0.1  # fear is not scored: angry wins
    p[2, MODEL8.index("happy")] = 1.0
    labels = ["neutral", "angry", "surprise"]  # surprise is not among the kept classes: dropped
    y, q, rows = restrict(labels, p, MODEL8, CORE_CLASSES)
    assert rows.tolist() == [0, 1] and y.tolist() == [CORE_CLASSES.index("neutral"), CORE_CLASSES.index("angry")]
    np.testing.assert_allclose(q.sum(1), 1.0)
    assert q[0].argmax() == CORE_CLASSES.index("neutral") and q[0, CORE_CLASSES.index("neutral")] == pytest.approx(0.7)
    assert q[1, CORE_CLASSES.index("angry")] == pytest.approx(1.0)
    rep = score_on(labels, p, MODEL8, CORE_CLASSES)
    assert rep["n"] == 2 and rep["accuracy"] == 1.0
    # calm kept (RAVDESS's own 8 classes): nothing folds, so calm outvotes neutral and the clip is wrong
    assert score_on(["neutral"], p[:1], MODEL8, MODEL8)["accuracy"] == 0.0
    with pytest.raises(ValueError, match=r"\['contempt'\] are not among the model's classes"):
        restrict(labels, p, MODEL8, ("angry", "contempt"))
    with pytest.raises(ValueError, match="no clip is labelled"):
        score_on(["fear"], p[:1], MODEL8, CORE_CLASSES)


def test_utterance_cmvn_scales_mel_bands_and_leaves_prosody() -> None:
    torch.manual_seed(0)
    n_mels = 4
    x = torch.randn(n_mels + 6, 50) * torch.arange(1, n_mels + 7)[:, None].float() + 3.0
    assert apply_cmvn(x, n_mels, "none") is x
    y = apply_cmvn(x, n_mels, "utterance")
    torch.testing.assert_close(y[:n_mels].mean(1), torch.zeros(n_mels), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:n_mels].std(1, unbiased=False), torch.ones(n_mels), atol=1e-4, rtol=0)
    torch.testing.assert_close(y[n_mels:], x[n_mels:])  # prosody's zeros mean "unvoiced": untouched
    with pytest.raises(ValueError, match="features.cmvn must be one of"):
        apply_cmvn(x, n_mels, "speaker")
    with pytest.raises(ConfigError, match="features.cmvn: 'speaker' is not one of none, utterance"):
        load_config(MULTI, AudioTrainCfg, ["features.cmvn=speaker"])


def test_feature_table_is_the_same_whatever_the_worker_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16_000
    files = []
    for i in range(100):  # 100 half-second tones with noise: two workers of 50 clips
        f = tmp_path / f"clip{i:03d}.wav"
        sf.write(f, (0.3 * np.sin(2 * np.pi * (120 + 3 * i) * t) + 0.01 * rng.standard_normal(len(t))
                     ).astype(np.float32), 16_000)
        files.append(f)
    data = AudioDataCfg(variants=1, reverb_prob=0.5, band_prob=0.5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each worker: torch's thread count changes the order of its sums
    try:
        one = build_feature_table(files, AudioFeatureCfg(), data, use_cache=False, workers=1)
    finally:
        torch.set_num_threads(threads)
    two = build_feature_table(files, AudioFeatureCfg(), data, use_cache=False, workers=2)
    assert one.key == two.key
    np.testing.assert_array_equal(one.lengths, two.lengths)
    np.testing.assert_array_equal(one.frames, two.frames)
    assert not np.array_equal(one.get(5, 0).numpy(), one.get(5, 1).numpy())  # the copy differs from the clean clip
    cmvn = build_feature_table(files, AudioFeatureCfg(cmvn="utterance"), data, use_cache=False, workers=1)
    assert cmvn.key == one.key  # applied on reading: the cached frames are shared
    assert not torch.equal(cmvn.get(5), one.get(5))


@needs_corpora
@pytest.mark.slow
def test_per_corpus_cross_validation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["eval", "audio", "--config", str(MULTI), "--folds", "2", "--data-root", str(SHARED_DATA),
            "--run-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"),
            "--set", "data.limit_per_class=3", "--set", "data.variants=0", "--set", "trainer.epochs=1", *TINY]
    assert main(args) == 0
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    meta = rep.get("meta", rep)
    folds = meta["folds"]
    tested = [s for f in folds for s in f["test_actors"]]
    assert len(tested) == len(set(tested))  # each speaker in exactly one test fold
    per_corpus = {c: {s for s in tested if s.startswith(c + "/")} for c in ("ravdess", "emovo", "casia")}
    assert all(per_corpus.values())
    for f in folds:  # dealt per corpus: a corpus with two or more speakers is tested in both folds
        assert {c for c, sp in per_corpus.items() if len(sp) >= 2} <= {s.split("/")[0] for s in f["test_actors"]}
    rows = {r["corpus"]: r for r in meta["per_corpus"]}
    assert len(rows["ravdess"]["own"]["classes"]) == 8 and "calm" in rows["ravdess"]["own"]["classes"]
    assert "disgust" not in rows["casia"]["own"]["classes"] and rows["casia"]["own"]["n"] == 6 * 3
    for name, r in rows.items():  # one accuracy per fold that tested the corpus
        tested_in = sum(any(sp.startswith(name + "/") for sp in f["test_actors"]) for f in folds)
        assert r["core"]["classes"] == list(CORE_CLASSES) and len(r["own"]["fold_accuracy"]) == tested_in
    with np.load(tmp_path / "rep" / "oof_predictions.npz") as z:
        assert set(z["corpus"].tolist()) == {"ravdess", "emovo", "casia"} and len(z["corpus"]) == len(z["y"])
    assert "Per corpus" in (tmp_path / "rep" / "report.md").read_text()
    out = capsys.readouterr().out
    assert "speaker-disjoint 2-fold CV" in out and "casia (zh, 6 classes, n=18)" in out


@needs_corpora
@pytest.mark.slow
def test_shipped_model_scored_on_whole_corpora(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import mmfer.data.speech_corpora as sc

    real = sc.load_speech_corpora
    monkeypatch.setattr(sc, "load_speech_corpora", lambda names, root=None: real(names, root)[::20])  # a sample
    assert main(["eval", "audio", "--corpora", "emovo", "--data-root", str(SHARED_DATA),
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "corpora.json").read_text())
    (row,) = res["corpora"]
    assert row["corpus"] == "emovo" and row["own"]["n"] + len(res["skipped"]) == 30
    assert "calm" not in row["own"]["classes"] and row["core"]["classes"] == list(CORE_CLASSES)
    assert "emovo (it, 7 classes" in capsys.readouterr().out


@needs_corpora
@pytest.mark.slow
def test_short_multi_corpus_run_beats_chance_on_an_unheard_corpus(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    args = ["eval", "audio", "--config", str(MULTI), "--loco", "--data-root", str(SHARED_DATA),
            "--run-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"),
            "--set", "data.limit_per_class=40", "--set", "data.variants=0",
            "--set", "trainer.epochs=8", "--set", "trainer.batch_size=16", *TINY]
    assert main([*args, "--held-out", "crema_d"]) == 2  # not a corpus of the recipe: named, nothing trained
    assert "cannot hold out ['crema_d']" in capsys.readouterr().err
    assert main([*args, "--held-out", "emovo"]) == 0
    (row,) = json.loads((tmp_path / "rep" / "loco.json").read_text())["loco"]
    assert row["held_out"] == "emovo" and row["trained_on"] == ["casia", "ravdess"]  # Mandarin and English only
    core = row["core"]
    hits = round(core["accuracy"] * core["n"])
    assert binomtest(hits, core["n"], 0.25, alternative="greater").pvalue < 0.01, core["accuracy"]
