"""Linking per-frame face detections into tracks (greedy IoU matching), and picking the main one."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol


class HasBox(Protocol):
    box: Any  # (x, y, w, h): a detector Face or a FacePrediction


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclasses.dataclass
class Track:
    id: int
    faces: dict[int, HasBox] = dataclasses.field(default_factory=dict)  # sampled frame index -> detection

    @property
    def length(self) -> int:
        return len(self.faces)

    @property
    def last_frame(self) -> int:
        return max(self.faces)

    @property
    def mean_area(self) -> float:
        return sum(f.box[2] * f.box[3] for f in self.faces.values()) / max(1, len(self.faces))

    def to_dict(self) -> dict:
        return {"id": self.id, "frames": sorted(self.faces), "length": self.length,
                "mean_area": round(self.mean_area, 1)}


def link_tracks(detections: Sequence[Sequence[HasBox]], iou_threshold: float = 0.3, max_gap: int = 5) -> list[Track]:
    """Tracks from per-frame detections: each face joins the open track whose last box overlaps it
    most (IoU >= ``iou_threshold``), best pairs first; a track stays open ``max_gap`` frames
    without a face (blinks, missed detections, a hand in front)."""
    tracks: list[Track] = []
    for t, faces in enumerate(detections):
        open_tracks = [tr for tr in tracks if t - tr.last_frame <= max_gap + 1]
        pairs = sorted(((box_iou(tr.faces[tr.last_frame].box, f.box), ti, fi)
                        for ti, tr in enumerate(open_tracks) for fi, f in enumerate(faces)), reverse=True)
        used_t: set[int] = set()
        used_f: set[int] = set()
        for iou, ti, fi in pairs:
            if iou < iou_threshold or ti in used_t or fi in used_f:
                continue
            open_tracks[ti].faces[t] = faces[fi]
            used_t.add(ti)
            used_f.add(fi)
        for fi, f in enumerate(faces):
            if fi not in used_f:
                tracks.append(Track(len(tracks), {t: f}))
    return tracks


def main_track(tracks: Sequence[Track]) -> Track | None:
    """The longest track; ties go to the larger face (the person closest to the camera)."""
    return max(tracks, key=lambda tr: (tr.length, tr.mean_area), default=None)
