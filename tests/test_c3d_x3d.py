"""PoseC3D's C3D-light and X3D-shallow backbones (issue 12): reference parameter counts and
shapes, init policy, PYSKL key names, registry overrides, and their run configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from rgbpose.models import (
    C3DConfig,
    X3DConfig,
    build_from_spec,
    build_model,
    count_parameters,
    model_contract,
    model_spec,
)
from rgbpose.models.x3d import BlockX3D, SqueezeExcite, round_width

REPO = Path(__file__).resolve().parents[1]
K = 5
# name -> (backbone params, with a 60-class head, feature shape of a [1, 17, 48, 56, 56] clip)
REFERENCE = {
    "c3d_light": (3_389_472, 3_404_892, (1, 256, 48, 7, 7)),
    "x3d_shallow": (241_488, 254_508, (1, 216, 48, 4, 4)),
}
SMALL = {
    "c3d_light": {"base_channels": 4},
    "x3d_shallow": {"base_channels": 8, "stage_blocks": (1, 2, 1)},
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_param_counts_match_reference(name):
    backbone, with_head, _ = REFERENCE[name]
    with torch.device("meta"):
        model = build_model(name, 60)
    assert count_parameters(model.backbone) == backbone
    assert count_parameters(model) == with_head
    assert count_parameters(model.head) == model.backbone.out_channels * 60 + 60


def test_c3d_light_count_by_hand():
    """Six bias-free 3x3x3 convs 17->32->64->128->128->256->256, each with a BN (gamma, beta)."""
    widths = [17, 32, 64, 128, 128, 256, 256]
    convs = sum(27 * a * b for a, b in zip(widths, widths[1:]))
    with torch.device("meta"):
        model = build_model("c3d_light", 60)
    assert count_parameters(model.backbone) == convs + 2 * sum(widths[1:])


def test_x3d_shallow_widths():
    """gamma_w 1 keeps base 24; stages 24/48/96 expand by 2.25 to 54/108/216; conv5 -> 216."""
    cfg = X3DConfig()
    assert cfg.width == 24 and cfg.blocks == (2, 5, 3)
    assert cfg.stage_channels == (24, 48, 96) and cfg.out_channels == 216
    with torch.device("meta"):
        bb = build_model("x3d_shallow", 60).backbone
    assert [len(s) for s in bb.stages] == [2, 5, 3]
    assert [s[0].conv1.conv.out_channels for s in bb.stages] == [54, 108, 216]
    assert [s[0].conv2.conv.groups for s in bb.stages] == [54, 108, 216]  # depthwise
    assert bb.conv1_t.conv.groups == 24 and bb.conv1_t.conv.kernel_size == (5, 1, 1)
    assert bb.conv1_s.bn is None and bb.conv1_s.relu is None
    assert all(isinstance(b.swish, nn.Identity) and b.se_module is None for b in bb.modules()
               if isinstance(b, BlockX3D))  # fmt: skip


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_full_size_output_shapes(name):
    torch.manual_seed(0)
    model = build_model(name, 60).eval()
    with torch.no_grad():
        feat = model.forward_features(torch.randn(1, 17, 48, 56, 56))
        logits = model.forward_head(feat)
    assert feat.shape == REFERENCE[name][2]
    assert logits.shape == (1, 60)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_backward_small(name):
    torch.manual_seed(0)
    model = build_model(name, K, **SMALL[name]).train()
    x, labels = torch.randn(2, 17, 8, 16, 16), torch.tensor([1, 3])
    logits = model(heatmap_imgs=x)
    assert logits.shape == (2, K)
    loss = model.loss(logits, labels)
    # Head weights ~N(0, 0.01): the loss starts near log K.
    assert loss.item() == pytest.approx(math.log(K), abs=0.05)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert model.head.fc.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(heatmap_imgs=x))
    with pytest.raises(TypeError, match="heatmap_imgs"):
        model(imgs=x)


def test_init_policy():
    torch.manual_seed(0)
    c3d = build_model("c3d_light", K, base_channels=4)
    x3d = build_model("x3d_shallow", K, base_channels=8)
    zero = {id(m.conv3.bn) for m in x3d.modules() if isinstance(m, BlockX3D)}
    assert len(zero) == 2 + 5 + 3  # one per block: each starts as its shortcut
    for model, zeroed in ((c3d, set()), (x3d, zero)):
        for m in model.backbone.modules():
            if isinstance(m, nn.BatchNorm3d):
                assert torch.all(m.weight == (0.0 if id(m) in zeroed else 1.0))
                assert torch.all(m.bias == 0)
            elif isinstance(m, nn.Conv3d):
                assert m.bias is None
                if m.weight.numel() >= 500:  # Kaiming normal, fan-out mode (PyTorch's fan-out)
                    fan_out = m.out_channels * math.prod(m.kernel_size)
                    std = math.sqrt(2 / fan_out)
                    assert m.weight.std().item() == pytest.approx(std, rel=0.2)
        assert model.head.fc.weight.std().item() == pytest.approx(0.01, rel=0.3)


def test_state_dict_keys_are_pyskls():
    """Module names match PYSKL's backbone keys (mmcv ConvModule: ``.conv`` / ``.bn``)."""
    with torch.device("meta"):
        c3d = build_model("c3d_light", 60).backbone.state_dict()
        x3d = build_model("x3d_shallow", 60).backbone.state_dict()
    assert sorted({k.split(".")[0] for k in c3d}) == [
        "conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b",
    ]  # fmt: skip
    assert {"conv1a.conv.weight", "conv4b.bn.running_var"} <= set(c3d)
    assert {
        "conv1_s.conv.weight",
        "conv1_t.conv.weight",
        "conv1_t.bn.weight",
        "layer1.0.conv1.conv.weight",
        "layer1.0.conv2.bn.running_mean",
        "layer1.0.conv3.bn.bias",
        "layer1.0.downsample.conv.weight",
        "layer3.2.conv3.conv.weight",
        "conv5.bn.num_batches_tracked",
    } <= set(x3d)
    assert "conv1_s.bn.weight" not in x3d and "layer1.1.downsample.conv.weight" not in x3d


def test_overrides_through_the_registry():
    torch.manual_seed(0)
    c3d = build_model("c3d_light", K, base_channels=4, num_stages=4, temporal_downsample=True)
    assert c3d.backbone.cfg == C3DConfig(base_channels=4, num_stages=4, temporal_downsample=True)
    with torch.no_grad():
        # pool1 keeps T; pools 2-4 halve T, H, W: 16x32^2 -> 2x2^2.
        assert c3d.forward_features(torch.randn(1, 17, 16, 32, 32)).shape == (1, 32, 2, 2, 2)
    x3d = build_model("x3d_shallow", K, in_channels=25, base_channels=8, stage_blocks=[1, 1],
                      spatial_strides=[2, 1], gamma_d=2.0, dropout=0.1)  # fmt: skip
    assert x3d.backbone.cfg.blocks == (2, 2) and len(x3d.backbone.layer2) == 2
    assert x3d.head.dropout.p == 0.1
    with torch.no_grad():
        assert x3d.forward_features(torch.randn(1, 25, 4, 16, 16)).shape == (1, 36, 4, 4, 4)
    assert model_contract(x3d).inputs[0].key == "heatmap_imgs"
    assert model_contract(x3d).inputs[0].channels == 25
    assert model_contract(c3d).inputs[0].channels == 17
    assert model_contract(c3d).heads == ("c3d_light",)
    rebuilt = build_from_spec(model_spec(x3d))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in x3d.state_dict().items()
    }
    with pytest.raises(ValueError, match="stage_blockz"):
        build_model("c3d_light", K, stage_blockz=(1,))
    with pytest.raises(ValueError, match="num_stages"):
        build_model("c3d_light", K, num_stages=5)
    with pytest.raises(ValueError, match="spatial_strides"):
        build_model("x3d_shallow", K, stage_blocks=(1, 1))


def test_x3d_squeeze_excite_and_swish():
    """SE on every other block ('half'); the reduced width rounds up to a multiple of 8."""
    assert round_width(24, 1.0) == 24 and round_width(216, 1 / 16) == 16
    assert round_width(54, 1 / 16) == 8 and round_width(20, 1.0) == 24  # 20 -> 24, not 16
    model = build_model("x3d_shallow", K, base_channels=8, se_ratio=1 / 16, use_swish=True)
    blocks = list(model.backbone.layer2)  # 5 blocks, inner width int(16 * 2.25) = 36
    assert [b.se_module is not None for b in blocks] == [True, False, True, False, True]
    se = blocks[0].se_module
    assert isinstance(se, SqueezeExcite) and se.fc1.out_channels == 8
    assert count_parameters(se) == 36 * 8 + 8 + 8 * 36 + 36
    assert isinstance(blocks[0].swish, nn.SiLU)
    full = build_model("x3d_shallow", K, base_channels=8, se_ratio=1 / 16, se_style="all")
    assert all(b.se_module is not None for b in full.backbone.layer2)
    logits = model(torch.randn(2, 17, 4, 16, 16))
    model.loss(logits, torch.tensor([0, 1])).backward()
    assert se.fc1.weight.grad is not None


NTU = {
    "ntu_c3d_light_joint.yaml": "c3d_light",
    "ntu_c3d_light_limb.yaml": "c3d_light",
    "ntu_x3d_shallow_joint.yaml": "x3d_shallow",
    "ntu_x3d_shallow_limb.yaml": "x3d_shallow",
}
DEMO = {"demo_c3d_light.yaml": "c3d_light", "demo_x3d_shallow.yaml": "x3d_shallow"}


@pytest.mark.parametrize("name", sorted({**NTU, **DEMO}))
def test_run_configs_load_and_fit_their_data(name):
    from rgbpose.engine.config import check_model_data, load_run_config

    path = REPO / "config/models" / name
    cfg = load_run_config(path)
    check_model_data(cfg, str(path), "coco17")
    assert cfg.model.name == {**NTU, **DEMO}[name]
    assert cfg.model.overrides["in_channels"] == 17
    limb = "limb" in name
    assert (cfg.data.with_kp, cfg.data.with_limb) == (not limb, limb)
    if name in DEMO:  # a small model that runs on the demo's clips
        model = build_model(cfg.model.name, 3, **cfg.model.overrides).eval()
        clip = torch.zeros(1, 17, cfg.data.pose_clip_len, *(2 * [cfg.data.pose_train_size]))
        with torch.no_grad():
            assert model(heatmap_imgs=clip).shape == (1, 3)
        return
    # PYSKL's recipe for both backbones (the PoseC3D SlowOnly one).
    d, o, s, t = cfg.data, cfg.optim, cfg.schedule, cfg.test
    assert (d.pose_clip_len, d.pose_train_size, d.pose_test_size, d.sigma) == (48, 56, 64, 0.6)
    assert (o.lr, o.base_batch, o.momentum, o.weight_decay, o.grad_clip) == (
        0.4, 256, 0.9, 3e-4, 40,
    )  # fmt: skip
    assert (s.kind, s.epochs, s.repeat, cfg.batch_size) == ("cosine", 24, 10, 32)
    assert (t.num_clips, t.flip) == (10, True)


@pytest.mark.parametrize("model", ["c3d_light", "x3d_shallow"])
def test_limb_config_is_the_joint_recipe_on_limbs(model):
    from rgbpose.engine.config import load_run_config

    joint = load_run_config(REPO / f"config/models/ntu_{model}_joint.yaml").to_dict()
    limb = load_run_config(REPO / f"config/models/ntu_{model}_limb.yaml").to_dict()
    assert limb == {**joint, "data": {**joint["data"], "with_kp": False, "with_limb": True}}
