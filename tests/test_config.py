from pathlib import Path

import pytest

from mmfer.config import ConfigError, FaceTrainCfg, load_config, to_dict
from mmfer.face.models import create_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("face_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_build(path):
    cfg = load_config(path)
    cfg.model.pretrained = False
    model = create_model(cfg.model, cfg.data.image_size)
    assert model.head.out_features == 7
    assert load_config(path) == load_config(path)  # pure data, no state


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  arch: lite0\n  dropout: 0.3\n")
    with pytest.raises(ConfigError, match=r"model\.dropout"):
        load_config(p)


def test_wrong_type_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("trainer:\n  epochs: ten\n")
    with pytest.raises(ConfigError, match=r"trainer\.epochs.*integer"):
        load_config(p)
    p.write_text("optim:\n  lr: true\n")
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        load_config(p)


def test_overrides_and_round_trip(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\n")
    cfg = load_config(p, overrides=["trainer.epochs=3", "augment.crop_scale=[0.7, 1.0]"])
    assert cfg.trainer.epochs == 3 and cfg.augment.crop_scale == (0.7, 1.0)
    from mmfer.config import from_dict

    assert from_dict(FaceTrainCfg, to_dict(cfg)) == cfg


def test_unknown_arch_and_missing_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  arch: resnet9000\n")
    cfg = load_config(p)
    with pytest.raises(ValueError, match="resnet9000"):
        create_model(cfg.model, 48)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


ALL_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.name)
def test_every_recipe_validates_against_its_schema(path):
    from mmfer.config import AudioTrainCfg, SceneTrainCfg, VideoTrainCfg

    cls = {"face": FaceTrainCfg, "audio": AudioTrainCfg, "video": VideoTrainCfg, "scene": SceneTrainCfg}[
        path.name.split("_")[0]]
    cfg = load_config(path, cls)
    assert isinstance(cfg, cls) and to_dict(cfg)["name"]
