"""Per-frame inputs of the temporal model: the main person's face embedding in every sampled
frame (from the face branch's frozen CNN), with a presence flag for frames without that face."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mmfer.face.predictor import CROP_SIZE
from mmfer.video.io import DEFAULT_SAMPLE_FPS
from mmfer.video.timeline import scan_faces
from mmfer.video.tracking import link_tracks, main_track


@dataclasses.dataclass
class ClipFeatures:
    embeddings: np.ndarray  # (T, D) float32, zeros where the face is missing
    present: np.ndarray  # (T,) bool
    times: np.ndarray  # (T,) seconds
    frame_probs: np.ndarray  # (T, 7) the face model's own per-frame probabilities (NaN where missing)
    notes: list[str]
    crops: np.ndarray | None = None  # (T, 48, 48) uint8 grey crops (zeros where missing), for fine-tuning


def clip_features(path: str | Path, recognizer, sample_fps: float | None = DEFAULT_SAMPLE_FPS,  # noqa: ANN001
                  max_frames: int | None = None, keep_crops: bool = False) -> ClipFeatures:
    """Decode, detect, track, and embed the main track's faces of one video (or folder of frames);
    with ``keep_crops`` also return their grey crops (what a fine-tuned frame CNN reads)."""
    scan = scan_faces(path, recognizer, sample_fps, embed=True, max_frames=max_frames, keep_crops=keep_crops)
    reader, times, per_frame = scan.reader, scan.times, scan.per_frame
    emb = np.zeros((len(times), recognizer.model.feat_dim), np.float32)
    probs = np.full((len(times), len(recognizer.classes)), np.nan, np.float32)
    present = np.zeros(len(times), bool)
    crops = np.zeros((len(times), CROP_SIZE, CROP_SIZE), np.uint8) if keep_crops else None
    notes = list(reader.notes)
    main = main_track(link_tracks(per_frame))
    if main is None:
        notes.append("no face found in any sampled frame")
    else:
        for t, face in main.faces.items():
            emb[t], probs[t], present[t] = face.emb, face.probs, True
            if crops is not None:
                crops[t] = face.crop
    return ClipFeatures(emb, present, np.asarray(times), probs, notes, crops)
