"""Per-item embeddings of the face, scene and audio encoders, for the embedding fusion head.

For each :class:`~mmfer.data.paired.PairedItem` every modality gives one fixed-size vector, or is
absent (never zeros standing in for data):

- ``face``: the mean of the face CNN's backbone embeddings over the frames where the main person's
  face was found (a photo: the chosen face; EMOTIC: the largest face inside the annotated body box).
- ``scene``: the CLIP embedding of the key frames with the faces masked, averaged; only when the
  pipeline's scene branch is available (it is not without CLIP weights).
- ``audio``: the audio model's penultimate embedding (:meth:`AudioEmotionRecognizer.embed_file`).

The table is cached to an ``.npz`` (no pickle: strings are stored as unicode arrays, metadata as
JSON) together with the encoders that made it (names and weight digests), so retraining the head
reuses it while the encoders and items are the same.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.audio.io import AudioLoadError
from mmfer.core.artifact import weights_digest
from mmfer.data.paired import PairedItem
from mmfer.emotions import EMOTIONS
from mmfer.face.detect import crop_faces
from mmfer.io.images import ImageLoadError, load_image
from mmfer.io.media import AUDIO, IMAGE, MediaError, open_media
from mmfer.video.io import VideoLoadError, VideoReader
from mmfer.video.timeline import scan_faces
from mmfer.video.tracking import link_tracks, main_track

log = logging.getLogger(__name__)

HEAD_MODALITIES = ("face", "scene", "audio")
TABLE_FORMAT = "mmfer-fusion-embeddings"
TABLE_VERSION = 1


@dataclasses.dataclass
class EmbeddingTable:
    """Embeddings of N items. ``blocks[m]`` is (N, D_m) float32 with NaN rows where ``m`` is absent."""

    paths: list[str]
    labels: np.ndarray  # (N,) int, index into EMOTIONS
    subjects: list[str | None]
    splits: list[str | None]
    blocks: dict[str, np.ndarray]
    encoders: dict[str, dict[str, Any]]  # modality -> {"model", "weights_sha256", ...} or {"unavailable": why}
    absent: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # modality -> reason -> count
    dataset: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def present(self, modality: str) -> np.ndarray:
        """(N,) bool: which items have ``modality``."""
        b = self.blocks.get(modality)
        return np.zeros(len(self), bool) if b is None else ~np.isnan(b).any(1)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities present for at least one item, in HEAD_MODALITIES order."""
        return tuple(m for m in HEAD_MODALITIES if m in self.blocks and self.present(m).any())

    def select(self, idx: np.ndarray) -> EmbeddingTable:
        idx = np.asarray(idx)
        return dataclasses.replace(self, paths=[self.paths[i] for i in idx], labels=self.labels[idx],
                                   subjects=[self.subjects[i] for i in idx], splits=[self.splits[i] for i in idx],
                                   blocks={m: b[idx] for m, b in self.blocks.items()})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": TABLE_FORMAT, "version": TABLE_VERSION, "encoders": self.encoders, "absent": self.absent,
                "dataset": self.dataset, "classes": list(EMOTIONS)}
        arrays = {f"emb_{m}": b.astype(np.float32) for m, b in self.blocks.items()}
        np.savez_compressed(path, paths=np.array(self.paths, dtype=str), labels=self.labels.astype(np.int64),
                            subjects=_strings(self.subjects), splits=_strings(self.splits),
                            meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingTable:
        """Read a table saved by :meth:`save` (``allow_pickle=False``); ValueError naming the file otherwise."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != TABLE_FORMAT or meta.get("version") != TABLE_VERSION:
                    raise ValueError(f"not a version {TABLE_VERSION} {TABLE_FORMAT} file")
                if meta.get("classes") != list(EMOTIONS):
                    raise ValueError(f"labels index {meta.get('classes')}, not {list(EMOTIONS)}")
                blocks = {k[4:]: z[k] for k in z.files if k.startswith("emb_")}
                return cls([str(p) for p in z["paths"]], z["labels"], _optional(z["subjects"]),
                           _optional(z["splits"]), blocks, meta["encoders"], meta.get("absent", {}),
                           meta.get("dataset"))
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable embedding table ({exc}); delete it to re-embed") from None


def _strings(values: Sequence[str | None]) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in values], dtype=str)


def _optional(values: np.ndarray) -> list[str | None]:
    return [str(v) or None for v in values]


# -- encoders --------------------------------------------------------------------------------------

def encoder_info(pipeline: Any, modalities: Sequence[str] = HEAD_MODALITIES) -> dict[str, dict[str, Any]]:
    """What would embed each modality (model names and weight digests), or why it cannot."""
    out: dict[str, dict[str, Any]] = {}
    for m in modalities:
        if m not in HEAD_MODALITIES:
            raise ValueError(f"unknown modality {m!r}; the head reads {list(HEAD_MODALITIES)}")
        slot = pipeline.slot(m)
        if slot.branch is None:
            out[m] = {"unavailable": slot.reason or "unavailable"}
            continue
        b = slot.branch
        info: dict[str, Any] = {"model": b.name, "backend": b.backend}
        if m == "scene":
            c = b.classifier
            info.update(clip_model=c.model, clip_pretrained=c.pretrained)
            if c.pretrained and Path(c.pretrained).is_file():
                from mmfer.data.fer2013 import file_digest

                info["weights_sha256"] = file_digest(Path(c.pretrained))[:16]
        elif b.card.get("_dir"):
            info["weights_sha256"] = weights_digest(b.card["_dir"])
        if m == "audio" and getattr(b.recognizer, "embedding_dim", None) is None:
            out[m] = {"unavailable": f"audio model {b.name} exposes no embedding"}
            continue
        out[m] = info
    settings = {"sample_fps": pipeline.sample_fps, "key_frames": pipeline.key_frames,
                "detector": pipeline.opts.get("detector")}
    for info in out.values():
        if "unavailable" not in info:
            info["settings"] = settings
    return out


# -- one item --------------------------------------------------------------------------------------

_ABSENT = {"face": "no face found", "scene": "no frames", "audio": "no sound"}


def _absent_reason(modality: str, kind: str) -> str:
    if modality == "audio" and kind == IMAGE:
        return "not in a still image"
    if modality != "audio" and kind == AUDIO:
        return "not in an audio file"
    return _ABSENT[modality]


def _mean(rows: Sequence[np.ndarray]) -> np.ndarray | None:
    return np.mean(np.stack(rows).astype(np.float32), 0) if len(rows) else None


def _pick_face(faces: Sequence[Any], body_box: tuple[int, int, int, int] | None) -> Any:
    """The largest face, inside the annotated body box when there is one (else none: the person's face is not seen)."""
    if body_box is not None:
        bx, by, bw, bh = body_box
        faces = [f for f in faces
                 if bx <= f.box[0] + f.box[2] / 2 <= bx + bw and by <= f.box[1] + f.box[3] / 2 <= by + bh]
    return max(faces, key=lambda f: f.box[2] * f.box[3], default=None)


def _scene(pipeline: Any, images: list[np.ndarray], boxes: list[list[Any]]) -> np.ndarray | None:
    if not images:
        return None
    emb = pipeline.scene(images, boxes).embedding
    return None if emb is None else np.asarray(emb, np.float32).mean(0)


def embed_file(path: str | Path, pipeline: Any, modalities: Sequence[str] = HEAD_MODALITIES,
               body_box: tuple[int, int, int, int] | None = None
               ) -> tuple[dict[str, np.ndarray | None], dict[str, str]]:
    """One file's embeddings per modality (None when absent) and, for absent ones, why.

    Photos give face + scene, videos face + scene + audio (their audio track), audio files audio.
    Modalities whose branch is unavailable in ``pipeline`` are absent. Raises MediaError for a file
    that cannot be opened at all.
    """
    want = [m for m in modalities if pipeline.slot(m).available]
    out: dict[str, np.ndarray | None] = dict.fromkeys(modalities)
    why = {m: pipeline.slot(m).reason or "unavailable" for m in modalities if m not in want}
    scene = "scene" in want
    with open_media(path) as media:
        kind = media.kind
        if kind == IMAGE and ("face" in want or scene):
            img = load_image(media.path)
            faces = pipeline.face.detector.detect(img)
            face = _pick_face(faces, body_box)
            if "face" in want and face is not None:
                rec = pipeline.face
                crops = crop_faces(img, [face], size=getattr(rec, "crop_size", 48),
                                   colour=getattr(rec, "colour_crops", False))
                out["face"] = pipeline.face_branch.classify_crops(crops, embed=True)[1][0].astype(np.float32)
            if scene:
                out["scene"] = _scene(pipeline, [img], [[f.box for f in faces]])
        elif kind != AUDIO and ("face" in want or scene):
            try:
                reader = VideoReader(media.path, pipeline.sample_fps, media=media)
                scan = scan_faces(reader, pipeline.face, pipeline.sample_fps, embed=True,
                                  key_frames=pipeline.key_frames if scene else 0)
            except VideoLoadError as exc:  # the audio track may still be usable
                why.update({m: f"video unreadable: {str(exc).split(': ', 1)[-1]}" for m in want if m != "audio"})
            else:
                main = main_track(link_tracks(scan.per_frame))
                if "face" in want and main is not None:
                    out["face"] = _mean([f.emb for f in main.faces.values() if f.emb is not None])
                if scene:
                    keys = scan.key_frames
                    out["scene"] = _scene(pipeline, [k.image for k in keys], [k.boxes for k in keys])
    if "audio" in want and kind != IMAGE:
        try:  # its own read of the audio track (the frames' pass above consumed the container)
            out["audio"] = pipeline.branch("audio").recognizer.embed_file(path)
        except AudioLoadError as exc:
            why["audio"] = f"no usable audio: {str(exc).split(': ', 1)[-1]}"
    for m in want:
        if out[m] is None and m not in why:
            why[m] = _absent_reason(m, kind)
    return out, why


# -- a dataset -------------------------------------------------------------------------------------

def _same(cached: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> bool:
    """The same encoders (the cached table also records each embedding's size)."""
    def strip(enc: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {m: {k: v for k, v in info.items() if k != "dim"} for m, info in enc.items()}

    return strip(cached) == strip(current)


def extract_embeddings(items: Sequence[PairedItem], pipeline: Any, cache: str | Path | None = None,
                       modalities: Sequence[str] = HEAD_MODALITIES, dataset: str | None = None) -> EmbeddingTable:
    """Embed every item (or reuse ``cache`` when it holds the same items made by the same encoders).

    A file that cannot be read leaves all its modalities absent (counted in ``absent``), so one broken
    clip of a large dataset does not stop the run.
    """
    encoders = encoder_info(pipeline, modalities)
    paths = [str(i.path) for i in items]
    labels = np.array([EMOTIONS.index(i.label) for i in items], np.int64)
    if cache is not None and Path(cache).is_file():
        try:
            table = EmbeddingTable.load(cache)
        except ValueError as exc:
            log.warning("%s", exc)
        else:
            if table.paths == paths and np.array_equal(table.labels, labels) and _same(table.encoders, encoders):
                log.info("embeddings: reusing %s", cache)
                return table
            log.info("embeddings: %s was made from other items or encoders; embedding again", cache)
    rows: dict[str, list[np.ndarray | None]] = {m: [] for m in modalities}
    absent: dict[str, Counter] = {m: Counter() for m in modalities}
    for n, item in enumerate(items):
        try:
            emb, why = embed_file(item.path, pipeline, modalities, item.body_box)
        except (MediaError, VideoLoadError, AudioLoadError, ImageLoadError) as exc:
            reason = str(exc).split(": ", 1)[-1]
            emb, why = dict.fromkeys(modalities), dict.fromkeys(modalities, f"unreadable: {reason}")
            log.warning("embeddings: %s", exc)
        for m in modalities:
            rows[m].append(emb[m])
            if emb[m] is None:
                absent[m][why[m]] += 1
        if (n + 1) % 50 == 0 or n + 1 == len(items):
            log.info("embeddings: %d / %d items", n + 1, len(items))
    blocks = {}
    for m in modalities:
        dims = {r.shape[0] for r in rows[m] if r is not None}
        if len(dims) > 1:
            raise ValueError(f"{m} embeddings of different sizes {sorted(dims)}")
        if dims:
            d = dims.pop()
            blocks[m] = np.stack([np.full(d, np.nan, np.float32) if r is None else r.astype(np.float32)
                                  for r in rows[m]])
            encoders[m]["dim"] = d
    table = EmbeddingTable(paths, labels, [i.subject for i in items], [i.split for i in items], blocks, encoders,
                           {m: dict(c) for m, c in absent.items() if c}, dataset)
    if cache is not None:
        table.save(cache)
    return table
