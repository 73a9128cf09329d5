"""One registry of branches, keyed by (modality, backend).

A spec names a model: a shipped name (``face_lite0``), a folder with ``card.json``, a hub id
(``org/name@rev``), an ``hf:`` id, a ``save_pretrained`` folder, or an open_clip model name. Which
backend reads it is decided here and nowhere else (:func:`backend_for`); :func:`create_branch`
builds the branch, :func:`list_branches` says what is registered (``mmfer models``).

>>> face = create_branch("face", "face_lite0", yunet_model="yunet.onnx")
>>> out = face.predict(bgr_image)           # BranchOutput: canonical probs, faces in details
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.audio.predictor import AudioEmotionRecognizer
from mmfer.branches.audio import AudioBranch
from mmfer.branches.base import MODALITIES, Branch
from mmfer.branches.face import FaceBranch
from mmfer.branches.scene import SceneBranch, SceneClassifier
from mmfer.branches.temporal import TemporalBranch
from mmfer.core.errors import ModelLoadError
from mmfer.core.hub import HF_PREFIX, is_hf_spec, parse_spec
from mmfer.face.artifact import DEFAULT_FACE_MODEL
from mmfer.face.predictor import FaceEmotionRecognizer
from mmfer.hf.audio import HFAudioRecognizer
from mmfer.hf.clip_scene import HFClipSceneEncoder
from mmfer.hf.image import HFFaceRecognizer
from mmfer.paths import DEFAULT_AUDIO_MODEL
from mmfer.scene.clip_encoder import ClipSceneEncoder, default_clip_spec
from mmfer.scene.probe import load_probe
from mmfer.scene.zero_shot import ZeroShotSceneClassifier
from mmfer.video.artifact import DEFAULT_VIDEO_MODEL, check_face_model, load_video_model


@dataclasses.dataclass(frozen=True)
class BranchEntry:
    modality: str
    backend: str
    build: Callable[..., Branch]
    specs: str  # what names this backend reads, for `mmfer models`
    default: str | None = None


_ENTRIES: dict[tuple[str, str], BranchEntry] = {}


def register_branch(modality: str, backend: str, specs: str, default: str | None = None
                    ) -> Callable[[Callable[..., Branch]], Callable[..., Branch]]:
    """Register a builder ``build(spec, **options) -> Branch`` for (modality, backend)."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")

    def deco(fn: Callable[..., Branch]) -> Callable[..., Branch]:
        _ENTRIES[(modality, backend)] = BranchEntry(modality, backend, fn, specs, default)
        return fn

    return deco


def backend_for(modality: str, spec: str | Path | None) -> str:
    """Which backend reads ``spec`` for ``modality`` (the one place model names are interpreted)."""
    if modality in ("face", "audio"):
        _check_folder(spec)
        return "transformers" if is_hf_spec(spec) else "mmfer"
    if modality == "scene":
        return "transformers" if str(spec or "").startswith(HF_PREFIX) else "open_clip"
    if modality == "temporal":
        return "mmfer"
    raise ValueError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")


def create_branch(modality: str, spec: str | Path | None = None, **options: Any) -> Branch:
    """Build the branch that reads ``spec`` (None: the shipped default). Raises ModelLoadError (and, for
    scene, SceneEncoderUnavailable / ProbeError) with a one-line reason."""
    backend = backend_for(modality, spec)
    return _ENTRIES[(modality, backend)].build(spec, **options)


def list_branches() -> list[BranchEntry]:
    return [_ENTRIES[k] for k in sorted(_ENTRIES, key=lambda k: (MODALITIES.index(k[0]), k[1]))]


def _check_folder(name: str | Path | None) -> None:
    """A folder that is neither kind of model gets one message naming both layouts."""
    if name is None:
        return
    p = Path(name).expanduser()
    if p.is_dir() and not (p / "card.json").is_file() and not (p / "config.json").is_file():
        raise ModelLoadError(f"{name}: not a model folder: no card.json (an mmfer model) and no config.json "
                             "(a transformers checkpoint)")


def _hf(spec: str | Path, local_files_only: bool, trust_remote_code: bool) -> Any:
    return parse_spec(spec, local_files_only=local_files_only, trust_remote_code=trust_remote_code)


# -- face ------------------------------------------------------------------------------------------

@register_branch("face", "mmfer", "a shipped name or a folder with model.safetensors + card.json", DEFAULT_FACE_MODEL)
def _face_mmfer(spec: str | Path | None, detector: Any = "auto", device: str = "auto", tta_flip: bool | None = None,
                yunet_model: str | Path | None = None, **_: Any) -> FaceBranch:
    return FaceBranch(FaceEmotionRecognizer(spec, detector=detector, device=device, tta_flip=tta_flip,
                                            yunet_model=yunet_model), "mmfer")


@register_branch("face", "transformers", "a hub id (org/name[@rev]), hf:<id> or a save_pretrained folder")
def _face_hf(spec: str | Path, detector: Any = "auto", device: str = "auto", tta_flip: bool | None = None,
             yunet_model: str | Path | None = None, local_files_only: bool = False, trust_remote_code: bool = False,
             **_: Any) -> FaceBranch:
    rec = HFFaceRecognizer(_hf(spec, local_files_only, trust_remote_code), detector=detector, device=device,
                           tta_flip=bool(tta_flip), yunet_model=yunet_model)
    return FaceBranch(rec, "transformers")


# -- audio -----------------------------------------------------------------------------------------

@register_branch("audio", "mmfer", "a shipped name or a folder with model.safetensors + card.json (including "
                 "heads on a transformers speech encoder)", DEFAULT_AUDIO_MODEL)
def _audio_mmfer(spec: str | Path | None, device: str = "auto", **_: Any) -> AudioBranch:
    rec = AudioEmotionRecognizer(spec, device=device)
    takes_wave = getattr(rec.model, "takes_waveform", False)
    return AudioBranch(rec, "mmfer + transformers encoder" if takes_wave else "mmfer")


@register_branch("audio", "transformers", "a hub id (org/name[@rev]), hf:<id> or a save_pretrained folder")
def _audio_hf(spec: str | Path, device: str = "auto", local_files_only: bool = False, trust_remote_code: bool = False,
              **_: Any) -> AudioBranch:
    return AudioBranch(HFAudioRecognizer(_hf(spec, local_files_only, trust_remote_code), device=device), "transformers")


# -- temporal --------------------------------------------------------------------------------------

@register_branch("temporal", "mmfer", "a shipped name or a folder with model.safetensors + card.json (kind video)",
                 DEFAULT_VIDEO_MODEL)
def _temporal_mmfer(spec: str | Path | None, face: FaceBranch | None = None, **_: Any) -> TemporalBranch:
    """A frozen-CNN head is checked against the face model's weights here, once, when it loads."""
    loaded = load_video_model(spec)
    branch = TemporalBranch(loaded)
    if not branch.finetuned and face is not None:
        check_face_model(branch.card, branch.cfg.data.face_model or DEFAULT_FACE_MODEL, face.card)
    return branch


# -- scene -----------------------------------------------------------------------------------------

def load_scene_classifier(clip_model: str | None = None, clip_pretrained: str | None = None,
                          probe: str | Path | None = None, prompts: str | Path | None = None,
                          device: str = "auto", local_only: bool | None = None) -> SceneClassifier:
    """CLIP weights: the explicit arguments, else the probe card's, else $MMFER_CLIP_* / the defaults;
    downloaded on first use unless ``local_only`` (None: offline mode from the environment).
    Raises SceneEncoderUnavailable (with what to do) and, for a bad probe folder, ProbeError."""
    default_model, default_pretrained = default_clip_spec()
    net = None
    if probe:
        net, card = load_probe(probe)
        default_model, default_pretrained = card["clip"]["model"], card["clip"]["pretrained"]
    model, pretrained = clip_model or default_model, clip_pretrained or default_pretrained
    enc = clip_encoder(model, pretrained, device, local_only)
    pretrained = enc.pretrained
    named = model if pretrained is None else f"{model}/{pretrained}"
    if net is not None:
        import torch

        def scores(emb: Any) -> np.ndarray:
            with torch.no_grad():
                return net(emb).softmax(-1).numpy()

        return SceneClassifier(enc, scores, f"{named} + probe {Path(probe).name}", model, pretrained)
    return SceneClassifier(enc, ZeroShotSceneClassifier(enc, prompts).scores, f"{named} zero-shot", model, pretrained)


def clip_encoder(model: str, pretrained: str | None, device: str = "auto", local_only: bool | None = None) -> Any:
    """An open_clip encoder, or for ``hf:<id or dir>`` names the transformers CLIPModel backend; weights are
    downloaded on first use unless ``local_only`` (None: offline mode from the environment)."""
    if backend_for("scene", model) == "transformers":
        return HFClipSceneEncoder(model, device=device, local_only=bool(local_only))  # parse_spec adds the env
    return ClipSceneEncoder(model, pretrained, device=device, local_only=local_only)


def _scene_branch(spec: str | None, backend: str, clip_pretrained: str | None = None,
                  probe: str | Path | None = None, prompts: str | Path | None = None, device: str = "auto",
                  local_only: bool | None = None, **_: Any) -> SceneBranch:
    return SceneBranch(load_scene_classifier(spec, clip_pretrained, probe, prompts, device, local_only), backend)


@register_branch("scene", "open_clip", "an open_clip model name (ViT-B-32) with --clip-pretrained (a tag or a "
                 "file), or a trained probe folder", "ViT-B-32")
def _scene_open_clip(spec: str | None, **options: Any) -> SceneBranch:
    return _scene_branch(spec, "open_clip", **options)


@register_branch("scene", "transformers", "hf:<hub id or save_pretrained folder> of a CLIPModel")
def _scene_hf(spec: str, **options: Any) -> SceneBranch:
    return _scene_branch(spec, "transformers", **options)
