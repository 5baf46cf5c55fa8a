"""Checkpoint surgery: rgb_only + pose_only -> RGBPoseConv3D merge, PYSKL import, CLIs."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import yaml
from torch import nn

from rgbpose.models import build_from_spec, build_model
from rgbpose.models.convert import cli_merge, import_pyskl, merge_unimodal, pyskl_key
from rgbpose.models.pyskl_import import cli as cli_import_pyskl

K = 6
SMALL_RGB = {"base_channels": 8, "stage_blocks": (1, 1, 1, 1)}
SMALL_POSE = {"base_channels": 4, "stage_blocks": (1, 2, 1)}
SMALL = {
    "posec3d": {"base_channels": 4, "stage_blocks": (1, 1, 1)},
    "pose_only": SMALL_POSE,
    "rgb_only": SMALL_RGB,
    "rgbpose_conv3d": {"rgb": SMALL_RGB, "pose": SMALL_POSE},
}
PADDED = {  # the eight first-block weights that gain lateral input channels
    "backbone.rgb.layer3.0.conv1.weight": 16,
    "backbone.rgb.layer3.0.downsample.0.weight": 16,
    "backbone.rgb.layer4.0.conv1.weight": 32,
    "backbone.rgb.layer4.0.downsample.0.weight": 32,
    "backbone.pose.layer2.0.conv1.weight": 4,
    "backbone.pose.layer2.0.downsample.0.weight": 4,
    "backbone.pose.layer3.0.conv1.weight": 8,
    "backbone.pose.layer3.0.downsample.0.weight": 8,
}


def _perturb(model: nn.Module, seed: int) -> nn.Module:
    """Random, non-trivial BN statistics/affines (bn3 gammas included: they init to 0) and heads,
    so equal outputs cannot come from identity blocks or all-zero logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def _unimodal_pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(1)
    rgb = _perturb(build_model("rgb_only", K, **SMALL_RGB), 2).eval()
    pose = _perturb(build_model("pose_only", K, **SMALL_POSE), 3).eval()
    return rgb, pose


def _fused() -> nn.Module:
    torch.manual_seed(4)
    return build_model("rgbpose_conv3d", K, rgb=SMALL_RGB, pose=SMALL_POSE)


def _inputs(seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 8, 32, 32, generator=g), torch.randn(2, 17, 32, 8, 8, generator=g)


def test_merged_model_computes_the_unimodal_models_then_laterals_kick_in():
    rgb_model, pose_model = _unimodal_pair()
    fused = _fused()
    merged = merge_unimodal(rgb_model.state_dict(), pose_model.state_dict(), fused)
    fused.load_state_dict(merged, strict=True)
    fused.eval()
    x_rgb, x_pose = _inputs()

    lateral_out = {}
    hook = fused.backbone.rgb_laterals["layer2"].register_forward_hook(
        lambda mod, inp, out: lateral_out.setdefault("rgb2", out)
    )
    with torch.no_grad():
        out = fused(x_rgb, x_pose)
        ref_rgb, ref_pose = rgb_model(x_rgb), pose_model(x_pose)
    hook.remove()
    # The laterals do carry signal; only the zero-padded weights keep it out of the result.
    assert lateral_out["rgb2"].abs().mean() > 0.1
    assert ref_rgb.std() > 0.1 and ref_pose.std() > 0.1
    torch.testing.assert_close(out.rgb, ref_rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.pose, ref_pose, rtol=1e-5, atol=1e-5)

    # One SGD step: the gradient reaches the zero slots, so the laterals now change the logits.
    fused.train()
    opt = torch.optim.SGD(fused.parameters(), lr=0.05)
    fused.loss(fused(x_rgb, x_pose), torch.tensor([0, 3])).backward()
    opt.step()
    fused.eval()
    no_lateral = copy.deepcopy(fused)
    params = dict(fused.named_parameters())
    with torch.no_grad():
        for key, extra in PADDED.items():
            assert params[key][:, -extra:].abs().sum() > 0, key
            dict(no_lateral.named_parameters())[key][:, -extra:] = 0
        stepped, ablated = fused(x_rgb, x_pose), no_lateral(x_rgb, x_pose)
    for head in ("rgb", "pose"):
        assert (getattr(stepped, head) - getattr(ablated, head)).abs().max() > 1e-4, head
    assert (stepped.rgb - ref_rgb).abs().max() > 1e-4
    assert (stepped.pose - ref_pose).abs().max() > 1e-4


def test_merge_zero_pads_exactly_the_eight_lateral_weights():
    rgb_model, pose_model = _unimodal_pair()
    fused = _fused()
    fresh = {k: v.clone() for k, v in fused.state_dict().items()}
    merged = merge_unimodal(rgb_model.state_dict(), pose_model.state_dict(), fused)
    assert {f"backbone.{k}": v for k, v in fused.backbone.padded_weight_keys().items()} == PADDED
    sources = {"rgb": rgb_model.state_dict(), "pose": pose_model.state_dict()}
    for key, extra in PADDED.items():
        src = sources[key.split(".")[1]][
            key.replace("backbone.rgb.", "backbone.").replace("backbone.pose.", "backbone.")
        ]
        assert merged[key].shape[1] == src.shape[1] + extra
        assert torch.equal(merged[key][:, : src.shape[1]], src)
        assert torch.all(merged[key][:, src.shape[1] :] == 0)
    assert torch.equal(merged["head.rgb.fc.weight"], sources["rgb"]["head.fc.weight"])
    assert torch.equal(merged["head.pose.fc.bias"], sources["pose"]["head.fc.bias"])
    assert torch.equal(
        merged["backbone.pose.layer2.1.bn3.running_var"],
        sources["pose"]["backbone.layer2.1.bn3.running_var"],
    )
    lateral_keys = [k for k in merged if "_laterals." in k]
    assert len(lateral_keys) == 2 + 2 * 6  # 2 conv weights; 2 x (conv weight + 5 BN entries)
    for key in lateral_keys:
        assert torch.equal(merged[key], fresh[key]), key


def test_merge_rejects_mismatched_checkpoints():
    rgb_model, pose_model = _unimodal_pair()
    fused = _fused()
    rgb_sd, pose_sd = rgb_model.state_dict(), pose_model.state_dict()
    pose25 = build_model("pose_only", K, in_channels=25, **SMALL_POSE).state_dict()
    with pytest.raises(ValueError, match=r"shape mismatches 1: backbone\.pose\.stem\.conv\.weight"):
        merge_unimodal(rgb_sd, pose25, fused)
    with pytest.raises(ValueError, match=r"missing target keys .*backbone\.rgb\.layer4\.0\.conv1"):
        merge_unimodal(pose_sd, rgb_sd, fused)
    no_bias = {k: v for k, v in rgb_sd.items() if k != "head.fc.bias"}
    with pytest.raises(ValueError, match=r"missing target keys 1: head\.rgb\.fc\.bias"):
        merge_unimodal(no_bias, pose_sd, fused)
    extra = {
        **pose_sd,
        "backbone.layer9.0.conv1.weight": torch.zeros(1),
        "fc.weight": torch.zeros(1),
    }
    with pytest.raises(
        ValueError, match=r"unexpected source keys 2: pose:fc\.weight, pose:backbone\.layer9"
    ):
        merge_unimodal(rgb_sd, extra, fused)
    # A padded weight accepts only exactly its own channels + the lateral ones.
    narrow = {**rgb_sd, "backbone.layer3.0.conv1.weight": torch.zeros(32, 48, 3, 1, 1)}
    with pytest.raises(
        ValueError,
        match=r"shape mismatches 1: backbone\.rgb\.layer3\.0\.conv1\.weight "
        r"\(32, 80, 3, 1, 1\) <- rgb:backbone\.layer3\.0\.conv1\.weight \(32, 48, 3, 1, 1\)",
    ):
        merge_unimodal(narrow, pose_sd, fused)
    with pytest.raises(ValueError, match="rgbpose_conv3d"):
        merge_unimodal(rgb_sd, pose_sd, rgb_model)


# --- PYSKL import: the inverse mapping, written independently of convert.py ----------------------


def to_pyskl(key: str) -> str:
    """Our key -> the mmcv/PYSKL key (ConvModule wraps conv + bn)."""
    for ours, theirs in (
        ("head.rgb.fc.", "cls_head.fc_rgb."),
        ("head.pose.fc.", "cls_head.fc_pose."),
        ("head.fc.", "cls_head.fc_cls."),
    ):
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    key = re.sub(
        r"^backbone\.(rgb|pose)_laterals\.layer(\d)\.", r"backbone.\1_path.layer\2_lateral.", key
    )
    key = re.sub(r"^backbone\.(rgb|pose)\.", r"backbone.\1_path.", key)
    key = key.replace("stem.conv.", "conv1.conv.").replace("stem.bn.", "conv1.bn.")
    key = re.sub(r"\.conv([123])\.weight$", r".conv\1.conv.weight", key)
    key = re.sub(r"\.bn([123])\.", r".conv\1.bn.", key)
    return key.replace(".downsample.0.", ".downsample.conv.").replace(
        ".downsample.1.", ".downsample.bn."
    )


LITERAL = [  # (PYSKL key, our key, rgbpose?)
    ("backbone.conv1.conv.weight", "backbone.stem.conv.weight", False),
    ("backbone.conv1.bn.running_mean", "backbone.stem.bn.running_mean", False),
    ("backbone.layer3.0.conv1.conv.weight", "backbone.layer3.0.conv1.weight", False),
    ("backbone.layer3.0.conv1.bn.running_mean", "backbone.layer3.0.bn1.running_mean", False),
    ("backbone.layer2.1.conv3.bn.weight", "backbone.layer2.1.bn3.weight", False),
    ("backbone.layer3.0.downsample.conv.weight", "backbone.layer3.0.downsample.0.weight", False),
    (
        "backbone.layer3.0.downsample.bn.num_batches_tracked",
        "backbone.layer3.0.downsample.1.num_batches_tracked",
        False,
    ),
    ("cls_head.fc_cls.weight", "head.fc.weight", False),
    ("backbone.rgb_path.layer3.0.conv1.conv.weight", "backbone.rgb.layer3.0.conv1.weight", True),
    ("backbone.pose_path.conv1.bn.bias", "backbone.pose.stem.bn.bias", True),
    (
        "backbone.rgb_path.layer2_lateral.conv.weight",
        "backbone.rgb_laterals.layer2.conv.weight",
        True,
    ),
    (
        "backbone.pose_path.layer1_lateral.conv.weight",
        "backbone.pose_laterals.layer1.conv.weight",
        True,
    ),
    (
        "backbone.pose_path.layer2_lateral.bn.running_var",
        "backbone.pose_laterals.layer2.bn.running_var",
        True,
    ),
    ("cls_head.fc_rgb.weight", "head.rgb.fc.weight", True),
    ("cls_head.fc_pose.bias", "head.pose.fc.bias", True),
]


@pytest.mark.parametrize(("theirs", "ours", "rgbpose"), LITERAL)
def test_pyskl_literal_names(theirs, ours, rgbpose):
    assert pyskl_key(theirs, rgbpose) == ours
    assert to_pyskl(ours) == theirs


def test_pyskl_full_size_names_and_shapes():
    with torch.device("meta"):
        model = build_model("rgbpose_conv3d", 60)
    pyskl = {to_pyskl(k): v for k, v in model.state_dict().items()}
    assert pyskl["backbone.rgb_path.layer3.0.conv1.conv.weight"].shape == (256, 640, 3, 1, 1)
    assert pyskl["backbone.pose_path.layer1_lateral.conv.weight"].shape == (512, 32, 7, 1, 1)
    assert pyskl["backbone.rgb_path.layer3_lateral.conv.weight"].shape == (256, 256, 7, 1, 1)
    assert pyskl["cls_head.fc_pose.weight"].shape == (60, 512)
    converted = import_pyskl(pyskl, model)
    assert list(converted) == list(model.state_dict())


@pytest.mark.parametrize("name", sorted(SMALL))  # the ResNet3d family PYSKL names map onto
def test_import_pyskl_round_trip(name):
    torch.manual_seed(0)
    source = _perturb(build_model(name, K, **SMALL[name]), 7)
    expected = source.state_dict()
    # PYSKL checkpoints of older mmcv lack num_batches_tracked: those come from the target.
    pyskl = {to_pyskl(k): v for k, v in expected.items() if "num_batches_tracked" not in k}
    target = build_model(name, K, **SMALL[name])
    converted = import_pyskl(pyskl, target)
    assert converted.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(converted[key], value), key
    target.load_state_dict(converted, strict=True)


def test_import_pyskl_is_strict():
    model = build_model("pose_only", K, **SMALL_POSE)
    pyskl = {to_pyskl(k): v for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"unexpected source keys 1: backbone\.fc\.weight"):
        import_pyskl({**pyskl, "backbone.fc.weight": torch.zeros(1)}, model)
    del pyskl["backbone.layer1.0.conv2.bn.running_var"]
    with pytest.raises(
        ValueError, match=r"missing target keys 1: backbone\.layer1\.0\.bn2\.running_var"
    ):
        import_pyskl(pyskl, model)
    ntu120 = {
        to_pyskl(k): v for k, v in build_model("pose_only", 120, **SMALL_POSE).state_dict().items()
    }
    with pytest.raises(
        ValueError, match=r"head\.fc\.weight \(6, 64\) <- cls_head\.fc_cls\.weight \(120, 64\)"
    ):
        import_pyskl(ntu120, model)
    # A unimodal checkpoint is not an RGBPose one.
    with pytest.raises(ValueError, match="unexpected source keys"):
        import_pyskl(pyskl, build_model("rgbpose_conv3d", K, **SMALL["rgbpose_conv3d"]))


# --- command lines ------------------------------------------------------------------------------


def _save_unimodal(tmp_path, model: nn.Module, name: str, overrides: dict) -> str:
    path = tmp_path / f"{name}.pt"
    meta = {"model_name": name, "num_classes": K, "overrides": overrides, "epoch": 3}
    torch.save({"model": model.state_dict(), "meta": meta}, path)
    return str(path)


def test_cli_merge_writes_a_loadable_init(tmp_path, capsys):
    rgb_model, pose_model = _unimodal_pair()
    rgb_pt = _save_unimodal(tmp_path, rgb_model, "rgb_only", SMALL_RGB)
    pose_pt = _save_unimodal(tmp_path, pose_model, "pose_only", SMALL_POSE)
    overrides = {
        "rgb": {"base_channels": 8, "stage_blocks": [1, 1, 1, 1]},
        "pose": {"base_channels": 4, "stage_blocks": [1, 2, 1]},
        "detach_lateral": False,
    }
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {"model": {"name": "rgbpose_conv3d", "overrides": overrides}, "batch_size": 2}
        )
    )
    out = tmp_path / "init" / "merged.pt"
    argv = ["--rgb", rgb_pt, "--pose", pose_pt, "--config", str(config), "-o", str(out)]
    assert cli_merge(argv) == 0
    ckpt = torch.load(out, weights_only=True)
    meta = ckpt["meta"]
    assert (meta["model_name"], meta["num_classes"], meta["overrides"]) == (
        "rgbpose_conv3d",
        K,
        overrides,
    )
    model = build_from_spec(meta).eval()
    model.load_state_dict(ckpt["model"], strict=True)
    x_rgb, x_pose = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x_rgb, x_pose).rgb, rgb_model(x_rgb), rtol=1e-5, atol=1e-5)
    # Swapped inputs: a clear error naming the file and what was expected, nothing written.
    out2 = tmp_path / "swapped.pt"
    argv = ["--rgb", pose_pt, "--pose", rgb_pt, "--config", str(config), "-o", str(out2)]
    assert cli_merge(argv) == 1
    err = capsys.readouterr().err
    assert "is a 'pose_only' checkpoint, --rgb needs 'rgb_only'" in err and pose_pt in err
    assert not out2.exists()
    config.write_text(yaml.safe_dump({"model": {"name": "rgb_only"}}))
    assert (
        cli_merge(["--rgb", rgb_pt, "--pose", pose_pt, "--config", str(config), "-o", str(out2)])
        == 1
    )
    assert (
        "model 'rgb_only' registers no merge, so init_from must name one stream (got 2: rgb, pose)"
        in capsys.readouterr().err
    )


class _Opaque:
    """Stands for the non-tensor objects mmcv puts in a checkpoint's meta."""


def test_cli_import_pyskl(tmp_path, capsys):
    torch.manual_seed(0)
    source = build_model("rgbpose_conv3d", K, **SMALL["rgbpose_conv3d"])
    pyskl = {to_pyskl(k): v for k, v in source.state_dict().items()}
    src = tmp_path / "pyskl.pth"
    torch.save({"state_dict": pyskl, "meta": {"mmcv_version": "1.7.0", "epoch": 20}}, src)
    out = tmp_path / "imported.pt"
    overrides = (
        '{"rgb": {"base_channels": 8, "stage_blocks": [1, 1, 1, 1]}, '
        '"pose": {"base_channels": 4, "stage_blocks": [1, 2, 1]}}'
    )
    argv = [
        str(src),
        "--model",
        "rgbpose_conv3d",
        "--num-classes",
        str(K),
        "--overrides-json",
        overrides,
        "-o",
        str(out),
    ]
    assert cli_import_pyskl(argv) == 0
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["meta"]["model_name"] == "rgbpose_conv3d" and ckpt["meta"]["imported_from"] == str(
        src
    )
    for key, value in source.state_dict().items():
        assert torch.equal(ckpt["model"][key], value), key

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": pyskl, "meta": {"config": _Opaque()}}, unsafe)
    argv[0] = str(unsafe)
    assert cli_import_pyskl(argv) == 1
    err = capsys.readouterr().err
    # Objects outside the OpenMMLab packages are still refused, naming the file and the object.
    assert f"{unsafe}: refused to load: forbidden global test_convert._Opaque" in err
    assert "weights_only=False" not in err  # never passes on the unsafe advice
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    argv[0] = str(garbage)
    assert cli_import_pyskl(argv) == 1
    assert f"{garbage}: not a readable torch checkpoint" in capsys.readouterr().err
    argv[0] = str(src)
    argv[argv.index("--num-classes") + 1] = "60"
    assert cli_import_pyskl(argv) == 1
    assert (
        "shape mismatches 4: head.rgb.fc.weight (60, 256) <- cls_head.fc_rgb.weight (6, 256)"
        in capsys.readouterr().err
    )
