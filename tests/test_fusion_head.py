"""The embedding fusion head: exact additive decomposition for every modality subset, modality dropout,
safe files, subject-disjoint CV with the use-only-if-not-worse verdict (both ways, on synthetic
embeddings whose signal per modality is controlled), the embedding cache, the audio embedding API,
the scene path on a tiny random CLIP, and the real CREMA-D clips end to end."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE_PHOTO, SHARED_DATA, TINY_CLIP, YUNET_640, face_frames, voice, write_video
from mmfer.cli.main import main
from mmfer.data.fer2013 import DatasetError
from mmfer.emotions import EMOTIONS
from mmfer.fusion.embedding_head import EmbeddingHead, HeadError
from mmfer.training.fusion_embeddings import EmbeddingTable, embed_file, encoder_info
from mmfer.training.train_fusion_head import (
    NOT_VALIDATED,
    fusion_config,
    predict_file,
    train_fusion_head,
    train_head_on_table,
)

CREMA = SHARED_DATA / "crema_d_samples"
needs_crema = pytest.mark.skipif(not (CREMA / "1001_DFA_ANG_XX.flv").is_file(),
                                 reason=f"CREMA-D samples not found at {CREMA} (../shared absent)")
DETECTOR = dict(detector="yunet", yunet_model=str(YUNET_640)) if YUNET_640.is_file() else {}
MODS = ("face", "scene", "audio")
CV3 = {"cv": {"method": "group-kfold", "folds": 3}}


def _table(face: float, scene: float, audio: float, subjects: int = 6, reps: int = 3, seed: int = 0,
           classes: tuple[int, ...] = tuple(range(7))) -> EmbeddingTable:
    """Embeddings = signal * class prototype + unit noise, per modality (signal 0: pure noise)."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.repeat(np.array(classes), reps), subjects)
    subj = np.repeat([f"s{i}" for i in range(subjects)], len(classes) * reps).tolist()
    blocks = {}
    for m, sig, d in zip(MODS, (face, scene, audio), (16, 12, 8), strict=True):
        blocks[m] = (sig * rng.normal(size=(7, d))[y] + rng.normal(size=(len(y), d))).astype(np.float32)
    return EmbeddingTable([f"clip{i}.mp4" for i in range(len(y))], y, subj, [None] * len(y), blocks,
                          {m: {"model": f"{m}-net", "weights_sha256": "0" * 16} for m in MODS}, dataset="synthetic")


def _accuracy(card: dict, name: str) -> float:
    return card["cv_scores"][name]["overall"]["accuracy"]


# -- the verdict -----------------------------------------------------------------------------------

def test_verdict_uses_the_head_only_when_not_worse_than_the_best_single_modality(tmp_path: Path) -> None:
    # complementary modalities: fusing them beats each alone
    win = train_head_on_table(_table(0.6, 0.6, 0.6), CV3, tmp_path / "win")
    assert win["verdict"]["use"] is True
    assert _accuracy(win, "fusion") >= max(_accuracy(win, m) for m in MODS)
    # one strong modality and two of pure noise: on this little data the head is worse than the face alone
    lose = train_head_on_table(_table(1.0, 0.0, 0.0), CV3, tmp_path / "lose")
    v = lose["verdict"]
    assert v["use"] is False and v["best_single_modality"] == "face" and "use face alone" in v["reason"]
    assert _accuracy(lose, "fusion") < _accuracy(lose, "face") == v["best_single_accuracy"]
    saved = json.loads((tmp_path / "lose" / "card.json").read_text())
    assert saved["verdict"] == v and saved["kind"] == "fusion_head" and saved["card_version"] == 1
    assert saved["modalities"] == {"face": {"dim": 16}, "scene": {"dim": 12}, "audio": {"dim": 8}}
    assert saved["encoders"]["face"] == {"model": "face-net", "weights_sha256": "0" * 16}
    assert saved["cv"]["method"] == "group-kfold" and len(saved["cv"]["fold_subjects"]) == 3
    for name in ("fusion", *MODS):
        folds = saved["cv_scores"][name]["folds"]
        assert len(folds) == 3 and all({"accuracy", "uar", "macro_f1", "test_subjects"} <= set(f) for f in folds)
    # the three folds score every subject once
    assert sorted(s for f in saved["cv"]["fold_subjects"] for s in f) == [f"s{i}" for i in range(6)]


def test_one_subject_needs_cv_none_and_is_then_not_used(tmp_path: Path) -> None:
    one = _table(1.0, 0.5, 0.5, subjects=1, reps=2)
    with pytest.raises(DatasetError, match=r"one subject only \(s0\)"):
        train_head_on_table(one, CV3, tmp_path / "cv")
    card = train_head_on_table(one, {"cv": "none"}, tmp_path / "none")
    assert card["verdict"] == {"use": False, "reason": NOT_VALIDATED} and "cv_scores" not in card
    saved = EmbeddingHead.load(tmp_path / "none").card
    assert saved["verdict"]["reason"] == "not cross-validated: not used automatically"


def test_a_class_a_fold_cannot_learn_is_named(tmp_path: Path) -> None:
    t = _table(1.0, 0.0, 0.0, subjects=4, reps=2)
    fear = EMOTIONS.index("fear")
    keep = np.flatnonzero((t.labels != fear) | (np.array(t.subjects) == "s0"))  # only s0 ever shows fear
    with pytest.raises(HeadError, match=r"fold 1 \(scoring s0\): class\(es\) \['fear'\] have no training example"):
        train_head_on_table(t.select(keep), {"cv": "loso"}, tmp_path)


def test_bad_configs_are_named() -> None:
    with pytest.raises(ValueError, match="cv.method 'random'"):
        fusion_config({"cv": "random"})
    with pytest.raises(ValueError, match="unknown config key 'head.lr'"):
        fusion_config({"head": {"lr": 0.1}})
    with pytest.raises(ValueError, match="data.dataset: unknown paired dataset 'affectnet'"):
        fusion_config({"data": {"dataset": "affectnet"}})
    with pytest.raises(ValueError, match="modalities"):
        fusion_config({"modalities": ["face", "text"]})
    for path in sorted(Path(__file__).resolve().parents[1].glob("configs/fusion_head_*.yaml")):
        assert fusion_config(path).cv.method == "group-kfold"


# -- the head --------------------------------------------------------------------------------------

def test_decomposition_is_exact_for_every_modality_subset() -> None:
    t = _table(0.8, 0.5, 0.5)
    head = EmbeddingHead.fit(t.blocks, t.labels)
    for k in range(1, 4):
        for subset in itertools.combinations(MODS, k):
            p = head.predict({m: t.blocks[m][5] for m in subset})
            assert np.array_equal(p.bias + sum(p.contributions.values()), p.logits)
            assert p.present == subset and set(p.contributions) == set(MODS)
            for m in set(MODS) - set(subset):
                assert np.array_equal(p.contributions[m], np.zeros(7))  # absent: exactly zero
            z = np.exp(p.logits - p.logits.max())
            np.testing.assert_allclose(p.probabilities, z / z.sum(), rtol=1e-12)
            assert p.emotion == EMOTIONS[int(p.logits.argmax())]
    # a batch with absent rows (NaN) decomposes the same way, row by row
    batch = {m: b[:4].astype(np.float64).copy() for m, b in t.blocks.items()}
    batch["audio"][1] = np.nan
    logits, contributions = head.decompose(batch)
    assert np.array_equal(head.bias + sum(contributions.values()), logits)
    assert np.array_equal(contributions["audio"][1], np.zeros(7))
    one = head.predict({"face": batch["face"][1], "scene": batch["scene"][1]})
    np.testing.assert_allclose(one.logits, logits[1], rtol=1e-12, atol=1e-12)  # BLAS batch vs row: ulps
    with pytest.raises(HeadError, match="no embedding given"):
        head.predict({})
    with pytest.raises(HeadError, match=r"face: expected \(1, 16\) embeddings, got \(1, 5\)"):
        head.predict({"face": np.zeros(5)})
    with pytest.raises(HeadError, match="not \\['text'\\]"):
        head.predict({"text": np.zeros(3)})


def test_modality_dropout_keeps_each_modality_useful_alone() -> None:
    t = _table(0.9, 0.0, 0.9, subjects=8)
    train = np.flatnonzero(np.isin(t.subjects, [f"s{i}" for i in range(6)]))
    test = np.setdiff1d(np.arange(len(t)), train)
    head = EmbeddingHead.fit({m: b[train] for m, b in t.blocks.items()}, t.labels[train], dropout_copies=3)
    for m in ("face", "audio"):
        acc = (head.predict_proba({m: t.blocks[m][test]}).argmax(1) == t.labels[test]).mean()
        assert acc > 0.5, (m, acc)  # chance is 1/7


def test_unlearnt_class_gets_exactly_zero_probability() -> None:
    no_surprise = tuple(k for k in range(7) if EMOTIONS[k] != "surprise")
    t = _table(1.0, 0.5, 0.5, classes=no_surprise)
    head = EmbeddingHead.fit(t.blocks, t.labels)
    s = EMOTIONS.index("surprise")
    assert "surprise" not in head.learnt_classes and len(head.learnt_classes) == 6
    p = head.predict({"face": t.blocks["face"][0]})
    assert p.probabilities[s] == 0.0 and abs(p.probabilities.sum() - 1) < 1e-12
    assert np.array_equal(p.bias + sum(p.contributions.values()), p.logits)
    doc = json.loads(json.dumps(p.to_dict()))
    assert doc["bias"]["surprise"] is None and doc["probabilities"]["surprise"] == 0.0
    two = EmbeddingHead.fit({"face": t.blocks["face"][:6]}, t.labels[:6])  # two classes: sklearn's one-row case
    q = two.predict({"face": t.blocks["face"][0]})
    assert two.learnt_classes == tuple(EMOTIONS[k] for k in sorted(set(t.labels[:6].tolist())))
    assert np.array_equal(q.bias + sum(q.contributions.values()), q.logits)
    with pytest.raises(HeadError, match="at least 2 classes"):
        EmbeddingHead.fit({"face": t.blocks["face"][:3]}, t.labels[:3])


def test_save_and_load_are_safe_and_refuse_unknown_cards(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    t = _table(0.8, 0.5, 0.5)
    head = EmbeddingHead.fit(t.blocks, t.labels)
    head.save(tmp_path / "h", {"config": {"c": 1.0}})
    assert set(load_file(str(tmp_path / "h" / "model.safetensors"))) == {
        "bias", *(f"{m}.{k}" for m in MODS for k in ("weight", "mean", "std"))}
    loaded = EmbeddingHead.load(tmp_path / "h" / "card.json")
    x = {m: b[:9] for m, b in t.blocks.items()}
    np.testing.assert_array_equal(loaded.decompose(x)[0], head.decompose(x)[0])
    card = json.loads((tmp_path / "h" / "card.json").read_text())
    for change, message in (({"kind": "fusion"}, "not a fusion_head model card \\(kind: 'fusion'"),
                            ({"card_version": 7}, "version 7 is not one this mmfer reads")):
        (tmp_path / "h" / "card.json").write_text(json.dumps({**card, **change}))
        with pytest.raises(HeadError, match=f"{message}.*rebuild it with `mmfer train fusion"):
            EmbeddingHead.load(tmp_path / "h")
    (tmp_path / "h" / "card.json").write_text(json.dumps({**card, "modalities": {"face": {"dim": 3}}}))
    with pytest.raises(HeadError, match="face tensors do not have the card's size 3"):
        EmbeddingHead.load(tmp_path / "h")
    (tmp_path / "h" / "card.json").write_text(json.dumps(card))
    (tmp_path / "h" / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(HeadError, match="not a valid safetensors file"):
        EmbeddingHead.load(tmp_path / "h")


# -- embeddings: the table, the audio embedding, the pipeline --------------------------------------

def test_embedding_table_round_trip_without_pickle(tmp_path: Path) -> None:
    t = _table(1.0, 0.5, 0.5, subjects=2, reps=1)
    t.blocks["scene"][3] = np.nan  # absent, never zeros
    t.subjects[0] = None
    path = t.save(tmp_path / "emb.npz")
    with np.load(path, allow_pickle=False) as z:
        assert z["paths"].dtype.kind == "U" and "emb_face" in z.files
    back = EmbeddingTable.load(path)
    assert back.paths == t.paths and back.subjects == t.subjects and back.encoders == t.encoders
    np.testing.assert_array_equal(back.blocks["scene"], t.blocks["scene"])
    assert back.present("scene").tolist() == [i != 3 for i in range(len(t))]
    path.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable embedding table.*delete it to re-embed"):
        EmbeddingTable.load(path)


def test_audio_recogniser_exposes_its_penultimate_embedding() -> None:
    from mmfer.audio.predictor import AudioEmotionRecognizer

    rec = AudioEmotionRecognizer(device="cpu")
    x = voice(180, 1.5, vibrato=20)
    emb = rec.embed_samples(x)
    assert rec.embedding_dim == 128 and emb.shape == (128,) and np.isfinite(emb).all()
    # it is what the classifier head reads: the head applied to it gives predict()'s probabilities
    import torch

    with torch.no_grad():
        probs = rec.model.head(torch.from_numpy(emb)[None]).softmax(1)[0].numpy()
    pred = rec.predict_samples(x)
    np.testing.assert_allclose(probs, [pred.probabilities[c] for c in rec.classes], atol=1e-5)
    assert rec.embed_samples(np.zeros(16_000, np.float32)) is None  # silence: absent, not zeros


@pytest.fixture(scope="module")
def pipe():  # noqa: ANN201 - an EmotionPipeline
    from mmfer.pipeline import EmotionPipeline

    return EmotionPipeline(temporal=False, sample_fps=4, **DETECTOR)  # scene on, but no CLIP weights here


def test_scene_embeddings_with_a_tiny_clip(tmp_path: Path, tiny_clip_checkpoint: Path) -> None:
    from mmfer.pipeline import EmotionPipeline

    p = EmotionPipeline(temporal=False, clip_model=TINY_CLIP, clip_pretrained=str(tiny_clip_checkpoint), sample_fps=4,
                        key_frames=2, **DETECTOR)
    video = tmp_path / "talk.mp4"
    write_video(video, face_frames(12), audio=voice(200, 1.2, vibrato=15))
    emb, why = embed_file(video, p)
    assert emb["face"].shape == (p.face.model.feat_dim,) and emb["scene"].shape == (32,)
    assert emb["audio"].shape == (128,) and why == {}
    photo, why = embed_file(EXAMPLE_PHOTO, p)
    assert photo["face"] is not None and photo["scene"].shape == (32,)
    assert photo["audio"] is None and why == {"audio": "not in a still image"}
    info = encoder_info(p)
    assert info["scene"]["clip_model"] == TINY_CLIP and len(info["scene"]["weights_sha256"]) == 16


@needs_crema
def test_real_crema_d_clips_end_to_end(tmp_path: Path, pipe, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    cfg = {"name": "crema_smoke", "data": {"dataset": "crema-d"}, "cv": "none", "head": {"max_iter": 300}}
    with pytest.raises(DatasetError, match=r"one subject only \(1001\)"):  # refused before anything is embedded
        train_fusion_head({**cfg, "cv": {"method": "group-kfold", "folds": 2}}, tmp_path / "cv", CREMA, pipe)
    card = train_fusion_head(cfg, tmp_path / "head", data_root=CREMA, pipeline=pipe)
    assert card["verdict"] == {"use": False, "reason": NOT_VALIDATED}
    assert set(card["modalities"]) == {"face", "audio"}  # the scene is absent, not zeros
    assert "no CLIP weights" in card["data"]["modalities_absent"]["scene"]
    assert card["data"]["items_used"] == 6 and card["data"]["skipped"] == {
        "audio-only files (not paired audio-video)": 6}
    assert card["encoders"]["face"]["model"] == "face_lite0" and card["encoders"]["audio"]["weights_sha256"]
    assert "surprise" not in card["learnt_classes"]  # CREMA-D has no surprise
    head = EmbeddingHead.load(tmp_path / "head")
    pred = predict_file(head, CREMA / "1001_DFA_HAP_XX.flv", pipe)
    assert set(pred.present) == {"face", "audio"}
    assert np.array_equal(pred.bias + sum(pred.contributions.values()), pred.logits)
    assert pred.probabilities[EMOTIONS.index("surprise")] == 0.0 and abs(pred.probabilities.sum() - 1) < 1e-9
    table = EmbeddingTable.load(card["files"]["embeddings"])  # the cached rows are what a fresh embedding gives
    row = table.paths.index(str(CREMA / "1001_DFA_HAP_XX.flv"))
    for m in ("face", "audio"):  # each branch alone, through the same head: its term is unchanged
        alone = head.predict({m: table.blocks[m][row]})
        np.testing.assert_allclose(alone.contributions[m], pred.contributions[m], rtol=1e-5, atol=1e-7)
        assert np.array_equal(alone.bias + sum(alone.contributions.values()), alone.logits)
    with caplog.at_level(logging.INFO, logger="mmfer.training.fusion_embeddings"):
        again = train_fusion_head({**cfg, "cache": card["files"]["embeddings"]}, tmp_path / "again", CREMA, pipe)
    assert "reusing" in caplog.text and again["modalities"] == card["modalities"]
    # the same through the command line: `mmfer train fusion` with an embedding_head config (reusing the
    # cached embeddings), then `mmfer analyze --fusion-head` on a real clip
    yaml = tmp_path / "head.yaml"
    yaml.write_text(json.dumps({**cfg, "method": "embedding_head", "cache": card["files"]["embeddings"],
                                "encoders": {"scene": False}}))
    assert main(["train", "fusion", "--config", str(yaml), "--out", str(tmp_path / "cli"),
                 "--data-root", str(CREMA)]) == 0
    assert (tmp_path / "cli" / "card.json").is_file()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["analyze", str(CREMA / "1001_DFA_HAP_XX.flv"), "--no-scene", "--json",
                     "--fusion-head", str(tmp_path / "cli")])
    assert code == 0
    result = json.loads(buf.getvalue())["results"][0]
    assert result["fusion_head"]["verdict"]["reason"] == NOT_VALIDATED
    assert set(result["fusion_head"]["modalities"]) == {"face", "audio"}
    assert main(["analyze", str(CREMA / "1001_DFA_HAP_XX.flv"), "--fusion-head", str(tmp_path / "nope")]) == 2
