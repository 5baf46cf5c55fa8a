"""The GCN data pipeline (modality ``skeleton``, rgbpose.data.skeleton): features, normalisation
and sampling against hand-computed values, and a train + test run through the CLIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rgbpose.data.config import TestViews, pipeline_entry
from rgbpose.data.datasets import build_dataset
from rgbpose.data.skeleton import (
    BONE_PARENTS,
    SkeletonConfig,
    SkeletonDataset,
    flip_joints,
    pre_normalize_2d,
    pre_normalize_3d,
    skeleton_feature,
    to_bones,
    to_motion,
)
from rgbpose.io import BadSampleError

REPO = Path(__file__).resolve().parents[1]

# A 3-joint toy skeleton: 0 is the root, 1 hangs on 0, 2 on 1.  One person, two frames of
# (x, y, score) -- or (x, y, z) when the third channel is a coordinate.
TOY_PARENTS = (0, 0, 1)
TOY = np.array(
    [[[[1, 2, 0.9], [4, 6, 0.5], [5, 8, 0.7]],
      [[2, 2, 1.0], [4, 7, 0.6], [7, 8, 0.2]]]], dtype=np.float64,
)  # fmt: skip


def test_bones_of_the_toy_skeleton():
    # 2D: x, y differences, score = mean of the joint's and its parent's
    assert np.allclose(
        to_bones(TOY, TOY_PARENTS, has_score=True)[0, 0],
        [[0, 0, 0.9], [3, 4, 0.7], [1, 2, 0.6]],
    )
    # 3D: the third channel is a coordinate and is differenced too
    assert np.allclose(
        to_bones(TOY, TOY_PARENTS, has_score=False)[0, 1],
        [[0, 0, 0], [2, 5, -0.4], [3, 1, -0.4]],
    )


def test_motion_of_the_toy_skeleton_is_zero_at_the_last_frame():
    jm = to_motion(TOY, has_score=True)
    assert np.allclose(jm[0, 0], [[1, 0, 0.95], [0, 1, 0.55], [2, 0, 0.45]])
    assert not jm[0, 1].any()
    assert np.allclose(
        to_motion(TOY, has_score=False)[0, 0], [[1, 0, 0.1], [0, 1, 0.1], [2, 0, -0.5]]
    )
    # bone motion: bones at t=1 (0,0,1.0) (2,5,0.8) (3,1,0.4) minus bones at t=0
    bm = skeleton_feature(TOY, "bm", TOY_PARENTS, has_score=True)
    assert np.allclose(bm[0, 0], [[0, 0, 0.95], [-1, 1, 0.75], [2, -1, 0.5]])
    assert np.array_equal(skeleton_feature(TOY, "j", TOY_PARENTS, True), TOY)
    with pytest.raises(ValueError, match="feature"):
        skeleton_feature(TOY, "x", TOY_PARENTS, True)


def test_bone_pairs_are_pyskl_joint_to_bone():
    """PYSKL JointToBone (child, parent) pairs, as listed in pose_related.py."""
    coco = ((0, 0), (1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6), (9, 7),
            (10, 8), (11, 0), (12, 0), (13, 11), (14, 12), (15, 13), (16, 14))  # fmt: skip
    ntu = ((0, 1), (1, 20), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20), (9, 8),
           (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16),
           (18, 17), (19, 18), (21, 22), (20, 20), (22, 7), (23, 24), (24, 11))  # fmt: skip
    assert sorted(enumerate(BONE_PARENTS["coco17"])) == sorted(coco)
    assert sorted(enumerate(BONE_PARENTS["ntu25"])) == sorted(ntu)


def test_pre_normalize_2d_centres_on_the_image_and_zeroes_low_scores():
    kp = np.array([[[[150, 25], [10, 90], [100, 50]]]], np.float32)  # [1, 1, 3, 2]
    score = np.array([[[0.8, 0.005, 0.01]]], np.float32)
    out = pre_normalize_2d(kp, score, (100, 200), threshold=0.01)  # h 100, w 200
    assert out.dtype == np.float32 and out.shape == (1, 1, 3, 3)
    # (150 - 100) / 100, (25 - 50) / 50; the others have score <= 0.01: x = y = 0
    assert np.allclose(out[0, 0], [[0.5, -0.5, 0.8], [0, 0, 0.005], [0, 0, 0.01]])


def test_pre_normalize_3d_on_a_toy_example():
    """Person 1 is present in more frames: it becomes the main person, its empty frame is
    dropped, SpineMid of its first frame is the origin; spine +y -> +z and shoulders
    left -> right along -z -> +x make the whole map (x, y, z) -> (-z, -x, y)."""
    kp = np.zeros((2, 3, 25, 3))
    kp[1, 0, 0] = (1, 1, 1)  # SpineBase
    kp[1, 0, 1] = (1, 2, 1)  # SpineMid: the centre
    kp[1, 0, 3] = (1, 3, 1)  # Head
    kp[1, 0, 4] = (1, 2, 2)  # left shoulder
    kp[1, 0, 8] = (1, 2, 0)  # right shoulder
    kp[1, 1, 0] = (2, 2, 3)
    kp[0, 1, 5] = (3, 2, 1)  # person 0 appears in frame 1 only
    out = pre_normalize_3d(kp)
    assert out.shape == (2, 2, 25, 3) and out.dtype == np.float32  # frame 2: nobody
    expected = np.zeros_like(out)
    expected[0, 0, 0] = (0, 0, -1)
    expected[0, 0, 3] = (0, 0, 1)
    expected[0, 0, 4] = (-1, 0, 0)
    expected[0, 0, 8] = (1, 0, 0)
    expected[0, 1, 0] = (-2, -1, 0)  # (1, 0, 2) after centring
    expected[1, 1, 5] = (0, -2, 0)  # (2, 0, 0) after centring
    assert np.allclose(out, expected, atol=1e-6)  # untracked (zero) joints stay zero
    assert not pre_normalize_3d(np.zeros((1, 4, 25, 3))).any()


def test_flip_mirrors_x_and_swaps_left_and_right():
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    out = flip_joints(x, (0, 2, 1))
    assert np.array_equal(out[:, 1, 1:], x[:, 2, 1:]) and np.array_equal(out[:, 1, 0], -x[:, 2, 0])


def test_config_validates_and_declares_its_output():
    entry = pipeline_entry("skeleton")
    assert entry.config_cls is SkeletonConfig and entry.dataset_cls() is SkeletonDataset
    cfg = SkeletonConfig()
    assert (cfg.keypoints, cfg.feature, cfg.clip_len, cfg.max_persons) == ("2d", "j", 100, 2)
    (out,) = cfg.outputs("coco17")
    assert (out.key, out.channels, out.clip_len, out.clip_len_key) == (
        "keypoint", 3, 100, "data.clip_len",
    )  # fmt: skip
    for bad, match in (
        ({"feature": "jb"}, "feature"),
        ({"keypoints": "4d"}, "keypoints"),
        ({"clip_len": 0}, "clip_len"),
        ({"max_persons": True}, "max_persons"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"keypoints": "3d", "layout": "coco17"}, "layout"),
        ({"layout": "openpose"}, "layout"),
        ({"test_sampling": "mine"}, "test_sampling"),
    ):
        with pytest.raises(ValueError, match=match):
            SkeletonConfig(**bad)


def _annotations(n: int = 4, frames: int = 12, persons: int = 1, seed: int = 0) -> dict:
    """``n`` records with 2D COCO-17 keypoints, scores and Kinect keypoint3d."""
    rng = np.random.default_rng(seed)
    annos = []
    for i in range(n):
        label = i % 2
        kp = rng.uniform(100, 300, (persons, frames, 17, 2)) + [200 * label, 0]
        kp3 = rng.normal(0, 0.3, (persons, frames, 25, 3)) + [0.4 * label, 0, 3]
        annos.append({
            "frame_dir": f"S001C001P{1 + i // 2:03d}R00{1 + i % 2}A{1 + label:03d}",
            "label": label, "total_frames": frames, "img_shape": (360, 640), "layout": "coco17",
            "keypoint": kp.astype(np.float16),
            "keypoint_score": rng.uniform(0.5, 1, (persons, frames, 17)).astype(np.float16),
            "keypoint3d": kp3.astype(np.float16), "layout3d": "ntu25",
        })  # fmt: skip
    names = [a["frame_dir"] for a in annos]
    return {
        "split": {"xsub_train": names[: n // 2], "xsub_val": names[n // 2 :]},
        "annotations": annos,
    }


@pytest.mark.parametrize(("keypoints", "joints"), [("2d", 17), ("3d", 25)])
def test_items_have_the_views_persons_frames_and_joints(keypoints, joints):
    data = _annotations()
    cfg = SkeletonConfig(keypoints=keypoints, feature="b", clip_len=8)
    train = build_dataset(cfg, data, "xsub_train", "train")
    assert isinstance(train, SkeletonDataset) and train.layout.num_joints == joints
    item = train[0]
    assert item["keypoint"].dtype == torch.float32
    assert item["keypoint"].shape == (1, 2, 8, joints, 3)  # [views, M, T, V, C]
    assert not item["keypoint"][:, 1].any()  # one person, zero-padded to two
    assert (item["label"], item["frame_dir"]) == (0, data["annotations"][0]["frame_dir"])
    test = build_dataset(cfg, data, "xsub_val", "test", views=TestViews(3, False))
    assert test[0]["keypoint"].shape == (3, 2, 8, joints, 3)
    assert torch.equal(test[1]["keypoint"], test[1]["keypoint"])  # deterministic
    val = build_dataset(cfg, data, "xsub_val", "val", views=TestViews(3, False))
    assert val[0]["keypoint"].shape == (1, 2, 8, joints, 3)


def test_flip_views_follow_the_original_views():
    data = _annotations(persons=2)
    cfg = SkeletonConfig(clip_len=5)
    ds = build_dataset(cfg, data, "xsub_val", "test", views=TestViews(2, True))
    x = ds[0]["keypoint"].numpy()
    assert x.shape == (4, 2, 5, 17, 3)
    assert np.allclose(x[2:], flip_joints(x[:2], ds.layout.flip_index))


def test_sampling_covers_a_short_sequence_in_order():
    """12 frames, clip_len 24 (T < L): the test clip loops over the frames in order."""
    data = _annotations(frames=12)
    ds = build_dataset(SkeletonConfig(clip_len=24), data, "xsub_val", "val")
    x = ds[0]["keypoint"][0, 0].numpy()
    assert np.array_equal(x[:12], x[12:])


def test_3d_needs_keypoint3d_and_hashes_it():
    data = _annotations()
    cfg = SkeletonConfig(keypoints="3d")
    h3 = build_dataset(cfg, data, "xsub_train", "train").content_hash()
    h2 = build_dataset(SkeletonConfig(), data, "xsub_train", "train").content_hash()
    data["annotations"][0]["keypoint3d"] = data["annotations"][0]["keypoint3d"] + np.float16(1)
    assert build_dataset(SkeletonConfig(), data, "xsub_train", "train").content_hash() == h2
    assert build_dataset(cfg, data, "xsub_train", "train").content_hash() != h3
    del data["annotations"][1]["keypoint3d"]
    with pytest.raises(BadSampleError, match="keypoint3d"):
        build_dataset(cfg, data, "xsub_train", "train")


@pytest.mark.parametrize(
    ("keypoints", "feature", "layout"), [("2d", "j", "coco17"), ("3d", "bm", "ntu25")]
)
def test_train_and_test_through_the_clis(tmp_path, keypoints, feature, layout):
    from rgbpose.engine import evaluate, train
    from rgbpose.io import dump_pickle, load_pickle

    data = _annotations(n=8, frames=10)
    ann = tmp_path / "ann.pkl"
    dump_pickle(data, ann)
    config = REPO / "config/models/demo_stgcnpp_j.yaml"
    sets = [
        "schedule.epochs=1", "data.clip_len=6", "model.overrides.base_channels=6",
        f"data.keypoints={keypoints}", f"data.feature={feature}",
        f"model.overrides.layout={layout}", "batch_size=2", "test.num_clips=2",
    ]  # fmt: skip
    common = ["--config", str(config), "--ann", str(ann), "--set", *sets]
    best = tmp_path / "best.pt"
    rc = train.cli([*common, "--split", "xsub", "--num-classes", "2", "--device", "cpu",
                    "--work-dir", str(tmp_path / "work"), "--out", str(best)])  # fmt: skip
    assert rc == 0 and best.is_file()
    scores = tmp_path / "scores.pkl"
    rc = evaluate.cli([*common, "--checkpoint", str(best), "--split", "xsub_val",
                       "--out", str(scores), "--device", "cpu"])  # fmt: skip
    assert rc == 0
    s = load_pickle(scores)
    assert sorted(s["names"]) == sorted(data["split"]["xsub_val"])
    assert s["probs"]["stgcnpp"].shape == (4, 2)
    assert np.allclose(s["probs"]["stgcnpp"].sum(1), 1, atol=1e-5)
