"""Optimiser and schedule from an OptimCfg, shared by every branch's Lightning module."""

from __future__ import annotations

import math
from typing import Any

import torch

from mmfer.config import OptimCfg


def configure_optimizer(groups: list[dict[str, Any]], o: OptimCfg, total_steps: int, epochs: int) -> dict[str, Any]:
    """AdamW or SGD over parameter ``groups``; cosine with linear warm-up (per step) or plateau on val/acc."""
    if o.name == "adamw":
        opt = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    elif o.name == "sgd":
        opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True)
    else:
        raise ValueError(f"unknown optim.name {o.name!r}; expected adamw or sgd")
    if o.schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/acc"}}
    if o.schedule != "cosine":
        raise ValueError(f"unknown optim.schedule {o.schedule!r}; expected cosine or plateau")
    total = max(1, total_steps)
    warm = min(total - 1, int(o.warmup_epochs * total / max(1, epochs)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
