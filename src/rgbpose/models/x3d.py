"""X3D backbone, PoseC3D's shallow variant (``x3d_shallow``).

DESIGN.md section 4 / issue 12; PYSKL ``configs/posec3d/x3d_shallow_ntu60_xsub``. Widths come
from the X3D expansion factors: stage ``i`` outputs ``w_i = base * 2^i`` channels (``base``
rounded by ``gamma_w``), its blocks expand to ``int(w_i * gamma_b)`` inside, and each stage has
``ceil(gamma_d * stage_blocks[i])`` blocks::

    x [N, C, T, H, W]
      -> conv1_s: conv (1,3,3) stride (1,2,2), no BN / act
      -> conv1_t: depthwise conv (5,1,1) -> BN -> ReLU
      -> layer1 ... layerN   (BlockX3D x blocks[i]; the first strided by (1, s_i, s_i))
      -> conv5: 1x1x1 conv to int(w_last * gamma_b) -> BN -> ReLU
      -> feature [N, out_channels, T, H', W']

    BlockX3D: conv1 1x1x1 (w -> e) BN ReLU -> conv2 depthwise 3x3x3 (stride (1,s,s)) BN
              -> [SE] -> [swish] -> conv3 1x1x1 (e -> w) BN -> + shortcut -> ReLU

With ``use_swish`` false there is no activation between the depthwise conv and conv3 (PYSKL's
X3D then inserts an identity there). SE (``se_ratio``) goes into every block (``se_style``
``all``) or every other one (``half``). X3D-shallow (17 -> 216 channels: base 24, blocks
(2, 5, 3), spatial strides (2, 2, 2), gamma_b 2.25, no SE, ReLU) maps [N, 17, 48, 56, 56] to
[N, 216, 48, 4, 4] with 241,488 parameters. Init: Kaiming (fan-out, ReLU) convs, BN 1 / 0, and
each block's conv3 BN gamma 0 (zero-init residual), as PYSKL.

Module names follow PYSKL's state-dict keys (``conv1_s.conv``, ``conv1_t.conv`` / ``.bn``,
``layerI.J.conv1.conv`` / ``.bn``, ``layerI.0.downsample.conv`` / ``.bn``, ``conv5.conv``...).

References: Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition"
(CVPR 2020); Duan et al., "Revisiting Skeleton-based Action Recognition" (CVPR 2022).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from rgbpose.models.c3d import ConvBN
from rgbpose.models.registry import register_model
from rgbpose.models.resnet3d import (
    Recognizer3D,
    init_conv_bn,
    input_contract,
    replace_config,
    unimodal_recognizer,
)


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """``width * multiplier`` rounded to a multiple of ``divisor`` (at least ``min_width``, and
    never more than 10% below the exact value); multiplier 0 keeps ``width``."""
    if not multiplier:
        return int(width)
    exact = width * multiplier
    rounded = max(min_width, int(exact + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * exact else rounded)


@dataclass(frozen=True)
class X3DConfig:
    """Hyper-parameters of :class:`X3D` (defaults: PoseC3D's X3D-shallow).

    ``gamma_w`` scales the base width, ``gamma_b`` the inner (bottleneck) width of every block
    and of conv5, ``gamma_d`` the number of blocks per stage. ``se_ratio`` None: no
    squeeze-excitation; ``use_swish``: SiLU after the depthwise conv (false: nothing there).
    """

    in_channels: int = 17
    base_channels: int = 24
    stage_blocks: tuple[int, ...] = (2, 5, 3)
    spatial_strides: tuple[int, ...] = (2, 2, 2)
    gamma_w: float = 1.0
    gamma_b: float = 2.25
    gamma_d: float = 1.0
    se_ratio: float | None = None
    se_style: str = "half"
    use_swish: bool = False
    zero_init_residual: bool = True

    def __post_init__(self) -> None:
        for name in ("stage_blocks", "spatial_strides"):
            value = getattr(self, name)
            if isinstance(value, int | str) or not isinstance(value, Sequence):
                raise ValueError(f"X3DConfig.{name} must be a sequence of ints, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if not self.stage_blocks or min(self.stage_blocks) < 1:
            raise ValueError(f"X3DConfig.stage_blocks must be positive, got {self.stage_blocks}")
        if len(self.spatial_strides) != len(self.stage_blocks) or min(self.spatial_strides) < 1:
            raise ValueError(
                f"X3DConfig.spatial_strides needs {len(self.stage_blocks)} entries >= 1, got "
                f"{self.spatial_strides}"
            )
        if self.in_channels < 1 or self.base_channels < 1:
            raise ValueError("X3DConfig.in_channels and base_channels must be >= 1")
        if min(self.gamma_w, self.gamma_b, self.gamma_d) < 0:
            raise ValueError("X3DConfig.gamma_w, gamma_b and gamma_d must be >= 0")
        if self.se_ratio is not None and self.se_ratio <= 0:
            raise ValueError(f"X3DConfig.se_ratio must be > 0 or None, got {self.se_ratio!r}")
        if self.se_style not in ("half", "all"):
            raise ValueError(f"X3DConfig.se_style must be 'half' or 'all', got {self.se_style!r}")

    @property
    def width(self) -> int:
        """The stem / first-stage width: ``base_channels`` rounded by ``gamma_w``."""
        return round_width(self.base_channels, self.gamma_w)

    @property
    def blocks(self) -> tuple[int, ...]:
        """Blocks per stage after the depth factor ``gamma_d``."""
        if not self.gamma_d:
            return self.stage_blocks
        return tuple(math.ceil(self.gamma_d * b) for b in self.stage_blocks)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Output channels of each stage: ``width * 2^i``."""
        return tuple(self.width * 2**i for i in range(len(self.stage_blocks)))

    @property
    def out_channels(self) -> int:
        """conv5's width: the last stage's, expanded by ``gamma_b``."""
        return int(self.stage_channels[-1] * self.gamma_b)


X3D_SHALLOW = X3DConfig()


class SqueezeExcite(nn.Module):
    """Channel gates: global average pool -> 1x1x1 conv (reduce) -> ReLU -> 1x1x1 conv ->
    sigmoid, multiplied onto the input; the reduced width is ``round_width(c, ratio)``."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        hidden = round_width(channels, ratio)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv3d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc2(self.relu(self.fc1(self.pool(x)))).sigmoid()


class BlockX3D(nn.Module):
    """The X3D residual block (see the module docstring); ``downsample`` (1x1x1 conv + BN)
    projects the shortcut when the block changes the shape."""

    def __init__(
        self,
        in_channels: int,
        inner: int,
        out_channels: int,
        spatial_stride: int = 1,
        se_ratio: float | None = None,
        use_swish: bool = False,
    ) -> None:
        super().__init__()
        stride = (1, spatial_stride, spatial_stride)
        self.conv1 = ConvBN(in_channels, inner, 1)
        self.conv2 = ConvBN(inner, inner, 3, stride, 1, groups=inner, relu=False)
        self.se_module = None if se_ratio is None else SqueezeExcite(inner, se_ratio)
        self.swish = nn.SiLU() if use_swish else nn.Identity()
        self.conv3 = ConvBN(inner, out_channels, 1, relu=False)
        self.downsample = None
        if spatial_stride != 1 or in_channels != out_channels:
            self.downsample = ConvBN(in_channels, out_channels, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        if self.se_module is not None:
            out = self.se_module(out)
        out = self.conv3(self.swish(out))
        return self.relu(out + identity)


class X3D(nn.Module):
    """X3D backbone: ``conv1_s``, ``conv1_t``, ``layer1..layerN``, ``conv5``.

    ``forward(x [N, C, T, H, W]) -> [N, cfg.out_channels, T, H', W']`` (no temporal stride).
    """

    def __init__(self, cfg: X3DConfig = X3D_SHALLOW) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        self.conv1_s = ConvBN(
            cfg.in_channels, width, (1, 3, 3), (1, 2, 2), (0, 1, 1), bn=False, relu=False
        )
        self.conv1_t = ConvBN(width, width, (5, 1, 1), padding=(2, 0, 0), groups=width)
        in_channels = width
        for i, (blocks, out_channels) in enumerate(zip(cfg.blocks, cfg.stage_channels)):
            inner = int(out_channels * cfg.gamma_b)
            layers = []
            for j in range(blocks):
                # SE on every block, or on the even-numbered ones ("half").
                with_se = cfg.se_style == "all" or j % 2 == 0
                layers.append(
                    BlockX3D(
                        in_channels if j == 0 else out_channels,
                        inner,
                        out_channels,
                        cfg.spatial_strides[i] if j == 0 else 1,
                        cfg.se_ratio if with_se else None,
                        cfg.use_swish,
                    )
                )
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            in_channels = out_channels
        self.conv5 = ConvBN(in_channels, cfg.out_channels, 1)
        self.out_channels = cfg.out_channels
        self.init_weights()

    @property
    def stages(self) -> list[nn.Sequential]:
        """``[layer1, ..., layerN]`` in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.cfg.stage_blocks))]

    def init_weights(self) -> None:
        """Kaiming convs, BN 1 / 0, and every block's conv3 BN at gamma 0 (starts as identity)."""
        init_conv_bn(self)
        if self.cfg.zero_init_residual:
            for m in self.modules():
                if isinstance(m, BlockX3D):
                    nn.init.zeros_(m.conv3.bn.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1_t(self.conv1_s(x))
        for stage in self.stages:
            x = stage(x)
        return self.conv5(x)


@register_model(contract=input_contract("heatmap_imgs", X3D_SHALLOW.in_channels))
def x3d_shallow(num_classes: int, dropout: float = 0.5, **backbone: Any) -> Recognizer3D:
    """PoseC3D X3D-shallow on ``heatmap_imgs`` (17 -> 216 ch, 0.24 M backbone params);
    overrides: ``dropout`` and any :class:`X3DConfig` field."""
    cfg = replace_config(X3D_SHALLOW, backbone, "x3d_shallow")
    return unimodal_recognizer(X3D, cfg, "heatmap_imgs", num_classes, dropout)


__all__ = [
    "X3D",
    "X3D_SHALLOW",
    "BlockX3D",
    "SqueezeExcite",
    "X3DConfig",
    "round_width",
    "x3d_shallow",
]
