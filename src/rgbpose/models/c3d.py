"""C3D backbone, PoseC3D's light variant (``c3d_light``), and helpers shared by small backbones.

DESIGN.md section 4 / issue 12; PYSKL ``configs/posec3d/c3d_light_ntu60_xsub``. A plain VGG-like
stack of 3x3x3 conv + BN + ReLU units with average pooling between groups::

    x [N, C, T, H, W]
      -> conv1a (base)                   -> avgpool (1,2,2)
      -> conv2a (2 base)                 -> pool
      -> conv3a, conv3b (4 base)         -> pool
      -> conv4a, conv4b (8 base)         [num_stages 3 stops here]
      -> pool -> conv5a, conv5b (8 base) [num_stages 4]
      -> feature [N, out_channels, T', H / 2^num_stages, W / 2^num_stages]

``pool`` is (2,2,2) with temporal downsampling, else (1,2,2). C3D-light (17 -> 256 channels, base
32, 3 stages, no temporal downsampling) maps [N, 17, 48, 56, 56] to [N, 256, 48, 7, 7] with
3,389,472 parameters. Convolutions are bias-free (BN follows each); init: Kaiming (fan-out,
ReLU) for the convs, BN gamma 1 / beta 0, as PYSKL.

Module names follow PYSKL's state-dict keys (``conv1a.conv.weight``, ``conv1a.bn.running_mean``,
...), so its checkpoints load under ``backbone.`` unchanged.

References: Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks"
(ICCV 2015); Duan et al., "Revisiting Skeleton-based Action Recognition" (CVPR 2022).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from rgbpose.models.registry import register_model
from rgbpose.models.resnet3d import (
    Recognizer3D,
    init_conv_bn,
    input_contract,
    replace_config,
    unimodal_recognizer,
)

Size3 = int | tuple[int, int, int]


class ConvBN(nn.Module):
    """Bias-free Conv3d -> BN (optional) -> ReLU (optional): ``conv``, ``bn``, ``relu``.

    The unit of mmcv's ``ConvModule`` as PYSKL configures it, with the same attribute names so
    the checkpoint keys match.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Size3,
        stride: Size3 = 1,
        padding: Size3 = 0,
        groups: int = 1,
        bn: bool = True,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm3d(out_channels) if bn else None
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.relu is None else self.relu(x)


@dataclass(frozen=True)
class C3DConfig:
    """Hyper-parameters of :class:`C3D` (defaults: PoseC3D's C3D-light).

    ``num_stages``: 3 (ends at conv4b, 8 x base channels) or 4 (adds pool4, conv5a, conv5b);
    ``temporal_downsample``: pools (after conv2a onwards) halve T as well as H and W.
    """

    in_channels: int = 17
    base_channels: int = 32
    num_stages: int = 3
    temporal_downsample: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "base_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"C3DConfig.{name} must be a positive int, got {value!r}")
        if self.num_stages not in (3, 4):
            raise ValueError(f"C3DConfig.num_stages must be 3 or 4, got {self.num_stages!r}")
        if not isinstance(self.temporal_downsample, bool):
            raise ValueError(
                f"C3DConfig.temporal_downsample must be a bool, got {self.temporal_downsample!r}"
            )

    @property
    def out_channels(self) -> int:
        return 8 * self.base_channels


C3D_LIGHT = C3DConfig()

# (name, output width in base channels) of the conv units; a pool precedes each group but the
# first. Groups beyond num_stages + 1 are left out.
_GROUPS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("conv1a", 1),),
    (("conv2a", 2),),
    (("conv3a", 4), ("conv3b", 4)),
    (("conv4a", 8), ("conv4b", 8)),
    (("conv5a", 8), ("conv5b", 8)),
)


class C3D(nn.Module):
    """C3D backbone (see the module docstring): ``forward(x) -> [N, out_channels, T', H', W']``.

    Children run in registration order: conv1a, pool1, conv2a, pool2, conv3a, conv3b, ...
    """

    def __init__(self, cfg: C3DConfig = C3D_LIGHT) -> None:
        super().__init__()
        self.cfg = cfg
        pool = 2 if cfg.temporal_downsample else (1, 2, 2)
        in_channels = cfg.in_channels
        for i, group in enumerate(_GROUPS[: cfg.num_stages + 1]):
            if i > 0:
                # The first pool never touches time; the later ones do with temporal_downsample.
                kernel = (1, 2, 2) if i == 1 else pool
                self.add_module(f"pool{i}", nn.AvgPool3d(kernel, kernel))
            for name, width in group:
                out_channels = width * cfg.base_channels
                self.add_module(name, ConvBN(in_channels, out_channels, 3, padding=1))
                in_channels = out_channels
        self.out_channels = cfg.out_channels
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal (fan-out, ReLU) convs, BN gamma 1 / beta 0 (PYSKL's C3D policy)."""
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.children():
            x = layer(x)
        return x


@register_model(contract=input_contract("heatmap_imgs", C3D_LIGHT.in_channels))
def c3d_light(num_classes: int, dropout: float = 0.5, **backbone: Any) -> Recognizer3D:
    """PoseC3D C3D-light on ``heatmap_imgs`` (17 -> 256 ch, 3.39 M backbone params); overrides:
    ``dropout`` and any :class:`C3DConfig` field."""
    cfg = replace_config(C3D_LIGHT, backbone, "c3d_light")
    return unimodal_recognizer(C3D, cfg, "heatmap_imgs", num_classes, dropout)


__all__ = [
    "C3D",
    "C3D_LIGHT",
    "C3DConfig",
    "ConvBN",
    "c3d_light",
]
