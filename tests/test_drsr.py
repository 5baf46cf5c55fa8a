"""DRSR (MotionRGBD): the unimodal I3DWTrans (``drsr``) and FusionNet (``drsr_fusion``): parameter
counts of the full config (REFERENCE_SEEDS 3.2 / 3.4, the reference's own counts), shapes at
small sizes and batch 1, and hand-computed kNN attention, RCM, FRP, rank-pool weights, sampling
segments, sharpness and losses; the fusion's reshape flag and its init_from merge."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rgbpose.engine.runtime import head_outputs
from rgbpose.models import build_model, count_parameters, model_contract
from rgbpose.models.drsr import (
    BRANCH_KEYS,
    FeatureRankPooling,
    KNNAttention,
    RecouplingModule,
    knn_keep,
    knn_softmax,
    segment_bounds,
    sharpness_tau,
)
from rgbpose.models.init_from import merge_sources

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors on a shared CPU

K = 5
#: small sizes: 8 frames of 32^2 (trunk stride 32 -> 1x1 Mixed_5c), 2 / 4 / 6 segments, 1 layer
SMALL = {"clip_len": 8, "image_size": 32, "segments": (2, 4, 6), "num_layers": 1}


def _inputs(b: int, t: int = 8, s: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, t, s, s, generator=gen), torch.rand(b, 1, t, s, s, generator=gen)


@pytest.fixture(scope="module")
def small() -> nn.Module:
    torch.manual_seed(0)
    return build_model("drsr", K, eval_sampling="center", **SMALL)


@pytest.fixture(scope="module")
def fusion() -> nn.Module:
    torch.manual_seed(0)
    return build_model("drsr_fusion", K, eval_sampling="center", **SMALL)


# ----------------------------------------------------------------------------- sizes
def test_param_counts_full_config():
    with torch.device("meta"):
        uni, fus = build_model("drsr", 60), build_model("drsr_fusion", 60)
    bb = uni.backbone
    assert count_parameters(uni) == 38_196_822
    assert count_parameters(bb.trunk) == 3_552_240
    assert count_parameters(bb.linear_map) == 526_848
    assert count_parameters(bb.frp) == 2
    assert count_parameters(bb.temporal) + count_parameters(uni.head) == 34_117_732
    assert [count_parameters(h) for h in uni.head.branches] == [31_804] * 3  # LN 1024 + 30,780
    assert count_parameters(bb) == 38_196_822 - 3 * 31_804 == 38_101_410
    assert count_parameters(fus) == 79_828_412
    assert count_parameters(fus.backbone.rgb) == count_parameters(fus.backbone.depth) == 38_101_410
    assert count_parameters(fus.head.fusion) == 1_986_560
    assert count_parameters(fus.backbone.cross_spatial) == 787_456
    assert count_parameters(fus.head.cross_temporal) == 787_456
    assert count_parameters(fus.head.classifier_rgb) == 31_804
    assert count_parameters(fus.head.classifier_depth) == 31_804
    assert count_parameters(fus.head.discriminator) == 512


def test_contracts():
    uni = build_model("drsr", K, **SMALL)
    assert model_contract(uni).input_keys == ("clip", "guidance")
    assert [i.channels for i in model_contract(uni).inputs] == [3, 1]
    fus = build_model("drsr_fusion", K, depth_channels=1, **SMALL)
    assert model_contract(fus).input_keys == (
        "clip_rgb",
        "guidance_rgb",
        "clip_depth",
        "guidance_depth",
    )
    assert [i.channels for i in model_contract(fus).inputs] == [3, 1, 1, 1]


def test_shapes_at_small_sizes_and_batch_1():
    torch.manual_seed(0)
    model = build_model("drsr", K, clip_len=16, image_size=64, segments=(4, 8, 12)).eval()
    assert len(model.backbone.temporal.branches[0].blocks) == 6
    clip, guidance = _inputs(2, 16, 64)
    with torch.no_grad():
        assert model.backbone.feature_map(clip, guidance).shape == (2, 1024, 16, 2, 2)
        assert model.backbone.spatial(clip, guidance).shape == (2, 16, 512)
        out = model(clip, guidance)
        one = model(clip[:1], guidance[:1])  # the reference loses the batch dim here
    for key in ("logits", *BRANCH_KEYS):
        assert out[key].shape == (2, K) and one[key].shape == (1, K), key
    assert out["spatial_weights"].shape == out["cls_mean"].shape == (2, 512)
    assert one["spatial_weights"].shape == one["cls_mean"].shape == (1, 512)
    merged = torch.stack([out[k] for k in BRANCH_KEYS]).amax(0)
    assert torch.equal(out["logits"], merged)
    assert list(head_outputs(out, "drsr")) == ["drsr"]  # only the merged logits are scored
    with pytest.raises(ValueError, match="clip_len"):
        model(*_inputs(1, 8, 64))


def test_batch_1_trains_and_fusion_batch_1_infers(small, fusion):
    small.train()
    out = small(*_inputs(1))
    small.loss(out, torch.tensor([2])).backward()
    assert out["logits"].shape == (1, K)
    small.zero_grad(set_to_none=True)
    small.eval()
    fusion.eval()
    with torch.no_grad():
        out = fusion(*_inputs(1, seed=1), *_inputs(1, seed=2))
    for key in ("logits", "rgb", "depth"):
        assert out[key].shape == (1, K), key
    assert out["decoded"].shape == out["rgb_temporal"].shape == (1, 512)
    assert out["rgb_domain"].shape == (1, 1)
    assert list(head_outputs(out, "drsr_fusion")) == ["drsr_fusion"]


def test_size_overrides_are_checked():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model("drsr", K, image_size=48)
    with pytest.raises(ValueError, match="eval_sampling"):
        build_model("drsr", K, eval_sampling="middle", **{k: v for k, v in SMALL.items()})
    with pytest.raises(ValueError, match="sources"):
        build_model("drsr_fusion", K, sources={"rgb": "a"}, **SMALL)


# ----------------------------------------------------------------------------- hand-computed parts
@pytest.mark.parametrize(("n", "keep"), [(17, 11), (33, 23), (49, 34), (3, 2), (2, 1)])
def test_knn_softmax_keeps_int_07n_keys(n, keep):
    assert knn_keep(n, 0.7) == keep
    scores = torch.randn(2, 8, n, n, generator=torch.Generator().manual_seed(n))
    attn = knn_softmax(scores, keep)
    assert torch.all((attn > 0).sum(-1) == keep)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 8, n))
    # the kept keys are the best-scored ones, renormalised
    s = scores.double().numpy()
    kth = np.sort(s, axis=-1)[..., -keep][..., None]
    e = np.where(s >= kth, np.exp(s - s.max(-1, keepdims=True)), 0.0)
    assert np.allclose(attn.double().numpy(), e / e.sum(-1, keepdims=True), atol=1e-6)


def test_knn_attention_module_by_hand():
    torch.manual_seed(0)
    att = KNNAttention(dim=16, heads=2, dim_head=8, dropout=0.0, knn_ratio=0.7).eval()
    x = torch.randn(2, 17, 16)
    with torch.no_grad():
        out = att(x).double().numpy()
    w = att.to_qkv.weight.detach().double().numpy()
    wo, bo = (p.detach().double().numpy() for p in att.to_out[0].parameters())
    xs = x.double().numpy()
    q, k, v = np.split(xs @ w.T, 3, axis=-1)  # [2, 17, 16] each, heads of 8
    heads = []
    for h in range(2):
        sl = slice(8 * h, 8 * h + 8)
        s = q[..., sl] @ k[..., sl].transpose(0, 2, 1) / math.sqrt(8)
        kth = np.sort(s, axis=-1)[..., -11][..., None]  # int(0.7 * 17) = 11 keys per query
        e = np.where(s >= kth, np.exp(s - s.max(-1, keepdims=True)), 0.0)
        heads.append((e / e.sum(-1, keepdims=True)) @ v[..., sl])
    expected = np.concatenate(heads, axis=-1) @ wo.T + bo
    assert np.allclose(out, expected, atol=1e-5)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_rcm_weights_by_hand():
    rcm = RecouplingModule(frames=3, dim=4, hidden=2, dim_head=2)
    wq = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    wk = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    w1 = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]])
    w2 = np.array([[1.0, 0.0], [-1.0, 1.0], [0.5, 0.5]])
    ws, bs = np.arange(12.0).reshape(4, 3) / 10 - 0.5, np.array([0.1, -0.2, 0.0, 0.3])
    with torch.no_grad():
        for p, value in ((rcm.q.weight, wq), (rcm.k.weight, wk), (rcm.temporal[0].weight, w1),
                         (rcm.temporal[2].weight, w2), (rcm.to_spatial.weight, ws),
                         (rcm.to_spatial.bias, bs)):  # fmt: skip
            p.copy_(torch.from_numpy(value))
    tokens = np.array(
        [[1.0, 2.0, 0.0, -1.0], [0.0, 1.0, 1.0, 1.0], [2.0, -1.0, 0.0, 1.0]]
    )  # [T, C]
    out, spatial, (w_t, w_c) = rcm(torch.from_numpy(tokens)[None].float())
    # temporal weights: channel mean per frame -> 3 -> 2 -> 3 (GELU) -> LayerNorm(3) -> sigmoid
    z = w2 @ _gelu(w1 @ tokens.mean(axis=1))
    wt = _sigmoid((z - z.mean()) / np.sqrt(z.var() + 1e-5))
    # channel weights: the channels are tokens (features = frames); mean over the queries
    xc = tokens.T  # [C, T]
    scores = (xc @ wq.T) @ (xc @ wk.T).T / math.sqrt(2)
    wc = _sigmoid(scores.mean(axis=0))
    assert np.allclose(w_t[0].detach().numpy(), wt, atol=1e-6)
    assert np.allclose(w_c[0].detach().numpy(), wc, atol=1e-6)
    assert np.allclose(out[0].detach().numpy(), tokens * wt[:, None] * wc[None, :], atol=1e-6)
    assert np.allclose(spatial[0].detach().numpy(), ws @ wt + bs, atol=1e-6)


def test_frp_by_hand():
    frp = FeatureRankPooling()
    assert frp.weight.tolist() == [1.0, 0.0]  # the identity at init: the block output is 2a
    with torch.no_grad():
        frp.weight.copy_(torch.tensor([0.5, 2.0]))
    x = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2, 2) / 10
    g = torch.rand(2, 1, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    gp = g.numpy().reshape(2, 1, 2, 2, 4, 2, 4).max(axis=(4, 6))  # 8 -> 4 -> 2: a 4x4 max
    xn = x.numpy()
    expected = 0.5 * xn + 2.0 * xn * (gp + 1.0)
    assert np.allclose(frp(x, g).detach().numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="guidance"):
        frp(x, torch.rand(2, 1, 2, 6, 6))


def test_segment_bounds_and_sampling(small):
    start, end = segment_bounds(5, 3)
    assert start.tolist() == [0, 1, 3] and end.tolist() == [1, 3, 5]
    start, end = segment_bounds(2, 4)  # more segments than tokens: indices repeat
    assert start.tolist() == [0, 0, 1, 1] and end.tolist() == [1, 1, 2, 2]
    start, end = segment_bounds(64, 16)
    assert start.tolist() == list(range(0, 64, 4)) and torch.equal(end, start + 4)
    branch = small.backbone.temporal.branches[2]  # 6 segments
    start, end = segment_bounds(64, 6)
    branch.train()
    draws = torch.stack([branch.sample_indices(64) for _ in range(300)])
    assert torch.all(draws >= start) and torch.all(draws < end)
    assert all(len(set(draws[:, i].tolist())) == int(end[i] - start[i]) for i in range(6))
    branch.eval()  # 'center': each segment's middle index, deterministic
    assert branch.sample_indices(64).tolist() == ((start + end - 1) // 2).tolist()
    branch.eval_sampling = "random"  # the reference's test-time behaviour (the default)
    try:
        assert len({tuple(branch.sample_indices(64).tolist()) for _ in range(20)}) > 1
    finally:
        branch.eval_sampling = "center"
    assert build_model("drsr", K, **SMALL).backbone.temporal.branches[0].eval_sampling == "random"


def test_sharpness_schedule_and_epoch_buffer(small):
    assert sharpness_tau(0) == 0.04
    assert sharpness_tau(29) == pytest.approx(0.07, abs=1e-15)
    assert sharpness_tau(30) == sharpness_tau(99) == 0.07
    assert sharpness_tau(15) == np.linspace(0.04, 0.07, 30)[15]
    assert sharpness_tau(15) == pytest.approx(0.04 + 15 * 0.03 / 29, rel=1e-12)
    try:
        for epoch, tau in ((0, 0.04), (15, sharpness_tau(15)), (29, 0.07), (40, 0.07)):
            small.set_epoch(epoch)
            assert small.tau.item() == pytest.approx(tau, rel=1e-6), epoch
        # the epoch is in the checkpoint: a reloaded model tests with its last tau
        small.set_epoch(15)
        state = small.state_dict()
        assert int(state["epoch"]) == 15 and "tau_schedule" not in state
        fresh = build_model("drsr", K, **SMALL)
        assert fresh.tau.item() == pytest.approx(0.04)
        fresh.load_state_dict(state)
        assert fresh.tau.item() == pytest.approx(sharpness_tau(15), rel=1e-6)
        # the logits are the branch heads' outputs divided by tau
        small.eval()
        with torch.no_grad():
            feats = small.forward_features(*_inputs(2))
            out = small.forward_head(feats)
            raw = small.head.branches[0](feats.cls[0])
        assert torch.allclose(out["logits_small"] * sharpness_tau(15), raw, atol=1e-5)
        with pytest.raises(ValueError):
            small.set_epoch(-1)
    finally:
        small.set_epoch(0)


def _ls_ce(logits: np.ndarray, labels: np.ndarray, eps: float = 0.1) -> float:
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    nll = -logp[np.arange(len(labels)), labels]
    return float(((1 - eps) * nll + eps * (-logp).mean(1)).mean())


def _kl_sum(spatial: np.ndarray, target: np.ndarray, t: float = 0.5) -> float:
    def log_softmax(z):
        z = z / t
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    log_p = log_softmax(target)
    return float((np.exp(log_p) * (log_p - log_softmax(spatial))).sum())


def test_unimodal_loss_by_hand(small):
    rng = np.random.default_rng(0)
    arrays = {k: rng.normal(size=(2, 3)) * 2 for k in ("logits", *BRANCH_KEYS)}
    arrays["spatial_weights"], arrays["cls_mean"] = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    outputs = {k: torch.tensor(v, dtype=torch.float32) for k, v in arrays.items()}
    labels = np.array([0, 2])
    ce = _ls_ce(arrays["logits"], labels) + 0.5 * sum(
        _ls_ce(arrays[k], labels) for k in BRANCH_KEYS
    )
    kl = _kl_sum(arrays["spatial_weights"], arrays["cls_mean"])
    assert kl > 0.1
    try:
        for epoch, lam in ((0, 0.0), (1, 0.0), (2, 1.0), (50, 1.0)):
            small.set_epoch(epoch)
            loss = small.loss(outputs, torch.from_numpy(labels))
            assert loss.item() == pytest.approx(ce + lam * kl, rel=1e-5), epoch
    finally:
        small.set_epoch(0)


def test_unimodal_kl_gradients_at_epoch_0(small):
    """The KL counts 0 before epoch 2 but stays in the graph (every parameter gets a grad)."""
    small.train()
    tokens = torch.randn(2, 8, 512, generator=torch.Generator().manual_seed(0))
    linear = small.backbone.temporal.rcm.to_spatial.weight
    try:
        for epoch in (0, 2):
            small.set_epoch(epoch)
            small.zero_grad(set_to_none=True)
            out = small.forward_head(small.backbone.temporal(tokens))
            small.loss(out, torch.tensor([0, 1])).backward()
            assert linear.grad is not None
            assert (linear.grad.abs().sum() > 0) == (epoch >= 2), epoch
    finally:
        small.set_epoch(0)
        small.zero_grad(set_to_none=True)


def test_fusion_loss_by_hand(fusion):
    rng = np.random.default_rng(1)
    a = {k: rng.normal(size=(2, 3)) for k in ("logits", "rgb", "depth")}
    for k in ("rgb_temporal", "depth_temporal", "decoded", "rgb_spatial_weights",
              "rgb_cls_mean", "depth_spatial_weights", "depth_cls_mean"):  # fmt: skip
        a[k] = rng.normal(size=(2, 4))
    a["rgb_domain"], a["depth_domain"] = rng.normal(size=(2, 1)), rng.normal(size=(2, 1))
    labels = np.array([1, 0])
    expected = sum(_ls_ce(a[k], labels) for k in ("logits", "rgb", "depth"))
    p_r, p_d = 1 / (1 + np.exp(-a["rgb_domain"])), 1 / (1 + np.exp(-a["depth_domain"]))
    expected += -np.log(p_r).mean() - np.log(1 - p_d).mean()  # rgb -> 1, depth -> 0
    expected += ((a["decoded"] - a["rgb_temporal"]) ** 2).mean()
    expected += ((a["decoded"] - a["depth_temporal"]) ** 2).mean()
    expected += _kl_sum(a["rgb_spatial_weights"], a["rgb_cls_mean"])
    expected += _kl_sum(a["depth_spatial_weights"], a["depth_cls_mean"])
    outputs = {k: torch.tensor(v, dtype=torch.float32) for k, v in a.items()}
    assert fusion.loss(outputs, torch.from_numpy(labels)).item() == pytest.approx(
        expected, rel=1e-5
    )


# ----------------------------------------------------------------------------- fusion
def test_faithful_reshape_mixes_frames(fusion):
    fusion.eval()
    bb = fusion.backbone
    gen = torch.Generator().manual_seed(0)
    s_rgb, s_depth = torch.randn(1, 8, 512, generator=gen), torch.randn(1, 8, 512, generator=gen)
    moved = s_rgb.clone()
    moved[:, 0] += 1.0  # change frame 0 only
    changed = {}
    try:
        for faithful in (True, False):
            bb.faithful_reshape = faithful
            with torch.no_grad():
                diff = (bb.spatial_fusion(moved, s_depth) - bb.spatial_fusion(s_rgb, s_depth)).abs()
            changed[faithful] = (diff.amax(-1) > 1e-6).nonzero()[:, 1].tolist()
        # a transpose keeps frames apart (a 1x1 conv per frame); the reference's reshape mixes
        # frame 0's channels into every "frame" the conv sees, so every output frame changes
        assert changed[False] == [0]
        assert changed[True] == list(range(8))
        inputs = (*_inputs(2, seed=3), *_inputs(2, seed=4))
        outs = {}
        for faithful in (True, False):
            bb.faithful_reshape = faithful
            with torch.no_grad():
                outs[faithful] = fusion(*inputs)["logits"]
        assert not torch.allclose(outs[True], outs[False])
    finally:
        bb.faithful_reshape = True
    assert build_model("drsr_fusion", K, **SMALL).backbone.faithful_reshape is True


def _source(seed: int, path: str, **overrides) -> dict:
    torch.manual_seed(seed)
    model = build_model("drsr", K, **{**SMALL, **overrides})
    model.set_epoch(9)
    meta = {"model_name": "drsr", "num_classes": K, "overrides": dict(SMALL)}
    return {"state": model.state_dict(), "meta": meta, "path": path}


def test_merge_loads_both_backbones_and_skips_heads():
    rgb, depth = _source(1, "rgb.pt"), _source(2, "depth.pt")
    state, meta = merge_sources({"s_rgb": rgb, "s_depth": depth}, "drsr_fusion", SMALL)
    assert meta["merged_from"] == {"s_rgb": "rgb.pt", "s_depth": "depth.pt"}
    for role, src in (("rgb", rgb), ("depth", depth)):
        keys = [k for k in src["state"] if k.startswith("backbone.")]
        assert len(keys) > 300
        for k in keys:
            assert torch.equal(
                state[f"backbone.{role}.{k[len('backbone.') :]}"], src["state"][k]
            ), k
    assert not torch.equal(state["backbone.rgb.trunk.conv1a.conv.weight"],
                           state["backbone.depth.trunk.conv1a.conv.weight"])  # fmt: skip
    # the unimodal heads are skipped: the fusion classifiers keep their fresh init
    for src in (rgb, depth):
        for i in range(3):
            for k in ("head.classifier_rgb.1.weight", "head.classifier_depth.1.weight"):
                assert not torch.equal(state[k], src["state"][f"head.branches.{i}.1.weight"])
    assert not any(k == "epoch" or k.endswith(".epoch") for k in state)
    fused = build_model("drsr_fusion", K, **SMALL)
    fused.load_state_dict(state)  # strict: every key of the model, nothing else
    # the 'sources' override names the roles instead of the init_from order
    swapped, _ = merge_sources(
        {"s_rgb": rgb, "s_depth": depth}, "drsr_fusion",
        {**SMALL, "sources": {"rgb": "s_depth", "depth": "s_rgb"}},
    )  # fmt: skip
    key = "trunk.conv1a.conv.weight"
    assert torch.equal(swapped[f"backbone.rgb.{key}"], depth["state"][f"backbone.{key}"])
    assert torch.equal(swapped[f"backbone.depth.{key}"], rgb["state"][f"backbone.{key}"])


def test_merge_errors_name_the_problem():
    rgb, depth = _source(1, "rgb.pt"), _source(2, "depth.pt")
    with pytest.raises(ValueError, match="two drsr streams"):
        merge_sources({"a": rgb}, "drsr_fusion", SMALL)
    other = {**depth, "meta": {**depth["meta"], "model_name": "rgb_only"}}
    with pytest.raises(ValueError, match="'rgb_only' checkpoint"):
        merge_sources({"a": rgb, "b": other}, "drsr_fusion", SMALL)
    longer = _source(3, "long.pt", clip_len=16)
    with pytest.raises(ValueError, match="shape"):
        merge_sources({"a": rgb, "b": longer}, "drsr_fusion", SMALL)
    with pytest.raises(ValueError, match="must name the two init_from streams"):
        merge_sources({"a": rgb, "b": depth}, "drsr_fusion",
                      {**SMALL, "sources": {"rgb": "a", "depth": "c"}})  # fmt: skip


def test_bn_momentum_override_sets_every_trunk_batchnorm():
    """Reference BatchNorms update their running statistics with momentum 0.01; bn_momentum
    sets all of them (both branches of FusionNet), and is checked."""
    from rgbpose.models import build_model

    def momenta(model):
        return {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm3d)}

    assert momenta(build_model("drsr", 5, **SMALL)) == {0.01}
    assert momenta(build_model("drsr", 5, **SMALL, bn_momentum=0.1)) == {0.1}
    fusion = build_model("drsr_fusion", 5, **SMALL, bn_momentum=0.1)
    assert momenta(fusion.backbone.rgb) == momenta(fusion.backbone.depth) == {0.1}
    with pytest.raises(ValueError, match="bn_momentum must be in"):
        build_model("drsr", 5, **SMALL, bn_momentum=0.0)
