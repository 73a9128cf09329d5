"""Torch datasets over decoded face arrays, with the training augmentations."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmfer.config import AugmentCfg


def train_transform(aug: AugmentCfg, size: int = 48) -> v2.Transform:
    """Crop, flip, small rotation/shift, brightness/contrast, random erasing (on 48x48 grey)."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=aug.crop_scale, ratio=(0.9, 1.1), antialias=True),
        v2.RandomHorizontalFlip(aug.hflip),
        v2.RandomAffine(degrees=aug.rotation, translate=(aug.translate, aug.translate)),
        v2.ColorJitter(brightness=aug.brightness, contrast=aug.contrast),
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomErasing(p=aug.erasing, scale=(0.02, 0.2), value=0.0),
    ])


class FaceArrayDataset(Dataset):
    """(1, 48, 48) float faces in [0, 1] with integer labels (or soft label vectors)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, soft: np.ndarray | None = None,
                 transform: v2.Transform | None = None):
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.soft = None if soft is None else torch.as_tensor(soft, dtype=torch.float32)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(np.array(self.images[i], dtype=np.uint8, copy=True))[None]
        img = self.transform(img) if self.transform is not None else img.float().div_(255)
        target = self.soft[i] if self.soft is not None else self.labels[i]
        return img, target
