"""Lightning system and data module for the face expression branch."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from torch.utils.data import DataLoader

from mmfer.config import FaceTrainCfg, to_dict
from mmfer.data.face_dataset import FaceArrayDataset, train_transform
from mmfer.data.fer2013 import FaceArrays, load_fer2013
from mmfer.emotions import NUM_EMOTIONS
from mmfer.face.artifact import init_from_trained
from mmfer.face.models import create_model, predict_softmax
from mmfer.training.optim import configure_optimizer


def stratified_subset(arr: FaceArrays, limit: int | None, seed: int = 0) -> FaceArrays:
    """A class-stratified subset of at most ``limit`` faces (None: everything)."""
    if limit is None or limit >= len(arr):
        return arr
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(arr.labels):
        members = np.flatnonzero(arr.labels == c)
        n = max(1, round(limit * len(members) / len(arr)))
        picks.append(rng.choice(members, size=min(n, len(members)), replace=False))
    idx = np.sort(np.concatenate(picks))
    return FaceArrays(np.asarray(arr.images[idx]), arr.labels[idx], arr.source[idx],
                      None if arr.soft is None else arr.soft[idx], arr.data_hash)


class FaceDataModule(L.LightningDataModule):
    def __init__(self, cfg: FaceTrainCfg):
        super().__init__()
        self.cfg = cfg
        self.data_hash = ""

    def _labels(self) -> str:
        d = self.cfg.data
        if d.dataset == "ferplus":
            return "ferplus-soft" if d.labels == "soft" else "ferplus"
        if d.dataset in ("fer2013", "folder"):
            return "fer2013"
        raise ValueError(f"unknown data.dataset {d.dataset!r}; expected fer2013, ferplus or folder")

    def setup(self, stage: str | None = None) -> None:
        d, seed = self.cfg.data, self.cfg.trainer.seed
        train = stratified_subset(load_fer2013(d.train_split, d.root, self._labels()), d.limit_train, seed)
        val = stratified_subset(load_fer2013(d.val_split, d.root, self._labels()), d.limit_val, seed)
        self.data_hash = train.data_hash
        self.train_set = FaceArrayDataset(train.images, train.labels, train.soft, train_transform(self.cfg.augment))
        self.val_set = FaceArrayDataset(val.images, val.labels)
        self.class_counts = np.bincount(train.labels, minlength=NUM_EMOTIONS)

    def train_dataloader(self) -> DataLoader:
        t = self.cfg.trainer
        return DataLoader(self.train_set, batch_size=t.batch_size, shuffle=True, drop_last=True,
                          num_workers=t.num_workers, persistent_workers=t.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        t = self.cfg.trainer
        return DataLoader(self.val_set, batch_size=max(256, t.batch_size), num_workers=t.num_workers,
                          persistent_workers=t.num_workers > 0)


class FaceClassifier(L.LightningModule):
    """Owns the loss (label smoothing, optional mixup, soft labels), metrics and optimiser."""

    def __init__(self, cfg: FaceTrainCfg):
        super().__init__()
        self.save_hyperparameters({"config": to_dict(cfg)})
        self.cfg = cfg
        self.model = create_model(cfg.model, cfg.data.image_size)
        self.init_card = init_from_trained(self.model, cfg) if cfg.model.init_from else None
        if cfg.trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        n = cfg.model.num_classes
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=n)
        self.val_f1 = torchmetrics.F1Score(task="multiclass", num_classes=n, average="macro")
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.trainer.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=self.cfg.optim.label_smoothing)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        alpha = self.cfg.optim.mixup_alpha
        if alpha > 0:
            lam = float(np.random.beta(alpha, alpha))
            perm = torch.randperm(x.shape[0], device=x.device)
            x = lam * x + (1 - lam) * x[perm]
            logits = self(x)
            loss = lam * self._loss(logits, y) + (1 - lam) * self._loss(logits, y[perm])
        else:
            logits = self(x)
            loss = self._loss(logits, y)
        hard = y.argmax(1) if y.ndim == 2 else y
        self.train_acc(logits.argmax(1), hard)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        if self.cfg.tta_flip:  # select checkpoints under the TTA used at inference
            logits = predict_softmax(self, x, True, self.cfg.tta_zooms).log()
        else:
            logits = self(x)
        self.val_acc(logits, y)
        self.val_f1(logits, y)
        self.log("val/loss", F.cross_entropy(logits.float(), y), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)
        self.log("val/macro_f1", self.val_f1, prog_bar=True)

    def configure_optimizers(self):  # noqa: ANN201 (Lightning's union return type)
        o = self.cfg.optim
        head = [p for n, p in self.model.named_parameters() if not n.startswith("backbone.")]
        body = [p for n, p in self.model.named_parameters() if n.startswith("backbone.")]
        groups = [{"params": body, "lr": o.lr * o.backbone_lr_mult}, {"params": head, "lr": o.lr}]
        return configure_optimizer(groups, o, int(self.trainer.estimated_stepping_batches), self.cfg.trainer.epochs)
