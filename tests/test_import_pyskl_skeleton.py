"""rgbpose import-pyskl for ST-GCN++ (2D COCO-17 and 3D NTU-25), C3D-light and X3D-shallow:
the exact PYSKL key names, full-size shapes, round trips with equal outputs, strict errors, the
published file names and imported checkpoints that rgbpose test uses directly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rgbpose.cli import main
from rgbpose.engine.checkpoint import model_from_checkpoint
from rgbpose.io import dump_pickle, load_pickle
from rgbpose.models import build_model
from rgbpose.models.convert import PYSKL_KEY_RULES, import_pyskl, plain_key, stgcnpp_key
from rgbpose.models.pyskl_import import published_model

REPO = Path(__file__).resolve().parents[1]
K = 60
SMALL = {  # small but every kind of module: strided / inflated blocks, projections, SE
    "stgcnpp": {"base_channels": 6, "num_stages": 4, "inflate_stages": [3], "down_stages": [3]},
    "stgcnpp_3d": {
        "layout": "ntu25", "base_channels": 6, "num_stages": 4, "inflate_stages": [3],
        "down_stages": [3],
    },
    "c3d_light": {"base_channels": 4},
    "x3d_shallow": {"base_channels": 8, "stage_blocks": [1, 2, 1], "se_ratio": 0.0625},
}  # fmt: skip
INPUTS = {  # name -> (input key, shape of one small batch)
    "stgcnpp": ("keypoint", (2, 2, 8, 17, 3)),
    "stgcnpp_3d": ("keypoint", (2, 2, 8, 25, 3)),
    "c3d_light": ("heatmap_imgs", (2, 17, 4, 16, 16)),
    "x3d_shallow": ("heatmap_imgs", (2, 17, 4, 16, 16)),
}


def to_pyskl(key: str) -> str:
    """Our key -> PYSKL's, written from PYSKL's STGCN / C3D / X3D module tree (the inverse of
    the import rules, kept independent of them)."""
    if key.startswith("head.fc."):
        return "cls_head.fc_cls." + key.removeprefix("head.fc.")
    key = re.sub(r"^backbone\.blocks\.(\d+)\.", r"backbone.gcn.\1.", key)
    key = re.sub(r"\.tcn\.branches\.(\d+)\.3\.(weight|bias)$", r".tcn.branches.\1.3.conv.\2", key)
    return key.replace(".residual.0.", ".residual.conv.").replace(".residual.1.", ".residual.bn.")


# (PYSKL / mmaction2 key, ours): names as PYSKL's STGCN(gcn_adaptive='init', gcn_with_res=True,
# tcn_type='mstcn') and GCNHead save them (pyskl/models/gcns/stgcn.py, utils/gcn.py, tcn.py)
STGCNPP_NAMES = [
    ("backbone.data_bn.running_var", "backbone.data_bn.running_var"),
    ("backbone.gcn.0.gcn.A", "backbone.blocks.0.gcn.A"),
    ("backbone.gcn.0.gcn.conv.weight", "backbone.blocks.0.gcn.conv.weight"),
    ("backbone.gcn.0.gcn.bn.num_batches_tracked", "backbone.blocks.0.gcn.bn.num_batches_tracked"),
    ("backbone.gcn.0.gcn.down.1.running_mean", "backbone.blocks.0.gcn.down.1.running_mean"),
    ("backbone.gcn.0.tcn.branches.0.3.conv.weight", "backbone.blocks.0.tcn.branches.0.3.weight"),
    ("backbone.gcn.3.tcn.branches.4.1.weight", "backbone.blocks.3.tcn.branches.4.1.weight"),
    ("backbone.gcn.4.gcn.down.0.bias", "backbone.blocks.4.gcn.down.0.bias"),
    ("backbone.gcn.4.residual.conv.weight", "backbone.blocks.4.residual.0.weight"),
    ("backbone.gcn.7.residual.bn.running_var", "backbone.blocks.7.residual.1.running_var"),
    ("backbone.gcn.9.tcn.branches.5.bias", "backbone.blocks.9.tcn.branches.5.bias"),
    ("backbone.gcn.9.tcn.transform.0.running_mean", "backbone.blocks.9.tcn.transform.0.running_mean"),
    ("backbone.gcn.9.tcn.transform.2.weight", "backbone.blocks.9.tcn.transform.2.weight"),
    ("backbone.gcn.9.tcn.bn.bias", "backbone.blocks.9.tcn.bn.bias"),
    ("cls_head.fc_cls.weight", "head.fc.weight"),  # PYSKL GCNHead (a SimpleHead)
    ("cls_head.fc.bias", "head.fc.bias"),  # mmaction2 1.x GCNHead
    ("module.backbone.gcn.1.gcn.A", None),  # import_pyskl strips "module." first, not the rule
    ("backbone.gcn.0.gcn.PA", None),  # ST-GCN's importance adjacency: no counterpart
    ("backbone.gcn.0.tcn.conv.weight", None),  # ST-GCN's single unit_tcn
    ("backbone.gcn.0.tcn.drop.weight", None),
    ("cls_head.fc_cls.extra.weight", None),
]  # fmt: skip
# C3D / X3D: PYSKL's ConvModule names (conv, bn) are ours; only the I3DHead moves
CNN_NAMES = [
    ("backbone.conv1a.conv.weight", "backbone.conv1a.conv.weight"),
    ("backbone.conv4b.bn.running_var", "backbone.conv4b.bn.running_var"),
    ("backbone.conv1_s.conv.weight", "backbone.conv1_s.conv.weight"),
    ("backbone.conv1_t.bn.num_batches_tracked", "backbone.conv1_t.bn.num_batches_tracked"),
    ("backbone.layer1.0.downsample.conv.weight", "backbone.layer1.0.downsample.conv.weight"),
    ("backbone.layer2.0.se_module.fc1.bias", "backbone.layer2.0.se_module.fc1.bias"),
    ("backbone.layer3.2.conv3.bn.weight", "backbone.layer3.2.conv3.bn.weight"),
    ("backbone.conv5.bn.bias", "backbone.conv5.bn.bias"),
    ("cls_head.fc_cls.weight", "head.fc.weight"),
    ("cls_head.fc.weight", None),
    ("data_preprocessor.mean", None),
]


@pytest.mark.parametrize(("theirs", "ours"), STGCNPP_NAMES)
def test_stgcnpp_literal_names(theirs, ours):
    assert stgcnpp_key(theirs) == ours
    if ours is not None and theirs.startswith(("backbone.", "cls_head.fc_cls.")):
        assert to_pyskl(ours) == theirs


@pytest.mark.parametrize(("theirs", "ours"), CNN_NAMES)
def test_c3d_x3d_literal_names(theirs, ours):
    assert plain_key(theirs) == ours
    assert PYSKL_KEY_RULES["c3d_light"] is PYSKL_KEY_RULES["x3d_shallow"] is plain_key


FULL_SIZE = {  # (model, overrides): (key count, {PYSKL key: shape}) of PYSKL's NTU-60 models
    ("stgcnpp", "coco17"): (692, {
        "backbone.data_bn.weight": (51,),
        "backbone.gcn.0.gcn.A": (3, 17, 17),
        "backbone.gcn.0.gcn.conv.weight": (192, 3, 1, 1),
        "backbone.gcn.0.tcn.branches.0.3.conv.weight": (14, 14, 3, 1),
        "backbone.gcn.0.tcn.branches.5.weight": (10, 64, 1, 1),
        "backbone.gcn.4.residual.conv.weight": (128, 64, 1, 1),
        "backbone.gcn.9.tcn.transform.2.weight": (256, 256, 1, 1),
        "cls_head.fc_cls.weight": (60, 256),
    }),
    ("stgcnpp", "ntu25"): (692, {
        "backbone.data_bn.running_mean": (75,),
        "backbone.gcn.9.gcn.A": (3, 25, 25),
    }),
    ("c3d_light", None): (38, {
        "backbone.conv1a.conv.weight": (32, 17, 3, 3, 3),
        "backbone.conv4b.conv.weight": (256, 256, 3, 3, 3),
        "cls_head.fc_cls.weight": (60, 256),
    }),
    ("x3d_shallow", None): (213, {
        "backbone.conv1_s.conv.weight": (24, 17, 1, 3, 3),
        "backbone.conv1_t.conv.weight": (24, 1, 5, 1, 1),
        "backbone.layer1.0.conv2.conv.weight": (54, 1, 3, 3, 3),
        "backbone.layer3.0.downsample.conv.weight": (96, 48, 1, 1, 1),
        "backbone.conv5.conv.weight": (216, 96, 1, 1, 1),
        "cls_head.fc_cls.weight": (60, 216),
    }),
}  # fmt: skip


@pytest.mark.parametrize(("name", "layout"), sorted(FULL_SIZE, key=str))
def test_full_size_names_and_shapes(name, layout):
    with torch.device("meta"):
        model = build_model(name, K, **({"layout": layout} if layout else {}))
    pyskl = {to_pyskl(k): v for k, v in model.state_dict().items()}
    count, shapes = FULL_SIZE[name, layout]
    assert len(pyskl) == count
    assert {k: tuple(pyskl[k].shape) for k in shapes} == shapes
    assert list(import_pyskl(pyskl, model)) == list(model.state_dict())


def _randomized(name: str, seed: int) -> nn.Module:
    """A small model with random weights, BN statistics and adjacency (no trivial identities)."""
    torch.manual_seed(seed)
    model = build_model(name.removesuffix("_3d"), K, **SMALL[name])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(p + 0.1 * noise if key.endswith(".A") else noise * (1.0 / p[0].numel()) ** 0.5)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(seed)
    return model.eval()


def _output(model: nn.Module, name: str) -> torch.Tensor:
    key, shape = INPUTS[name]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model(**{key: x})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_round_trip_gives_equal_weights_and_outputs(one_torch_thread, name):
    source = _randomized(name, 5)
    pyskl = {to_pyskl(k): v for k, v in source.state_dict().items()}
    target = build_model(name.removesuffix("_3d"), K, **SMALL[name]).eval()
    before = _output(target, name)
    converted = import_pyskl(pyskl, target)
    assert list(converted) == list(source.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(converted[key], value), key
    target.load_state_dict(converted, strict=True)
    expected = _output(source, name)
    assert not torch.allclose(before, expected)  # the import changed what it computes ...
    assert torch.equal(_output(target, name), expected)  # ... to the source's exactly


def test_mmaction2_gcn_head_and_ddp_prefix(one_torch_thread):
    source = _randomized("stgcnpp", 6)
    mm = {f"module.{to_pyskl(k)}".replace(".fc_cls.", ".fc."): v
          for k, v in source.state_dict().items()}  # fmt: skip
    assert "module.cls_head.fc.weight" in mm
    converted = import_pyskl(mm, build_model("stgcnpp", K, **SMALL["stgcnpp"]))
    assert torch.equal(converted["head.fc.weight"], source.head.fc.weight)


def test_strict_errors_name_the_keys():
    model = build_model("stgcnpp", K, **SMALL["stgcnpp"])
    pyskl = {to_pyskl(k): v for k, v in model.state_dict().items()}
    what = r"^import_pyskl \(PYSKL -> stgcnpp\): "
    missing = dict(pyskl)
    del missing["backbone.gcn.2.tcn.branches.1.3.conv.bias"]
    with pytest.raises(
        ValueError,
        match=what + r"missing target keys 1: backbone\.blocks\.2\.tcn\.branches\.1\.3\.bias$",
    ):
        import_pyskl(missing, model)
    pa = {**pyskl, "backbone.gcn.0.gcn.PA": torch.ones(3, 17, 17)}
    with pytest.raises(
        ValueError, match=what + r"unexpected source keys 1: backbone\.gcn\.0\.gcn\.PA$"
    ):
        import_pyskl(pa, model)
    both_heads = {**pyskl, "cls_head.fc.weight": pyskl["cls_head.fc_cls.weight"]}
    with pytest.raises(
        ValueError, match=r"target keys covered more than once 1: head\.fc\.weight <- "
        r"\['cls_head\.fc_cls\.weight', 'cls_head\.fc\.weight'\]",
    ):  # fmt: skip
        import_pyskl(both_heads, model)
    ntu = {to_pyskl(k): v for k, v in _randomized("stgcnpp_3d", 1).state_dict().items()}
    with pytest.raises(ValueError, match="shape mismatches") as info:
        import_pyskl(ntu, model)  # 3D NTU-25 weights into a 2D COCO-17 model
    assert "backbone.blocks.0.gcn.A (3, 17, 17) <- backbone.gcn.0.gcn.A (3, 25, 25)" in str(
        info.value
    )
    assert "backbone.data_bn.weight (51,) <- backbone.data_bn.weight (75,)" in str(info.value)
    c3d = build_model("c3d_light", K, **SMALL["c3d_light"])
    with pytest.raises(ValueError, match=r"^import_pyskl \(PYSKL -> c3d_light\): missing target"):
        import_pyskl({"cls_head.fc_cls.weight": torch.zeros(K, 32)}, c3d)
    with pytest.raises(ValueError, match=r"no PYSKL key rules for model 'infogcn' \(supported: "):
        import_pyskl(pyskl, build_model("infogcn", K, base_channels=16))


# --- the command line ------------------------------------------------------------------------------

PUBLISHED = [  # (folder/name as downloaded, model, recipe)
    ("stgcnpp_ntu60_xsub_hrnet/j.pth", "stgcnpp", "ntu_stgcnpp_j.yaml"),
    ("stgcnpp_ntu60_xview_hrnet/b.pth", "stgcnpp", "ntu_stgcnpp_b.yaml"),
    ("stgcnpp_ntu120_xsub_3dkp/jm.pth", "stgcnpp", "ntu_stgcnpp_jm.yaml"),
    ("stgcnpp_ntu60_xsub_3dkp/bm.pth", "stgcnpp", "ntu_stgcnpp_bm.yaml"),
    ("downloads/stgcn++_ntu60_xsub_hrnet_j.pth", "stgcnpp", "ntu_stgcnpp_j.yaml"),
    ("stgcnpp_8xb16-joint-motion-u100-80e_ntu60-xsub-keypoint-2d_20221228-86e1e77a.pth",
     "stgcnpp", "ntu_stgcnpp_jm.yaml"),
    ("stgcnpp_8xb16-bone-u100-80e_ntu60-xsub-keypoint-3d_20221228-cd11a691.pth", "stgcnpp",
     "ntu_stgcnpp_b.yaml"),
    ("c3d_light_ntu60_xsub/joint.pth", "c3d_light", "ntu_c3d_light_joint.yaml"),
    ("c3d_light_ntu60_xsub/limb.pth", "c3d_light", "ntu_c3d_light_limb.yaml"),
    ("x3d_shallow_ntu60_xsub/joint.pth", "x3d_shallow", "ntu_x3d_shallow_joint.yaml"),
    ("downloads/x3d_shallow_ntu60_xsub_limb.pth", "x3d_shallow", "ntu_x3d_shallow_limb.yaml"),
    ("slowonly_r50_ntu60_xsub/limb.pth", "posec3d", "ntu_posec3d_limb.yaml"),
    ("slowonly_r50_ntu60_xsub/joint.pth", "posec3d", "ntu_posec3d.yaml"),
]  # fmt: skip


@pytest.mark.parametrize(("rel", "model", "recipe"), PUBLISHED)
def test_published_skeleton_file_names(rel, model, recipe):
    assert published_model(Path("/data") / rel) == (model, recipe)


def test_other_gcn_names_are_not_guessed():
    for rel in ("stgcn_pyskl_ntu60_xsub_3dkp/j.pth", "aagcn_pyskl_ntu60_xsub_hrnet/b.pth",
                "downloads/j.pth", "stgcnppx/j.pth"):  # fmt: skip
        assert published_model(rel) is None, rel


def _save(path: Path, state: dict, layout: str = "mmcv") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "bare":
        torch.save(state, path)
    else:
        torch.save({"meta": {"epoch": 16, "mmcv_version": "1.5.0"}, "state_dict": state}, path)
    return path


def _pyskl_state(name: str, seed: int = 2) -> dict[str, torch.Tensor]:
    return {to_pyskl(k): v for k, v in _randomized(name, seed).state_dict().items()}


def _small_args(name: str) -> list[str]:
    overrides = {k: v for k, v in SMALL[name].items() if k != "layout"}
    return ["--overrides-json", json.dumps(overrides)]


IMPORTS = [  # (file below tmp, small model, recipe, the settings the weights imply)
    ("stgcnpp_ntu60_xsub_hrnet/j.pth", "stgcnpp", "ntu_stgcnpp_j.yaml", {}),
    ("stgcnpp_ntu60_xsub_3dkp/bm.pth", "stgcnpp_3d", "ntu_stgcnpp_bm.yaml",
     {"model.overrides.layout": "ntu25", "data.keypoints": "3d"}),
    ("downloads/limb.pth", "c3d_light", "ntu_c3d_light_limb.yaml", {}),  # the weights say C3D
    ("x3d_shallow_ntu60_xsub/joint.pth", "x3d_shallow", "ntu_x3d_shallow_joint.yaml", {}),
]  # fmt: skip


@pytest.mark.parametrize(("rel", "name", "recipe", "implied"), IMPORTS)
def test_cli_imports_usable_checkpoints(one_torch_thread, tmp_path, capsys, rel, name, recipe,
                                        implied):  # fmt: skip
    from rgbpose.engine.config import load_run_config  # noqa: PLC0415

    source = _randomized(name, 4)
    path = _save(tmp_path / rel, {to_pyskl(k): v for k, v in source.state_dict().items()})
    out = tmp_path / "imported.pt"
    # No --model, --config or --num-classes: the weights, the file name and the head say them.
    assert main(["import-pyskl", str(path), *_small_args(name), "-o", str(out)]) == 0
    model_name = name.removesuffix("_3d")
    with_sets = " with " + " ".join(f"{k}={v}" for k, v in implied.items()) if implied else ""
    assert capsys.readouterr().out == (
        f"rgbpose import-pyskl: {out}: {model_name}, 60 classes (ntu60), run config "
        f"{REPO / 'config/models' / recipe}{with_sets}\n"
    )
    model, cfg = model_from_checkpoint(out)  # what rgbpose test / predict do with it
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert torch.equal(_output(model.eval(), name), _output(source, name))
    recipe_cfg = load_run_config(REPO / "config/models" / recipe, implied)
    assert cfg.data == recipe_cfg.data and cfg.test == recipe_cfg.test
    assert (cfg.model.name, cfg.num_classes) == (model_name, K)
    assert cfg.model.overrides == {**recipe_cfg.model.overrides, **SMALL[name]}
    meta = torch.load(out, weights_only=True)["meta"]
    assert (meta["config_sets"], meta["dataset"], meta["imported_from"]) == (implied, "ntu60",
                                                                             str(path))  # fmt: skip
    assert meta.get("benchmark") == ("xsub" if "xsub" in rel else None)
    assert meta["source_meta"] == {"epoch": 16, "mmcv_version": "1.5.0"}
    assert meta["ignored_entries"] == []


def test_cli_3d_stgcnpp_with_model_flag_and_user_sets(one_torch_thread, tmp_path, capsys):
    """A bare mmaction2-style file whose name says nothing: --model picks the recipe, the
    25-joint graph the 3D settings, and --set still wins over them."""
    state = {k.replace("cls_head.fc_cls.", "cls_head.fc."): v
             for k, v in _pyskl_state("stgcnpp_3d").items()}  # fmt: skip
    path = _save(tmp_path / "best.pth", state, "bare")
    out = tmp_path / "o.pt"
    argv = ["import-pyskl", str(path), "--model", "stgcnpp", *_small_args("stgcnpp_3d"),
            "--set", "data.feature=b", "test.num_clips=2", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    _, cfg = model_from_checkpoint(out)
    assert (cfg.model.overrides["layout"], cfg.data.keypoints) == ("ntu25", "3d")
    assert (cfg.data.feature, cfg.test.num_clips) == ("b", 2)


def test_cli_errors_name_the_file_and_the_key(tmp_path, capsys):
    def run(path: Path, *extra: str) -> str:
        out = tmp_path / "o.pt"
        assert main(["import-pyskl", str(path), *extra, "-o", str(out)]) == 1
        assert not out.exists()
        return capsys.readouterr().err

    # C3D weights for a posec3d run config: the family, named before any key listing.
    c3d = _save(tmp_path / "c3d_light_ntu60_xsub/joint.pth", _pyskl_state("c3d_light"))
    assert run(c3d, "--model", "posec3d") == (
        f"rgbpose import-pyskl: error: {c3d}: holds c3d_light weights "
        "(backbone.conv1a.conv.weight), not 'posec3d' ones\n"
    )
    cfg = REPO / "config/models/ntu_x3d_shallow_limb.yaml"
    assert (
        f"{c3d}: holds c3d_light weights (backbone.conv1a.conv.weight), not 'x3d_shallow'"
        in run(c3d, "--config", str(cfg))
    )
    # PYSKL's ST-GCN (importance adjacency PA): another GCN, whatever the file is called.
    stgcn = _pyskl_state("stgcnpp")
    stgcn["backbone.gcn.0.gcn.PA"] = torch.ones(3, 17, 17)
    vanilla = _save(tmp_path / "stgcn_pyskl_ntu60_xsub_hrnet/j.pth", stgcn)
    assert (
        f"{vanilla}: GCN weights that are not ST-GCN++'s (e.g. backbone.gcn.0.gcn.PA): rgbpose "
        "imports ST-GCN++ (gcn_adaptive 'init', mstcn) only"
    ) in run(vanilla, "--model", "stgcnpp")
    # A key missing: the file and our key.
    state = _pyskl_state("stgcnpp")
    del state["backbone.gcn.3.gcn.bn.running_mean"]
    broken = _save(tmp_path / "stgcnpp_ntu60_xsub_hrnet/j.pth", state)
    assert run(broken, *_small_args("stgcnpp")) == (
        f"rgbpose import-pyskl: error: {broken}: import_pyskl (PYSKL -> stgcnpp): missing target "
        "keys 1: backbone.blocks.3.gcn.bn.running_mean\n"
    )
    # A shape mismatch: a full-size run config for small weights names both keys and shapes.
    err = run(_save(tmp_path / "stgcnpp_ntu60_xsub_hrnet/b.pth", _pyskl_state("stgcnpp")))
    assert "shape mismatches" in err
    assert "backbone.blocks.0.gcn.conv.weight (192, 3, 1, 1) <- backbone.gcn.0.gcn.conv.weight " \
        "(18, 3, 1, 1)" in err  # fmt: skip
    # An 18-joint (OpenPose) graph: no layout of ours.
    openpose = {k: (torch.ones(3, 18, 18) if k.endswith(".gcn.A") else v)
                for k, v in _pyskl_state("stgcnpp").items()}  # fmt: skip
    path = _save(tmp_path / "openpose/j.pth", openpose)
    assert f"{path}: backbone.gcn.0.gcn.A (3, 18, 18): a graph of 18 joints; rgbpose's ST-GCN++ " \
        "layouts have [17, 25]" in run(path)  # fmt: skip
    # Not a checkpoint at all.
    garbage = tmp_path / "stgcnpp_ntu60_xsub_3dkp/jm.pth"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a checkpoint")
    assert f"{garbage}: not a readable torch checkpoint" in run(garbage)


def test_imported_stgcnpp_runs_rgbpose_test(one_torch_thread, tmp_path):
    path = _save(tmp_path / "stgcnpp_ntu60_xsub_hrnet/j.pth", _pyskl_state("stgcnpp"))
    ckpt = tmp_path / "j.pt"
    assert main(["import-pyskl", str(path), *_small_args("stgcnpp"), "-o", str(ckpt)]) == 0
    rng = np.random.default_rng(0)
    annos = [
        {"frame_dir": name, "label": label, "img_shape": (96, 160), "original_shape": (96, 160),
         "total_frames": 12, "keypoint": rng.uniform(20, 80, (1, 12, 17, 2)).astype(np.float32),
         "keypoint_score": np.full((1, 12, 17), 0.9, np.float32)}
        for name, label in (("S001C001P001R001A008", 7), ("S001C001P001R001A010", 9))
    ]  # fmt: skip
    ann = tmp_path / "ann.pkl"
    dump_pickle({"split": {"xsub_val": [a["frame_dir"] for a in annos]}, "annotations": annos}, ann)
    scores = tmp_path / "scores.pkl"
    argv = ["test", "--config", str(REPO / "config/models/ntu_stgcnpp_j.yaml"),
            "--set", "data.clip_len=8", "--checkpoint", str(ckpt), "--ann", str(ann),
            "--split", "xsub_val", "--num-clips", "1", "--num-workers", "0", "--device", "cpu",
            "--out", str(scores)]  # fmt: skip
    assert main(argv) == 0
    probs = load_pickle(scores)["probs"]["stgcnpp"]
    assert probs.shape == (2, K) and np.allclose(probs.sum(1), 1, atol=1e-5)
