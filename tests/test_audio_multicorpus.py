"""Training on several speech corpora: classes a corpus lacks are masked out of its loss, corpora are
sampled by weight, channel effects join the augmented copies only when a recipe asks, and
leave-one-corpus-out runs end to end without a speaker or corpus on both sides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SHARED_DATA
from mmfer.audio.augment import perturb, robust_probs
from mmfer.cli.main import main
from mmfer.config import AudioDataCfg, AudioTrainCfg, load_config
from mmfer.data.fer2013 import DatasetError
from mmfer.training.audio_module import masked_cross_entropy
from mmfer.training.train_audio import load_corpus, sample_weights

REPO = Path(__file__).resolve().parents[1]
MULTI = REPO / "configs" / "audio_multicorpus_cpu.yaml"
needs_corpora = pytest.mark.skipif(not all((SHARED_DATA / c).is_dir() for c in ("ravdess", "emovo", "casia")),
                                   reason=f"RAVDESS, EMOVO and CASIA not all found under {SHARED_DATA}")


def test_masked_loss_ignores_the_classes_a_corpus_lacks() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 8, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    full = torch.ones(6, 8, dtype=torch.bool)
    for eps in (0.0, 0.1):  # all classes kept: the usual (label-smoothed) cross-entropy
        assert masked_cross_entropy(logits, y, full, eps).item() == pytest.approx(
            F.cross_entropy(logits, y, label_smoothing=eps).item(), abs=1e-6)
    mask = full.clone()
    mask[:, 1] = False  # a corpus without disgust ...
    mask[1, 1] = True  # (the one clip labelled disgust comes from a corpus that has it)
    loss = masked_cross_entropy(logits, y, mask, 0.1)
    loss.backward()
    assert logits.grad is not None
    grads = logits.grad
    assert (grads[~mask] == 0).all() and (grads[mask] != 0).any()  # ... says nothing against disgust
    assert torch.isfinite(loss)


def test_channel_effects_only_when_the_recipe_asks() -> None:
    shipped = load_config(REPO / "configs" / "audio_crnn_cpu.yaml", AudioTrainCfg)
    assert robust_probs(shipped.data) == {}  # the shipped recipe draws exactly the numbers it always did
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16_000) / 16_000)).astype(np.float32)
    plain = AudioDataCfg(speeds=[1.0], noise_prob=0.0, gain_db=(0.0, 0.0))
    a = perturb(x, plain, np.random.default_rng(1))
    np.testing.assert_allclose(a, x, atol=1e-6)
    reverb = AudioDataCfg(speeds=[1.0], noise_prob=0.0, gain_db=(0.0, 0.0), reverb_prob=1.0)
    assert robust_probs(reverb) == {"reverb": 1.0}
    b = perturb(x, reverb, np.random.default_rng(1))
    assert b.shape == x.shape and np.abs(b - x).max() > 0.01 and np.abs(b).max() <= 1.0


@needs_corpora
def test_three_corpora_in_one_table_with_masks_and_weights(tmp_path: Path) -> None:
    cfg = load_config(MULTI, AudioTrainCfg, [f"data.root={SHARED_DATA}", "data.limit_per_class=2", "data.variants=0"])
    corpus = load_corpus(cfg, use_cache=False)
    assert corpus.corpus is not None and corpus.masks is not None and corpus.speaker_names is not None
    assert set(corpus.corpus.tolist()) == {"ravdess", "emovo", "casia"}
    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "calm")
    casia = corpus.corpus == "casia"
    assert not corpus.masks[casia][:, classes.index("disgust")].any()  # CASIA has no disgust
    assert not corpus.masks[corpus.corpus == "emovo"][:, classes.index("calm")].any()
    assert corpus.masks[corpus.corpus == "ravdess"].all()
    assert (corpus.masks[np.arange(len(corpus.labels)), corpus.labels]).all()  # a clip's own label is kept
    assert len(corpus.speaker_names) == len(set(corpus.speaker_names))  # "corpus/speaker": never merged
    w = sample_weights(cfg, corpus, np.arange(len(corpus.labels)))
    assert w is not None
    for name in ("ravdess", "emovo", "casia"):  # equal weights: each corpus a third of the draws
        assert w[corpus.corpus == name].sum() / w.sum() == pytest.approx(1 / 3)
    bad = load_config(MULTI, AudioTrainCfg, [f"data.root={SHARED_DATA}", "data.corpus_weights=[1.0]"])
    with pytest.raises(DatasetError, match="corpus_weights has 1 values for 3 corpora"):
        load_corpus(bad)
    no_calm = load_config(MULTI, AudioTrainCfg, [f"data.root={SHARED_DATA}", "data.corpora=[emovo,casia]",
                                                 "data.corpus_weights=null"])
    with pytest.raises(DatasetError, match=r"class\(es\) \['calm'\] of the 8-class model are labelled by none of "
                                           r"the corpora \['emovo', 'casia'\]"):
        load_corpus(no_calm)


@needs_corpora
@pytest.mark.slow
def test_leave_one_corpus_out_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["eval", "audio", "--config", str(MULTI), "--loco", "--data-root", str(SHARED_DATA),
            "--run-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"),
            "--set", "data.limit_per_class=3", "--set", "data.variants=0", "--set", "trainer.epochs=1",
            "--set", "model.width=8", "--set", "model.hidden=16", "--set", "model.embed_dim=16"]
    assert main(args) == 0
    rows = {r["held_out"]: r for r in json.loads((tmp_path / "rep" / "loco.json").read_text())["loco"]}
    assert set(rows) == {"ravdess", "emovo", "casia"}
    for name, r in rows.items():
        assert name not in r["trained_on"] and len(r["trained_on"]) == 2
        assert "calm" not in r["classes"] and 0 <= r["uar"] <= 1
    assert "disgust" not in rows["casia"]["classes"] and rows["casia"]["n"] == 6 * 3
    assert "| held out | language |" in (tmp_path / "rep" / "loco.md").read_text()
    assert "held out emovo (it" in capsys.readouterr().out
