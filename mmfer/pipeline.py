"""One entry point for a photo, an audio clip or a video: run the branches that apply, fuse them,
and say what was skipped and why.

Models load on first use and stay loaded. A branch that cannot load (no CLIP weights offline, a
missing temporal head) is reported as unavailable and the others carry on; the face branch is
the core and its errors propagate.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.emotions import EMOTIONS, fold_to_canonical
from mmfer.fusion.late_fusion import MODALITIES, FusionResult, LateFusion, ModalityCal
from mmfer.paths import WEIGHTS_DIR

log = logging.getLogger(__name__)

DEFAULT_FUSION = WEIGHTS_DIR / "fusion" / "fusion.json"


def _vector(probs: dict[str, float]) -> np.ndarray:
    folded = fold_to_canonical(probs)  # extra classes (calm, contempt) into their canonical emotion
    return np.array([folded[e] for e in EMOTIONS], np.float64)


def _named(v: np.ndarray) -> dict[str, float]:
    return {e: round(float(x), 4) for e, x in zip(EMOTIONS, v, strict=True)}


@dataclasses.dataclass
class Branch:
    name: str
    model: str | None = None
    available: bool = False
    reason: str | None = None  # why it is unavailable
    obj: Any = None


@dataclasses.dataclass
class Analysis:
    """Everything one input produced. ``branches`` holds each modality's canonical probabilities."""

    source: str
    kind: str  # image | audio | video
    branches: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    models: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    fused: FusionResult | None = None
    faces: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # image: every face, with its own fusion
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


class EmotionPipeline:
    """Face, temporal, audio and scene branches plus late fusion, loaded once and reused.

    ``temporal=False`` / ``scene=False`` switch a branch off. CLIP is taken from local files or the
    Hugging Face cache only, unless ``clip_download`` (a ViT-B-32 is ~600 MB).
    """

    def __init__(self, face_model: str | None = None, audio_model: str | None = None,
                 temporal_model: str | None = None, temporal: bool = True, scene: bool = True,
                 clip_model: str | None = None, clip_pretrained: str | None = None, scene_probe: str | None = None,
                 clip_download: bool = False, fusion: str | Path | None = None, device: str = "auto",
                 detector: str = "auto", yunet_model: str | None = None, sample_fps: float = 10.0,
                 max_video_s: float | None = None, key_frames: int = 3, hf_offline: bool = False,
                 trust_remote_code: bool = False):
        self.opts = dict(face_model=face_model, audio_model=audio_model, temporal_model=temporal_model,
                         temporal=temporal, scene=scene, clip_model=clip_model, clip_pretrained=clip_pretrained,
                         scene_probe=scene_probe, clip_download=clip_download, device=device, detector=detector,
                         yunet_model=yunet_model, hf_offline=hf_offline, trust_remote_code=trust_remote_code)
        self.fusion_notes: list[str] = []
        self.sample_fps, self.max_video_s, self.key_frames = sample_fps, max_video_s, key_frames
        self._fusion_arg = fusion
        self._branches: dict[str, Branch] = {}
        self.fusion, self.fusion_source = self._load_fusion(fusion)

    # -- loading -----------------------------------------------------------------------------------

    @staticmethod
    def _load_fusion(path: str | Path | None) -> tuple[LateFusion, str]:
        p = Path(path) if path else DEFAULT_FUSION
        if path or p.is_file():
            return LateFusion.load(p), str(p)
        # No card: equal weights, no calibration, uniform priors (still an exact decomposition).
        return LateFusion({m: ModalityCal() for m in MODALITIES}, "uncalibrated"), "uncalibrated defaults"

    def _branch(self, name: str) -> Branch:
        if name not in self._branches:
            b = Branch(name)
            try:
                b.obj, b.model = getattr(self, f"_load_{name}")()
                b.available = True
            except _Unavailable as exc:
                b.reason = str(exc)
            self._branches[name] = b
            if not b.available:
                log.info("%s branch unavailable: %s", name, b.reason)
        return self._branches[name]

    def _align_fusion(self, modality: str, rec: Any) -> None:
        """A branch model the fusion card was not calibrated for enters uncalibrated (T=1, uniform prior,
        only the classes it can predict), and the result says so."""
        name = rec.card.get("name", modality)
        cal = self.fusion.modalities.get(modality)
        if cal is None or cal.model in (None, name):
            return
        labels = getattr(rec, "labels", None)  # transformers checkpoints: which emotions they can predict
        known = None if labels is None or not labels.missing else [e not in labels.missing for e in EMOTIONS]
        self.fusion.modalities[modality] = ModalityCal(weight=cal.weight, known=known, model=name, calibration={
            "source": f"none: the fusion card is calibrated for {cal.model}"})
        self.fusion_notes.append(f"fusion: the {modality} model {name} enters uncalibrated (temperature 1, uniform "
                                 f"prior); the card was fitted for {cal.model} (mmfer calibrate --{modality}-model)")

    def _load_face(self) -> tuple[Any, str]:
        from mmfer.hf.branches import load_face_recognizer

        o = self.opts
        rec = load_face_recognizer(o["face_model"], detector=o["detector"], device=o["device"],
                                   yunet_model=o["yunet_model"], local_files_only=o["hf_offline"],
                                   trust_remote_code=o["trust_remote_code"])
        self._align_fusion("face", rec)
        return rec, rec.card.get("name", "face")

    def _load_audio(self) -> tuple[Any, str]:
        from mmfer.face.artifact import ModelLoadError
        from mmfer.hf.branches import load_audio_recognizer

        o = self.opts
        try:
            rec = load_audio_recognizer(o["audio_model"], device=o["device"], local_files_only=o["hf_offline"],
                                        trust_remote_code=o["trust_remote_code"])
        except ModelLoadError as exc:
            raise _Unavailable(str(exc)) from None
        self._align_fusion("audio", rec)
        return rec, rec.card.get("name", "audio")

    def _load_temporal(self) -> tuple[Any, str]:
        from mmfer.face.artifact import ModelLoadError
        from mmfer.video.artifact import check_face_model, load_video_model

        if not self.opts["temporal"]:
            raise _Unavailable("switched off")
        try:
            loaded = load_video_model(self.opts["temporal_model"])
            _, card, vcfg = loaded
            if not vcfg.model.finetune:
                check_face_model(card, vcfg.data.face_model or "face_lite0", self.face.card)
        except ModelLoadError as exc:
            raise _Unavailable(str(exc)) from None
        return loaded, card["name"]

    def _load_scene(self) -> tuple[Any, str]:
        from mmfer.scene.classifier import load_scene_classifier
        from mmfer.scene.clip_encoder import SceneEncoderUnavailable
        from mmfer.scene.probe import ProbeError

        o = self.opts
        if not o["scene"]:
            raise _Unavailable("switched off")
        try:
            sc = load_scene_classifier(o["clip_model"], o["clip_pretrained"], o["scene_probe"], device=o["device"],
                                       local_only=not o["clip_download"])
        except (SceneEncoderUnavailable, ProbeError) as exc:
            raise _Unavailable(str(exc)) from None
        return (sc.encoder, sc.scores), sc.name

    def with_models(self, face_model: str | None = None, audio_model: str | None = None) -> EmotionPipeline:
        """A pipeline like this one with other face / audio models (mmfer names or folders, or transformers
        checkpoints); branches that did not change are shared, not reloaded. The face model is loaded now,
        so a bad name raises here and the caller can keep the pipeline it has."""
        opts = {**self.opts, "face_model": face_model or None, "audio_model": audio_model or None}
        new = EmotionPipeline(**opts, fusion=self._fusion_arg, sample_fps=self.sample_fps,
                              max_video_s=self.max_video_s, key_frames=self.key_frames)
        same_face = opts["face_model"] == self.opts["face_model"]
        for name, b in self._branches.items():
            if name == "scene" or (name == "audio" and opts["audio_model"] == self.opts["audio_model"]) or (
                    name in ("face", "temporal") and same_face):
                new._branches[name] = b
                if name in ("face", "audio") and b.available:
                    new._align_fusion(name, b.obj)
        new._branch("face")
        return new

    @property
    def face(self) -> Any:
        return self._branch("face").obj

    def status(self) -> dict[str, dict[str, Any]]:
        """Load every branch now and say which are available (and why not)."""
        out = {}
        for m in MODALITIES:
            b = self._branch(m)
            out[m] = {"name": m, "model": b.model, "available": b.available, "reason": b.reason,
                      "backend": _backend(b.obj) if b.available else None}
        out["fusion"] = {"name": self.fusion.name, "available": True, "model": self.fusion_source, "reason": None,
                         "backend": "mmfer", "notes": list(self.fusion_notes)}
        return out

    # -- analysis ----------------------------------------------------------------------------------

    def analyze(self, path: str | Path) -> Analysis:
        """Route a file by type: image, audio, or video (frames + audio track)."""
        from mmfer.audio.io import VIDEO_SUFFIXES, is_audio_path
        from mmfer.video.io import NoVideoTrack

        p = Path(path)
        if p.suffix.lower() in VIDEO_SUFFIXES:
            try:
                return self.analyze_video(p)
            except NoVideoTrack:
                return self.analyze_audio(p)  # an audio-only container
        if is_audio_path(p):
            return self.analyze_audio(p)
        from mmfer.io.images import load_image

        return self.analyze_image(load_image(p), str(p))

    def _scene_probs(self, a: Analysis, images_bgr: list[np.ndarray], boxes: list[list[Any]]) -> None:
        b = self._branch("scene")
        if not b.available:
            a.skipped["scene"] = b.reason or "unavailable"
            return
        enc, classify = b.obj
        with _Timer(a.timings_ms, "scene"):
            emb = enc.embed_images([np.ascontiguousarray(i[:, :, ::-1]) for i in images_bgr], boxes)
            a.branches["scene"] = np.asarray(classify(emb), np.float64).mean(0)
        a.models["scene"] = b.model

    def _fuse(self, a: Analysis) -> None:
        a.notes += [n for n in self.fusion_notes if n not in a.notes]
        if a.branches:
            with _Timer(a.timings_ms, "fusion"):
                a.fused = self.fusion.fuse(a.branches)

    def analyze_image(self, image_bgr: np.ndarray, source: str = "<image>") -> Analysis:
        """Every face (with face + scene fused per face); the main (largest) face's fusion is the result."""
        a = Analysis(source, "image", image=image_bgr)
        rec = self.face
        with _Timer(a.timings_ms, "face"):
            faces = rec.predict_image(image_bgr)
        a.models["face"] = rec.card.get("name", "face")
        self._scene_probs(a, [image_bgr], [[f.box for f in faces]])
        scene = a.branches.get("scene")
        for i, f in enumerate(faces):
            fused = self.fusion.fuse({"face": _vector(f.probabilities), "scene": scene})
            a.faces.append({"index": i, **f.to_dict(), "fused": fused.to_dict()})
        if faces:
            main = max(faces, key=lambda f: f.box[2] * f.box[3] if f.box else 0)
            a.branches = {"face": _vector(main.probabilities), **a.branches}
            if len(faces) > 1:
                a.notes.append(f"{len(faces)} faces: the result is the largest one's; every face has its own")
        else:
            a.skipped["face"] = "no face found"
        for m in ("temporal", "audio"):
            a.skipped[m] = "not in a still image"
        self._fuse(a)
        return a

    def analyze_audio(self, path: str | Path) -> Analysis:
        a = Analysis(str(path), "audio")
        self._audio_into(a, path)
        for m in ("face", "temporal", "scene"):
            a.skipped[m] = "not in an audio clip"
        self._fuse(a)
        return a

    def _audio_into(self, a: Analysis, path: str | Path) -> None:
        from mmfer.audio.io import AudioLoadError

        b = self._branch("audio")
        if not b.available:
            a.skipped["audio"] = b.reason or "unavailable"
            return
        with _Timer(a.timings_ms, "audio"):
            try:
                pred = b.obj.predict_file(path)
            except AudioLoadError as exc:
                if a.kind == "audio":
                    raise
                a.skipped["audio"] = str(exc).split(": ", 1)[-1]
                return
        a.audio = pred
        if pred.emotion is None:
            a.skipped["audio"] = "; ".join(pred.notes) or "nothing to classify"
            return
        a.branches["audio"] = _vector(pred.canonical)
        a.models["audio"] = b.model
        a.notes += [f"audio: {n}" for n in pred.notes]

    def analyze_video(self, path: str | Path) -> Analysis:
        """Face timeline (its clip mean is the face term), temporal head, audio track, scene on key frames."""
        from mmfer.video.io import VideoReader
        from mmfer.video.timeline import video_timeline

        a = Analysis(str(path), "video")
        info = VideoReader(path, sample_fps=self.sample_fps).info  # header only; raises VideoLoadError
        if self.max_video_s and info.duration_s and info.duration_s > self.max_video_s:
            from mmfer.video.io import VideoLoadError

            raise VideoLoadError(f"{path}: {info.duration_s:.0f} s is longer than the {self.max_video_s:.0f} s "
                                 "allowed here")
        t = self._branch("temporal")
        with _Timer(a.timings_ms, "face+temporal"):
            tl = video_timeline(path, self.face, self.sample_fps, temporal=t.obj if t.available else None,
                                key_frames=self.key_frames)
        a.timeline = tl
        a.notes += tl.notes
        a.models["face"] = self.face.card.get("name", "face")
        if tl.summary is not None:
            a.branches["face"] = _vector(tl.summary)
        else:
            a.skipped["face"] = "no face found in any sampled frame"
        if tl.temporal:
            a.branches["temporal"] = _vector(tl.temporal["probabilities"])
            a.models["temporal"] = t.model
        else:
            a.skipped["temporal"] = t.reason if not t.available else "no face to follow"
        if tl.info.has_audio:
            self._audio_into(a, path)
        else:
            a.skipped["audio"] = "the video has no audio track"
        if tl.key_frames:
            self._scene_probs(a, [k.image for k in tl.key_frames], [k.boxes for k in tl.key_frames])
        else:
            a.skipped["scene"] = "no frames"
        self._fuse(a)
        return a


def _backend(obj: Any) -> str:
    """transformers or mmfer/open_clip: which library a loaded branch runs on."""
    enc = obj[0] if isinstance(obj, tuple) and obj and hasattr(obj[0], "embed_images") else obj
    if type(enc).__module__.startswith("mmfer.hf") or getattr(enc, "card", {}).get("backend") == "transformers":
        return "transformers"
    if hasattr(enc, "embed_images"):
        return "open_clip"
    model = getattr(enc, "model", None)
    return "mmfer + transformers encoder" if getattr(model, "takes_waveform", False) else "mmfer"


class _Unavailable(RuntimeError):
    """A branch that cannot be loaded here; the message says why."""
