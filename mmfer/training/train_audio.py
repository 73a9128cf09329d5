"""Train the speech emotion model, and estimate its accuracy by actor-disjoint cross-validation.

Cross-validation trains one model per fold for a fixed number of epochs and scores it once, on
the fold's unseen actors: nothing (epoch, checkpoint, threshold) is chosen by looking at the test
fold, so the mean over folds is an honest speaker-independent estimate. The shipped model is then
trained the same way on every actor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from mmfer.audio.artifact import audio_classes, save_audio_model
from mmfer.audio.feature_table import FeatureTable, build_feature_table
from mmfer.config import AudioTrainCfg, to_dict
from mmfer.data.fer2013 import DatasetError
from mmfer.data.ravdess import actor_folds, find_labelled_folder, find_ravdess
from mmfer.training.audio_module import AudioClassifier, AudioDataModule, predict_table
from mmfer.training.train_face import _distributed_args, resolve_precision

log = logging.getLogger(__name__)


@dataclasses.dataclass
class AudioCorpus:
    files: list[Path]
    labels: np.ndarray  # indices into the model's classes
    speakers: np.ndarray  # actor numbers (RAVDESS), speaker indices (several corpora), or -1 (no speaker information)
    table: FeatureTable
    corpus: np.ndarray | None = None  # several corpora: each clip's corpus name
    masks: np.ndarray | None = None  # several corpora: (N, K) the classes each clip's corpus labels
    speaker_names: list[str] | None = None  # several corpora: "corpus/speaker" of each speaker index
    items: list[Any] | None = None  # several corpora: the SpeechClip of each file

    @property
    def data_hash(self) -> str:
        h = hashlib.sha1()
        for f, y in zip(self.files, self.labels, strict=True):
            h.update(f"{f.name}:{y};".encode())
        return h.hexdigest()[:16]


def load_corpus(cfg: AudioTrainCfg, use_cache: bool = True) -> AudioCorpus:
    """Files, labels and speakers of ``cfg.data``, with their (cached) feature table."""
    classes = audio_classes(cfg.model.num_classes)
    if cfg.trainer.threads:  # feature extraction runs before training: same thread budget
        torch.set_num_threads(cfg.trainer.threads)
    d = cfg.data
    if d.corpora:
        return _load_corpora(cfg, classes, use_cache)
    if d.dataset == "ravdess":
        items = find_ravdess(d.root, channel=("speech", "song") if d.include_song else "speech")
        pairs = [(it.path, it.label, it.actor) for it in items]
    elif d.dataset == "folder":
        if d.root is None:
            raise DatasetError("data.dataset=folder needs data.root (a folder of <emotion>/ sub-folders)")
        pairs = [(p, lab, -1) for p, lab in find_labelled_folder(d.root)]
    else:
        raise DatasetError(f"unknown data.dataset {d.dataset!r}; expected ravdess or folder")
    unknown = sorted({lab for _, lab, _ in pairs if lab not in classes})
    if unknown:
        raise DatasetError(f"labels {unknown} are not among the model's {len(classes)} classes {list(classes)}")
    if d.actors is not None:
        pairs = [p for p in pairs if p[2] in set(d.actors)]
    if d.limit_per_class is not None:
        pairs = _first_per(pairs, lambda p: p[1], d.limit_per_class)
    if not pairs:
        raise DatasetError("no audio clips left after the data filters (actors / limit_per_class)")
    files = [p for p, _, _ in pairs]
    labels = np.array([classes.index(lab) for _, lab, _ in pairs])
    speakers = np.array([s for _, _, s in pairs])
    table = build_feature_table(files, cfg.features, d, seed=cfg.trainer.seed, use_cache=use_cache,
                                codec=_table_codec(cfg))
    return AudioCorpus(files, labels, speakers, table)


def _table_codec(cfg: AudioTrainCfg) -> Callable[[np.ndarray], np.ndarray] | None:
    """What the feature table holds: log-mel + prosody (None), or a frozen speech encoder's outputs."""
    if cfg.model.arch != "hf_encoder":
        return None
    from mmfer.hf.audio import EncoderTableCodec

    return EncoderTableCodec(cfg.model)


def _first_per(items: list[Any], key: Callable[[Any], Hashable], limit: int) -> list[Any]:
    """The first ``limit`` items of each ``key`` (smoke runs), in their order."""
    seen: Counter[Hashable] = Counter()
    kept = []
    for it in items:
        k = key(it)
        if seen[k] < limit:
            kept.append(it)
            seen[k] += 1
    return kept


def _load_corpora(cfg: AudioTrainCfg, classes: tuple[str, ...], use_cache: bool) -> AudioCorpus:
    """Several speech corpora in one table; each clip keeps its corpus and the mask of the classes it labels."""
    from mmfer.data.speech_corpora import class_mask, corpus_classes, load_speech_corpora

    d = cfg.data
    if d.actors is not None:
        raise DatasetError("data.actors selects RAVDESS actors; with data.corpora every speaker is used")
    if d.corpus_weights is not None and len(d.corpus_weights) != len(d.corpora or []):
        raise DatasetError(f"data.corpus_weights has {len(d.corpus_weights)} values for {len(d.corpora or [])} corpora")
    clips = load_speech_corpora(list(d.corpora or []), d.root)
    labelled = {c.label for c in clips}
    unknown = sorted(labelled - set(classes))
    if unknown:
        raise DatasetError(f"labels {unknown} are not among the model's {len(classes)} classes {list(classes)}")
    never = [k for k in classes if k not in labelled]
    if never:  # its logit would never be trained, yet a shipped model would predict it
        raise DatasetError(f"class(es) {never} of the {len(classes)}-class model are labelled by none of the corpora "
                           f"{list(d.corpora or [])}: add a corpus that labels them, or use model.num_classes=7 "
                           "(the canonical classes) when no corpus labels calm")
    if d.limit_per_class is not None:  # per corpus and class, so a smoke run still sees every corpus
        clips = _first_per(clips, lambda c: (c.corpus, c.label), d.limit_per_class)
    names, speakers = np.unique([c.speaker_id for c in clips], return_inverse=True)
    corpus = np.array([c.corpus for c in clips])
    per_corpus = corpus_classes(clips)
    masks = np.stack([class_mask(per_corpus[c], classes) for c in corpus])
    files = [c.path for c in clips]
    table = build_feature_table(files, cfg.features, d, seed=cfg.trainer.seed, use_cache=use_cache,
                                codec=_table_codec(cfg))
    return AudioCorpus(files, np.array([classes.index(c.label) for c in clips]), speakers, table, corpus, masks,
                       [str(n) for n in names], clips)


def sample_weights(cfg: AudioTrainCfg, corpus: AudioCorpus, clips: np.ndarray) -> np.ndarray | None:
    """Per-clip sampling weights giving each corpus its ``data.corpus_weights`` share (None: uniform)."""
    w = cfg.data.corpus_weights
    if w is None or corpus.corpus is None:
        return None
    share = dict(zip(cfg.data.corpora or [], w, strict=True))
    names = corpus.corpus[clips]
    counts = {n: int((names == n).sum()) for n in set(names)}
    return np.array([share[n] / counts[n] for n in names], np.float64)


def fit(cfg: AudioTrainCfg, corpus: AudioCorpus, train_clips: np.ndarray, out_dir: Path,
        val_clips: np.ndarray | None = None, resume: bool = True, fast_dev_run: bool = False) -> AudioClassifier:
    """Train for ``cfg.trainer.epochs`` (a checkpoint per epoch; resumes from ``out_dir``); returns the last epoch.

    ``val_clips`` are only monitored (curves in the CSV log): no checkpoint or epoch is selected on them.
    """
    t = cfg.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    L.seed_everything(t.seed, workers=True)
    system = AudioClassifier(cfg)
    dm = AudioDataModule(cfg, corpus.table, corpus.labels, train_clips, val_clips, masks=corpus.masks,
                         weights=sample_weights(cfg, corpus, np.asarray(train_clips)))
    ckpt = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="last", save_last=False, save_top_k=1,
                           every_n_epochs=1, enable_version_counter=False)
    trainer = L.Trainer(
        default_root_dir=str(out_dir), max_epochs=t.epochs, accelerator=t.accelerator,
        precision=resolve_precision(t.precision, t.accelerator),
        callbacks=[ckpt, LearningRateMonitor(logging_interval="epoch"), TQDMProgressBar(refresh_rate=10)],
        logger=CSVLogger(str(out_dir), name="logs"), log_every_n_steps=min(t.log_every_n_steps, 10),
        max_time={"minutes": t.max_time_minutes} if t.max_time_minutes else None, num_sanity_val_steps=0,
        fast_dev_run=fast_dev_run, enable_model_summary=False, **_distributed_args(cfg),
    )
    last = out_dir / "checkpoints" / "last.ckpt"
    val = dm.val_dataloader() or None  # no loader at all (rather than an empty one) when nothing is monitored
    resume_from = str(last) if resume and last.is_file() and not fast_dev_run else None
    trainer.fit(system, train_dataloaders=dm.train_dataloader(), val_dataloaders=val, ckpt_path=resume_from)
    return system.cpu().eval()


def _fold_report(y: np.ndarray, probs: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    from mmfer.evaluation.metrics import classification_report

    return classification_report(y, probs, classes)


def cross_validate(cfg: AudioTrainCfg, out_dir: str | Path, resume: bool = True, folds: int | None = None,
                   only_folds: list[int] | None = None) -> dict[str, Any]:
    """Actor-disjoint k-fold cross-validation; per-fold predictions are kept so an interrupted run resumes.

    Returns ``{"folds": [...], "aggregate": ..., "pooled": ...}``
    (see :func:`mmfer.evaluation.metrics.aggregate_folds`).
    """
    from mmfer.evaluation.metrics import aggregate_folds, classification_report

    out = Path(out_dir)
    k = folds or cfg.data.folds
    corpus = load_corpus(cfg)
    if (corpus.speakers < 0).any():
        raise DatasetError("cross-validation needs speaker identities (RAVDESS actors); folder data has none")
    classes = audio_classes(cfg.model.num_classes)
    splits, test_folds = _cv_splits(corpus, k, cfg.data.fold_seed)
    fold_reports, all_y, all_p, fold_rows, fold_of, all_clips = [], [], [], [], [], []
    for i, (train_clips, test_clips) in enumerate(splits):
        test_actors = test_folds[i]
        if only_folds is not None and i not in only_folds:
            continue
        fdir = out / f"fold_{i}"
        pred_file = fdir / "predictions.npz"
        assert not set(corpus.speakers[train_clips]) & set(corpus.speakers[test_clips]), "speaker leakage"
        if resume and pred_file.is_file():
            with np.load(pred_file) as z:
                probs, y = z["probs"], z["labels"]
        else:
            started = time.time()
            system = fit(cfg, corpus, train_clips, fdir, val_clips=test_clips, resume=resume)
            probs, y = predict_table(system.model, corpus.table, test_clips), corpus.labels[test_clips]
            np.savez(pred_file, probs=probs, labels=y, clips=test_clips, actors=corpus.speakers[test_clips])
            log.info("fold %d done in %.0f s", i, time.time() - started)
        rep = classification_report(y, probs, classes)
        fold_reports.append(rep)
        all_y.append(y)
        all_p.append(probs)
        fold_of.append(np.full(len(y), i))
        all_clips.append(test_clips)
        fold_rows.append({"fold": i, "test_actors": test_actors, "n": int(len(y)), "accuracy": rep["accuracy"],
                          "macro_f1": rep["macro_f1"], "uar": rep.get("balanced_accuracy")})
        log.info("fold %d (actors %s): accuracy %.4f macro-F1 %.4f", i, test_actors, rep["accuracy"], rep["macro_f1"])
    y_all, p_all = np.concatenate(all_y), np.concatenate(all_p)
    pooled = classification_report(y_all, p_all, classes)
    res = {"folds": fold_rows, "aggregate": aggregate_folds(fold_reports), "pooled": pooled, "y": y_all,
           "probs": p_all, "fold": np.concatenate(fold_of), "test_folds": test_folds, "n_clips": len(corpus.files),
           "data_hash": corpus.data_hash, "config": to_dict(cfg)}
    if corpus.items is not None:
        res.update(_per_corpus(corpus, classes, np.concatenate(all_clips), p_all, np.concatenate(fold_of)))
    return res


def _cv_splits(corpus: AudioCorpus, k: int, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[list[Any]]]:
    """Speaker-disjoint (train, test) clip indices and each fold's test speakers: RAVDESS actor numbers, or
    "corpus/speaker" names dealt per corpus so every fold holds speakers of each corpus (several corpora)."""
    if corpus.items is not None:
        from mmfer.data.speech_corpora import speaker_folds

        splits = speaker_folds(corpus.items, k, seed)
        names = corpus.speaker_names or []
        return splits, [sorted({names[s] for s in corpus.speakers[test]}) for _, test in splits]
    test_folds = actor_folds(np.unique(corpus.speakers), k, seed)
    splits = []
    for actors in test_folds:
        test_mask = np.isin(corpus.speakers, actors)
        splits.append((np.flatnonzero(~test_mask), np.flatnonzero(test_mask)))
    return splits, test_folds


def _per_corpus(corpus: AudioCorpus, classes: tuple[str, ...], clips: np.ndarray, probs: np.ndarray,
                fold: np.ndarray) -> dict[str, Any]:
    """Out-of-fold scores of each corpus on its own classes and on the core four, pooled over folds, with
    each corpus's own-class accuracy per fold (mean and spread across speakers folds)."""
    from mmfer.data.speech_corpora import corpus_classes
    from mmfer.evaluation.speech_scoring import corpus_rows, score_on

    own = corpus_classes(corpus.items or [])
    labels = [classes[int(k)] for k in corpus.labels[clips]]
    names = corpus.corpus[clips]  # type: ignore[index]
    rows = corpus_rows(labels, names, probs, classes, own)
    for row in rows:
        accs = []
        for f in np.unique(fold):
            sel = np.flatnonzero((names == row["corpus"]) & (fold == f))
            if len(sel):
                accs.append(score_on([labels[i] for i in sel], probs[sel], classes, row["own"]["classes"])["accuracy"])
        row["own"]["fold_accuracy"] = accs
        row["own"]["accuracy_mean"], row["own"]["accuracy_std"] = float(np.mean(accs)), float(np.std(accs))
    return {"per_corpus": rows, "clips": clips, "corpus": names}


def leave_one_corpus_out(cfg: AudioTrainCfg, out_dir: str | Path, resume: bool = True,
                         held_out: list[str] | None = None) -> dict[str, Any]:
    """Train on all corpora but one and score the held-out one, on the classes both sides know (the
    model's probabilities renormalised over them); once per corpus (or per corpus of ``held_out``). No
    speaker or corpus is on both sides (checked by :func:`mmfer.data.speech_corpora.leave_one_corpus_out`)."""
    from mmfer.data.speech_corpora import LANGUAGES
    from mmfer.data.speech_corpora import leave_one_corpus_out as loco_splits
    from mmfer.evaluation.speech_scoring import CORE_CLASSES, score_on

    corpus = load_corpus(cfg)
    if corpus.items is None or len(set(corpus.corpus.tolist())) < 2:  # type: ignore[union-attr]
        raise DatasetError("leave-one-corpus-out needs data.corpora with two or more corpora")
    classes = audio_classes(cfg.model.num_classes)
    out, rows = Path(out_dir), []
    splits = loco_splits(corpus.items)
    unknown = sorted(set(held_out or []) - {sp.held_out for sp in splits})
    if unknown:
        raise DatasetError(f"cannot hold out {unknown}: not among data.corpora {[sp.held_out for sp in splits]}")
    for split in splits:
        if held_out and split.held_out not in held_out:
            continue
        fdir = out / f"held_out_{split.held_out}"
        pred_file = fdir / "predictions.npz"
        if resume and pred_file.is_file():
            with np.load(pred_file) as z:
                probs = z["probs"]
        else:
            started = time.time()
            system = fit(cfg, corpus, np.asarray(split.train), fdir, resume=resume)
            probs = predict_table(system.model, corpus.table, np.asarray(split.test))
            fdir.mkdir(parents=True, exist_ok=True)
            np.savez(pred_file, probs=probs, labels=corpus.labels[split.test], clips=np.asarray(split.test))
            log.info("held out %s done in %.0f s", split.held_out, time.time() - started)
        labels = [classes[int(k)] for k in corpus.labels[split.test]]
        rep = score_on(labels, probs, classes, split.shared_classes)
        row = {"held_out": split.held_out, "language": LANGUAGES.get(split.held_out, "?"),
               "trained_on": sorted(set(corpus.corpus[split.train].tolist())),  # type: ignore[index]
               **rep}
        if set(CORE_CLASSES) <= set(split.shared_classes):
            row["core"] = score_on(labels, probs, classes, CORE_CLASSES)
        rows.append(row)
        log.info("held out %s: accuracy %.4f UAR %.4f", split.held_out, rep["accuracy"], rep["uar"])
    return {"loco": rows, "config": to_dict(cfg), "data_hash": corpus.data_hash}


def train_audio(cfg: AudioTrainCfg, out_dir: str | Path, resume: bool = True, fast_dev_run: bool = False,
                metrics: dict[str, Any] | None = None) -> Path | None:
    """Train on every clip of ``cfg.data`` (all actors unless data.actors says otherwise) and export
    ``out_dir/model`` (safetensors + card). ``metrics`` (e.g. the cross-validation summary) go in the card."""
    out = Path(out_dir)
    corpus = load_corpus(cfg)
    started = time.time()
    system = fit(cfg, corpus, np.arange(len(corpus.files)), out, resume=resume, fast_dev_run=fast_dev_run)
    if fast_dev_run:
        return None
    speakers = corpus.speaker_names or sorted(int(s) for s in set(corpus.speakers) if s >= 0)
    info = {"train_clips": len(corpus.files), "speakers": speakers,
            "train_seconds_this_call": round(time.time() - started, 1), **(metrics or {})}
    path = save_audio_model(system.model, cfg, out / "model", info, corpus.data_hash,
                            extra={"trained_with": {"torch": torch.__version__, "lightning": L.__version__}})
    (out / "train_summary.json").write_text(json.dumps(info, indent=2) + "\n")
    return path
