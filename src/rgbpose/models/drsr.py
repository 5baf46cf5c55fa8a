"""DRSR (Zhou et al., "Decoupling and Recoupling Spatiotemporal Representation for RGB-D-based
Motion Recognition", CVPR 2022; ``damo-cv/MotionRGBD``): the unimodal network "I3DWTrans",
re-implemented from REFERENCE_SEEDS 3.2-3.3 and checked against the reference code (same
parameter counts; equal outputs on copied weights).  The same class serves RGB and depth.

Data flow (full config: ``clip_len`` 64, ``image_size`` 224, ``segments`` (16, 32, 48))::

    clip [B,3,64,224,224], guidance [B,1,64,224,224] (the FRP rank-pool map)
    trunk: a spatial-only Inception-I3D (every conv kernel [1,k,k]; every Unit3d is Conv3d
      without bias, TF-"same" zero padding, BN eps 1e-3 momentum 0.01, ReLU)
      conv1a [1,7,7]/2 64 -> pool2a [1,3,3]/2 -> conv2b 64 -> conv2c [1,3,3] 192 -> pool3a
      -> mixed3b (+FRP) 256 -> mixed3c 480 -> pool4a -> mixed4b (+FRP) 512 -> mixed4c 512
      -> pool5a [1,2,2]/2 -> mixed5b (+FRP) 832 -> mixed5c 1024       [B,1024,64,7,7]
    spatial GAP -> LayerNorm(1024) + Linear(1024 -> 512)             tokens [B,64,512]
    temporal: RCM recoupling, then 3 independent branches that each draw one token per segment
      (16 / 32 / 48 segments), prepend a cls token, add a N(0,1) position embedding; layer 1
      first runs a TemporalInception ([3,1,1] kernels, 512 -> 512) + MaxPool [3,1,1] over the
      non-cls tokens; 6 pre-norm blocks (8 heads x 64, kNN attention keeping int(0.7 n) keys
      per query, FF 512 -> 768 -> 512 GELU, dropout 0.1)      cls features 3 x [B,512]
    head: per branch LayerNorm + Linear(512 -> C), divided by the sharpness tau(epoch);
      merged logits = element-wise max of the three                  4 x [B,C]

* Inception modules (:class:`Inception`): 1x1 | 1x1 -> k | 1x1 -> k | max-pool -> 1x1,
  concatenated.  The trunk's pool branch is a [3,3,3] max pool (stride 1, "same"), as in the
  reference: the only temporal mixing in the CNN.  "Same" padding pads with zeros, as the
  reference does (also before max pools).
* FRP (:class:`FeatureRankPooling`): one module shared by mixed3b/4b/5b with two weights
  (init [1, 0]); the guidance is 2x2-max-pooled down to the feature map, ``out = w0 * a +
  w1 * a * (g + 1)`` and the block output becomes ``a + out``.  The guidance map ``g`` is built
  by the data pipeline (:func:`rgbpose.data.drsr.frp_guidance`).
* RCM (:class:`RecouplingModule`, SEHeads 1) on ``X`` [B, C=512, T]: temporal weights
  ``w_t = sigmoid(LN_T(W2 GELU(W1 mean_c X)))`` (T -> 256 -> T, no bias), channel weights
  ``w_c = sigmoid(mean_i (Q K^T / 8)[i, :])`` with ``Q = X Wq``, ``K = X Wk`` (T -> 64, no bias),
  output ``X * w_c w_t``; ``spatial_weights = Linear(T -> 512)(w_t)`` for the self-distillation.
* Multi-scale sampling: segment i of n tokens split into s segments is ``[n i / s,
  max(n i / s + 1, n (i + 1) / s))``; training draws one index per segment uniformly (the same
  indices for the whole batch, from torch's global RNG).  The reference draws randomly **also at
  test**; ``eval_sampling='random'`` (default) keeps that, ``'center'`` takes each segment's
  middle index ``(start + end - 1) // 2`` in eval mode, which makes test scores deterministic.
* Sharpness: ``tau(e) = linspace(0.04, 0.07, 30)[e]`` for e < 30, then 0.07
  (:func:`sharpness_tau`).  The model keeps the epoch in the buffer ``epoch`` (saved in the
  checkpoint); the engine calls :meth:`DRSR.set_epoch` at the start of every training epoch, so a
  checkpoint tests with the tau of its last training epoch, as the reference's test pass does.

Contract: inputs ``clip`` [B, in_channels, clip_len, H, W] and ``guidance`` [B, 1, clip_len, H, W]
(H = W = ``image_size``, a multiple of 32).  Output dict: ``logits`` (the max-merged logits, the
one scored head), ``logits_small`` / ``logits_medium`` / ``logits_large`` (the branch logits),
``spatial_weights`` [B, 512] and ``cls_mean`` [B, 512] (the mean of the three cls features; the
KL target).  Unlike the reference, every output keeps its batch dimension at batch 1.

Loss (:meth:`DRSR.loss`): ``1 * LS-CE(merged) + 0.5 * sum_branch LS-CE(branch) + lambda_d * KL``
with label smoothing 0.1, ``KL = kl_div(log_softmax(spatial_weights / 0.5),
softmax(cls_mean.detach() / 0.5), reduction='sum')`` (summed over batch and dimensions) and
``lambda_d`` 0 for epochs 0-1, then 1.  The KL term is always computed (times 0 early), so every
parameter has a gradient (DDP without unused parameters).

Module names (checkpoint format): ``backbone.trunk.*``, ``backbone.frp.weight``,
``backbone.linear_map.*``, ``backbone.temporal.rcm.*``, ``backbone.temporal.branches.{0,1,2}.*``
(small, medium, large), ``head.branches.{0,1,2}.*``, buffer ``epoch``.  ``backbone`` is the
network without heads, the unit FusionNet (:mod:`rgbpose.models.drsr_fusion`) reuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rgbpose.models.registry import Contract, ModelInput, register_model

#: the branch output keys, small / medium / large scale
BRANCH_KEYS = ("logits_small", "logits_medium", "logits_large")


# ----------------------------------------------------------------------------- pure functions
def sharpness_tau(
    epoch: int, start: float = 0.04, end: float = 0.07, warmup_epochs: int = 30
) -> float:
    """The sharpness temperature of ``epoch``: ``linspace(start, end, warmup_epochs)[epoch]``
    during the warm-up, ``end`` after it."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if epoch >= warmup_epochs:
        return float(end)
    return float(np.linspace(start, end, warmup_epochs)[epoch])


def knn_keep(n: int, ratio: float) -> int:
    """Keys kept per query by kNN attention over n tokens: ``int(ratio * n)`` (17 -> 11)."""
    return int(n * ratio)


def knn_softmax(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Softmax over the last dim keeping, per row, only the ``keep`` largest scores (exactly
    ``keep``: ties are broken by ``topk``); the others get probability 0."""
    if not 1 <= keep <= scores.shape[-1]:
        raise ValueError(f"kNN attention keeps {keep} of {scores.shape[-1]} keys")
    index = scores.topk(keep, dim=-1).indices
    kept = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, index, True)
    return scores.masked_fill(~kept, float("-inf")).softmax(dim=-1)


def segment_bounds(n: int, segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, end) int64 [segments] of the segments of n tokens: ``[n i // s,
    max(n i // s + 1, n (i + 1) // s))`` (segments repeat tokens when s > n)."""
    i = torch.arange(segments, device="cpu")
    start = (i * n) // segments
    end = torch.maximum(start + 1, ((i + 1) * n) // segments)
    return start, end


def distillation_kl(
    spatial_weights: torch.Tensor, cls_mean: torch.Tensor, temperature: float = 0.5
) -> torch.Tensor:
    """The recoupling self-distillation term: ``kl_div(log_softmax(spatial_weights / T),
    softmax(cls_mean.detach() / T), reduction='sum')`` (summed over batch and dimensions)."""
    return F.kl_div(
        F.log_softmax(spatial_weights / temperature, dim=-1),
        F.softmax(cls_mean.detach() / temperature, dim=-1),
        reduction="sum",
    )


def same_padding(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> list[int]:
    """TF-"same" padding of a [T, H, W] input as ``F.pad`` wants it (W first, the extra pixel
    after): per dim ``max(k - s, 0)`` when s divides the size, else ``max(k - size % s, 0)``."""
    pad: list[int] = []
    for n, k, s in reversed(list(zip(size, kernel, stride))):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pad += [total // 2, total - total // 2]
    return pad


# ----------------------------------------------------------------------------- CNN blocks
def set_bn_momentum(module: nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum of every ``BatchNorm3d`` in ``module``."""
    if not 0 < momentum <= 1:
        raise ValueError(f"bn_momentum must be in (0, 1], got {momentum!r}")
    for m in module.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.momentum = momentum


class Unit3d(nn.Module):
    """Conv3d (no bias, TF-"same" zero padding) -> BN (eps 1e-3, momentum 0.01) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int] = (1, 1, 1),
                 stride: Sequence[int] = (1, 1, 1)) -> None:  # fmt: skip
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride))
        return F.relu(self.bn(self.conv(x)))


class SameMaxPool3d(nn.Module):
    """Max pooling after TF-"same" zero padding (as the reference: zeros, not -inf)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride))
        return F.max_pool3d(x, self.kernel, self.stride)


class Inception(nn.Module):
    """Four branches concatenated: 1x1 | 1x1 -> k | 1x1 -> k | max-pool -> 1x1, with
    ``widths = (b0, b1 reduce, b1, b2 reduce, b2, b3)``.  ``axis='spatial'``: k = [1,3,3] and a
    [3,3,3] pool (the trunk); ``'temporal'``: k = [3,1,1] and a [3,1,1] pool (DTN layer 1)."""

    def __init__(self, in_channels: int, widths: Sequence[int], axis: str = "spatial") -> None:
        super().__init__()
        if axis not in ("spatial", "temporal"):
            raise ValueError(f"Inception axis must be 'spatial' or 'temporal', got {axis!r}")
        kernel, pool = ((1, 3, 3), (3, 3, 3)) if axis == "spatial" else ((3, 1, 1), (3, 1, 1))
        c0, c1r, c1, c2r, c2, c3 = widths
        self.b0 = Unit3d(in_channels, c0)
        self.b1a, self.b1b = Unit3d(in_channels, c1r), Unit3d(c1r, c1, kernel)
        self.b2a, self.b2b = Unit3d(in_channels, c2r), Unit3d(c2r, c2, kernel)
        self.b3a, self.b3b = SameMaxPool3d(pool, (1, 1, 1)), Unit3d(in_channels, c3)
        self.out_channels = c0 + c1 + c2 + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))],
            dim=1,
        )


class FeatureRankPooling(nn.Module):
    """FRP: ``out = w0 * a + w1 * a * (g + 1)`` per frame, with the guidance map ``g`` 2x2
    max-pooled down to the feature map's size; two weights initialised [1, 0] (the caller adds
    ``a``: the block output is ``a + out``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        g = guidance
        while g.shape[-1] > x.shape[-1]:
            g = F.max_pool3d(g, (1, 2, 2))
        if g.shape[-3:] != x.shape[-3:]:
            raise ValueError(
                f"FRP: the guidance map {tuple(guidance.shape[-3:])} does not pool down to the "
                f"feature map {tuple(x.shape[-3:])} (T x H x W): image_size must be a multiple "
                "of 32 and the guidance must have the clip's frames and size"
            )
        return self.weight[0] * x + self.weight[1] * (x * (g + 1.0))


#: the trunk: (name, kind, args); kind 'unit' (in, out, kernel, stride), 'pool' (kernel,
#: stride) or 'mixed' (in, widths); FRP follows FRP_AFTER
TRUNK_LAYOUT: tuple[tuple[str, str, tuple[Any, ...]], ...] = (
    ("conv1a", "unit", (None, 64, (1, 7, 7), (1, 2, 2))),
    ("pool2a", "pool", ((1, 3, 3), (1, 2, 2))),
    ("conv2b", "unit", (64, 64, (1, 1, 1), (1, 1, 1))),
    ("conv2c", "unit", (64, 192, (1, 3, 3), (1, 1, 1))),
    ("pool3a", "pool", ((1, 3, 3), (1, 2, 2))),
    ("mixed3b", "mixed", (192, (64, 96, 128, 16, 32, 32))),
    ("mixed3c", "mixed", (256, (128, 128, 192, 32, 96, 64))),
    ("pool4a", "pool", ((1, 3, 3), (1, 2, 2))),
    ("mixed4b", "mixed", (480, (192, 96, 208, 16, 48, 64))),
    ("mixed4c", "mixed", (512, (160, 112, 224, 24, 64, 64))),
    ("pool5a", "pool", ((1, 2, 2), (1, 2, 2))),
    ("mixed5b", "mixed", (512, (256, 160, 320, 32, 128, 128))),
    ("mixed5c", "mixed", (832, (384, 192, 384, 48, 128, 128))),
)
FRP_AFTER = ("mixed3b", "mixed4b", "mixed5b")
TRUNK_CHANNELS = 1024
#: spatial stride of the trunk (2 x 2 x 2 x 2 x 2)
TRUNK_STRIDE = 32


class SpatialTrunk(nn.Module):
    """The spatial-only Inception trunk; ``forward(clip, guidance, frp) -> [B, 1024, T, H/32,
    W/32]`` (Mixed_5c), with ``frp`` applied after mixed3b/4b/5b."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        for name, kind, args in TRUNK_LAYOUT:
            if kind == "unit":
                cin, cout, kernel, stride = args
                self.add_module(name, Unit3d(cin or in_channels, cout, kernel, stride))
            elif kind == "pool":
                self.add_module(name, SameMaxPool3d(*args))
            else:
                self.add_module(name, Inception(*args))

    def forward(self, clip: torch.Tensor, guidance: torch.Tensor,
                frp: FeatureRankPooling | None) -> torch.Tensor:  # fmt: skip
        x = clip
        for name, layer in self.named_children():
            x = layer(x)
            if frp is not None and name in FRP_AFTER:
                x = x + frp(x, guidance)
        return x


# ----------------------------------------------------------------------------- temporal part
class RecouplingModule(nn.Module):
    """RCM (SEHeads 1) on tokens [B, T, C]: returns ``(X * w_c w_t, spatial_weights [B, C],
    (w_t [B, T], w_c [B, C]))`` (module docstring)."""

    def __init__(self, frames: int, dim: int = 512, hidden: int = 256, dim_head: int = 64) -> None:
        super().__init__()
        self.q = nn.Linear(frames, dim_head, bias=False)
        self.k = nn.Linear(frames, dim_head, bias=False)
        self.temporal = nn.Sequential(
            nn.Linear(frames, hidden, bias=False),
            nn.GELU(),
            nn.Linear(hidden, frames, bias=False),
            nn.LayerNorm(frames),
        )
        self.to_spatial = nn.Linear(frames, dim)
        self.scale = dim_head**-0.5

    def forward(
        self, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        x = tokens.transpose(1, 2)  # [B, C, T]: the channels are the "tokens" here
        w_t = torch.sigmoid(self.temporal(x.mean(dim=1)))  # [B, T]
        scores = self.q(x) @ self.k(x).transpose(1, 2) * self.scale  # [B, C, C]
        w_c = torch.sigmoid(scores.mean(dim=1))  # mean over the queries: [B, C]
        out = tokens * w_t[:, :, None] * w_c[:, None, :]
        return out, self.to_spatial(w_t), (w_t, w_c)


class KNNAttention(nn.Module):
    """Multi-head self-attention where each query attends to its ``int(ratio * n)`` best keys."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.1,
                 knn_ratio: float = 0.7) -> None:  # fmt: skip
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale, self.knn_ratio = heads, dim_head**-0.5, knn_ratio
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) * self.scale
        if self.knn_ratio:
            attn = knn_softmax(scores, knn_keep(n, self.knn_ratio))
        else:
            attn = scores.softmax(dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout (one dropout module used twice)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN x)``, then ``x + FF(LN x)``."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float,
                 knn_ratio: float) -> None:  # fmt: skip
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = KNNAttention(dim, heads, dim_head, dropout, knn_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


#: TemporalInception widths of DTN layer 1 (512 -> 160 + 224 + 64 + 64 = 512)
TEMPORAL_INCEPTION = (160, 112, 224, 24, 64, 64)


class TemporalBranch(nn.Module):
    """One temporal scale: sample ``segments`` tokens, cls token + position embedding (both
    N(0, 1)), TemporalInception + MaxPool [3,1,1] on the non-cls tokens, ``num_layers`` blocks;
    returns the cls feature [B, dim]."""

    def __init__(self, segments: int, dim: int = 512, num_layers: int = 6, heads: int = 8,
                 dim_head: int = 64, mlp_dim: int = 768, dropout: float = 0.1,
                 knn_ratio: float = 0.7, eval_sampling: str = "random") -> None:  # fmt: skip
        super().__init__()
        self.segments, self.eval_sampling = segments, eval_sampling
        self.pos_embedding = nn.Parameter(torch.randn(1, segments + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.local = Inception(dim, TEMPORAL_INCEPTION, axis="temporal")
        self.local_pool = SameMaxPool3d((3, 1, 1), (1, 1, 1))
        self.blocks = nn.ModuleList(
            Block(dim, heads, dim_head, mlp_dim, dropout, knn_ratio) for _ in range(num_layers)
        )

    def sample_indices(self, n: int) -> torch.Tensor:
        """int64 [segments] token indices: a uniform draw per segment in training (and in eval
        with ``eval_sampling='random'``, the reference), each segment's middle otherwise."""
        start, end = segment_bounds(n, self.segments)
        if self.training or self.eval_sampling == "random":
            return start + (torch.rand(self.segments) * (end - start)).long()
        return (start + end - 1) // 2

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        x = tokens[:, self.sample_indices(tokens.shape[1]).to(tokens.device)]
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embedding
        cls, rest = x[:, :1], x[:, 1:].transpose(1, 2)[..., None, None]  # [B, D, s, 1, 1]
        rest = self.local_pool(self.local(rest)).flatten(2).transpose(1, 2)
        x = torch.cat([cls, rest], dim=1)
        for block in self.blocks:
            x = block(x)
        return x[:, 0]


class TemporalFeatures(NamedTuple):
    """The temporal part's output: the cls features (small, medium, large), each [B, D], and
    the RCM's ``spatial_weights`` [B, D]."""

    cls: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    spatial_weights: torch.Tensor

    @property
    def cls_mean(self) -> torch.Tensor:
        return (self.cls[0] + self.cls[1] + self.cls[2]) / 3.0

    @property
    def cls_max(self) -> torch.Tensor:
        """Element-wise max of the three cls features (FusionNet's temporal feature)."""
        return torch.stack(self.cls, dim=-1).amax(dim=-1)


class TemporalTransformer(nn.Module):
    """RCM recoupling + three temporal branches (the reference's DTN without its heads)."""

    def __init__(self, frames: int, segments: Sequence[int], dim: int = 512,
                 num_layers: int = 6, rcm_hidden: int = 256, knn_ratio: float = 0.7,
                 dropout: float = 0.1, eval_sampling: str = "random") -> None:  # fmt: skip
        super().__init__()
        self.rcm = RecouplingModule(frames, dim, rcm_hidden)
        self.branches = nn.ModuleList(
            TemporalBranch(s, dim, num_layers, dropout=dropout, knn_ratio=knn_ratio,
                           eval_sampling=eval_sampling)
            for s in segments
        )  # fmt: skip

    def forward(self, tokens: torch.Tensor) -> TemporalFeatures:
        x, spatial_weights, _ = self.rcm(tokens)
        cls = tuple(branch(x) for branch in self.branches)
        return TemporalFeatures(cls, spatial_weights)


# ----------------------------------------------------------------------------- the network
class DRSRBackbone(nn.Module):
    """The unimodal network without heads: trunk + FRP + LinearMap + temporal part.

    ``spatial(clip, guidance) -> tokens [B, T, dim]``, ``temporal(tokens) -> TemporalFeatures``,
    ``forward`` = both.
    """

    def __init__(self, in_channels: int = 3, clip_len: int = 64, image_size: int = 224,
                 segments: Sequence[int] = (16, 32, 48), num_layers: int = 6,
                 rcm_hidden: int = 256, knn_ratio: float = 0.7, dropout: float = 0.1,
                 eval_sampling: str = "random") -> None:  # fmt: skip
        super().__init__()
        self.in_channels, self.clip_len, self.image_size = in_channels, clip_len, image_size
        self.dim = 512
        self.trunk = SpatialTrunk(in_channels)
        self.frp = FeatureRankPooling()
        self.linear_map = nn.Sequential(
            nn.LayerNorm(TRUNK_CHANNELS), nn.Linear(TRUNK_CHANNELS, 512)
        )
        self.temporal = TemporalTransformer(
            clip_len, segments, 512, num_layers, rcm_hidden, knn_ratio, dropout, eval_sampling
        )

    def check_inputs(self, clip: torch.Tensor, guidance: torch.Tensor) -> None:
        want = (self.clip_len, self.image_size, self.image_size)
        if clip.dim() != 5 or clip.shape[1] != self.in_channels or tuple(clip.shape[2:]) != want:
            raise ValueError(
                f"drsr: clip must be [B, {self.in_channels}, {want[0]}, {want[1]}, {want[2]}] "
                f"(in_channels, clip_len, image_size), got {tuple(clip.shape)}"
            )
        if guidance.dim() != 5 or guidance.shape[1] != 1 or tuple(guidance.shape[2:]) != want:
            raise ValueError(
                f"drsr: guidance must be [B, 1, {want[0]}, {want[1]}, {want[2]}], got "
                f"{tuple(guidance.shape)}"
            )

    def feature_map(self, clip: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """Mixed_5c: [B, 1024, T, H/32, W/32]."""
        self.check_inputs(clip, guidance)
        return self.trunk(clip, guidance, self.frp)

    def spatial(self, clip: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """Per-frame tokens [B, T, 512]: spatial GAP of Mixed_5c, then LayerNorm + Linear."""
        return self.linear_map(self.feature_map(clip, guidance).mean(dim=(3, 4)).transpose(1, 2))

    def forward(self, clip: torch.Tensor, guidance: torch.Tensor) -> TemporalFeatures:
        return self.temporal(self.spatial(clip, guidance))


class DRSRHead(nn.Module):
    """Three LayerNorm + Linear(dim -> C) heads (small, medium, large)."""

    def __init__(self, dim: int, num_classes: int, branches: int = 3) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes)) for _ in range(branches)
        )

    def forward(self, feats: TemporalFeatures, tau: torch.Tensor) -> dict[str, torch.Tensor]:
        branch = [head(cls) / tau for head, cls in zip(self.branches, feats.cls)]
        out = {"logits": torch.stack(branch, dim=-1).amax(dim=-1)}
        out.update(zip(BRANCH_KEYS, branch))
        out["spatial_weights"], out["cls_mean"] = feats.spatial_weights, feats.cls_mean
        return out


class DRSR(nn.Module):
    """I3DWTrans: ``backbone`` (:class:`DRSRBackbone`) + ``head`` (:class:`DRSRHead`), the
    epoch buffer that sets the sharpness and the KL ramp, and the loss (module docstring)."""

    epoch: torch.Tensor
    tau_schedule: torch.Tensor

    def __init__(self, backbone: DRSRBackbone, num_classes: int, *,
                 temp: Sequence[float] = (0.04, 0.07), temp_warmup_epochs: int = 30,
                 loss_weights: Sequence[float] = (1.0, 0.5, 0.5, 0.5),
                 label_smoothing: float = 0.1, distill_weight: float = 1.0,
                 distill_start_epoch: int = 2,
                 distill_temperature: float = 0.5) -> None:  # fmt: skip
        super().__init__()
        self.backbone = backbone
        self.head = DRSRHead(backbone.dim, num_classes)
        self.num_classes = num_classes
        self.loss_weights = tuple(float(w) for w in loss_weights)
        self.label_smoothing, self.distill_weight = label_smoothing, distill_weight
        self.distill_start_epoch, self.distill_temperature = (
            distill_start_epoch,
            distill_temperature,
        )
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        schedule = [sharpness_tau(e, temp[0], temp[1], temp_warmup_epochs)
                    for e in range(max(temp_warmup_epochs, 1))]  # fmt: skip
        schedule.append(float(temp[1]))  # every epoch >= warm-up
        self.register_buffer("tau_schedule", torch.tensor(schedule), persistent=False)

    def set_epoch(self, epoch: int) -> None:
        """Record the training epoch (0-based): it sets tau and whether the KL term counts."""
        if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.epoch.fill_(int(epoch))

    @property
    def tau(self) -> torch.Tensor:
        """The sharpness temperature of the recorded epoch (a 0-dim tensor, no host sync)."""
        last = self.tau_schedule.shape[0] - 1
        return self.tau_schedule[self.epoch.clamp(0, last)]

    def forward_features(self, clip: torch.Tensor, guidance: torch.Tensor) -> TemporalFeatures:
        return self.backbone(clip, guidance)

    def forward_head(self, feats: TemporalFeatures) -> dict[str, torch.Tensor]:
        return self.head(feats, self.tau)

    def forward(self, clip: torch.Tensor, guidance: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(clip, guidance))

    def loss(self, outputs: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """``w0 LS-CE(merged) + sum_b w_b LS-CE(branch b) + lambda_d KL`` in fp32."""
        with torch.autocast(labels.device.type, enabled=False):
            keys = ("logits", *BRANCH_KEYS)
            total = sum(
                w
                * F.cross_entropy(outputs[k].float(), labels, label_smoothing=self.label_smoothing)
                for w, k in zip(self.loss_weights, keys)
            )
            kl = distillation_kl(outputs["spatial_weights"].float(), outputs["cls_mean"].float(),
                                 self.distill_temperature)  # fmt: skip
            on = (self.epoch >= self.distill_start_epoch).to(kl.dtype)
            return total + self.distill_weight * on * kl


# ----------------------------------------------------------------------------- registration
def check_sizes(clip_len: int, image_size: int, segments: Sequence[int], name: str) -> None:
    """Errors naming the override for sizes the network cannot take."""
    if isinstance(clip_len, bool) or not isinstance(clip_len, int) or clip_len < 1:
        raise ValueError(f"{name}: clip_len must be a positive int, got {clip_len!r}")
    if not isinstance(image_size, int) or image_size < TRUNK_STRIDE or image_size % TRUNK_STRIDE:
        raise ValueError(
            f"{name}: image_size must be a positive multiple of {TRUNK_STRIDE} (the trunk's "
            f"stride; the FRP map is halved to each stage), got {image_size!r}"
        )
    if len(segments) != 3 or any(not isinstance(s, int) or s < 1 for s in segments):
        raise ValueError(f"{name}: segments must be 3 positive ints, got {segments!r}")


def check_eval_sampling(eval_sampling: str, name: str) -> None:
    if eval_sampling not in ("random", "center"):
        raise ValueError(
            f"{name}: eval_sampling must be 'random' or 'center', got {eval_sampling!r}"
        )


def drsr_contract(overrides: Mapping[str, Any], suffixes: Sequence[str] = ("",)) -> Contract:
    """``clip{suffix}`` (C, T, H, W; C = ``in_channels``) and ``guidance{suffix}`` (1, T, H, W)
    per suffix."""
    channels = int(overrides.get("in_channels", 3))
    inputs: list[ModelInput] = []
    for suffix in suffixes:
        inputs.append(
            ModelInput(f"clip{suffix}", "C,T,H,W", channels, "model.overrides.in_channels")
        )
        inputs.append(ModelInput(f"guidance{suffix}", "1,T,H,W (FRP rank-pool map)", 1))
    return Contract(tuple(inputs))


@register_model(contract=drsr_contract)
def drsr(
    num_classes: int,
    in_channels: int = 3,
    clip_len: int = 64,
    image_size: int = 224,
    segments: Sequence[int] = (16, 32, 48),
    num_layers: int = 6,
    knn_ratio: float = 0.7,
    dropout: float = 0.1,
    rcm_hidden: int = 256,
    eval_sampling: str = "random",
    temp: Sequence[float] = (0.04, 0.07),
    temp_warmup_epochs: int = 30,
    loss_weights: Sequence[float] = (1.0, 0.5, 0.5, 0.5),
    label_smoothing: float = 0.1,
    distill_weight: float = 1.0,
    distill_start_epoch: int = 2,
    distill_temperature: float = 0.5,
    bn_momentum: float = 0.01,
) -> DRSR:
    """DRSR's unimodal I3DWTrans (RGB or depth; 38.2 M parameters with 60 classes).

    Overrides: ``in_channels`` (3), ``clip_len`` T (64; the RCM's width), ``image_size`` (224,
    a multiple of 32), ``segments`` (16, 32, 48: tokens drawn by the three branches),
    ``num_layers`` (6), ``knn_ratio`` (0.7; 0 = full attention), ``dropout`` (0.1),
    ``rcm_hidden`` (256; the reference uses 128 for THU-READ), ``eval_sampling`` ('random' as
    the reference, or 'center'), ``temp`` / ``temp_warmup_epochs`` (sharpness 0.04 -> 0.07 over
    30 epochs), ``loss_weights`` (merged, small, medium, large: 1, .5, .5, .5),
    ``label_smoothing`` (0.1), ``distill_weight`` (1), ``distill_start_epoch`` (2),
    ``distill_temperature`` (0.5) and ``bn_momentum`` of the trunk's BatchNorms (0.01 as the
    reference; a short run wants PyTorch's 0.1, or its running statistics stay near their
    initial values and eval-mode outputs barely depend on the input).
    """
    segments = tuple(segments)
    check_sizes(clip_len, image_size, segments, "drsr")
    check_eval_sampling(eval_sampling, "drsr")
    if len(temp) != 2 or len(loss_weights) != 4:
        raise ValueError("drsr: temp needs 2 values (start, end) and loss_weights 4")
    backbone = DRSRBackbone(in_channels, clip_len, image_size, segments, num_layers, rcm_hidden,
                            knn_ratio, dropout, eval_sampling)  # fmt: skip
    set_bn_momentum(backbone, bn_momentum)
    return DRSR(
        backbone, num_classes, temp=tuple(temp), temp_warmup_epochs=temp_warmup_epochs,
        loss_weights=tuple(loss_weights), label_smoothing=label_smoothing,
        distill_weight=distill_weight, distill_start_epoch=distill_start_epoch,
        distill_temperature=distill_temperature,
    )  # fmt: skip
