"""Train the temporal head on frozen per-frame face embeddings, and estimate it by
subject-disjoint (leave-one-subject-out) cross-validation, next to the per-frame face model's
own clip average as a baseline. Same training layer and report format as the other branches.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from mmfer.config import VideoTrainCfg, to_dict
from mmfer.core.artifact import read_card, resolve_model_dir, save_artifact, weights_digest
from mmfer.data.video_clips import Clip, load_clips, subject_folds
from mmfer.emotions import EMOTIONS
from mmfer.face.artifact import load_face_model
from mmfer.face.predictor import CROP_SIZE, FaceEmotionRecognizer
from mmfer.paths import cache_dir
from mmfer.training.optim import configure_optimizer
from mmfer.training.train_face import resolve_precision
from mmfer.video.clip_features import clip_features
from mmfer.video.models import FineTunedTemporalNet, create_temporal_model


def corpus_features(cfg: VideoTrainCfg, clips: list[Clip], use_cache: bool = True) -> dict[str, np.ndarray]:
    """Per-clip frame embeddings of the main face (padded to max_frames), cached by file list and settings."""
    d = cfg.data
    face = weights_digest(resolve_model_dir(d.face_model))  # new face weights -> new embeddings
    h = hashlib.sha1(json.dumps([[c.path.name, c.path.stat().st_size] for c in clips] +
                                [d.sample_fps, d.max_frames, face, d.detector]).encode()).hexdigest()[:16]
    path = cache_dir("video-features") / f"{h}.npz"
    if use_cache and path.is_file():
        with np.load(path) as z:
            if "crops" in z:  # caches written before fine-tuning existed lack the crops
                return dict(z)
    rec = FaceEmotionRecognizer(d.face_model, detector=d.detector, yunet_model=d.yunet_model, device="cpu")
    n, t = len(clips), d.max_frames
    emb = np.zeros((n, t, rec.model.feat_dim), np.float32)
    present = np.zeros((n, t), bool)
    probs = np.full((n, t, len(EMOTIONS)), np.nan, np.float32)
    lengths = np.zeros(n, np.int64)
    crops = np.zeros((n, t, CROP_SIZE, CROP_SIZE), np.uint8)
    for i, c in enumerate(clips):
        f = clip_features(c.path, rec, d.sample_fps, d.max_frames, keep_crops=True)
        k = len(f.times)
        emb[i, :k], present[i, :k], probs[i, :k], lengths[i] = f.embeddings, f.present, f.frame_probs, k
        crops[i, :k] = f.crops
    out = {"emb": emb, "present": present, "probs": probs, "lengths": lengths, "crops": crops}
    if use_cache:
        np.savez(path, **out)
    return out


class _ClipSet(Dataset):
    def __init__(self, feats: dict[str, np.ndarray], idx: np.ndarray, labels: np.ndarray, cfg: VideoTrainCfg,
                 train: bool):
        self.f, self.idx, self.labels, self.cfg, self.train = feats, idx, labels, cfg, train
        self.scale = float(np.std(feats["emb"][feats["present"]])) if feats["present"].any() else 1.0

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        j = int(self.idx[i])
        finetune = self.cfg.model.finetune
        x = torch.from_numpy(self.f["crops" if finetune else "emb"][j].copy())
        present = torch.from_numpy(self.f["present"][j].copy())
        if self.train:
            d = self.cfg.data
            if finetune:
                if torch.rand(()) < 0.5:  # one mirror for the whole clip keeps its motion coherent
                    x = x.flip(-1)
            else:
                x += torch.randn_like(x) * d.feature_noise * self.scale
            present &= ~(torch.rand(present.shape) < d.frame_dropout)
            x[~present] = 0
        return x, present, torch.tensor(int(self.f["lengths"][j])), torch.tensor(int(self.labels[i]))


class VideoClassifier(L.LightningModule):
    def __init__(self, cfg: VideoTrainCfg, feat_dim: int, frames: torch.nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters({"config": to_dict(cfg), "feat_dim": feat_dim})
        self.cfg = cfg
        self.model = create_temporal_model(cfg.model, feat_dim, frames)
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=cfg.model.num_classes)

    def training_step(self, batch: tuple[torch.Tensor, ...], _: int) -> torch.Tensor:
        emb, present, lengths, y = batch
        logits = self.model(emb, present, lengths.clamp_min(1))
        loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.optim.label_smoothing)
        self.train_acc(logits.argmax(1), y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):  # noqa: ANN201
        o = self.cfg.optim
        if isinstance(self.model, FineTunedTemporalNet):
            groups = [{"params": list(self.model.frames.parameters()), "lr": o.lr * o.backbone_lr_mult},
                      {"params": list(self.model.head.parameters()), "lr": o.lr}]
        else:
            groups = [{"params": list(self.model.parameters()), "lr": o.lr}]
        return configure_optimizer(groups, self.cfg.optim, int(self.trainer.estimated_stepping_batches),
                                   self.cfg.trainer.epochs)


def fit_video(cfg: VideoTrainCfg, feats: dict[str, np.ndarray], labels: np.ndarray, train_idx: np.ndarray,
              out_dir: Path) -> VideoClassifier:
    t = cfg.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    L.seed_everything(t.seed, workers=True)
    system = VideoClassifier(cfg, feats["emb"].shape[-1], _frames_cnn(cfg)[0] if cfg.model.finetune else None)
    loader = DataLoader(_ClipSet(feats, train_idx, labels[train_idx], cfg, True), batch_size=t.batch_size,
                        shuffle=True)
    trainer = L.Trainer(default_root_dir=str(out_dir), max_epochs=t.epochs, accelerator=t.accelerator,
                        precision=resolve_precision(t.precision, t.accelerator), logger=CSVLogger(str(out_dir), "logs"),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=1)
    trainer.fit(system, train_dataloaders=loader)
    return system.cpu().eval()


def _frames_cnn(cfg: VideoTrainCfg) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A fresh copy of the face CNN that a fine-tuned head trains (and its card)."""
    return load_face_model(cfg.data.face_model)


@torch.no_grad()
def predict_video(model: torch.nn.Module, feats: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    model.eval()
    emb = torch.from_numpy(feats["crops" if isinstance(model, FineTunedTemporalNet) else "emb"][idx])
    present = torch.from_numpy(feats["present"][idx])
    lengths = torch.from_numpy(feats["lengths"][idx]).clamp_min(1)
    return model(emb, present, lengths).softmax(-1).numpy()


def frame_average(feats: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Baseline: the per-frame face model's probabilities averaged over the clip's face frames."""
    p = feats["probs"][idx]
    out = np.nanmean(np.where(np.isnan(p), np.nan, p), axis=1)
    return np.nan_to_num(out, nan=1.0 / len(EMOTIONS))


def cross_validate_video(cfg: VideoTrainCfg, out_dir: str | Path) -> dict[str, Any]:
    """Leave-one-subject-out CV of the temporal head, and of the frame-average baseline on the same folds."""
    from mmfer.evaluation.metrics import aggregate_folds, classification_report  # scikit-learn: only when asked

    out = Path(out_dir)
    clips = load_clips(cfg.data.dataset, cfg.data.root)
    folds = subject_folds(clips)
    feats = corpus_features(cfg, clips)
    labels = np.array([EMOTIONS.index(c.label) for c in clips])
    subjects = np.array([c.subject for c in clips])
    reports, base_reports, rows, ys, ps, bs, fold_of, names = [], [], [], [], [], [], [], []
    for i, test_subjects in enumerate(folds):
        test = np.isin(subjects, test_subjects)
        tr, te = np.flatnonzero(~test), np.flatnonzero(test)
        assert not set(subjects[tr]) & set(test_subjects), "subject leakage"
        system = fit_video(cfg, feats, labels, tr, out / f"fold_{i}")
        probs = predict_video(system.model, feats, te)
        rep = classification_report(labels[te], probs, EMOTIONS)
        base_probs = frame_average(feats, te)
        base = classification_report(labels[te], base_probs, EMOTIONS)
        reports.append(rep)
        base_reports.append(base)
        ys.append(labels[te])
        ps.append(probs)
        bs.append(base_probs)
        fold_of.append(np.full(len(te), i))
        names += [clips[j].path.name for j in te]
        rows.append({"fold": i, "test_subjects": test_subjects, "n": int(len(te)), "accuracy": rep["accuracy"],
                     "frame_average_accuracy": base["accuracy"]})
    y, p = np.concatenate(ys), np.concatenate(ps)
    return {"folds": rows, "aggregate": aggregate_folds(reports), "baseline": aggregate_folds(base_reports),
            "pooled": classification_report(y, p, EMOTIONS), "y": y, "probs": p, "face_probs": np.concatenate(bs),
            "fold": np.concatenate(fold_of), "clips": names, "n_clips": len(clips),
            "n_subjects": len(folds), "config": to_dict(cfg)}


def train_video(cfg: VideoTrainCfg, out_dir: str | Path, metrics: dict[str, Any] | None = None) -> Path:
    """Train on every clip and export ``out_dir/model`` (safetensors + card)."""
    out = Path(out_dir)
    clips = load_clips(cfg.data.dataset, cfg.data.root)
    feats = corpus_features(cfg, clips)
    labels = np.array([EMOTIONS.index(c.label) for c in clips])
    started = time.time()
    system = fit_video(cfg, feats, labels, np.arange(len(clips)), out)
    face = cfg.data.face_model or "face_lite0"
    face_dir = resolve_model_dir(cfg.data.face_model)
    card: dict[str, Any] = {
        "kind": "video", "name": cfg.name, "classes": list(EMOTIONS), "feat_dim": int(feats["emb"].shape[-1]),
        "config": to_dict(cfg),
        "preprocessing": {"frames": f"sampled at {cfg.data.sample_fps:g} fps, at most {cfg.data.max_frames}",
                          "per_frame": f"main face track, grey 48x48 crops embedded by the {face} CNN, "
                                       + ("fine-tuned with the head (weights in this model)" if cfg.model.finetune
                                          else "frozen (weights in that face model)")},
        "face_model": {"name": read_card(face_dir)["name"], "weights_sha256": weights_digest(face_dir)},
        "metrics": {"train_clips": len(clips), "train_seconds": round(time.time() - started, 1), **(metrics or {})}}
    if cfg.model.finetune:  # what rebuilds the fine-tuned CNN at load time
        face_card = read_card(face_dir)
        card["frames"] = {"name": face_card["name"], "config": face_card["config"]}
    model_dir = save_artifact(system.model, out / "model", card)
    return model_dir
