"""``mmfer train fusion --config configs/fusion_*.yaml``: fit the fusion card's weights and offsets
for a set of modalities on paired held-out predictions (:mod:`mmfer.fusion.fit`), with the nested
subject-disjoint CV that decides whether the fit is used, and write the card plus a report.
``method: embedding_head`` configs train the head over embeddings instead
(:mod:`mmfer.training.train_fusion_head`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.config import ConfigError, FusionTrainCfg
from mmfer.emotions import EMOTIONS
from mmfer.evaluation.ablation import ckplus_set
from mmfer.evaluation.metrics import classification_report
from mmfer.fusion.fit import PairedPredictions, fit_rule, load_predictions, with_rule
from mmfer.fusion.late_fusion import MODALITIES, FittedRule, FusionError, LateFusion
from mmfer.paths import WEIGHTS_DIR

DEFAULT_CARD = WEIGHTS_DIR / "fusion" / "fusion.json"
SETS = ("ckplus", "predictions")


def check_config(cfg: FusionTrainCfg, where: str = "config") -> None:
    if cfg.method != "weights":
        raise ConfigError(f"{where}: method {cfg.method!r}: this fit takes method: weights "
                          "(embedding_head configs go to the fusion head trainer)")
    unknown = [m for m in cfg.modalities if m not in MODALITIES]
    if unknown:
        raise ConfigError(f"{where}: modalities: unknown {unknown}; expected some of {list(MODALITIES)}")
    if len(set(cfg.modalities)) < 2:
        raise ConfigError(f"{where}: modalities: a fusion needs two or more, got {cfg.modalities}")
    if cfg.data.set not in SETS:
        raise ConfigError(f"{where}: data.set {cfg.data.set!r}: expected one of {list(SETS)}")
    if cfg.data.set == "predictions" and not cfg.data.predictions:
        raise ConfigError(f"{where}: data.predictions: the .npz of paired predictions is required for set: "
                          "predictions")
    if not cfg.reg >= 0:
        raise ConfigError(f"{where}: reg must be >= 0, got {cfg.reg}")


def paired_predictions(cfg: FusionTrainCfg) -> PairedPredictions:
    if cfg.data.set == "predictions":
        assert cfg.data.predictions is not None
        return load_predictions(cfg.data.predictions)
    ds = ckplus_set(cfg.data.temporal_model, cfg.data.face_model)
    assert ds.subjects is not None
    return PairedPredictions(ds.y, ds.outputs, ds.subjects, ds.description)


def _shown(path: Path) -> str:
    """A path for a report: relative to the package for the shipped files (no machine's folders in them)."""
    try:
        return f"mmfer/weights/{path.resolve().relative_to(WEIGHTS_DIR.resolve())}"
    except ValueError:
        return str(path)


def _metrics(held: dict[str, Any], data: PairedPredictions) -> dict[str, Any]:
    """Accuracy, macro-F1 and UAR of each single branch, the cross-validated fit and the nested procedure."""
    def rep(probs: np.ndarray) -> dict[str, float]:
        r = classification_report(data.y, probs, EMOTIONS)
        return {k: r[k] for k in ("accuracy", "macro_f1", "balanced_accuracy") if k in r}

    return {"singles": {m: rep(p) for m, p in held["single"].items()}, "fused_cv": rep(held["cv"]),
            "nested": rep(held["nested"])}


def train_fusion(cfg: FusionTrainCfg, out_dir: str | Path, card: str | Path | None = None) -> tuple[Path, FittedRule]:
    """Fit, judge and write ``out_dir/fusion.json`` (the starting card with the rule added) and
    ``out_dir/fusion_report.{json,md}``. Raises FusionError / ConfigError naming the file or key."""
    check_config(cfg)
    card_path = Path(card or cfg.card or DEFAULT_CARD)
    if not card_path.is_file():
        raise FusionError(f"{card_path}: no such fusion card (config key card; build one with `mmfer calibrate`)")
    fusion = LateFusion.load(card_path)
    data = paired_predictions(cfg)
    rule, held = fit_rule(fusion.replace(rules=()), data, tuple(cfg.modalities), reg=cfg.reg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = with_rule(fusion, rule).save(out / "fusion.json")
    report = {"config": {"name": cfg.name, "method": cfg.method, "modalities": cfg.modalities, "reg": cfg.reg,
                         "data": vars(cfg.data), "card": _shown(card_path)},
              "data": data.source, "rule": rule.to_dict(), "metrics": _metrics(held, data)}
    (out / "fusion_report.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["metrics"]
    lines = [f"# Fitted fusion: {'+'.join(rule.modalities)}", "", f"Data: {data.source}; folds: "
             f"{rule.scores['folds']} ({len(np.unique(data.subjects))} subjects).", "",
             "| predictor | accuracy | macro-F1 |", "|---|---|---|"]
    for name, r in [*((f"{k} alone", v) for k, v in m["singles"].items()),
                    ("fitted fusion, cross-validated", m["fused_cv"]), ("the whole procedure, nested CV", m["nested"])]:
        lines.append(f"| {name} | {100 * r['accuracy']:.1f} | {100 * r['macro_f1']:.1f} |")
    lines += ["", f"Verdict: {rule.verdict}.", "",
              "Weights: " + ", ".join(f"{k} {v:.3f}" for k, v in rule.weights.items()) + "; per-class offsets: "
              + ", ".join(f"{e} {b:+.2f}" for e, b in zip(EMOTIONS, rule.offsets, strict=True)) + "."]
    (out / "fusion_report.md").write_text("\n".join(lines) + "\n")
    return path, rule
