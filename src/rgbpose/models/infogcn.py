"""InfoGCN (Chi et al., CVPR 2022): self-attention graph convolution on a k-th mode skeleton
input, with a VAE-style latent head trained by an information-bottleneck objective
(REFERENCE_SEEDS 1.2-1.4; ``stnoah1/infogcn``, re-implemented from those facts).

Input ``keypoint`` [N, M, T, V, C] (persons, frames, joints, xyz; the reference takes the same
values as [N, C, T, V, M]) from the ``infogcn`` data pipeline (``rgbpose.data.infogcn``)::

    x [N, M, T, 25, 3] --(I - P^k) over joints--> Linear(3, 64) + joint embedding
      --BatchNorm1d over (M, V, C)--> [N*M, 64, T, 25]
      --> 9 x EncodingBlock: 64, 64, 64, 128/2, 128, 128, 256/2, 256, 256   (/2: temporal stride)
      --> backbone features [N, M, 256, T/4, 25]
      --mean over T, V, then persons--> fc + ReLU --> mu, logvar --> z --> decoder --> logits

    EncodingBlock(x) = ReLU( MS-TCN( SA-GC(x) ) + residual(x) )
    SA-GC(x)         = ReLU( BN( sum_h Conv1x1_h( (S_h * T_h) X ) ) + down(x) )
                       S_h: per-frame softmax attention over joints, T_h: learnable topology
                       (identity at init; the skeleton enters only through the k-mode input)

The k-th mode input replaces joint v by ``x_v - x_(k-th ancestor of v)`` on the NTU tree rooted
at SpineMid (k = 1: bones, k >= 8: joints); k = 0 would zero the input and is refused.  The
latent z is ``mu + eps * exp(noise_ratio * logvar)`` in training and ``mu`` in eval.  The model
returns :class:`InfoGCNOutput` ``(logits, z)``; ``loss(outputs, labels)`` is
:class:`rgbpose.models.infogcn_loss.InformationBottleneckLoss`, whose fixed class prior is a
buffer of the model (saved in the checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rgbpose.layouts import NTU25
from rgbpose.models.infogcn_loss import InformationBottleneckLoss
from rgbpose.models.registry import Contract, ModelInput, register_model

#: InfoGCN's joint tree (0-based parent of each NTU joint, root SpineMid = 1).  It is the ntu25
#: layout's tree except in the hands, which InfoGCN chains hand -> thumb -> hand tip
#: (graph/ntu_rgb_d.py: 8 -> 23 -> 22 and 12 -> 25 -> 24, 1-based), giving the tree depth 7.
INFOGCN_PARENTS: tuple[int, ...] = tuple(
    {21: 22, 23: 24}.get(v, p) for v, p in enumerate(NTU25.parents)
)
INFOGCN_ROOT = NTU25.root


class InfoGCNOutput(NamedTuple):
    """``logits`` [N, K] (the one scored head) and the latent ``z`` [N, D] (for the loss)."""

    logits: torch.Tensor
    z: torch.Tensor


def parent_matrix(
    parents: tuple[int, ...] = INFOGCN_PARENTS, root: int = INFOGCN_ROOT
) -> np.ndarray:
    """float64 ``P`` [V, V] with ``P[child, parent] = 1`` (the root has no parent)."""
    p = np.zeros((len(parents), len(parents)))
    for child, parent in enumerate(parents):
        if child != root:
            p[child, parent] = 1.0
    return p


def k_mode_matrix(
    k: int, parents: tuple[int, ...] = INFOGCN_PARENTS, root: int = INFOGCN_ROOT
) -> torch.Tensor:
    """float32 ``I - P^k`` [V, V]: row v gives ``x_v - x_(k-th ancestor of v)``, or ``x_v`` when
    v has fewer than k ancestors.  k must be >= 1 (k = 0 zeroes every input)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (k = 0 gives an all-zero input), got {k!r}")
    p = parent_matrix(parents, root)
    return torch.from_numpy(np.eye(len(parents)) - np.linalg.matrix_power(p, k)).float()


def _kaiming(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    nn.init.zeros_(conv.bias)
    return conv


def _bn(channels: int, gamma: float = 1.0) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    nn.init.constant_(bn.weight, gamma)
    return bn


# ----------------------------------------------------------------------------- blocks
class SelfAttentionGraphConv(nn.Module):
    """SA-GC: per-frame joint self-attention (``num_heads`` heads of width ``in // 8`` on the
    layer-normed features) times a learnable topology (identity at init), one 1x1 conv per head
    on the aggregated features, summed, BN (gamma 1e-6 at init), plus the (projected) input."""

    def __init__(self, in_channels: int, out_channels: int, num_heads: int, num_joints: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, in_channels // 8
        if self.head_dim < 1:
            raise ValueError(f"SA-GC needs at least 8 input channels, got {in_channels}")
        self.norm = nn.LayerNorm(in_channels)
        self.to_qk = nn.Linear(in_channels, 2 * num_heads * self.head_dim)
        nn.init.normal_(self.to_qk.weight, 0.0, 1.0)
        self.topology = nn.Parameter(torch.eye(num_joints).repeat(num_heads, 1, 1))
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 1) for _ in range(num_heads)
        )
        std = math.sqrt(2.0 / (out_channels * in_channels * num_heads))
        for conv in self.convs:
            nn.init.normal_(conv.weight, 0.0, std)
            nn.init.zeros_(conv.bias)
        self.bn = _bn(out_channels, 1e-6)
        self.down: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.down = nn.Sequential(_kaiming(nn.Conv2d(in_channels, out_channels, 1)),
                                      _bn(out_channels))  # fmt: skip

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, V] -> softmax attention [B, T, H, V, V] over the joints of each frame."""
        b, _, t, v = x.shape
        qk = self.to_qk(self.norm(x.permute(0, 2, 3, 1)))
        q, k = qk.view(b, t, v, 2, self.num_heads, self.head_dim).unbind(3)
        dots = torch.einsum("btvhd,btuhd->bthvu", q, k) * self.head_dim**-0.5
        return dots.softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adjacency = self.attention(x) * self.topology  # [B, T, H, V, V]
        out = sum(
            conv(torch.einsum("btvu,bctu->bctv", adjacency[:, :, h], x))
            for h, conv in enumerate(self.convs)
        )
        return F.relu(self.bn(out) + self.down(x))


class MultiScaleTCN(nn.Module):
    """MS-TCN without its own residual: four branches of ``channels // 4`` (1x1 conv, BN, ReLU,
    then a kernel-5 temporal conv with dilation 1 or 2 + BN / a 3x1 max-pool + BN / nothing, the
    last branch's 1x1 conv carrying the stride), concatenated, ReLU.  PyTorch's default init."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel: int = 5):
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"MS-TCN needs out_channels divisible by 4, got {out_channels}")
        c = out_channels // 4

        def pointwise(stride_t: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(in_channels, c, 1, stride=(stride_t, 1)), nn.BatchNorm2d(c)]

        branches = [
            nn.Sequential(
                *pointwise(), nn.ReLU(),
                nn.Conv2d(c, c, (kernel, 1), (stride, 1), (d * (kernel - 1) // 2, 0), (d, 1)),
                nn.BatchNorm2d(c),
            )
            for d in (1, 2)
        ]  # fmt: skip
        branches.append(
            nn.Sequential(
                *pointwise(),
                nn.ReLU(),
                nn.MaxPool2d((3, 1), (stride, 1), (1, 0)),
                nn.BatchNorm2d(c),
            )  # fmt: skip
        )
        branches.append(nn.Sequential(*pointwise(stride)))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.cat([branch(x) for branch in self.branches], dim=1))


class EncodingBlock(nn.Module):
    """``ReLU(MS-TCN(SA-GC(x)) + residual(x))``; the residual is the identity when the shape is
    kept, else a strided 1x1 conv + BN."""

    def __init__(self, in_channels: int, out_channels: int, num_heads: int, num_joints: int,
                 stride: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.gc = SelfAttentionGraphConv(in_channels, out_channels, num_heads, num_joints)
        self.tcn = MultiScaleTCN(out_channels, out_channels, stride)
        self.residual: nn.Module = nn.Identity()
        if in_channels != out_channels or stride != 1:
            conv = nn.Conv2d(in_channels, out_channels, 1, stride=(stride, 1))
            self.residual = nn.Sequential(_kaiming(conv), _bn(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.tcn(self.gc(x)) + self.residual(x))


# ----------------------------------------------------------------------------- network
#: (width multiple of base_channels, temporal stride) of the 9 blocks
BLOCKS = ((1, 1), (1, 1), (1, 1), (2, 2), (2, 1), (2, 1), (4, 2), (4, 1), (4, 1))


class InfoGCNBackbone(nn.Module):
    """k-mode input, joint embedding, MVC batch norm and the 9 encoding blocks:
    ``[N, M, T, V, C] -> [N, M, 4 * base_channels, T / 4, V]``."""

    k_mode: torch.Tensor

    def __init__(self, k: int, in_channels: int = 3, base_channels: int = 64, num_heads: int = 3,
                 num_persons: int = 2) -> None:  # fmt: skip
        super().__init__()
        matrix = k_mode_matrix(k)
        num_joints = matrix.shape[0]
        self.in_channels, self.num_persons, self.num_joints = in_channels, num_persons, num_joints
        # Fixed, rebuilt from k: not a weight, so not in the state dict (as the reference).
        self.register_buffer("k_mode", matrix, persistent=False)
        self.joint_embed = nn.Linear(in_channels, base_channels)
        self.pos_embed = nn.Parameter(torch.randn(1, num_joints, base_channels))
        self.data_bn = nn.BatchNorm1d(num_persons * num_joints * base_channels)
        blocks, width = [], base_channels
        for mult, stride in BLOCKS:
            out = base_channels * mult
            blocks.append(EncodingBlock(width, out, num_heads, num_joints, stride))
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = width

    def forward(self, keypoint: torch.Tensor) -> torch.Tensor:
        n, m, t, v, c = keypoint.shape
        if (m, v, c) != (self.num_persons, self.num_joints, self.in_channels):
            raise ValueError(
                f"InfoGCN takes keypoint [N, M={self.num_persons}, T, V={self.num_joints}, "
                f"C={self.in_channels}], got {list(keypoint.shape)}"
            )
        x = torch.einsum("vu,nmtuc->nmtvc", self.k_mode.to(keypoint.dtype), keypoint)
        x = self.joint_embed(x) + self.pos_embed  # [N, M, T, V, D]
        d = x.shape[-1]
        x = self.data_bn(x.permute(0, 1, 3, 4, 2).reshape(n, m * v * d, t))  # (M, V, D) channels
        x = x.view(n, m, v, d, t).permute(0, 1, 3, 4, 2).reshape(n * m, d, t, v)
        for block in self.blocks:
            x = block(x)
        return x.view(n, m, *x.shape[1:])


class LatentHead(nn.Module):
    """Mean over frames, joints then persons -> fc + ReLU (+ dropout) -> mu, logvar -> z
    (sampled in training, mu in eval) -> linear decoder: :class:`InfoGCNOutput`."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0,
                 noise_ratio: float = 0.5) -> None:  # fmt: skip
        super().__init__()
        self.noise_ratio = noise_ratio
        self.fc = nn.Linear(in_channels, in_channels)
        self.fc_mu = nn.Linear(in_channels, in_channels)
        self.fc_logvar = nn.Linear(in_channels, in_channels)
        for layer in (self.fc, self.fc_mu, self.fc_logvar):
            nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain("relu"))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.decoder = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.decoder.weight, 0.0, math.sqrt(2.0 / num_classes))

    def forward(self, feats: torch.Tensor) -> InfoGCNOutput:
        x = feats.mean(dim=(3, 4)).mean(1)
        x = self.dropout(F.relu(self.fc(x)))
        mu, logvar = self.fc_mu(x), self.fc_logvar(x)
        z = mu
        if self.training:
            std = torch.clamp(torch.exp(self.noise_ratio * logvar), max=100)
            z = mu + torch.randn_like(std) * std
        return InfoGCNOutput(self.decoder(z), z)


class InfoGCN(nn.Module):
    """``backbone`` + ``head`` + the information-bottleneck ``objective`` (its class prior is
    the buffer ``objective.prior``); ``forward(keypoint) -> InfoGCNOutput``."""

    def __init__(self, backbone: InfoGCNBackbone, head: LatentHead,
                 objective: InformationBottleneckLoss) -> None:  # fmt: skip
        super().__init__()
        self.backbone, self.head, self.objective = backbone, head, objective

    def forward_features(self, keypoint: torch.Tensor) -> torch.Tensor:
        return self.backbone(keypoint)

    def forward_head(self, feats: torch.Tensor) -> InfoGCNOutput:
        return self.head(feats)

    def forward(self, keypoint: torch.Tensor) -> InfoGCNOutput:
        return self.forward_head(self.forward_features(keypoint))

    def loss(self, outputs: InfoGCNOutput, labels: torch.Tensor) -> torch.Tensor:
        return self.objective(outputs.logits, outputs.z, labels)


def _contract(overrides: Mapping[str, Any]) -> Contract:
    channels = overrides.get("in_channels", 3)
    key = "model.overrides.in_channels"
    return Contract((ModelInput("keypoint", "M,T,V,C (M=2, V=25 ntu25, C=xyz)", channels, key),))


@register_model(contract=_contract)
def infogcn(
    num_classes: int,
    layout: str = "ntu25",
    k: int = 1,
    in_channels: int = 3,
    base_channels: int = 64,
    num_heads: int = 3,
    dropout: float = 0.0,
    noise_ratio: float = 0.5,
    prior_gain: float = 3.0,
    prior_seed: int = 1,
    lambda_1: float = 1e-4,
    lambda_2: float = 0.1,
    label_smoothing: float = 0.1,
) -> InfoGCN:
    """InfoGCN on Kinect ``ntu25`` joints with k-th mode ``k`` (the reference's ``--k``; its
    ensemble uses 1, 2 and 8).  Defaults are the NTU recipe: base 64, 3 heads, noise ratio 0.5,
    prior gain 3 (seed 1), lambda_1 1e-4, lambda_2 0.1, label smoothing 0.1."""
    if layout != "ntu25":
        raise ValueError(f"infogcn's k-mode tree is NTU's: layout must be 'ntu25', got {layout!r}")
    if base_channels % 8 or base_channels < 8:
        raise ValueError(f"base_channels must be a positive multiple of 8, got {base_channels}")
    backbone = InfoGCNBackbone(k, in_channels, base_channels, num_heads)
    head = LatentHead(backbone.out_channels, num_classes, dropout, noise_ratio)
    objective = InformationBottleneckLoss(
        num_classes, backbone.out_channels, gain=prior_gain, seed=prior_seed,
        label_smoothing=label_smoothing, lambda_1=lambda_1, lambda_2=lambda_2,
    )  # fmt: skip
    return InfoGCN(backbone, head, objective)
