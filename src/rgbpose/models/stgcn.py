"""ST-GCN++ (PYSKL ``configs/stgcn++``): a spatial-temporal graph network on joint sequences.

Registered as ``stgcnpp``; input ``keypoint`` ``[N, M, T, V, C]`` (M persons, T frames, V joints
of ``layout``, C = 3: x, y, score for 2D or x, y, z for 3D; ``rgbpose.data.skeleton``).
REFERENCE_SEEDS.md 4.2::

    data BN over (V, C) per person ('VC', PYSKL's default; 'MVC' and none selectable)
    10 blocks: C -> 64 (no block residual), 64 x3, 128 x3 (temporal stride 2 at block 5),
               256 x3 (stride 2 at block 8)
    block:     ReLU(tcn(gcn(x)) + residual(x)); residual = identity, or a strided 1x1 conv + BN
    gcn:       1x1 conv to K * out channels, aggregate with the learnable adjacency A [K, V, V]
               (initialised from the 'spatial' partition, rgbpose.models.graph), BN, + its own
               residual (identity or 1x1 conv + BN), ReLU
    tcn:       6 branches of out/6 channels (the remainder to the first): 1x1-BN-ReLU then a
               3x1 conv with dilation 1, 2, 3, 4; 1x1-BN-ReLU-max pool 3x1; a 1x1 conv; concat,
               BN-ReLU-1x1 conv, BN
    head:      mean over T and V, mean over M, dropout (0), linear (weights N(0, 0.01))

Parameters (A counted): COCO-17 backbone 1,377,596 (60-class model 1,393,016); NTU-25 backbone
1,387,724 (1,403,144).  Features ``[N, M, 256, T / 4, V]``.  Weights other than the head's keep
PyTorch's default initialisation, as PYSKL's (its ``init_weights`` only loads checkpoints).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgbpose.layouts import get_layout
from rgbpose.models.graph import spatial_partition
from rgbpose.models.registry import Contract, ModelInput, register_model
from rgbpose.models.resnet3d import Recognizer3D

#: the multi-scale TCN branches: (kernel, dilation), 'max' (3x1 max pool), '1x1'
MSTCN_BRANCHES: tuple[tuple[int, int] | str, ...] = ((3, 1), (3, 2), (3, 3), (3, 4), "max", "1x1")
DATA_BN = ("VC", "MVC", "none")


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """1x1 conv (temporal ``stride``) + BN: the projection of a residual path."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=(stride, 1)), nn.BatchNorm2d(cout))


class GraphConv(nn.Module):
    """Spatial graph convolution with a learnable adjacency and a residual path."""

    def __init__(self, in_channels: int, out_channels: int, adjacency: Tensor) -> None:
        super().__init__()
        self.num_subsets = adjacency.shape[0]
        self.A = nn.Parameter(adjacency.clone())
        self.conv = nn.Conv2d(in_channels, out_channels * self.num_subsets, 1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.down = (
            nn.Identity() if in_channels == out_channels else _conv_bn(in_channels, out_channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        n, _, t, v = x.shape
        res = self.down(x)
        y = self.conv(x).view(n, self.num_subsets, -1, t, v)
        y = torch.einsum("nkctv,kvw->nctw", y, self.A)
        return F.relu(self.bn(y) + res)


class MultiScaleTCN(nn.Module):
    """Temporal convolution over parallel branches (:data:`MSTCN_BRANCHES`)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        n = len(MSTCN_BRANCHES)
        mid = out_channels // n
        widths = [out_channels - mid * (n - 1)] + [mid] * (n - 1)
        branches = []
        for spec, width in zip(MSTCN_BRANCHES, widths):
            if spec == "1x1":
                branches.append(nn.Conv2d(in_channels, width, 1, stride=(stride, 1)))
                continue
            pre = [nn.Conv2d(in_channels, width, 1), nn.BatchNorm2d(width), nn.ReLU()]
            if spec == "max":
                last = nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0))
            else:
                k, d = spec
                pad = (k - 1) * d // 2
                last = nn.Conv2d(
                    width, width, (k, 1), stride=(stride, 1), padding=(pad, 0), dilation=(d, 1)
                )
            branches.append(nn.Sequential(*pre, last))
        self.branches = nn.ModuleList(branches)
        self.transform = nn.Sequential(
            nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Conv2d(out_channels, out_channels, 1)
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.bn(self.transform(y))


class STGCNBlock(nn.Module):
    """``ReLU(tcn(gcn(x)) + residual(x))``."""

    def __init__(
        self, in_channels: int, out_channels: int, adjacency: Tensor, stride: int = 1,
        residual: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.gcn = GraphConv(in_channels, out_channels, adjacency)
        self.tcn = MultiScaleTCN(out_channels, out_channels, stride)
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = _conv_bn(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return F.relu(y)


class STGCNPlusPlus(nn.Module):
    """The ST-GCN++ backbone: ``[N, M, T, V, C] -> [N, M, C', T', V]``."""

    def __init__(
        self,
        layout: str = "coco17",
        in_channels: int = 3,
        base_channels: int = 64,
        num_stages: int = 10,
        inflate_stages: Sequence[int] = (5, 8),
        down_stages: Sequence[int] = (5, 8),
        data_bn: str = "VC",
        num_person: int = 2,
    ) -> None:
        super().__init__()
        if data_bn not in DATA_BN:
            raise ValueError(f"data_bn must be one of {DATA_BN}, got {data_bn!r}")
        for name, value in (("in_channels", in_channels), ("base_channels", base_channels),
                            ("num_stages", num_stages), ("num_person", num_person)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if base_channels < len(MSTCN_BRANCHES):
            raise ValueError(f"base_channels must be >= {len(MSTCN_BRANCHES)} (one per TCN branch)")
        self.layout = get_layout(layout)
        self.num_joints = self.layout.num_joints
        self.in_channels, self.num_person, self.data_bn_type = in_channels, num_person, data_bn
        adjacency = torch.from_numpy(spatial_partition(self.layout))
        width = {"VC": in_channels * self.num_joints, "MVC": num_person * in_channels}
        width["MVC"] *= self.num_joints
        self.data_bn = nn.BatchNorm1d(width[data_bn]) if data_bn != "none" else nn.Identity()

        blocks = []
        if in_channels != base_channels:
            blocks.append(STGCNBlock(in_channels, base_channels, adjacency, residual=False))
        channels, inflations = base_channels, 0
        for i in range(2, num_stages + 1):
            inflations += i in inflate_stages
            out = base_channels * 2**inflations
            blocks.append(STGCNBlock(channels, out, adjacency, 1 + (i in down_stages)))
            channels = out
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        n, m, t, v, c = x.shape
        if (v, c) != (self.num_joints, self.in_channels):
            raise ValueError(
                f"ST-GCN++ built for layout {self.layout.name} ({self.num_joints} joints) and "
                f"{self.in_channels} channels got keypoint {tuple(x.shape)} [N, M, T, V, C]"
            )
        if self.data_bn_type == "MVC" and m != self.num_person:
            raise ValueError(f"data_bn 'MVC' is built for {self.num_person} persons, got {m}")
        x = x.permute(0, 1, 3, 4, 2).contiguous()  # N, M, V, C, T
        if self.data_bn_type == "MVC":
            x = self.data_bn(x.view(n, m * v * c, t))
        else:
            x = self.data_bn(x.view(n * m, v * c, t))
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for block in self.blocks:
            x = block(x)
        return x.reshape((n, m) + x.shape[1:])


class GCNHead(nn.Module):
    """``[N, M, C, T, V]`` -> mean over (T, V) then M -> dropout -> linear -> ``[N, K]``."""

    def __init__(
        self, in_channels: int, num_classes: int, dropout: float = 0.0, init_std: float = 0.01
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc.weight, std=init_std)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(x.mean(dim=(3, 4)).mean(dim=1)))


class GCNRecognizer(Recognizer3D):
    """A skeleton backbone + :class:`GCNHead`; called as ``model(keypoint=x)``.  Forward and loss
    are :class:`Recognizer3D`'s (whose own constructor builds a 3D pooled head)."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0) -> None:
        nn.Module.__init__(self)
        self.backbone = backbone
        self.head = GCNHead(backbone.out_channels, num_classes, dropout)
        self.num_classes = num_classes
        self.input_key = "keypoint"


def _contract(overrides: Mapping[str, Any]) -> Contract:
    channels = overrides.get("in_channels", 3)
    return Contract((ModelInput("keypoint", "M,T,V,C", channels, "model.overrides.in_channels"),))


#: the backbone overrides of ``stgcnpp`` (STGCNPlusPlus's arguments)
BACKBONE_OVERRIDES = tuple(inspect.signature(STGCNPlusPlus).parameters)


@register_model(contract=_contract)
def stgcnpp(num_classes: int, dropout: float = 0.0, **backbone: Any) -> GCNRecognizer:
    """ST-GCN++ (PYSKL): 10 blocks 64/128/256, learnable 'spatial' adjacency, MS-TCN; overrides
    ``dropout`` and :data:`BACKBONE_OVERRIDES` (``layout``, ``base_channels``, ...)."""
    unknown = sorted(set(backbone) - set(BACKBONE_OVERRIDES))
    if unknown:
        raise ValueError(
            f"unknown override(s) {unknown} for stgcnpp; allowed: {['dropout', *BACKBONE_OVERRIDES]}"
        )
    return GCNRecognizer(STGCNPlusPlus(**backbone), num_classes, dropout)
