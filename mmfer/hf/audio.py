"""Speech branches built on transformers checkpoints.

* :class:`SpeechEncoderNet` (defined in :mod:`mmfer.audio.speech_encoder`, re-exported here): a
  wav2vec2 / HuBERT / WavLM encoder with a weighted layer sum, pooling and a head, and
  :class:`EncoderTableCodec`, which turns clips into its training-table rows.
* :class:`HFAudioRecognizer`: a ready ``AutoModelForAudioClassification`` emotion checkpoint as
  the audio branch, its ``id2label`` mapped onto mmfer's classes.

Both plug into :class:`~mmfer.audio.predictor.AudioEmotionRecognizer`, so long recordings are
scored in windows (bounded memory) with the same notes, timeline and silence handling as the
native model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmfer.audio.features import active_seconds
from mmfer.audio.io import SAMPLE_RATE, resample
from mmfer.audio.predictor import AudioEmotionRecognizer
from mmfer.audio.speech_encoder import SpeechEncoderNet, encoder_spec
from mmfer.config import AudioModelCfg
from mmfer.core.hub import HFModelError, HFSpec, parse_spec, pretrained, require_modality, resolve
from mmfer.hf.labels import map_labels

__all__ = ["CHUNK_S", "UNMAPPED_NOTE", "EncoderTableCodec", "HFAudioRecognizer", "SpeechEncoderNet", "active_seconds",
           "encoder_spec"]

UNMAPPED_NOTE = 0.2  # note a prediction when this much probability went to labels mmfer cannot use
CHUNK_S = 20.0  # longest stretch the encoder sees at once when caching layer means


class EncoderTableCodec:
    """Turns one clip into the rows of a training table for :class:`SpeechEncoderNet` (see FeatureTable)."""

    def __init__(self, cfg: AudioModelCfg, batch_device: str = "cpu"):
        self.net = SpeechEncoderNet(cfg).to(batch_device).eval()
        self.mode = self.net.cache_mode
        spec = self.net.spec
        stamp: list[Any] = [spec.label, self.mode, self.net.n_layers, self.net.dim]
        if spec.is_local:  # a directory can change under the same name
            for f in sorted(Path(spec.source).expanduser().glob("*")):
                if f.is_file():
                    stamp.append([f.name, f.stat().st_size, int(f.stat().st_mtime)])
        self.key = hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:12]

    @torch.no_grad()
    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = self.net.prepare(samples)
        if self.mode == "waveform":
            return x[:, None]
        # long recordings in chunks (bounded memory): chunk means weighted by their frame counts
        step = int(CHUNK_S * self.net.sampling_rate)
        device = next(iter(self.net.head.parameters())).device
        total, frames = None, 0
        for s in range(0, len(x), step):
            chunk = torch.from_numpy(x[s : s + step])[None].to(device)
            n = int(self.net.backbone._get_feat_extract_output_lengths(torch.tensor(chunk.shape[1])))
            if n < 1:
                continue
            m = self.net.layer_means(chunk)[0].float().cpu() * n
            total, frames = (m, n) if total is None else (total + m, frames + n)
        if total is None:
            raise ValueError(f"a clip of {len(x)} samples is too short for {self.net.spec.label}")
        return (total / frames).numpy()  # (L+1, D) rows


class HFAudioRecognizer(AudioEmotionRecognizer):
    """A ready ``AutoModelForAudioClassification`` checkpoint as the audio branch."""

    def __init__(self, spec: HFSpec | str, device: str = "auto", window_s: float = 4.0, single_pass_s: float = 10.0):
        spec = parse_spec(spec) if isinstance(spec, str) else spec
        config, spec = resolve(spec)
        require_modality(config, "audio", spec)
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.labels = map_labels(config.get("id2label") or {}, spec.label)
        dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        self.device = torch.device(dev)
        self.extractor = pretrained(AutoFeatureExtractor, spec)
        self.model = pretrained(AutoModelForAudioClassification, spec).eval().to(self.device)
        n_out = int(self.model.config.num_labels)
        if n_out != len(self.labels.model_labels):
            raise HFModelError(f"{spec.label}: the head has {n_out} outputs but id2label names "
                               f"{len(self.labels.model_labels)}")
        self.sampling_rate = int(getattr(self.extractor, "sampling_rate", SAMPLE_RATE))
        self.classes = self.labels.classes
        self.spec = spec
        self.card: dict[str, Any] = {
            "kind": "audio", "name": spec.label, "backend": "transformers", "classes": list(self.classes),
            "architecture": type(self.model).__name__, "labels": self.labels.to_dict(),
            "preprocessing": {"processor": type(self.extractor).__name__, "sampling_rate": self.sampling_rate,
                              "window_s": window_s},
        }
        self.window_s, self.single_pass_s = window_s, single_pass_s

    @torch.no_grad()
    def _classify(self, samples: np.ndarray, notes: list[str]) -> tuple[np.ndarray | None, float]:
        x = resample(np.asarray(samples, np.float32), SAMPLE_RATE, self.sampling_rate)
        inputs = self.extractor(x, sampling_rate=self.sampling_rate, return_tensors="pt")
        logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits
        probs, lost = self.labels.convert(logits.float().softmax(-1).cpu().numpy())
        if lost[0] > UNMAPPED_NOTE:
            notes.append(f"{lost[0]:.0%} of the checkpoint's probability went to labels with no mmfer "
                         f"class ({', '.join(self.labels.unmapped)})")
        return probs[0], active_seconds(samples)
