"""A short real training run on a FER-2013 subset: it must learn, export, resume and be loadable."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from conftest import REPO, SHARED_DATA, needs_fer
from mmfer.cli.main import main as cli
from mmfer.config import FaceTrainCfg, load_config
from mmfer.data.fer2013 import load_fer2013
from mmfer.emotions import EMOTIONS
from mmfer.evaluation.face_eval import evaluate_face
from mmfer.face.artifact import load_face_model
from mmfer.training.train_face import train_face

SMOKE = REPO / "configs" / "face_smoke.yaml"


def smoke_cfg(**extra: str) -> FaceTrainCfg:
    overrides = [f"data.root={SHARED_DATA}", "trainer.threads=2", *[f"{k}={v}" for k, v in extra.items()]]
    return load_config(SMOKE, FaceTrainCfg, overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    if not (SHARED_DATA / "fer2013").is_dir():
        pytest.skip(f"FER-2013 not found under {SHARED_DATA}")
    out = tmp_path_factory.mktemp("run")
    metrics = train_face(smoke_cfg(), out)
    return out, metrics


@needs_fer
def test_short_run_beats_the_majority_class(trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = trained
    rep = evaluate_face(out / "model", split="PublicTest", data_root=SHARED_DATA, limit=1500,
                        out_dir=tmp_path / "report")
    y = load_fer2013("PublicTest", SHARED_DATA).labels[:1500]
    majority = np.bincount(y).max() / len(y)
    # 3 epochs on 3,000 faces: far from the full model, but well clear of always saying "happy".
    assert rep["accuracy"] > majority + 0.05, (rep["accuracy"], majority)
    assert rep["macro_f1"] > 1 / 7


@needs_fer
def test_export_carries_config_classes_preprocessing_metrics_and_data_hash(trained: tuple[Path, dict]) -> None:
    out, metrics = trained
    card = json.loads((out / "model" / "card.json").read_text())
    assert card["classes"] == list(EMOTIONS)
    assert card["config"]["model"]["arch"] == "lite0" and card["config"]["data"]["limit_train"] == 3000
    assert card["preprocessing"]["network_input_size"] == 48
    assert len(card["data_hash"]) == 64
    assert 0.25 < card["metrics"]["PublicTest"]["accuracy"] <= 1
    assert card["metrics"] == metrics
    weights = load_file(out / "model" / "model.safetensors")
    model, _ = load_face_model(out / "model")
    assert set(weights) == set(model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    # The selected checkpoint is the best PublicTest epoch, and every epoch left a resumable checkpoint.
    rows = list(csv.DictReader((out / "logs" / "version_0" / "metrics.csv").open()))
    val = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert len(val) == 3 and card["metrics"]["PublicTest"]["accuracy"] == pytest.approx(max(val), abs=1e-6)
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "best.ckpt").is_file()


@needs_fer
def test_exported_model_reloads_and_predicts(trained: tuple[Path, dict]) -> None:
    out, _ = trained
    model, card = load_face_model(out / "model")
    faces = load_fer2013("PrivateTest", SHARED_DATA).images[:8]
    from mmfer.evaluation.face_eval import predict_probs

    p = predict_probs(model, faces)
    assert p.shape == (8, 7) and np.allclose(p.sum(1), 1, atol=1e-5)


@needs_fer
def test_resume_continues_from_the_last_checkpoint(trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = trained
    # Same run folder, one more epoch: training must pick up at epoch 3, not start over.
    metrics = train_face(smoke_cfg(**{"trainer.epochs": "4"}), out)
    assert metrics["epochs_run"] == 4

    def val_epochs(version: int) -> list[int]:
        rows = csv.DictReader((out / "logs" / f"version_{version}" / "metrics.csv").open())
        return sorted({int(r["epoch"]) for r in rows if r.get("val/acc")})

    # The continuation logs to a new version: the first call's history is kept, not overwritten.
    assert val_epochs(0) == [0, 1, 2] and val_epochs(1) == [3]
    assert metrics["train_seconds_this_call"] < trained[1]["train_seconds_this_call"]


@needs_fer
def test_default_cpu_recipe_runs_one_batch(tmp_path: Path) -> None:
    # The shipped recipe (pretrained EfficientNet-Lite0 at 64 px) goes through a real train+val step.
    code = cli(["train", "face", "--config", str(REPO / "configs" / "face_lite0_cpu.yaml"), "--fast-dev-run",
                "--out", str(tmp_path / "run"), "--data-root", str(SHARED_DATA), "--set", "data.limit_train=256",
                "--set", "data.limit_val=128", "--set", "trainer.batch_size=16"])
    assert code == 0


def test_every_recipe_in_configs_is_valid() -> None:
    for path in sorted((REPO / "configs").glob("face_*.yaml")):
        cfg = load_config(path, FaceTrainCfg)
        assert cfg.name and cfg.model.num_classes == len(EMOTIONS), path.name


def test_unknown_config_key_is_rejected_by_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntrainer:\n  epocs: 3\n")
    assert cli(["train", "face", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "trainer.epocs" in err and "bad.yaml" in err


def test_wrong_type_in_override_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(["train", "face", "--config", str(SMOKE), "--set", "trainer.batch_size=big"]) == 2
    assert "trainer.batch_size" in capsys.readouterr().err


def test_a_second_stage_starts_from_a_trained_model(tmp_path: Path) -> None:
    import torch

    from mmfer.config import ModelCfg
    from mmfer.face.artifact import ModelLoadError, save_face_model
    from mmfer.face.models import create_model
    from mmfer.training.face_module import FaceClassifier

    first = FaceTrainCfg(name="stage1", model=ModelCfg(arch="tiny", pretrained=False))
    first.data.image_size = 48
    torch.manual_seed(3)
    net = create_model(first.model, 48)
    save_face_model(net, first, tmp_path / "stage1", {"PublicTest": {"accuracy": 0.5}}, "hash1")
    stage1 = str(tmp_path / "stage1")
    second = FaceTrainCfg(name="stage2", model=ModelCfg(arch="tiny", pretrained=False, init_from=stage1))
    second.data.image_size = 48
    system = FaceClassifier(second)
    for k, v in net.state_dict().items():
        assert torch.equal(system.model.state_dict()[k], v), k
    assert system.init_card["name"] == "stage1" and system.init_card["data_hash"] == "hash1"
    second.data.image_size = 64  # a different input size is a different model: refused, with the reason
    with pytest.raises(ModelLoadError, match="image_size"):
        FaceClassifier(second)


@needs_fer
def test_weight_averaging_validates_the_average_after_the_last_epoch(tmp_path: Path) -> None:
    cfg = smoke_cfg(**{"model.arch": "tiny", "model.pretrained": "false", "data.limit_train": "512",
                       "data.limit_val": "256", "trainer.epochs": "2", "optim.swa_start_epoch": "0",
                       "optim.swa_lr": "0.0005", "optim.warmup_epochs": "0"})
    metrics = train_face(cfg, tmp_path)
    rows = list(csv.DictReader((tmp_path / "logs" / "version_0" / "metrics.csv").open()))
    # Epoch 2 is Lightning's extra pass: BatchNorm statistics for the averaged weights, then their validation.
    assert sorted({int(r["epoch"]) for r in rows if r.get("val/acc")}) == [0, 1, 2]
    lrs = [float(v) for r in rows for k, v in r.items() if k.startswith("lr-") and v]
    assert lrs and lrs[-1] == pytest.approx(0.0005)  # the constant averaging rate replaced the cosine
    assert metrics["swa"]["snapshots_averaged"] == 2
    assert metrics["swa"]["selected_average"] == (metrics["best_epoch"] == 2)
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    assert card["metrics"]["swa"] == metrics["swa"] and card["config"]["optim"]["swa_start_epoch"] == 0


def test_bad_swa_or_tta_settings_are_rejected_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def train(*sets: str) -> int:
        return cli(["train", "face", "--config", str(SMOKE), "--out", str(tmp_path / "run"),
                    *[a for s in sets for a in ("--set", s)]])

    assert train("optim.swa_start_epoch=3") == 2  # the smoke recipe runs 3 epochs: 0, 1, 2
    assert "optim.swa_start_epoch" in capsys.readouterr().err
    assert train("optim.swa_start_epoch=0") == 2  # its warmup would hand SWA a learning rate of ~0
    assert "optim.warmup_epochs=0" in capsys.readouterr().err
    assert train("tta_zooms=[0.9,1.2]") == 2
    assert "tta_zooms" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
