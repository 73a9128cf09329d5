"""Per-frame face emotion over a video: sample frames, detect and classify every face, link the
faces into tracks, and report the main track's probabilities over time (raw and smoothed) as
JSON, CSV and a plot. Frames where the main person's face is not found are kept and marked.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmfer.emotions import EMOTIONS
from mmfer.face.detect import crop_faces
from mmfer.face.predictor import CROP_SIZE, FaceEmotionRecognizer, to_grey_crop
from mmfer.video.artifact import check_face_model, load_video_model
from mmfer.video.io import DEFAULT_SAMPLE_FPS, MAX_SIDE, VideoInfo, VideoReader, open_frames
from mmfer.video.temporal import temporal_probs
from mmfer.video.tracking import Track, link_tracks, main_track

if TYPE_CHECKING:
    import pandas as pd

@dataclasses.dataclass
class VideoTimeline:
    info: VideoInfo
    sample_fps: float | None
    times: np.ndarray  # (T,) seconds of the sampled frames
    probs: np.ndarray  # (T, 7) main track's face probabilities; NaN where its face was not found
    smoothed: np.ndarray  # (T, 7) centred moving average over face frames
    tracks: list[Track]
    main_track_id: int | None
    faces_per_frame: list[int]
    notes: list[str]
    temporal: dict[str, Any] | None = None  # clip-level prediction of the temporal head, when asked for
    key_frames: list[KeyFrame] = dataclasses.field(default_factory=list)  # when asked for (scene, display)

    @property
    def face_found(self) -> np.ndarray:
        return ~np.isnan(self.probs[:, 0]) if len(self.probs) else np.zeros(0, bool)

    @property
    def summary(self) -> dict[str, float] | None:
        """Mean face probabilities of the main track over the clip (None without a face)."""
        found = self.face_found
        if not found.any():
            return None
        return {e: float(p) for e, p in zip(EMOTIONS, self.probs[found].mean(0), strict=True)}

    def to_dict(self) -> dict[str, Any]:
        summary = self.summary
        return {
            "video": dataclasses.asdict(self.info),
            "sample_fps": self.sample_fps,
            "frames_used": len(self.times),
            "frames_with_face": int(self.face_found.sum()),
            "emotion": None if summary is None else max(summary, key=summary.get),
            "mean_probabilities": None if summary is None else {k: round(v, 4) for k, v in summary.items()},
            "temporal": None if self.temporal is None else {
                **self.temporal, "probabilities": {k: round(v, 4) for k, v in self.temporal["probabilities"].items()}},
            "main_track": self.main_track_id,
            "tracks": [t.to_dict() for t in self.tracks],
            "notes": self.notes,
            "frames": [{"time_s": round(float(t), 3), "faces": n, "face_found": bool(f),
                        "probabilities": None if not f else {e: round(float(v), 4) for e, v in zip(EMOTIONS, p,
                                                                                                   strict=True)},
                        "smoothed": None if not f else {e: round(float(v), 4) for e, v in zip(EMOTIONS, s,
                                                                                              strict=True)}}
                       for t, n, f, p, s in zip(self.times, self.faces_per_frame, self.face_found, self.probs,
                                                self.smoothed, strict=True)],
        }

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd  # lazy: a photo-only user of the pipeline never pays for it

        df = pd.DataFrame({"time_s": self.times, "faces": self.faces_per_frame, "face_found": self.face_found})
        for i, e in enumerate(EMOTIONS):
            df[e] = self.probs[:, i]
        for i, e in enumerate(EMOTIONS):
            df[f"{e}_smoothed"] = self.smoothed[:, i]
        return df

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """timeline.json, timeline.csv and timeline.png in ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "timeline.json", "csv": out / "timeline.csv", "plot": out / "timeline.png"}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        self.to_frame().to_csv(paths["csv"], index=False, float_format="%.4f")
        plot_timeline(self, paths["plot"])
        return paths


def plot_timeline(tl: VideoTimeline, path: str | Path) -> Path:
    """The smoothed probabilities over time as a PNG (matplotlib's object API: no pyplot state, thread-safe)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    for i, e in enumerate(EMOTIONS):
        ax.plot(tl.times, tl.smoothed[:, i], label=e, lw=1.8)
    missing = ~tl.face_found
    for t in tl.times[missing]:
        ax.axvspan(t - 0.5 / (tl.sample_fps or 10), t + 0.5 / (tl.sample_fps or 10), color="0.9", lw=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability (smoothed)")
    ax.set_ylim(0, 1)
    ax.set_title(f"{Path(tl.info.path).name}: face emotion over time (grey: no face)")
    ax.legend(loc="upper left", ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


BATCH_FRAMES = 16  # frames whose faces are classified in one batch


@dataclasses.dataclass
class _FaceRow:
    box: tuple[int, int, int, int]
    probs: np.ndarray
    emb: np.ndarray | None  # float16 backbone embedding, kept only for a frozen-CNN temporal head
    crop: np.ndarray | None = None  # (48, 48) uint8 grey crop, kept only for a fine-tuned temporal head


@dataclasses.dataclass
class KeyFrame:
    time_s: float
    image: np.ndarray  # BGR, at most 640 px on its longer side
    boxes: list[tuple[int, int, int, int]]  # faces in that (downscaled) image
    scale: float  # image pixels per original frame pixel


@dataclasses.dataclass
class Scan:
    reader: Any  # the VideoReader / ImageSequenceReader (info, notes)
    times: list[float]
    per_frame: list[list[_FaceRow]]
    key_frames: list[KeyFrame]


def _key_indices(reader: Any, sample_fps: float | None, n: int) -> set[int]:
    """Evenly spaced positions among the sampled frames (from the header's duration), for ``n`` key frames."""
    info = reader.info
    rate = sample_fps or info.fps or 10.0
    total = int(info.duration_s * rate) if info.duration_s else n
    total = max(1, total)
    return {round(i * (total - 1) / max(1, n - 1)) for i in range(n)} if n > 0 else set()


def scan_faces(path: str | Path | VideoReader, recognizer: Any, sample_fps: float | None = DEFAULT_SAMPLE_FPS,
               max_side: int = MAX_SIDE, embed: bool = False, max_frames: int | None = None,
               keep_crops: bool = False, key_frames: int = 0) -> Scan:
    """Decode (a video or a folder of frames), detect, crop and classify every face of every sampled
    frame; with ``embed`` also keep each face's backbone embedding (float16), with ``keep_crops`` its
    grey 48x48 crop, and ``key_frames`` evenly spaced downscaled frames with their face boxes."""
    import cv2

    reader = path if isinstance(path, VideoReader) else open_frames(path, sample_fps, max_side)
    wanted = _key_indices(reader, sample_fps, key_frames)
    times: list[float] = []
    per_frame: list[list[_FaceRow]] = []
    keys: list[KeyFrame] = []
    pending: list[tuple[int, list[Any], list[np.ndarray]]] = []  # (frame, faces, crops) not yet classified

    def classify_pending() -> None:
        """The faces of up to BATCH_FRAMES frames through the network together: one forward pass per crop,
        for both the probabilities and the embedding, and far less overhead per face than frame by frame."""
        crops = [c for _, _, cs in pending for c in cs]
        if crops:
            probs, embs = recognizer.classify_crops(crops, embed=embed)
            j = 0
            for t, faces, cs in pending:
                per_frame[t] = [_FaceRow(f.box, probs[j + i], embs[j + i].astype(np.float16) if embed else None,
                                         to_grey_crop(cs[i]) if keep_crops else None) for i, f in enumerate(faces)]
                j += len(cs)
        pending.clear()

    for frame in reader:
        times.append(frame.time_s)
        faces = recognizer.detector.detect(frame.image)
        per_frame.append([])
        if faces:
            crops = crop_faces(frame.image, faces, size=getattr(recognizer, "crop_size", 48),
                               colour=getattr(recognizer, "colour_crops", False))
            pending.append((len(per_frame) - 1, faces, list(crops)))
            if len(pending) >= BATCH_FRAMES:
                classify_pending()
        if frame.index in wanted:
            scale = min(1.0, 640 / max(frame.image.shape[:2]))
            img = cv2.resize(frame.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) \
                if scale < 1 else frame.image.copy()
            boxes = [tuple(int(round(v * scale)) for v in f.box) for f in faces]
            keys.append(KeyFrame(frame.time_s, img, boxes, scale))
        if max_frames and len(times) >= max_frames:
            break
    classify_pending()
    return Scan(reader, times, per_frame, keys)


def video_timeline(path: str | Path | VideoReader, recognizer: Any = None,
                   sample_fps: float | None = DEFAULT_SAMPLE_FPS, smooth_s: float = 0.5, max_side: int = MAX_SIDE,
                   temporal: Any = None, key_frames: int = 0
                   ) -> VideoTimeline:
    """Face emotion timeline of a video with a FaceEmotionRecognizer (default: the shipped model).

    With ``temporal`` (a model name/folder, True for the shipped temporal head, or what
    :func:`~mmfer.video.artifact.load_video_model` returned, to load it once) the clip-level
    temporal prediction is added: the head reads the main track in windows of its ``max_frames``
    and the windows' probabilities are averaged. Frames are classified as they are decoded; only
    boxes, 7 probabilities and (with the temporal head) a float16 embedding per face are kept.
    """

    if recognizer is None:
        recognizer = FaceEmotionRecognizer()
    head = card = None
    if temporal:
        loaded = temporal if isinstance(temporal, tuple) else load_video_model(None if temporal is True else temporal)
        head, card, vcfg = loaded
        wanted = vcfg.data.face_model or "face_lite0"
        if not vcfg.model.finetune:
            check_face_model(card, wanted, recognizer.card)
    finetuned = head is not None and vcfg.model.finetune  # its own CNN reads the crops
    scan = scan_faces(path, recognizer, sample_fps, max_side, embed=head is not None and not finetuned,
                      keep_crops=finetuned, key_frames=key_frames)
    reader, times, per_frame = scan.reader, scan.times, scan.per_frame
    tracks = link_tracks(per_frame)
    main = main_track(tracks)
    probs = np.full((len(times), len(EMOTIONS)), np.nan, np.float32)
    if main is not None:
        for t, face in main.faces.items():
            probs[t] = face.probs
    fps = sample_fps or reader.info.fps or 10.0
    window = max(1, int(round(smooth_s * fps)))
    import pandas as pd  # lazy, as above

    smoothed = pd.DataFrame(probs).rolling(window, center=True, min_periods=1).mean().to_numpy(np.float32, copy=True)
    smoothed[np.isnan(probs[:, 0])] = np.nan
    notes = list(reader.notes)
    if main is None:
        notes.append("no face found in any sampled frame")
    elif main.length < len(times):
        notes.append(f"main face found in {main.length} of {len(times)} sampled frames")
    tl = VideoTimeline(reader.info, sample_fps, np.asarray(times, np.float64), probs, smoothed, tracks,
                       None if main is None else main.id, [len(f) for f in per_frame], notes,
                       key_frames=scan.key_frames)
    if head is not None and main is not None:
        span = vcfg.data.max_frames
        emb = (np.zeros((len(times), CROP_SIZE, CROP_SIZE), np.uint8) if finetuned
               else np.zeros((len(times), recognizer.model.feat_dim), np.float32))
        present = np.zeros(len(times), bool)
        for t, face in main.faces.items():
            emb[t], present[t] = face.crop if finetuned else face.emb, True
        clip, windows = temporal_probs(head, emb, present, span)
        tl.temporal = {"model": card["name"], "windows": windows, "emotion": EMOTIONS[int(clip.argmax())],
                       "probabilities": {e: float(v) for e, v in zip(EMOTIONS, clip, strict=True)}}
    return tl
