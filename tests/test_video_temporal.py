"""The temporal head: clip datasets, subject-disjoint folds, the model's masking, a real
cross-validation on the shared CK+ clips, the shipped head, and its clip-level prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, YUNET_640, face_frames, needs_yunet, write_video
from mmfer.config import VideoModelCfg, VideoTrainCfg, load_config
from mmfer.data.fer2013 import DatasetError
from mmfer.data.video_clips import load_ckplus_videos, load_clip_folders, load_clip_table, subject_folds
from mmfer.emotions import EMOTIONS
from mmfer.face.predictor import FaceEmotionRecognizer
from mmfer.paths import WEIGHTS_DIR
from mmfer.video.artifact import load_video_model
from mmfer.video.models import create_temporal_model
from mmfer.video.timeline import video_timeline

REPO = Path(__file__).resolve().parents[1]
CK = SHARED_DATA / "ckplus_videos"
needs_ck = pytest.mark.skipif(not (CK / "labels.tsv").is_file(), reason=f"CK+ clips not found at {CK}")


def test_clip_table_and_folders(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.mp4").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file,label,subject\na.mp4,Happiness,p1\nb.mp4,anger,p2\n")
    clips = load_clip_table(tmp_path)
    assert [(c.path.name, c.label, c.subject) for c in clips] == [("a.mp4", "happy", "p1"), ("b.mp4", "angry", "p2")]
    assert subject_folds(clips) == [["p1"], ["p2"]]
    (tmp_path / "labels.csv").write_text("file,label\nc.mp4,happy\n")
    with pytest.raises(DatasetError, match="c.mp4 not found"):
        load_clip_table(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\na.mp4,bored\n")
    with pytest.raises(DatasetError, match="row 2: 'bored' is not an emotion"):
        load_clip_table(tmp_path)
    (tmp_path / "labels.csv").write_text("file,emotion\na.mp4,happy\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['label'\]"):
        load_clip_table(tmp_path)
    (tmp_path / "f" / "surprise").mkdir(parents=True)
    (tmp_path / "f" / "surprise" / "x.mov").write_bytes(b"x")
    assert [c.label for c in load_clip_folders(tmp_path / "f")] == ["surprise"]
    with pytest.raises(DatasetError, match="needs a subject"):
        subject_folds(load_clip_folders(tmp_path / "f"))


def test_temporal_net_masks_missing_frames_and_padding() -> None:
    net = create_temporal_model(VideoModelCfg(), 16).eval()
    emb = torch.randn(2, 10, 16)
    present = torch.ones(2, 10, dtype=torch.bool)
    present[0, 3:5] = False
    lengths = torch.tensor([10, 6])
    with torch.no_grad():
        logits, w = net.attend(emb, present, lengths)
        none_logits = net(emb, torch.zeros(2, 10, dtype=torch.bool), lengths)
    assert logits.shape == (2, 7) and torch.allclose(w.sum(1), torch.ones(2))
    assert torch.all(w[0, 3:5] == 0) and torch.all(w[1, 6:] == 0)
    assert torch.isfinite(none_logits).all()  # a clip without any face still gives a (flat) answer
    with pytest.raises(ValueError, match="unknown video model.arch"):
        create_temporal_model(VideoModelCfg(arch="lstm9"), 16)


@needs_ck
def test_ckplus_clips_and_subjects() -> None:
    clips = load_ckplus_videos(SHARED_DATA)
    assert len(clips) == 27 and len({c.subject for c in clips}) == 7
    assert {c.label for c in clips} == {"angry", "disgust", "fear", "happy", "sad", "surprise"}
    folds = subject_folds(clips)
    assert sorted(s for f in folds for s in f) == sorted({c.subject for c in clips})


@needs_ck
@needs_yunet
@pytest.mark.slow
def test_cross_validation_on_ckplus_is_subject_disjoint_and_learns(tmp_path: Path) -> None:
    from mmfer.training.train_video import cross_validate_video

    cfg = load_config(REPO / "configs" / "video_ckplus_cpu.yaml", VideoTrainCfg,
                      [f"data.root={SHARED_DATA}", "data.detector=yunet", f"data.yunet_model={YUNET_640}",
                       "trainer.epochs=30"])
    cv = cross_validate_video(cfg, tmp_path)
    clips = load_ckplus_videos(SHARED_DATA)
    by_subject = {s: sum(c.subject == s for c in clips) for s in {c.subject for c in clips}}
    for row in cv["folds"]:
        assert row["n"] == sum(by_subject[s] for s in row["test_subjects"])
    assert sum(r["n"] for r in cv["folds"]) == 27
    acc = cv["aggregate"]["metrics"]["accuracy"]["mean"]
    assert acc > 0.4, f"LOSO accuracy {acc:.2f} (chance about 0.17 over the 6 CK+ classes)"
    from mmfer.evaluation.video_eval import write_video_cv_report

    paths = write_video_cv_report(cv, tmp_path / "report", cfg)
    oof = np.load(paths["oof_predictions"])
    assert oof["probs"].shape == oof["face_probs"].shape == (27, 7) and len(set(oof["fold"])) == 7
    assert sorted(oof["clips"]) == sorted(c.path.name for c in clips)


def test_shipped_temporal_head() -> None:
    card = json.loads((WEIGHTS_DIR / "video_bigru_ckplus" / "card.json").read_text())
    assert card["kind"] == "video" and card["classes"] == list(EMOTIONS)
    cv = card["metrics"]["cross_validation"]
    assert "leave-one-subject-out" in cv["protocol"] and len(cv["folds"]) == 7
    model, card2, cfg = load_video_model()
    assert card2["feat_dim"] == 1280 and cfg.data.root is None


@needs_yunet
def test_timeline_with_the_temporal_head(tmp_path: Path) -> None:
    path = tmp_path / "talk.mp4"
    write_video(path, face_frames(12, blank={4}))
    rec = FaceEmotionRecognizer(detector="yunet", yunet_model=str(YUNET_640))
    tl = video_timeline(path, rec, temporal=True)
    assert tl.temporal["model"] == "video_bigru_ckplus" and tl.temporal["windows"] == 1
    assert tl.temporal["emotion"] in EMOTIONS
    assert sum(tl.temporal["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    serialised = tl.to_dict()["temporal"]  # rounded only when serialised
    assert serialised["probabilities"] == {k: round(v, 4) for k, v in tl.temporal["probabilities"].items()}
    assert {k: v for k, v in serialised.items() if k != "probabilities"} == {
        k: v for k, v in tl.temporal.items() if k != "probabilities"}
    assert np.isnan(tl.probs[4]).all()


def test_ravdess_video_names(tmp_path: Path) -> None:
    from mmfer.data.video_clips import load_clips

    d = tmp_path / "ravdess" / "Actor_03"
    d.mkdir(parents=True)
    for name in ("01-01-05-02-01-01-03.mp4", "01-01-02-01-01-01-03.mp4", "02-01-06-01-02-01-03.mp4",
                 "03-01-05-02-01-01-03.wav", "01-02-03-01-01-01-03.mp4"):
        (d / name).write_bytes(b"x")
    clips = load_clips("ravdess", tmp_path)  # audio-video speech only; calm (02) has no canonical class
    assert [(c.path.name, c.label, c.subject) for c in clips] == [("01-01-05-02-01-01-03.mp4", "angry", "actor03")]


def _ck_tree(root: Path) -> None:
    import cv2

    frames = face_frames(12)
    for subject, seq, code in (("S010", "002", "5"), ("S011", "001", "2"), ("S012", "003", None)):
        d = root / "cohn-kanade-images" / subject / seq
        d.mkdir(parents=True)
        for i, img in enumerate(frames, start=1):
            cv2.imwrite(str(d / f"{subject}_{seq}_{i:08d}.png"), img)
        if code is not None:  # S012 is unlabelled, as many CK+ sequences are
            e = root / "Emotion" / subject / seq
            e.mkdir(parents=True)
            (e / f"{subject}_{seq}_{12:08d}_emotion.txt").write_text(f"   {code}.0000000e+00\n")


def test_ckplus_image_sequences(tmp_path: Path) -> None:
    from mmfer.data.video_clips import load_clips
    from mmfer.video.io import open_frames

    _ck_tree(tmp_path / "CK+")
    clips = load_clips("ckplus-sequences", tmp_path)
    assert [(c.path.name, c.label, c.subject) for c in clips] == [("002", "happy", "S010")]  # contempt left out
    reader = open_frames(clips[0].path, sample_fps=10)  # 30 fps frames sampled at 10 fps
    frames = list(reader)
    assert [round(f.time_s, 3) for f in frames] == [0.0, 0.1, 0.2, 0.3]
    assert frames[0].image.shape == (480, 640, 3) and reader.info.codec == "image-sequence"


@needs_yunet
def test_clip_features_of_an_image_sequence(tmp_path: Path) -> None:
    from mmfer.video.clip_features import clip_features

    _ck_tree(tmp_path)
    rec = FaceEmotionRecognizer(detector="yunet", yunet_model=str(YUNET_640))
    f = clip_features(tmp_path / "cohn-kanade-images" / "S010" / "002", rec, sample_fps=30)
    assert f.embeddings.shape == (12, 1280) and f.present.all()
    assert np.allclose(np.nansum(f.frame_probs, 1), 1, atol=1e-4)


def _tiny_face_model(path: Path) -> Path:
    from mmfer.config import FaceTrainCfg, ModelCfg
    from mmfer.face.artifact import save_face_model
    from mmfer.face.models import create_model

    cfg = FaceTrainCfg(name="face_tiny", model=ModelCfg(arch="tiny", pretrained=False))
    cfg.data.image_size = 48
    torch.manual_seed(0)
    return save_face_model(create_model(cfg.model, 48), cfg, path, {}, "test")


def _sweeps(n: int, rightwards: bool, t: int = 8) -> np.ndarray:
    """(n, t, 48, 48) crops of a bright bar sweeping left->right or right->left: every single
    frame is equally likely under both classes, only the order tells them apart."""
    rng = np.random.default_rng(int(rightwards))
    out = rng.integers(0, 40, (n, t, 48, 48), dtype=np.uint8)
    for i in range(n):
        for k in range(t):
            x = 4 + 5 * (k if rightwards else t - 1 - k)
            out[i, k, :, x : x + 6] = 230
    return out


def test_finetuned_cnn_learns_motion_only_classes(tmp_path: Path) -> None:
    from mmfer.training.train_video import fit_video, predict_video
    from mmfer.video.models import FineTunedTemporalNet

    face_dir = _tiny_face_model(tmp_path / "face_tiny")
    cfg = VideoTrainCfg(model=VideoModelCfg(finetune=True, hidden=32, drop_rate=0.0))
    cfg.data.face_model, cfg.data.frame_dropout = str(face_dir), 0.0
    cfg.optim.lr, cfg.optim.backbone_lr_mult, cfg.optim.warmup_epochs = 3e-3, 0.3, 0.0
    cfg.trainer.epochs, cfg.trainer.batch_size = 25, 8
    crops = np.concatenate([_sweeps(12, True), _sweeps(12, False)])
    labels = np.array([EMOTIONS.index("happy")] * 12 + [EMOTIONS.index("sad")] * 12)
    feats = {"crops": crops, "present": np.ones(crops.shape[:2], bool), "lengths": np.full(24, 8),
             "emb": np.zeros((24, 8, 32), np.float32)}
    train = np.r_[0:8, 12:20]
    system = fit_video(cfg, feats, labels, train, tmp_path / "fit")
    assert isinstance(system.model, FineTunedTemporalNet)
    from mmfer.face.artifact import load_face_model

    start = load_face_model(face_dir)[0].state_dict()
    tuned = system.model.frames.state_dict()
    moved = {k for k in start if not torch.equal(start[k], tuned[k])}
    changed = {k for k in moved if "running" not in k and "num_batches" not in k}
    frozen_stats = {k for k in moved if "running" in k}
    assert changed and not frozen_stats  # the CNN was trained; its BatchNorm statistics were not
    test = np.r_[8:12, 20:24]
    acc = float((predict_video(system.model, feats, test).argmax(1) == labels[test]).mean())
    assert acc >= 0.75, f"held-out accuracy {acc:.2f} on direction-of-motion clips (chance 0.5)"


@needs_yunet
def test_finetuned_head_ships_and_runs_on_a_video(tmp_path: Path) -> None:
    from mmfer.training.train_video import train_video
    from mmfer.video.models import FineTunedTemporalNet

    face_dir = _tiny_face_model(tmp_path / "face_tiny")
    clips = tmp_path / "clips"
    clips.mkdir()
    rows = ["file,label,subject"]
    for i, label in enumerate(["happy", "sad", "happy", "sad"]):
        write_video(clips / f"c{i}.mp4", face_frames(6, blank={2} if i == 0 else set()))
        rows.append(f"c{i}.mp4,{label},s{i % 2}")
    (clips / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = VideoTrainCfg(name="video_ft_test", model=VideoModelCfg(finetune=True, hidden=16))
    cfg.data.dataset, cfg.data.root, cfg.data.face_model = "table", str(clips), str(face_dir)
    cfg.data.detector, cfg.data.yunet_model, cfg.data.max_frames = "yunet", str(YUNET_640), 8
    cfg.trainer.epochs, cfg.trainer.batch_size = 2, 2
    model_dir = train_video(cfg, tmp_path / "run")
    card = json.loads((model_dir / "card.json").read_text())
    assert card["frames"]["name"] == "face_tiny" and "fine-tuned" in card["preprocessing"]["per_frame"]
    model, _, vcfg = load_video_model(model_dir)
    assert isinstance(model, FineTunedTemporalNet) and vcfg.model.finetune
    # The default face model draws the timeline; the fine-tuned head reads the crops with its own CNN.
    rec = FaceEmotionRecognizer(detector="yunet", yunet_model=str(YUNET_640))
    tl = video_timeline(clips / "c0.mp4", rec, temporal=model_dir)
    assert tl.temporal["model"] == "video_ft_test" and tl.temporal["windows"] == 1
    assert sum(tl.temporal["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_a_frozen_head_refuses_other_face_weights() -> None:
    from mmfer.face.artifact import ModelLoadError, weights_digest
    from mmfer.video.artifact import check_face_model

    face = {"name": "face_lite0", "_dir": str(WEIGHTS_DIR / "face_lite0")}
    head = {"name": "head", "face_model": {"name": "face_lite0", "weights_sha256": weights_digest(face["_dir"])}}
    check_face_model(head, "face_lite0", face)  # the weights it was trained on: fine
    with pytest.raises(ModelLoadError, match="reads face_lite0 embeddings, but the face model is other"):
        check_face_model(head, "face_lite0", {**face, "name": "other"})
    head["face_model"]["weights_sha256"] = "0123456789abcdef"  # e.g. face_lite0 retrained since
    with pytest.raises(ModelLoadError, match="retrain it"):
        check_face_model(head, "face_lite0", face)
