"""denoise: NTU Kinect rules on hand-built bodies, estimator tracking, CLI skip policy."""

from __future__ import annotations

import numpy as np
import pytest

from rgbpose.io import BadSampleError, dump_pickle, load_pickle, read_skip_tsv
from rgbpose.preprocess.denoise import (
    KinectDenoiseConfig,
    TrackerConfig,
    assign_slots,
    body_motion,
    cli,
    denoise_estimator,
    denoise_kinect,
    pose_cost,
    select_kinect_bodies,
    spread_valid,
    track_poses,
)

V = 25
J = np.arange(V)
# An upright body: x in [0, 0.4], y in [0, 1.2] -> x extent 0.4 <= 0.8 * 1.2.
UPRIGHT = np.stack([0.1 * (J % 5), 0.05 * J, np.full(V, 3.0)], axis=1)
# A wide body: x extent 2.0 > 0.96.
WIDE = np.stack([0.5 * (J % 5), 0.05 * J, np.full(V, 3.0)], axis=1)
# Pooled population variance of UPRIGHT: var(x) = 0.02, var(y) = 0.05^2 * (25^2 - 1) / 12 = 0.13.
STATIC_MOTION = 0.15


def moving(speed: float, base: np.ndarray = UPRIGHT):
    """xyz of frame f: ``base`` shifted by ``speed * f`` along x."""
    return lambda f: base + [speed * f, 0.0, 0.0]


def kinect_pose(bodies, T: int, name: str = "S001C001P001R001A050") -> dict:
    """Pose dict with one slot per body; ``bodies`` = [(frames, f -> xyz [25, 3])]."""
    M = len(bodies)
    kp3 = np.zeros((M, T, V, 3), np.float32)
    present = np.zeros((M, T), bool)
    for m, (frames, fn) in enumerate(bodies):
        for f in frames:
            kp3[m, f] = fn(f)
            present[m, f] = True
    return {
        "frame_dir": name, "layout": "ntu25", "img_shape": (1080, 1920),
        "original_shape": (1080, 1920), "total_frames": T,
        "keypoint": kp3[..., :2] * 100,
        "keypoint_score": np.repeat(present[..., None], V, -1).astype(np.float32),
        "present": present, "keypoint3d": kp3, "body_ids": [f"id{m}" for m in range(M)],
    }  # fmt: skip


def test_motion_and_spread_definitions():
    assert body_motion(np.stack([UPRIGHT] * 4)) == pytest.approx(STATIC_MOTION)
    # two frames at x offsets 0 and 1: var(x) grows by 0.25 (offsets pooled with the grid)
    assert body_motion(np.stack([UPRIGHT, UPRIGHT + [1, 0, 0]])) == pytest.approx(0.4)
    np.testing.assert_array_equal(spread_valid(np.stack([UPRIGHT, WIDE])), [True, False])
    # exactly at the 0.8 ratio counts as valid: x extent 0.8 = 0.8 * y extent 1.0
    edge = np.zeros((V, 3))
    edge[0, 0], edge[1, 1] = 0.8, 1.0
    assert spread_valid(edge[None]).tolist() == [True]


def test_short_body_dropped_at_11_frames_kept_at_12():
    pose = kinect_pose(
        [(range(20), moving(0.05)), (range(3, 14), moving(0.01)), (range(2, 14), moving(0.02))],
        T=20,
    )
    sel = select_kinect_bodies(pose["present"], pose["keypoint3d"])
    assert sel.dropped == {1: "present in only 11 frames"}
    assert sel.slots == [[0], [2]]
    out = denoise_kinect(pose)
    assert out["keypoint"].shape == (2, 20, V, 2) and "body_ids" not in out
    np.testing.assert_array_equal(out["keypoint3d"][1, 2:14], pose["keypoint3d"][2, 2:14])


def test_wide_body_dropped():
    pose = kinect_pose([(range(20), moving(0.01)), (range(20), moving(0.2, WIDE))], T=20)
    sel = select_kinect_bodies(pose["present"], pose["keypoint3d"])
    assert list(sel.dropped) == [1] and "too wide in 100.0%" in sel.dropped[1]
    out = denoise_kinect(pose)
    assert out["keypoint3d"].shape == (1, 20, V, 3)
    np.testing.assert_array_equal(out["keypoint3d"][0], pose["keypoint3d"][0])


@pytest.mark.parametrize("n_wide, kept", [(23, True), (24, False)])
def test_invalid_fraction_threshold_and_reduced_motion(n_wide, kept):
    # 33 frames: 23/33 = 0.69697 < 0.69754 (kept), 24/33 = 0.727 (dropped).
    # Valid frames are static (motion 0.15); wide frames move a lot, so the full motion is large.
    def partly_wide(f):
        return WIDE + [0.3 * f, 0, 0] if f < n_wide else UPRIGHT

    a = moving(0.01)  # motion a little above the static 0.15
    pose = kinect_pose([(range(33), a), (range(33), partly_wide)], T=33)
    full = body_motion(pose["keypoint3d"][1])
    a_motion = body_motion(pose["keypoint3d"][0])
    assert full > a_motion > STATIC_MOTION
    sel = select_kinect_bodies(pose["present"], pose["keypoint3d"])
    if kept:
        assert sel.dropped == {}
        assert sel.motion[1] == pytest.approx(STATIC_MOTION)  # min(full, valid-frame motion)
        assert sel.slots == [[0], [1]]  # body 0 now has more motion -> slot 1
    else:
        assert list(sel.dropped) == [1] and sel.slots == [[0]]


def test_non_overlapping_bodies_share_slot_1_and_overlap_goes_to_slot_2():
    pose = kinect_pose([(range(0, 20), moving(0.05)), (range(25, 45), moving(0.01))], T=45)
    sel = select_kinect_bodies(pose["present"], pose["keypoint3d"])
    assert sel.slots == [[0, 1]]
    out = denoise_kinect(pose)
    assert out["keypoint"].shape[:2] == (1, 45)  # frames 20-24 are inner gaps: kept by trim
    np.testing.assert_array_equal(out["present"][0], [True] * 20 + [False] * 5 + [True] * 20)
    np.testing.assert_array_equal(out["keypoint3d"][0, 30], pose["keypoint3d"][1, 30])
    dropped = denoise_kinect(pose, KinectDenoiseConfig(empty_frames="drop"))
    assert dropped["total_frames"] == 40 and dropped["present"].all()
    np.testing.assert_array_equal(dropped["keypoint3d"][0, 20], pose["keypoint3d"][1, 25])

    overlap = kinect_pose([(range(0, 20), moving(0.05)), (range(10, 30), moving(0.01))], T=30)
    assert select_kinect_bodies(overlap["present"], overlap["keypoint3d"]).slots == [[0], [1]]


def test_third_body_overlapping_both_is_discarded_and_late_body_reuses_slot_1():
    pose = kinect_pose(
        [
            (range(0, 30), moving(0.05)),  # most motion: slot 1
            (range(0, 30), moving(0.03)),  # overlaps slot 1: slot 2
            (range(10, 22), moving(0.01)),  # overlaps both: discarded
            (range(30, 45), moving(0.001)),  # starts after both: slot 1 again
        ],
        T=45,
    )
    sel = select_kinect_bodies(pose["present"], pose["keypoint3d"])
    assert sel.slots == [[0, 3], [1]]
    assert "overlaps" in sel.dropped[2] and list(sel.dropped) == [2]
    out = denoise_kinect(pose)
    np.testing.assert_array_equal(out["present"], [[True] * 45, [True] * 30 + [False] * 15])


def test_assign_slots_touching_spans_overlap():
    # inclusive spans: [0, 10] and [10, 20] share frame 10 -> different slots
    assert assign_slots([0, 1], {0: (0, 10), 1: (10, 20)}) == [[0], [1]]
    assert assign_slots([0, 1], {0: (0, 10), 1: (11, 20)}) == [[0, 1]]
    assert assign_slots([0, 1, 2], {0: (0, 9), 1: (0, 9), 2: (5, 6)}, num_slots=1) == [[0]]


def test_leading_and_trailing_empty_frames_trimmed_single_body():
    # a single body: rules 1-3 do not apply (only 5 frames, still kept); rule 4 does
    pose = kinect_pose([([3, 4, 6, 7], moving(0.1))], T=10)
    out = denoise_kinect(pose)
    assert out["total_frames"] == 5 and out["keypoint"].shape == (1, 5, V, 2)
    np.testing.assert_array_equal(out["present"][0], [True, True, False, True, True])
    np.testing.assert_array_equal(out["keypoint3d"][0, 0], pose["keypoint3d"][0, 3])
    out = denoise_kinect(pose, KinectDenoiseConfig(empty_frames="drop"))
    assert out["total_frames"] == 4 and out["present"].all()


def test_all_bodies_short_is_bad_sample():
    pose = kinect_pose([(range(5), moving(0.1)), (range(5, 10), moving(0.1))], T=10)
    with pytest.raises(BadSampleError, match="no valid body after denoising") as ei:
        denoise_kinect(pose, source="shard.pkl")
    assert ei.value.path == "shard.pkl" and "id0: present in only 5 frames" in str(ei.value)


# ---------------------------------------------------------------------------------------------
# Estimator tracking
# ---------------------------------------------------------------------------------------------

H, W = 480, 640
K = 17


def person(x: float, y: float) -> np.ndarray:
    """17 joints spread vertically around (x, y)."""
    return np.stack([np.full(K, x) + np.arange(K) % 3, y + 5.0 * np.arange(K)], axis=1)


def estimator_pose(frames: list[list[tuple[float, float]]], name: str) -> dict:
    """Slot j of frame t = frames[t][j] (a person centre), all joints scored 0.9."""
    T, M = len(frames), max(len(f) for f in frames)
    kp = np.zeros((M, T, K, 2), np.float32)
    sc = np.zeros((M, T, K), np.float32)
    present = np.zeros((M, T), bool)
    for t, dets in enumerate(frames):
        for j, (x, y) in enumerate(dets):
            kp[j, t], sc[j, t], present[j, t] = person(x, y), 0.9, True
    return {
        "frame_dir": name, "layout": "coco17", "img_shape": (H, W), "original_shape": (H, W),
        "total_frames": T, "keypoint": kp, "keypoint_score": sc, "present": present,
    }  # fmt: skip


def test_pose_cost_value():
    a, b = np.zeros((2, 2)), np.array([[3.0, 4.0], [0.0, 0.0]])
    # image 3 x 4 -> diagonal 5; joint 0: max(2 * 5 / 5, 0.5) = 2; joint 1: max(0, 0.8) = 0.8
    assert pose_cost(a, np.ones(2), b, np.array([0.5, 0.2]), 5.0) == pytest.approx(2.8)


def test_tracker_keeps_identity_when_detection_order_swaps():
    # P walks right from x=100, Q walks left from x=500; the detector lists them in either order
    frames = []
    for t in range(6):
        p, q = (100 + 5 * t, 200), (500 - 5 * t, 150)
        frames.append([p, q] if t % 2 == 0 else [q, p])
    pose = estimator_pose(frames, "S001C001P001R001A050")  # two-person action
    out = denoise_estimator(pose)
    assert out["keypoint"].shape == (2, 6, K, 2) and out["present"].all()
    # both tracks are 6 frames long; Q is nearer the image centre (320, 240) -> slot 0
    for t in range(6):
        np.testing.assert_allclose(out["keypoint"][0, t], person(500 - 5 * t, 150))
        np.testing.assert_allclose(out["keypoint"][1, t], person(100 + 5 * t, 200))


def test_tracker_fills_short_gap_only_and_keeps_one_person_for_single_actions():
    gaps = {3, 4} | set(range(8, 14))  # 2 missing frames (filled), 6 missing frames (not)
    frames = [[] if t in gaps else [(100 + 10 * t, 200)] for t in range(20)]
    frames[16].append((600, 50))  # a 1-frame false detection far away: too short, dropped
    pose = estimator_pose(frames, "S001C001P001R001A001")
    out = denoise_estimator(pose)
    assert out["keypoint"].shape == (1, 20, K, 2) and out["total_frames"] == 20
    expected_present = [True] * 8 + [False] * 6 + [True] * 6
    np.testing.assert_array_equal(out["present"][0], expected_present)
    np.testing.assert_allclose(out["keypoint"][0, 3], person(130, 200))  # interpolated
    np.testing.assert_allclose(out["keypoint"][0, 4], person(140, 200))
    np.testing.assert_allclose(out["keypoint_score"][0, 4], 0.9, rtol=1e-6)
    np.testing.assert_allclose(out["keypoint"][0, 16], person(260, 200))
    assert not out["keypoint"][0, 9].any()


def test_tracker_gate_starts_new_track_for_far_jump():
    kp = np.stack([person(50, 50), person(600, 400)])[:, None]  # frame 0 slot 0 / frame 1 slot 0
    kp = kp.transpose(1, 0, 2, 3)  # [M=1, T=2, K, 2]
    tracks = track_poses(kp, np.full((1, 2, K), 0.9), np.ones((1, 2), bool), (H, W))
    assert [tr.frames for tr in tracks] == [[0], [1]]
    near = kp.copy()
    near[0, 1] = person(60, 55)
    tracks = track_poses(near, np.full((1, 2, K), 0.9), np.ones((1, 2), bool), (H, W))
    assert [tr.frames for tr in tracks] == [[0, 1]]


def test_no_track_long_enough_is_bad_sample():
    pose = estimator_pose([[(100, 100)], [(100, 100)], [], [], []], "S001C001P001R001A001")
    with pytest.raises(BadSampleError, match="no person tracked"):
        denoise_estimator(pose, TrackerConfig(min_length=3))


def test_cli_skips_bad_samples(tmp_path, capsys):
    good = kinect_pose([(range(20), moving(0.05)), (range(5, 25), moving(0.01))], T=25)
    short = kinect_pose([(range(5), moving(0.1)), (range(5, 10), moving(0.1))], T=10,
                        name="S001C001P001R001A002")  # fmt: skip
    broken = dict(good, frame_dir="S001C001P001R001A003", total_frames=7)
    track = estimator_pose([[(100, 200)]] * 4, "S001C001P001R001A004")
    dump_pickle([good, short, broken, track], tmp_path / "in.pkl")
    rc = cli([str(tmp_path / "in.pkl"), "-o", str(tmp_path / "out.pkl"), "--on-bad-sample",
              "skip", "--skipped", str(tmp_path / "s.tsv")])  # fmt: skip
    assert rc == 0
    out = load_pickle(tmp_path / "out.pkl")
    assert [d["frame_dir"] for d in out] == ["S001C001P001R001A050", "S001C001P001R001A004"]
    assert out[0]["keypoint"].shape[0] == 2 and out[1]["keypoint"].shape == (1, 4, K, 2)
    rows = read_skip_tsv(tmp_path / "s.tsv")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("S001C001P001R001A002", "denoise", str(tmp_path / "in.pkl")),
        ("S001C001P001R001A003", "denoise", str(tmp_path / "in.pkl")),
    ]
    assert "total_frames 7" in rows[1][3]
    assert "denoised 2 sample(s) (1 with two persons)" in capsys.readouterr().out
    rc = cli([str(tmp_path / "in.pkl"), "-o", str(tmp_path / "o2.pkl")])
    assert rc == 1 and "S001C001P001R001A002: no valid body" in capsys.readouterr().err
    assert not (tmp_path / "o2.pkl").exists()


def test_removed_frames_recorded_as_video_frame_indices():
    pose = kinect_pose([([3, 4, 6, 7], moving(0.1))], T=10)
    # trim keeps video frames 3..7; drop keeps 3, 4, 6, 7
    np.testing.assert_array_equal(denoise_kinect(pose)["frame_inds"], [3, 4, 5, 6, 7])
    out = denoise_kinect(pose, KinectDenoiseConfig(empty_frames="drop"))
    np.testing.assert_array_equal(out["frame_inds"], [3, 4, 6, 7])
    assert out["frame_inds"].dtype == np.int32
    # nothing removed: no mapping needed
    full = kinect_pose([(list(range(10)), moving(0.1))], T=10)
    assert "frame_inds" not in denoise_kinect(full)


def test_help_names_the_compat_modes_and_does_not_call_trim_pyskl(capsys):
    with pytest.raises(SystemExit) as ei:
        cli(["--help"])
    assert ei.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--compat {none,infogcn,pyskl}" in text
    assert "(PYSKL)" not in text and "trim leading/trailing empty frames (keeps the video" in text
