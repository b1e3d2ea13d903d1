"""Small-image classifiers (28-64 px) with one interface, MC dropout and a gradient-reversal group head.

Every model is a :class:`Classifier`: it takes images in [0, 1] pixel space, so attacks and their eps live
in pixel space, and normalises them inside with per-channel ``mean`` / ``std`` buffers. It splits into

- ``features(x) -> z [N, D]``: normalisation and the convolutional trunk, flattened or globally pooled;
- ``head(z) -> logits [N, C]``: every fully connected layer (and every dropout layer, for ``vgg_mc`` and
  ``small_cnn``), so MC dropout can run the trunk once and sample the head ``T`` times;
- ``forward(x) = head(features(x))``; attributes ``feature_dim`` (D), ``num_classes`` (C), ``in_channels``,
  ``image_size``.

| name | architecture | source |
|---|---|---|
| ``mobilenetv2`` | torchvision MobileNetV2, stem and stage-2 strides 1, global pool, 1280 -> C | Sandler et al. 2018; JIN paper §4.1 |
| ``resnet18`` | torchvision ResNet-18, 3x3 stride-1 stem, no max-pool (CIFAR style) | He et al. 2016; JIN paper Table 7 |
| ``lenet5`` | LeNet-5 with ReLU and max-pool, 400 -> 120 -> 84 -> C | LeCun et al. 1998 |
| ``alexnet_small`` | CIFAR-size AlexNet, 5 convs + 3 FC | Krizhevsky et al. 2012 |
| ``utkface_cnn`` | Nanda et al.'s UTKFace classifier (two convs, 256-unit FC) | Nanda et al. 2021; FARMUR paper |
| ``vgg_mc`` | VGG with BatchNorm, dropout only in its 3-layer head (MC dropout) | Simonyan & Zisserman 2015; BALD+GRAD (Branchaud-Charron et al.) |
| ``small_cnn`` | three convs, ~60k parameters, optional head dropout | tests and smoke profiles |

Torchvision models are always built with ``weights=None``: nothing is ever downloaded. All models run
under ``channels_last`` and bf16 autocast on CUDA (normalisation keeps the input's memory format).

Gradient reversal (GRAD, Raff & Sylvester 2018, used by BALD+GRAD (Branchaud-Charron et al.)): :func:`grad_reverse` and
:class:`GRADModel`, whose group head sees the features through the reversal layer.

Batch-norm folding: :class:`FoldedTwin`, an attack-only eval-mode copy with each batch norm folded into the
convolution before it (the same function with fewer layers), for the attacks of training, inference and DeepFool.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import math
import operator
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.dropout import _DropoutNd

__all__ = [
    "MODELS",
    "FoldedTwin",
    "frozen_copy",
    "Classifier",
    "MobileNetV2",
    "ResNet18",
    "LeNet5",
    "AlexNetSmall",
    "UTKFaceCNN",
    "VGGMC",
    "SmallCNN",
    "GRADModel",
    "GradReverse",
    "grad_reverse",
    "make_model",
    "mc_dropout",
    "has_dropout_only_in_head",
]

DEFAULT_MEAN = 0.5  # per channel; with DEFAULT_STD maps [0, 1] onto [-1, 1] whatever the data set
DEFAULT_STD = 0.5
MIN_IMAGE_SIZE = 8


# --------------------------------------------------------------------------------------------- helpers
def _check_int(name: str, value, minimum: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def _check_prob(name: str, p) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {p}")
    return p


def _channel_stat(name: str, value, channels: int, default: float) -> torch.Tensor:
    """A ``[1, C, 1, 1]`` float tensor from None, a number or a length-C sequence."""
    if value is None:
        value = default
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(channels).clone()
    if t.numel() != channels:
        raise ValueError(f"{name} must be a number or {channels} per-channel values, got {t.numel()} values")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t.view(1, channels, 1, 1)


def _conv_out(size: int, kernel: int, *, stride: int = 1, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _init_convs(module: nn.Module) -> None:
    """He initialisation (fan-out, ReLU) for convolutions, unit/zero BatchNorm, as torchvision does for ResNet/VGG."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------------------ base class
class Classifier(nn.Module):
    """Base class: ``forward(x) = head(features(x))`` on images in [0, 1].

    Subclasses build ``self.trunk`` (normalised image ``[N, C_in, H, W]`` -> ``[N, D]``) and ``self.head``
    (``[N, D]`` -> logits ``[N, C]``) and set ``self.feature_dim = D``.

    Args:
        num_classes: C, number of output logits (>= 2).
        in_channels: image channels (3 for RGB, 1 for grey).
        image_size: image side in pixels the model is built for (models with global pooling accept others).
        mean, std: per-channel normalisation, a number or ``in_channels`` values (default 0.5 / 0.5, which maps
            [0, 1] onto [-1, 1]); stored as ``[1, C_in, 1, 1]`` buffers ``mean`` and ``std``.
    """

    fixed_size: bool = False  # True where a flatten ties the model to ``image_size``

    def __init__(self, num_classes: int, *, in_channels: int = 3, image_size: int = 32,
                 mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None) -> None:
        super().__init__()
        self.num_classes = _check_int("num_classes", num_classes, 2)
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.image_size = _check_int("image_size", image_size, MIN_IMAGE_SIZE)
        self.feature_dim = 0
        self.register_buffer("mean", _channel_stat("mean", mean, self.in_channels, DEFAULT_MEAN))
        self.register_buffer("std", _channel_stat("std", std, self.in_channels, DEFAULT_STD))
        if not (self.std > 0).all():
            raise ValueError(f"std must be positive, got {self.std.flatten().tolist()}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel; ``x``: ``[N, C_in, H, W]`` in [0, 1]. Keeps the memory format."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects images [N, {self.in_channels}, H, W] in [0, 1], "
                             f"got shape {tuple(x.shape)}")
        if self.fixed_size and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"{type(self).__name__} was built for {self.image_size} x {self.image_size} images, got "
                             f"{x.shape[-2]} x {x.shape[-1]}; build it with make_model(..., image_size={x.shape[-1]})")
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``z [N, D]`` of images ``x [N, C_in, H, W]`` in [0, 1] (normalisation and trunk)."""
        return self.trunk(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` of images ``x [N, C_in, H, W]`` in [0, 1]."""
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, in_channels={self.in_channels}, image_size={self.image_size}, "
                f"feature_dim={self.feature_dim}")


# ---------------------------------------------------------------------------------------------- models
class MobileNetV2(Classifier):
    """MobileNetV2 (Sandler et al. 2018) for 28-64 px images, the JIN paper's backbone (§4.1).

    torchvision's ``mobilenet_v2(weights=None)`` with the usual small-image changes: the stem conv has
    stride 1 and so has the first block of the second stage (``features[2]``'s depthwise conv), leaving a
    total stride of 8 (32 px -> 4 x 4 before the global average pool). ``features``: ``[N, 1280]``
    (``_make_divisible(1280 * width_mult)`` for ``width_mult > 1``); ``head``: optional ``Dropout(dropout)``,
    then ``Linear(1280, C)``. torchvision's classifier dropout of 0.2 is off by default (``dropout=0.0``).
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3, image_size: int = 32, mean=None, std=None,
                 width_mult: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__(num_classes, in_channels=in_channels, image_size=image_size, mean=mean, std=std)
        from torchvision.models import mobilenet_v2

        if not float(width_mult) > 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        dropout = _check_prob("dropout", dropout)
        net = mobilenet_v2(weights=None, width_mult=float(width_mult))
        stem = net.features[0][0]
        net.features[0][0] = nn.Conv2d(self.in_channels, stem.out_channels, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
        block = net.features[2]
        block.conv[1][0].stride = (1, 1)
        block.stride = 1
        self.trunk = nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.feature_dim = int(net.last_channel)
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        self.head = nn.Sequential(*layers, nn.Linear(self.feature_dim, self.num_classes))


class ResNet18(Classifier):
    """ResNet-18 (He et al. 2016), CIFAR style; the JIN paper's second backbone (Table 7).

    torchvision's ``resnet18(weights=None)`` with a 3x3 stride-1 stem conv and no max-pool (total stride 8).
    ``features``: global average pool, ``[N, 512]``; ``head``: ``Linear(512, C)``.
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3, image_size: int = 32, mean=None, std=None) -> None:
        super().__init__(num_classes, in_channels=in_channels, image_size=image_size, mean=mean, std=std)
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(self.in_channels, 64, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4,
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.feature_dim = 512
        self.head = nn.Linear(512, self.num_classes)


class LeNet5(Classifier):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling.

    ``Conv(C_in, 6, 5) ReLU MaxPool(2); Conv(6, 16, 5) ReLU MaxPool(2)``, then an adaptive average pool to
    5 x 5 so that any size from 12 px works. Images smaller than 32 px get padding 2 in the first conv, the
    usual MNIST variant, so 28 px and 32 px both reach the classic 16 x 5 x 5 map without resampling.
    ``features``: ``[N, 400]``; ``head``: ``Linear(400, 120) ReLU Linear(120, 84) ReLU Linear(84, C)``.
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3, image_size: int = 32, mean=None, std=None) -> None:
        super().__init__(num_classes, in_channels=in_channels, image_size=image_size, mean=mean, std=std)
        pad = 2 if self.image_size < 32 else 0
        s = _conv_out(self.image_size, 5, padding=pad) // 2
        s = _conv_out(s, 5) // 2
        if s < 1:
            raise ValueError(f"lenet5 needs images of at least 12 px, got image_size={self.image_size}")
        self.trunk = nn.Sequential(
            nn.Conv2d(self.in_channels, 6, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(5), nn.Flatten(1))
        self.feature_dim = 16 * 5 * 5
        self.head = nn.Sequential(nn.Linear(self.feature_dim, 120), nn.ReLU(inplace=True),
                                  nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, self.num_classes))


class AlexNetSmall(Classifier):
    """A CIFAR-size AlexNet (Krizhevsky et al. 2012): five convolutions and three fully connected layers.

    ``Conv(C_in, 64, 5, p2) ReLU MaxPool(2); Conv(64, 192, 5, p2) ReLU MaxPool(2); Conv(192, 384, 3, p1) ReLU;
    Conv(384, 256, 3, p1) ReLU; Conv(256, 256, 3, p1) ReLU MaxPool(2)``, then an adaptive average pool to
    ``pool x pool`` (any size from 8 px works). ``features``: ``[N, 256 * pool^2]`` (1024 by default);
    ``head``: ``Dropout Linear(D, hidden) ReLU Dropout Linear(hidden, hidden) ReLU Linear(hidden, C)``, the
    original's dropout placement; ``dropout`` (0.5 in the original) and ``hidden`` (1024) are options.
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3, image_size: int = 32, mean=None, std=None,
                 dropout: float = 0.5, hidden: int = 1024, pool: int = 2) -> None:
        super().__init__(num_classes, in_channels=in_channels, image_size=image_size, mean=mean, std=std)
        dropout = _check_prob("dropout", dropout)
        hidden = _check_int("hidden", hidden, 1)
        pool = _check_int("pool", pool, 1)
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.trunk = nn.Sequential(
            nn.Conv2d(self.in_channels, 64, 5, padding=2), relu(), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 5, padding=2), relu(), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), relu(),
            nn.Conv2d(384, 256, 3, padding=1), relu(),
            nn.Conv2d(256, 256, 3, padding=1), relu(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(pool), nn.Flatten(1))
        _init_convs(self.trunk)
        self.feature_dim = 256 * pool * pool
        drop = (lambda: [nn.Dropout(dropout)]) if dropout > 0 else (lambda: [])
        self.head = nn.Sequential(*drop(), nn.Linear(self.feature_dim, hidden), relu(),
                                  *drop(), nn.Linear(hidden, hidden), relu(), nn.Linear(hidden, self.num_classes))


class UTKFaceCNN(Classifier):
    """Nanda et al. (2021)'s UTKFace classifier, the FARMUR paper's model for UTKFace.

    ``Conv(C_in, 32, k7, p2) ReLU Dropout(0.3) MaxPool(2); Conv(32, 64, k5, p2) ReLU Dropout(0.3) MaxPool(2)``,
    flattened: ``features`` ``[N, 64 * s * s]`` with ``s`` computed from ``image_size`` (200 px native:
    ``s = 49``; 32 px: ``s = 7``); ``head``: ``Linear(D, 256) ReLU Dropout(0.5) Linear(256, C)``. The
    flatten ties the model to ``image_size``. Note that dropout sits in the trunk too, as in the original
    (``conv_dropout`` and ``fc_dropout`` change the rates).
    """

    fixed_size = True

    def __init__(self, num_classes: int, *, in_channels: int = 3, image_size: int = 32, mean=None, std=None,
                 conv_dropout: float = 0.3, fc_dropout: float = 0.5) -> None:
        super().__init__(num_classes, in_channels=in_channels, image_size=image_size, mean=mean, std=std)
        conv_dropout = _check_prob("conv_dropout", conv_dropout)
        fc_dropout = _check_prob("fc_dropout", fc_dropout)
        s = _conv_out(self.image_size, 7, padding=2) // 2
        s = _conv_out(s, 5, padding=2) // 2
        if s < 1:
            raise ValueError(f"utkface_cnn needs images of at least 6 px, got image_size={self.image_size}")
        self.trunk = nn.Sequential(
            nn.Conv2d(self.in_channels, 32, 7, padding=2), nn.ReLU(inplace=True), nn.Dropout(conv_dropout),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(inplace=True), nn.Dropout(conv_dropout), nn.MaxPool2d(2),
            nn.Flatten(1))
        self.feature_dim = 64 * s * s
        self.head = nn.Sequential(nn.Linear(self.feature_dim, 256), nn.ReLU(inplace=True), nn.Dropout(fc_dropout),
                                  nn.Linear(256, self.num_classes))


VGG_CONFIGS: dict[int, tuple] = {  # Simonyan & Zisserman 2015, Table 1: configurations A (11), B (13), D (16)
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGGMC(Classifier):
    """VGG with BatchNorm (Simonyan & Zisserman 2015) for MC dropout, the model family of BALD+GRAD (Branchaud-Charron et al.).

    BALD+GRAD (Branchaud-Charron et al.) uses an ImageNet VGG-16 whose dropout layers all serve as MC dropout; here the default is the
    more compact VGG-11 (``depth=11``; 13 and 16 available) trained from scratch. The conv trunk (3x3 conv,
    BatchNorm, ReLU; five max-pools with ``ceil_mode`` so 28 px works) has NO dropout; it is globally
    average-pooled: ``features`` ``[N, 512 * width]``. ``head``: ``Linear(D, hidden) ReLU Dropout(dropout)
    Linear(hidden, hidden) ReLU Dropout(dropout) Linear(hidden, C)``, the VGG classifier with
    ``hidden = 512`` instead of 4096 (option), so the trunk runs once per batch for ``T`` MC samples.

    Args:
        depth: 11, 13 or 16 (VGG configuration A, B or D).
        width: channel multiplier of the trunk (1.0 = 64 ... 512 channels).
        hidden: width of the two hidden head layers.
        dropout: the head's dropout rate (0.5 as in VGG); 0 removes the Dropout layers.
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3, image_size: int = 32, mean=None, std=None,
                 depth: int = 11, width: float = 1.0, hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__(num_classes, in_channels=in_channels, image_size=image_size, mean=mean, std=std)
        if depth not in VGG_CONFIGS:
            raise ValueError(f"depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
        if not float(width) > 0:
            raise ValueError(f"width must be positive, got {width}")
        hidden = _check_int("hidden", hidden, 1)
        dropout = _check_prob("dropout", dropout)
        layers: list[nn.Module] = []
        c = self.in_channels
        for v in VGG_CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                out = max(1, int(round(v * float(width))))
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        _init_convs(self.trunk)
        self.feature_dim = c
        drop = (lambda: [nn.Dropout(dropout)]) if dropout > 0 else (lambda: [])
        self.head = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True), *drop(),
                                  nn.Linear(hidden, hidden), nn.ReLU(inplace=True), *drop(),
                                  nn.Linear(hidden, self.num_classes))


class SmallCNN(Classifier):
    """A tiny, fast CNN for tests and the CPU smoke profiles (about 60k parameters).

    ``Conv(C_in, 32, 3) BN ReLU MaxPool(2); Conv(32, 64, 3) BN ReLU MaxPool(2); Conv(64, 64, 3) BN ReLU``,
    global average pool: ``features`` ``[N, 64]``; ``head``: ``Linear(64, 64) ReLU [Dropout(dropout)]
    Linear(64, C)``: with ``dropout > 0`` all dropout sits in the head (MC dropout); with 0 there is none.
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3, image_size: int = 32, mean=None, std=None,
                 dropout: float = 0.0, width: int = 32) -> None:
        super().__init__(num_classes, in_channels=in_channels, image_size=image_size, mean=mean, std=std)
        dropout = _check_prob("dropout", dropout)
        w = _check_int("width", width, 1)
        block = lambda i, o: [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]  # noqa: E731
        self.trunk = nn.Sequential(*block(self.in_channels, w), nn.MaxPool2d(2), *block(w, 2 * w), nn.MaxPool2d(2),
                                   *block(2 * w, 2 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        _init_convs(self.trunk)
        self.feature_dim = 2 * w
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        self.head = nn.Sequential(nn.Linear(2 * w, 2 * w), nn.ReLU(inplace=True), *drop,
                                  nn.Linear(2 * w, self.num_classes))


MODELS: dict[str, Callable[..., Classifier]] = {
    "mobilenetv2": MobileNetV2,
    "resnet18": ResNet18,
    "lenet5": LeNet5,
    "alexnet_small": AlexNetSmall,
    "utkface_cnn": UTKFaceCNN,
    "vgg_mc": VGGMC,
    "small_cnn": SmallCNN,
}


def make_model(name: str, num_classes: int, *, in_channels: int = 3, image_size: int = 32, **kw) -> Classifier:
    """Build a ``MODELS`` classifier for ``[N, in_channels, image_size, image_size]`` images in [0, 1].

    Args:
        name: a key of ``MODELS``.
        num_classes: C (>= 2).
        in_channels: 3 (RGB) or 1 (grey), any positive number.
        image_size: image side in pixels (>= 8; some models need more).
        **kw: the model's options (``mean``, ``std`` for all; e.g. ``dropout`` for ``vgg_mc`` / ``small_cnn``).

    Returns:
        A freshly initialised :class:`Classifier` on the CPU, in train mode; torchvision weights are never loaded.

    Raises:
        ValueError: unknown name (listing the valid ones), an option the model does not take, or a bad size.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    builder = MODELS[name]
    params = inspect.signature(builder).parameters
    accepted = [p for p, v in params.items() if v.kind == v.KEYWORD_ONLY and p not in ("in_channels", "image_size")]
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} takes no option {', '.join(map(repr, unknown))}; its options: "
                         f"{', '.join(accepted)}")
    return builder(num_classes, in_channels=in_channels, image_size=image_size, **kw)


# ------------------------------------------------------------------------------------------ MC dropout
@contextlib.contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """MC dropout (Gal & Ghahramani 2016): eval mode everywhere except the Dropout layers, which sample.

    BatchNorm uses (and keeps) its running statistics; every module's previous mode is restored on exit,
    also after an exception. Yields the model.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for m in model.modules():
            if isinstance(m, _DropoutNd):
                m.train()
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def has_dropout_only_in_head(model: nn.Module) -> bool:
    """True when no Dropout layer sits outside the model's heads, so ``features(x)`` is deterministic even
    under :func:`mc_dropout` and can be computed once for ``T`` MC samples of ``head``.

    Heads are ``model.head`` and a :class:`GRADModel`'s ``group_head``. A model without dropout gives True
    (its trunk is deterministic); whether it has any dropout at all is a separate question.
    """
    in_heads: set[int] = set()
    for attr in ("head", "group_head"):
        part = getattr(model, attr, None)
        if isinstance(part, nn.Module):
            in_heads.update(id(m) for m in part.modules())
    return all(id(m) in in_heads for m in model.modules() if isinstance(m, _DropoutNd))


# ----------------------------------------------------------------------------------- gradient reversal
class GradReverse(torch.autograd.Function):
    """Gradient reversal layer (Ganin & Lempitsky 2015; GRAD, Raff & Sylvester 2018): identity forward,
    gradient times ``-lambd`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = float(lambd)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output * (-ctx.lambd), None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """Identity on ``x`` (any shape); backward multiplies the incoming gradient by ``-lambd``."""
    return GradReverse.apply(x, lambd)


class GRADModel(Classifier):
    """Gradient-reversal adversarial debiasing (GRAD, Raff & Sylvester 2018), as used by BALD+GRAD (Branchaud-Charron et al.).

    Wraps ``base``: ``features`` and ``head`` are the base's (same modules, same parameters). A group head
    ``grad_reverse(z, lambd) -> Linear(D, hidden) ReLU Linear(hidden, hidden) ReLU Linear(hidden, G)``
    predicts the group from the features; trained with ``CE(class) + CE(group)``, the group head learns the
    group while the reversed gradient pushes the trunk to forget it. ``forward(x)`` gives class logits only
    (prediction never uses the group head); ``forward_with_group(x)`` gives both.

    Args:
        base: the classifier to debias.
        num_groups: G, number of groups (>= 2).
        lambd: reversal strength, a settable attribute (``model.lambd = 0.5``); 0 stops the group loss from
            reaching the trunk.
        hidden: width of the group head's hidden layers (4096 in the public code of BALD+GRAD (Branchaud-Charron et al.)).
    """

    def __init__(self, base: Classifier, num_groups: int, *, lambd: float = 1.0, hidden: int = 256) -> None:
        if not isinstance(base, Classifier):
            raise ValueError(f"base must be a fralkit.models.Classifier (features/head split), got {type(base).__name__}")
        nn.Module.__init__(self)
        self.base = base
        self.num_groups = _check_int("num_groups", num_groups, 2)
        hidden = _check_int("hidden", hidden, 1)
        self.num_classes = base.num_classes
        self.in_channels = base.in_channels
        self.image_size = base.image_size
        self.feature_dim = base.feature_dim
        self.fixed_size = base.fixed_size
        self.lambd = lambd
        d = base.feature_dim
        self.group_head = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                                        nn.ReLU(inplace=True), nn.Linear(hidden, self.num_groups))

    @property
    def lambd(self) -> float:
        return self._lambd

    @lambd.setter
    def lambd(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"lambd must be a finite number >= 0, got {value}")
        self._lambd = value

    @property
    def head(self) -> nn.Module:
        """The base's class head, ``[N, D] -> [N, C]``."""
        return self.base.head

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean

    @property
    def std(self) -> torch.Tensor:
        return self.base.std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.normalize(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The base's features ``[N, D]``."""
        return self.base.features(x)

    def group_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Group logits ``[N, G]`` from features ``z [N, D]`` through the reversal layer."""
        return self.group_head(grad_reverse(z, self._lambd))

    def forward_with_group(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(class_logits [N, C], group_logits [N, G])`` from one trunk pass over ``x [N, C_in, H, W]``."""
        z = self.features(x)
        return self.head(z), self.group_logits(z)

    def extra_repr(self) -> str:
        return f"num_groups={self.num_groups}, lambd={self._lambd}"


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, nn.Module, str, nn.Module]]:
    """The (conv name, conv, bn name, bn) children of ``module`` where the batch norm is applied directly to the
    convolution's output: neighbours in an ``nn.Sequential``, and ``convK`` / ``bnK`` of torchvision's ResNet
    blocks (``BasicBlock``, ``Bottleneck``), whose forward is ``bnK(convK(.))``."""
    kids = dict(module.named_children())
    if isinstance(module, nn.Sequential):
        items = list(kids.items())
        return [(n1, a, n2, b) for (n1, a), (n2, b) in zip(items, items[1:])]
    if type(module).__name__ in ("BasicBlock", "Bottleneck") and type(module).__module__ == "torchvision.models.resnet":
        return [(f"conv{k}", kids[f"conv{k}"], f"bn{k}", kids[f"bn{k}"]) for k in (1, 2, 3)
                if f"conv{k}" in kids and f"bn{k}" in kids]
    return []


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``model`` whose parameters take no gradient: the start of an attack-only twin (a
    ``torch.compile`` wrapper is copied as the module it wraps)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule: the module it wraps
    twin = copy.deepcopy(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


class FoldedTwin:
    """An attack-only, eval-mode copy of ``model`` with batch norm folded into the convolutions before it.

    PGD runs the model in eval mode, where ``BatchNorm2d`` is a fixed per-channel affine map. Every batch-norm layer
    that directly follows a ``Conv2d`` inside an ``nn.Sequential`` (MobileNetV2's blocks, ResNet's stem and
    shortcuts, ``small_cnn``) or as ``bnK`` after ``convK`` of a torchvision ResNet block is folded into that
    convolution (``w' = w * s``, ``b' = (b - mu) * s + beta``, ``s = gamma / sqrt(var + eps)``) and replaced by
    ``Identity``: the attack's forward and backward passes skip those layers. ``refresh()`` copies the model's
    current weights and running statistics into the twin with a few multi-tensor kernels (no host sync); call it
    after every optimiser step. The twin's parameters need no gradient (PGD needs the input gradient only). With
    ``dtype=torch.bfloat16`` the conv and linear weights are kept in bf16, so autocast does not cast them again on
    every forward.

    Args:
        model: the classifier being trained (not modified); a ``torch.compile`` wrapper is folded as the module it
            wraps (the twin itself is not compiled).
        dtype: storage type of the twin's conv / linear weights (``None``: as the model's).

    Attributes:
        module: the twin ``nn.Module`` (call it like the model).
        folded: number of folded conv-BN pairs.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None):
        model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule: the module it wraps
        twin = frozen_copy(model)
        src_mod = dict(model.named_modules())
        self._convs, self._bns, self._dst_w, self._dst_b = [], [], [], []
        folded_names: set[str] = set()
        edits = []
        for name, seq in twin.named_modules():
            for n1, a, n2, b in _conv_bn_pairs(seq):
                if (type(a) is nn.Conv2d and type(b) is nn.BatchNorm2d and b.affine and b.track_running_stats
                        and b.running_var is not None and a.out_channels == b.num_features):
                    edits.append((name, seq, n1, a, n2))
        for name, seq, n1, conv, n2 in edits:
            prefix = f"{name}." if name else ""
            self._convs.append(src_mod[prefix + n1])
            self._bns.append(src_mod[prefix + n2])
            setattr(seq, n2, nn.Identity())
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device,
                                                     dtype=conv.weight.dtype), requires_grad=False)
            self._dst_w.append(conv.weight)
            self._dst_b.append(conv.bias)
            folded_names.update({prefix + n1 + ".weight", prefix + n1 + ".bias"})
        if dtype is not None:  # Module.to keeps the Parameter objects: the references above stay valid
            for m in twin.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.to(dtype)
        src = dict(model.named_parameters())
        src.update(dict(model.named_buffers()))
        pairs = [(src[n], t) for n, t in list(twin.named_parameters()) + list(twin.named_buffers())
                 if n not in folded_names and n in src]
        self._copy_src = [s for s, _ in pairs]
        self._copy_dst = [d for _, d in pairs]
        self.module = twin
        self.folded = len(self._convs)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Copy the model's current weights into the twin, folding each batch norm into its convolution."""
        if self._copy_dst:
            torch._foreach_copy_(self._copy_dst, self._copy_src)
        if not self._convs:
            return
        bns = self._bns
        scale = torch._foreach_add([b.running_var for b in bns], [float(b.eps) for b in bns])
        torch._foreach_rsqrt_(scale)
        torch._foreach_mul_(scale, [b.weight for b in bns])
        shift = torch._foreach_sub([b.bias for b in bns], torch._foreach_mul([b.running_mean for b in bns], scale))
        biased = [i for i, c in enumerate(self._convs) if c.bias is not None]
        if biased:
            torch._foreach_addcmul_([shift[i] for i in biased], [self._convs[i].bias for i in biased],
                                    [scale[i] for i in biased])
        weights = torch._foreach_mul([c.weight for c in self._convs], [v.view(-1, 1, 1, 1) for v in scale])
        torch._foreach_copy_(self._dst_w, weights)
        torch._foreach_copy_(self._dst_b, shift)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
