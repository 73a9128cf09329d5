"""Train the embedding fusion head (:mod:`mmfer.fusion.embedding_head`) on a paired dataset, with
subject-disjoint cross-validation deciding whether it is worth using.

Steps: load the dataset (:func:`mmfer.data.paired.load_paired`), embed every item once (cached,
:mod:`mmfer.training.fusion_embeddings`), then for every outer fold fit the head on the training
subjects only and score the held-out ones; single-modality heads are trained and scored the same
way. The rule: the head is marked usable (``verdict.use``) only when its CV accuracy is at least the
best single modality's on the same items. The final head is fitted on every item and saved with a
card holding the config, data, folds, CV scores and the verdict.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.config import ConfigError, from_dict, read_yaml, to_dict
from mmfer.data.fer2013 import DatasetError
from mmfer.data.paired import CV_METHODS, Fold, dataset_name, group_folds, load_paired, subject_folds
from mmfer.emotions import EMOTIONS
from mmfer.fusion.embedding_head import EmbeddingHead, HeadError
from mmfer.training.fusion_embeddings import HEAD_MODALITIES, EmbeddingTable, extract_embeddings

log = logging.getLogger(__name__)

NOT_VALIDATED = "not cross-validated: not used automatically"


@dataclasses.dataclass
class HeadDataCfg:
    dataset: str = "crema-d"  # ravdess | crema-d | meld | caer-s | emotic
    root: str | None = None  # default: --data-root, then $MMFER_DATA_ROOT, then ./data


@dataclasses.dataclass
class HeadEncodersCfg:
    face_model: str | None = None  # None: the shipped face model
    audio_model: str | None = None
    scene: bool = True  # CLIP scene embeddings when CLIP weights are available
    clip_model: str | None = None
    clip_pretrained: str | None = None
    clip_download: bool = False
    detector: str = "auto"
    yunet_model: str | None = None
    sample_fps: float = 5.0  # video frames per second read for the face embedding
    key_frames: int = 3  # frames the scene embedding averages
    device: str = "auto"


@dataclasses.dataclass
class HeadCfg:
    c: float = 1.0  # inverse L2 strength of the logistic regression
    modality_dropout: float = 0.5  # chance a modality block is zeroed in each extra copy of the rows
    dropout_copies: int = 2
    max_iter: int = 1000
    seed: int = 0


@dataclasses.dataclass
class HeadCvCfg:
    method: str = "group-kfold"  # group-kfold | loso | official | none
    folds: int = 5  # for group-kfold


@dataclasses.dataclass
class HeadTrainCfg:
    name: str = "fusion_head"
    method: str = "embedding_head"  # what `mmfer train fusion` dispatches on (method: weights is the other fit)
    data: HeadDataCfg = dataclasses.field(default_factory=HeadDataCfg)
    encoders: HeadEncodersCfg = dataclasses.field(default_factory=HeadEncodersCfg)
    modalities: list[str] = dataclasses.field(default_factory=lambda: list(HEAD_MODALITIES))
    head: HeadCfg = dataclasses.field(default_factory=HeadCfg)
    cv: HeadCvCfg | str = dataclasses.field(default_factory=HeadCvCfg)  # or just the method: `cv: none`
    cache: str | None = None  # embeddings .npz; default <out_dir>/embeddings.npz


def fusion_config(config: dict[str, Any] | str | Path) -> HeadTrainCfg:
    """A validated config from a dict or a YAML file; ConfigError naming the key that is wrong."""
    data = read_yaml(config) if isinstance(config, (str, Path)) else config
    if not isinstance(data, dict):
        raise ConfigError(f"{config}: a fusion head config is a mapping")
    cfg = from_dict(HeadTrainCfg, data)
    if cfg.method != "embedding_head":
        raise ConfigError(f"method {cfg.method!r}: a fusion head config says method: embedding_head")
    if isinstance(cfg.cv, str):
        cfg.cv = HeadCvCfg(method=cfg.cv)
    try:
        cfg.data.dataset = dataset_name(cfg.data.dataset)
    except DatasetError as exc:
        raise ConfigError(f"data.dataset: {exc}") from None
    if cfg.cv.method not in (*CV_METHODS, "none"):
        raise ConfigError(f"cv.method {cfg.cv.method!r} is not one of {[*CV_METHODS, 'none']}")
    bad = [m for m in cfg.modalities if m not in HEAD_MODALITIES]
    if bad or not cfg.modalities:
        raise ConfigError(f"modalities {cfg.modalities} must be a non-empty subset of {list(HEAD_MODALITIES)}")
    h = cfg.head
    if h.c <= 0 or not 0 <= h.modality_dropout < 1 or h.dropout_copies < 0 or h.max_iter < 1:
        raise ConfigError("head: c > 0, 0 <= modality_dropout < 1, dropout_copies >= 0 and max_iter >= 1 are needed")
    return cfg


def build_pipeline(cfg: HeadTrainCfg) -> Any:
    """The EmotionPipeline whose encoders embed the items (no temporal head: it reads face embeddings)."""
    from mmfer.pipeline import EmotionPipeline

    e = cfg.encoders
    return EmotionPipeline(face_model=e.face_model, audio_model=e.audio_model, temporal=False,
                           scene=e.scene and "scene" in cfg.modalities, clip_model=e.clip_model,
                           clip_pretrained=e.clip_pretrained, clip_download=e.clip_download, device=e.device,
                           detector=e.detector, yunet_model=e.yunet_model, sample_fps=e.sample_fps,
                           key_frames=e.key_frames)


def train_fusion_head(config: dict[str, Any] | str | Path, out_dir: str | Path, data_root: str | Path | None = None,
                      pipeline: Any = None) -> dict[str, Any]:
    """Load, embed (or reuse the cache), cross-validate and save the head; returns its card (and ``files``).

    ``data_root`` overrides ``data.root``; ``pipeline`` (an EmotionPipeline) embeds instead of one built
    from ``encoders`` (the card records the encoders actually used either way).

    Raises ConfigError for a bad config, DatasetError for bad data (a missing folder, a file name that
    does not parse, one subject with CV asked for), HeadError for a class a fold cannot learn.
    """
    cfg = fusion_config(config)
    out = Path(out_dir)
    ds = load_paired(cfg.data.dataset, data_root if data_root is not None else cfg.data.root)
    if cfg.cv.method != "none":
        subject_folds(ds.items, cfg.cv.method, cfg.cv.folds)  # refuse one subject etc. before embedding anything
    started = time.time()
    pipeline = pipeline if pipeline is not None else build_pipeline(cfg)
    cache = Path(cfg.cache) if cfg.cache else out / "embeddings.npz"
    table = extract_embeddings(ds.items, pipeline, cache, cfg.modalities, ds.name)
    log.info("embeddings ready in %.0f s", time.time() - started)
    card = train_head_on_table(table, cfg, out, data=ds.summary())
    card["files"] = {"model": str(out / "model.safetensors"), "card": str(out / "card.json"),
                     "embeddings": str(cache)}
    return card


# -- the head on an embedding table ------------------------------------------------------------------

def _metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predicted classes absent from a fold's labels are expected
        return {"accuracy": round(float(accuracy_score(y, pred)), 4),
                "uar": round(float(balanced_accuracy_score(y, pred)), 4),
                "macro_f1": round(float(f1_score(y, pred, labels=np.unique(y), average="macro", zero_division=0)),
                                  4)}


def _fit(table: EmbeddingTable, modalities: tuple[str, ...], idx: np.ndarray, cfg: HeadTrainCfg) -> EmbeddingHead:
    h = cfg.head
    return EmbeddingHead.fit({m: table.blocks[m][idx] for m in modalities}, table.labels[idx], c=h.c,
                             modality_dropout=h.modality_dropout, dropout_copies=h.dropout_copies,
                             max_iter=h.max_iter, seed=h.seed)


def _check_fold(table: EmbeddingTable, fold: Fold, k: int) -> None:
    fitted = {table.subjects[i] for i in fold.train} - {None}
    scored = {table.subjects[i] for i in fold.test} - {None}
    if fitted & scored:  # never relaxed, even under python -O
        raise AssertionError(f"fold {k}: subjects {sorted(fitted & scored)[:3]} are both fitted and scored")
    unlearnable = sorted(set(table.labels[fold.test].tolist()) - set(table.labels[fold.train].tolist()))
    if unlearnable:
        names = [EMOTIONS[c] for c in unlearnable]
        raise HeadError(f"fold {k} (scoring {', '.join(fold.test_subjects[:5]) or 'the test split'}): class(es) "
                        f"{names} have no training example in the other subjects, so no head can learn them; add "
                        "data for them, use fewer folds, or leave those items out")


def cross_validate(table: EmbeddingTable, modalities: tuple[str, ...], folds: list[Fold], cfg: HeadTrainCfg
                   ) -> dict[str, Any]:
    """Out-of-fold scores of a head on ``modalities``: per fold and overall (pooled held-out predictions)."""
    y = table.labels
    pred = np.full(len(y), -1)
    per_fold = []
    for k, fold in enumerate(folds, 1):
        _check_fold(table, fold, k)
        head = _fit(table, modalities, fold.train, cfg)
        p = head.predict_proba({m: table.blocks[m][fold.test] for m in modalities}).argmax(1)
        pred[fold.test] = p
        per_fold.append({"fold": k, "items": int(len(fold.test)), "test_subjects": list(fold.test_subjects),
                         **_metrics(y[fold.test], p)})
    scored = pred >= 0
    return {"modalities": list(modalities), "overall": _metrics(y[scored], pred[scored]), "folds": per_fold}


def verdict(scores: dict[str, dict[str, Any]], modalities: tuple[str, ...]) -> dict[str, Any]:
    """The rule: use the head only if its CV accuracy >= the best single modality's on the same items."""
    acc = scores["fusion"]["overall"]["accuracy"]
    single = {m: scores[m]["overall"]["accuracy"] for m in modalities}
    best = max(single, key=lambda m: single[m])  # ties: the first in face, scene, audio order
    use = acc >= single[best]
    reason = (f"the head's CV accuracy {acc:.4f} is at least the best single modality's ({best}: {single[best]:.4f})"
              if use else f"the head's CV accuracy {acc:.4f} is below the best single modality's ({best}: "
              f"{single[best]:.4f}): use {best} alone")
    if len(modalities) == 1:
        reason += f"; only {best} was available, so the head is that modality's head"
    return {"use": bool(use), "reason": reason, "cv_accuracy": acc, "best_single_modality": best,
            "best_single_accuracy": single[best]}


def train_head_on_table(table: EmbeddingTable, cfg: HeadTrainCfg | dict[str, Any], out_dir: str | Path,
                        data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Cross-validate (unless ``cv: none``), fit on every item, save ``model.safetensors`` + ``card.json``."""
    cfg = cfg if isinstance(cfg, HeadTrainCfg) else fusion_config(cfg)
    some = np.zeros(len(table), bool)
    for m in cfg.modalities:
        some |= table.present(m)
    empty = int((~some).sum())
    if empty:
        log.warning("%d items have no embedding in any modality and are left out", empty)
    table = table.select(np.flatnonzero(some))
    modalities = tuple(m for m in table.modalities if m in cfg.modalities)
    if not modalities:
        raise HeadError(f"no item has an embedding in any of {cfg.modalities} (encoders: {table.encoders})")
    missing = sorted(set(cfg.modalities) - set(modalities))
    dataset = (data or {}).get("dataset") or table.dataset or cfg.data.dataset
    card: dict[str, Any] = {
        "name": cfg.name, "config": to_dict(cfg),
        "encoders": {m: table.encoders.get(m, {}) for m in modalities},
        "data": {**(data or {"dataset": dataset}), "items_used": len(table), "items_without_embeddings": empty,
                 "subjects_used": len({s for s in table.subjects if s is not None}),
                 "labels_used": {EMOTIONS[k]: int(n) for k, n in zip(*np.unique(table.labels, return_counts=True),
                                                                     strict=True)},
                 "absent": table.absent,
                 "modalities_absent": {m: table.encoders.get(m, {}).get("unavailable", "no item has it")
                                       for m in missing}},
    }
    if cfg.cv.method == "none":
        card["cv"] = {"method": "none"}
        card["verdict"] = {"use": False, "reason": NOT_VALIDATED}
    else:
        folds = group_folds(table.subjects, table.splits, dataset, cfg.cv.method, cfg.cv.folds)
        scores = {"fusion": cross_validate(table, modalities, folds, cfg)}
        for m in modalities:
            scores[m] = cross_validate(table, (m,), folds, cfg)
        card["cv"] = {"method": cfg.cv.method, "folds": len(folds),
                      "fold_subjects": [list(f.test_subjects) for f in folds]}
        card["cv_scores"] = scores
        card["verdict"] = verdict(scores, modalities)
    final = _fit(table, modalities, np.arange(len(table)), cfg)
    final.save(out_dir, card)
    log.info("fusion head: %s", card["verdict"]["reason"])
    return dict(final.card)


def check_encoders(head: EmbeddingHead, pipeline: Any) -> None:
    """A head reads only the embeddings of the exact encoders it was trained on: HeadError otherwise."""
    from mmfer.training.fusion_embeddings import encoder_info

    now = encoder_info(pipeline, head.modalities)
    for m in head.modalities:
        want = {k: v for k, v in head.card.get("encoders", {}).get(m, {}).items() if k in ("model", "weights_sha256")}
        have = {k: v for k, v in now[m].items() if k in ("model", "weights_sha256")}
        if "unavailable" in now[m]:
            continue  # an absent modality contributes nothing: the head still applies
        if want and want != have:
            raise HeadError(f"the fusion head's {m} term was trained on {want}, but the pipeline's {m} encoder is "
                            f"{have}: retrain the head (mmfer train fusion)")


def predict_file(head: EmbeddingHead, path: str | Path, pipeline: Any) -> Any:
    """Embed one file with ``pipeline`` and apply the head (a :class:`HeadPrediction`)."""
    from mmfer.training.fusion_embeddings import embed_file

    check_encoders(head, pipeline)
    emb, _ = embed_file(path, pipeline, head.modalities)
    if all(v is None for v in emb.values()):
        raise DatasetError(f"{path}: no {', '.join(head.modalities)} embedding could be made (no face, no sound)")
    return head.predict(emb)
