"""mmfer: multimodal, context-aware emotion recognition."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.4.0"

from mmfer.emotions import EMOTIONS

if TYPE_CHECKING:
    from mmfer.audio.predictor import AudioEmotionRecognizer, AudioPrediction
    from mmfer.branches import create_branch, list_branches
    from mmfer.branches.loaders import load_audio_recognizer, load_face_recognizer
    from mmfer.face.predictor import FaceEmotionRecognizer, FacePrediction
    from mmfer.pipeline import EmotionPipeline

__all__ = ["EMOTIONS", "AudioEmotionRecognizer", "AudioPrediction", "EmotionPipeline", "FaceEmotionRecognizer",
           "FacePrediction", "__version__", "create_branch", "list_branches", "load_audio_recognizer",
           "load_face_recognizer"]


def __getattr__(name: str):  # lazy: `import mmfer` must not pull in torch
    if name in ("FaceEmotionRecognizer", "FacePrediction"):
        from mmfer.face import predictor

        return getattr(predictor, name)
    if name in ("AudioEmotionRecognizer", "AudioPrediction"):
        from mmfer.audio import predictor as audio_predictor

        return getattr(audio_predictor, name)
    if name in ("load_face_recognizer", "load_audio_recognizer"):
        from mmfer.branches import loaders

        return getattr(loaders, name)
    if name in ("create_branch", "list_branches"):
        import mmfer.branches

        return getattr(mmfer.branches, name)
    if name == "EmotionPipeline":
        from mmfer.pipeline import EmotionPipeline

        return EmotionPipeline
    raise AttributeError(f"module 'mmfer' has no attribute {name!r}")
