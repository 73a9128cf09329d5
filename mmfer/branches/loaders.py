"""Face and audio recognisers by model name, through the branch registry (kept for older imports)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmfer.branches.registry import create_branch


def load_face_recognizer(name: str | Path | None = None, detector: Any = "auto", device: str = "auto",
                         tta_flip: bool | None = None, yunet_model: str | Path | None = None,
                         local_files_only: bool = False, trust_remote_code: bool = False) -> Any:
    """A :class:`~mmfer.face.predictor.FaceEmotionRecognizer` or, for a transformers checkpoint, an
    :class:`~mmfer.hf.image.HFFaceRecognizer`."""
    return create_branch("face", name, detector=detector, device=device, tta_flip=tta_flip, yunet_model=yunet_model,
                         local_files_only=local_files_only, trust_remote_code=trust_remote_code).recognizer


def load_audio_recognizer(name: str | Path | None = None, device: str = "auto", local_files_only: bool = False,
                          trust_remote_code: bool = False) -> Any:
    """An :class:`~mmfer.audio.predictor.AudioEmotionRecognizer` or an :class:`~mmfer.hf.audio.HFAudioRecognizer`."""
    return create_branch("audio", name, device=device, local_files_only=local_files_only,
                         trust_remote_code=trust_remote_code).recognizer
