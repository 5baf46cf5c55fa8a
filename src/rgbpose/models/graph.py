"""Skeleton graphs for graph convolutions, built from the joint trees of ``rgbpose.layouts``.

A layout's ``parents`` define an undirected tree (``v - parents[v]`` for every joint but the
root).  A GCN orients it towards a *centre* joint (PYSKL's ``Graph``: the nose for COCO-17,
SpineShoulder for NTU-25, so the NTU tree is re-rooted from the layout's SpineMid); an *inward*
edge ``(child, parent)`` points one hop closer to the centre.  With these centres the edge sets
equal PYSKL's ``coco`` and ``nturgb+d`` layouts (REFERENCE_SEEDS.md 4.1; tests/test_stgcn.py).

Matrices follow the aggregation ``out[w] = sum_v x[v] * A[v, w]`` (einsum ``'nkctv,kvw->nctw'``):
:func:`edge_matrix` sets ``A[j, i] = 1`` for an edge ``(i, j)``, so the feature of ``j`` flows
to ``i``, and :func:`normalize_columns` divides each column by its sum.  The ``spatial``
partition (2s-AGCN; ST-GCN++ and CTR-GCN) stacks three subsets ``[I, In, Out]``:

* ``In = colnorm(edge_matrix(inward))``: every joint receives its parent's feature;
* ``Out = colnorm(edge_matrix(outward))``: every joint receives the mean of its children's.

No torch here: the matrices are float32 numpy arrays.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from rgbpose.layouts import Layout, get_layout

#: the joint each layout's graph is oriented towards (PYSKL: COCO nose, NTU SpineShoulder)
CENTERS = {"coco17": 0, "ntu25": 20}


def _layout(layout: Layout | str) -> Layout:
    return get_layout(layout) if isinstance(layout, str) else layout


def tree_neighbours(layout: Layout | str) -> list[list[int]]:
    """Adjacency lists of the layout's undirected joint tree."""
    lay = _layout(layout)
    nbrs: list[list[int]] = [[] for _ in range(lay.num_joints)]
    for v, p in enumerate(lay.parents):
        if v != p:
            nbrs[v].append(p)
            nbrs[p].append(v)
    return nbrs


def inward_edges(layout: Layout | str, center: int | None = None) -> list[tuple[int, int]]:
    """``(child, parent)`` edges of the joint tree oriented towards ``center`` (default
    :data:`CENTERS`, else the layout's root), in joint order of the child."""
    lay = _layout(layout)
    center = CENTERS.get(lay.name, lay.root) if center is None else center
    if not 0 <= center < lay.num_joints:
        raise ValueError(f"centre joint {center} is not a joint of layout {lay.name}")
    nbrs = tree_neighbours(lay)
    parent = {center: center}
    queue = deque([center])
    while queue:
        u = queue.popleft()
        for w in nbrs[u]:
            if w not in parent:
                parent[w] = u
                queue.append(w)
    if len(parent) != lay.num_joints:
        raise ValueError(f"the joint tree of layout {lay.name} is not connected")
    return [(v, parent[v]) for v in range(lay.num_joints) if v != center]


def edge_matrix(edges: list[tuple[int, int]], num_nodes: int) -> np.ndarray:
    """``A[j, i] = 1`` for every edge ``(i, j)``."""
    a = np.zeros((num_nodes, num_nodes), dtype=np.float64)
    for i, j in edges:
        a[j, i] = 1.0
    return a


def normalize_columns(a: np.ndarray) -> np.ndarray:
    """``A @ diag(1 / column sums)``; all-zero columns stay zero."""
    sums = a.sum(axis=0)
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return a * scale[None, :]


def spatial_partition(layout: Layout | str, center: int | None = None) -> np.ndarray:
    """PYSKL's ``mode='spatial'`` adjacency: float32 ``[3, V, V]`` = ``[I, In, Out]``."""
    lay = _layout(layout)
    v = lay.num_joints
    inward = inward_edges(lay, center)
    outward = [(j, i) for i, j in inward]
    stack = (
        np.eye(v),
        normalize_columns(edge_matrix(inward, v)),
        normalize_columns(edge_matrix(outward, v)),
    )
    return np.stack(stack).astype(np.float32)
