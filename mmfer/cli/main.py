"""The ``mmfer`` command: train, eval, predict, models.

Exit codes: 0 success; 1 some input failed (each named on stderr; the rest was processed);
2 bad usage, config or model (nothing was processed). An input that was read but gave no
prediction (silence, no face, too short) is not a failure; it is named on stderr with the reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from mmfer.paths import DEFAULT_AUDIO_MODEL

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def _add_clip_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip-model", default=None,
                   help="open_clip model name, hf-hub:org/repo or local-dir:/path, or hf:<hub id or folder> for a "
                        "transformers CLIPModel (default: $MMFER_CLIP_MODEL, else ViT-B-32)")
    p.add_argument("--clip-pretrained", default=None, help="open_clip pretrained tag or a local checkpoint file "
                   "(default: $MMFER_CLIP_PRETRAINED, else laion2b_s34b_b79k)")


_HF_MODEL = "a transformers checkpoint (hub id[@revision], hf:<id>, or a save_pretrained folder)"


_OFFLINE_HELP = ("download nothing (CLIP weights, transformers checkpoints, the YuNet detector): use local caches "
                 "only; what is not cached is reported unavailable and the rest runs (also MMFER_OFFLINE=1 or "
                 "HF_HUB_OFFLINE=1; --hf-offline is its old name)")


def _add_offline_option(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: not given after the command, `mmfer --offline <command>` (the top-level flag) still counts
    p.add_argument("--offline", "--hf-offline", dest="offline", action="store_true", default=argparse.SUPPRESS,
                   help=_OFFLINE_HELP)


def _add_hf_options(p: argparse.ArgumentParser) -> None:
    _add_offline_option(p)
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow transformers checkpoints that ship their own Python code (read it first)")


def _hf_kw(args: argparse.Namespace) -> dict[str, bool]:
    return {"local_files_only": bool(getattr(args, "offline", False)),
            "trust_remote_code": bool(getattr(args, "trust_remote_code", False))}


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--face-model", default=None,
                   help=f"face model: shipped name, mmfer model folder, or {_HF_MODEL} (default: face_lite0)")
    p.add_argument("--audio-model", default=None,
                   help=f"audio model: shipped name, mmfer model folder, or {_HF_MODEL} "
                        f"(default: {DEFAULT_AUDIO_MODEL})")
    p.add_argument("--temporal-model", default=None, help="temporal head (default: video_bigru_ckplus)")
    p.add_argument("--no-temporal", action="store_true", help="skip the temporal head")
    p.add_argument("--no-scene", action="store_true", help="skip the scene (CLIP) branch")
    _add_clip_options(p)
    p.add_argument("--scene-probe", help="a trained scene probe folder instead of zero-shot prompts")
    p.add_argument("--clip-download", action="store_true",
                   help="kept for old scripts; changes nothing: CLIP weights are downloaded on first use by default "
                        "(~600 MB for ViT-B-32), --offline forbids it")
    p.add_argument("--fusion", help="fusion card (default: the shipped mmfer/weights/fusion/fusion.json)")
    p.add_argument("--detector", default="auto", choices=["auto", "yunet", "haar"])
    p.add_argument("--yunet-model", help="YuNet ONNX file (default: $MMFER_YUNET_MODEL, cache, download)")
    p.add_argument("--device", default="auto")
    p.add_argument("--fps", type=float, default=10.0, help="video frames sampled per second")
    _add_hf_options(p)


def _pipeline(args: argparse.Namespace, **extra: object):  # noqa: ANN202 - EmotionPipeline
    from mmfer.pipeline import EmotionPipeline

    return EmotionPipeline(face_model=args.face_model, audio_model=args.audio_model,
                           temporal_model=args.temporal_model, temporal=not args.no_temporal, scene=not args.no_scene,
                           clip_model=args.clip_model, clip_pretrained=args.clip_pretrained,
                           scene_probe=args.scene_probe, clip_download=args.clip_download, fusion=args.fusion,
                           device=args.device, detector=args.detector, yunet_model=args.yunet_model,
                           sample_fps=args.fps, offline=args.offline or None,
                           trust_remote_code=args.trust_remote_code, **extra)


#: The pipeline a command's options ask for; public for the commands wired in by :mod:`mmfer.__main__`.
pipeline_from_args = _pipeline


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="dataset root (default: $MMFER_DATA_ROOT, then ./data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmfer", description="Multimodal emotion recognition.")
    parser.add_argument("--version", action="version", version=f"mmfer {_version()}")
    parser.add_argument("--offline", action="store_true", help=_OFFLINE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model from a YAML config")
    train.add_argument("modality", choices=["face", "audio", "video", "scene", "fusion"])
    train.add_argument("--config", required=True, help="configs/<modality>_*.yaml (scene: a CLIP probe recipe; "
                       "fusion: fitted weights over branch predictions, or an embedding head)")
    train.add_argument("--out", help="run folder (default: runs/<config name>)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set trainer.epochs=5 (repeatable)")
    train.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    train.add_argument("--fast-dev-run", action="store_true", help="one batch of train and val, no export")
    _add_offline_option(train)
    _add_data_root(train)

    ev = sub.add_parser("eval", help="evaluate: face on a FER-2013 split; audio by actor-disjoint cross-validation "
                                     "(--config) or a trained model on a folder of labelled recordings (--data-dir)")
    ev.add_argument("modality", choices=["face", "audio", "video"])
    ev.add_argument("--model", "--face-model", "--audio-model", dest="model", default=None,
                    help=f"shipped name, model folder or {_HF_MODEL} (default: face_lite0 / {DEFAULT_AUDIO_MODEL})")
    ev.add_argument("--config", help="audio/video: the training recipe to cross-validate (configs/audio_*.yaml, ...)")
    ev.add_argument("--folds", type=int, help="audio: number of actor-disjoint folds (default: the config's)")
    ev.add_argument("--loco", action="store_true", help="audio with data.corpora: leave-one-corpus-out (train on the "
                    "others, test on each corpus on the classes both sides know) instead of speaker-disjoint CV")
    ev.add_argument("--held-out", help="audio --loco: only these held-out corpora (comma-separated; default: each)")
    ev.add_argument("--data-dir", help="audio: <emotion>/<recordings> folder to score a trained --model on")
    ev.add_argument("--corpora", help="audio: score a trained --model on whole corpora under the data root "
                    "(e.g. emovo,casia), each on its own classes and on angry/happy/neutral/sad")
    ev.add_argument("--run-dir", help="audio CV: where fold models and checkpoints go (default: runs/<name>_cv)")
    ev.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="audio CV: override a config value (repeatable)")
    ev.add_argument("--split", default="PrivateTest", help="face: Training | PublicTest | PrivateTest")
    ev.add_argument("--labels", default="fer2013", choices=["fer2013", "ferplus"], help="label source")
    ev.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                    help="test-time augmentation: the mirrored face plus the centre zooms the model card lists")
    ev.add_argument("--out", help="report folder (default: reports/face/<model>/<split>)")
    ev.add_argument("--limit", type=int, help="first N samples only (quick checks)")
    _add_data_root(ev)
    _add_hf_options(ev)

    pr = sub.add_parser("predict", help="recognise emotions in images (every face), audio clips and folders")
    pr.add_argument("paths", nargs="+", help="image, audio or video files and/or folders (videos: their audio track)")
    pr.add_argument("--json", action="store_true", help="one JSON document on stdout")
    pr.add_argument("--no-detect", action="store_true", help="treat each image as an already cropped face")
    pr.add_argument("--model", "--face-model", dest="model", default=None,
                    help=f"face model: shipped name, model folder or {_HF_MODEL}")
    pr.add_argument("--audio-model", default=None,
                    help=f"audio model: shipped name, model folder or {_HF_MODEL} (default: {DEFAULT_AUDIO_MODEL})")
    _add_hf_options(pr)
    pr.add_argument("--detector", default="auto", choices=["auto", "yunet", "haar"])
    pr.add_argument("--yunet-model", help="YuNet ONNX file (default: $MMFER_YUNET_MODEL, cache, download)")
    pr.add_argument("--no-tta", action="store_true", help="no test-time augmentation (one view per face: faster)")
    pr.add_argument("--device", default="auto")

    tl = sub.add_parser("timeline", help="face emotion over time in videos: JSON, CSV and a plot for each")
    tl.add_argument("video", nargs="+", help="video files (MP4, MOV, AVI, MKV, WebM...)")
    tl.add_argument("--fps", type=float, default=10.0, help="frames sampled per second (0: every frame)")
    tl.add_argument("--smooth", type=float, default=0.5, help="moving-average window in seconds")
    tl.add_argument("--out", help="output folder (default: <video name>_timeline in the working directory); with "
                                  "several videos, the folder that holds a <video name>_timeline for each")
    tl.add_argument("--model", "--face-model", dest="model", default=None,
                    help=f"face model: shipped name, model folder or {_HF_MODEL}")
    _add_hf_options(tl)
    tl.add_argument("--detector", default="auto", choices=["auto", "yunet", "haar"])
    tl.add_argument("--yunet-model", help="YuNet ONNX file (default: $MMFER_YUNET_MODEL, cache, download)")
    tl.add_argument("--device", default="auto")
    tl.add_argument("--temporal", nargs="?", const="video_bigru_ckplus", default=None, metavar="MODEL",
                    help="add the clip-level prediction of a temporal head (default: the shipped video_bigru_ckplus)")

    sc = sub.add_parser("scene", help="emotion read from the scene context (CLIP: zero-shot prompts or a probe)")
    sc.add_argument("paths", nargs="+", help="image files and/or folders")
    _add_clip_options(sc)
    sc.add_argument("--probe", help="a trained probe folder (mmfer train scene); its card names the CLIP model")
    sc.add_argument("--prompts", help="YAML prompt set for zero-shot (templates + classes)")
    sc.add_argument("--whole-image", action="store_true", help="do not mask the faces (default: context only)")
    sc.add_argument("--detector", default="auto", choices=["auto", "yunet", "haar"])
    sc.add_argument("--yunet-model", help="YuNet ONNX file (default: $MMFER_YUNET_MODEL, cache, download)")
    sc.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sc.add_argument("--device", default="auto")
    _add_offline_option(sc)

    an = sub.add_parser("analyze", help="all branches that apply to each photo, audio clip or video, fused, with "
                                        "each modality's contribution")
    an.add_argument("paths", nargs="+", help="image, audio or video files and/or folders")
    _add_pipeline_options(an)
    an.add_argument("--json", action="store_true", help="one JSON document on stdout")
    an.add_argument("--fusion-head", metavar="DIR", help="also apply a trained embedding fusion head (mmfer train "
                    "fusion with method: embedding_head) to each file, with its cross-validated verdict")

    ab = sub.add_parser("ablate", help="face-only vs fused and every modality combination on the labelled sets")
    ab.add_argument("--sets", default=",".join(("fer2013", "ckplus", "ravdess")),
                    help="comma-separated: fer2013 (face+scene), ckplus (face+temporal), ravdess (audio)")
    ab.add_argument("--limit", type=int, help="fer2013: first N PrivateTest faces only (quick checks)")
    ab.add_argument("--out", default="reports/ablation", help="report folder")
    _add_pipeline_options(ab)
    _add_data_root(ab)

    ca = sub.add_parser("calibrate", help="fit the fusion card (temperatures, priors) on each branch's held-out "
                                          "predictions")
    ca.add_argument("--out", default=None, help="fusion card to write (default: the shipped one)")
    ca.add_argument("--face-model", default=None, help=f"shipped name, model folder or {_HF_MODEL}")
    ca.add_argument("--audio-model", default=DEFAULT_AUDIO_MODEL, help=f"shipped name, model folder or {_HF_MODEL}")
    _add_hf_options(ca)
    ca.add_argument("--temporal-model", default="video_bigru_ckplus")
    _add_data_root(ca)

    de = sub.add_parser("demo", help="the Gradio demo (photos, videos, audio, webcam) on 127.0.0.1")
    de.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to your network)")
    de.add_argument("--port", type=int, default=7860)
    de.add_argument("--max-upload-mb", type=float, default=50.0)
    de.add_argument("--max-video-s", type=float, default=60.0, help="longest video accepted")
    _add_pipeline_options(de)

    sub.add_parser("models", help="list the registered branches (modality, backend) and the shipped models")
    return parser


def _version() -> str:
    from mmfer import __version__

    return __version__


def _err(msg: str) -> None:
    print(f"mmfer: {msg}", file=sys.stderr)


def _input_errors() -> tuple[type[Exception], ...]:
    from mmfer.audio.io import AudioLoadError
    from mmfer.io.images import ImageLoadError
    from mmfer.io.media import MediaError
    from mmfer.video.io import VideoLoadError

    return ImageLoadError, AudioLoadError, VideoLoadError, MediaError


def _usage_errors() -> tuple[type[Exception], ...]:
    """Errors about the command itself (config, model, data root): they stop the run with exit code 2."""
    from mmfer.config import ConfigError
    from mmfer.core.errors import ModelLoadError
    from mmfer.data.fer2013 import DatasetError
    from mmfer.fusion.embedding_head import HeadError
    from mmfer.fusion.late_fusion import FusionError
    from mmfer.scene.clip_encoder import SceneEncoderUnavailable
    from mmfer.scene.probe import ProbeError

    return ConfigError, DatasetError, ModelLoadError, SceneEncoderUnavailable, ProbeError, FusionError, HeadError


class _Batch:
    """The per-file results of one command. A file that fails is named on stderr and recorded with its
    error, and the batch goes on: unreadable inputs give their own message; anything else unexpected is
    an internal error for that file (MMFER_DEBUG=1 re-raises it, with its traceback). Usage errors
    (config, model, data root) still stop the command."""

    def __init__(self) -> None:
        self.results: list[dict] = []
        self.failed = 0

    def run(self, path: Path, work, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        """``work(*args, **kwargs)`` for one input file, or None when it failed (already reported)."""
        try:
            return work(*args, **kwargs)
        except _input_errors() as exc:
            error = str(exc)
        except _usage_errors():
            raise
        except MemoryError:
            error = f"{path}: not enough memory to process this file"
        except Exception as exc:  # noqa: BLE001 - see the docstring
            if os.environ.get("MMFER_DEBUG"):
                raise
            detail = " ".join(str(exc).split())[:300]
            error = (f"{path}: internal error ({type(exc).__name__}: {detail}); please report it with this file "
                     "(MMFER_DEBUG=1 shows the traceback)")
        self.failed += 1
        _err(error)
        self.results.append({"file": str(path), "error": error})
        return None

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def _load_cfg(args: argparse.Namespace, cls: type):  # noqa: ANN202 - an instance of cls
    """The --config file with --set overrides and --data-root applied."""
    from mmfer.config import load_config

    overrides = list(args.overrides) + ([f"data.root={args.data_root}"] if args.data_root else [])
    return load_config(args.config, cls, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    if args.modality == "audio":
        return _train_audio(args)
    if args.modality == "fusion":
        return _train_fusion(args)
    if args.modality == "scene":
        from mmfer.config import SceneTrainCfg
        from mmfer.training.train_scene_probe import train_scene_probe

        cfg = _load_cfg(args, SceneTrainCfg)
        path, m = train_scene_probe(cfg, Path(args.out) if args.out else Path("runs") / cfg.name)
        print(f"probe written to {path}; {m['dataset']} {m['test_split']} ({m['test']} images): accuracy "
              f"{m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} (zero-shot prompts: {m['zero_shot_accuracy']:.4f})")
        return EXIT_OK
    if args.modality == "video":
        from mmfer.config import VideoTrainCfg
        from mmfer.training.train_video import train_video

        cfg = _load_cfg(args, VideoTrainCfg)
        path = train_video(cfg, Path(args.out) if args.out else Path("runs") / cfg.name)
        print(f"model written to {path}")
        return EXIT_OK
    from mmfer.config import FaceTrainCfg
    from mmfer.training.train_face import train_face

    cfg: FaceTrainCfg = _load_cfg(args, FaceTrainCfg)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    metrics = train_face(cfg, out, resume=not args.no_resume, fast_dev_run=args.fast_dev_run)
    if metrics:
        print(f"model written to {out / 'model'}; PublicTest accuracy {metrics['PublicTest']['accuracy']:.4f}")
        print(f"evaluate it: mmfer eval face --model {out / 'model'} --split PrivateTest --tta")
    return EXIT_OK


def _train_fusion(args: argparse.Namespace) -> int:
    from mmfer.config import FusionTrainCfg, config_from, read_config

    doc = read_config(args.config, list(args.overrides))  # read once; its method picks the schema
    if doc.get("method") == "embedding_head":
        from mmfer.training.train_fusion_head import train_fusion_head

        name = doc.get("name", Path(args.config).stem)
        out = Path(args.out) if args.out else Path("runs") / str(name)
        result = train_fusion_head(doc, out, data_root=args.data_root)
        print(json.dumps(result, indent=2, default=str))
        return EXIT_OK
    from mmfer.training.train_fusion import train_fusion

    # the weights fit reads branch predictions, not a data root: --data-root does not apply to it
    cfg = config_from(args.config, FusionTrainCfg, doc)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    path, rule = train_fusion(cfg, out)
    s = rule.scores
    singles = ", ".join(f"{m} {100 * a:.1f}%" for m, a in s["single_accuracy"].items())
    print(f"{'+'.join(rule.modalities)} on {rule.data} ({s['n']} samples, {s['folds']})")
    print(f"  single branches: {singles}; fitted fusion, cross-validated: {100 * s['fused_cv_accuracy']:.1f}%; "
          f"the whole procedure, nested CV: {100 * s['nested_accuracy']:.1f}%")
    print(f"  verdict: {rule.verdict}")
    print(f"fusion card written to {path} (report beside it); mmfer predict/analyze --fusion {path} uses it")
    return EXIT_OK


def _train_audio(args: argparse.Namespace) -> int:
    from mmfer.config import AudioTrainCfg
    from mmfer.training.train_audio import train_audio

    cfg: AudioTrainCfg = _load_cfg(args, AudioTrainCfg)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    path = train_audio(cfg, out, resume=not args.no_resume, fast_dev_run=args.fast_dev_run)
    if path:
        print(f"model written to {path}")
        print(f"its speaker-independent accuracy: mmfer eval audio --config {args.config}")
    return EXIT_OK


def _audio_model_name(args: argparse.Namespace) -> str:
    """The --model's name for report folders (a folder's or hub id's last part; the default's name)."""
    return Path(args.model.split("@")[0]).name if args.model else DEFAULT_AUDIO_MODEL


def _eval_audio(args: argparse.Namespace) -> int:
    from mmfer.config import AudioTrainCfg, ConfigError

    if args.data_dir:
        from mmfer.evaluation.audio_eval import evaluate_audio_folder

        name = _audio_model_name(args)
        rep = evaluate_audio_folder(args.model, args.data_dir,
                                    args.out or Path("reports") / "audio" / name / Path(args.data_dir).name,
                                    **_hf_kw(args))
        print(f"{args.data_dir}: accuracy {rep['accuracy']:.4f}  macro-F1 {rep['macro_f1']:.4f}  n={rep['n']}  "
              f"skipped={len(rep['skipped'])}")
        for line in rep["skipped"]:
            _err(f"skipped {line}")
        for name, path in rep.get("paths", {}).items():
            print(f"  {name}: {path}")
        return EXIT_OK
    if args.corpora:
        from mmfer.evaluation.audio_eval import evaluate_audio_corpora

        name = _audio_model_name(args)
        res = evaluate_audio_corpora(args.model, args.corpora, args.data_root,
                                     args.out or Path("reports") / "audio" / name / "corpora", **_hf_kw(args))
        for r in res["corpora"]:
            _print_corpus_row(r["corpus"], r["language"], r)
        if res["skipped"]:
            _err(f"skipped {len(res['skipped'])} clips, e.g. {res['skipped'][0]}")
        print(f"  report: {res['paths']['markdown']}")
        return EXIT_OK
    if not args.config:
        raise ConfigError("eval audio needs --config (cross-validate a recipe), --data-dir or --corpora (score a "
                          "trained model)")
    from mmfer.evaluation.audio_eval import write_cv_report
    from mmfer.training.train_audio import cross_validate

    cfg: AudioTrainCfg = _load_cfg(args, AudioTrainCfg)
    if args.loco:
        return _eval_audio_loco(args, cfg)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{cfg.name}_cv"
    cv = cross_validate(cfg, run_dir, folds=args.folds)
    out = Path(args.out) if args.out else Path("reports") / "audio" / cfg.name
    paths = write_cv_report(cv, out, cfg, run_dir)
    agg = cv["aggregate"]["metrics"]
    kind = "speaker-disjoint" if cfg.data.corpora else "actor-disjoint"
    print(f"{kind} {len(cv['folds'])}-fold CV: accuracy {agg['accuracy']['mean']:.4f} ± "
          f"{agg['accuracy']['std']:.4f}  macro-F1 {agg['macro_f1']['mean']:.4f} ± {agg['macro_f1']['std']:.4f}")
    for r in cv.get("per_corpus") or []:
        _print_corpus_row(r["corpus"], r["language"], r)
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return EXIT_OK


def _eval_audio_loco(args: argparse.Namespace, cfg: object) -> int:
    from mmfer.evaluation.audio_eval import write_loco_report
    from mmfer.training.train_audio import leave_one_corpus_out

    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{cfg.name}_loco"  # type: ignore[attr-defined]
    held = [c.strip().lower() for c in args.held_out.split(",") if c.strip()] if args.held_out else None
    res = leave_one_corpus_out(cfg, run_dir, held_out=held)  # type: ignore[arg-type]
    paths = write_loco_report(res, args.out or Path("reports") / "audio" / cfg.name)  # type: ignore[attr-defined]
    for r in res["loco"]:
        _print_corpus_row(f"held out {r['held_out']}", r["language"], {"own": r, "core": r.get("core")})
    print(f"  report: {paths['markdown']}")
    return EXIT_OK


def _print_corpus_row(name: str, language: str, row: dict) -> None:
    o, c = row["own"], row.get("core")
    line = (f"{name} ({language}, {len(o['classes'])} classes, n={o['n']}): accuracy {o['accuracy']:.4f}  "
            f"UAR {o['uar']:.4f}  macro-F1 {o['macro_f1']:.4f}")
    if c:
        line += f"  | 4-class accuracy {c['accuracy']:.4f}  UAR {c['uar']:.4f}"
    print(line)


def _eval_video(args: argparse.Namespace) -> int:
    from mmfer.config import ConfigError, VideoTrainCfg
    from mmfer.evaluation.video_eval import write_video_cv_report
    from mmfer.training.train_video import cross_validate_video

    if not args.config:
        raise ConfigError("eval video needs --config (the recipe to cross-validate, e.g. "
                          "configs/video_ckplus_cpu.yaml)")
    cfg = _load_cfg(args, VideoTrainCfg)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{cfg.name}_cv"
    cv = cross_validate_video(cfg, run_dir)
    out = Path(args.out) if args.out else Path("reports") / "video" / cfg.name
    paths = write_video_cv_report(cv, out, cfg)
    a, b = cv["aggregate"]["metrics"]["accuracy"], cv["baseline"]["metrics"]["accuracy"]
    print(f"leave-one-subject-out CV ({cv['n_clips']} clips, {cv['n_subjects']} subjects): temporal head accuracy "
          f"{a['mean']:.4f} ± {a['std']:.4f}; per-frame face model averaged over the clip "
          f"{b['mean']:.4f} ± {b['std']:.4f}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    if args.modality == "audio":
        return _eval_audio(args)
    if args.modality == "video":
        return _eval_video(args)
    from mmfer.evaluation.face_eval import evaluate_face

    face = _command_pipeline(args, temporal=False, scene=False, tta_flip=bool(args.tta)).require("face")
    rep = evaluate_face(args.model, split=args.split, data_root=args.data_root, labels=args.labels,
                        tta_flip=args.tta, out_dir=args.out, limit=args.limit, face=face, **_hf_kw(args))
    print(f"{args.split}: accuracy {rep['accuracy']:.4f}  macro-F1 {rep['macro_f1']:.4f}  n={rep['n']}")
    for name, path in rep.get("paths", {}).items():
        print(f"  {name}: {path}")
    return EXIT_OK


def _expand_inputs(paths: list[str], probe: bool = True) -> list[tuple[Path, str]]:
    """(file, "image" | "audio") for explicit files and the image/audio/video files inside folders. Explicit
    files are routed by their content (a video counts as audio here: its audio track); folders are walked
    by file name. ``probe=False``: explicit files are listed unread (kind "image"), for a caller that
    routes them itself."""
    from mmfer.audio.io import is_audio_path
    from mmfer.io.images import IMAGE_SUFFIXES
    from mmfer.io.media import IMAGE, MediaError, media_kind

    out = []
    for item in paths:
        p = Path(item)
        if not p.is_dir():
            if not probe:
                out.append((p, IMAGE))
                continue
            try:
                kind = media_kind(p)
            except MediaError:  # missing, empty, not a regular file: the image reader names the problem
                kind = IMAGE
            out.append((p, "image" if kind == IMAGE else "audio"))
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                fp = Path(root) / f
                if f.startswith("."):
                    continue
                if fp.suffix.lower() in IMAGE_SUFFIXES:
                    out.append((fp, "image"))
                elif is_audio_path(fp):
                    out.append((fp, "audio"))
    return out


def _command_pipeline(args: argparse.Namespace, **kw: object):  # noqa: ANN202 - EmotionPipeline
    """The pipeline for a single-branch command (predict, timeline, scene, eval), from its own options."""
    from mmfer.pipeline import EmotionPipeline

    opts: dict = {"face_model": getattr(args, "model", None), "audio_model": getattr(args, "audio_model", None),
                  "detector": getattr(args, "detector", "auto"), "yunet_model": getattr(args, "yunet_model", None),
                  "device": getattr(args, "device", "auto"), "offline": getattr(args, "offline", False) or None,
                  "trust_remote_code": bool(getattr(args, "trust_remote_code", False))}
    return EmotionPipeline(**{**opts, **kw})


def cmd_predict(args: argparse.Namespace) -> int:
    inputs = _expand_inputs(args.paths)
    pipe = _command_pipeline(args, temporal=False, scene=False, tta_flip=False if args.no_tta else None)
    used_face = used_audio = False
    batch = _Batch()
    results = batch.results
    for path, kind in inputs:
        if kind == "audio":
            pipe.require("audio")  # a model that cannot load stops the command (not one line per file)
            used_audio = True
            out = batch.run(path, pipe.audio, path)
            if out is None:
                continue
            pred = out.details
            if pred.emotion is None:
                _err(f"{path}: {'; '.join(pred.notes) or 'nothing to classify'}")
            results.append({"file": str(path), "audio": pred.to_dict()})
            if not args.json:
                _print_audio(path, pred)
            continue
        pipe.require("face")
        used_face = True
        faces = batch.run(path, _faces_in, pipe, path, not args.no_detect)
        if faces is None:
            continue
        if not faces:
            _err(f"{path}: no face found")
        results.append({"file": str(path), "faces": [f.to_dict() for f in faces]})
        if not args.json:
            _print_faces(path, faces)
    if not results:
        _err("no image, audio or video files found in " + ", ".join(args.paths))
        return EXIT_SOME_FAILED
    if args.json:
        doc: dict = {}
        if used_face:
            face = pipe.require("face")
            doc.update({"model": face.name, "backend": face.card.get("backend", "mmfer"),
                        "detector": None if args.no_detect else pipe.detector.backend, "classes": list(face.classes)})
        if used_audio:
            audio = pipe.require("audio")
            doc.update({"audio_model": audio.name, "audio_classes": list(audio.classes)})
        doc["results"] = results
        print(json.dumps(doc, indent=2))
    return batch.exit_code


def _faces_in(pipe, path: Path, detect: bool) -> list:  # noqa: ANN001 - EmotionPipeline
    from mmfer.io.images import load_image

    return pipe.faces([load_image(path)], detect=detect)[0]


def _print_audio(path: Path, pred) -> None:  # noqa: ANN001 (AudioPrediction, imported lazily)
    if pred.emotion is None:
        return
    probs = "  ".join(f"{k} {v:.2f}" for k, v in sorted(pred.probabilities.items(), key=lambda kv: -kv[1]))
    flag = "  [low confidence]" if pred.low_confidence else ""
    span = f"{pred.duration_s:.1f} s" + (f", {len(pred.windows)} windows" if pred.windows else "")
    print(f"{path}  audio {span}  -> {pred.emotion} ({pred.confidence:.2f}){flag}  [{probs}]")
    for note in pred.notes:
        print(f"    note: {note}")


def _print_faces(path: Path, faces: list) -> None:
    for i, f in enumerate(faces):
        box = "whole image" if f.box is None else "box x={} y={} w={} h={}".format(*f.box)
        probs = "  ".join(f"{k} {v:.2f}" for k, v in sorted(f.probabilities.items(), key=lambda kv: -kv[1]))
        print(f"{path}  face {i + 1}/{len(faces)}  {box}  -> {f.emotion} ({f.confidence:.2f})  [{probs}]")


def _timeline_dirs(videos: list[Path], out: str | None) -> list[Path]:
    """One output folder per video: --out itself for a single video, else <--out or .>/<stem>_timeline
    (with the parent folder's name added where two videos share a stem)."""
    if len(videos) == 1:
        return [Path(out) if out else Path(f"{videos[0].stem}_timeline")]
    base = Path(out) if out else Path(".")
    stems = [v.stem for v in videos]
    dirs: list[Path] = []
    for v in videos:
        name = f"{v.stem}_timeline" if stems.count(v.stem) == 1 else f"{v.parent.name}_{v.stem}_timeline"
        while base / name in dirs:
            name += "_"
        dirs.append(base / name)
    return dirs


def cmd_timeline(args: argparse.Namespace) -> int:
    pipe = _command_pipeline(args, scene=False, temporal=bool(args.temporal), temporal_model=args.temporal,
                             sample_fps=args.fps or None)
    pipe.require("face")
    if args.temporal:
        pipe.require("temporal")  # asked for: a head that cannot load stops the command
    videos = [Path(v) for v in args.video]
    batch = _Batch()
    for video, out in zip(videos, _timeline_dirs(videos, args.out), strict=True):
        tl = batch.run(video, pipe.timeline, video, args.smooth)
        if tl is not None:
            _print_timeline(video, tl, args.fps, tl.write(out))
    return batch.exit_code


def _print_timeline(video: Path, tl, fps: float, paths: dict[str, Path]) -> None:  # noqa: ANN001 - VideoTimeline
    d = tl.to_dict()
    info = tl.info
    print(f"{video}: {info.duration_s or 0:.1f} s at {info.fps or 0:.1f} fps, {d['frames_used']} frames used "
          f"({fps or 'all'}/s), face in {d['frames_with_face']}, {len(tl.tracks)} track(s)")
    if d["emotion"]:
        probs = "  ".join(f"{k} {v:.2f}" for k, v in sorted(d["mean_probabilities"].items(), key=lambda kv: -kv[1]))
        print(f"  main face, clip mean -> {d['emotion']}  [{probs}]")
    else:
        _err(f"{video}: no face found in any sampled frame")
    if tl.temporal:
        ranked = sorted(tl.temporal["probabilities"].items(), key=lambda kv: -kv[1])
        probs = "  ".join(f"{k} {v:.2f}" for k, v in ranked)
        print(f"  temporal head ({tl.temporal['model']}) -> {tl.temporal['emotion']}  [{probs}]")
    for note in tl.notes:
        print(f"  note: {note}")
    for name, path in paths.items():
        print(f"  {name}: {path}")


def cmd_scene(args: argparse.Namespace) -> int:
    from mmfer.emotions import EMOTIONS
    from mmfer.io.images import IMAGE_SUFFIXES, load_image

    pipe = _command_pipeline(args, temporal=False, clip_model=args.clip_model, clip_pretrained=args.clip_pretrained,
                             scene_probe=args.probe, scene_prompts=args.prompts)
    scene = pipe.require("scene")
    files = [f for item in args.paths for f in (sorted(q for q in Path(item).rglob("*")
             if q.suffix.lower() in IMAGE_SUFFIXES) if Path(item).is_dir() else [Path(item)])]
    batch = _Batch()
    results = batch.results

    def score(path: Path) -> tuple[list, object]:
        bgr = load_image(path)
        boxes = [] if args.whole_image else [f.box for f in pipe.detector.detect(bgr)]
        return boxes, pipe.scene([bgr], [boxes]).probs

    for path in files:
        out = batch.run(path, score, path)
        if out is None:
            continue
        boxes, probs = out
        ranked = sorted(zip(EMOTIONS, probs.tolist(), strict=True), key=lambda kv: -kv[1])
        results.append({"file": str(path), "emotion": ranked[0][0], "faces_masked": len(boxes),
                        "probabilities": {k: round(v, 4) for k, v in ranked}})
        if not args.json:
            masked = "whole image" if args.whole_image else f"{len(boxes)} face(s) masked"
            print(f"{path}  scene ({masked}) -> {ranked[0][0]} ({ranked[0][1]:.2f})  ["
                  + "  ".join(f"{k} {v:.2f}" for k, v in ranked) + "]")
    if not results:
        _err("no image files found in " + ", ".join(args.paths))
        return EXIT_SOME_FAILED
    if args.json:
        clip = scene.card["clip"]
        print(json.dumps({"clip_model": clip["model"], "pretrained": clip["pretrained"],
                          "classifier": f"probe {args.probe}" if args.probe else "zero-shot prompts",
                          "results": results}, indent=2))
    return batch.exit_code


def cmd_analyze(args: argparse.Namespace) -> int:
    head = None
    if args.fusion_head:
        from mmfer.fusion.embedding_head import EmbeddingHead

        head = EmbeddingHead.load(args.fusion_head)  # a bad folder is the error to report, before any work
    pipe = _pipeline(args)
    inputs = _expand_inputs(args.paths, probe=False)  # pipe.analyze decides each file's kind as it opens it
    batch = _Batch()
    results = batch.results
    for path, _kind in inputs:
        a = batch.run(path, pipe.analyze, path)
        if a is None:
            continue
        if a.fused is None:
            _err(f"{a.source}: no prediction ({'; '.join(f'{m}: {w}' for m, w in a.skipped.items())})")
        results.append(a.to_dict())
        if not args.json:
            _print_analysis(a)
        if head is not None:
            _apply_head(head, path, pipe, results[-1], args.json)
    if not results:
        _err("no image, audio or video files found in " + ", ".join(args.paths))
        return EXIT_SOME_FAILED
    if args.json:
        print(json.dumps({"branches": pipe.status(), "results": results}, indent=2))
    return batch.exit_code


def _apply_head(head: object, path: str, pipe: object, doc: dict, quiet: bool) -> None:
    from mmfer.training.train_fusion_head import predict_file

    verdict = head.card.get("verdict", {})  # type: ignore[attr-defined]
    try:
        pred = predict_file(head, path, pipe)
    except (ValueError, RuntimeError, OSError) as exc:  # HeadError, DatasetError, unreadable: reported per file
        doc["fusion_head"] = {"error": str(exc)}
        if not quiet:
            print(f"    fusion head: not applied ({exc})")
        return
    doc["fusion_head"] = {**pred.to_dict(), "verdict": verdict}
    if not quiet:
        print(f"    fusion head -> {pred.emotion} ({pred.probabilities.max():.2f}) from {', '.join(pred.present)}; "
              f"{verdict.get('reason', 'no verdict')}")


def _print_analysis(a) -> None:  # noqa: ANN001 (Analysis, imported lazily)
    d = a.to_dict()
    if a.fused is None:
        print(f"{a.source}  {a.kind}: no prediction ({'; '.join(f'{m}: {w}' for m, w in a.skipped.items())})")
        return
    f = d["fused"]
    print(f"{a.source}  {a.kind} -> {f['emotion']} ({f['probabilities'][f['emotion']]:.2f})  fused from "
          + ", ".join(f"{m} {d['branches'][m]['emotion']}" for m in f["modalities"]))
    pushes = ", ".join(f"{m} {v:+.2f}" for m, v in f["push_to_winner"].items())
    print(f"    push towards {f['emotion']} (log-odds vs the average class): {pushes}")
    print("    weights: " + ", ".join(f"{m} {w:.2f}" for m, w in f["weights"].items()) + f"  ({f['rule']})")
    for m, why in f["notes"].items():
        print(f"    {m}: {why}")
    if a.kind == "image" and len(a.faces) > 1:
        for face in a.faces:
            print(f"    face {face['index'] + 1}: box {face['box']} -> face {face['emotion']}, "
                  f"fused {face['fused']['emotion']}")
    for m, why in a.skipped.items():
        print(f"    {m}: skipped ({why})")
    for note in a.notes:
        print(f"    note: {note}")


def cmd_ablate(args: argparse.Namespace) -> int:
    from mmfer.config import ConfigError
    from mmfer.evaluation.ablation import (
        SETS,
        ablate,
        ckplus_set,
        fer2013_set,
        ravdess_recordings_set,
        ravdess_set,
        write_ablation,
    )

    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SETS))
    if unknown or not names:
        raise ConfigError(f"unknown --sets {unknown or names}; choose from {', '.join(SETS)}")
    pipe = _pipeline(args)
    hf_face = pipe.require("face").backend == "transformers"
    hf_audio = args.audio_model is not None and pipe.require("audio").backend == "transformers"
    # (loading them enters a model the fusion card was not fitted for uncalibrated, and says so)
    sets = []
    for name in names:
        if name == "fer2013":
            sets.append(fer2013_set(args.face_model, args.data_root, args.limit, pipe, **_hf_kw(args)))
        elif name == "ckplus":
            if hf_face:
                _err("ckplus: skipped; the temporal head's held-out predictions belong to mmfer's own face CNN")
                continue
            sets.append(ckplus_set(args.temporal_model or "video_bigru_ckplus", args.face_model))
        elif hf_audio:
            sets.append(ravdess_recordings_set(pipe, args.data_root, args.limit))
        else:
            sets.append(ravdess_set(args.audio_model or DEFAULT_AUDIO_MODEL))
    result = ablate(pipe.fusion, sets)
    for h in result["headline"]:
        face = "—" if h["face"] is None else f"{100 * h['face']['accuracy']:.1f}%"
        best, fused = h["best_single"], h["fused"]
        print(f"{h['set']} ({h['n']}): face only {face}; best single {best['modalities']} "
              f"{100 * best['accuracy']:.1f}%; fused {fused['modalities']} {100 * fused['accuracy']:.1f}% "
              f"(McNemar p {h['mcnemar']['p']:.3g})")
    paths = write_ablation(result, args.out)
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from mmfer.pipeline import DEFAULT_FUSION
    from mmfer.training.fit_fusion import build_fusion, keep_fitted

    pipe = _command_pipeline(args, face_model=args.face_model, audio_model=args.audio_model, temporal=False,
                             scene=False, tta_flip=None)
    fusion = build_fusion(args.face_model, args.data_root, args.audio_model, args.temporal_model, pipeline=pipe,
                          **_hf_kw(args))
    fusion, kept = keep_fitted(fusion, Path(args.out or DEFAULT_FUSION))
    path = fusion.save(args.out or DEFAULT_FUSION)
    for m, c in fusion.modalities.items():
        cal = c.calibration or {}
        if "temperature" in cal:
            print(f"{m:8s} T={c.temperature:.3f} weight={c.weight:g}  ECE {cal['ece_before']:.4f} -> "
                  f"{cal['ece_after']:.4f} on {cal['source']}; held out {cal.get('held_out_ece_before', 0):.4f} -> "
                  f"{cal.get('held_out_ece_after', 0):.4f}")
        else:
            print(f"{m:8s} T={c.temperature:.3f} weight={c.weight:g}  ({cal.get('source', 'uncalibrated')})")
    for line in kept:
        print(line)
    print(f"fusion card written to {path}")
    return EXIT_OK


def cmd_models(_: argparse.Namespace) -> int:
    from mmfer.branches import list_branches
    from mmfer.paths import WEIGHTS_DIR

    print("branches (modality / backend: the model names it reads):")
    for e in list_branches():
        default = f" [default {e.default}]" if e.default else ""
        print(f"  {e.modality:8s} {e.backend:12s} {e.specs}{default}")
    from mmfer.core.models import list_models

    print("architectures (family/arch, built from a config by mmfer.core.models.create_model): "
          + ", ".join(list_models()))
    print("shipped models:")

    for card_path in sorted(WEIGHTS_DIR.glob("*/card.json")):
        card = json.loads(card_path.read_text())
        metrics = card.get("metrics", {})
        if card.get("kind") == "audio":
            cv = metrics.get("cross_validation", {})
            score = (f"{cv.get('protocol', 'CV')} acc {cv['accuracy_mean']:.4f} ± {cv['accuracy_std']:.4f}"
                     if "accuracy_mean" in cv else "no CV score")
        else:
            acc = metrics.get("PrivateTest", {}).get("accuracy")
            score = f"PrivateTest acc {acc if acc is None else f'{acc:.4f}'}"
        params = card.get("parameters", 0) / 1e6
        print(f"  {card_path.parent.name:20s} {card.get('kind', '?'):6s} {params:.2f}M params  {score}")
    return EXIT_OK


def main(argv: list[str] | None = None, commands: Mapping[str, Callable[[argparse.Namespace], int]] | None = None
         ) -> int:
    """Run one command. ``commands`` adds handlers for commands whose code sits above the command line
    (``demo``: the Gradio app, an interface of its own); :func:`mmfer.__main__.main`, the ``mmfer``
    entry point, passes them, so this module never imports the demo."""
    args = build_parser().parse_args(argv)
    args.hf_offline = args.offline  # the old name, for handlers that still read it
    if args.offline:  # every download, in this process and its children (huggingface_hub itself too)
        os.environ["MMFER_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(format="mmfer: %(message)s", level=logging.WARNING)  # e.g. the detector's fallback note

    handlers = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "models": cmd_models,
                "timeline": cmd_timeline, "scene": cmd_scene, "analyze": cmd_analyze, "ablate": cmd_ablate,
                "calibrate": cmd_calibrate, **(commands or {})}
    if args.command not in handlers:
        _err(f"{args.command}: run it through the mmfer command (or python -m mmfer)")
        return EXIT_USAGE
    try:
        return handlers[args.command](args)
    except _usage_errors() as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted (training can be resumed by running the same command again)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
