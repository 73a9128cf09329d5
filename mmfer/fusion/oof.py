"""What late fusion learns from each branch's own held-out predictions, without paired multimodal data:
a temperature fitted on a branch's out-of-fold cross-validation predictions (with the held-out ECE
measured by refitting it without each fold), its training class prior, and the classes it knows.

Everything here works on probability arrays and the ``oof_predictions.npz`` shipped in a model
folder; :mod:`mmfer.training.fit_fusion` adds the face branch (scored on FER-2013) and writes the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmfer.core.artifact import resolve_model_dir
from mmfer.emotions import EMOTIONS, EXTRA_CLASSES, fold_to_canonical
from mmfer.fusion.calibration import apply_temperature, calibrate, expected_calibration_error, fit_temperature, nll
from mmfer.fusion.late_fusion import FusionError, ModalityCal, class_prior


def fold_audio(probs: np.ndarray, classes: list[str]) -> np.ndarray:
    """(N, K) over the audio model's classes -> (N, 7) canonical (calm into neutral)."""
    out = np.zeros((len(probs), len(EMOTIONS)))
    for i, row in enumerate(probs):
        folded = fold_to_canonical(dict(zip(classes, map(float, row), strict=True)))
        out[i] = [folded.get(e, 0.0) for e in EMOTIONS]
    return out


def cross_fitted(probs: np.ndarray, y: np.ndarray, fold: np.ndarray) -> dict[str, Any]:
    """ECE/NLL of each fold's predictions under a temperature fitted on the other folds."""
    after = np.zeros_like(probs, dtype=np.float64)
    for f in np.unique(fold):
        rest = fold != f
        after[~rest] = apply_temperature(probs[~rest], fit_temperature(probs[rest], y[rest]))
    return {"held_out_ece_before": round(expected_calibration_error(y, probs), 4),
            "held_out_ece_after": round(expected_calibration_error(y, after), 4),
            "held_out_nll_before": round(nll(probs, y), 4), "held_out_nll_after": round(nll(after, y), 4)}


def _oof(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FusionError(f"{path}: no out-of-fold predictions (run the branch's cross-validation report first)")
    with np.load(path, allow_pickle=False) as z:
        return dict(z)


def _oof_calibration(probs: np.ndarray, y: np.ndarray, fold: np.ndarray, source: str, model: str,
                     known: list[bool] | None = None) -> ModalityCal:
    """Temperature on a branch's out-of-fold predictions, with cross-fitted held-out ECE, and its prior."""
    cal = calibrate(probs, y, source).to_dict()
    cal.update(cross_fitted(probs, y, fold))
    return ModalityCal(temperature=cal["temperature"], prior=class_prior(np.bincount(y, minlength=7)), known=known,
                       calibration=cal, model=model)


def audio_calibration(oof_path: Path, model: str) -> ModalityCal:
    z = _oof(oof_path)
    classes = [str(c) for c in z["classes"]]
    y = np.array([EMOTIONS.index(EXTRA_CLASSES.get(classes[i], classes[i])) for i in z["y"]])
    corpora = sorted({str(c) for c in z["corpus"]}) if "corpus" in z else ["ravdess"]
    return _oof_calibration(fold_audio(z["probs"], classes), y, z["fold"],
                            f"{model} out-of-fold predictions (speaker-disjoint CV; {', '.join(corpora)})", model)


def temporal_calibration(oof_path: Path, model: str) -> ModalityCal:
    z = _oof(oof_path)
    known = [bool(c > 0) for c in np.bincount(z["y"], minlength=7)]
    return _oof_calibration(z["probs"].astype(np.float64), z["y"], z["fold"],
                            f"{model} out-of-fold predictions (leave-one-subject-out CV)", model, known)


def oof_path(model: str, given: str | Path | None = None) -> Path:
    """A branch's out-of-fold predictions: ``given``, else the copy shipped in its model folder."""
    return Path(given) if given else resolve_model_dir(model) / "oof_predictions.npz"
