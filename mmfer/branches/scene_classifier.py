"""The scene classifier (CLIP + zero-shot prompts or a trained probe): kept for older imports; the
registry (:mod:`mmfer.branches.registry`) builds it."""

from mmfer.branches.registry import clip_encoder, load_scene_classifier
from mmfer.branches.scene import SceneClassifier

__all__ = ["SceneClassifier", "clip_encoder", "load_scene_classifier"]
