"""transformers checkpoints as mmfer branches: tiny random models written with save_pretrained and
loaded exactly as a user's checkpoint is (a directory, the Hugging Face cache, a hub id)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import hf_tiny  # noqa: E402

from conftest import FER_CSV, RAVDESS_CLIP, SHARED_DATA, needs_fer, needs_ravdess, voice  # noqa: E402
from mmfer.core.errors import ModelLoadError  # noqa: E402
from mmfer.core.hub import HFModelError, is_hf_spec, parse_spec, resolve  # noqa: E402
from mmfer.emotions import EMOTIONS  # noqa: E402
from mmfer.hf.labels import map_labels  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-tiny")
    return {"encoder": hf_tiny.speech_encoder(root / "w2v"), "audio": hf_tiny.speech_classifier(root / "w2v_cls"),
            "face": hf_tiny.face_classifier(root / "vit"), "clip": hf_tiny.clip(root / "clip")}


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def _copy_with(src: Path, dst: Path, **config_changes: object) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(config_changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


# -- labels --------------------------------------------------------------------------------------


def test_labels_are_mapped_by_name_and_unmapped_ones_reported() -> None:
    lm = map_labels({"0": "Happiness", "1": "ANGER", "2": "surprised", "3": "frustrated", "4": "joy"}, "ckpt")
    assert lm.classes == ("angry", "happy", "surprise")  # mmfer order, not the checkpoint's
    assert lm.unmapped == ["frustrated"]
    assert lm.missing == ["disgust", "fear", "sad", "neutral"]
    probs, lost = lm.convert(np.array([[0.1, 0.2, 0.3, 0.3, 0.1]]))
    assert lost[0] == pytest.approx(0.3)
    # happiness + joy share "happy"; the rest is renormalised over what mmfer can use
    np.testing.assert_allclose(probs[0], np.array([0.2, 0.2, 0.3]) / 0.7, rtol=1e-6)
    with pytest.raises(HFModelError, match="none of its labels"):
        map_labels({0: "LABEL_0", 1: "LABEL_1"}, "ckpt")


def test_which_names_mean_a_transformers_checkpoint(tmp_path: Path, tiny: dict[str, Path]) -> None:
    assert not is_hf_spec(None) and not is_hf_spec("face_lite0") and not is_hf_spec("audio_crnn")
    assert is_hf_spec("trpakov/vit-face-expression") and is_hf_spec("hf:openai/clip-vit-base-patch32")
    assert is_hf_spec(tiny["face"]) and not is_hf_spec(tmp_path)
    spec = parse_spec("org/model@v1.2")
    assert (spec.source, spec.revision) == ("org/model", "v1.2")
    with pytest.raises(HFModelError, match="neither an existing directory nor a Hugging Face hub id"):
        parse_spec("./no/such/dir")


# -- face ----------------------------------------------------------------------------------------


def test_face_checkpoint_scores_detected_faces_with_its_own_processor(tiny: dict[str, Path],
                                                                      astronaut: np.ndarray) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from mmfer.branches.loaders import load_face_recognizer
    from mmfer.face.detect import crop_faces

    rec = load_face_recognizer(tiny["face"], detector="haar")
    assert rec.card["backend"] == "transformers" and rec.classes == EMOTIONS
    assert rec.card["folded"] == {"contempt": "disgust"} and rec.crop_size == 32
    faces = rec.predict_image(astronaut)
    assert len(faces) == 1 and faces[0].box is not None
    assert sum(faces[0].probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    # the same numbers straight from transformers on the same crop, contempt folded into disgust
    crop = crop_faces(astronaut, rec.detector.detect(astronaut), size=32, colour=True)[0]
    proc = AutoImageProcessor.from_pretrained(tiny["face"])
    model = AutoModelForImageClassification.from_pretrained(tiny["face"]).eval()
    with torch.no_grad():
        px = proc(images=[np.ascontiguousarray(crop[:, :, ::-1])], return_tensors="pt")
        p = model(**px).logits.softmax(-1)[0].numpy()
    raw = dict(zip(hf_tiny.FACE_LABELS.values(), p, strict=True))
    assert faces[0].probabilities["disgust"] == pytest.approx(raw["disgust"] + raw["contempt"], abs=1e-4)
    assert faces[0].probabilities["happy"] == pytest.approx(raw["happiness"], abs=1e-4)


def test_predict_cli_takes_a_face_checkpoint(tiny: dict[str, Path], tmp_path: Path, astronaut: np.ndarray,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from mmfer.cli.main import main

    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), astronaut)
    assert main(["predict", str(img), "--face-model", str(tiny["face"]), "--detector", "haar", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backend"] == "transformers" and doc["classes"] == list(EMOTIONS)
    assert len(doc["results"][0]["faces"]) == 1


@needs_fer
def test_eval_face_reports_a_checkpoint_on_fer2013(tiny: dict[str, Path], tmp_path: Path) -> None:
    from mmfer.evaluation.face_eval import evaluate_face

    rep = evaluate_face(tiny["face"], "PublicTest", data_root=FER_CSV.parent.parent, out_dir=tmp_path, limit=64)
    assert rep["n"] == 64 and rep["meta"]["backend"] == "transformers"
    assert rep["label_mapping"]["checkpoint_labels"]["contempt"] == "contempt"
    assert (tmp_path / "report.json").is_file()


# -- audio ---------------------------------------------------------------------------------------


@needs_ravdess
def test_audio_classifier_checkpoint_matches_transformers_on_a_real_clip(tiny: dict[str, Path]) -> None:
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from mmfer.audio.io import load_audio
    from mmfer.branches.loaders import load_audio_recognizer

    rec = load_audio_recognizer(tiny["audio"])
    assert rec.classes == ("angry", "happy", "sad", "neutral")
    pred = rec.predict_file(RAVDESS_CLIP)
    x = load_audio(RAVDESS_CLIP).samples
    fx = AutoFeatureExtractor.from_pretrained(tiny["audio"])
    model = AutoModelForAudioClassification.from_pretrained(tiny["audio"]).eval()
    with torch.no_grad():
        p = model(**fx(x, sampling_rate=16000, return_tensors="pt")).logits.softmax(-1)[0].numpy()
    raw = dict(zip(hf_tiny.SPEECH_LABELS.values(), p, strict=True))
    for ours, theirs in (("angry", "ang"), ("happy", "hap"), ("sad", "sad"), ("neutral", "neu")):
        assert pred.probabilities[ours] == pytest.approx(raw[theirs], abs=1e-4)
    assert pred.canonical["disgust"] == 0.0 and pred.speech_s > 1.0


def test_long_recordings_are_scored_in_windows(tiny: dict[str, Path], tmp_path: Path) -> None:
    import soundfile as sf

    from mmfer.branches.loaders import load_audio_recognizer

    path = tmp_path / "long.wav"
    sf.write(path, np.concatenate([voice(180 + 20 * i, 2.0) for i in range(12)]), 16000)  # 24 s
    pred = load_audio_recognizer(tiny["audio"]).predict_file(path)
    assert len(pred.windows) == 6 and pred.emotion in ("angry", "happy", "sad", "neutral")
    assert all(w["emotion"] is not None for w in pred.windows)


def test_speech_encoder_layer_means_are_exact_and_the_frozen_backbone_is_not_saved(tiny: dict[str, Path]) -> None:
    from mmfer.audio.speech_encoder import SpeechEncoderNet
    from mmfer.config import AudioModelCfg

    net = SpeechEncoderNet(AudioModelCfg(arch="hf_encoder", hf_model=str(tiny["encoder"]), hidden=16)).eval()
    with torch.no_grad():
        net.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
        w = torch.from_numpy(net.prepare(voice(200, 1.5)))[None, None]
        direct = net(w)
        cached = net(net.layer_means(w[:, 0]).transpose(1, 2))
    torch.testing.assert_close(direct, cached, atol=1e-5, rtol=1e-4)
    assert not any(k.startswith("backbone.") for k in net.state_dict())
    assert sum(p.numel() for p in net.parameters()) < 2000  # layer weights + head only
    from mmfer.hf.audio import EncoderTableCodec

    codec = EncoderTableCodec(AudioModelCfg(arch="hf_encoder", hf_model=str(tiny["encoder"])))
    short, long = voice(200, 1.5), np.tile(voice(200, 1.5), 30)  # 45 s: three chunks
    direct_means = codec.net.layer_means(torch.from_numpy(codec.net.prepare(short))[None])[0].numpy()
    np.testing.assert_allclose(codec(short), direct_means, atol=1e-5)
    assert codec(long).shape == direct_means.shape and np.isfinite(codec(long)).all()
    tuned = SpeechEncoderNet(AudioModelCfg(arch="hf_encoder", hf_model=str(tiny["encoder"]), freeze_backbone=False))
    assert any(k.startswith("backbone.") for k in tuned.state_dict())


def _encoder_cfg(encoder: Path, **model: object):  # noqa: ANN202 - AudioTrainCfg
    from mmfer.config import AudioDataCfg, AudioModelCfg, AudioTrainCfg, OptimCfg, TrainerCfg

    return AudioTrainCfg(
        name="tiny_w2v", model=AudioModelCfg(arch="hf_encoder", hf_model=str(encoder), hidden=32, drop_rate=0.0,
                                             **model),
        data=AudioDataCfg(root=str(SHARED_DATA), actors=[1, 2], variants=0),
        optim=OptimCfg(lr=0.01, warmup_epochs=0, label_smoothing=0.0, weight_decay=0.0),
        trainer=TrainerCfg(epochs=25, batch_size=16, log_every_n_steps=1, threads=2))


@needs_ravdess
def test_frozen_encoder_head_trains_on_ravdess_ships_and_loads(tiny: dict[str, Path], tmp_path: Path) -> None:
    import lightning as L
    import torch.nn.functional as F

    from mmfer.audio.artifact import save_audio_model
    from mmfer.branches.loaders import load_audio_recognizer
    from mmfer.training.audio_module import AudioClassifier, predict_table
    from mmfer.training.train_audio import fit, load_corpus

    cfg = _encoder_cfg(tiny["encoder"])
    corpus = load_corpus(cfg)
    assert corpus.table.mode == "layer_means" and len(corpus.files) == 120
    clips = np.arange(len(corpus.files))
    y = torch.from_numpy(corpus.labels)

    L.seed_everything(cfg.trainer.seed)
    before = F.cross_entropy(torch.from_numpy(predict_table(AudioClassifier(cfg).model, corpus.table, clips)).log(), y)
    system = fit(cfg, corpus, clips, tmp_path / "run", resume=False)
    after = F.cross_entropy(torch.from_numpy(predict_table(system.model, corpus.table, clips)).log(), y)
    assert after < 0.8 * before, (float(before), float(after))

    out = save_audio_model(system.model, cfg, tmp_path / "model", {"note": "test"}, corpus.data_hash)
    assert (out / "model.safetensors").stat().st_size < 50_000  # the frozen encoder is referenced, not copied
    card = json.loads((out / "card.json").read_text())
    assert card["preprocessing"]["encoder"] == str(tiny["encoder"]) and card["preprocessing"]["encoder_frozen"]
    rec = load_audio_recognizer(out)
    pred = rec.predict_file(RAVDESS_CLIP)
    assert len(pred.probabilities) == 8 and sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    from mmfer.branches import create_branch

    assert create_branch("audio", out).backend == "mmfer + transformers encoder"


@needs_ravdess
def test_encoder_recipe_gets_the_actor_disjoint_report(tiny: dict[str, Path], tmp_path: Path) -> None:
    from mmfer.training.train_audio import cross_validate

    cfg = _encoder_cfg(tiny["encoder"])
    cfg.data.actors, cfg.trainer.epochs = [1, 2, 3, 4], 3
    cv = cross_validate(cfg, tmp_path, folds=2)
    assert len(cv["folds"]) == 2 and cv["pooled"]["n"] == 240
    assert set(cv["folds"][0]["test_actors"]).isdisjoint(cv["folds"][1]["test_actors"])


@needs_ravdess
def test_attention_pooling_trains_on_input_values(tiny: dict[str, Path], tmp_path: Path) -> None:
    from mmfer.training.audio_module import predict_table
    from mmfer.training.train_audio import fit, load_corpus

    cfg = _encoder_cfg(tiny["encoder"], pooling="attention")
    cfg.data.actors, cfg.data.limit_per_class, cfg.trainer.epochs = [1], 3, 1
    corpus = load_corpus(cfg)
    assert corpus.table.mode == "waveform"
    system = fit(cfg, corpus, np.arange(len(corpus.files)), tmp_path, resume=False)
    probs = predict_table(system.model, corpus.table, np.arange(len(corpus.files)))
    assert probs.shape == (len(corpus.files), 8) and np.allclose(probs.sum(1), 1, atol=1e-4)


# -- scene ---------------------------------------------------------------------------------------


def test_transformers_clip_is_a_scene_backend(tiny: dict[str, Path], astronaut: np.ndarray, tmp_path: Path) -> None:
    from mmfer.branches.scene_classifier import load_scene_classifier

    sc = load_scene_classifier(f"hf:{tiny['clip']}")
    rgb = astronaut[:, :, ::-1].copy()
    whole = sc.encoder.embed_images([rgb])
    masked = sc.encoder.embed_images([rgb], [[(180, 60, 100, 110)]])
    assert whole.shape == (1, 16) and torch.linalg.norm(whole, dim=-1).item() == pytest.approx(1.0, abs=1e-5)
    assert not torch.allclose(whole, masked)  # the face box was masked out
    probs = sc.scores(whole)
    assert probs.shape == (1, 7) and probs.sum() == pytest.approx(1.0, abs=1e-5) and probs.std() > 0
    assert "zero-shot" in sc.name and sc.model.startswith("hf:")

    # a probe on this backend's embeddings names it in its card and reloads it from there
    from mmfer.scene.probe import fit_probe, save_probe

    rng = np.random.default_rng(0)
    scenes = [rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(14)]
    emb = sc.encoder.embed_images(scenes).numpy()
    probe = fit_probe(emb, np.arange(14) % 7)
    folder = save_probe(probe, tmp_path / "probe", sc.model, None, masked_faces=True)
    again = load_scene_classifier(probe=folder)
    assert again.model == sc.model and "probe" in again.name
    np.testing.assert_allclose(again.scores(torch.from_numpy(emb)), probe(torch.from_numpy(emb)).softmax(-1).detach(),
                               atol=1e-6)


# -- fusion and the pipeline ---------------------------------------------------------------------


def test_pipeline_fuses_transformers_branches_and_says_they_are_uncalibrated(tiny: dict[str, Path],
                                                                             astronaut: np.ndarray,
                                                                             tmp_path: Path) -> None:
    import soundfile as sf

    from mmfer.pipeline import EmotionPipeline

    pipe = EmotionPipeline(face_model=str(tiny["face"]), audio_model=str(tiny["audio"]),
                           clip_model=f"hf:{tiny['clip']}", temporal=False, detector="haar")
    status = pipe.status()
    assert status["face"]["backend"] == "transformers" and status["scene"]["backend"] == "transformers"
    assert status["audio"]["backend"] == "transformers" and not status["temporal"]["available"]
    a = pipe.analyze_image(astronaut)
    assert set(a.branches) == {"face", "scene"}
    f = a.fused
    scores = f.prior_term + sum(f.contributions.values())
    np.testing.assert_allclose(f.probs, np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum(), atol=1e-9)
    assert any("face model" in n and "uncalibrated" in n for n in a.notes)
    wav = tmp_path / "voice.wav"
    sf.write(wav, voice(220, 3.0), 16000)
    b = pipe.analyze_audio(wav)
    assert set(b.branches) == {"audio"} and b.models["audio"] == str(tiny["audio"])
    assert b.branches["audio"][EMOTIONS.index("fear")] == 0.0  # the checkpoint has no fear class


# -- bad checkpoints -----------------------------------------------------------------------------


def test_bad_checkpoints_get_one_line_messages(tiny: dict[str, Path], tmp_path: Path) -> None:
    from mmfer.branches.loaders import load_audio_recognizer, load_face_recognizer

    cases = [
        (lambda: load_audio_recognizer(tiny["face"]), r"an image model \(vit\), not a speech model.*--face-model"),
        (lambda: load_face_recognizer(tiny["audio"]), r"a speech model \(wav2vec2\), not an image model"),
        (lambda: load_audio_recognizer(tiny["encoder"]), "no classification head"),
        (lambda: load_face_recognizer(_copy_with(tiny["face"], tmp_path / "generic",
                                                 id2label={str(i): f"LABEL_{i}" for i in range(8)})),
         "none of its labels"),
        (lambda: load_face_recognizer(_copy_with(tiny["face"], tmp_path / "remote",
                                                 auto_map={"AutoModelForImageClassification": "modeling.Net"})),
         "needs its own Python code.*--trust-remote-code"),
    ]
    pickled = shutil.copytree(tiny["face"], tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    cases.append((lambda: load_face_recognizer(pickled), "no \\*.safetensors weights.*pytorch_model.bin"))
    (tmp_path / "empty").mkdir()
    cases.append((lambda: load_face_recognizer(tmp_path / "empty"), "no card.json .* and no config.json"))
    for load, message in cases:
        with pytest.raises(ModelLoadError, match=message) as exc:
            load()
        assert "\n" not in str(exc.value)


def test_unreachable_hub_and_empty_cache_say_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    # conftest points HF_ENDPOINT at a closed local port and HF_HOME at an empty folder
    monkeypatch.delenv("MMFER_OFFLINE")  # (and turns offline mode on, which would skip the hub)
    with pytest.raises(HFModelError, match="tried the Hugging Face hub: unreachable.*the local Hugging Face cache: "
                                           "not cached"):
        resolve(parse_spec("someone/emotion-model"))
    with pytest.raises(HFModelError, match="not cached.*drop --offline / --hf-offline"):
        resolve(parse_spec("someone/emotion-model", local_files_only=True))


def _put_in_hf_cache(src: Path, repo: str) -> None:
    """Lay a checkpoint out as huggingface_hub caches a download (refs/main -> snapshots/<commit>/)."""
    import os

    from huggingface_hub.constants import HF_HUB_CACHE

    folder = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(src, folder / "snapshots" / commit)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    assert os.environ["HF_HOME"] in str(folder)


def test_cached_hub_checkpoints_load_offline_and_when_the_hub_is_unreachable(tiny: dict[str, Path],
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mmfer.branches.loaders import load_face_recognizer

    monkeypatch.delenv("MMFER_OFFLINE")  # online, with the hub unreachable (conftest's HF_ENDPOINT)

    _put_in_hf_cache(tiny["face"], "someone/tiny-fer-vit")
    offline = load_face_recognizer("someone/tiny-fer-vit", detector="haar", local_files_only=True)
    fallback = load_face_recognizer("hf:someone/tiny-fer-vit", detector="haar")  # hub unreachable -> the cache
    assert offline.card["name"] == fallback.card["name"] == "someone/tiny-fer-vit"
    assert fallback.spec.local_files_only  # the rest was read from the cache without asking the hub again
    crops = np.random.default_rng(0).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(offline.predict_crops(crops), fallback.predict_crops(crops), atol=1e-6)


def test_a_misspelt_hub_id_is_one_line_from_the_cli(tmp_path: Path) -> None:
    """A local server that answers like the hub does for a repository that does not exist."""
    import http.server
    import os
    import threading

    class NoSuchRepo(http.server.BaseHTTPRequestHandler):
        def _reply(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("X-Error-Message", "Repository not found")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _reply

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoSuchRepo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 128, np.uint8))
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_HOME": str(tmp_path)}
    env.pop("MMFER_OFFLINE")  # online: the hub (this server) is asked
    try:
        run = subprocess.run([sys.executable, "-m", "mmfer", "predict", str(img), "--face-model",
                              "trpakov/vit-face-expresion"], capture_output=True, text=True, env=env, timeout=300)
    finally:
        server.shutdown()
    assert run.returncode == 2, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert lines == ["mmfer: trpakov/vit-face-expresion: no such model on the Hugging Face hub (misspelt id, "
                     "or a private repository you are not logged in for)"], run.stderr


def test_a_broken_audio_checkpoint_leaves_the_rest_of_the_pipeline_working(tiny: dict[str, Path],
                                                                           astronaut: np.ndarray) -> None:
    from mmfer.pipeline import EmotionPipeline

    pipe = EmotionPipeline(audio_model=str(tiny["face"]), scene=False, temporal=False, detector="haar")
    status = pipe.status()
    assert not status["audio"]["available"] and "not a speech model" in status["audio"]["reason"]
    assert status["face"]["available"] and status["face"]["backend"] == "mmfer"
    assert pipe.analyze_image(astronaut).emotion in EMOTIONS


def test_demo_switches_to_a_checkpoint_and_keeps_its_models_on_a_bad_name(tiny: dict[str, Path], tmp_path: Path,
                                                                           astronaut: np.ndarray) -> None:
    from mmfer.demo.app import DemoHandlers
    from mmfer.pipeline import EmotionPipeline

    h = DemoHandlers(EmotionPipeline(scene=False, temporal=False, detector="haar"))
    table, msg = h.switch_models(str(tiny["face"]), str(tiny["audio"]))
    assert msg.startswith("Models loaded") and table.count("| transformers |") == 2, (table, msg)
    assert "enters uncalibrated" in table
    img = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(img), astronaut)
    *_, summary, doc = h.image(str(img))
    assert doc["branches"]["face"]["model"] == str(tiny["face"]), summary
    before = h.pipe
    table, msg = h.switch_models("someone/no-such-model", "")
    assert msg.startswith("**Models not changed.**") and "someone/no-such-model" in msg and h.pipe is before


def test_without_transformers_installed_the_message_says_how_to_get_it(tiny: dict[str, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    from mmfer.branches.loaders import load_face_recognizer

    with pytest.raises(HFModelError, match=r"pip install 'mmfer\[hf\]'"):
        load_face_recognizer(tiny["face"])


def test_a_refused_connection_through_the_hub_client_counts_as_unreachable() -> None:
    """huggingface_hub 2.x raises httpx2's errors: an unreachable hub must read as 'unreachable' (then the
    cache is tried), not as a broken checkpoint."""
    from mmfer.core.hub import _is_network_error

    client = pytest.importorskip("httpx2")
    try:
        client.get("http://127.0.0.1:9/", timeout=1)  # the discard port: nothing listens
    except Exception as exc:  # noqa: BLE001 - whatever the client raises for a refused connection
        refused = exc
    assert _is_network_error(refused)
    assert not _is_network_error(ValueError("bad config"))


@pytest.mark.skipif(not all((SHARED_DATA / c).is_dir() for c in ("ravdess", "emovo", "casia")),
                    reason=f"RAVDESS, EMOVO and CASIA not all found under {SHARED_DATA}")
@pytest.mark.slow
def test_frozen_encoder_recipe_takes_several_corpora(tiny: dict[str, Path], tmp_path: Path) -> None:
    from mmfer.cli.main import main

    recipe = Path(__file__).resolve().parents[1] / "configs" / "audio_wavlm_superb.yaml"
    args = ["eval", "audio", "--config", str(recipe), "--loco", "--data-root", str(SHARED_DATA),
            "--run-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"),
            "--set", f"model.hf_model={tiny['encoder']}", "--set", "model.hidden=16",
            "--set", "data.corpora=[ravdess,emovo,casia]", "--set", "data.corpus_weights=[1,1,1]",
            "--set", "data.limit_per_class=2", "--set", "data.variants=0", "--set", "trainer.epochs=1"]
    assert main(args) == 0
    rows = {r["held_out"]: r for r in json.loads((tmp_path / "rep" / "loco.json").read_text())["loco"]}
    assert set(rows) == {"ravdess", "emovo", "casia"}
    assert rows["casia"]["n"] == 6 * 2 and rows["emovo"]["core"]["n"] == 4 * 2
