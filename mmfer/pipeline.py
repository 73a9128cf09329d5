"""One entry point for a photo, an audio clip or a video: run the branches that apply, fuse them,
and say what was skipped and why.

The file's kind is decided by its content (:func:`~mmfer.io.media.open_media`) and the file is
opened once: a video's frames and audio track come from one demuxing pass (the audio branch reads
its packets in a second thread while the face branch reads the frames). Branches come from the
registry (:mod:`mmfer.branches`), load on first use under a lock and stay loaded; a branch that
cannot load (no CLIP weights offline, a missing temporal head) is reported as unavailable and the
others carry on. The face branch is the core and its errors propagate.

Nothing here keeps per-request state on the pipeline: it can serve several threads at once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.audio.io import AudioLoadError, AudioSource
from mmfer.branches.base import Branch, BranchOutput
from mmfer.branches.face import FaceBranch, largest
from mmfer.branches.registry import create_branch
from mmfer.core.errors import ModelLoadError
from mmfer.core.offline import offline_mode
from mmfer.emotions import EMOTIONS
from mmfer.face.detect import FaceDetector
from mmfer.fusion.late_fusion import MODALITIES, FusionResult, LateFusion, ModalityCal
from mmfer.io.images import load_image
from mmfer.io.media import AUDIO, IMAGE, Media, PacketFeed, open_media
from mmfer.paths import WEIGHTS_DIR
from mmfer.scene.clip_encoder import SceneEncoderUnavailable
from mmfer.scene.probe import ProbeError
from mmfer.video.io import NoVideoTrack, VideoLoadError, VideoReader
from mmfer.video.timeline import VideoTimeline, video_timeline

log = logging.getLogger(__name__)

DEFAULT_FUSION = WEIGHTS_DIR / "fusion" / "fusion.json"


def _named(v: np.ndarray) -> dict[str, float]:
    return {e: round(float(x), 4) for e, x in zip(EMOTIONS, v, strict=True)}


@dataclasses.dataclass(frozen=True)
class BranchSlot:
    """A branch as the pipeline loaded it: the branch, or why it is unavailable."""

    name: str  # modality
    branch: Branch | None = None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.branch is not None

    @property
    def model(self) -> str | None:
        return None if self.branch is None else self.branch.name


@dataclasses.dataclass
class Analysis:
    """Everything one input produced. ``branches`` holds each modality's canonical probabilities
    (full precision: :meth:`to_dict` rounds)."""

    source: str
    kind: str  # image | audio | video
    branches: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    models: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    fused: FusionResult | None = None
    faces: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # image: every face and its fusion (JSON)
    timeline: Any = None  # video: VideoTimeline
    audio: Any = None  # AudioPrediction
    image: np.ndarray | None = None  # image: the decoded BGR photo
    notes: list[str] = dataclasses.field(default_factory=list)
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def emotion(self) -> str | None:
        return None if self.fused is None else self.fused.emotion

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "file": self.source, "kind": self.kind, "emotion": self.emotion,
            "fused": None if self.fused is None else self.fused.to_dict(),
            "branches": {m: {"model": self.models.get(m), "emotion": EMOTIONS[int(p.argmax())],
                             "probabilities": _named(p)} for m, p in self.branches.items()},
            "skipped": self.skipped, "notes": self.notes,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }
        if self.kind == "image":
            d["faces"] = self.faces
        if self.timeline is not None:
            tl = self.timeline.to_dict()
            d["video"] = {k: tl[k] for k in ("video", "sample_fps", "frames_used", "frames_with_face", "temporal")}
        if self.audio is not None:
            d["audio"] = self.audio.to_dict()
        return d


class _Timer:
    def __init__(self, sink: dict[str, float], key: str):
        self.sink, self.key = sink, key

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.sink[self.key] = self.sink.get(self.key, 0.0) + (time.perf_counter() - self.t) * 1e3


class _AudioJob:
    """The audio branch reading a video's audio packets in its own thread, fed by the frame pass."""

    def __init__(self, branch: Branch, media: Media):
        self.feed = PacketFeed()
        self.source = AudioSource(media.path, media=media, packets=self.feed)  # header checked here
        self.out: BranchOutput | None = None
        self.error: Exception | None = None
        self.ms = 0.0
        self._thread = threading.Thread(target=self._run, args=(branch,), name="mmfer-audio", daemon=True)
        self._thread.start()

    def _run(self, branch: Branch) -> None:
        t = time.perf_counter()
        try:
            self.out = branch.predict(self.source)
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread in result()
            self.error = exc
        finally:
            self.feed.abandon()  # the demuxer never waits on a reader that stopped
            self.ms = (time.perf_counter() - t) * 1e3

    def result(self) -> BranchOutput:
        self.feed.close()
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.out is not None
        return self.out


class EmotionPipeline:
    """Face, temporal, audio and scene branches plus late fusion, loaded once and reused.

    ``temporal=False`` / ``scene=False`` switch a branch off. The scene branch's CLIP weights are
    downloaded on first use (a ViT-B-32 is ~600 MB, announced in one line on stderr) into the Hugging
    Face cache. ``offline=True`` forbids every download (CLIP, transformers checkpoints, the YuNet
    detector): what is not cached is reported unavailable and the rest runs; None takes it from
    ``MMFER_OFFLINE`` / ``HF_HUB_OFFLINE``. ``hf_offline`` is its old name; ``clip_download`` is
    accepted for old scripts and changes nothing (downloading is the default).
    """

    def __init__(self, face_model: str | None = None, audio_model: str | None = None,
                 temporal_model: str | None = None, temporal: bool = True, scene: bool = True,
                 clip_model: str | None = None, clip_pretrained: str | None = None, scene_probe: str | None = None,
                 clip_download: bool = False, fusion: str | Path | None = None, device: str = "auto",
                 detector: str = "auto", yunet_model: str | None = None, sample_fps: float = 10.0,
                 max_video_s: float | None = None, key_frames: int = 3, hf_offline: bool = False,
                 trust_remote_code: bool = False, tta_flip: bool | None = None, scene_prompts: str | None = None,
                 offline: bool | None = None):
        if offline is None:
            offline = hf_offline or offline_mode()
        hf_offline = hf_offline or offline  # transformers checkpoints: the local HF cache only
        self.opts = dict(face_model=face_model, audio_model=audio_model, temporal_model=temporal_model,
                         temporal=temporal, scene=scene, clip_model=clip_model, clip_pretrained=clip_pretrained,
                         scene_probe=scene_probe, clip_download=clip_download, device=device, detector=detector,
                         yunet_model=yunet_model, hf_offline=hf_offline, trust_remote_code=trust_remote_code,
                         tta_flip=tta_flip, scene_prompts=scene_prompts, offline=offline)
        self.sample_fps, self.max_video_s, self.key_frames = sample_fps, max_video_s, key_frames
        self._fusion_arg = fusion
        self._slots: dict[str, BranchSlot] = {}
        self._detector: FaceDetector | None = None
        self._lock = threading.RLock()  # loading only; analysis runs unlocked
        self.fusion, self.fusion_source = self._load_fusion(fusion)
        self.fusion_notes: tuple[str, ...] = self.fusion.notes

    # -- loading -----------------------------------------------------------------------------------

    @staticmethod
    def _load_fusion(path: str | Path | None) -> tuple[LateFusion, str]:
        p = Path(path) if path else DEFAULT_FUSION
        if path or p.is_file():
            return LateFusion.load(p), str(p)
        # No card: equal weights, no calibration, uniform priors (still an exact decomposition).
        return LateFusion({m: ModalityCal() for m in MODALITIES}, "uncalibrated"), "uncalibrated defaults"

    def slot(self, name: str) -> BranchSlot:
        """The ``name`` branch (face, temporal, audio, scene), loaded on first use (once, under a lock)."""
        slot = self._slots.get(name)
        if slot is not None:
            return slot
        with self._lock:
            if name not in self._slots:
                self._slots[name] = self._load(name)
            return self._slots[name]

    def branch(self, name: str) -> Branch | None:
        """The loaded ``name`` branch, or None when it is unavailable (:meth:`status` says why)."""
        return self.slot(name).branch

    def require(self, name: str) -> Branch:
        """The loaded ``name`` branch; ModelLoadError (saying why) when it is unavailable."""
        s = self.slot(name)
        if s.branch is None:
            reason = s.reason or "unavailable"
            raise ModelLoadError(f"{name} branch {reason}" if reason.startswith("unavailable") else
                                 f"{name} branch unavailable: {reason}")
        return s.branch

    @property
    def detector(self) -> FaceDetector:
        """The face detector every branch shares (created on first use)."""
        if self._detector is None:
            with self._lock:
                face = self._slots.get("face")
                if self._detector is None and face is not None and face.branch is not None:
                    self._detector = face.branch.detector
                if self._detector is None:
                    self._detector = FaceDetector(self.opts["detector"] or "auto", self.opts["yunet_model"],
                                                  download=not self.opts["offline"])
        return self._detector

    def _load(self, name: str) -> BranchSlot:
        if name not in MODALITIES:
            raise ValueError(f"unknown branch {name!r}; known: {', '.join(MODALITIES)}")
        o = self.opts
        if name == "face":  # the core: its errors propagate
            # the model first (a bad name is the error to report), the shared detector when it exists
            det = self._detector or o["detector"]
            if o["offline"] and not offline_mode() and not isinstance(det, FaceDetector):
                # offline by argument only: the recogniser's own detector would download YuNet
                det = self._detector = FaceDetector(det or "auto", o["yunet_model"], download=False)
            b = create_branch("face", o["face_model"], detector=det, device=o["device"],
                              yunet_model=o["yunet_model"], tta_flip=o["tta_flip"], local_files_only=o["hf_offline"],
                              trust_remote_code=o["trust_remote_code"])
            self._align_fusion("face", b)
            return BranchSlot(name, b)
        if name in ("temporal", "scene") and not o[name]:
            return BranchSlot(name, reason="switched off")
        try:
            if name == "audio":
                b = create_branch("audio", o["audio_model"], device=o["device"], local_files_only=o["hf_offline"],
                                  trust_remote_code=o["trust_remote_code"])
                self._align_fusion("audio", b)
            elif name == "temporal":
                b = create_branch("temporal", o["temporal_model"], face=self.slot("face").branch)
                self._align_fusion("temporal", b)
            else:
                b = create_branch("scene", o["clip_model"], clip_pretrained=o["clip_pretrained"],
                                  probe=o["scene_probe"], prompts=o["scene_prompts"], device=o["device"],
                                  local_only=o["offline"])
        except (ModelLoadError, SceneEncoderUnavailable, ProbeError) as exc:
            log.info("%s branch unavailable: %s", name, exc)
            return BranchSlot(name, reason=str(exc))
        return BranchSlot(name, b)

    def _align_fusion(self, modality: str, branch: Branch) -> None:
        """A branch model the fusion card was not calibrated for enters uncalibrated (T=1, uniform prior,
        only the classes it can predict), and the result says so. Called under the lock; the fusion is
        replaced, not changed, so an analysis running meanwhile keeps a consistent one."""
        name = branch.card.get("name", modality)
        cal = self.fusion.modalities.get(modality)
        if cal is None or cal.model in (None, name):
            return
        labels = getattr(getattr(branch, "recognizer", None), "labels", None)  # transformers: what it can predict
        known = None if labels is None or not labels.missing else [e not in labels.missing for e in EMOTIONS]
        uncalibrated = ModalityCal(weight=cal.weight, known=known, model=name, calibration={
            "source": f"none: the fusion card is calibrated for {cal.model}"})
        mods = {**self.fusion.modalities, modality: uncalibrated}
        # weights fitted with the card's model do not carry over to another one
        rules = tuple(r for r in self.fusion.rules.values() if modality not in r.modalities)
        self.fusion = self.fusion.replace(modalities=mods, rules=rules)
        self.fusion_notes = (*self.fusion_notes, f"fusion: the {modality} model {name} enters uncalibrated "
                             f"(temperature 1, uniform prior); the card was fitted for {cal.model} "
                             f"(mmfer calibrate --{modality}-model)")

    def with_models(self, face_model: str | None = None, audio_model: str | None = None) -> EmotionPipeline:
        """A pipeline like this one with other face / audio models (mmfer names or folders, or transformers
        checkpoints); branches that did not change are shared, not reloaded. The face model is loaded now,
        so a bad name raises here and the caller can keep the pipeline it has."""
        opts = {**self.opts, "face_model": face_model or None, "audio_model": audio_model or None}
        new = EmotionPipeline(**opts, fusion=self._fusion_arg, sample_fps=self.sample_fps,
                              max_video_s=self.max_video_s, key_frames=self.key_frames)
        new._detector = self._detector  # one detector for both
        same_face = opts["face_model"] == self.opts["face_model"]
        with self._lock:
            slots = dict(self._slots)
        for name, s in slots.items():
            if name == "scene" or (name == "audio" and opts["audio_model"] == self.opts["audio_model"]) or (
                    name in ("face", "temporal") and same_face):
                new._slots[name] = s
                if name in ("face", "audio") and s.branch is not None:
                    new._align_fusion(name, s.branch)
        new.slot("face")
        return new

    @property
    def face(self) -> Any:
        """The face recogniser (detector + model) itself."""
        return self.face_branch.recognizer

    @property
    def face_branch(self) -> FaceBranch:
        b = self.slot("face").branch
        assert isinstance(b, FaceBranch)
        return b

    def status(self) -> dict[str, dict[str, Any]]:
        """Load every branch now and say which are available (and why not)."""
        out = {}
        for m in MODALITIES:
            s = self.slot(m)
            out[m] = {"name": m, "model": s.model, "available": s.available, "reason": s.reason,
                      "backend": None if s.branch is None else s.branch.backend}
        rules = [f"fitted {'+'.join(r.modalities)}: {r.verdict}" for r in self.fusion.rules.values()]
        groups = [f"{'+'.join(g.members)} share evidence ({g.name}): counted once" for g in self.fusion.groups]
        out["fusion"] = {"name": self.fusion.name, "available": True, "model": self.fusion_source, "reason": None,
                         "backend": "mmfer", "notes": [*self.fusion_notes, *groups, *rules]}
        return out

    # -- analysis ----------------------------------------------------------------------------------

    def analyze(self, path: str | Path) -> Analysis:
        """Any photo, audio clip or video, recognised by its content (not its name), read once."""
        with open_media(path) as m:
            if m.kind == IMAGE:
                return self.analyze_image(load_image(m.path), str(path))
            if m.kind == AUDIO:
                return self._analyze_audio(m, str(path))
            return self._analyze_video(m, str(path))

    def faces(self, images: Sequence[np.ndarray], detect: bool = True) -> list[list[Any]]:
        """Every face of each BGR image (:class:`~mmfer.face.predictor.FacePrediction`, full precision),
        classified in one batch; ``detect=False`` takes each image as one face crop."""
        return self.face.predict_batch(list(images), detect=detect)

    def scene(self, images_bgr: Sequence[np.ndarray], boxes: Sequence[Sequence[Any]] | None = None) -> BranchOutput:
        """The scene branch on images with the given face boxes masked (None: nothing masked); ``details``
        holds each image's probabilities. Raises SceneEncoderUnavailable."""
        s = self.slot("scene")
        if s.branch is None:
            raise SceneEncoderUnavailable(s.reason or "scene branch unavailable")
        return s.branch.predict((images_bgr, [[] for _ in images_bgr] if boxes is None else boxes))

    def audio(self, path: str | Path) -> BranchOutput:
        """The audio branch alone on a file (any audio, or a video's audio track), read once; ``details`` is
        the :class:`~mmfer.audio.predictor.AudioPrediction`. Raises AudioLoadError, and ModelLoadError
        when the audio branch is unavailable."""
        branch = self.require("audio")
        with open_media(path) as m:
            return branch.predict(AudioSource(m.path, media=m))

    def timeline(self, path: str | Path, smooth_s: float = 0.5) -> VideoTimeline:
        """The face emotion timeline of a video (or a folder of frames), with the temporal head's clip
        prediction when it is available."""
        t = self.slot("temporal")
        temporal = t.branch.loaded if t.branch is not None else None
        if Path(path).is_dir():  # a folder of frames
            return video_timeline(path, self.face, self.sample_fps, smooth_s=smooth_s, temporal=temporal)
        with open_media(path) as m:
            self._check_video(m, str(path))
            reader = VideoReader(m.path, self.sample_fps, media=m)
            return video_timeline(reader, self.face, self.sample_fps, smooth_s=smooth_s, temporal=temporal)

    def _fuse(self, a: Analysis, fusion: LateFusion, notes: tuple[str, ...]) -> None:
        a.notes += [n for n in notes if n not in a.notes]
        if a.branches:
            with _Timer(a.timings_ms, "fusion"):
                a.fused = fusion.fuse(a.branches)

    def _scene_into(self, a: Analysis, images_bgr: list[np.ndarray], boxes: list[list[Any]]) -> None:
        s = self.slot("scene")
        if s.branch is None:
            a.skipped["scene"] = s.reason or "unavailable"
            return
        with _Timer(a.timings_ms, "scene"):
            a.branches["scene"] = s.branch.predict((images_bgr, boxes)).probs
        a.models["scene"] = s.branch.name

    def analyze_image(self, image_bgr: np.ndarray, source: str = "<image>") -> Analysis:
        """Every face (with face + scene fused per face); the main (largest) face's fusion is the result."""
        a = Analysis(source, "image", image=image_bgr)
        face = self.face_branch
        fusion, notes = self.fusion, self.fusion_notes
        with _Timer(a.timings_ms, "face"):
            faces = face.faces(image_bgr)
        a.models["face"] = face.name
        self._scene_into(a, [image_bgr], [[f.box for f in faces]])
        scene = a.branches.get("scene")
        for i, f in enumerate(faces):
            fused = fusion.fuse({"face": face.vector(f), "scene": scene})
            a.faces.append({"index": i, **f.to_dict(), "fused": fused.to_dict()})  # for display: rounded
        if faces:
            a.branches = {"face": face.vector(largest(faces)), **a.branches}
            if len(faces) > 1:
                a.notes.append(f"{len(faces)} faces: the result is the largest one's; every face has its own")
        else:
            a.skipped["face"] = "no face found"
        for m in ("temporal", "audio"):
            a.skipped[m] = "not in a still image"
        self._fuse(a, fusion, notes)
        return a

    def analyze_audio(self, path: str | Path) -> Analysis:
        """An audio file (or the audio track of any container), by content."""
        with open_media(path) as m:
            return self._analyze_audio(m, str(path))

    def _analyze_audio(self, m: Media, source: str) -> Analysis:
        a = Analysis(source, "audio")
        fusion, notes = self.fusion, self.fusion_notes
        s = self.slot("audio")
        if s.branch is None:
            a.skipped["audio"] = s.reason or "unavailable"
        else:
            with _Timer(a.timings_ms, "audio"):
                out = s.branch.predict(AudioSource(m.path, media=m))  # AudioLoadError propagates: it is the input
            self._audio_result(a, s.branch, out)
        for mod in ("face", "temporal", "scene"):
            a.skipped[mod] = "not in an audio clip"
        self._fuse(a, fusion, notes)
        return a

    @staticmethod
    def _audio_result(a: Analysis, branch: Branch, out: BranchOutput) -> None:
        a.audio = out.details
        if out.probs is None:
            a.skipped["audio"] = out.skipped or "nothing to classify"
            return
        a.branches["audio"] = out.probs
        a.models["audio"] = branch.name
        a.notes += [f"audio: {n}" for n in out.details.notes]

    def analyze_video(self, path: str | Path) -> Analysis:
        """Face timeline (its clip mean is the face term), temporal head, audio track, scene on key frames."""
        with open_media(path) as m:
            return self._analyze_video(m, str(path))

    @staticmethod
    def _check_video(m: Media, source: str) -> None:
        """VideoLoadError unless ``m`` is a video FFmpeg opened."""
        if m.kind == AUDIO:
            raise NoVideoTrack(f"{source}: has no video track (it holds audio)")
        if m.kind == IMAGE:
            raise VideoLoadError(f"{source}: is an image, not a video")
        if m.by_suffix:  # named like a video, but FFmpeg could not read it: the video reader says why
            VideoReader(m.path)
            raise VideoLoadError(f"{source}: not a readable video")

    def _analyze_video(self, m: Media, source: str) -> Analysis:
        self._check_video(m, source)
        a = Analysis(source, "video")
        fusion, notes = self.fusion, self.fusion_notes
        face = self.face_branch
        temporal, audio = self.slot("temporal"), self.slot("audio")
        reader = None
        try:
            reader = VideoReader(m.path, self.sample_fps, media=m)  # header only
            info = reader.info
            if self.max_video_s and info.duration_s and info.duration_s > self.max_video_s:
                raise VideoLoadError(f"{source}: {info.duration_s:.0f} s is longer than the {self.max_video_s:.0f} "
                                     "s allowed here")
        except VideoLoadError as exc:
            if not m.has_audio or "allowed here" in str(exc):
                raise
            return self._video_without_frames(a, m, exc, audio, fusion, notes)
        job = self._start_audio(a, m, audio)
        if job is not None:
            reader.attach_audio(job.feed.put)
        try:
            with _Timer(a.timings_ms, "face+temporal"):
                tl = video_timeline(reader, face.recognizer, self.sample_fps, key_frames=self.key_frames,
                                    temporal=temporal.branch.loaded if temporal.branch is not None else None)
        except VideoLoadError as exc:
            if job is None:
                raise
            tl = None
            self._no_frames(a, exc)
        finally:
            if job is not None:
                reader.finish_audio()
        if tl is not None:
            self._timeline_into(a, tl, face, temporal)
        if job is not None:
            self._audio_job_into(a, job, audio)
        if tl is not None and tl.key_frames:
            self._scene_into(a, [k.image for k in tl.key_frames], [k.boxes for k in tl.key_frames])
        elif "scene" not in a.skipped:
            a.skipped["scene"] = "no frames"
        self._fuse(a, fusion, notes)
        return a

    def _start_audio(self, a: Analysis, m: Media, audio: BranchSlot) -> _AudioJob | None:
        if not m.has_audio:
            a.skipped["audio"] = "the video has no audio track"
            return None
        if audio.branch is None:
            a.skipped["audio"] = audio.reason or "unavailable"
            return None
        try:
            return _AudioJob(audio.branch, m)
        except AudioLoadError as exc:
            a.skipped["audio"] = str(exc).split(": ", 1)[-1]
            return None

    def _audio_job_into(self, a: Analysis, job: _AudioJob, audio: BranchSlot) -> None:
        try:
            out = job.result()
        except AudioLoadError as exc:
            a.skipped["audio"] = str(exc).split(": ", 1)[-1]
            return
        finally:
            a.timings_ms["audio"] = job.ms
        assert audio.branch is not None
        self._audio_result(a, audio.branch, out)

    @staticmethod
    def _no_frames(a: Analysis, exc: VideoLoadError) -> None:
        why = str(exc).split(": ", 1)[-1]
        a.notes.append(f"video: {why}; the audio track was analysed on its own")
        for mod in ("face", "temporal", "scene"):
            a.skipped[mod] = f"video unreadable: {why}"

    def _video_without_frames(self, a: Analysis, m: Media, exc: VideoLoadError, audio: BranchSlot,
                              fusion: LateFusion, notes: tuple[str, ...]) -> Analysis:
        """A container whose video stream cannot be used but whose audio can: the audio is still analysed."""
        self._no_frames(a, exc)
        if audio.branch is None:
            a.skipped["audio"] = audio.reason or "unavailable"
        else:
            try:
                with _Timer(a.timings_ms, "audio"):
                    out = audio.branch.predict(AudioSource(m.path, media=m))
                self._audio_result(a, audio.branch, out)
            except AudioLoadError as err:
                raise VideoLoadError(f"{exc}; and its audio: {str(err).split(': ', 1)[-1]}") from None
        self._fuse(a, fusion, notes)
        return a

    @staticmethod
    def _timeline_into(a: Analysis, tl: VideoTimeline, face: FaceBranch, temporal: BranchSlot) -> None:
        a.timeline = tl
        a.notes += tl.notes
        a.models["face"] = face.name
        found = tl.face_found
        if found.any():
            a.branches["face"] = face.canonical(tl.probs[found].astype(np.float64).mean(0))
        else:
            a.skipped["face"] = "no face found in any sampled frame"
        if tl.temporal and temporal.branch is not None:
            t = temporal.branch
            probs = np.array([tl.temporal["probabilities"][e] for e in EMOTIONS], np.float64)
            a.branches["temporal"] = probs
            a.models["temporal"] = t.name
        else:
            a.skipped["temporal"] = temporal.reason if temporal.branch is None else "no face to follow"
