"""RGBPoseConv3D: two ResNet3d pathways (RGB "slow", pose "fast") with two-way lateral connections.

Duan et al., "Revisiting Skeleton-based Action Recognition" (CVPR 2022), section 3.3; the
SlowFast-style pathway design follows Feichtenhofer et al. (ICCV 2019). DESIGN.md 3.7 has the
tables this module reproduces. Default shapes (N clips, rgb 8x224^2, pose 32x56^2)::

    rgb [N,3,8,224,224]                          pose [N,17,32,56,56]
    rgb.stem   ->   64 x 8 x 56^2                pose.stem   ->  32 x 32 x 56^2
    rgb.layer1 ->  256 x 8 x 56^2
    rgb.layer2 ->  512 x 8 x 28^2                pose.layer1 -> 128 x 32 x 28^2
        fusion:  rgb_laterals.layer2  = Conv3d  128 -> 128, T 32 -> 8             (pose -> rgb)
                 pose_laterals.layer1 = ConvT3d 512 -> 32,  T 8 -> 32, BN, ReLU   (rgb -> pose)
        cat [512 | 128] = 640                    cat [128 | 32] = 160
    rgb.layer3 -> 1024 x 8 x 14^2                pose.layer2 -> 256 x 32 x 14^2
        fusion:  rgb_laterals.layer3  = Conv3d  256 -> 256
                 pose_laterals.layer2 = ConvT3d 1024 -> 64, BN, ReLU
        cat [1024 | 256] = 1280                  cat [256 | 64] = 320
    rgb.layer4 -> 2048 x 8 x 7^2                 pose.layer3 -> 512 x 32 x 7^2
    -> RGBPose(rgb, pose) features -> RGBPoseHead -> RGBPose(rgb logits, pose logits)

At each fusion point both laterals are computed from the pre-fusion tensors, then each pathway
concatenates ``[own, lateral]``; the extra channels enter the next stage's first-block conv1 and
downsample (``ResNet3dConfig.extra_in_channels``). Width rule (PYSKL's ``channel_ratio`` = 4):
the lateral into a pathway carries ``own width / channel_ratio`` channels (RGB: 512 -> +128,
1024 -> +256; pose: 128 -> +32, 256 -> +64), so reduced-width models scale consistently.

Module names (checkpoint format): ``rgb.*``, ``pose.*`` (ResNet3d names),
``rgb_laterals.layer{i}.conv`` (lateral concatenated after rgb stage i),
``pose_laterals.layer{j}.conv`` / ``.bn`` (after pose stage j).

Init (as the reference, whose init touches only ``nn.Conv3d`` and BN): the pathways and the
pose -> rgb Conv3d laterals are Kaiming-normal (fan_out); the rgb -> pose ConvTranspose3d
laterals keep PyTorch's default uniform init (std 0.0386 / 0.0273 for layer1 / layer2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgbpose.models.heads import RGBPose, RGBPoseHead
from rgbpose.models.registry import Contract, ModelInput, register_model
from rgbpose.models.resnet3d import (
    POSE_ONLY,
    RGB_ONLY,
    ResNet3d,
    ResNet3dConfig,
    init_conv_bn,
    resnet3d_config,
)


@dataclass(frozen=True)
class RGBPoseConfig:
    """Hyper-parameters of RGBPoseConv3D (defaults: PYSKL's NTU recipe, DESIGN.md 3.7).

    ``rgb`` / ``pose`` are the unimodal pathway configs *without* lateral channels; the model
    derives ``extra_in_channels`` from the widths. ``lateral_drop_path`` is the probability, per
    training forward and per direction, of zeroing that direction's laterals for the whole batch
    (PYSKL's ``rgb_drop_path`` / ``pose_drop_path``); ``detach_lateral`` stops gradients flowing
    from one pathway's loss into the other pathway through the laterals.
    """

    rgb: ResNet3dConfig = RGB_ONLY
    pose: ResNet3dConfig = POSE_ONLY
    speed_ratio: int = 4
    channel_ratio: int = 4
    lateral_kernel: int = 7
    lateral_drop_path: float = 0.0
    detach_lateral: bool = False

    def __post_init__(self) -> None:
        for name in ("rgb", "pose"):
            cfg = getattr(self, name)
            if not isinstance(cfg, ResNet3dConfig):
                raise ValueError(f"RGBPoseConfig.{name} must be a ResNet3dConfig, got {cfg!r}")
            if any(cfg.extra_in_channels):
                raise ValueError(
                    f"RGBPoseConfig.{name}.extra_in_channels is derived from the widths; "
                    f"do not set it (got {cfg.extra_in_channels})"
                )
        if self.pose.num_stages < 2 or self.rgb.num_stages < self.pose.num_stages:
            raise ValueError(
                "RGBPoseConv3D needs >= 2 pose stages and at least as many rgb stages, got "
                f"rgb {self.rgb.num_stages} / pose {self.pose.num_stages}"
            )
        if self.speed_ratio < 1 or self.channel_ratio < 1:
            raise ValueError("speed_ratio and channel_ratio must be >= 1")
        if self.lateral_kernel < 1 or self.lateral_kernel % 2 == 0:
            raise ValueError(f"lateral_kernel must be odd, got {self.lateral_kernel}")
        if not 0.0 <= self.lateral_drop_path <= 1.0:
            raise ValueError(f"lateral_drop_path must be in [0, 1], got {self.lateral_drop_path}")

    @property
    def stage_offset(self) -> int:
        """RGB stage ``i`` runs alongside pose stage ``i - stage_offset`` (default 1)."""
        return self.rgb.num_stages - self.pose.num_stages

    @property
    def fusion_stages(self) -> tuple[tuple[int, int], ...]:
        """0-based (rgb stage, pose stage) pairs after which the pathways exchange laterals:
        after every pose stage but the last (default ((1, 0), (2, 1)): rgb layer2 / pose layer1
        and rgb layer3 / pose layer2)."""
        return tuple((j + self.stage_offset, j) for j in range(self.pose.num_stages - 1))

    def pathways(self) -> tuple[ResNet3dConfig, ResNet3dConfig]:
        """The (rgb, pose) pathway configs with their lateral input channels filled in."""
        rgb_extra = [0] * self.rgb.num_stages
        pose_extra = [0] * self.pose.num_stages
        for i, j in self.fusion_stages:
            rgb_extra[i + 1] = self._lateral_width(self.rgb.stage_channels[i], "rgb")
            pose_extra[j + 1] = self._lateral_width(self.pose.stage_channels[j], "pose")
        return (
            dataclasses.replace(self.rgb, extra_in_channels=tuple(rgb_extra)),
            dataclasses.replace(self.pose, extra_in_channels=tuple(pose_extra)),
        )

    def _lateral_width(self, own_channels: int, name: str) -> int:
        if own_channels % self.channel_ratio:
            raise ValueError(
                f"{name} stage width {own_channels} is not divisible by channel_ratio "
                f"{self.channel_ratio}"
            )
        return own_channels // self.channel_ratio


class Lateral(nn.Module):
    """One lateral connection: a temporal conv (``conv``), optionally followed by BN + ReLU."""

    def __init__(self, conv: nn.Conv3d | nn.ConvTranspose3d, norm: bool) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm3d(conv.out_channels) if norm else None
        self.relu = nn.ReLU(inplace=True) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.relu(self.bn(x))
        return x


def make_lateral(
    direction: Literal["pose_to_rgb", "rgb_to_pose"],
    in_channels: int,
    out_channels: int,
    speed_ratio: int = 4,
    kernel: int = 7,
) -> Lateral:
    """Build one lateral connection (DESIGN.md 3.7 lateral table).

    * ``pose_to_rgb``: Conv3d k (kernel,1,1), stride (speed_ratio,1,1), pad (kernel//2,0,0), no
      bias, no BN/act: T 32 -> 8.
    * ``rgb_to_pose``: ConvTranspose3d with the same kernel/stride/padding plus BN + ReLU: T 8 -> 32.
      With an odd kernel and padding kernel // 2 the transposed conv gives
      (T - 1) * s - (k - 1) + k = T * s - s + 1 frames, so ``output_padding`` = s - 1 (3 for
      s = 4) makes it exactly ``speed_ratio * T`` for every T: what PYSKL gets by passing
      ``output_size`` at call time, fixed here so the module stays export-friendly.
    """
    if kernel < 1 or kernel % 2 == 0 or speed_ratio < 1:
        raise ValueError(
            f"lateral kernel must be odd and speed ratio >= 1, got {kernel}, {speed_ratio}"
        )
    pad = kernel // 2
    if direction == "pose_to_rgb":
        conv = nn.Conv3d(
            in_channels,
            out_channels,
            (kernel, 1, 1),
            stride=(speed_ratio, 1, 1),
            padding=(pad, 0, 0),
            bias=False,
        )
        return Lateral(conv, norm=False)
    if direction == "rgb_to_pose":
        conv = nn.ConvTranspose3d(
            in_channels,
            out_channels,
            (kernel, 1, 1),
            stride=(speed_ratio, 1, 1),
            padding=(pad, 0, 0),
            output_padding=(speed_ratio - 1, 0, 0),
            bias=False,
        )
        return Lateral(conv, norm=True)
    raise ValueError(f"unknown lateral direction {direction!r}")


class RGBPoseConv3D(nn.Module):
    """The RGBPoseConv3D backbone (see the module docstring for the data flow).

    ``forward(rgb [N,3,T,H,W], pose [N,C,speed_ratio*T,H/4,W/4]) -> RGBPose(rgb_feat, pose_feat)``.
    """

    def __init__(self, cfg: RGBPoseConfig) -> None:
        super().__init__()
        self.cfg = cfg
        rgb_cfg, pose_cfg = cfg.pathways()
        self.rgb = ResNet3d(rgb_cfg)
        self.pose = ResNet3d(pose_cfg)
        self.rgb_laterals = nn.ModuleDict()
        self.pose_laterals = nn.ModuleDict()
        for i, j in cfg.fusion_stages:
            rgb_ch, pose_ch = rgb_cfg.stage_channels[i], pose_cfg.stage_channels[j]
            self.rgb_laterals[f"layer{i + 1}"] = make_lateral(
                "pose_to_rgb",
                pose_ch,
                rgb_cfg.lateral_channels(i + 1),
                cfg.speed_ratio,
                cfg.lateral_kernel,
            )
            self.pose_laterals[f"layer{j + 1}"] = make_lateral(
                "rgb_to_pose",
                rgb_ch,
                pose_cfg.lateral_channels(j + 1),
                cfg.speed_ratio,
                cfg.lateral_kernel,
            )
        self._fusion = dict(cfg.fusion_stages)  # rgb stage -> pose stage
        # As mmaction2 / PYSKL: only nn.Conv3d gets Kaiming (fan_out) and BN gets 1 / 0; the
        # rgb -> pose ConvTranspose3d keeps PyTorch's default init (uniform, kaiming a=sqrt(5)
        # on its fan_in = out_channels * kernel, i.e. std 1 / sqrt(3 * fan_in)).
        for lateral in (*self.rgb_laterals.values(), *self.pose_laterals.values()):
            if isinstance(lateral.conv, nn.Conv3d):
                init_conv_bn(lateral.conv)
            if lateral.bn is not None:
                init_conv_bn(lateral.bn)

    def padded_weight_keys(self) -> dict[str, int]:
        """Keys (relative to this backbone) of the first-block weights that take lateral input,
        mapped to their number of lateral input channels: the weights a unimodal checkpoint must
        be zero-padded into (rgb layer3/layer4 and pose layer2/layer3 conv1 + downsample conv)."""
        keys: dict[str, int] = {}
        for name, path in (("rgb", self.rgb), ("pose", self.pose)):
            for s in range(path.cfg.num_stages):
                extra = path.cfg.lateral_channels(s)
                if extra:
                    keys[f"{name}.layer{s + 1}.0.conv1.weight"] = extra
                    keys[f"{name}.layer{s + 1}.0.downsample.0.weight"] = extra
        return keys

    def _draw_keep(self) -> tuple[bool, bool]:
        """Whether the laterals into (rgb, pose) are kept on this forward (drop-path)."""
        p = self.cfg.lateral_drop_path
        if not self.training or p <= 0.0:
            return True, True
        draws = torch.rand(2)
        return bool(draws[0] >= p), bool(draws[1] >= p)

    def _fuse(
        self, rgb_stage: int, x_rgb: Tensor, x_pose: Tensor, keep: tuple[bool, bool]
    ) -> tuple[Tensor, Tensor]:
        pose_stage = self._fusion[rgb_stage]
        src_pose, src_rgb = x_pose, x_rgb
        if self.cfg.detach_lateral:
            src_pose, src_rgb = x_pose.detach(), x_rgb.detach()
        # Both laterals read the pre-fusion tensors.
        to_rgb = self.rgb_laterals[f"layer{rgb_stage + 1}"](src_pose)
        to_pose = self.pose_laterals[f"layer{pose_stage + 1}"](src_rgb)
        # A dropped lateral is multiplied by 0 rather than skipped, so every parameter stays in
        # the graph (DDP without find_unused_parameters).
        if not keep[0]:
            to_rgb = to_rgb * 0.0
        if not keep[1]:
            to_pose = to_pose * 0.0
        return torch.cat([x_rgb, to_rgb], dim=1), torch.cat([x_pose, to_pose], dim=1)

    def forward(self, rgb: Tensor, pose: Tensor) -> RGBPose:
        keep = self._draw_keep()
        x_rgb, x_pose = self.rgb.stem(rgb), self.pose.stem(pose)
        pose_stages = self.pose.stages
        offset = self.cfg.stage_offset
        for i, rgb_stage in enumerate(self.rgb.stages):
            x_rgb = rgb_stage(x_rgb)
            if i >= offset:
                x_pose = pose_stages[i - offset](x_pose)
            if i in self._fusion:
                x_rgb, x_pose = self._fuse(i, x_rgb, x_pose, keep)
        return RGBPose(rgb=x_rgb, pose=x_pose)


class RGBPoseRecognizer(nn.Module):
    """RGBPoseConv3D backbone + :class:`RGBPoseHead`.

    ``model(imgs, heatmap_imgs) -> RGBPose(rgb=logits [N,K], pose=logits [N,K])`` (the engine
    calls it by name: ``model(imgs=..., heatmap_imgs=...)``);
    ``loss = CE(rgb) + CE(pose)`` (no fused loss; the heads are late-fused at test time).
    """

    def __init__(self, cfg: RGBPoseConfig, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone = RGBPoseConv3D(cfg)
        self.head = RGBPoseHead(
            self.backbone.rgb.out_channels, self.backbone.pose.out_channels, num_classes, dropout
        )
        self.num_classes = num_classes

    def forward_features(self, rgb: Tensor, pose: Tensor) -> RGBPose:
        """Per-pathway feature maps."""
        return self.backbone(rgb, pose)

    def forward_head(self, features: tuple[Tensor, Tensor]) -> RGBPose:
        """Per-pathway logits from per-pathway feature maps."""
        return self.head(features)

    def forward(self, imgs: Tensor, heatmap_imgs: Tensor) -> RGBPose:
        return self.forward_head(self.forward_features(imgs, heatmap_imgs))

    def loss(self, outputs: RGBPose, labels: Tensor) -> Tensor:
        """CE(rgb logits) + CE(pose logits)."""
        return F.cross_entropy(outputs.rgb, labels) + F.cross_entropy(outputs.pose, labels)


# ----------------------------------------------------------------------------- registered model
def _contract(overrides: Mapping[str, Any]) -> Contract:
    rgb, pose = overrides.get("rgb") or {}, overrides.get("pose") or {}
    return Contract(
        inputs=(
            ModelInput(
                "imgs",
                "C,T,H,W",
                rgb.get("in_channels", RGB_ONLY.in_channels),
                "model.overrides.rgb.in_channels",
            ),
            ModelInput(
                "heatmap_imgs",
                "C,T,H,W",
                pose.get("in_channels", POSE_ONLY.in_channels),
                "model.overrides.pose.in_channels",
                time_ratio=int(overrides.get("speed_ratio", 4)),
                ratio_key="model.overrides.speed_ratio",
            ),
        ),  # fmt: skip
        heads=("rgb", "pose"),
    )


def _merge(sources: Mapping[str, Mapping[str, Any]], model: nn.Module) -> dict[str, Tensor]:
    """``init_from`` of an RGBPoseConv3D stream: one source whose model takes ``imgs`` (the RGB
    pathway) and one that takes ``heatmap_imgs`` (the pose pathway); see ``merge_unimodal``."""
    from rgbpose.models.convert import merge_unimodal  # noqa: PLC0415
    from rgbpose.models.registry import get_entry  # noqa: PLC0415

    by_input: dict[str, str] = {}
    for name, src in sources.items():
        meta = src["meta"]
        model_name = meta.get("model_name")
        if model_name is None:
            raise ValueError(f"{src['path']}: checkpoint meta has no model_name")
        keys = get_entry(model_name).contract(meta.get("overrides")).input_keys
        if len(keys) != 1 or keys[0] not in ("imgs", "heatmap_imgs"):
            raise ValueError(
                f"init_from {name!r} ({src['path']}): a {model_name!r} model (inputs {keys}) is "
                "neither an RGB nor a pose pathway"
            )
        if keys[0] in by_input:
            raise ValueError(
                f"init_from: {by_input[keys[0]]!r} and {name!r} both take {keys[0]!r}; "
                "rgbpose_conv3d needs one RGB and one pose stream"
            )
        by_input[keys[0]] = name
    missing = sorted({"imgs", "heatmap_imgs"} - set(by_input))
    if missing:
        raise ValueError(f"init_from: rgbpose_conv3d needs a stream that takes {missing[0]!r}")
    rgb, pose = (sources[by_input[k]]["state"] for k in ("imgs", "heatmap_imgs"))
    return merge_unimodal(rgb, pose, model)


@register_model(contract=_contract, merge=_merge)
def rgbpose_conv3d(
    num_classes: int,
    rgb: Mapping[str, Any] | None = None,
    pose: Mapping[str, Any] | None = None,
    dropout: float = 0.5,
    lateral_drop_path: float = 0.0,
    detach_lateral: bool = False,
    speed_ratio: int = 4,
    channel_ratio: int = 4,
    lateral_kernel: int = 7,
) -> RGBPoseRecognizer:
    """RGBPoseConv3D (rgb_only + pose_only pathways, four laterals, ~36.0 M backbone params)."""
    for name, value in (("rgb", rgb), ("pose", pose)):
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"rgbpose_conv3d override {name!r} must be a mapping, got {value!r}")
    cfg = RGBPoseConfig(
        rgb=resnet3d_config(RGB_ONLY, rgb or {}, "rgbpose_conv3d.rgb"),
        pose=resnet3d_config(POSE_ONLY, pose or {}, "rgbpose_conv3d.pose"),
        speed_ratio=speed_ratio,
        channel_ratio=channel_ratio,
        lateral_kernel=lateral_kernel,
        lateral_drop_path=lateral_drop_path,
        detach_lateral=detach_lateral,
    )
    return RGBPoseRecognizer(cfg, num_classes, dropout)
