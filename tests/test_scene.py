"""Scene context branch: the real open_clip code path with a tiny randomly initialised model (no
downloads), face masking, prompt ensembling, probes, offline behaviour, CAER-S and EMOTIC layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_CLIP as TINY
from mmfer.data.context import load_caer_s, load_emotic, multi_hot
from mmfer.data.fer2013 import DatasetError
from mmfer.emotions import EMOTIONS
from mmfer.scene.clip_encoder import ClipSceneEncoder, SceneEncoderUnavailable, mask_faces
from mmfer.scene.probe import ProbeError, fit_probe, load_probe, save_probe
from mmfer.scene.zero_shot import DEFAULT_PROMPTS, ZeroShotSceneClassifier, load_prompts


def _scene(colour: tuple[int, int, int], seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.clip(np.array(colour)[None, None] + rng.normal(0, 25, (size, size, 3)), 0, 255)
    return img.astype(np.uint8)


def test_embeddings_are_normalised_and_deterministic(tiny_clip: ClipSceneEncoder) -> None:
    imgs = [_scene((200, 60, 60), 0), _scene((60, 60, 200), 1)]
    a, b = tiny_clip.embed_images(imgs), tiny_clip.embed_images(imgs, batch_size=1)
    assert a.shape == (2, 32) and tiny_clip.embed_dim == 32
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    t = tiny_clip.embed_texts(["a happy person", "a sad person"])
    assert t.shape == (2, 32) and not torch.allclose(t[0], t[1])


def test_masked_context_path(tiny_clip: ClipSceneEncoder) -> None:
    img = _scene((120, 160, 90), 3, size=96)
    img[20:50, 30:60] = 255  # a bright "face"
    box = (30, 20, 30, 30)
    masked = mask_faces(img, [box], margin=0.0)
    assert (masked[20:50, 30:60] == img.reshape(-1, 3).mean(0).astype(np.uint8)).all()
    assert (masked[:20] == img[:20]).all() and (masked[50:] == img[50:]).all()
    edge = mask_faces(img, [(-10, 80, 40, 40)])  # a box past the border is clipped, not an error
    assert edge.shape == img.shape
    whole, context = tiny_clip.embed_images([img]), tiny_clip.embed_images([img], face_boxes=[[box]])
    assert not torch.allclose(whole, context)
    direct = tiny_clip.embed_images([mask_faces(img, [box])])
    torch.testing.assert_close(context, direct)
    torch.testing.assert_close(tiny_clip.embed_images([img], face_boxes=[[]]), whole)  # no faces: whole scene


def test_zero_shot_ensembles_templates(tiny_clip: ClipSceneEncoder) -> None:
    zs = ZeroShotSceneClassifier(tiny_clip)
    assert zs.text_weights.shape == (7, 32)
    texts = [t.format(p) for p in DEFAULT_PROMPTS["classes"]["sad"] for t in DEFAULT_PROMPTS["templates"]]
    expected = torch.nn.functional.normalize(tiny_clip.embed_texts(texts).mean(0), dim=0)
    torch.testing.assert_close(zs.text_weights[EMOTIONS.index("sad")], expected)
    probs = zs.predict([_scene((200, 60, 60), 0), _scene((60, 60, 200), 1)])
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_prompt_sets_are_data(tmp_path: Path, tiny_clip: ClipSceneEncoder) -> None:
    custom = {"templates": ["an image of {}"], "classes": {e: [f"{e} people"] for e in EMOTIONS}}
    custom["classes"]["anger"] = custom["classes"].pop("angry")  # synonyms go through the vocabulary
    path = tmp_path / "prompts.yaml"
    import yaml

    path.write_text(yaml.safe_dump(custom))
    prompts = load_prompts(path)
    assert list(prompts["classes"]) == list(EMOTIONS) and prompts["classes"]["angry"] == ["angry people"]
    zs = ZeroShotSceneClassifier(tiny_clip, path)
    torch.testing.assert_close(zs.text_weights[0], tiny_clip.embed_texts(["an image of angry people"])[0])
    with pytest.raises(ValueError, match="no phrases for"):
        load_prompts({"templates": ["{}"], "classes": {"happy": ["x"]}})
    with pytest.raises(ValueError, match="exactly one"):
        load_prompts({"templates": ["no placeholder"], "classes": {e: ["x"] for e in EMOTIONS}})
    with pytest.raises(ValueError, match="not an emotion"):
        load_prompts({"templates": ["{}"], "classes": {"bored": ["x"]}})


def test_local_checkpoint_file(tmp_path: Path, tiny_clip: ClipSceneEncoder) -> None:
    from safetensors.torch import save_file

    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(ckpt))
    loaded = ClipSceneEncoder(TINY, pretrained=str(ckpt), device="cpu")
    img = [_scene((10, 200, 10), 5)]
    torch.testing.assert_close(loaded.embed_images(img), tiny_clip.embed_images(img))


def test_no_weights_is_a_clear_error(tmp_path: Path, tiny_clip: ClipSceneEncoder,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SceneEncoderUnavailable, match="could not be loaded.*provide the weights"):
        ClipSceneEncoder(TINY, pretrained=str(tmp_path / "missing.bin"))
    with pytest.raises(SceneEncoderUnavailable, match="randomly initialised"):
        ClipSceneEncoder(TINY, pretrained=None)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a machine without internet
    with pytest.raises(SceneEncoderUnavailable) as err:
        ClipSceneEncoder("ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path))
    msg = str(err.value)
    assert "laion2b_s34b_b79k" in msg and "laion/CLIP-ViT-B-32" in msg and "face and audio branches work" in msg


def test_probes_learn_context_and_round_trip(tmp_path: Path, tiny_clip: ClipSceneEncoder) -> None:
    happy, sad = EMOTIONS.index("happy"), EMOTIONS.index("sad")
    train = [_scene((220, 180, 60), i) for i in range(20)] + [_scene((50, 60, 140), 100 + i) for i in range(20)]
    test = [_scene((220, 180, 60), 500 + i) for i in range(10)] + [_scene((50, 60, 140), 600 + i) for i in range(10)]
    y_train = np.array([happy] * 20 + [sad] * 20)
    y_test = np.array([happy] * 10 + [sad] * 10)
    x_train, x_test = tiny_clip.embed_images(train).numpy(), tiny_clip.embed_images(test)
    for kind in ("linear", "mlp"):
        probe = fit_probe(x_train, y_train, kind=kind, hidden=32, c=10.0)
        with torch.no_grad():
            probs = probe(x_test).softmax(-1)
        assert probs.shape == (20, 7)
        assert float((probs.argmax(1).numpy() == y_test).mean()) >= 0.9, kind
        unseen = [i for i in range(7) if i not in (happy, sad)]
        assert float(probs[:, unseen].max()) < 1e-6  # classes never seen in training are never predicted
        folder = save_probe(probe, tmp_path / kind, TINY, None, {"accuracy": 1.0}, masked_faces=True)
        loaded, card = load_probe(folder)
        assert card["clip"]["faces_masked"] and card["classes"] == list(EMOTIONS)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x_test).softmax(-1), probs)
    with pytest.raises(ProbeError, match="at least two classes"):
        fit_probe(x_train[:5], y_train[:5])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "card.json").write_text("{")
    with pytest.raises(ProbeError, match="not a usable scene probe"):
        load_probe(tmp_path / "junk")


def test_caer_s_layout(tmp_path: Path) -> None:
    for split, cls in (("train", "Anger"), ("train", "Happy"), ("test", "Surprise")):
        d = tmp_path / "CAER-S" / split / cls
        d.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(_scene((100, 100, 100), i)).save(d / f"{i:04d}.png")
    train = load_caer_s("train", tmp_path)
    assert [(s.image.parent.name, s.labels) for s in train] == [("Anger", ("angry",))] * 2 + [("Happy", ("happy",))] * 2
    assert load_caer_s("test", tmp_path)[0].labels == ("surprise",)
    assert multi_hot(train).sum(0)[EMOTIONS.index("angry")] == 2
    (tmp_path / "CAER-S" / "train" / "Bored").mkdir()
    with pytest.raises(DatasetError, match="Bored: not a CAER-S class"):
        load_caer_s("train", tmp_path)
    with pytest.raises(DatasetError, match="CAER-S split not found"):
        load_caer_s("val", tmp_path)


def _emotic_mat(path: Path) -> None:
    """Annotations.mat in EMOTIC's struct layout (train: one annotator; val: combined annotations)."""
    from scipy.io import savemat

    def person(box: list[float], cats: list[str], combined: bool, vad: tuple[int, int, int]) -> np.ndarray:
        cont = np.zeros((1,), dtype=[("valence", "O"), ("arousal", "O"), ("dominance", "O")])
        cont[0] = vad
        if combined:
            p = np.zeros((1,), dtype=[("body_bbox", "O"), ("combined_categories", "O"), ("combined_continuous", "O"),
                                      ("gender", "O"), ("age", "O")])
            p[0] = (np.array(box), np.array(cats, dtype=object), cont, "Female", "Adult")
        else:
            ann = np.zeros((1,), dtype=[("categories", "O")])
            ann[0] = (np.array(cats, dtype=object),)
            p = np.zeros((1,), dtype=[("body_bbox", "O"), ("annotations_categories", "O"),
                                      ("annotations_continuous", "O"), ("gender", "O"), ("age", "O")])
            p[0] = (np.array(box), ann, cont, "Male", "Adult")
        return p

    entry = [("filename", "O"), ("folder", "O"), ("image_size", "O"), ("person", "O")]
    train = np.zeros((2,), dtype=entry)
    two = np.concatenate([person([10, 20, 60, 90], ["Happiness", "Excitement"], False, (8, 7, 6)),
                          person([70, 10, 120, 100], ["Peace"], False, (6, 3, 5))])
    train[0] = ("a.jpg", "mscoco/images", np.array([128, 128]), two)
    train[1] = ("b.jpg", "framesdb/images", np.array([128, 128]), person([0, 0, 50, 50], ["Aversion", "Anger"],
                                                                          False, (2, 8, 6)))
    val = np.zeros((1,), dtype=entry)
    val[0] = ("c.jpg", "ade20k/images", np.array([64, 64]), person([5, 5, 30, 40], ["Sadness", "Fatigue"], True,
                                                                   (3, 2, 4)))
    path.parent.mkdir(parents=True)
    savemat(str(path), {"train": train, "val": val})


def test_emotic_layout(tmp_path: Path) -> None:
    _emotic_mat(tmp_path / "Annotations" / "Annotations.mat")
    train = load_emotic("train", tmp_path)
    assert len(train) == 3  # one sample per annotated person
    first, second, third = train
    assert first.image == tmp_path / "mscoco" / "images" / "a.jpg"
    assert first.labels == ("happy",) and first.categories == ("Happiness", "Excitement")
    assert first.body_box == (10, 20, 50, 70) and first.vad == (8.0, 7.0, 6.0)
    assert second.labels == () and second.categories == ("Peace",)  # Peace has no canonical counterpart
    assert third.labels == ("disgust", "angry")
    val = load_emotic("val", tmp_path)
    assert val[0].labels == ("sad",) and val[0].vad == (3.0, 2.0, 4.0)
    with pytest.raises(DatasetError, match="no 'test' split"):
        load_emotic("test", tmp_path)
    with pytest.raises(DatasetError, match="EMOTIC annotations not found"):
        load_emotic("train", tmp_path / "nowhere")


def test_train_scene_probe_and_predict_from_the_cli(tmp_path: Path, tiny_clip: ClipSceneEncoder,
                                                    capsys: pytest.CaptureFixture) -> None:
    """The whole user path: a CAER-S folder, a YAML recipe naming a local CLIP checkpoint, `mmfer
    train scene`, then `mmfer scene` with the probe and with zero-shot prompts; bad files named."""
    from safetensors.torch import save_file

    from mmfer.cli.main import main

    for k, (split, n) in enumerate((("train", 12), ("test", 6))):
        for j, (cls, colour) in enumerate((("Happy", (220, 180, 60)), ("Sad", (50, 60, 140)))):
            d = tmp_path / "CAER-S" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_scene(colour, 1000 * k + 100 * j + i)).save(d / f"{i:04d}.png")
    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(ckpt))
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(f"name: probe_test\nclip: {{model: {TINY}, pretrained: {ckpt}}}\n"
                   f"data: {{dataset: caer-s, root: {tmp_path}, detector: haar}}\nprobe: {{kind: linear, c: 10.0}}\n")
    assert main(["train", "scene", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "probe written to" in out and "test (12 images)" in out
    card = json.loads((tmp_path / "run" / "model" / "card.json").read_text())
    assert card["metrics"]["accuracy"] >= 0.9 and card["clip"] == {"model": TINY, "pretrained": str(ckpt),
                                                                    "faces_masked": True}
    (tmp_path / "broken.png").write_bytes(b"not a png")
    sad_dir = tmp_path / "CAER-S" / "test" / "Sad"
    code = main(["scene", str(sad_dir), str(tmp_path / "broken.png"), "--probe", str(tmp_path / "run" / "model"),
                 "--detector", "haar", "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == 1 and "broken.png" in captured.err  # the bad file is named, the others are scored
    good = [r for r in doc["results"] if "error" not in r]
    assert len(good) == 6 and sum(r["emotion"] == "sad" for r in good) >= 5
    assert main(["scene", str(sad_dir / "0000.png"), "--clip-model", TINY, "--clip-pretrained", str(ckpt),
                 "--whole-image"]) == 0
    assert "scene (whole image) ->" in capsys.readouterr().out
    assert main(["scene", str(sad_dir / "0000.png"), "--clip-model", TINY, "--clip-pretrained",
                 str(tmp_path / "missing.bin")]) == 2
    assert "could not be loaded" in capsys.readouterr().err
