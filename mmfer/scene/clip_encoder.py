"""Scene context from CLIP (open_clip): embeddings of the whole image, or of the image with the
faces masked out, so that only the context speaks.

Any open_clip model works: a built-in name with a pretrained tag (``ViT-B-32`` +
``laion2b_s34b_b79k``, downloaded by open_clip into its cache on first use), a built-in name with
a local checkpoint file (``pretrained="/path/open_clip_pytorch_model.bin"``), or a whole local
model folder (``model_name="local-dir:/path"``). When no weights can be had (offline, wrong
tag, missing file) :class:`SceneEncoderUnavailable` says what was tried and how to provide a
checkpoint; nothing else in mmfer depends on this branch.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"

Box = tuple[int, int, int, int]  # x, y, w, h (the face detector's boxes)


def default_clip_spec() -> tuple[str, str | None]:
    """(model name, pretrained tag or file): $MMFER_CLIP_MODEL / $MMFER_CLIP_PRETRAINED, else ViT-B-32 on LAION-2B."""
    import os

    return (os.environ.get("MMFER_CLIP_MODEL") or DEFAULT_CLIP_MODEL,
            os.environ.get("MMFER_CLIP_PRETRAINED") or DEFAULT_CLIP_PRETRAINED)


class SceneEncoderUnavailable(RuntimeError):
    """CLIP weights could not be loaded; the message says what was tried and what to do."""


def _how_to_fix(model_name: str, pretrained: str | None) -> str:
    return ("provide the weights: on a machine with internet, run once "
            f"`python -c \"import open_clip; open_clip.create_model('{model_name}', pretrained='{pretrained}')\"` "
            "(open_clip caches them under ~/.cache/huggingface), or download the checkpoint file and pass its "
            "path as pretrained (--clip-pretrained / $MMFER_CLIP_PRETRAINED), or pass model_name='local-dir:/folder' "
            "with open_clip_config.json and the weights; set HF_HUB_OFFLINE=1 to fail fast when offline. "
            "The face and audio branches work without CLIP.")


def _source(model_name: str, pretrained: str | None) -> str:
    if pretrained and Path(pretrained).expanduser().exists():
        return f"local file {pretrained}"
    try:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(model_name, pretrained) if pretrained else {}
    except Exception:  # noqa: BLE001 - only used to enrich a message
        cfg = {}
    where = cfg.get("hf_hub") or cfg.get("url")
    return f"pretrained tag {pretrained!r}" + (f" (from {where.rstrip('/')})" if where else "")


def mask_faces(image_rgb: np.ndarray, boxes: Sequence[Box], margin: float = 0.15) -> np.ndarray:
    """A copy of the image with each face box (enlarged by ``margin``) filled with the image's mean colour."""
    out = image_rgb.copy()
    h, w = out.shape[:2]
    fill = out.reshape(-1, out.shape[-1]).mean(0).astype(out.dtype)
    for x, y, bw, bh in boxes:
        dx, dy = int(bw * margin), int(bh * margin)
        x0, y0 = max(0, x - dx), max(0, y - dy)
        x1, y1 = min(w, x + bw + dx), min(h, y + bh + dy)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = fill
    return out


@contextlib.contextmanager
def _hub_offline(on: bool) -> Iterator[None]:
    """With ``on``, the Hugging Face hub is not contacted: only the local cache is used (fast failure)."""
    if not on:
        yield
        return
    import huggingface_hub.constants as hub

    before = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = before


class ClipSceneEncoder:
    """Embed images (whole scene, or faces masked out) and texts with one open_clip model.

    Embeddings are L2-normalised float32 tensors on the CPU, shape (N, embed_dim).
    """

    def __init__(self, model_name: str = DEFAULT_CLIP_MODEL, pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
                 device: str = "auto", cache_dir: str | None = None, allow_random: bool = False,
                 local_only: bool = False):
        import open_clip

        if pretrained is None and not allow_random and not model_name.startswith(("local-dir:", "hf-hub:")):
            raise SceneEncoderUnavailable(f"CLIP {model_name}: no pretrained weights given; a randomly initialised "
                                          "CLIP says nothing about scenes (pass allow_random=True for tests)")
        dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        self.device = torch.device(dev)
        self.model_name, self.pretrained = model_name, pretrained
        log = logging.getLogger()
        level = log.level
        try:
            log.setLevel(logging.CRITICAL)  # open_clip logs its own copy of the error at ERROR level
            with contextlib.redirect_stderr(io.StringIO()), _hub_offline(local_only):
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=pretrained, device=self.device, cache_dir=cache_dir)
        except Exception as exc:  # noqa: BLE001 - network, missing file, unknown tag/name, bad checkpoint
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise SceneEncoderUnavailable(
                f"CLIP {model_name} with {_source(model_name, pretrained)} could not be loaded ({reason}); "
                + _how_to_fix(model_name, pretrained)) from None
        finally:
            log.setLevel(level)
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)

    @property
    def embed_dim(self) -> int:
        return int(self.embed_texts(["a photo"]).shape[-1])

    @torch.no_grad()
    def embed_images(self, images_rgb: Sequence[np.ndarray], face_boxes: Sequence[Sequence[Box]] | None = None,
                     batch_size: int = 32) -> torch.Tensor:
        """Embed RGB uint8 images; with ``face_boxes`` (one list per image) the faces are masked out first."""
        from PIL import Image

        out = []
        for s in range(0, len(images_rgb), batch_size):
            batch = []
            for i, img in enumerate(images_rgb[s : s + batch_size], start=s):
                if face_boxes is not None:
                    img = mask_faces(img, face_boxes[i])
                batch.append(self.preprocess(Image.fromarray(np.ascontiguousarray(img))))
            feats = self.model.encode_image(torch.stack(batch).to(self.device))
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()

    @property
    def logit_scale(self) -> float:
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.detach().exp()) if scale is not None else 100.0
