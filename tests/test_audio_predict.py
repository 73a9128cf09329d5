"""Predicting on recordings: the Python API and `mmfer predict`, good files and every kind of bad one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import RAVDESS, RAVDESS_CLIP, needs_ravdess, voice
from mmfer.audio.artifact import DEFAULT_AUDIO_MODEL
from mmfer.audio.io import AudioLoadError
from mmfer.audio.predictor import AudioEmotionRecognizer
from mmfer.cli.main import main
from mmfer.emotions import AUDIO_EMOTIONS, EMOTIONS
from mmfer.paths import WEIGHTS_DIR


@pytest.fixture(scope="module")
def rec() -> AudioEmotionRecognizer:
    return AudioEmotionRecognizer()


def _speechy(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Syllable-like bursts of a gliding harmonic tone with pauses."""
    rng = np.random.default_rng(seed)
    x = voice(180, seconds, sr, vibrato=25.0)
    env = (np.sin(2 * np.pi * 3 * np.arange(len(x)) / sr) > -0.2).astype(np.float32)
    return (x * env + rng.normal(0, 0.002, len(x))).astype(np.float32)


def test_shipped_model_card() -> None:
    card = json.loads((WEIGHTS_DIR / DEFAULT_AUDIO_MODEL / "card.json").read_text())
    assert card["kind"] == "audio" and tuple(card["classes"]) == AUDIO_EMOTIONS
    assert card["parameters"] < 2_000_000
    cv = card["metrics"]["cross_validation"]
    assert "actor-disjoint" in cv["protocol"] and 0 < cv["accuracy_mean"] <= 1
    assert sorted(a for f in cv["folds"] for a in f["test_actors"]) == list(range(1, 25))


@needs_ravdess
def test_api_on_a_real_clip(rec: AudioEmotionRecognizer) -> None:
    pred = rec.predict_file(RAVDESS_CLIP)
    assert pred.emotion in AUDIO_EMOTIONS and not pred.windows
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert set(pred.canonical) == set(EMOTIONS) and sum(pred.canonical.values()) == pytest.approx(1.0, abs=1e-4)
    assert pred.canonical["neutral"] == pytest.approx(pred.probabilities["neutral"] + pred.probabilities["calm"])
    assert 1.0 < pred.speech_s <= pred.duration_s


@needs_ravdess
def test_shipped_model_hears_strong_anger_of_actor_1(rec: AudioEmotionRecognizer) -> None:
    # The shipped model was trained on all actors, so this checks the export, not generalisation
    # (that is the cross-validation report's job).
    clips = sorted((RAVDESS / "audio_speech_actors_01-24" / "Actor_01").glob("03-01-05-02-*.flac"))
    preds = [rec.predict_file(c).emotion for c in clips]
    assert preds.count("angry") >= 3, preds


def test_silence_short_and_quiet_inputs(rec: AudioEmotionRecognizer, tmp_path: Path) -> None:
    silent = rec.predict_samples(np.zeros(32000, np.float32))
    assert silent.emotion is None and silent.low_confidence and "silent" in silent.notes[0]
    assert rec.predict_samples(np.full(32000, 1e-5, np.float32)).emotion is None
    short = rec.predict_samples(_speechy(0.3))
    assert short.emotion is not None and short.low_confidence
    assert any(n.startswith("too short") for n in short.notes)


def test_degraded_recordings_are_flagged(rec: AudioEmotionRecognizer, tmp_path: Path) -> None:
    x = _speechy(2.0, 8000)
    sf.write(tmp_path / "phone.wav", x, 8000)
    phone = rec.predict_file(tmp_path / "phone.wav")
    assert phone.emotion is not None and phone.low_confidence and any("8000 Hz" in n for n in phone.notes)
    sf.write(tmp_path / "clipped.wav", np.clip(_speechy(2.0) * 10, -1, 1), 16000)
    assert rec.predict_file(tmp_path / "clipped.wav").low_confidence
    y = _speechy(2.0)
    sf.write(tmp_path / "dc_stereo.wav", np.stack([y + 0.3, np.zeros_like(y)], 1), 16000, subtype="FLOAT")
    pred = rec.predict_file(tmp_path / "dc_stereo.wav")
    assert pred.emotion is not None
    assert any("DC offset" in n for n in pred.notes) and any("channel 2 of 2 is silent" in n for n in pred.notes)


def test_long_file_gets_a_timeline(rec: AudioEmotionRecognizer, tmp_path: Path) -> None:
    x = np.concatenate([_speechy(8.0), np.zeros(8 * 16000, np.float32), _speechy(9.0, seed=1)])
    sf.write(tmp_path / "long.flac", x, 16000)
    pred = rec.predict_file(tmp_path / "long.flac")
    assert pred.emotion is not None and len(pred.windows) == 7
    assert [w["start_s"] for w in pred.windows] == [0, 4, 8, 12, 16, 20, 24]
    assert pred.windows[2]["emotion"] is None and pred.windows[3]["emotion"] is None  # the silent gap
    assert pred.speech_s < pred.duration_s


def test_cli_batch_continues_past_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    sf.write(folder / "a_good.wav", _speechy(2.0), 16000)
    sf.write(folder / "b_silent.wav", np.zeros(16000, np.float32), 16000)
    (folder / "c_text.wav").write_text("this is a text file\n" * 10)
    (folder / "d_empty.flac").write_bytes(b"")
    sf.write(folder / "e_good.ogg", _speechy(1.5, 22050), 22050)
    code = main(["predict", str(folder), "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == 1 and doc["audio_model"] == DEFAULT_AUDIO_MODEL and doc["audio_classes"] == list(AUDIO_EMOTIONS)
    by_name = {Path(r["file"]).name: r for r in doc["results"]}
    assert list(by_name) == ["a_good.wav", "b_silent.wav", "c_text.wav", "d_empty.flac", "e_good.ogg"]
    assert by_name["a_good.wav"]["audio"]["emotion"] in AUDIO_EMOTIONS
    assert by_name["e_good.ogg"]["audio"]["emotion"] in AUDIO_EMOTIONS
    assert by_name["b_silent.wav"]["audio"]["emotion"] is None
    assert "text file" in by_name["c_text.wav"]["error"] and "empty file" in by_name["d_empty.flac"]["error"]
    assert "c_text.wav: is a text file" in captured.err and "Traceback" not in captured.err


def test_cli_plain_output_and_video_without_audio(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import av

    sf.write(tmp_path / "talk.wav", _speechy(2.0), 16000)
    with av.open(str(tmp_path / "mute.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    code = main(["predict", str(tmp_path / "talk.wav"), str(tmp_path / "mute.mp4")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "talk.wav  audio 2.0 s  -> " in out
    assert "mute.mp4: has no audio track" in err


def test_bad_audio_model_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sf.write(tmp_path / "talk.wav", _speechy(1.0), 16000)
    assert main(["predict", str(tmp_path / "talk.wav"), "--audio-model", str(tmp_path / "nothing")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    with pytest.raises(AudioLoadError):
        AudioEmotionRecognizer().predict_file(tmp_path / "missing.wav")


def test_cli_eval_on_a_labelled_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for label in ("anger", "calm"):
        (tmp_path / "clips" / label).mkdir(parents=True)
        for i in range(2):
            sf.write(tmp_path / "clips" / label / f"{i}.wav", _speechy(1.5, seed=i), 16000)
    (tmp_path / "clips" / "calm" / "broken.wav").write_text("not audio, just some notes\n")
    code = main(["eval", "audio", "--data-dir", str(tmp_path / "clips"), "--out", str(tmp_path / "rep")])
    out, err = capsys.readouterr()
    assert code == 0 and "n=4" in out and "skipped=1" in out and "broken.wav: is a text file" in err
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["n"] == 4 and rep["confusion"]["labels"] == list(AUDIO_EMOTIONS)
    assert sum(rep["per_class"][c]["support"] for c in AUDIO_EMOTIONS) == 4
    assert rep["per_class"]["angry"]["support"] == 2 and rep["per_class"]["calm"]["support"] == 2


def test_clips_too_short_to_score_get_a_note_not_a_crash(rec: AudioEmotionRecognizer, tmp_path: Path) -> None:
    for seconds in (0.0001, 0.01, 0.2):
        pred = rec.predict_samples(_speechy(seconds) if seconds > 0.001 else np.ones(2, np.float32))
        assert pred.emotion is None and pred.low_confidence
        assert pred.notes[-1].startswith("too short to score:"), pred.notes
    full = tmp_path / "full.wav"
    sf.write(full, _speechy(2.0), 16000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes(full.read_bytes()[:1000])  # the header promises 2 s
    cut = rec.predict_file(tmp_path / "cut.wav")
    assert cut.emotion is None and cut.notes[0].startswith("truncated") and "too short" in cut.notes[-1]
    click = np.zeros(16000, np.float32)
    click[8000:8016] = 0.9  # a click: trimming leaves a few frames, which the CNN still takes
    assert rec.predict_samples(click).emotion is not None
    with pytest.raises(ValueError, match="NaN or infinity"):
        rec.predict_samples(np.full(16000, np.nan, np.float32))


def test_header_that_understates_the_length_is_streamed(rec: AudioEmotionRecognizer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import mmfer.audio.io as audio_io

    sf.write(tmp_path / "wide.wav", np.tile(_speechy(6.0)[:, None], (1, 4)), 16000)
    monkeypatch.setattr(audio_io, "MAX_LOAD_VALUES", 4 * 16000 * 3)  # whole decoding refused past 3 s
    pred = rec.predict_file(tmp_path / "wide.wav")
    assert pred.emotion is not None and [w["start_s"] for w in pred.windows] == [0, 4]
