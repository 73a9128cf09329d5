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
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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


def _cached_hf_file(model_id: str, filename: str, cache_dir: str | None) -> str:
    """open_clip's choice of weights file in a hub repo (its .safetensors twin first), from the local cache only."""
    from huggingface_hub import hf_hub_download

    names = [filename]
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    for name in names[:-1]:
        with contextlib.suppress(Exception):
            return hf_hub_download(model_id, name, cache_dir=cache_dir, local_files_only=True)
    try:
        return hf_hub_download(model_id, filename, cache_dir=cache_dir, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - worded as open_clip words it
        raise FileNotFoundError(f"Failed to download file ({filename}) for {model_id}. Last error: {e}") from None


def _local_only(model_name: str, pretrained: str | None, cache_dir: str | None
                ) -> tuple[str, str | None, dict[str, Any]]:
    """(model_name, pretrained, extra create_model arguments) that make open_clip read local files only.

    open_clip has no ``local_files_only``: a pretrained tag is resolved here, in the local caches
    (Hugging Face's, or open_clip's URL cache), and handed to it as a file, with the tag's
    preprocessing; an ``hf-hub:`` model becomes its cached snapshot folder (``local-dir:``). Nothing
    process-wide (``HF_HUB_OFFLINE``, the environment) is changed, so other threads keep their network.
    """
    if model_name.startswith("hf-hub:"):
        from huggingface_hub import snapshot_download

        repo = model_name.removeprefix("hf-hub:")
        try:
            folder = snapshot_download(repo, cache_dir=cache_dir, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - worded as open_clip words it
            raise RuntimeError(f"Failed initial config/weights load from HF Hub {repo}: {e}") from None
        return f"local-dir:{folder}", None, {}
    if model_name.startswith("local-dir:") or not pretrained:
        return model_name, pretrained, {}
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name.replace("/", "-"), pretrained)
    if not cfg or "file" in cfg:  # a checkpoint path, or an unknown tag: open_clip itself says so, offline
        return model_name, pretrained, {}
    try:
        if cfg.get("hf_hub"):
            model_id, filename = os.path.split(cfg["hf_hub"])
            target = _cached_hf_file(model_id, filename or "open_clip_pytorch_model.bin", cache_dir)
        else:
            url = cfg.get("url", "")
            target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
            if not os.path.isfile(target):
                raise FileNotFoundError(f"{os.path.basename(url)} is not in {os.path.dirname(target)} (from {url})")
    except Exception as e:  # noqa: BLE001 - worded as open_clip words it
        raise RuntimeError(f"Failed to download weights for tag '{pretrained}': {e}") from None
    # the tag's preprocessing, as open_clip applies it for a tag (the image size follows the model)
    keys = ("mean", "std", "interpolation", "resize_mode")
    return model_name, target, {f"image_{k}": cfg[k] for k in keys if cfg.get(k) is not None}


class _DropOpenClipRecords(logging.Filter):
    """open_clip logs its own copy of a load error through the root logger (``logging.error``): drop
    those records, only the ones this thread's load emits, while it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        import open_clip

        self.prefix = os.path.dirname(open_clip.__file__)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.thread == self.thread and record.levelno < logging.CRITICAL
                    and record.pathname.startswith(self.prefix))


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Silence open_clip's log records from this thread: no logger level changes, other threads unaffected."""
    root = logging.getLogger()  # where open_clip's module-level logging.* calls go
    f = _DropOpenClipRecords()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


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
        name = model_name
        try:
            with _quiet_open_clip():  # open_clip logs its own copy of the error at ERROR level
                # local_only: per-call, from the local caches (never the process-wide HF_HUB_OFFLINE)
                name, weights, extra = (_local_only(model_name, pretrained, cache_dir) if local_only
                                        else (model_name, pretrained, {}))
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=weights, device=self.device, cache_dir=cache_dir, **extra)
        except Exception as exc:  # noqa: BLE001 - network, missing file, unknown tag/name, bad checkpoint
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise SceneEncoderUnavailable(
                f"CLIP {model_name} with {_source(model_name, pretrained)} could not be loaded ({reason}); "
                + _how_to_fix(model_name, pretrained)) from None
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)

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
