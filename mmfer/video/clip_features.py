"""Per-frame inputs of the temporal model: the main person's face embedding in every sampled
frame (from the face branch's frozen CNN), with a presence flag for frames without that face."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mmfer.video.io import DEFAULT_SAMPLE_FPS, open_frames
from mmfer.video.tracking import link_tracks, main_track


@dataclasses.dataclass
class ClipFeatures:
    embeddings: np.ndarray  # (T, D) float32, zeros where the face is missing
    present: np.ndarray  # (T,) bool
    times: np.ndarray  # (T,) seconds
    frame_probs: np.ndarray  # (T, 7) the face model's own per-frame probabilities (NaN where missing)
    notes: list[str]


def clip_features(path: str | Path, recognizer, sample_fps: float | None = DEFAULT_SAMPLE_FPS,  # noqa: ANN001
                  max_frames: int | None = None) -> ClipFeatures:
    """Decode, detect, track, and embed the main track's faces of one video."""
    from mmfer.face.detect import crop_faces

    reader = open_frames(path, sample_fps)
    times, dets, crops = [], [], []
    for frame in reader:
        faces = recognizer.detector.detect(frame.image)
        times.append(frame.time_s)
        dets.append(faces)
        crops.append(crop_faces(frame.image, faces) if faces else np.zeros((0, 48, 48), np.uint8))
        if max_frames and len(times) >= max_frames:
            break
    dim = recognizer.model.feat_dim
    emb = np.zeros((len(times), dim), np.float32)
    probs = np.full((len(times), len(recognizer.classes)), np.nan, np.float32)
    present = np.zeros(len(times), bool)
    notes = list(reader.notes)
    main = main_track(link_tracks(dets))
    if main is None:
        notes.append("no face found in any sampled frame")
    else:
        idx = sorted(main.faces)
        chosen = np.stack([crops[t][dets[t].index(main.faces[t])] for t in idx])
        emb[idx] = recognizer.embed_crops(chosen)
        probs[idx] = recognizer.predict_crops(chosen)
        present[idx] = True
    return ClipFeatures(emb, present, np.asarray(times), probs, notes)
