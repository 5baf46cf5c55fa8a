"""InfoGCN: the k-mode matrix, the information-bottleneck loss, the network's size and shapes,
its own data pipeline (hand-computed translation / alignment / crop values), its run configs and
a train -> test -> fuse run through the CLIs (REFERENCE_SEEDS 1.1-1.6)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rgbpose.data import infogcn as pipe
from rgbpose.data.config import TestViews, pipeline_entry
from rgbpose.io import BadSampleError
from rgbpose.layouts import NTU25
from rgbpose.models import build_model, count_parameters, model_contract
from rgbpose.models.infogcn import INFOGCN_PARENTS, InfoGCNOutput, k_mode_matrix, parent_matrix
from rgbpose.models.infogcn_loss import class_prior, information_bottleneck_loss

REPO = Path(__file__).resolve().parents[1]
STREAMS = [f"ntu_infogcn_k{k}_{s}" for k in (1, 2, 8) for s in ("pos", "mot")]


# ----------------------------------------------------------------------------- k-mode input
def test_tree_is_infogcns_spine_mid_rooted_tree():
    # graph/ntu_rgb_d.py's (parent, child) list, 1-based: the hands chain hand -> thumb -> tip.
    edges = [(2, 1), (2, 21), (21, 3), (3, 4), (21, 5), (5, 6), (6, 7), (7, 8), (8, 23),
             (23, 22), (21, 9), (9, 10), (10, 11), (11, 12), (12, 25), (25, 24), (1, 13),
             (13, 14), (14, 15), (15, 16), (1, 17), (17, 18), (18, 19), (19, 20)]  # fmt: skip
    expected = np.zeros((25, 25))
    for parent, child in edges:
        expected[child - 1, parent - 1] = 1
    assert np.array_equal(parent_matrix(), expected)
    # The ntu25 layout's tree differs only there (both tips hang off the hand in the layout).
    assert [v for v in range(25) if INFOGCN_PARENTS[v] != NTU25.parents[v]] == [21, 23]


def test_k_mode_nnz_and_values():
    p = parent_matrix()
    nnz = [int(np.count_nonzero(np.linalg.matrix_power(p, k))) for k in range(1, 9)]
    assert nnz == [24, 22, 17, 12, 8, 4, 2, 0]
    x = torch.arange(25 * 3, dtype=torch.float32).view(25, 3) ** 1.5
    m1, m2, m8 = k_mode_matrix(1), k_mode_matrix(2), k_mode_matrix(8)
    assert m1.dtype == torch.float32
    # k = 1: bones (left elbow 5 minus left shoulder 4); the root SpineMid keeps its position.
    assert torch.allclose((m1 @ x)[5], x[5] - x[4]) and torch.equal((m1 @ x)[1], x[1])
    # k = 2: left hand tip 21 -> thumb 22 -> hand 7; SpineBase 0 has one ancestor: absolute.
    assert torch.allclose((m2 @ x)[21], x[21] - x[7]) and torch.equal((m2 @ x)[0], x[0])
    assert torch.equal(m8, torch.eye(25))  # depth 7: k >= 8 is the joint modality
    for bad in (0, -1, True, 1.0):
        with pytest.raises(ValueError, match="k must be"):
            k_mode_matrix(bad)
    with pytest.raises(ValueError, match="k must be"):
        build_model("infogcn", 60, k=0)


# ----------------------------------------------------------------------------- IB loss
def test_information_bottleneck_loss_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # p = (3/4, 1/4) and (1/2, 1/2)
    z = torch.tensor([[1.0, 2.0], [3.0, -2.0]])
    prior = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    # Label-smoothed CE (eps 0.1): 0.9 * (-log p_y) + 0.1 * mean_c(-log p_c), batch mean.
    ce0 = 0.9 * -math.log(0.75) + 0.1 * (-math.log(0.75) - math.log(0.25)) / 2
    ce1 = math.log(2.0)
    # Labels (0, 1): class means are the samples; (1-3)^2 + (2-0)^2 + (3-0)^2 + (-2-3)^2 = 42
    # over 2 classes x 2 dims; the batch-mean z is (2, 0), norm 2.
    expected = (ce0 + ce1) / 2 + 0.1 * 42 / 4 + 1e-4 * 2
    loss = information_bottleneck_loss(logits, z, torch.tensor([0, 1]), prior)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # Labels (0, 0): one class present, its mean (2, 0) vs (3, 0): (1 + 0) / 2.
    expected = (0.9 * -math.log(0.75) + 0.1 * (-math.log(0.75) - math.log(0.25)) / 2
                + 0.9 * math.log(2.0) + 0.1 * math.log(2.0)) / 2 + 0.1 * 0.5 + 1e-4 * 2  # fmt: skip
    loss = information_bottleneck_loss(logits, z, torch.tensor([0, 0]), prior)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_class_prior_is_orthogonal_with_gain_and_seeded():
    prior = class_prior(60, 256, 3.0, seed=1)
    assert prior.shape == (60, 256) and prior.dtype == torch.float32
    assert torch.allclose(prior @ prior.T, 9 * torch.eye(60), atol=1e-4)
    assert torch.equal(prior, class_prior(60, 256, 3.0, seed=1))
    assert not torch.equal(prior, class_prior(60, 256, 3.0, seed=2))
    with pytest.raises(ValueError, match="num_classes <= latent dim"):
        class_prior(120, 64, 3.0, seed=1)


def test_prior_is_saved_in_the_checkpoint_and_k_mode_is_not():
    torch.manual_seed(0)
    a = build_model("infogcn", 5, base_channels=8, prior_seed=1)
    b = build_model("infogcn", 5, base_channels=8, prior_seed=2)
    state = a.state_dict()
    assert "objective.prior" in state and not any("k_mode" in key for key in state)
    b.load_state_dict(state, strict=True)
    assert torch.equal(b.objective.prior, a.objective.prior)  # test scores against train's prior


# ----------------------------------------------------------------------------- network
def test_param_count_and_shapes_of_the_ntu60_model():
    torch.manual_seed(0)
    model = build_model("infogcn", num_classes=60, layout="ntu25", k=1).eval()
    assert count_parameters(model) == 1_556_807  # trainable; the prior is a buffer
    assert count_parameters(model.backbone) + count_parameters(model.head) == 1_556_807
    x_ref = torch.randn(2, 3, 64, 25, 2)  # the reference's [N, C, T, V, M]
    x = x_ref.permute(0, 4, 2, 3, 1)  # ours: [N, M, T, V, C]
    with torch.no_grad():
        feats = model.forward_features(x)
        out = model(x)
    assert feats.shape == (2, 2, 256, 16, 25)
    assert isinstance(out, InfoGCNOutput)
    assert out.logits.shape == (2, 60) and out.z.shape == (2, 256)
    contract = model_contract(model)
    assert contract.input_keys == ("keypoint",) and contract.inputs[0].channels == 3
    assert contract.heads == ("infogcn",)


def test_latent_is_mu_in_eval_and_sampled_in_training():
    torch.manual_seed(0)
    model = build_model("infogcn", 5, base_channels=8)
    x = torch.randn(3, 2, 12, 25, 3)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
        model.train()
        c = model(x)
    assert torch.equal(a.z, b.z) and torch.equal(a.logits, b.logits)
    assert not torch.allclose(a.z, c.z)


def test_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_model("infogcn", 5, base_channels=8, k=2).train()
    out = model(torch.randn(4, 2, 12, 25, 3))
    loss = model.loss(out, torch.tensor([0, 1, 1, 4]))
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match=r"M=2, T, V=25, C=3"):
        model(torch.randn(1, 1, 12, 25, 3))
    with pytest.raises(ValueError, match="layout must be 'ntu25'"):
        build_model("infogcn", 5, layout="coco17")


# ----------------------------------------------------------------------------- pipeline
def _toy_person() -> np.ndarray:
    """[T=3, 25, 3]: frame 0 has SpineMid (1, 1, 1), SpineBase (1, 0, 1) (spine along +y), hips
    at x = 1.5 (left) / 0.5 (right) and the head at (1, 2, 1.5); frame 1 is frame 0 moved by
    (0, 0, 2); frame 2 is frame 0 moved by (1, 0, 0).  Other joints sit on SpineMid."""
    f0 = np.tile(np.float32([1, 1, 1]), (25, 1))
    f0[0], f0[12], f0[16], f0[3] = (1, 0, 1), (1.5, 0, 1), (0.5, 0, 1), (1, 2, 1.5)
    return np.stack([f0, f0 + [0, 0, 2], f0 + [1, 0, 0]]).astype(np.float32)


def test_translation_and_alignment_by_hand():
    person = _toy_person()
    kp = np.zeros((2, 4, 25, 3), np.float32)
    kp[0, 1:] = person  # frame 0 lists nobody: dropped
    kp[1, 1:] = person + [0, 0, 1]  # a second person, in every frame
    x = pipe.prepare_skeleton(kp)
    assert x.shape == (2, 3, 25, 3) and x.dtype == np.float32
    # Origin: person 0's SpineMid in its first frame, (1, 1, 1).  Axes: v1 = spine = +y,
    # v2 = hips = +x, v3 = v2 x v1 = +z, so R^-1 (x, y, z) = (x, z, y).
    p0 = x[0]
    assert np.allclose(p0[0, 1], 0) and np.allclose(p0[0, 0], [0, 0, -1])  # SpineMid, SpineBase
    assert np.allclose(p0[0, 12], [0.5, 0, -1]) and np.allclose(p0[0, 3], [0, 0.5, 1])  # hip, head
    assert np.allclose(p0[1, 1], [0, 2, 0])  # moved +2 along z -> the second axis
    assert np.allclose(p0[2, 1], [1, 0, 0])
    # Person 1: same axes, translated by person 0's origin: its SpineMid (1, 1, 2) -> (0, 1, 0).
    assert np.allclose(x[1, 0, 1], [0, 1, 0]) and np.allclose(x[1, 1, 1], [0, 3, 0])


def test_alignment_quirk_zeroes_a_person_absent_from_frame_0():
    kp = np.zeros((2, 3, 25, 3), np.float32)
    kp[0] = _toy_person()
    kp[1, 1:] = _toy_person()[1:]  # enters at frame 1: zero spine vector in frame 0
    x = pipe.prepare_skeleton(kp)
    assert np.abs(x[0]).sum() > 0 and not x[1].any()  # the reference leaves it all zero
    # A hip axis parallel to the spine has no rotation: translated only (not NaN).
    flat = _toy_person()
    flat[0, 12], flat[0, 16] = (1, 0.5, 1), (1, 0, 1)
    x = pipe.prepare_skeleton(flat[None])
    assert np.allclose(x[0, 0, 3], [0, 1, 0.5])


def test_single_actor_slot_2_zero_or_duplicated():
    one = _toy_person()[None]
    assert not pipe.prepare_skeleton(one)[1].any()
    dup = pipe.prepare_skeleton(one, duplicate_single=True)
    assert np.array_equal(dup[0], dup[1])


def test_crop_resize_by_hand():
    ramp = np.broadcast_to(np.arange(1, 41, dtype=np.float32)[None, :, None, None], (2, 40, 25, 3))
    ramp = np.concatenate([ramp, np.zeros((2, 10, 25, 3), np.float32)], axis=1)  # padding
    cfg = pipe.InfoGCNConfig(window=19, test_crop=0.95)
    # Frame t holds t + 1.  valid 40, bias int(0.05 * 40 / 2) = 1: frames 1..38 (38 frames)
    # -> 19 samples at clip position 2i + 0.5 (half-pixel centres) = frame 2i + 1.5: 2i + 2.5.
    out = pipe.crop_resize(ramp, cfg, None)
    assert out.shape == (2, 19, 25, 3)
    assert np.allclose(out[0, :, 0, 0], 2 * np.arange(19) + 2.5)
    # Train: a crop of floor(40 p) >= 20 frames (p >= 0.5; min_crop_len 4 does not bind) at a
    # random offset, inside the 40 valid frames: a ramp of slope length / 19.
    cfg = pipe.InfoGCNConfig(window=19, min_crop_len=4)
    for seed in range(5):
        seq = pipe.crop_resize(ramp, cfg, np.random.default_rng(seed))[0, :, 0, 0]
        slope = np.diff(seq)[1:-1]
        assert seq.min() >= 1 and seq.max() <= 40 and 20 / 19 - 1e-4 <= slope.min()
        assert np.allclose(slope, slope[0], atol=1e-4)
    # The NTU recipe's lower bound 64 takes the whole 40 valid frames.
    seq = pipe.crop_resize(ramp, pipe.InfoGCNConfig(window=40), np.random.default_rng(0))
    assert np.allclose(seq[0, :, 0, 0], np.arange(1, 41))
    assert not pipe.crop_resize(np.zeros((2, 5, 25, 3), np.float32), cfg, None).any()


def test_resize_time_is_torch_linear_interpolation():
    rng = np.random.default_rng(0)
    for t, w in ((40, 64), (300, 64), (7, 5), (64, 64)):
        x = rng.normal(size=(2, t, 25, 3)).astype(np.float32)
        flat = torch.from_numpy(x).permute(0, 2, 3, 1).reshape(1, -1, t)
        ref = torch.nn.functional.interpolate(flat, size=w, mode="linear", align_corners=False)
        ref = ref.reshape(2, 25, 3, w).permute(0, 3, 1, 2).numpy()
        assert np.allclose(pipe.resize_time(x, w), ref, atol=1e-5)


def test_rotation_and_motion():
    c, s = math.cos(0.2), math.sin(0.2)
    assert np.allclose(pipe.rotation_matrix(0, 0, 0.2), [[c, s, 0], [-s, c, 0], [0, 0, 1]])
    assert np.allclose(pipe.rotation_matrix(0.2, 0, 0), [[1, 0, 0], [0, c, s], [0, -s, c]])
    r = pipe.rotation_matrix(0.1, -0.2, 0.3)
    assert np.allclose(r, pipe.rotation_matrix(0, 0, 0.3) @ pipe.rotation_matrix(0, -0.2, 0)
                       @ pipe.rotation_matrix(0.1, 0, 0), atol=1e-6)  # fmt: skip
    x = np.arange(2 * 4 * 25 * 3, dtype=np.float32).reshape(2, 4, 25, 3) ** 2
    v = pipe.motion(x)
    assert np.array_equal(v[:, :3], x[:, 1:] - x[:, :3]) and not v[:, 3].any()


def _annotation(name: str, label: int, kp3d: np.ndarray) -> dict:
    return {"frame_dir": name, "label": label, "total_frames": kp3d.shape[1],
            "img_shape": (90, 160), "layout": "ntu25", "keypoint3d": kp3d.astype(np.float16)}  # fmt: skip


def test_dataset_items_views_and_hash():
    kp = np.repeat(_toy_person(), 4, axis=0)[None]  # 12 frames
    annos = [_annotation("S001C001P001R001A001", 0, kp)]
    cfg = pipe.InfoGCNConfig(window=8, min_crop_len=4)
    ds_cls = pipeline_entry("infogcn").dataset_cls()
    assert ds_cls is pipe.InfoGCNDataset and pipeline_entry("infogcn").config_cls is type(cfg)
    val = pipe.InfoGCNDataset(cfg, annos, "val", source="a.pkl")
    item = val[0]
    assert item["keypoint"].shape == (1, 2, 8, 25, 3) and item["keypoint"].dtype == torch.float32
    assert (item["label"], item["frame_dir"]) == (0, "S001C001P001R001A001")
    assert torch.equal(item["keypoint"], val[0]["keypoint"])  # deterministic
    train = pipe.InfoGCNDataset(cfg, annos, "train", source="a.pkl")
    torch.manual_seed(1)
    a = train[0]["keypoint"]
    torch.manual_seed(2)
    assert not torch.equal(a, train[0]["keypoint"])  # rotation and crop differ per seed
    mot = pipe.InfoGCNDataset(pipe.InfoGCNConfig(window=8, motion=True), annos, "val")
    assert not mot[0]["keypoint"][0, :, -1].any()
    with pytest.raises(ValueError, match="one test view"):
        pipe.InfoGCNDataset(cfg, annos, "test", views=TestViews(num_clips=2))
    other = [_annotation("S001C001P001R001A001", 0, kp + 1)]
    assert val.content_hash() != pipe.InfoGCNDataset(cfg, other, "val").content_hash()
    bad = [*annos, {**annos[0], "frame_dir": "x"}]
    del bad[1]["keypoint3d"]
    with pytest.raises(BadSampleError, match="sample x: annotation has no 'keypoint3d'"):
        pipe.InfoGCNDataset(cfg, bad, "val", source="a.pkl")


def test_config_validation():
    with pytest.raises(ValueError, match="train_crop"):
        pipe.InfoGCNConfig(train_crop=(0.0, 1.0))
    with pytest.raises(ValueError, match="window must be a positive integer"):
        pipe.InfoGCNConfig(window=0)
    (out,) = pipe.InfoGCNConfig(window=32).outputs("coco17")
    assert (out.key, out.channels, out.clip_len) == ("keypoint", 3, 32)


# ----------------------------------------------------------------------------- run configs
def test_run_configs_load_and_fit_the_model():
    from rgbpose.engine.config import check_model_data, load_run_config

    cfgs = {}
    for name in [*STREAMS, "demo_infogcn", "demo_infogcn_motion"]:
        path = REPO / f"config/models/{name}.yaml"
        cfg = cfgs[name] = load_run_config(path)
        check_model_data(cfg, str(path), "ntu25")
        assert cfg.model.name == "infogcn" and cfg.data.modality == "infogcn"
    base = cfgs["ntu_infogcn_k1_pos"].to_dict()
    for name in STREAMS:  # the 6 streams differ only in k and position / motion
        k, motion = int(name.split("_k")[1][0]), name.endswith("mot")
        d = cfgs[name].to_dict()
        assert d["model"]["overrides"] == {**base["model"]["overrides"], "k": k}
        assert d["data"] == {**base["data"], "motion": motion}
        assert {**d, "model": None, "data": None} == {**base, "model": None, "data": None}
    ref = cfgs["ntu_infogcn_k1_pos"]
    assert (ref.optim.lr, ref.optim.base_batch, ref.optim.nesterov) == (0.1, 128, True)
    assert (ref.optim.weight_decay, ref.schedule.kind, ref.schedule.epochs) == (5e-4, "step", 110)
    assert (ref.schedule.milestones, ref.schedule.warmup_epochs) == ((90, 100), 5.0)
    o = ref.model.overrides
    assert (o["label_smoothing"], o["lambda_1"], o["lambda_2"], o["prior_gain"]) == (
        0.1, 1e-4, 0.1, 3.0,
    )  # fmt: skip
    demo, demo_mot = cfgs["demo_infogcn"].to_dict(), cfgs["demo_infogcn_motion"].to_dict()
    assert demo_mot == {**demo, "data": {**demo["data"], "motion": True}}


# ----------------------------------------------------------------------------- CLIs
def test_infogcn_trains_tests_and_fuses_through_the_clis(tmp_path):
    """Train 1 epoch and test a tiny InfoGCN on 3D joints through the CLIs the workflow runs,
    then fuse its logits with InfoGCN's position weight."""
    from rgbpose.engine import evaluate, fusion, train
    from rgbpose.io import dump_pickle, load_pickle

    rng = np.random.default_rng(0)
    annos, split = [], {"xsub_train": [], "xsub_val": []}
    for i in range(8):
        label, performer = i % 2, 1 + i // 4
        name = f"S001C001P{performer:03d}R00{1 + i % 4 // 2}A{1 + label:03d}"
        kp = _toy_person()[np.arange(12) % 3][None] + rng.normal(0, 0.01, (1, 12, 25, 3))
        kp[..., 3, 0] += 0.5 * label  # class 1 leans its head to one side
        annos.append(_annotation(name, label, kp))
        split["xsub_train" if performer == 1 else "xsub_val"].append(name)
    ann = tmp_path / "ann.pkl"
    dump_pickle({"split": split, "annotations": annos}, ann)
    cfg = tmp_path / "infogcn.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"name": "infogcn", "overrides": {"k": 1, "base_channels": 8}},
        "data": {"modality": "infogcn", "window": 8, "min_crop_len": 4},
        "optim": {"lr": 0.05, "base_batch": 4, "nesterov": True, "grad_clip": None},
        "schedule": {"kind": "step", "epochs": 1, "milestones": [1], "warmup_epochs": 0.5},
        "batch_size": 2, "num_workers": 0,
    }))  # fmt: skip

    def run(cli, *args) -> None:
        assert cli([str(a) for a in ("--config", cfg, "--ann", ann, *args)]) == 0

    best, scores, out = tmp_path / "best.pt", tmp_path / "scores.pkl", tmp_path / "fusion.json"
    run(train.cli, "--split", "xsub", "--num-classes", 2, "--device", "cpu",
        "--work-dir", tmp_path / "work", "--out", best)  # fmt: skip
    prior = torch.load(best, map_location="cpu", weights_only=True)["model"]["objective.prior"]
    assert torch.allclose(prior @ prior.T, 9 * torch.eye(2), atol=1e-4)  # saved with the weights
    run(evaluate.cli, "--checkpoint", best, "--split", "xsub_val", "--out", scores,
        "--device", "cpu")  # fmt: skip
    s = load_pickle(scores)
    assert sorted(s["names"]) == sorted(split["xsub_val"])
    assert s["logits"]["infogcn"].shape == s["probs"]["infogcn"].shape == (4, 2)
    rc = fusion.cli(["--scores", f"k1_pos={scores}", "--fusion", "ens=logits:k1_pos:1.5",
                     "-o", str(tmp_path / "fusion.txt"), "--json", str(out)])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["ens"]["top1"] == report["k1_pos"]["top1"]  # a positive scale keeps argmax
