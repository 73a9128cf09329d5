"""Lightning system and data module for the speech emotion branch."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from mmfer.audio.augment import spec_augment
from mmfer.audio.feature_table import FeatureTable
from mmfer.audio.models import create_audio_model
from mmfer.config import AudioTrainCfg, to_dict
from mmfer.training.optim import configure_optimizer


class AudioFeatureDataset(Dataset):
    """Clips of a :class:`FeatureTable`; training draws augmented copies, random crops and masks."""

    def __init__(self, table: FeatureTable, clips: Sequence[int], labels: Sequence[int], cfg: AudioTrainCfg,
                 train: bool, masks: np.ndarray | None = None):
        self.table, self.clips, self.labels = table, np.asarray(clips), np.asarray(labels)
        self.cfg, self.train = cfg, train
        self.masks = masks  # (len(clips), K): the classes each clip's corpus labels (several corpora only)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, torch.Tensor]:
        clip = int(self.clips[i])
        variant = 0
        if self.train and self.table.variants and np.random.random() < self.cfg.augment.variant_prob:
            variant = np.random.randint(1, self.table.variants + 1)
        x = self.table.get(clip, variant)
        mode = self.table.mode
        if self.train and mode != "layer_means":  # cached layer means are whole-clip summaries: nothing to crop
            limit = self.cfg.data.max_frames if mode == "features" else int(self.cfg.data.max_seconds * 16_000)
            if x.shape[1] > limit:  # random crop = time shift
                start = np.random.randint(0, x.shape[1] - limit + 1)
                x = x[:, start : start + limit]
            if mode == "features":
                x = spec_augment(x, self.cfg.features.n_mels, self.cfg.augment)
        if self.masks is not None:
            return x, int(self.labels[i]), torch.from_numpy(self.masks[i])
        return x, int(self.labels[i])


def pad_batch(batch: list[tuple]) -> tuple[torch.Tensor, ...]:
    """(B, C, T_max) zero-padded features, lengths, labels (and the class masks, when the items carry them)."""
    lengths = torch.tensor([item[0].shape[1] for item in batch])
    out = torch.zeros(len(batch), batch[0][0].shape[0], int(lengths.max()))
    for i, item in enumerate(batch):
        out[i, :, : item[0].shape[1]] = item[0]
    labels = torch.tensor([item[1] for item in batch])
    if len(batch[0]) == 3:
        return out, lengths, labels, torch.stack([item[2] for item in batch])
    return out, lengths, labels


def masked_cross_entropy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, smoothing: float = 0.0
                         ) -> torch.Tensor:
    """Cross-entropy over the classes each sample's corpus labels: the others are left out of the softmax
    (a corpus without disgust says nothing against disgust), and label smoothing spreads over the kept ones."""
    logp = logits.float().masked_fill(~mask, float("-inf")).log_softmax(1)
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    if smoothing <= 0:
        return nll.mean()
    uniform = -(logp.masked_fill(~mask, 0.0).sum(1) / mask.sum(1))
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


class AudioDataModule(L.LightningDataModule):
    def __init__(self, cfg: AudioTrainCfg, table: FeatureTable, labels: np.ndarray, train_clips: Sequence[int],
                 val_clips: Sequence[int] | None = None, masks: np.ndarray | None = None,
                 weights: np.ndarray | None = None):
        super().__init__()
        self.cfg, self.table, self.labels = cfg, table, np.asarray(labels)
        self.train_clips, self.val_clips = np.asarray(train_clips), val_clips
        self.masks, self.weights = masks, weights  # per clip of the table / per training clip

    def train_dataloader(self) -> DataLoader:
        t = self.cfg.trainer
        masks = None if self.masks is None else self.masks[self.train_clips]
        ds = AudioFeatureDataset(self.table, self.train_clips, self.labels[self.train_clips], self.cfg, True, masks)
        sampler = None
        if self.weights is not None:  # each corpus its share of every epoch, drawn with replacement
            sampler = WeightedRandomSampler(torch.as_tensor(self.weights, dtype=torch.double), len(self.train_clips),
                                            replacement=True)
        return DataLoader(ds, batch_size=t.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
                          collate_fn=pad_batch, num_workers=t.num_workers, persistent_workers=t.num_workers > 0)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_clips is None or len(self.val_clips) == 0:
            return []
        clips = np.asarray(self.val_clips)
        ds = AudioFeatureDataset(self.table, clips, self.labels[clips], self.cfg, False)
        return DataLoader(ds, batch_size=64, collate_fn=pad_batch)


class AudioClassifier(L.LightningModule):
    def __init__(self, cfg: AudioTrainCfg):
        super().__init__()
        self.save_hyperparameters({"config": to_dict(cfg)})
        self.cfg = cfg
        self.model = create_audio_model(cfg.model, cfg.features.n_mels)
        n = cfg.model.num_classes
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=n)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=n)
        self.val_f1 = torchmetrics.F1Score(task="multiclass", num_classes=n, average="macro")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, lengths)

    def training_step(self, batch: tuple[torch.Tensor, ...], _: int) -> torch.Tensor:
        x, lengths, y = batch[:3]
        logits = self(x, lengths)
        if len(batch) == 4:  # several corpora: each clip's loss over the classes its corpus labels
            loss = masked_cross_entropy(logits, y, batch[3], self.cfg.optim.label_smoothing)
        else:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.optim.label_smoothing)
        self.train_acc(logits.argmax(1), y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], _: int) -> None:
        x, lengths, y = batch[:3]
        logits = self(x, lengths)
        self.val_acc(logits, y)
        self.val_f1(logits, y)
        self.log("val/loss", F.cross_entropy(logits.float(), y), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)
        self.log("val/macro_f1", self.val_f1, prog_bar=True)

    def configure_optimizers(self):  # noqa: ANN201 (Lightning's union return type)
        o = self.cfg.optim
        backbone = [p for n, p in self.model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
        rest = [p for n, p in self.model.named_parameters() if not n.startswith("backbone.")]
        groups = [{"params": rest, "lr": o.lr}]
        if backbone:  # a fine-tuned transformers encoder learns slower than its new head
            groups.append({"params": backbone, "lr": o.lr * o.backbone_lr_mult})
        return configure_optimizer(groups, self.cfg.optim, int(self.trainer.estimated_stepping_batches),
                                   self.cfg.trainer.epochs)


@torch.no_grad()
def predict_table(model: torch.nn.Module, table: FeatureTable, clips: Sequence[int], batch_size: int = 64
                  ) -> np.ndarray:
    """Softmax probabilities of clean (variant 0) whole clips, in ``clips`` order."""
    model.eval()
    out = []
    for s in range(0, len(clips), batch_size):
        batch = [(table.get(int(c)), 0) for c in clips[s : s + batch_size]]
        x, lengths, _ = pad_batch(batch)
        out.append(model(x, lengths).float().softmax(1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
