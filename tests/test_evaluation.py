"""Tests for mmfer.evaluation: metrics by hand, report files, TTA prediction, end-to-end face evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from mmfer.config import FaceTrainCfg, ModelCfg
from mmfer.emotions import EMOTIONS
from mmfer.evaluation.face_eval import evaluate_face, predict_probs
from mmfer.evaluation.metrics import aggregate_folds, classification_report
from mmfer.evaluation.report import write_report
from mmfer.face.artifact import save_face_model
from mmfer.face.models import create_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REAL_DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPORT_FILES = ("report.json", "report.md", "confusion.png", "confusion_normalized.png", "roc.png")


def probs_for(pred: list[int], k: int, conf: float = 0.6) -> np.ndarray:
    """Rows with ``conf`` on the predicted class and the rest spread evenly."""
    p = np.full((len(pred), k), (1.0 - conf) / (k - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


# Hand-worked example, classes a, b, c:
#   y_true = a a a b b c, pred = a a b b c c
#   confusion (rows true): a [2 1 0], b [0 1 1], c [0 0 1]
#   precision a 2/2, b 1/2, c 1/2; recall a 2/3, b 1/2, c 1/1; F1 a 0.8, b 0.5, c 2/3
Y_HAND = np.array([0, 0, 0, 1, 1, 2])
PRED_HAND = [0, 0, 1, 1, 2, 2]
CLASSES3 = ("a", "b", "c")


def test_classification_report_by_hand() -> None:
    r = classification_report(Y_HAND, probs_for(PRED_HAND, 3), CLASSES3)
    assert r["n"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion"]["labels"] == ["a", "b", "c"]
    assert r["confusion"]["counts"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert np.allclose(r["confusion"]["normalized"], [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [0, 0, 1]])
    pc = r["per_class"]
    assert [pc[c]["precision"] for c in CLASSES3] == pytest.approx([1.0, 0.5, 0.5])
    assert [pc[c]["recall"] for c in CLASSES3] == pytest.approx([2 / 3, 0.5, 1.0])
    assert [pc[c]["f1"] for c in CLASSES3] == pytest.approx([0.8, 0.5, 2 / 3])
    assert [pc[c]["support"] for c in CLASSES3] == [3, 2, 1]
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert r["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    # every row has confidence 0.6 (one ECE bin) and accuracy 4/6
    assert r["ece"] == pytest.approx(abs(4 / 6 - 0.6))
    assert r["nll"] == pytest.approx(-(4 * math.log(0.6) + 2 * math.log(0.2)) / 6)
    # class c scores: negatives .2 .2 .2 .2 .6, positive .6 -> AUC = (4 + 0.5) / 5
    assert pc["c"]["auc"] == pytest.approx(0.9)
    assert r["macro_auc"] == pytest.approx(np.mean([pc[c]["auc"] for c in CLASSES3]))
    json.dumps(r)  # plain Python types only


def test_perfect_predictor() -> None:
    y = np.array([0, 1, 2, 0, 1, 2, 2])
    r = classification_report(y, np.eye(3)[y], CLASSES3)
    assert r["accuracy"] == 1.0
    assert r["macro_f1"] == 1.0
    assert all(r["per_class"][c]["auc"] == 1.0 for c in CLASSES3)
    assert r["macro_auc"] == 1.0
    assert r["ece"] == pytest.approx(0.0, abs=1e-9)
    assert r["nll"] == pytest.approx(0.0, abs=1e-9)


def test_class_missing_from_y_true() -> None:
    y = np.array([0, 0, 1, 1])
    probs = probs_for([0, 2, 1, 1], 3)  # one sample predicted as the absent class c
    r = classification_report(y, probs, CLASSES3)
    assert r["per_class"]["c"]["auc"] is None
    assert r["per_class"]["c"]["support"] == 0
    assert r["per_class"]["c"]["precision"] == 0.0
    assert r["per_class"]["a"]["auc"] is not None
    assert r["macro_auc"] == pytest.approx(np.mean([r["per_class"][c]["auc"] for c in ("a", "b")]))
    assert r["confusion"]["normalized"][2] == [0.0, 0.0, 0.0]
    assert r["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)  # over classes present in y_true
    json.dumps(r)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        classification_report(np.array([0, 1]), np.ones((2, 2)) / 2, CLASSES3)
    with pytest.raises(ValueError, match="outside"):
        classification_report(np.array([0, 3]), np.ones((2, 3)) / 3, CLASSES3)


def test_aggregate_folds() -> None:
    y = np.array([0, 0, 1, 1])
    folds = [classification_report(y, probs_for(pred, 2, 0.8), ("x", "y"))
             for pred in ([0, 1, 0, 1], [0, 0, 0, 1], [0, 0, 1, 1])]
    accs = [0.5, 0.75, 1.0]
    assert [f["accuracy"] for f in folds] == pytest.approx(accs)
    agg = aggregate_folds(folds)
    assert agg["n_folds"] == 3
    assert agg["n"] == 12
    assert agg["std_ddof"] == 0
    assert agg["metrics"]["accuracy"]["mean"] == pytest.approx(0.75)
    assert agg["metrics"]["accuracy"]["std"] == pytest.approx(math.sqrt((0.25**2 + 0 + 0.25**2) / 3))
    f1s = [f["macro_f1"] for f in folds]
    assert agg["metrics"]["macro_f1"]["mean"] == pytest.approx(np.mean(f1s))
    assert agg["metrics"]["macro_f1"]["std"] == pytest.approx(np.std(f1s, ddof=0))
    assert agg["metrics"]["accuracy"]["folds"] == pytest.approx(accs)
    expected = np.sum([f["confusion"]["counts"] for f in folds], axis=0)
    assert agg["confusion"]["counts"] == expected.tolist() == [[5, 1], [2, 4]]
    assert agg["pooled_accuracy"] == pytest.approx(9 / 12)
    assert agg["per_class"]["x"]["support"] == 6
    json.dumps(agg)
    with pytest.raises(ValueError):
        aggregate_folds([])


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[0] > 200 and img.shape[1] > 200


def test_write_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, len(EMOTIONS), 60)
    probs = rng.dirichlet(np.ones(len(EMOTIONS)), 60)
    probs[np.arange(30), y[:30]] += 2.0  # half of them right
    probs /= probs.sum(1, keepdims=True)
    report = classification_report(y, probs, EMOTIONS)
    paths = write_report(report, tmp_path / "out", "Unit test report", {"model": "m", "split": "test"},
                         y_true=y, probs=probs)
    assert {p.name for p in paths.values()} == set(REPORT_FILES)
    for name in REPORT_FILES:
        assert (tmp_path / "out" / name).is_file()
    for key in ("confusion", "confusion_normalized", "roc"):
        _check_png(paths[key])
    doc = json.loads(paths["json"].read_text())
    assert doc["accuracy"] == pytest.approx(report["accuracy"])
    assert doc["meta"]["model"] == "m" and doc["meta"]["n"] == 60 and doc["meta"]["timestamp"]
    assert "mmfer_version" in doc["meta"]
    md = paths["markdown"].read_text()
    assert f"{report['accuracy']:.4f}" in md
    assert f"{report['macro_f1']:.4f}" in md
    for cls in EMOTIONS:
        assert cls in md
    assert "(roc.png)" in md and "(confusion.png)" in md


def test_write_report_without_roc(tmp_path: Path) -> None:
    report = classification_report(Y_HAND, probs_for(PRED_HAND, 3), CLASSES3)
    paths = write_report(report, tmp_path, "no roc", {})
    assert "roc" not in paths and not (tmp_path / "roc.png").exists()
    assert (tmp_path / "confusion.png").is_file() and (tmp_path / "report.md").is_file()


@pytest.fixture()
def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(ModelCfg(arch="tiny", pretrained=False), 48)


def test_predict_probs_tta(tiny_net: torch.nn.Module) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 48, 48), dtype=np.uint8)
    tiny_net.train()
    plain = predict_probs(tiny_net, images, batch_size=4)
    tta = predict_probs(tiny_net, images, batch_size=4, tta_flip=True)
    assert tiny_net.training  # mode restored
    assert plain.shape == tta.shape == (10, len(EMOTIONS))
    assert np.allclose(plain.sum(1), 1.0, atol=1e-5)
    assert np.allclose(tta.sum(1), 1.0, atol=1e-5)
    # TTA is the mean of the plain and mirrored predictions
    mirrored = predict_probs(tiny_net, images[:, :, ::-1], batch_size=3)
    assert np.allclose(tta, 0.5 * (plain + mirrored), atol=1e-6)
    # batch size does not change the result
    assert np.allclose(plain, predict_probs(tiny_net, images, batch_size=256), atol=1e-6)
    # a horizontally symmetric face gives the same result with and without TTA
    half = rng.integers(0, 256, (3, 48, 24), dtype=np.uint8)
    sym = np.concatenate([half, half[:, :, ::-1]], axis=2)
    assert np.array_equal(sym, sym[:, :, ::-1])
    assert np.allclose(predict_probs(tiny_net, sym), predict_probs(tiny_net, sym, tta_flip=True), atol=1e-6)


def test_predict_probs_zoom_tta_averages_every_view(tiny_net: torch.nn.Module) -> None:
    from mmfer.face.models import centre_zoom

    images = np.random.default_rng(4).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    # A zoom of 0.5 is the middle 24x24 pixels, resized back to 48x48; 1.0 is the face itself.
    assert torch.equal(centre_zoom(x, 1.0), x)
    middle = torch.nn.functional.interpolate(x[..., 12:36, 12:36], size=(48, 48), mode="bilinear")
    assert torch.allclose(centre_zoom(x, 0.5), middle)
    with pytest.raises(ValueError, match="zoom"):
        centre_zoom(x, 1.5)
    views = [images, *(centre_zoom(x, z)[:, 0].mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
                       for z in (0.9, 0.8))]
    zoomed = predict_probs(tiny_net, images, tta_flip=True, tta_zooms=(0.9, 0.8), batch_size=4)
    assert np.allclose(zoomed.sum(1), 1.0, atol=1e-5)
    # Same as averaging the flip TTA of each view (up to the uint8 rounding of the zoomed views).
    by_view = np.mean([predict_probs(tiny_net, v, tta_flip=True) for v in views], axis=0)
    assert np.abs(zoomed - by_view).max() < 0.02
    assert not np.allclose(zoomed, predict_probs(tiny_net, images, tta_flip=True), atol=1e-4)


def test_card_zooms_apply_with_tta_only(tmp_path: Path) -> None:
    from mmfer.face.predictor import FaceEmotionRecognizer

    model_dir = _save_tiny(tmp_path / "model")
    card = json.loads((model_dir / "card.json").read_text())
    card["config"]["tta_zooms"] = [0.85]
    (model_dir / "card.json").write_text(json.dumps(card))
    _image_folder(tmp_path / "data", per_class=2)
    on = evaluate_face(str(model_dir), split="test", data_root=tmp_path / "data", tta_flip=True, out_dir=tmp_path / "a")
    off = evaluate_face(str(model_dir), split="test", data_root=tmp_path / "data", out_dir=tmp_path / "b")
    assert on["meta"]["tta_zooms"] == [0.85] and off["meta"]["tta_zooms"] == []
    assert "zooms 0.85" in (tmp_path / "a" / "report.md").read_text()
    crops = np.random.default_rng(5).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    rec, plain = FaceEmotionRecognizer(model_dir, optimize=False), FaceEmotionRecognizer(model_dir, tta_flip=False)
    net = rec.model
    expected = predict_probs(net, crops, tta_flip=True, tta_zooms=[0.85])
    assert np.allclose(rec.predict_crops(crops), expected, atol=1e-5)
    assert np.allclose(plain.predict_crops(crops), predict_probs(net, crops), atol=1e-4)


def _save_tiny(out: Path, num_classes: int = len(EMOTIONS), name: str = "tiny_eval") -> Path:
    torch.manual_seed(0)
    cfg = FaceTrainCfg(name=name, model=ModelCfg(arch="tiny", pretrained=False, num_classes=num_classes))
    model = create_model(cfg.model, cfg.data.image_size)
    return save_face_model(model, cfg, out, metrics={}, data_hash="x")


def _image_folder(root: Path, per_class: int) -> int:
    import cv2

    rng = np.random.default_rng(2)
    count = 0
    for split, n in (("train", 1), ("test", per_class)):
        for cls in EMOTIONS:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                assert cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
                count += split == "test"
    return count


def test_evaluate_face_image_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = _save_tiny(tmp_path / "model")
    n_test = _image_folder(tmp_path / "data", per_class=3)
    out = tmp_path / "report"
    r = evaluate_face(str(model_dir), split="PrivateTest", data_root=tmp_path / "data", tta_flip=True,
                      out_dir=out, batch_size=8)
    assert r["n"] == n_test == 21
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    assert r["paths"]["json"] == out / "report.json"
    assert sum(map(sum, r["confusion"]["counts"])) == n_test
    doc = json.loads((out / "report.json").read_text())
    assert doc["meta"]["split"] == "PrivateTest" and doc["meta"]["tta"] is True
    assert doc["meta"]["model"] == "tiny_eval" and doc["meta"]["model_data_hash"] == "x"
    assert doc["meta"]["n"] == n_test and doc["meta"]["limit"] is None
    # default output folder: reports/face/<model name>/<split>[_tta]
    monkeypatch.chdir(tmp_path)
    r2 = evaluate_face(str(model_dir), split="test", data_root=tmp_path / "data", limit=5)
    assert r2["n"] == 5
    assert (tmp_path / "reports" / "face" / "tiny_eval" / "PrivateTest" / "report.json").is_file()
    assert "first 5 of 21" in r2["meta"]["subset"]


def test_evaluate_face_rejects_other_classes(tmp_path: Path) -> None:
    model_dir = _save_tiny(tmp_path / "model6", num_classes=6)
    _image_folder(tmp_path / "data", per_class=1)
    with pytest.raises(ValueError, match="canonical classes"):
        evaluate_face(str(model_dir), data_root=tmp_path / "data", out_dir=tmp_path / "r")


@pytest.mark.slow  # the session's private cache means decoding the 75 MB CSV once (~30 s on 2 busy cores)
@pytest.mark.skipif(not (REAL_DATA_ROOT / "fer2013").is_dir(),
                    reason=f"real FER-2013 not found under {REAL_DATA_ROOT}/fer2013")
def test_evaluate_face_real_fer2013_subset(tmp_path: Path) -> None:
    model_dir = _save_tiny(tmp_path / "model")
    r = evaluate_face(str(model_dir), split="PrivateTest", data_root=REAL_DATA_ROOT, out_dir=tmp_path / "rep",
                      limit=200, batch_size=100)
    assert r["n"] == 200
    assert int(np.sum(r["confusion"]["counts"])) == 200
    assert sum(v["support"] for v in r["per_class"].values()) == 200
    assert r["meta"]["split_size"] == 3589  # the official PrivateTest size
    assert (tmp_path / "rep" / "report.md").is_file()
