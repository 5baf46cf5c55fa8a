"""Ske2Grid (REFERENCE_SEEDS.md section 2): parameter counts, shapes, the GIT permutation and its
straight-through gradient, the stage-0 adjacency, progressive stages (merge + freezing), configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from rgbpose.models import build_model, count_parameters, get_entry
from rgbpose.models.init_from import merge_sources
from rgbpose.models.ske2grid import (
    GraphIndexTransform,
    directed_adjacency,
    greedy_permutation,
    merge_previous_stage,
)

REPO = Path(__file__).resolve().parents[1]
K = 5
SMALL = {"base_channels": 4}  # 16 channels at the end: cheap on a CPU
NTU_CONFIGS = [f"ntu_ske2grid_{g}.yaml" for g in (5, 6, 7, 8)]
DEMO_CONFIGS = [f"demo_ske2grid_{g}.yaml" for g in (5, 6)]


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def full():
    """The 5x5 and 5->6 models at full size on the meta device (shapes and counts only)."""
    with torch.device("meta"):
        return {g: build_model("ske2grid", 60, grids=list(g)) for g in ((5,), (5, 6))}


def test_param_counts(full):
    five, six = full[(5,)], full[(5, 6)]
    grid_net = sum(count_parameters(b) for b in five.backbone.blocks)
    assert grid_net == 4_368_192
    assert count_parameters(five.backbone.data_bn) == 2 * 17 * 3
    assert count_parameters(five.backbone) == 4_369_369
    assert _trainable(five.backbone) == 4_369_344  # all but the 25-entry GIT index
    assert count_parameters(five) == 4_384_789
    assert count_parameters(five.head) == 256 * 60 + 60
    assert count_parameters(six.backbone) == 4_371_601
    assert _trainable(six.backbone) == 4_370_490  # stage 0 frozen, stage 1 trains
    assert count_parameters(six) == 4_387_021
    shapes = {k: tuple(v.shape) for k, v in six.state_dict().items() if ".stages." in k}
    assert shapes == {
        "backbone.stages.0.upt": (25, 17),
        "backbone.stages.0.git.scores": (25, 25),
        "backbone.stages.0.git.index": (25,),
        "backbone.stages.1.upt": (36, 25),
        "backbone.stages.1.git.scores": (36, 36),
        "backbone.stages.1.git.index": (36,),
    }
    frozen = sorted(n for n, p in six.named_parameters() if not p.requires_grad)
    assert frozen == [
        "backbone.stages.0.git.index",
        "backbone.stages.0.git.scores",
        "backbone.stages.0.upt",
        "backbone.stages.1.git.index",
    ]


def test_block_table_matches_reference(full):
    blocks = full[(5,)].backbone.blocks
    widths = [(b.spatial[0].in_channels, b.spatial[0].out_channels) for b in blocks]
    assert widths == [
        (3, 64), (64, 64), (64, 64), (64, 64), (64, 128),
        (128, 128), (128, 128), (128, 256), (256, 256), (256, 256),
    ]  # fmt: skip
    assert [b.temporal[2].stride[0] for b in blocks] == [1, 1, 1, 1, 2, 1, 1, 2, 1, 1]
    for b in blocks:
        assert b.spatial[0].kernel_size == (3, 3) and b.spatial[0].padding == (1, 1)
        assert b.temporal[2].kernel_size == (9, 1) and b.temporal[2].padding == (4, 0)
    # Block 1 has no residual, blocks 5 and 8 a strided 1x1 conv + BN, the rest the identity.
    kinds = ["conv" if b.residual is not None else "id" if b.identity else "-" for b in blocks]
    assert kinds == ["-", "id", "id", "id", "conv", "id", "id", "conv", "id", "id"]


def test_full_size_shapes(one_torch_thread):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 100, 17, 3)
    for grids, side in (([5], 5), ([5, 6], 6)):
        model = build_model("ske2grid", 60, grids=grids).eval()
        with torch.no_grad():
            grid = model.backbone.to_grid(x)
            assert grid.shape == (2, 3, 100, side, side)
            if side == 5:
                feats = model.forward_features(x)
                assert feats.shape == (2, 256, 25, 5, 5)
                assert model.forward_head(feats).shape == (1, 60)


def test_grid_cells_follow_the_permutation():
    """Row r of the last permutation is cell (r // S, r % S) and holds UPT node index[r]."""
    torch.manual_seed(0)
    model = build_model("ske2grid", K, **SMALL).eval()
    bb = model.backbone
    x = torch.randn(2, 2, 6, 17, 3)
    with torch.no_grad():
        grid = bb.to_grid(x)  # [4, 3, 6, 5, 5]
        n, m, t, v, c = x.shape
        normed = bb.data_bn(x.permute(0, 1, 3, 4, 2).reshape(n * m, v * c, t))
        nodes = (bb.stages[0].upt @ directed_adjacency("coco17")) @ normed.reshape(n * m, v, -1)
    index = greedy_permutation(bb.stages[0].git.scores)
    for r in (0, 7, 24):
        cell = grid[:, :, :, r // 5, r % 5]  # [4, 3, 6]
        assert torch.allclose(cell, nodes[:, index[r]].reshape(n * m, c, t), atol=1e-6)
    assert bb.stages[0].git.index.tolist() == index


def test_git_is_a_greedy_permutation():
    g = torch.Generator().manual_seed(1)
    for n in (4, 25, 36, 64):
        for _ in range(25):
            scores = torch.rand(n, n, generator=g)
            index = greedy_permutation(scores)
            assert sorted(index) == list(range(n))
            order = scores.argsort(dim=1, descending=True)
            taken: set[int] = set()
            for r, col in enumerate(index):
                first_free = next(int(c) for c in order[r, : r + 1] if int(c) not in taken)
                assert col == first_free
                taken.add(col)
    assert index[0] == int(scores[0].argmax())  # row 0 always gets its best column
    git = GraphIndexTransform(36)
    perm = git()
    assert torch.equal(perm.sum(0), torch.ones(36)) and torch.equal(perm.sum(1), torch.ones(36))
    assert set(perm.detach().unique().tolist()) == {0.0, 1.0}
    assert git.index.tolist() == perm.argmax(1).tolist()


def test_git_straight_through_gradient_reaches_upt_and_scores():
    torch.manual_seed(0)
    model = build_model("ske2grid", K, grids=[5, 6], freeze_earlier=False, **SMALL).train()
    stage = model.backbone.stages[1]
    x = torch.randn(4, 25, 12)
    target = torch.randn(4, 36, 12)
    out = stage(x)
    ((out - target) ** 2).sum().backward()
    # By hand: y = P (U x); dL/dP = sum_b g_b (U x_b)^T and dL/dU = sum_b P^T g_b x_b^T.
    perm = torch.nn.functional.one_hot(torch.tensor(greedy_permutation(stage.git.scores)), 36)
    perm = perm.float()
    with torch.no_grad():
        ux = stage.upt @ x
        grad_out = 2 * (perm @ ux - target)
        expect_scores = (grad_out @ ux.transpose(1, 2)).sum(0)
        expect_upt = (perm.T @ grad_out @ x.transpose(1, 2)).sum(0)
    assert torch.allclose(stage.git.scores.grad, expect_scores, rtol=1e-4, atol=1e-4)
    assert torch.allclose(stage.upt.grad, expect_upt, rtol=1e-4, atol=1e-4)
    assert stage.upt.grad.abs().sum() > 0 and stage.git.scores.grad.abs().sum() > 0
    # The forward value is exactly the permutation (no W - W rounding); eval needs no graph.
    assert torch.equal(out.detach(), perm @ ux)
    with torch.no_grad():
        assert not stage.git().requires_grad


def test_stage0_upt_starts_as_self_plus_directed_neighbours():
    adj = directed_adjacency("coco17")
    assert adj.shape == (17, 17) and adj.trace() == 17
    assert adj.sum() == 17 + 19 and not torch.equal(adj, adj.T)
    assert adj[15, 13] == 1 and adj[13, 15] == 0  # Ske2Grid's (16, 14), 1-based
    assert adj[0].nonzero().flatten().tolist() == [0]  # the nose adds nothing
    assert adj[1].nonzero().flatten().tolist() == [0, 1, 2]  # left eye: nose, itself, right eye
    torch.manual_seed(0)
    stage = build_model("ske2grid", K, **SMALL).backbone.stages[0]
    upt = stage.upt.detach()
    assert torch.equal(upt[:17], torch.eye(17))
    assert torch.allclose(upt[17:].sum(1), torch.ones(8)) and (upt[17:] > 0).all()
    assert torch.equal((upt @ stage.adjacency)[:17], adj)
    assert directed_adjacency("ntu25").sum() == 25 + 24
    assert "backbone.stages.0.adjacency" not in build_model("ske2grid", K).state_dict()


def test_forward_backward_small():
    torch.manual_seed(0)
    model = build_model("ske2grid", K, grids=[5, 6], **SMALL).train()
    x = torch.randn(2, 2, 16, 17, 3)
    logits = model(keypoint=x)
    assert logits.shape == (2, K)
    loss = model.loss(logits, torch.tensor([1, 3]))
    assert loss.item() == pytest.approx(math.log(K), abs=0.05)
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name
    assert model.backbone.stages[1].git.scores.grad.abs().sum() > 0
    assert model.backbone.stages[1].upt.grad.abs().sum() > 0
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if ".stages.0." in n}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt.step()
    for name, value in frozen.items():
        assert torch.equal(dict(model.named_parameters())[name], value), name
    with torch.inference_mode():
        assert model.eval()(x).shape == (2, K)


def _checkpoint(model: torch.nn.Module, overrides: dict, path: str) -> dict:
    meta = {"model_name": "ske2grid", "num_classes": K, "overrides": overrides}
    return {"state": model.state_dict(), "meta": meta, "path": path}


def test_merge_initialises_the_next_stage_from_the_previous():
    torch.manual_seed(0)
    small5 = {"grids": [5], **SMALL}
    stage1 = build_model("ske2grid", K, **small5)
    with torch.no_grad():
        for p in stage1.parameters():
            p.add_(torch.rand_like(p))  # nothing equals a fresh init by chance
    stage1(torch.randn(2, 2, 8, 17, 3))  # the GIT index record and BN statistics
    source = {"ske2grid_5": _checkpoint(stage1, small5, "s5/best.pt")}
    small6 = {"grids": [5, 6], **SMALL}
    state, meta = merge_sources(source, "ske2grid", small6)
    assert meta["merged_from"] == {"ske2grid_5": "s5/best.pt"}
    stage2 = build_model("ske2grid", K, **small6)
    stage2.load_state_dict(state, strict=True)
    copied = stage1.state_dict()
    for key, value in stage2.state_dict().items():
        if key in copied:
            assert torch.equal(value, copied[key]), key
        else:
            assert key.startswith("backbone.stages.1."), key
    assert set(copied) < set(state)
    assert [p.requires_grad for p in stage2.backbone.stages[0].parameters()] == [False] * 3
    assert stage2.backbone.stages[1].upt.requires_grad
    assert stage2.backbone.stages[1].git.scores.requires_grad
    assert all(p.requires_grad for p in stage2.backbone.blocks.parameters())
    # The stage-0 grid of the 5x5 model is what the 6x6 model's first pair computes.
    x = torch.randn(1, 2, 8, 17, 3)
    stage1.eval(), stage2.eval()
    with torch.no_grad():
        g5 = stage1.backbone.to_grid(x).flatten(3).transpose(1, 3)  # [2, 25, 8, 3]
        bb = stage2.backbone
        n, m, t, v, c = x.shape
        z = bb.data_bn(x.permute(0, 1, 3, 4, 2).reshape(n * m, v * c, t)).reshape(n * m, v, -1)
        nodes = bb.stages[0](z).reshape(n * m, 25, c, t).transpose(2, 3)
    assert torch.allclose(g5, nodes, atol=1e-5)
    # The merge used is the one registered for ske2grid.
    assert get_entry("ske2grid").merge is merge_previous_stage


def test_merge_rejects_what_is_not_the_previous_stage():
    torch.manual_seed(0)
    five = build_model("ske2grid", K, **SMALL)
    six = build_model("ske2grid", K, grids=[5, 6], **SMALL)
    seven = build_model("ske2grid", K, grids=[5, 6, 7], **SMALL)
    src5 = _checkpoint(five, {"grids": [5], **SMALL}, "five.pt")
    with pytest.raises(ValueError, match=r"does not precede grids=\[5, 6, 7\]"):
        merge_previous_stage({"a": src5}, seven)
    with pytest.raises(ValueError, match="must name one stream"):
        merge_previous_stage({"a": src5, "b": src5}, six)
    other = {**src5, "meta": {**src5["meta"], "model_name": "pose_only"}}
    with pytest.raises(ValueError, match="not a ske2grid stage"):
        merge_previous_stage({"a": other}, six)
    wide = _checkpoint(build_model("ske2grid", K), {"grids": [5]}, "wide.pt")
    with pytest.raises(ValueError, match="do not fit"):
        merge_previous_stage({"a": wide}, six)
    # Stage 3 from stage 2 works the same way; the two earlier pairs are frozen.
    state = merge_previous_stage(
        {"s6": _checkpoint(six, {"grids": [5, 6], **SMALL}, "six.pt")}, seven
    )
    seven.load_state_dict(state, strict=True)
    assert [s.upt.requires_grad for s in seven.backbone.stages] == [False, False, True]


def test_overrides_and_inputs_are_checked():
    with pytest.raises(ValueError, match="grids"):
        build_model("ske2grid", K, grids=[4])  # 16 cells < 17 joints
    with pytest.raises(ValueError, match="grids"):
        build_model("ske2grid", K, grids=[6, 5])
    with pytest.raises(ValueError, match="grids"):
        build_model("ske2grid", K, grids=5)
    with pytest.raises(ValueError, match="layout"):
        build_model("ske2grid", K, layout="openpose")
    with pytest.raises(ValueError, match="base_channels"):
        build_model("ske2grid", K, base_channels=0)
    model = build_model("ske2grid", K, **SMALL)
    with pytest.raises(ValueError, match=r"keypoint \[N, M, T, 17, 3\]"):
        model(keypoint=torch.randn(1, 2, 8, 25, 3))
    with pytest.raises(ValueError, match="2 persons"):
        model(keypoint=torch.randn(1, 1, 8, 17, 3))
    with pytest.raises(TypeError, match="keypoint"):
        model(heatmap_imgs=torch.randn(1, 2, 8, 17, 3))
    ntu = build_model("ske2grid", K, layout="ntu25", **SMALL)  # 25 joints fill the 5x5 grid
    assert ntu(torch.randn(1, 2, 8, 25, 3)).shape == (1, K)
    contract = get_entry("ske2grid").contract({"in_channels": 2})
    assert contract.input_keys == ("keypoint",) and contract.inputs[0].channels == 2
    assert contract.inputs[0].shape == "M,T,V,C" and contract.heads == ("ske2grid",)


@pytest.mark.parametrize("name", NTU_CONFIGS + DEMO_CONFIGS)
def test_config_models_build(name):
    """Every stage's config builds the model its file name says (no data pipeline needed)."""
    raw = yaml.safe_load((REPO / "config/models" / name).read_text())
    side = int(name.removesuffix(".yaml").rsplit("_", 1)[1])
    assert raw["model"]["name"] == "ske2grid"
    grids = raw["model"]["overrides"]["grids"]
    assert grids == list(range(5, side + 1))
    with torch.device("meta"):
        model = build_model("ske2grid", 60, **raw["model"]["overrides"])
    assert model.backbone.grids[-1] == side
    if name.startswith("ntu_"):
        assert count_parameters(model.backbone.blocks) == 4_368_192
        assert raw["optim"] == {
            "lr": 0.05,
            "base_batch": 64,
            "momentum": 0.9,
            "weight_decay": 5.0e-4,
            "nesterov": True,
            "grad_clip": None,
        }
        assert raw["schedule"] == {"kind": "cosine", "epochs": 16, "repeat": 5}
        assert raw["data"]["clip_len"] == 100 and raw["test"]["num_clips"] == 10


@pytest.mark.parametrize("name", NTU_CONFIGS + DEMO_CONFIGS)
def test_run_configs_parse(name):
    pytest.importorskip("rgbpose.data.skeleton")
    from rgbpose.engine.config import load_run_config  # noqa: PLC0415

    cfg = load_run_config(REPO / "config/models" / name)
    assert cfg.model.name == "ske2grid" and cfg.data.modality == "skeleton"
    assert (cfg.data.keypoints, cfg.data.feature, cfg.data.max_persons) == ("2d", "j", 2)
    assert cfg.data.clip_len == (100 if name.startswith("ntu_") else 32)
