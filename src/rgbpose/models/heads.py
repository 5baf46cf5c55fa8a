"""Classification heads: I3D-style pooled linear head, and the two-head RGBPose variant.

DESIGN.md 3.7: global average pool -> dropout 0.5 -> Linear (weights N(0, 0.01), bias 0).
RGBPoseConv3D has one such head per pathway (2048 -> K for RGB, 512 -> K for pose); both are
trained (loss = CE(rgb) + CE(pose)) and late-fused at test time; there is no fused logit.

Module names (checkpoint format): unimodal ``head.fc``; RGBPose ``head.rgb.fc``, ``head.pose.fc``.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn


class RGBPose(NamedTuple):
    """A pair of per-pathway tensors (features or logits)."""

    rgb: Tensor
    pose: Tensor


class ClsHead(nn.Module):
    """``[N, C, T, H, W] -> avgpool -> dropout -> fc -> [N, num_classes]``."""

    def __init__(
        self, in_channels: int, num_classes: int, dropout: float = 0.5, init_std: float = 0.01
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        self.init_std = init_std
        self.init_weights()

    def init_weights(self) -> None:
        """Small normal weights so the initial logits are near zero (loss starts near log K)."""
        nn.init.normal_(self.fc.weight, std=self.init_std)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(x).flatten(1)))


class RGBPoseHead(nn.Module):
    """Two independent :class:`ClsHead` s: ``rgb`` on the RGB feature, ``pose`` on the pose one."""

    def __init__(
        self, rgb_channels: int, pose_channels: int, num_classes: int, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.rgb = ClsHead(rgb_channels, num_classes, dropout)
        self.pose = ClsHead(pose_channels, num_classes, dropout)

    def forward(self, features: tuple[Tensor, Tensor]) -> RGBPose:
        rgb, pose = features
        return RGBPose(rgb=self.rgb(rgb), pose=self.pose(pose))
