"""Evaluate a trained face model on a FER-2013 split and write a report folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmfer.branches.registry import backend_for, create_branch
from mmfer.data.fer2013 import FOLDER_SPLITS, load_fer2013
from mmfer.emotions import EMOTIONS
from mmfer.evaluation.metrics import classification_report
from mmfer.evaluation.report import write_report
from mmfer.face.artifact import card_tta_zooms, load_face_model
from mmfer.face.models import predict_softmax


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images_uint8: np.ndarray, batch_size: int = 256,
                  tta_flip: bool = False, device: str | torch.device = "cpu",
                  tta_zooms: Sequence[float] = ()) -> np.ndarray:
    """Softmax probabilities (N, K) float32 for grey uint8 faces (N, H, W).

    The model is moved to ``device`` and run in eval mode (its previous train/eval mode is
    restored). With ``tta_flip`` the softmax of each face and of its horizontal mirror are averaged;
    ``tta_zooms`` adds centre crops (see :func:`~mmfer.face.models.predict_softmax`).
    """
    images = np.asarray(images_uint8)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"expected grey images of shape (N, H, W), got {images.shape}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(images), batch_size):
            batch = np.ascontiguousarray(images[start:start + batch_size])
            x = torch.from_numpy(batch).to(device).float().div_(255.0).unsqueeze(1)
            out.append(predict_softmax(model, x, tta_flip, tta_zooms).cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("no images to predict")
    return np.concatenate(out).astype(np.float32, copy=False)


def face_model_probs(model: str | Path | None, images: np.ndarray, tta_flip: bool | None = None,
                     device: str | torch.device = "cpu", local_files_only: bool = False,
                     trust_remote_code: bool = False,
                     tta_zooms: Sequence[float] | None = None, face: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(N, 7) probabilities of any face model (mmfer's, or a transformers checkpoint) on grey FER-style
    faces, and its card. ``tta_flip`` None: what the model card says (transformers: off).
    ``tta_zooms`` None: the card's centre zooms when TTA is on, none when it is off.
    ``face``: a loaded face branch (``EmotionPipeline.require("face")``) to use, with its own TTA setting,
    instead of loading ``model``."""
    if face is not None and tta_zooms is None:
        if len(images) == 0:
            raise ValueError("no images to predict")
        if tuple(face.classes) != EMOTIONS:
            raise ValueError(f"model {face.name} predicts {list(face.classes)}, but FER-2013 scoring needs exactly "
                             f"the canonical classes in order {list(EMOTIONS)}")
        return face.classify_crops(np.asarray(images))[0], face.card
    if backend_for("face", model) == "transformers":
        rec = create_branch("face", model, device=str(device), tta_flip=bool(tta_flip),
                            local_files_only=local_files_only, trust_remote_code=trust_remote_code).recognizer
        if len(images) == 0:
            raise ValueError("no images to predict")
        return rec.predict_crops(np.asarray(images)), rec.card
    net, card = load_face_model(model, device=device)
    if tuple(card.get("classes", ())) != EMOTIONS:
        raise ValueError(f"model {card.get('_dir', model)} predicts {card.get('classes')}, but FER-2013 scoring "
                         f"needs exactly the canonical classes in order {list(EMOTIONS)}")
    tta = bool(card.get("config", {}).get("tta_flip", False)) if tta_flip is None else tta_flip
    zooms = tta_zooms_for(card, tta, tta_zooms)
    return predict_probs(net, images, tta_flip=tta, device=device, tta_zooms=zooms), card


def tta_zooms_for(card: dict[str, Any], tta: bool, tta_zooms: Sequence[float] | None = None) -> list[float]:
    """The centre zooms a prediction averages: ``tta_zooms`` when given, else the card's when TTA is on
    (none for transformers checkpoints)."""
    if card.get("backend", "mmfer") != "mmfer":
        return []
    if tta_zooms is not None:
        return [float(z) for z in tta_zooms]
    return card_tta_zooms(card) if tta else []


def tta_label(tta_flip: bool, zooms: Sequence[float]) -> str:
    parts = (["flip"] if tta_flip else []) + ([f"zooms {', '.join(f'{z:g}' for z in zooms)}"] if zooms else [])
    return " + ".join(parts) if parts else "none"


def _display_path(path: str | None) -> str | None:
    """Relative to the working directory when inside it: reports should not carry a machine's home."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def evaluate_face(model_name_or_dir: str | Path | None, split: str = "PrivateTest",
                  data_root: str | Path | None = None, labels: str = "fer2013", tta_flip: bool = False,
                  out_dir: str | Path | None = None, batch_size: int = 256, limit: int | None = None,
                  device: str | torch.device = "cpu", local_files_only: bool = False,
                  trust_remote_code: bool = False, tta_zooms: Sequence[float] | None = None,
                  face: Any = None) -> dict[str, Any]:
    """Evaluate a face model on one FER-2013 split; write and return the report (with ``"paths"``).
    ``face``: the loaded face branch to score (its TTA setting must match ``tta_flip``).

    Args:
        model_name_or_dir: shipped model name or model folder (None: the default shipped model), or a
            transformers image-classification checkpoint (hub id[@revision], ``hf:`` name or directory).
        split: Training, PublicTest or PrivateTest (train/val/test accepted).
        data_root: dataset root (default ``$MMFER_DATA_ROOT``, then ``./data``).
        labels: fer2013, ferplus or ferplus-soft (soft labels are scored by their majority class).
        tta_flip: test-time augmentation: average predictions with the horizontally mirrored face
            and the centre zooms the model card lists (``tta_zooms``).
        tta_zooms: centre zooms to average instead of the card's (with ``tta_flip``: also mirrored).
        out_dir: report folder; default ``reports/face/<model name>/<split>[_tta]``.
        limit: evaluate only the first ``limit`` rows of the split (a quick check, not a full score).
    """
    split = FOLDER_SPLITS.get(split, split)
    data = load_fer2013(split, root=data_root, labels=labels)
    images, y_true = data.images, data.labels
    total = len(y_true)
    if limit is not None:
        if limit < 1:
            raise ValueError("limit must be >= 1 (or None for the whole split)")
        images, y_true = images[:limit], y_true[:limit]
    probs, card = face_model_probs(model_name_or_dir, images, tta_flip=tta_flip, device=device,
                                   local_files_only=local_files_only, trust_remote_code=trust_remote_code,
                                   tta_zooms=tta_zooms, face=face)
    zooms = tta_zooms_for(card, tta_flip, tta_zooms)
    report = classification_report(y_true, probs, EMOTIONS)
    name = str(card.get("name") or Path(card["_dir"]).name)
    if "labels" in card:  # a transformers checkpoint: how its labels were read
        report["label_mapping"] = card["labels"]
    if out_dir is None:
        out_dir = Path("reports") / "face" / name / (split + ("_tta" if tta_flip else ""))
    meta = {
        "modality": "face",
        "model": name,
        "model_dir": _display_path(card.get("_dir")),
        "backend": card.get("backend", "mmfer"),
        "model_data_hash": card.get("data_hash"),
        "dataset": "fer2013",
        "labels": labels,
        "data_root": str(data_root) if data_root is not None else None,
        "data_hash": data.data_hash,
        "split": split,
        "tta": tta_flip,
        "tta_zooms": zooms,
        "n": report["n"],
        "split_size": total,
        "limit": limit,
        "subset": f"first {len(y_true)} of {total} rows of the split (limit={limit}); not a full-split score"
        if limit is not None and limit < total else "full split",
        "device": str(device),
    }
    views = tta_label(tta_flip, zooms)
    title = f"Face model {name}: FER-2013 {split}" + (f" (TTA: {views})" if views != "none" else "")
    paths = write_report(report, out_dir, title, meta, y_true=y_true, probs=probs)
    return {**report, "meta": meta, "paths": paths}
