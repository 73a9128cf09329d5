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
    from mmfer.config import AudioTrainCfg, FusionTrainCfg, SceneTrainCfg, VideoTrainCfg, read_yaml

    kind = path.name.split("_")[0]
    if kind == "fusion" and read_yaml(path).get("method") == "embedding_head":  # the other fusion schema
        from mmfer.training.train_fusion_head import HeadTrainCfg, fusion_config

        assert isinstance(fusion_config(path), HeadTrainCfg)
        return
    cls = {"face": FaceTrainCfg, "audio": AudioTrainCfg, "video": VideoTrainCfg, "scene": SceneTrainCfg,
           "fusion": FusionTrainCfg}[kind]
    cfg = load_config(path, cls)
    assert isinstance(cfg, cls) and to_dict(cfg)["name"]


def _bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_alias_bombs_are_refused_at_once(tmp_path):
    import time

    p = tmp_path / "bomb.yaml"
    p.write_text(_bomb() + "name: *a9\n")
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="more than 100,000 values through YAML aliases"):
        load_config(p)
    assert time.perf_counter() - t < 2
    small = tmp_path / "small.yaml"  # aliases that expand to little are fine, and a wrong type is quoted briefly
    small.write_text(_bomb(2) + "augment:\n  crop_scale: *a2\n")
    with pytest.raises(ConfigError, match="unknown config key 'a0'"):
        load_config(small)
    from mmfer.config import _check_type

    nested = [[[[[list(range(1000))]]]]]
    with pytest.raises(ConfigError) as info:
        _check_type(nested, tuple[float, float], "augment.crop_scale")
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("body", ['!!python/object/apply:os.system ["touch {canary}"]',
                                  '!!python/object/new:subprocess.Popen [["touch", "{canary}"]]',
                                  "!!python/name:os.system"])
def test_python_tags_never_run(tmp_path, body):
    canary = tmp_path / "ran"
    p = tmp_path / "evil.yaml"
    p.write_text("name: " + body.format(canary=canary) + "\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml: not valid YAML \(could not determine a constructor"):
        load_config(p)
    assert not canary.exists()


@pytest.mark.parametrize(("content", "match"), [
    (b"name: caf\xe9\n", "not a text file"),
    (b"name: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply|not valid YAML"),
    (b"optim:\n  lr: .nan\n", "optim.lr: expected a finite number, got nan"),
    (b"1: one\nname: x\n", "unknown config key '1'"),
    (b"- a\n- b\n", "top level must be a mapping"),
    (b"name: " + b"x" * (2 << 20) + b"\n", "too large for a config file"),
])
def test_hostile_yaml_is_one_clear_error(tmp_path, content, match):
    p = tmp_path / "c.yaml"
    p.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(p)
    assert str(info.value).startswith(str(p)) and "\n" not in str(info.value)


def test_overrides_that_do_not_fit_are_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"override 'name.sub=1': name is a value, not a section"):
        load_config(p, overrides=["name.sub=1"])
    with pytest.raises(ConfigError, match=r"override 'trainer.epochs=\[\[': not valid YAML"):
        load_config(p, overrides=["trainer.epochs=[["])
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
