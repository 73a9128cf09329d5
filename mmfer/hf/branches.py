"""One place that turns a model name into a face or audio branch: mmfer's own models (shipped names,
folders with card.json) or transformers checkpoints (hub ids, ``hf:`` names, save_pretrained folders).

Everything that loads a face or audio model by name (CLI, pipeline, evaluation, demo) goes through
:func:`load_face_recognizer` / :func:`load_audio_recognizer`, so a transformers checkpoint works
wherever a native model does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmfer.hf.hub import is_hf_spec, parse_spec


def _spec(name: str | Path, local_files_only: bool, trust_remote_code: bool) -> Any:
    return parse_spec(name, local_files_only=local_files_only, trust_remote_code=trust_remote_code)


def _check_folder(name: str | Path | None) -> None:
    """A folder that is neither kind of model gets one message naming both layouts."""
    if name is None:
        return
    p = Path(name).expanduser()
    if p.is_dir() and not (p / "card.json").is_file() and not (p / "config.json").is_file():
        from mmfer.face.artifact import ModelLoadError

        raise ModelLoadError(f"{name}: not a model folder: no card.json (an mmfer model) and no config.json "
                             "(a transformers checkpoint)")


def load_face_recognizer(name: str | Path | None = None, detector: Any = "auto", device: str = "auto",
                         tta_flip: bool | None = None, yunet_model: str | Path | None = None,
                         local_files_only: bool = False, trust_remote_code: bool = False) -> Any:
    """A :class:`~mmfer.face.predictor.FaceEmotionRecognizer` or, for a transformers checkpoint, an
    :class:`~mmfer.hf.image.HFFaceRecognizer`."""
    _check_folder(name)
    if is_hf_spec(name):
        from mmfer.hf.image import HFFaceRecognizer

        return HFFaceRecognizer(_spec(name, local_files_only, trust_remote_code), detector=detector,
                                device=device, tta_flip=bool(tta_flip), yunet_model=yunet_model)
    from mmfer.face.predictor import FaceEmotionRecognizer

    return FaceEmotionRecognizer(name, detector=detector, device=device, tta_flip=tta_flip, yunet_model=yunet_model)


def load_audio_recognizer(name: str | Path | None = None, device: str = "auto", local_files_only: bool = False,
                          trust_remote_code: bool = False) -> Any:
    """An :class:`~mmfer.audio.predictor.AudioEmotionRecognizer` (mmfer models, including heads trained on a
    transformers encoder) or, for a ready transformers classifier, an :class:`~mmfer.hf.audio.HFAudioRecognizer`."""
    _check_folder(name)
    if is_hf_spec(name):
        from mmfer.hf.audio import HFAudioRecognizer

        return HFAudioRecognizer(_spec(name, local_files_only, trust_remote_code), device=device)
    from mmfer.audio.predictor import AudioEmotionRecognizer

    return AudioEmotionRecognizer(name, device=device)

