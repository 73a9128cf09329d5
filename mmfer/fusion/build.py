"""Build the fusion card from each branch's own held-out predictions (no paired multimodal data):

- face: the face model on FER-2013 PublicTest (the split it was selected on, never PrivateTest);
- audio: the audio model's actor-disjoint out-of-fold predictions (its CV report);
- temporal: the temporal head's leave-one-subject-out predictions (its CV report);
- scene: zero-shot CLIP has no validation data here: temperature 1 and a lower weight.

Each branch also gets its training class prior and the classes it knows. Held-out ECE is
measured by refitting the temperature without each fold (face: fitted on PublicTest, measured on
PrivateTest), so the "after" numbers are not scored on the data that fitted them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmfer.emotions import EMOTIONS, EXTRA_CLASSES, fold_to_canonical
from mmfer.evaluation.metrics import expected_calibration_error
from mmfer.fusion.calibration import apply_temperature, calibrate, fit_temperature, nll
from mmfer.fusion.late_fusion import FusionError, LateFusion, ModalityCal, class_prior

SCENE_ZERO_SHOT_WEIGHT = 0.5  # uncalibrated, and context is weaker evidence than a face


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


def face_calibration(model: str | None, data_root: str | None, device: str = "cpu", local_files_only: bool = False,
                     trust_remote_code: bool = False) -> ModalityCal:
    """Temperature on FER-2013 PublicTest, ECE checked on PrivateTest. mmfer models bring their
    training prior (FER-2013 Training); for a transformers checkpoint it is unknown, so uniform."""
    from mmfer.data.fer2013 import load_fer2013
    from mmfer.evaluation.face_eval import face_model_probs

    val, test = load_fer2013("PublicTest", data_root), load_fer2013("PrivateTest", data_root)
    probs, card = face_model_probs(model, np.concatenate([val.images, test.images]), device=device,
                                   local_files_only=local_files_only, trust_remote_code=trust_remote_code)
    p_val, p_test = probs[: len(val.labels)], probs[len(val.labels):]
    cal = calibrate(p_val, val.labels, "FER-2013 PublicTest").to_dict()
    cal["held_out_ece_before"] = round(expected_calibration_error(test.labels, p_test), 4)
    cal["held_out_ece_after"] = round(expected_calibration_error(
        test.labels, apply_temperature(p_test, cal["temperature"])), 4)
    cal["held_out"] = "FER-2013 PrivateTest"
    prior = known = None
    if card.get("backend") == "transformers":
        missing = card.get("labels", {}).get("missing", [])
        known = [e not in missing for e in EMOTIONS] if missing else None
    else:
        prior = class_prior(np.bincount(load_fer2013("Training", data_root).labels, minlength=7))
    return ModalityCal(temperature=cal["temperature"], prior=prior, known=known, calibration=cal, model=card["name"])


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
    return _oof_calibration(fold_audio(z["probs"], classes), y, z["fold"],
                            f"{model} out-of-fold predictions (actor-disjoint CV)", model)


def temporal_calibration(oof_path: Path, model: str) -> ModalityCal:
    z = _oof(oof_path)
    known = [bool(c > 0) for c in np.bincount(z["y"], minlength=7)]
    return _oof_calibration(z["probs"].astype(np.float64), z["y"], z["fold"],
                            f"{model} out-of-fold predictions (leave-one-subject-out CV)", model, known)


def oof_path(model: str, given: str | Path | None = None) -> Path:
    """A branch's out-of-fold predictions: ``given``, else the copy shipped in its model folder."""
    from mmfer.face.artifact import resolve_model_dir

    return Path(given) if given else resolve_model_dir(model) / "oof_predictions.npz"


def build_fusion(face_model: str | None = None, data_root: str | None = None, audio_model: str = "audio_crnn",
                 temporal_model: str = "video_bigru_ckplus", audio_oof: str | Path | None = None,
                 temporal_oof: str | Path | None = None, local_files_only: bool = False,
                 trust_remote_code: bool = False) -> LateFusion:
    from mmfer.hf.hub import is_hf_spec

    kw = {"local_files_only": local_files_only, "trust_remote_code": trust_remote_code}
    if is_hf_spec(audio_model):  # a ready classifier: no out-of-fold predictions of ours to fit on
        from mmfer.hf.branches import load_audio_recognizer

        rec = load_audio_recognizer(audio_model, device="cpu", **kw)
        missing = rec.labels.missing
        audio = ModalityCal(model=rec.card["name"], known=[e not in missing for e in EMOTIONS] if missing else None,
                            calibration={"source": "none: a transformers checkpoint has no held-out predictions "
                                                   "here (its training data are unknown); temperature 1"})
    else:
        audio = audio_calibration(oof_path(audio_model, audio_oof), audio_model)
    return LateFusion({
        "face": face_calibration(face_model, data_root, **kw),
        "temporal": temporal_calibration(oof_path(temporal_model, temporal_oof), temporal_model),
        "audio": audio,
        "scene": ModalityCal(weight=SCENE_ZERO_SHOT_WEIGHT, calibration={
            "source": "none: no CLIP weights or context validation data where this card was built; "
                      "zero-shot scores enter at half weight"}, model="CLIP zero-shot"),
    }, name="fusion")
