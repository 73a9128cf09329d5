"""Speech emotion recognition on a user's recordings: the public API of the audio branch.

>>> rec = AudioEmotionRecognizer()                # the shipped audio_crnn model
>>> pred = rec.predict_file("clip.wav")           # any format; video files: their audio track
>>> pred.emotion, pred.probabilities, pred.notes

Files up to ``single_pass_s`` long are scored whole (after trimming silence). Longer files are
streamed in windows (memory stays flat for hours of audio): each window with enough sound is
scored, the file's probabilities are the average weighted by each window's sound, and
``pred.windows`` is the timeline. Problems that do not stop a prediction (clipping, a DC offset,
a dead channel, narrow-band audio, very short or almost silent clips) are listed in ``notes``,
and the ones that make it less trustworthy set ``low_confidence``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmfer.audio.artifact import load_audio_model
from mmfer.audio.feature_table import feature_matrix
from mmfer.audio.features import FeatureExtractor, active_seconds
from mmfer.audio.io import SAMPLE_RATE, AudioClip, AudioSource, AudioTooLong, iter_windows, load_audio
from mmfer.audio.models import TIME_STRIDE, SpeechEmotionNet
from mmfer.audio.speech_encoder import SpeechEncoderNet
from mmfer.emotions import fold_to_canonical

MIN_SPEECH_S = 0.5
MIN_CLIP_S = 0.25  # shorter clips are not scored: a quarter second carries no reliable vocal emotion
MIN_FRAMES = 4 * TIME_STRIDE  # feature frames the CNN needs; a shorter trimmed clip is edge-padded
SILENT = "silent: no speech or sound to classify"
SILENCE_PEAK = 10 ** (-60 / 20)  # a file whose loudest sample is under -60 dBFS holds no usable sound
LOW_CONFIDENCE = 0.35
_DEGRADING = ("clipped", "recorded at", "too short", "truncated", "little sound")


@dataclasses.dataclass
class AudioPrediction:
    """One file's (or array's) result. ``emotion`` is None when there was nothing to classify."""

    source: str
    emotion: str | None
    confidence: float | None
    probabilities: dict[str, float]  # over the model's classes (8 for RAVDESS models: calm included)
    duration_s: float
    speech_s: float
    low_confidence: bool
    notes: list[str]
    windows: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def canonical(self) -> dict[str, float]:
        """Probabilities over the 7 canonical emotions (calm folded into neutral)."""
        return fold_to_canonical(self.probabilities) if self.probabilities else {}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["canonical"] = {k: round(v, 4) for k, v in self.canonical.items()}
        d["probabilities"] = {k: round(v, 4) for k, v in self.probabilities.items()}
        d["duration_s"], d["speech_s"] = round(self.duration_s, 3), round(self.speech_s, 3)
        if self.confidence is not None:
            d["confidence"] = round(self.confidence, 4)
        return d


class AudioEmotionRecognizer:
    """Load an audio model once; predict on arrays, files and folders."""

    def __init__(self, model: str | Path | None = None, device: str = "auto", window_s: float = 4.0,
                 single_pass_s: float = 10.0):
        dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        self.device = torch.device(dev)
        self.model, self.card, self.cfg = load_audio_model(model, self.device)
        self.classes: tuple[str, ...] = tuple(self.card["classes"])
        self.features = FeatureExtractor(self.cfg.features, self.device)
        self.window_s, self.single_pass_s = window_s, single_pass_s

    @torch.no_grad()
    def _score(self, samples: np.ndarray, notes: list[str] | None = None
               ) -> tuple[np.ndarray | None, float, str | None]:
        """Class probabilities and seconds of sound of one clip, or None and why it was not scored.
        What the scorer notices is appended to ``notes``: this call's own list, never the instance's
        (one recognizer serves concurrent requests)."""
        if samples.size < MIN_CLIP_S * SAMPLE_RATE:
            return None, 0.0, (f"too short to score: {samples.size / SAMPLE_RATE:.2f} s of audio (at least "
                               f"{MIN_CLIP_S} s is needed)")
        if float(np.abs(samples).max()) < SILENCE_PEAK:
            return None, 0.0, SILENT
        probs, speech = self._classify(samples, [] if notes is None else notes)
        return probs, speech, None if probs is not None else SILENT

    def _inputs(self, samples: np.ndarray) -> tuple[torch.Tensor | None, float]:
        """A clip -> the model's input batch of one and its seconds of sound (None when nothing is left)."""
        if getattr(self.model, "takes_waveform", False):  # a transformers encoder (mmfer.audio.speech_encoder)
            x = torch.from_numpy(self.model.prepare(samples))[None, None].to(self.device)
            return x, active_seconds(samples, self.cfg.features.silence_db)
        feats = self.features(samples)
        if feats.active_s <= 0:
            return None, 0.0
        x = feature_matrix(feats, self.cfg.features.cmvn)[None].to(self.device)
        if x.shape[-1] < MIN_FRAMES:  # a click in a quiet clip trims to a few frames
            x = torch.nn.functional.pad(x, (0, MIN_FRAMES - x.shape[-1]), mode="replicate")
        return x, feats.active_s

    def _classify(self, samples: np.ndarray, notes: list[str]) -> tuple[np.ndarray | None, float]:
        """A clip with sound -> probabilities over ``classes`` and its seconds of sound; subclasses append
        what they notice (e.g. probability lost to unmapped labels) to this call's ``notes``."""
        x, sound = self._inputs(samples)
        if x is None:
            return None, 0.0
        return self.model(x).float().softmax(1)[0].cpu().numpy(), sound

    # -- embeddings (for heads trained on top of this model, e.g. the embedding fusion head) -----------

    @property
    def embedding_dim(self) -> int | None:
        """Size of :meth:`embed_samples` vectors; None when the model exposes no embedding."""
        if isinstance(self.model, SpeechEmotionNet):
            return int(self.model.cfg.embed_dim)
        if isinstance(self.model, SpeechEncoderNet):
            return int(self.model.dim)
        return None

    @torch.no_grad()
    def _embed(self, samples: np.ndarray) -> tuple[np.ndarray | None, float]:
        """One clip's penultimate embedding (what the classifier head reads) and its seconds of sound."""
        if self.embedding_dim is None:
            raise ValueError(f"audio model {self.card.get('name')}: exposes no embedding (only mmfer audio models "
                             "and heads on a speech encoder do)")
        if samples.size < MIN_CLIP_S * SAMPLE_RATE or float(np.abs(samples).max()) < SILENCE_PEAK:
            return None, 0.0  # the same clips predict() refuses to score
        x, sound = self._inputs(samples)
        if x is None:
            return None, 0.0
        out = self.model.embed(x)
        emb = out[0] if isinstance(out, tuple) else out  # the CRNN also returns its attention weights
        return emb.float()[0].cpu().numpy(), sound

    def embed_samples(self, samples: np.ndarray) -> np.ndarray | None:
        """16 kHz mono samples -> (embedding_dim,) float32 embedding, or None when there is no sound to embed."""
        return self._embed(np.asarray(samples, np.float32).reshape(-1))[0]

    def embed_file(self, path: str | Path | AudioSource) -> np.ndarray | None:
        """A file's (or a video's audio track's) embedding: whole when short, else the mean of its windows'
        embeddings weighted by their seconds of sound (as :meth:`predict_file` weights probabilities).
        None when nothing in it has sound; raises AudioLoadError for unusable files."""
        src = path if isinstance(path, AudioSource) else AudioSource(path)
        if isinstance(src.duration_s, float) and src.duration_s <= self.single_pass_s:
            try:
                return self.embed_samples(load_audio(src, max_seconds=2 * self.single_pass_s).samples)
            except AudioTooLong:
                src = AudioSource(src.path)
        total, weight = None, 0.0
        for w in iter_windows(src, self.window_s):
            emb, sound = self._embed(w.samples)
            if emb is not None and sound >= MIN_SPEECH_S / 2:
                total, weight = (emb * sound, sound) if total is None else (total + emb * sound, weight + sound)
        return None if total is None else (total / weight).astype(np.float32)

    def _result(self, source: str, probs: np.ndarray | None, duration: float, speech: float, notes: list[str],
                windows: list[dict[str, Any]] | None = None, why: str | None = None,
                scorer_notes: list[str] | None = None) -> AudioPrediction:
        notes = list(notes) + list(dict.fromkeys(scorer_notes or []))  # the scorer's notes, once each
        if probs is None:
            notes.append(why or SILENT)
            return AudioPrediction(source, None, None, {}, duration, 0.0, True, notes, windows or [])
        if speech < MIN_SPEECH_S:
            notes.append(f"too short: {speech:.2f} s of sound (at least {MIN_SPEECH_S} s is needed for a reliable "
                         "estimate)")
        k = int(probs.argmax())
        conf = float(probs[k])
        low = conf < LOW_CONFIDENCE or any(n.startswith(_DEGRADING) for n in notes)
        return AudioPrediction(source, self.classes[k], conf, {c: float(p) for c, p in zip(self.classes, probs,
                                                                                            strict=True)},
                               duration, speech, low, notes, windows or [])

    def predict_samples(self, samples: np.ndarray, source: str = "<array>", notes: list[str] | None = None
                        ) -> AudioPrediction:
        """16 kHz mono float samples -> one prediction (no windowing: pass clips of a few seconds)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if not np.isfinite(samples).all():
            raise ValueError(f"{source}: samples contain NaN or infinity")
        scorer_notes: list[str] = []
        probs, speech, why = self._score(samples, scorer_notes)
        return self._result(source, probs, len(samples) / SAMPLE_RATE, speech, notes or [], why=why,
                            scorer_notes=scorer_notes)

    def predict_clip(self, clip: AudioClip) -> AudioPrediction:
        return self.predict_samples(clip.samples, clip.path, clip.notes)

    def predict_file(self, path: str | Path | AudioSource) -> AudioPrediction:
        """Any audio file, or the audio track of a video, or an opened :class:`~mmfer.audio.io.AudioSource`
        (a track being demuxed with the frames). Raises AudioLoadError for unusable files."""
        src = path if isinstance(path, AudioSource) else AudioSource(path)
        duration = src.duration_s
        if isinstance(duration, float) and duration <= self.single_pass_s:
            try:
                return self.predict_clip(load_audio(src, max_seconds=2 * self.single_pass_s))
            except AudioTooLong:  # the header understated the length, or too many channels: stream it
                src = AudioSource(src.path)  # the first read consumed the stream: this rare case reads it again
        return self._predict_windows(src)

    def _predict_windows(self, path: str | Path | AudioSource) -> AudioPrediction:
        total, weight, speech, end = None, 0.0, 0.0, 0.0
        first_note: dict[str, str] = {}  # one note per kind (clipped, DC, channel...), with its window count
        counts: dict[str, int] = {}
        timeline = []
        first_why = None
        scorer_notes: list[str] = []
        for w in iter_windows(path, self.window_s):
            for n in w.notes:
                kind = n.split(":")[0].split(" ")[0]
                first_note.setdefault(kind, n)
                counts[kind] = counts.get(kind, 0) + 1
            probs, sound, why = self._score(w.samples, scorer_notes)
            first_why = first_why or why
            end = w.offset_s + w.duration_s
            row: dict[str, Any] = {"start_s": round(w.offset_s, 2), "end_s": round(end, 2),
                                   "speech_s": round(sound, 2), "emotion": None}
            if probs is not None and sound >= MIN_SPEECH_S / 2:
                row["emotion"] = self.classes[int(probs.argmax())]
                row["probabilities"] = {c: round(float(p), 4) for c, p in zip(self.classes, probs, strict=True)}
                total = probs * sound if total is None else total + probs * sound
                weight += sound
                speech += sound
            timeline.append(row)
        notes = [n if counts[k] == 1 else f"{n} (in {counts[k]} of {len(timeline)} windows)"
                 for k, n in first_note.items()]
        probs = None if total is None else total / weight
        if probs is not None and speech < 0.1 * end:
            notes.append(f"little sound: {speech:.1f} s of {end:.1f} s")
        source = str(path.path if isinstance(path, AudioSource) else path)
        return self._result(source, probs, end, speech, notes, timeline, why=first_why, scorer_notes=scorer_notes)
