"""Zero-shot emotion scores for a scene from CLIP text prompts.

Each canonical emotion has several phrasings and each phrasing is put into several templates;
the class's text embedding is the normalised mean over all of them (the prompt ensembling of
Radford et al., 2021). The prompt set is data: pass your own (a dict or a YAML file with
``templates`` and ``classes``) to adapt it to a domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmfer.config import ConfigError, read_yaml
from mmfer.emotions import EMOTIONS, normalize_name
from mmfer.scene.clip_encoder import Box, ClipSceneEncoder

DEFAULT_PROMPTS: dict[str, Any] = {
    "templates": [
        "a photo of {}.",
        "a scene with {}.",
        "a picture of a situation with {}.",
        "a photo of the place where there is {}.",
        "a candid photo of {}.",
    ],
    "classes": {
        "angry": ["an angry person", "people in an angry confrontation", "a furious argument"],
        "disgust": ["a disgusted person", "something disgusting", "people reacting with disgust"],
        "fear": ["a frightened person", "a scary, dangerous situation", "people in fear"],
        "happy": ["a happy person", "a joyful celebration", "people laughing and having fun"],
        "sad": ["a sad person", "a sad, mournful moment", "people grieving"],
        "surprise": ["a surprised person", "an unexpected, surprising moment", "people reacting in astonishment"],
        "neutral": ["a calm person", "an ordinary everyday situation", "people going about their day"],
    },
}


def load_prompts(source: str | Path | dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate a prompt set (dict, YAML file, or None for :data:`DEFAULT_PROMPTS`).

    Class names go through the vocabulary (``anger`` -> angry); every canonical emotion needs phrases.
    """
    if source is None:
        data = DEFAULT_PROMPTS
    elif isinstance(source, dict):
        data = source
    else:
        data = read_yaml(source, "prompt set")
    where = "prompt set" if not isinstance(source, (str, Path)) else str(source)
    if not isinstance(data, dict) or not isinstance(data.get("templates"), list) or \
            not isinstance(data.get("classes"), dict):
        raise ConfigError(f"{where}: expected a mapping with 'templates' (a list) and 'classes' (emotion -> phrases)")
    templates = [str(t) for t in data["templates"]]
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise ConfigError(f"{where}: every template needs exactly one '{{}}' placeholder; "
                          f"bad: {bad[:3] or 'none given'}")
    classes: dict[str, list[str]] = {}
    for name, phrases in data["classes"].items():
        key = normalize_name(str(name))
        if not isinstance(phrases, list) or not phrases:
            raise ConfigError(f"{where}: class {name!r} needs a non-empty list of phrases")
        classes[key] = [str(p) for p in phrases]
    missing = [e for e in EMOTIONS if e not in classes]
    if missing:
        raise ConfigError(f"{where}: no phrases for {missing}")
    return {"templates": templates, "classes": {e: classes[e] for e in EMOTIONS}}


class ZeroShotSceneClassifier:
    """Emotion probabilities over :data:`EMOTIONS` for whole scenes or their face-masked context."""

    def __init__(self, encoder: ClipSceneEncoder, prompts: str | Path | dict[str, Any] | None = None):
        self.encoder = encoder
        self.prompts = load_prompts(prompts)
        weights = []
        for e in EMOTIONS:
            texts = [t.format(p) for p in self.prompts["classes"][e] for t in self.prompts["templates"]]
            weights.append(torch.nn.functional.normalize(encoder.embed_texts(texts).mean(0), dim=0))
        self.text_weights = torch.stack(weights)  # (7, D)

    def scores(self, embeddings: torch.Tensor) -> np.ndarray:
        """(N, D) normalised image embeddings -> (N, 7) probabilities."""
        logits = self.encoder.logit_scale * embeddings @ self.text_weights.T
        return logits.softmax(-1).numpy()

    def predict(self, images_rgb: Sequence[np.ndarray], face_boxes: Sequence[Sequence[Box]] | None = None
                ) -> np.ndarray:
        return self.scores(self.encoder.embed_images(images_rgb, face_boxes))
