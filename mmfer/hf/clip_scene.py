"""transformers ``CLIPModel`` as a second backend of the scene branch.

It has the interface of :class:`mmfer.scene.clip_encoder.ClipSceneEncoder` (``embed_images``
with optional face masking, ``embed_texts``, ``logit_scale``), so zero-shot prompts, probes and
the pipeline use it unchanged. Select it with ``--clip-model hf:openai/clip-vit-base-patch32``
(or a local ``save_pretrained`` directory).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mmfer.core.hub import HFModelError, HFSpec, parse_spec, pretrained, require_modality, resolve
from mmfer.scene.clip_encoder import Box, SceneEncoderUnavailable, mask_faces


class HFClipSceneEncoder:
    """Embed images (whole scene, or faces masked out) and texts with a transformers CLIP checkpoint."""

    def __init__(self, spec: HFSpec | str, device: str = "auto", local_only: bool = False):
        try:
            spec = parse_spec(spec, local_files_only=local_only) if isinstance(spec, str) else spec
            config, spec = resolve(spec)
            require_modality(config, "scene", spec)
            from transformers import AutoProcessor, CLIPModel

            self.processor = pretrained(AutoProcessor, spec)
            model = pretrained(CLIPModel, spec)
        except HFModelError as exc:
            raise SceneEncoderUnavailable(f"{exc}; the face and audio branches work without CLIP") from None
        dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        self.device = torch.device(dev)
        self.model = model.eval().to(self.device)
        self.spec = spec
        self.model_name, self.pretrained = f"hf:{spec.label}", None

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @staticmethod
    def _features(out: object) -> torch.Tensor:
        # transformers 5 returns a model output from get_*_features; older versions a tensor
        return out if isinstance(out, torch.Tensor) else out.pooler_output  # type: ignore[attr-defined]

    @torch.no_grad()
    def embed_images(self, images_rgb: Sequence[np.ndarray], face_boxes: Sequence[Sequence[Box]] | None = None,
                     batch_size: int = 32) -> torch.Tensor:
        out = []
        for s in range(0, len(images_rgb), batch_size):
            batch = [mask_faces(img, face_boxes[i]) if face_boxes is not None else img
                     for i, img in enumerate(images_rgb[s : s + batch_size], start=s)]
            px = self.processor(images=[np.ascontiguousarray(b) for b in batch], return_tensors="pt")["pixel_values"]
            feats = self._features(self.model.get_image_features(pixel_values=px.to(self.device)))
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        limit = int(self.model.config.text_config.max_position_embeddings)  # 77 for CLIP
        tok = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True, max_length=limit)
        feats = self._features(self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                            attention_mask=tok["attention_mask"].to(self.device)))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())
