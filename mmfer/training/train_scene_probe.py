"""Fit a context probe on CLIP embeddings of a context dataset (CAER-S or EMOTIC), score it on
the dataset's test split next to zero-shot prompts on the same embeddings, and save it."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.branches.scene_classifier import clip_encoder
from mmfer.config import SceneTrainCfg, to_dict
from mmfer.data.context import ContextSample, load_caer_s, load_emotic
from mmfer.data.fer2013 import DatasetError
from mmfer.emotions import EMOTIONS
from mmfer.face.detect import FaceDetector
from mmfer.io.images import load_image
from mmfer.scene.clip_encoder import ClipSceneEncoder
from mmfer.scene.probe import fit_probe, save_probe
from mmfer.scene.zero_shot import ZeroShotSceneClassifier

log = logging.getLogger(__name__)


def load_context(cfg: SceneTrainCfg, split: str) -> list[ContextSample]:
    """Samples of ``split`` with exactly one canonical label (a probe predicts one emotion)."""
    d = cfg.data
    if d.dataset == "caer-s":
        samples = load_caer_s(split, d.root)
    elif d.dataset == "emotic":
        samples = load_emotic(split, d.root)
    else:
        raise DatasetError(f"unknown scene data.dataset {d.dataset!r}; expected caer-s or emotic")
    single = [s for s in samples if len(s.labels) == 1]
    if len(single) < len(samples):
        log.warning("%s %s: %d of %d samples have no single canonical emotion and are left out",
                    d.dataset, split, len(samples) - len(single), len(samples))
    return single


def embed_samples(encoder: ClipSceneEncoder, samples: list[ContextSample], mask_faces: bool, detector: Any = None,
                  batch_size: int = 32) -> np.ndarray:
    """(N, D) CLIP embeddings; EMOTIC samples are cropped to the annotated person's body box."""
    import cv2

    out = []
    for s in range(0, len(samples), batch_size):
        images, boxes = [], []
        for sample in samples[s : s + batch_size]:
            bgr = load_image(sample.image)
            if sample.body_box is not None:
                x, y, w, h = sample.body_box
                crop = bgr[max(0, y) : y + h, max(0, x) : x + w]
                bgr = crop if crop.size else bgr
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            boxes.append([f.box for f in detector.detect(bgr)] if mask_faces else [])
        out.append(encoder.embed_images(images, boxes if mask_faces else None).numpy())
    return np.concatenate(out) if out else np.zeros((0, encoder.embed_dim), np.float32)


def train_scene_probe(cfg: SceneTrainCfg, out_dir: str | Path, encoder: ClipSceneEncoder | None = None
                      ) -> tuple[Path, dict[str, Any]]:
    """Embed train and test, fit the probe, report it beside zero-shot; returns (probe folder, metrics)."""
    from mmfer.evaluation.metrics import classification_report  # scikit-learn: only when training

    d = cfg.data
    if encoder is None:
        encoder = clip_encoder(cfg.clip.model, cfg.clip.pretrained)
    detector = FaceDetector(d.detector, d.yunet_model) if d.mask_faces else None
    train, test = load_context(cfg, d.train_split), load_context(cfg, d.test_split)
    if d.limit_train:
        train = train[:: max(1, len(train) // d.limit_train)][: d.limit_train]
    started = time.time()
    x_train, x_test = (embed_samples(encoder, s, d.mask_faces, detector) for s in (train, test))
    y_train = np.array([EMOTIONS.index(s.labels[0]) for s in train])
    y_test = np.array([EMOTIONS.index(s.labels[0]) for s in test])
    p = cfg.probe
    probe = fit_probe(x_train, y_train, p.kind, p.hidden, p.c, p.seed)
    import torch

    with torch.no_grad():
        probs = probe(torch.from_numpy(x_test)).softmax(-1).numpy()
    zero_shot = ZeroShotSceneClassifier(encoder).scores(torch.from_numpy(x_test))
    rep, zs = classification_report(y_test, probs, EMOTIONS), classification_report(y_test, zero_shot, EMOTIONS)
    metrics = {"dataset": d.dataset, "train": len(train), "test": len(test), "test_split": d.test_split,
               "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"], "ece": rep.get("ece"),
               "zero_shot_accuracy": zs["accuracy"], "zero_shot_macro_f1": zs["macro_f1"],
               "seconds": round(time.time() - started, 1), "config": to_dict(cfg)}
    path = save_probe(probe, Path(out_dir) / "model", cfg.clip.model, cfg.clip.pretrained, metrics, d.mask_faces)
    return path, metrics
