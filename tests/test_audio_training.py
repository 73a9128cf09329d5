"""The audio encoder, training (generated and real data), cross-validation and the exported model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import RAVDESS, needs_ravdess
from mmfer.audio.artifact import load_audio_model
from mmfer.audio.models import create_audio_model
from mmfer.cli.main import main
from mmfer.config import AudioModelCfg, AudioTrainCfg, load_config
from mmfer.training.audio_module import predict_table
from mmfer.training.train_audio import fit, load_corpus, train_audio

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "audio_smoke.yaml"


def test_default_encoder_is_compact_and_masks_padding() -> None:
    cfg = load_config(REPO / "configs" / "audio_crnn_cpu.yaml", AudioTrainCfg)
    net = create_audio_model(cfg.model, cfg.features.n_mels).eval()
    assert sum(p.numel() for p in net.parameters()) < 2_000_000
    torch.manual_seed(0)
    x = torch.randn(1, 70, 180)
    batch = torch.cat([torch.cat([x, torch.zeros(1, 70, 120)], -1), torch.randn(1, 70, 300)])  # zero-padded
    lengths = torch.tensor([180, 300])
    with torch.no_grad():
        alone = net(x)
        both = net(batch, lengths)
        emb, weights = net.embed(batch, lengths)
    assert alone.shape == (1, 8) and emb.shape == (2, cfg.model.embed_dim) and weights.shape == (2, 75)
    # Padded steps get no attention and the GRU never reads them; only the CNN's edge frames see the
    # zeros, so a padded clip scores (almost) as it does alone.
    assert torch.all(weights[0, 45:] == 0) and torch.allclose(weights.sum(1), torch.ones(2))
    assert float((alone.softmax(1) - both[:1].softmax(1)).abs().max()) < 0.03


def test_unknown_arch_is_named() -> None:
    with pytest.raises(ValueError, match="unknown audio model.arch 'nope'"):
        create_audio_model(AudioModelCfg(arch="nope"), 64)


def _synthetic_speech(label: str, rng: np.random.Generator) -> np.ndarray:
    """Caricatures of prosody: happy high and rising, sad low and falling, angry loud and rough."""
    sr, n = 16000, 16000
    t = np.arange(n) / sr
    jitter = rng.uniform(0.9, 1.1)
    if label == "happy":
        f = (220 + 120 * t) * jitter
    elif label == "sad":
        f = (130 - 30 * t) * jitter
    else:
        f = np.full(n, 160.0 * jitter)
    x = sum(np.sin(2 * np.pi * k * np.cumsum(f) / sr) / k for k in range(1, 6))
    if label == "angry":
        x = np.tanh(3 * x) + rng.normal(0, 0.3, n)
    x = x * np.hanning(n) * 0.3 + rng.normal(0, 0.003, n)
    return x.astype(np.float32)


def test_training_on_a_generated_folder_learns(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = ["happy", "sad", "angry", "neutral"]
    for split, n in (("train", 12), ("test", 6)):
        for lab in labels:
            (tmp_path / split / lab).mkdir(parents=True)
            for i in range(n):
                sf.write(tmp_path / split / lab / f"{i}.wav", _synthetic_speech(lab, rng), 16000)
    cfg = load_config(SMOKE, AudioTrainCfg, ["data.dataset=folder", f"data.root={tmp_path / 'train'}",
                                             "trainer.epochs=12", "data.variants=0"])
    corpus = load_corpus(cfg, use_cache=False)
    system = fit(cfg, corpus, np.arange(len(corpus.files)), tmp_path / "run")
    test = load_corpus(load_config(SMOKE, AudioTrainCfg, ["data.dataset=folder", f"data.root={tmp_path / 'test'}",
                                                         "data.variants=0"]), use_cache=False)
    probs = predict_table(system.model, test.table, np.arange(len(test.files)))
    acc = float((probs.argmax(1) == test.labels).mean())
    assert acc >= 0.75, f"accuracy {acc:.2f} on 4 well separated synthetic classes"


@needs_ravdess
@pytest.mark.slow
def test_short_training_on_real_ravdess_beats_chance(tmp_path: Path) -> None:
    cfg = load_config(SMOKE, AudioTrainCfg, [f"data.root={RAVDESS}", "data.actors=[1,2,3,4,5,6,7,8,9,10]",
                                             "data.variants=0", "trainer.epochs=6"])
    corpus = load_corpus(cfg)
    test = np.isin(corpus.speakers, [9, 10])
    system = fit(cfg, corpus, np.flatnonzero(~test), tmp_path / "run")
    probs = predict_table(system.model, corpus.table, np.flatnonzero(test))
    acc = float((probs.argmax(1) == corpus.labels[test]).mean())
    assert acc > 0.25, f"accuracy {acc:.2f} on unseen actors 9-10 (chance 0.125)"


@needs_ravdess
@pytest.mark.slow
def test_cli_cross_validation_report_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["eval", "audio", "--config", str(SMOKE), "--data-root", str(RAVDESS), "--folds", "2",
            "--set", "data.actors=[1,2,3,4]", "--set", "trainer.epochs=2", "--run-dir", str(tmp_path / "cv"),
            "--out", str(tmp_path / "report")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "actor-disjoint 2-fold CV: accuracy" in out
    rep = json.loads((tmp_path / "report" / "report.json").read_text())
    folds = rep["meta"]["folds"]
    assert len(folds) == 2 and sorted(a for f in folds for a in f["test_actors"]) == [1, 2, 3, 4]
    assert all({a % 2 for a in f["test_actors"]} == {0, 1} for f in folds)
    assert rep["n"] == 240 and sum(f["n"] for f in folds) == 240
    acc = rep["meta"]["aggregate"]["metrics"]["accuracy"]
    assert acc["mean"] == pytest.approx(np.mean([f["accuracy"] for f in folds]))
    md = (tmp_path / "report" / "report.md").read_text()
    assert "mean ± std over folds" in md and (tmp_path / "report" / "confusion.png").stat().st_size > 1000
    # Every fold kept its out-of-fold predictions; a second run reuses them instead of retraining.
    for i in range(2):
        z = np.load(tmp_path / "cv" / f"fold_{i}" / "predictions.npz")
        assert set(z["actors"]) == set(folds[i]["test_actors"])
    oof = np.load(tmp_path / "report" / "oof_predictions.npz")  # pooled, for calibrating the fusion
    assert oof["probs"].shape == (240, 8) and list(oof["classes"])[-1] == "calm" and set(oof["fold"]) == {0, 1}
    stamp = (tmp_path / "cv" / "fold_0" / "predictions.npz").stat().st_mtime
    assert main(args) == 0
    assert (tmp_path / "cv" / "fold_0" / "predictions.npz").stat().st_mtime == stamp


@needs_ravdess
def test_train_exports_a_loadable_model(tmp_path: Path) -> None:
    cfg = load_config(SMOKE, AudioTrainCfg, [f"data.root={RAVDESS}", "data.actors=[1,2]", "data.variants=0",
                                             "trainer.epochs=1"])
    path = train_audio(cfg, tmp_path / "run")
    model, card, loaded = load_audio_model(path)
    assert card["kind"] == "audio" and card["classes"][-1] == "calm" and card["fold_to_canonical"] == {
        "calm": "neutral"}
    assert loaded == cfg and card["metrics"]["speakers"] == [1, 2] and card["metrics"]["train_clips"] == 120
    raw = (path / "model.safetensors").read_bytes()
    assert raw[8:9] == b"{" and not raw.startswith(b"PK")  # a safetensors header, not a (zipped) pickle
    corpus = load_corpus(cfg)
    probs = predict_table(model, corpus.table, np.arange(4))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
