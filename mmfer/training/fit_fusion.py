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

from mmfer.branches.registry import backend_for, create_branch
from mmfer.data.fer2013 import load_fer2013
from mmfer.emotions import EMOTIONS
from mmfer.evaluation.face_eval import face_model_probs
from mmfer.fusion.calibration import apply_temperature, calibrate, expected_calibration_error
from mmfer.fusion.late_fusion import FusionError, LateFusion, ModalityCal, class_prior
from mmfer.fusion.oof import (  # noqa: F401 - re-exported: they lived in mmfer.fusion.build
    audio_calibration,
    cross_fitted,
    fold_audio,
    oof_path,
    temporal_calibration,
)
from mmfer.paths import DEFAULT_AUDIO_MODEL

SCENE_ZERO_SHOT_WEIGHT = 0.5  # uncalibrated, and context is weaker evidence than a face


def face_calibration(model: str | None, data_root: str | None, device: str = "cpu", local_files_only: bool = False,
                     trust_remote_code: bool = False, face: Any = None) -> ModalityCal:
    """Temperature on FER-2013 PublicTest, ECE checked on PrivateTest. mmfer models bring their
    training prior (FER-2013 Training); for a transformers checkpoint it is unknown, so uniform."""
    val, test = load_fer2013("PublicTest", data_root), load_fer2013("PrivateTest", data_root)
    probs, card = face_model_probs(model, np.concatenate([val.images, test.images]), device=device,
                                   local_files_only=local_files_only, trust_remote_code=trust_remote_code, face=face)
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


def build_fusion(face_model: str | None = None, data_root: str | None = None, audio_model: str = DEFAULT_AUDIO_MODEL,
                 temporal_model: str = "video_bigru_ckplus", audio_oof: str | Path | None = None,
                 temporal_oof: str | Path | None = None, local_files_only: bool = False,
                 trust_remote_code: bool = False, pipeline: Any = None) -> LateFusion:
    """The fusion card; ``pipeline`` (an EmotionPipeline) supplies the loaded face and audio branches."""
    kw = {"local_files_only": local_files_only, "trust_remote_code": trust_remote_code}
    if backend_for("audio", audio_model) == "transformers":  # a ready classifier: no out-of-fold predictions
        rec = (pipeline.require("audio") if pipeline is not None else
               create_branch("audio", audio_model, device="cpu", **kw)).recognizer
        missing = rec.labels.missing
        audio = ModalityCal(model=rec.card["name"], known=[e not in missing for e in EMOTIONS] if missing else None,
                            calibration={"source": "none: a transformers checkpoint has no held-out predictions "
                                                   "here (its training data are unknown); temperature 1"})
    else:
        audio = audio_calibration(oof_path(audio_model, audio_oof), audio_model)
    return LateFusion({
        "face": face_calibration(face_model, data_root, face=pipeline.require("face") if pipeline is not None else None,
                                 **kw),
        "temporal": temporal_calibration(oof_path(temporal_model, temporal_oof), temporal_model),
        "audio": audio,
        "scene": ModalityCal(weight=SCENE_ZERO_SHOT_WEIGHT, calibration={
            "source": "none: no CLIP weights or context validation data where this card was built; "
                      "zero-shot scores enter at half weight"}, model="CLIP zero-shot"),
    }, name="fusion")


def keep_fitted(fusion: LateFusion, previous: Path) -> tuple[LateFusion, list[str]]:
    """The new calibration with the shared-evidence groups and fitted rules of the card it replaces, where
    every branch a rule covers is still the same model (fitted weights act at temperature 1, so a new
    temperature does not invalidate them); lines saying what was kept or dropped."""
    if not previous.is_file():
        return fusion, []
    try:
        old = LateFusion.load(previous)
    except FusionError as exc:
        return fusion, [f"the previous card was not read ({exc}); no fitted rules kept"]
    kept, lines = [], []
    for rule in old.rules.values():
        changed = [m for m in rule.modalities if m not in fusion.modalities
                   or fusion.modalities[m].model != old.modalities.get(m, ModalityCal()).model]
        name = "+".join(rule.modalities)
        if changed:
            lines.append(f"fitted {name}: dropped ({', '.join(changed)} changed model); refit: mmfer train fusion")
        else:
            kept.append(rule)
            lines.append(f"fitted {name}: kept ({rule.verdict})")
    return fusion.replace(groups=old.groups, rules=tuple(kept)), lines
