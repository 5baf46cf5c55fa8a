"""ST-GCN++ (rgbpose.models.stgcn) and its graphs (rgbpose.models.graph): PYSKL's edge lists,
the 'spatial' partition, parameter counts and shapes, a training step, and the run configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rgbpose.models import build_model, count_parameters, get_entry
from rgbpose.models.graph import inward_edges, spatial_partition
from rgbpose.models.stgcn import GCNRecognizer, STGCNPlusPlus

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["ntu_stgcnpp_j", "ntu_stgcnpp_b", "ntu_stgcnpp_jm", "ntu_stgcnpp_bm",
           "demo_stgcnpp_j", "demo_stgcnpp_b"]  # fmt: skip

# PYSKL pyskl/utils/graph.py inward edges (child, parent): 'coco' (0-based) and 'nturgb+d'
# (1-based there; here minus one)
PYSKL_COCO = {(15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8),
              (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)}  # fmt: skip
PYSKL_NTU = {(i - 1, j - 1) for i, j in (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 8), (23, 8), (24, 12), (25, 12))}  # fmt: skip


def test_the_layout_trees_oriented_to_the_centre_are_pyskls_graphs():
    assert set(inward_edges("coco17")) == PYSKL_COCO
    assert set(inward_edges("ntu25")) == PYSKL_NTU
    # another centre re-orients the same tree
    assert set(inward_edges("ntu25", center=1)) != PYSKL_NTU
    assert {frozenset(e) for e in inward_edges("ntu25", center=1)} == {
        frozenset(e) for e in PYSKL_NTU
    }


def test_spatial_partition_identity_parent_and_children_means():
    a = spatial_partition("ntu25")
    assert a.shape == (3, 25, 25) and a.dtype == np.float32
    assert np.array_equal(a[0], np.eye(25))
    # In: every joint receives its parent's feature (column w: the joint that feeds w)
    assert a[1][2, 3] == 1 and a[1][:, 3].sum() == 1  # Head <- Neck
    assert not a[1][:, 20].any()  # the centre has no parent
    # Out: SpineShoulder receives the mean of its children SpineMid, Neck, both shoulders
    assert np.allclose(np.flatnonzero(a[2][:, 20]), [1, 2, 4, 8])
    assert np.allclose(a[2][[1, 2, 4, 8], 20], 0.25)
    assert not a[2][:, 3].any()  # Head: a leaf
    coco = spatial_partition("coco17")
    assert coco.shape == (3, 17, 17)
    assert np.allclose(coco[2][[1, 2, 5, 6], 0], 0.25)  # nose <- eyes and shoulders


@pytest.mark.parametrize(
    ("layout", "joints", "backbone", "total"),
    [("coco17", 17, 1_377_596, 1_393_016), ("ntu25", 25, 1_387_724, 1_403_144)],
)
def test_parameter_counts_and_shapes(one_torch_thread, layout, joints, backbone, total):
    model = build_model("stgcnpp", 60, layout=layout)
    assert isinstance(model, GCNRecognizer) and isinstance(model.backbone, STGCNPlusPlus)
    assert count_parameters(model.backbone) == backbone
    assert count_parameters(model) == total
    # the learnable adjacency (3 x V x V per block, 10 blocks) is counted
    adjacency = [p for n, p in model.named_parameters() if n.endswith(".A")]
    assert len(adjacency) == 10 and all(p.shape == (3, joints, joints) for p in adjacency)
    model.eval()
    x = torch.randn(2, 2, 100, joints, 3)
    with torch.no_grad():
        feat = model.forward_features(x)
        assert feat.shape == (2, 2, 256, 25, joints)
        assert model(keypoint=x).shape == (2, 60)
        assert torch.allclose(model.forward_head(feat), model(x))


def test_a_training_step_reaches_every_parameter(one_torch_thread):
    torch.manual_seed(0)
    model = build_model("stgcnpp", 5, layout="coco17", base_channels=8)
    x, labels = torch.randn(4, 2, 16, 17, 3), torch.tensor([0, 1, 2, 3])
    loss = model.loss(model(keypoint=x), labels)
    assert torch.isfinite(loss) and abs(loss.item() - np.log(5)) < 0.1  # head N(0, 0.01)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    blocks = model.backbone.blocks
    assert blocks[0].residual is None and isinstance(blocks[1].residual, torch.nn.Identity)
    assert blocks[4].residual is not None and blocks[4].tcn.branches[5].stride == (2, 1)


def test_options_contract_and_wrong_inputs(one_torch_thread):
    contract = get_entry("stgcnpp").contract({})
    (inp,) = contract.inputs
    assert (inp.key, inp.shape, inp.channels, contract.heads) == (
        "keypoint", "M,T,V,C", 3, ("stgcnpp",),
    )  # fmt: skip
    assert get_entry("stgcnpp").contract({"in_channels": 6}).inputs[0].channels == 6
    mvc = build_model("stgcnpp", 3, data_bn="MVC", base_channels=8)
    assert mvc.backbone.data_bn.num_features == 2 * 17 * 3
    assert build_model("stgcnpp", 3, data_bn="none", base_channels=8)(
        torch.zeros(1, 2, 8, 17, 3)
    ).shape == (1, 3)
    with pytest.raises(ValueError, match="base_channels"):
        build_model("stgcnpp", 3, base_channels=5)
    with pytest.raises(ValueError, match="data_bn"):
        build_model("stgcnpp", 3, data_bn="MV")
    with pytest.raises(ValueError, match="layout"):
        build_model("stgcnpp", 3, layout="openpose")
    with pytest.raises(ValueError, match="unknown override"):
        build_model("stgcnpp", 3, graph="spatial")
    model = build_model("stgcnpp", 3, layout="ntu25", base_channels=8)
    assert model.spec["overrides"] == {"layout": "ntu25", "base_channels": 8}
    with pytest.raises(ValueError, match="ntu25"):
        model(keypoint=torch.zeros(1, 2, 8, 17, 3))
    with pytest.raises(TypeError, match="keypoint"):
        model(imgs=torch.zeros(1, 2, 8, 25, 3))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_run_config_loads_and_fits_its_data(name):
    from rgbpose.engine.config import check_model_data, load_run_config

    path = REPO / f"config/models/{name}.yaml"
    cfg = load_run_config(path)
    check_model_data(cfg, str(path), "coco17")
    assert cfg.model.name == "stgcnpp" and cfg.data.modality == "skeleton"
    assert cfg.data.feature == name.rsplit("_", 1)[1]
    if name.startswith("ntu"):  # PYSKL's ST-GCN++ recipe
        assert (cfg.data.clip_len, cfg.test.num_clips, cfg.batch_size) == (100, 10, 16)
        assert (cfg.optim.lr, cfg.optim.base_batch, cfg.optim.weight_decay) == (0.1, 128, 5e-4)
        assert cfg.optim.nesterov and cfg.optim.grad_clip is None
        assert (cfg.schedule.kind, cfg.schedule.epochs * cfg.schedule.repeat) == ("cosine", 80)
        assert cfg.model.overrides == {"layout": "coco17"}
