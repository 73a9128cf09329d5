"""`mmfer predict` and the Python API: files, folders, crops, JSON, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from conftest import REPO, SHARED_DATA, YUNET_640, iou, needs_fer, needs_yunet, write_png_header_only
from mmfer import FaceEmotionRecognizer
from mmfer.cli.main import main as cli
from mmfer.config import FaceTrainCfg, ModelCfg
from mmfer.emotions import EMOTIONS
from mmfer.face.artifact import save_face_model
from mmfer.face.models import create_model

EXAMPLE = REPO / "mmfer" / "examples" / "astronaut.jpg"
FACE_BOX = (178, 65, 92, 111)  # the astronaut's face, x y w h, by eye


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained net: these tests are about plumbing, not accuracy."""
    import torch

    torch.manual_seed(0)
    cfg = FaceTrainCfg(name="tiny_test", model=ModelCfg(arch="tiny", pretrained=False))
    cfg.data.image_size = 48
    return save_face_model(create_model(cfg.model, 48), cfg, tmp_path_factory.mktemp("m") / "tiny", {}, "x")


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Good photos in every pixel format, and bad files of every kind; expected outcome per file."""
    d = tmp_path_factory.mktemp("mixed")
    rgb = data.astronaut()
    Image.fromarray(rgb).save(d / "a_rgb.jpg")
    Image.fromarray(rgb).convert("RGBA").save(d / "b_rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(d / "c_palette.png")
    Image.fromarray(rgb).convert("L").save(d / "d_grey.png")
    cv2.imwrite(str(d / "e_16bit.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    Image.fromarray(data.coffee()).save(d / "f_no_face.jpg")
    (d / "g_empty.jpg").write_bytes(b"")
    (d / "h_text.png").write_text("not a picture\n" * 50)
    full = (d / "a_rgb.jpg").read_bytes()
    (d / "i_truncated.jpg").write_bytes(full[: len(full) // 3])
    write_png_header_only(d / "j_huge.png", 20000, 20000)
    (d / "notes.txt").write_text("ignored: not an image suffix")
    expected = {"a_rgb.jpg": "face", "b_rgba.png": "face", "c_palette.png": "face", "d_grey.png": "face",
                "e_16bit.png": "face", "f_no_face.jpg": "none", "g_empty.jpg": "error", "h_text.png": "error",
                "i_truncated.jpg": "error", "j_huge.png": "error"}
    return d, expected


def _run(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str, str]:
    code = cli(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_example_photo_text_output(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = _run(capsys, ["predict", str(EXAMPLE), "--model", str(model_dir), "--detector", "haar"])
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "face 1/1" in lines[0] and str(EXAMPLE) in lines[0]
    for name in EMOTIONS:  # every probability is printed
        assert f"{name} " in lines[0]


def test_json_output(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, ["predict", str(EXAMPLE), "--json", "--model", str(model_dir), "--detector", "haar"])
    assert code == 0
    doc = json.loads(out)
    assert doc["classes"] == list(EMOTIONS) and doc["detector"] == "haar"
    (res,) = doc["results"]
    (face,) = res["faces"]
    assert iou(face["box"], FACE_BOX) > 0.5
    assert set(face["probabilities"]) == set(EMOTIONS)
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)


@needs_yunet
def test_json_output_with_yunet(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, ["predict", str(EXAMPLE), "--json", "--model", str(model_dir),
                                 "--yunet-model", str(YUNET_640)])
    doc = json.loads(out)
    assert code == 0 and doc["detector"] == "yunet"
    assert iou(doc["results"][0]["faces"][0]["box"], FACE_BOX) > 0.5


def test_folder_with_good_and_bad_files(model_dir: Path, mixed_folder: tuple[Path, dict[str, str]],
                                        capsys: pytest.CaptureFixture) -> None:
    folder, expected = mixed_folder
    code, out, err = _run(capsys, ["predict", str(folder), "--json", "--model", str(model_dir), "--detector", "haar"])
    assert code == 1  # something failed, and the rest was still processed
    doc = json.loads(out)
    by_name = {Path(r["file"]).name: r for r in doc["results"]}
    assert set(by_name) == set(expected)  # notes.txt is not an image suffix: not picked from a folder
    err_lines = err.strip().splitlines()
    for name, outcome in expected.items():
        r = by_name[name]
        if outcome == "error":
            assert "error" in r and r["error"].startswith(str(folder / name) + ": ")
            assert sum(line.startswith(f"mmfer: {folder / name}: ") for line in err_lines) == 1, err
        elif outcome == "none":
            assert r["faces"] == [] and any(name in line and "no face found" in line for line in err_lines)
        else:
            assert len(r["faces"]) == 1, name
            assert iou(r["faces"][0]["box"], FACE_BOX) > 0.5, name
    assert "Traceback" not in err


def test_every_pixel_format_gives_the_same_face(model_dir: Path, mixed_folder: tuple[Path, dict[str, str]]) -> None:
    folder, _ = mixed_folder
    rec = FaceEmotionRecognizer(model_dir, detector="haar")
    ref = rec.predict_image(folder / "a_rgb.jpg")[0]
    for name in ("b_rgba.png", "e_16bit.png", "d_grey.png"):
        (p,) = rec.predict_image(folder / name)
        assert iou(p.box, ref.box) > 0.8, name
        diffs = [abs(p.probabilities[k] - ref.probabilities[k]) for k in EMOTIONS]
        assert max(diffs) < 0.1, (name, diffs)


def test_no_detect_takes_each_image_as_a_crop(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    crops = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    for i, c in enumerate(crops):
        cv2.imwrite(str(tmp_path / f"crop{i}.png"), c)
    code, out, _ = _run(capsys, ["predict", str(tmp_path), "--no-detect", "--json", "--model", str(model_dir)])
    doc = json.loads(out)
    assert code == 0 and doc["detector"] is None and len(doc["results"]) == 3
    rec = FaceEmotionRecognizer(model_dir)
    direct = rec.predict_crops(crops)
    for r, p in zip(doc["results"], direct, strict=True):
        (face,) = r["faces"]
        assert face["box"] is None
        assert [face["probabilities"][k] for k in EMOTIONS] == pytest.approx(p.tolist(), abs=1e-3)


def test_python_api_batch_matches_single(model_dir: Path) -> None:
    rec = FaceEmotionRecognizer(model_dir, detector="haar")
    img = cv2.imread(str(EXAMPLE))
    no_face = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    batch = rec.predict_batch([EXAMPLE, no_face, img])
    assert [len(b) for b in batch] == [1, 0, 1]
    single = rec.predict_image(img)[0]
    assert batch[2][0].box == single.box
    assert batch[2][0].probabilities == pytest.approx(single.probabilities, abs=1e-3)
    # Crops of any size, grey or colour, give (N, 7) probabilities.
    p = rec.predict_crops([img[65:176, 178:270], cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)])
    assert p.shape == (2, 7) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert rec.predict_crops([]).shape == (0, 7)


def test_missing_paths_and_empty_folder(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = _run(capsys, ["predict", str(tmp_path / "nope.jpg"), str(EXAMPLE), "--model", str(model_dir),
                                 "--detector", "haar"])
    assert code == 1 and f"{tmp_path / 'nope.jpg'}: no such file" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, ["predict", str(tmp_path / "empty"), "--model", str(model_dir)])
    assert code == 1 and "no image, audio or video files found" in err


def test_bad_model_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = _run(capsys, ["predict", str(EXAMPLE), "--model", str(tmp_path / "missing")])
    assert code == 2 and "missing" in err and "Traceback" not in err
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "card.json").write_text(json.dumps({"classes": list(EMOTIONS)}))
    (tmp_path / "pickled" / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    code, _, err = _run(capsys, ["predict", str(EXAMPLE), "--model", str(tmp_path / "pickled")])
    assert code == 2 and "pickled" in err


# ------------------------------------------------------------- the shipped default model


def test_shipped_model_is_listed(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, ["models"])
    assert code == 0 and "face_lite0" in out and "PrivateTest acc 0." in out


def test_shipped_model_sees_the_astronaut_smile() -> None:
    rec = FaceEmotionRecognizer(detector="haar")  # default model, as in the quick start
    (face,) = rec.predict_image(EXAMPLE)
    assert face.emotion == "happy" and face.confidence > 0.5


@needs_fer
def test_shipped_model_accuracy_matches_its_card(tmp_path: Path) -> None:
    from mmfer.evaluation.face_eval import evaluate_face

    rec = FaceEmotionRecognizer()
    card_acc = rec.card["metrics"]["PrivateTest"]["accuracy"]
    rep = evaluate_face("face_lite0", split="PrivateTest", data_root=SHARED_DATA, tta_flip=True, limit=600,
                        out_dir=tmp_path)
    # A 600-face sample: within sampling error (~2 sd) of the full-split number on the card.
    assert abs(rep["accuracy"] - card_acc) < 0.05, (rep["accuracy"], card_acc)


def test_optimised_cpu_path_matches_the_eager_model() -> None:
    crops = np.random.default_rng(1).integers(0, 256, (37, 48, 48), dtype=np.uint8)
    fast = FaceEmotionRecognizer(optimize=True)
    eager = FaceEmotionRecognizer(optimize=False)
    for n in (1, 5, 37):
        np.testing.assert_allclose(fast.predict_crops(crops[:n]), eager.predict_crops(crops[:n]), atol=1e-4)
        # the embeddings come from the same single pass, and match the eager backbone's
        emb = fast.classify_crops(crops[:n], embed=True)[1]
        with torch.inference_mode():
            ref = eager.model.forward_features(torch.from_numpy(crops[:n]).float().div(255).unsqueeze(1)).numpy()
        np.testing.assert_allclose(emb, ref, atol=1e-3, rtol=1e-3)
    assert isinstance(fast._fast, torch.jit.ScriptModule)  # the fast path really ran
    assert not isinstance(eager._fast, torch.jit.ScriptModule)


def test_an_unexpected_failure_costs_one_file_not_the_batch(model_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = FaceEmotionRecognizer.predict_batch

    def flaky(self, images, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if any(image.shape[0] == 31 for image in images):
            raise RuntimeError("boom\nin a library")
        return real(self, images, *args, **kwargs)

    monkeypatch.setattr(FaceEmotionRecognizer, "predict_batch", flaky)
    names = []
    for i, h in enumerate((30, 31, 32)):
        names.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((h, 40, 3), 128, np.uint8)).save(names[-1])
    args = ["predict", *map(str, names), "--model", str(model_dir), "--no-detect"]
    code, out, err = _run(capsys, args)
    assert code == 1
    assert f"mmfer: {names[1]}: internal error (RuntimeError: boom in a library); please report it" in err
    assert str(names[0]) in out and str(names[2]) in out and "Traceback" not in err
    monkeypatch.setenv("MMFER_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli(args)
