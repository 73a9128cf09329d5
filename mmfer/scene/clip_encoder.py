"""Scene context from CLIP (open_clip): embeddings of the whole image, or of the image with the
faces masked out, so that only the context speaks.

Any open_clip model works: a built-in name with a pretrained tag (``ViT-B-32`` +
``laion2b_s34b_b79k``), a hub model (``hf-hub:org/repo``), a built-in name with a local checkpoint
file (``pretrained="/path/open_clip_pytorch_model.bin"``), or a whole local model folder
(``model_name="local-dir:/path"``). Hub weights are downloaded on first use into the Hugging Face
cache (one line on stderr first: what, how big, from where, to where), from ``$MMFER_HF_ENDPOINT`` /
``$HF_ENDPOINT`` / huggingface.co, and read from that cache from then on; offline mode
(:mod:`mmfer.core.offline`) never downloads. When no weights can be had (offline, no network, wrong
tag, missing file) :class:`SceneEncoderUnavailable` says so in one line and how to provide a
checkpoint; nothing else in mmfer depends on this branch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mmfer.core.offline import OFFLINE_HOW, hub_endpoint, offline_mode

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
    return ("provide the weights: run once with network access (mmfer downloads them into the Hugging Face "
            "cache on first use), or download the checkpoint file and pass its path as pretrained "
            "(--clip-pretrained / $MMFER_CLIP_PRETRAINED), or pass model_name='local-dir:/folder' with "
            f"open_clip_config.json and the weights; {OFFLINE_HOW} never downloads. "
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


_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's order for a hub repo
_META_TIMEOUT_S = 10.0


def _candidates(filename: str) -> tuple[str, ...]:
    """The names open_clip tries for a weights file in a hub repo: its .safetensors twin first."""
    if filename == "open_clip_pytorch_model.bin":
        return _WEIGHTS
    if filename.endswith((".bin", ".pth")):
        return (filename[:-4] + ".safetensors", filename)
    return (filename,)


def _cached_hf_file(repo: str, names: Sequence[str], cache_dir: str | None) -> str | None:
    """The first of ``names`` in the local Hugging Face cache, or None (no network: local_files_only)."""
    from huggingface_hub import hf_hub_download

    for name in names:
        with contextlib.suppress(Exception):
            return hf_hub_download(repo, name, cache_dir=cache_dir, local_files_only=True)
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _notice(label: str, files: Sequence[str], size: int | None, source: str, target: str) -> None:
    """The one line said before a download starts: what, how big, from where, to where, how to avoid it."""
    print(f"mmfer: the scene (CLIP) branch downloads {label} once: {', '.join(files)} ({_size(size)}) from {source} "
          f"into {target}; {OFFLINE_HOW} never downloads", file=sys.stderr, flush=True)


class _Bar(tqdm):
    """The download's progress bar. huggingface_hub's own bars go off process-wide once transformers loads a
    model (``disable_progress_bar``), so a plain tqdm: shown on a terminal, silent in logs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from huggingface_hub import constants

        kwargs["disable"] = True if constants.HF_HUB_DISABLE_PROGRESS_BARS else None
        super().__init__(*args, **kwargs)


def _unavailable_offline(label: str, source: str, fix: str) -> SceneEncoderUnavailable:
    return SceneEncoderUnavailable(f"unavailable offline: no CLIP weights for {label} in the local cache ({source}; "
                                   f"run once without --offline, or {fix}); the face and audio branches work "
                                   "without it")


def _download_failed(label: str, source: str, exc: BaseException | str) -> SceneEncoderUnavailable:
    why = exc if isinstance(exc, str) else (" ".join(str(exc).split())[:300] or type(exc).__name__)
    return SceneEncoderUnavailable(f"CLIP weights for {label} could not be downloaded from {source} ({why}); "
                                   "connect once to download them, or pass --clip-pretrained FILE "
                                   f"({OFFLINE_HOW} skips the download); the face and audio branches work without it")


def _hub_files(repo: str, groups: Sequence[Sequence[str]], cache_dir: str | None, offline: bool, label: str,
               fix: str, tag: str | None = None) -> list[str]:
    """One local path per group of alternative file names (first found wins), from the cache, else downloaded.

    The cache is read first, with no network at all. Otherwise (and not offline) the hub is asked for each
    file's size, one line says what is downloaded, and huggingface_hub downloads into its cache (where
    open_clip looks too), with a progress bar. Every group is fetched together so that the files come
    from one commit (open_clip reads an ``hf-hub:`` model as one folder)."""
    found = [_cached_hf_file(repo, names, cache_dir) for names in groups]
    if all(found):
        return [str(p) for p in found]
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    endpoint = hub_endpoint()
    source = f"{endpoint}/{repo}"
    if offline:
        raise _unavailable_offline(label, (f"pretrained tag {tag!r} " if tag else "") + f"from {source}", fix)
    plan: list[tuple[str, int | None, bool]] = []  # (file, size, already cached)
    for names, cached in zip(groups, found, strict=True):
        for name in names:
            try:
                meta = get_hf_file_metadata(hf_hub_url(repo, name, endpoint=endpoint), timeout=_META_TIMEOUT_S,
                                            endpoint=endpoint)
            except EntryNotFoundError:  # the repo has the other name of this file
                continue
            except Exception as exc:  # noqa: BLE001 - no network, no such repo, gated, ...: one line
                raise _download_failed(label, source, exc) from None
            plan.append((name, meta.size, cached is not None))
            break
        else:
            raise _download_failed(label, source, f"the repository has none of {', '.join(names)}")
    new = [(name, size) for name, size, cached in plan if not cached]
    sizes = [size for _, size in new]
    _notice(label, [name for name, _ in new], None if None in sizes else sum(s or 0 for s in sizes), source,
            f"the Hugging Face cache ({cache_dir or constants.HF_HUB_CACHE})")
    try:
        return [hf_hub_download(repo, name, cache_dir=cache_dir, endpoint=endpoint, tqdm_class=_Bar)
                for name, _, _ in plan]
    except Exception as exc:  # noqa: BLE001 - a broken connection, a full disk, ...: one line
        raise _download_failed(label, source, exc) from None


def _url_file(url: str, cache_dir: str | None, offline: bool, label: str) -> str | None:
    """A tag whose weights are only at a URL: the cached file, else None after the notice (open_clip then
    downloads it, with its own progress bar, into the same folder)."""
    folder = cache_dir or os.path.expanduser("~/.cache/clip")
    target = os.path.join(folder, os.path.basename(url))
    if os.path.isfile(target):
        return target
    if offline:
        raise _unavailable_offline(label, f"{os.path.basename(url)} is not in {folder}", "pass --clip-pretrained FILE")
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=_META_TIMEOUT_S) as r:
            length = r.headers.get("Content-Length")
    except Exception as exc:  # noqa: BLE001 - no network, bad URL: one line
        raise _download_failed(label, url, exc) from None
    _notice(label, [os.path.basename(url)], int(length) if length and length.isdigit() else None, url, folder)
    return None


def _local_weights(model_name: str, pretrained: str | None, cache_dir: str | None, offline: bool
                   ) -> tuple[str, str | None, dict[str, Any]]:
    """(model_name, pretrained, extra create_model arguments) that make open_clip read local files only.

    open_clip has no ``local_files_only``, and its own downloads would use huggingface_hub's import-time
    endpoint with no notice: a pretrained tag is resolved here (local cache, else a download unless
    ``offline``) and handed to it as a file, with the tag's preprocessing; an ``hf-hub:`` model becomes
    its cached snapshot folder (``local-dir:``). Nothing process-wide (``HF_HUB_OFFLINE``, the environment)
    is changed, so other threads keep their network.
    """
    if model_name.startswith("hf-hub:"):
        repo = model_name.removeprefix("hf-hub:")
        config, _ = _hub_files(repo, [("open_clip_config.json",), _WEIGHTS], cache_dir, offline, model_name,
                               "pass --clip-model local-dir:FOLDER")
        return f"local-dir:{os.path.dirname(config)}", None, {}
    if model_name.startswith("local-dir:") or not pretrained:
        return model_name, pretrained, {}
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name.replace("/", "-"), pretrained)
    if not cfg or "file" in cfg:  # a checkpoint path, or an unknown tag: open_clip itself says so, offline
        return model_name, pretrained, {}
    label = f"{model_name}/{pretrained}"
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        (target,) = _hub_files(repo, [_candidates(filename or _WEIGHTS[1])], cache_dir, offline, label,
                               "pass --clip-pretrained FILE", pretrained)
    else:
        url_target = _url_file(cfg.get("url", ""), cache_dir, offline, label)
        if url_target is None:
            return model_name, pretrained, {}
        target = url_target
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
                 local_only: bool | None = None):
        """``local_only``: never download (None: offline mode from the environment, see
        :func:`mmfer.core.offline.offline_mode`); otherwise missing weights are downloaded on first use."""
        import open_clip

        if pretrained is None and not allow_random and not model_name.startswith(("local-dir:", "hf-hub:")):
            raise SceneEncoderUnavailable(f"CLIP {model_name}: no pretrained weights given; a randomly initialised "
                                          "CLIP says nothing about scenes (pass allow_random=True for tests)")
        dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        self.device = torch.device(dev)
        # open_clip ignores pretrained for hf-hub: / local-dir: models (their folder holds the weights)
        schema = model_name.startswith(("hf-hub:", "local-dir:"))
        self.model_name, self.pretrained = model_name, None if schema else pretrained
        offline = offline_mode() if local_only is None else local_only
        # offline is per call, by arguments (never the process-wide HF_HUB_OFFLINE): other threads keep their network
        name, weights, extra = _local_weights(model_name, pretrained, cache_dir, offline)  # one-line errors
        try:
            with _quiet_open_clip():  # open_clip logs its own copy of the error at ERROR level
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
