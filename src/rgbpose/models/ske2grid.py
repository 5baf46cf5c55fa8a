"""Ske2Grid: a skeleton re-arranged into a learned grid patch and convolved like an image.

Cai et al., "Ske2Grid: Skeleton-to-Grid Representation Learning for Action Recognition"
(ICML 2023), a drop-in backbone for PYSKL's ST-GCN (REFERENCE_SEEDS.md section 2)::

    keypoint [N, M, T, V, C]                      (2D COCO-17 with score: V = 17, C = 3)
      -> data_bn: BatchNorm1d(V*C), shared by the persons, per (joint, channel)
      -> per stage s: UPT (J_s -> S_s^2 nodes, a free learnable matrix) then GIT (a learned
         permutation of the S_s^2 nodes); stage 0's UPT is pre-multiplied by I + the directed
         edge list of Ske2Grid's graph, so an original node starts as itself + its neighbours
      -> node r of the last stage becomes grid cell (r // S, r % S): [N*M, C, T, S, S]
      -> 10 grid blocks: (3x3 conv + BN per frame) -> (BN-ReLU-(9,1) conv-BN over time)
         + residual, ReLU; channels 64 x4, 128 x3, 256 x3, temporal stride 2 at blocks 5 and 8
      -> feature [N*M, 256, T/4, S, S]
      -> head: global average pool, mean over the M persons, linear -> [N, num_classes]
         (computed as the mean of the persons' pooled linear logits: the same function)

GIT (graph-node index transform): a learnable score matrix W [S^2, S^2] whose forward is a
greedy bijection (row r takes the first still-free node among its r+1 highest scores; one is
always free, so the result is a permutation P).  While W trains, the forward returns
``P + (W - W.detach())``: the value is exactly P and the gradient reaching W is the gradient
with respect to P (straight-through); the gradient of the UPT weights flows through P.

Progressive learning (PLS): ``grids=[5]`` trains 17 -> 5x5 from scratch; ``grids=[5, 6]`` adds
a second UPT/GIT pair (25 -> 36 nodes); ``[5, 6, 7]`` and ``[5, 6, 7, 8]`` continue.  Each stage
is a stream initialised (``init_from``) from the previous stage's best checkpoint: the merge
registered here (:func:`merge_previous_stage`) copies every weight of that checkpoint (its
UPT/GIT pairs, the grid network and the head, whose shapes do not depend on the grid size); the
new pair keeps its fresh init.  Every pair but the last is frozen (``requires_grad`` False) at
build time, as Ske2Grid's ``init_weights`` does, so a frozen pair is only meaningful when the
stream is initialised from the previous stage.

Overrides: ``grids`` (sides, one per stage), ``in_channels`` (C: 3 for x, y, score),
``layout`` (``coco17`` or ``ntu25``: V and the stage-0 edges), ``num_person`` (M),
``freeze_earlier``, ``base_channels`` (64; smaller only for CPU demos).

Module names (checkpoint format): ``backbone.data_bn``; ``backbone.stages.{s}.upt``,
``backbone.stages.{s}.git.scores``, ``backbone.stages.{s}.git.index`` (the last permutation, a
non-trainable record); ``backbone.blocks.{i}.spatial.{0,1}`` (conv, BN),
``backbone.blocks.{i}.temporal.{0,2,3}`` (BN, conv, BN), ``backbone.blocks.{i}.residual.{0,1}``;
``head.fc``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgbpose.layouts import get_layout
from rgbpose.models.registry import Contract, ModelInput, register_model
from rgbpose.models.resnet3d import Recognizer3D

DEFAULT_GRIDS: tuple[int, ...] = (5,)
#: (in, out, temporal stride, residual) of the 10 grid blocks, in units of ``base_channels``
#: (64: PYSKL ST-GCN's widths 64/128/256); in 0 = the input channels
BLOCKS: tuple[tuple[int, int, int, bool], ...] = (
    (0, 1, 1, False), (1, 1, 1, True), (1, 1, 1, True), (1, 1, 1, True),
    (1, 2, 2, True), (2, 2, 1, True), (2, 2, 1, True),
    (2, 4, 2, True), (4, 4, 1, True), (4, 4, 1, True),
)  # fmt: skip

#: Ske2Grid's own edge lists (its utils/graph.py ``get_edge``), 1-based (i, j): node i of the
#: stage-0 UPT adds node j.  Directed (one direction per pair); not the ST-GCN graphs.
UPT_EDGES: dict[str, tuple[tuple[int, int], ...]] = {
    "coco17": (
        (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (8, 6),
        (9, 7), (10, 8), (11, 9), (2, 3), (2, 1), (3, 1), (4, 2), (5, 3), (4, 6), (5, 7),
    ),
    "ntu25": (
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
        (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
    ),
}  # fmt: skip


def directed_adjacency(layout: str) -> Tensor:
    """``I + A`` with ``A[i, j] = 1`` for every edge (i, j) of :data:`UPT_EDGES` (0-based)."""
    if layout not in UPT_EDGES:
        raise ValueError(f"ske2grid: unknown layout {layout!r} (known: {sorted(UPT_EDGES)})")
    adj = torch.eye(get_layout(layout).num_joints)
    for i, j in UPT_EDGES[layout]:
        adj[i - 1, j - 1] = 1.0
    return adj


def upt_init(nodes_in: int, nodes_out: int) -> Tensor:
    """``[I; softmax_row(U(0, 1))]``: the first nodes copy the input, each new node is a convex
    combination of the input nodes."""
    extra = torch.softmax(torch.rand(nodes_out - nodes_in, nodes_in), dim=-1)
    return torch.cat([torch.eye(nodes_in), extra], dim=0)


def greedy_permutation(scores: Tensor) -> list[int]:
    """Row r takes the first still-free column among its r+1 highest scores (a bijection)."""
    order = scores.detach().float().argsort(dim=1, descending=True).cpu().tolist()
    free = [True] * len(order)
    index = []
    for r, row in enumerate(order):
        col = next(c for c in row[: r + 1] if free[c])
        free[col] = False
        index.append(col)
    return index


class GraphIndexTransform(nn.Module):
    """GIT: ``forward() -> P [n, n]``, the permutation chosen greedily from the learnable
    ``scores`` (straight-through to ``scores`` while they train); ``index`` records it."""

    def __init__(self, nodes: int) -> None:
        super().__init__()
        self.scores = nn.Parameter(torch.rand(nodes, nodes))
        self.index = nn.Parameter(torch.zeros(nodes), requires_grad=False)

    def forward(self) -> Tensor:
        w = self.scores
        index = torch.tensor(greedy_permutation(w), device=w.device)
        with torch.no_grad():
            self.index.copy_(index)
        perm = F.one_hot(index, w.shape[0]).to(w.dtype)
        if w.requires_grad and torch.is_grad_enabled():
            perm = perm + (w - w.detach())  # exactly perm; d/dperm passes to the scores
        return perm


class GridStage(nn.Module):
    """One UPT + GIT pair: ``[B, nodes_in, F] -> [B, side^2, F]`` in grid (row-major) order."""

    def __init__(self, nodes_in: int, side: int, adjacency: Tensor | None = None) -> None:
        super().__init__()
        nodes = side * side
        if nodes < nodes_in:
            raise ValueError(f"ske2grid: a {side}x{side} grid cannot hold {nodes_in} nodes")
        self.side = side
        self.upt = nn.Parameter(upt_init(nodes_in, nodes))
        self.git = GraphIndexTransform(nodes)
        self.register_buffer("adjacency", adjacency, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        upt = self.upt if self.adjacency is None else self.upt @ self.adjacency
        return self.git() @ (upt @ x)


class GridBlock(nn.Module):
    """``ReLU(temporal(spatial(x)) + residual(x))`` on ``[B, C, T, H, W]`` grid sequences."""

    def __init__(self, cin: int, cout: int, stride: int = 1, residual: bool = True) -> None:
        super().__init__()
        self.spatial = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout))
        self.temporal = nn.Sequential(
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, (9, 1), (stride, 1), (4, 0)),
            nn.BatchNorm2d(cout),
        )
        self.identity = residual and cin == cout and stride == 1
        self.residual: nn.Module | None = None
        if residual and not self.identity:
            self.residual = nn.Sequential(
                nn.Conv2d(cin, cout, 1, (stride, 1)), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        flat = x.reshape(b, c, t, h * w)
        y = self.spatial(x.transpose(1, 2).reshape(b * t, c, h, w))  # per frame, over (H, W)
        y = self.temporal(y.reshape(b, t, -1, h * w).transpose(1, 2))  # over (T, H*W)
        if self.identity:
            y = y + flat
        elif self.residual is not None:
            y = y + self.residual(flat)
        return F.relu(y).reshape(b, y.shape[1], y.shape[2], h, w)


class Ske2GridBackbone(nn.Module):
    """VC-BN, the UPT/GIT stages and the grid network: ``[N, M, T, V, C] -> [N*M, 4 *
    base_channels, T/4, S, S]`` with ``S = grids[-1]``.  Every stage but the last is frozen when
    ``freeze_earlier``."""

    def __init__(
        self,
        grids: Sequence[int] = DEFAULT_GRIDS,
        in_channels: int = 3,
        layout: str = "coco17",
        freeze_earlier: bool = True,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        for key, value in (("in_channels", in_channels), ("base_channels", base_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ske2grid: {key} must be a positive int, got {value!r}")
        adjacency = directed_adjacency(layout)
        self.joints = adjacency.shape[0]
        self.grids = check_grids(grids, self.joints)
        self.in_channels = in_channels
        self.data_bn = nn.BatchNorm1d(in_channels * self.joints)
        nodes = [self.joints] + [g * g for g in self.grids[:-1]]
        self.stages = nn.ModuleList(
            GridStage(n, g, adjacency if s == 0 else None)
            for s, (n, g) in enumerate(zip(nodes, self.grids))
        )
        self.blocks = nn.ModuleList(
            GridBlock(cin * base_channels or in_channels, cout * base_channels, stride, residual)
            for cin, cout, stride, residual in BLOCKS
        )
        self.out_channels = BLOCKS[-1][1] * base_channels
        self.init_weights()
        if freeze_earlier:
            for stage in self.stages[:-1]:
                stage.requires_grad_(False)

    def init_weights(self) -> None:
        """Kaiming-normal (fan_out, ReLU) convs with zero bias, BN 1 / 0 (mmcv's policy)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def to_grid(self, x: Tensor) -> Tensor:
        """``[N, M, T, V, C] -> [N*M, C, T, S, S]``: the grid patch sequence."""
        if x.dim() != 5 or x.shape[3:] != (self.joints, self.in_channels):
            raise ValueError(
                f"ske2grid expects keypoint [N, M, T, {self.joints}, {self.in_channels}], "
                f"got {list(x.shape)}"
            )
        n, m, t, v, c = x.shape
        x = self.data_bn(x.float().permute(0, 1, 3, 4, 2).reshape(n * m, v * c, t))
        x = x.reshape(n * m, v, c * t)
        for stage in self.stages:
            x = stage(x)
        side = self.grids[-1]
        x = x.reshape(n * m, side * side, c, t).permute(0, 2, 3, 1)  # node r -> cell (r//S, r%S)
        return x.reshape(n * m, c, t, side, side)

    def forward(self, x: Tensor) -> Tensor:
        x = self.to_grid(x)
        for block in self.blocks:
            x = block(x)
        return x


class Ske2Grid(Recognizer3D):
    """The recognizer: ``model(keypoint=x [N, M, T, V, C]) -> logits [N, num_classes]``.

    Ske2Grid's head pools each person's feature map, averages the M persons and applies one
    linear layer; the affine layer commutes with the mean, so here the persons' logits of the
    pooled linear :class:`ClsHead` (no dropout) are averaged instead: the same function.
    """

    def __init__(self, backbone: Ske2GridBackbone, num_classes: int, num_person: int = 2) -> None:
        if isinstance(num_person, bool) or not isinstance(num_person, int) or num_person < 1:
            raise ValueError(f"ske2grid: num_person must be a positive int, got {num_person!r}")
        super().__init__(backbone, num_classes, dropout=0.0, input_key="keypoint")
        self.num_person = num_person

    def forward_features(self, x: Tensor) -> Tensor:
        """Grid feature map ``[N*M, 4 * base_channels, T/4, S, S]``."""
        if x.dim() == 5 and x.shape[1] != self.num_person:
            raise ValueError(f"ske2grid expects {self.num_person} persons, got {x.shape[1]}")
        return self.backbone(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """``[N*M, C, T, H, W] -> [N, num_classes]``: per-person logits averaged over M."""
        logits = self.head(features)
        return logits.reshape(-1, self.num_person, logits.shape[-1]).mean(1)


def check_grids(grids: Any, joints: int) -> tuple[int, ...]:
    """``grids`` as a tuple of increasing sides, the first holding ``joints`` nodes."""
    if isinstance(grids, int) or not isinstance(grids, Sequence) or not grids:
        raise ValueError(f"ske2grid: grids must be a non-empty list of sides, got {grids!r}")
    if any(isinstance(g, bool) or not isinstance(g, int) for g in grids):
        raise ValueError(f"ske2grid: grids must be integers, got {list(grids)}")
    sides = tuple(grids)
    if sides[0] ** 2 < joints or any(b <= a for a, b in zip(sides, sides[1:])):
        raise ValueError(
            f"ske2grid: grids {list(sides)} must increase, the first holding {joints} joints"
        )
    return sides


# ----------------------------------------------------------------------------- registration
def merge_previous_stage(sources: Mapping[str, Mapping[str, Any]], model: nn.Module) -> dict:
    """``init_from`` of a PLS stage: one source, a ``ske2grid`` checkpoint of the previous stage
    (``grids`` = this model's ``grids[:-1]``).  Every source weight is copied (same names and
    shapes, else ``ValueError``); the new, last UPT/GIT pair keeps its fresh init."""
    grids = model.backbone.grids
    if len(sources) != 1:
        raise ValueError(
            f"ske2grid grids={list(grids)}: init_from must name one stream, the previous stage "
            f"(got {len(sources)}: {', '.join(sources)})"
        )
    (name, src), = sources.items()  # fmt: skip
    where = f"init_from {name!r} ({src['path']})"
    meta = src["meta"]
    if meta.get("model_name") != "ske2grid":
        raise ValueError(f"{where}: a {meta.get('model_name')!r} model, not a ske2grid stage")
    before = tuple((meta.get("overrides") or {}).get("grids", DEFAULT_GRIDS))
    if before != grids[:-1]:
        raise ValueError(
            f"{where}: a grids={list(before)} checkpoint does not precede grids={list(grids)} "
            f"(the previous stage is grids={list(grids[:-1])})"
        )
    state = model.state_dict()
    unfit = [k for k, v in src["state"].items() if k not in state or state[k].shape != v.shape]
    if unfit:
        raise ValueError(f"{where}: weights that do not fit grids={list(grids)}: {unfit[:5]}")
    state.update(src["state"])
    return state


def _contract(overrides: Mapping[str, Any]) -> Contract:
    channels = overrides.get("in_channels", 3)
    return Contract((ModelInput("keypoint", "M,T,V,C", channels, "model.overrides.in_channels"),))


@register_model(contract=_contract, merge=merge_previous_stage)
def ske2grid(
    num_classes: int,
    grids: Sequence[int] = DEFAULT_GRIDS,
    in_channels: int = 3,
    layout: str = "coco17",
    num_person: int = 2,
    freeze_earlier: bool = True,
    base_channels: int = 64,
) -> Ske2Grid:
    """Ske2Grid (grid side per PLS stage: [5], [5, 6], ...; 4.37 M backbone params at 5x5).

    ``freeze_earlier`` False trains every UPT/GIT pair; ``base_channels`` < 64 shrinks the grid
    network (demos only; Ske2Grid has 64)."""
    backbone = Ske2GridBackbone(grids, in_channels, layout, freeze_earlier, base_channels)
    return Ske2Grid(backbone, num_classes, num_person)


__all__ = [
    "BLOCKS",
    "DEFAULT_GRIDS",
    "UPT_EDGES",
    "GraphIndexTransform",
    "GridBlock",
    "GridStage",
    "Ske2Grid",
    "Ske2GridBackbone",
    "check_grids",
    "directed_adjacency",
    "greedy_permutation",
    "merge_previous_stage",
    "ske2grid",
    "upt_init",
]
