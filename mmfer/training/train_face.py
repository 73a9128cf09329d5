"""Train a face expression model from a config: resumable, seeded, GPU-ready (AMP, DDP)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    StochasticWeightAveraging,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger

from mmfer.config import ConfigError, FaceTrainCfg
from mmfer.face.artifact import save_face_model
from mmfer.face.models import check_zooms
from mmfer.training.face_module import FaceClassifier, FaceDataModule


def resolve_precision(precision: str, accelerator: str) -> str:
    if precision != "auto":
        return precision
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _distributed_args(cfg: FaceTrainCfg) -> dict[str, Any]:
    """Under torchrun, let Lightning's TorchElastic environment run DDP over the launched ranks."""
    t = cfg.trainer
    if "LOCAL_WORLD_SIZE" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ["LOCAL_WORLD_SIZE"])
        return {"devices": local, "num_nodes": int(os.environ["WORLD_SIZE"]) // local,
                "strategy": "ddp" if t.strategy == "auto" else t.strategy}
    return {"devices": t.devices, "strategy": t.strategy}


def _lineage(init_card: dict[str, Any] | None) -> dict[str, Any]:
    """What a continued run started from: the earlier stage's config, metrics and data hash."""
    if init_card is None:
        return {}
    return {"init_from": {k: init_card.get(k) for k in ("name", "config", "metrics", "data_hash", "init_from")}}


def _swa(cfg: FaceTrainCfg) -> list[Callback]:
    o = cfg.optim
    if o.swa_start_epoch is None:
        return []
    if not 0 <= o.swa_start_epoch < cfg.trainer.epochs:
        raise ConfigError(f"optim.swa_start_epoch must be in [0, trainer.epochs={cfg.trainer.epochs}), "
                         f"got {o.swa_start_epoch}")
    if o.swa_start_epoch == 0 and o.warmup_epochs > 0:
        # SWA's schedule anneals from the rate the optimizer has when it takes over: at step 0 of a
        # warmup that is ~0, and the first epoch would be spent not learning.
        raise ConfigError("optim.swa_start_epoch=0 needs optim.warmup_epochs=0 (averaging replaces the "
                          "schedule from the first step)")
    # Lightning counts swa_epoch_start from 1 and snapshots the weights at the start of each epoch
    # from there to the last: epochs - swa_start_epoch snapshots, the first being the weights
    # epoch swa_start_epoch (0-based) starts from.
    return [StochasticWeightAveraging(swa_lrs=o.swa_lr or o.lr, swa_epoch_start=o.swa_start_epoch + 1,
                                      annealing_epochs=1)]


def train_face(cfg: FaceTrainCfg, out_dir: str | Path, resume: bool = True,
               fast_dev_run: bool = False) -> dict[str, Any]:
    """Fit, keep the best PublicTest checkpoint, and export it as safetensors + card.

    Returns the card's metrics. ``out_dir/checkpoints/last.ckpt`` is written every epoch;
    with ``resume`` a new call continues from it.
    """
    out = Path(out_dir)
    t = cfg.trainer
    try:
        check_zooms(cfg.tta_zooms)
    except ValueError as exc:
        raise ConfigError(f"tta_zooms: {exc}") from None
    swa_callbacks = _swa(cfg)  # validated before any data is read
    if t.threads:
        torch.set_num_threads(t.threads)
    L.seed_everything(t.seed, workers=True)
    dm = FaceDataModule(cfg)
    system = FaceClassifier(cfg)
    ckpt_dir = out / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/acc", mode="max",
                           save_last=True, save_top_k=1, auto_insert_metric_name=False)
    callbacks = [best, EarlyStopping(monitor="val/acc", mode="max", patience=t.early_stop_patience),
                 LearningRateMonitor(logging_interval="epoch"), TQDMProgressBar(refresh_rate=20), *swa_callbacks]
    trainer = L.Trainer(
        default_root_dir=str(out), max_epochs=t.epochs, accelerator=t.accelerator,
        precision=resolve_precision(t.precision, t.accelerator), callbacks=callbacks,
        logger=CSVLogger(str(out), name="logs"), log_every_n_steps=t.log_every_n_steps,
        max_time={"minutes": t.max_time_minutes} if t.max_time_minutes else None,
        deterministic=False, fast_dev_run=fast_dev_run, **_distributed_args(cfg),
    )
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() and not fast_dev_run else None
    started = time.time()
    trainer.fit(system, datamodule=dm, ckpt_path=ckpt_path)
    if fast_dev_run or not trainer.is_global_zero:
        return {}
    best_path = best.best_model_path or str(last)
    # Our own checkpoint, written by this run: full (pickle) load is safe here.
    ckpt = torch.load(best_path, map_location="cpu", weights_only=False)
    system.load_state_dict(ckpt["state_dict"])
    model = system.model.to(memory_format=torch.contiguous_format)
    score = best.best_model_score
    swa = {}
    if cfg.optim.swa_start_epoch is not None:
        # Lightning validates the averaged weights in one extra epoch after the last one.
        swa = {"swa": {"snapshots_averaged": cfg.trainer.epochs - cfg.optim.swa_start_epoch,
                       "selected_average": int(ckpt["epoch"]) == cfg.trainer.epochs}}
    metrics = {
        "PublicTest": {"accuracy": float(score) if score is not None else None, "tta_flip": cfg.tta_flip},
        "epochs_run": trainer.current_epoch,
        "best_checkpoint": Path(best_path).name,
        "best_epoch": int(ckpt["epoch"]),
        "train_seconds_this_call": round(time.time() - started, 1),
        **swa,
    }
    save_face_model(model, cfg, out / "model", metrics, dm.data_hash,
                    extra={"trained_with": {"torch": torch.__version__, "lightning": L.__version__,
                                            "accelerator": str(trainer.accelerator.__class__.__name__)},
                           **_lineage(system.init_card)})
    (out / "train_summary.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
