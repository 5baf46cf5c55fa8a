"""ResNet3d bottleneck backbone (SlowOnly / PoseC3D) and the unimodal recognizer around it.

DESIGN.md section 3.7. One backbone class covers the three table rows (``posec3d``,
``pose_only``, ``rgb_only``) and both RGBPoseConv3D pathways; the rows differ only in their
:class:`ResNet3dConfig`::

    x [N, C, T, H, W]
      -> stem:   conv (1,7,7) stride (1,s,s) -> bn -> relu -> maxpool (1,3,3) stride (1,p,p)
      -> layer1 ... layerN   (Bottleneck x stage_blocks[i]; stage i: planes = base * 2^i,
                              first block strided by (temporal_strides[i], spatial_strides[i]^2))
      -> feature [N, 4 * base * 2^(N-1), T', H', W']

Module names are part of the checkpoint format (``rgbpose.models.convert`` maps PYSKL's mmcv
names onto them), so keep them stable::

    stem.conv, stem.bn                               (stem.relu, stem.pool hold no parameters)
    layer{i}.{j}.conv1 / bn1 / conv2 / bn2 / conv3 / bn3
    layer{i}.0.downsample.0 (1x1x1 conv), layer{i}.0.downsample.1 (bn)

References: Feichtenhofer et al., "SlowFast Networks for Video Recognition" (ICCV 2019) for
SlowOnly; Duan et al., "Revisiting Skeleton-based Action Recognition" (CVPR 2022) for PoseC3D.

Registered models (``rgbpose.models.registry``): ``posec3d`` and ``pose_only`` take
``heatmap_imgs`` [C,T,H,W] (C = ``in_channels``: 17 COCO joints, 19 limbs, ...), ``rgb_only``
takes ``imgs`` [3,T,H,W]; each has one head named after the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

from rgbpose.models.heads import ClsHead
from rgbpose.models.registry import Contract, ModelInput, register_model

Config = TypeVar("Config")

EXPANSION = 4  # bottleneck output channels = EXPANSION * planes

_PER_STAGE_FIELDS = ("spatial_strides", "temporal_strides", "inflate")


@dataclass(frozen=True)
class ResNet3dConfig:
    """Hyper-parameters of one ResNet3d backbone (defaults: SlowOnly-R50, the ``rgb_only`` row).

    ``inflate[i]`` = 1 gives every block of stage ``i`` a (3,1,1) temporal conv1.
    ``extra_in_channels[i]`` are lateral channels concatenated onto the input of stage ``i``
    (RGBPoseConv3D); they widen that stage's first-block conv1 and downsample. Empty = none.
    """

    in_channels: int = 3
    base_channels: int = 64
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3)
    spatial_strides: tuple[int, ...] = (1, 2, 2, 2)
    temporal_strides: tuple[int, ...] = (1, 1, 1, 1)
    inflate: tuple[int, ...] = (0, 0, 1, 1)
    stem_kernel: tuple[int, int, int] = (1, 7, 7)
    stem_stride: int = 2
    pool_stride: int = 2
    zero_init_residual: bool = True
    extra_in_channels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # YAML gives lists; store tuples so the config stays hashable and frozen all the way down.
        for name in ("stage_blocks", *_PER_STAGE_FIELDS, "stem_kernel", "extra_in_channels"):
            value = getattr(self, name)
            if isinstance(value, int | str) or not isinstance(value, Sequence):
                raise ValueError(f"ResNet3dConfig.{name} must be a sequence of ints, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        n = len(self.stage_blocks)
        if n == 0 or any(b < 1 for b in self.stage_blocks):
            raise ValueError(
                f"ResNet3dConfig.stage_blocks must be positive, got {self.stage_blocks}"
            )
        for name in _PER_STAGE_FIELDS:
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"ResNet3dConfig.{name} has {len(getattr(self, name))} entries but "
                    f"stage_blocks has {n}: {getattr(self, name)} vs {self.stage_blocks}"
                )
        if self.extra_in_channels and len(self.extra_in_channels) != n:
            raise ValueError(
                f"ResNet3dConfig.extra_in_channels needs {n} entries, got {self.extra_in_channels}"
            )
        if any(v not in (0, 1) for v in self.inflate):
            raise ValueError(f"ResNet3dConfig.inflate entries must be 0 or 1, got {self.inflate}")
        if len(self.stem_kernel) != 3 or any(k % 2 == 0 for k in self.stem_kernel):
            raise ValueError(f"ResNet3dConfig.stem_kernel must be 3 odd ints: {self.stem_kernel}")
        positive = {
            "in_channels": self.in_channels,
            "base_channels": self.base_channels,
            "stem_stride": self.stem_stride,
            "pool_stride": self.pool_stride,
        }
        for name, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"ResNet3dConfig.{name} must be >= 1, got {value!r}")
        if min(self.spatial_strides + self.temporal_strides) < 1:
            raise ValueError("ResNet3dConfig strides must be >= 1")

    @property
    def num_stages(self) -> int:
        return len(self.stage_blocks)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Output channels of each stage: 4 * base * 2^i."""
        return tuple(EXPANSION * self.base_channels * 2**i for i in range(self.num_stages))

    @property
    def out_channels(self) -> int:
        return self.stage_channels[-1]

    def lateral_channels(self, stage: int) -> int:
        """Extra (lateral) input channels of stage ``stage`` (0-based)."""
        return self.extra_in_channels[stage] if self.extra_in_channels else 0


# The three rows of DESIGN.md 3.7's table.
RGB_ONLY = ResNet3dConfig()
POSE_ONLY = ResNet3dConfig(
    in_channels=17,
    base_channels=32,
    stage_blocks=(4, 6, 3),
    spatial_strides=(2, 2, 2),
    temporal_strides=(1, 1, 1),
    inflate=(0, 1, 1),
    stem_stride=1,
    pool_stride=1,
)
POSEC3D = dataclasses.replace(POSE_ONLY, temporal_strides=(1, 1, 2))
PRESETS: dict[str, ResNet3dConfig] = {
    "posec3d": POSEC3D,
    "pose_only": POSE_ONLY,
    "rgb_only": RGB_ONLY,
}


class Bottleneck3d(nn.Module):
    """conv1 (3,1,1 if inflated else 1x1x1) -> conv2 (1,3,3, strided) -> conv3 (1x1x1, 4x planes).

    BN after each conv, ReLU after conv1, conv2 and the residual add; ``downsample`` (strided
    1x1x1 conv + BN) projects the shortcut when the block changes the shape.
    """

    def __init__(
        self,
        in_channels: int,
        planes: int,
        spatial_stride: int = 1,
        temporal_stride: int = 1,
        inflate: bool = False,
    ) -> None:
        super().__init__()
        out_channels = planes * EXPANSION
        stride = (temporal_stride, spatial_stride, spatial_stride)
        if inflate:
            self.conv1 = nn.Conv3d(in_channels, planes, (3, 1, 1), padding=(1, 0, 0), bias=False)
        else:
            self.conv1 = nn.Conv3d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), stride, padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != (1, 1, 1) or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class Stem(nn.Module):
    """conv (1,7,7) stride (1,s,s) -> BN -> ReLU -> max-pool (1,3,3) stride (1,p,p)."""

    def __init__(self, cfg: ResNet3dConfig) -> None:
        super().__init__()
        s, p = cfg.stem_stride, cfg.pool_stride
        self.conv = nn.Conv3d(
            cfg.in_channels,
            cfg.base_channels,
            cfg.stem_kernel,
            stride=(1, s, s),
            padding=tuple(k // 2 for k in cfg.stem_kernel),
            bias=False,
        )
        self.bn = nn.BatchNorm3d(cfg.base_channels)
        self.relu = nn.ReLU(inplace=True)
        # PYSKL applies the pool even at stride 1 (pose models): a 3x3 spatial max filter.
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, p, p), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


def make_stage(
    in_channels: int,
    planes: int,
    blocks: int,
    spatial_stride: int,
    temporal_stride: int,
    inflate: bool,
) -> nn.Sequential:
    """One ResNet stage: a strided (maybe projecting) first block, then ``blocks - 1`` plain ones."""
    layers = [Bottleneck3d(in_channels, planes, spatial_stride, temporal_stride, inflate)]
    layers += [Bottleneck3d(planes * EXPANSION, planes, 1, 1, inflate) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) for every conv; BN gamma 1 / beta 0 (PYSKL's policy)."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d | nn.ConvTranspose3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet3d(nn.Module):
    """ResNet3d bottleneck backbone: ``stem`` then ``layer1..layerN`` (see the module docstring).

    ``forward(x [N, C, T, H, W]) -> [N, cfg.out_channels, T', H', W']``. A stage with
    ``cfg.extra_in_channels[i] > 0`` expects its input to already carry those lateral channels
    (concatenated after the pathway's own channels); RGBPoseConv3D drives that stage by stage.
    """

    def __init__(self, cfg: ResNet3dConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = Stem(cfg)
        in_channels = cfg.base_channels
        for i, blocks in enumerate(cfg.stage_blocks):
            stage = make_stage(
                in_channels + cfg.lateral_channels(i),
                cfg.base_channels * 2**i,
                blocks,
                cfg.spatial_strides[i],
                cfg.temporal_strides[i],
                bool(cfg.inflate[i]),
            )
            self.add_module(f"layer{i + 1}", stage)
            in_channels = cfg.stage_channels[i]
        self.out_channels = cfg.out_channels
        self.init_weights()

    @property
    def stages(self) -> list[nn.Sequential]:
        """``[layer1, ..., layerN]`` in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.cfg.num_stages)]

    def init_weights(self) -> None:
        """Kaiming convs, BN 1/0, and the last BN of every block at gamma 0 (zero-init residual:
        each block starts as the identity, which stabilises early training)."""
        init_conv_bn(self)
        if self.cfg.zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck3d):
                    nn.init.zeros_(m.bn3.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


class Recognizer3D(nn.Module):
    """Unimodal recognizer (``posec3d``, ``pose_only``, ``rgb_only``): ResNet3d + pooled linear head.

    ``model(x [N, C, T, H, W]) -> logits [N, num_classes]``. ``backbone`` is a
    :class:`ResNet3dConfig` (built into a :class:`ResNet3d`) or any backbone module with an
    ``out_channels`` attribute (``c3d_light``, ``x3d_shallow``).
    """

    def __init__(
        self,
        backbone: ResNet3dConfig | nn.Module,
        num_classes: int,
        dropout: float = 0.5,
        input_key: str = "imgs",
    ) -> None:
        super().__init__()
        self.backbone = ResNet3d(backbone) if isinstance(backbone, ResNet3dConfig) else backbone
        self.head = ClsHead(self.backbone.out_channels, num_classes, dropout)
        self.num_classes = num_classes
        self.input_key = input_key

    def forward_features(self, x: Tensor) -> Tensor:
        """Backbone feature map ``[N, C, T', H', W']``."""
        return self.backbone(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Pooled logits ``[N, K]`` from a feature map."""
        return self.head(features)

    def forward(self, *args: Tensor, **inputs: Tensor) -> Tensor:
        """``model(x)`` or ``model(**{input_key: x})`` (the engine calls models by name)."""
        if args:
            (x,) = args
        else:
            if set(inputs) != {self.input_key}:
                raise TypeError(f"expected the input {self.input_key!r}, got {sorted(inputs)}")
            x = inputs[self.input_key]
        return self.forward_head(self.forward_features(x))

    def loss(self, outputs: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of the logits."""
        return F.cross_entropy(outputs, labels)


# ----------------------------------------------------------------------------- registered models
# extra_in_channels is wired by RGBPoseConv3D, never set by users.
BACKBONE_OVERRIDES: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(ResNet3dConfig) if f.name != "extra_in_channels"
)


def replace_config(
    preset: Config, overrides: Mapping[str, Any], where: str, allowed: Iterable[str] | None = None
) -> Config:
    """``preset`` (a frozen dataclass) with ``overrides``; keys outside ``allowed`` (default:
    every field) raise ``ValueError`` naming ``where``."""
    allowed = set(allowed) if allowed is not None else {f.name for f in dataclasses.fields(preset)}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {where}; allowed: {sorted(allowed)}")
    return dataclasses.replace(preset, **overrides)


def resnet3d_config(
    preset: ResNet3dConfig, overrides: Mapping[str, Any], where: str
) -> ResNet3dConfig:
    """``preset`` with ``overrides`` applied; unknown keys raise ``ValueError`` naming ``where``."""
    return replace_config(preset, overrides, where, BACKBONE_OVERRIDES)


def input_contract(key: str, default_channels: int) -> Callable[[Mapping[str, Any]], Contract]:
    """The contract of a one-input clip model: ``key`` [C,T,H,W] with ``in_channels`` channels."""

    def contract(overrides: Mapping[str, Any]) -> Contract:
        channels = overrides.get("in_channels", default_channels)
        return Contract((ModelInput(key, "C,T,H,W", channels, "model.overrides.in_channels"),))

    return contract


def unimodal_recognizer(
    backbone: Callable[[Config], nn.Module], cfg: Config, key: str, num_classes: int,
    dropout: float,
) -> Recognizer3D:  # fmt: skip
    """A :class:`Recognizer3D` on the input ``key`` around ``backbone(cfg)``."""
    return Recognizer3D(backbone(cfg), num_classes, dropout, key)


def _unimodal(
    preset: ResNet3dConfig, where: str, key: str, num_classes: int, dropout: float,
    backbone: dict[str, Any],
) -> Recognizer3D:  # fmt: skip
    cfg = resnet3d_config(preset, backbone, where)
    return unimodal_recognizer(ResNet3d, cfg, key, num_classes, dropout)


@register_model(contract=input_contract("heatmap_imgs", POSEC3D.in_channels))
def posec3d(num_classes: int, dropout: float = 0.5, **backbone: Any) -> Recognizer3D:
    """PoseC3D SlowOnly (17 -> 512 ch, temporal strides (1, 1, 2), 1.99 M backbone params)."""
    return _unimodal(POSEC3D, "posec3d", "heatmap_imgs", num_classes, dropout, backbone)


@register_model(contract=input_contract("heatmap_imgs", POSE_ONLY.in_channels))
def pose_only(num_classes: int, dropout: float = 0.5, **backbone: Any) -> Recognizer3D:
    """The RGBPoseConv3D pose pathway alone (32 frames, no temporal stride)."""
    return _unimodal(POSE_ONLY, "pose_only", "heatmap_imgs", num_classes, dropout, backbone)


@register_model(contract=input_contract("imgs", RGB_ONLY.in_channels))
def rgb_only(num_classes: int, dropout: float = 0.5, **backbone: Any) -> Recognizer3D:
    """SlowOnly-R50 on 8 RGB frames (3 -> 2048 ch, 31.6 M backbone params)."""
    return _unimodal(RGB_ONLY, "rgb_only", "imgs", num_classes, dropout, backbone)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (not buffers) of ``module``."""
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "EXPANSION",
    "POSEC3D",
    "POSE_ONLY",
    "PRESETS",
    "RGB_ONLY",
    "Bottleneck3d",
    "Recognizer3D",
    "ResNet3d",
    "ResNet3dConfig",
    "Stem",
    "count_parameters",
    "pose_only",
    "posec3d",
    "replace_config",
    "resnet3d_config",
    "rgb_only",
    "init_conv_bn",
    "input_contract",
    "make_stage",
]
