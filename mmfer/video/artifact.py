"""The shipped temporal head: safetensors + card, loaded without unpickling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmfer.config import ConfigError, FaceTrainCfg, VideoTrainCfg, from_dict
from mmfer.core.artifact import load_weights, read_card, resolve_model_dir, weights_digest
from mmfer.core.errors import ModelLoadError
from mmfer.face.models import create_model
from mmfer.video.models import FineTunedTemporalNet, TemporalEmotionNet, create_temporal_model

DEFAULT_VIDEO_MODEL = "video_bigru_ckplus"


def load_video_model(name_or_path: str | Path | None = None
                     ) -> tuple[TemporalEmotionNet | FineTunedTemporalNet, dict[str, Any], VideoTrainCfg]:
    """A temporal head (safetensors + card); a fine-tuned one brings its own face CNN."""
    model_dir = resolve_model_dir(name_or_path, DEFAULT_VIDEO_MODEL)
    card = read_card(model_dir, kind="video")
    try:
        cfg = from_dict(VideoTrainCfg, card["config"])
        frames = None
        if cfg.model.finetune:  # the card carries the face CNN's config; its weights are in this file
            fcfg = from_dict(FaceTrainCfg, card["frames"]["config"])
            fcfg.model.pretrained, fcfg.model.init_from = False, None
            frames = create_model(fcfg.model, fcfg.data.image_size)
        model = create_temporal_model(cfg.model, int(card["feat_dim"]), frames)
    except (ConfigError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{model_dir / 'card.json'}: {exc}") from None
    load_weights(model, model_dir / "model.safetensors")
    card["_dir"] = str(model_dir)
    return model.eval(), card, cfg


def check_face_model(video_card: dict[str, Any], wanted: str, face_card: dict[str, Any]) -> None:
    """A frozen-CNN head only understands the embeddings of the exact face weights it was trained on."""
    if wanted != face_card.get("name"):
        raise ModelLoadError(f"temporal model {video_card['name']} reads {wanted} embeddings, but the face model is "
                             f"{face_card.get('name')}")
    want = video_card.get("face_model", {}).get("weights_sha256")
    if want and face_card.get("_dir") and (have := weights_digest(face_card["_dir"])) != want:
        raise ModelLoadError(f"temporal model {video_card['name']} was trained on {wanted} weights {want}, but "
                             f"{face_card['_dir']} holds weights {have}: retrain it (mmfer train video)")
