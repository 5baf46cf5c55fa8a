"""PoseC3D pseudo heatmaps (DESIGN.md 3.6): hand-computed pixels, reference loops, torch path."""

import math

import numpy as np
import pytest
import torch

from rgbpose.data.heatmaps import (
    batch_heatmaps_torch,
    channel_flip_perm,
    flip_heatmaps_torch,
    flip_test_heatmaps,
    generate_pose_target,
    keypoint_heatmaps,
    limb_heatmaps,
)
from rgbpose.layouts import COCO17

S = 0.6
TWO_VAR = 2 * S * S


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one(points, scores):
    """kp [M=len, T=1, V=1, 2] and score [M, 1, 1] for single-joint maps."""
    kp = np.array(points, np.float32).reshape(-1, 1, 1, 2)
    return kp, np.array(scores, np.float32).reshape(-1, 1, 1)


def test_single_joint_pixels_and_window():
    kp, sc = one([(10.3, 7.6)], [0.8])
    hm = keypoint_heatmaps(kp, sc, (16, 16), S)[0, 0]
    assert hm.shape == (16, 16) and hm.dtype == np.float32

    def g(x, y):
        return 0.8 * math.exp(-((x - 10.3) ** 2 + (y - 7.6) ** 2) / TWO_VAR)

    for x, y in [(10, 8), (10, 7), (11, 8), (8, 5), (12, 9), (12, 5)]:
        assert hm[y, x] == pytest.approx(g(x, y), rel=1e-5)
    # Window: x in [int(8.5), int(12.1) + 1) = [8, 13), y in [int(5.8), int(9.4) + 1) = [5, 10).
    assert np.count_nonzero(hm) == 5 * 5
    assert hm[:, 13].max() == 0 and hm[:, 7].max() == 0
    assert hm[10].max() == 0 and hm[4].max() == 0
    assert g(13, 8) > 1e-6  # the Gaussian is not negligible there: the window cuts it


def test_point_left_of_canvas_uses_truncation_toward_zero():
    # mu_x = -2: int(-2 + 1.8) = int(-0.2) = 0 -> window [0, 1): column 0 is lit, whereas
    # floor(-0.2) = -1 would light nothing.
    kp, sc = one([(-2.0, 4.0)], [1.0])
    hm = keypoint_heatmaps(kp, sc, (8, 8), S)[0, 0]
    assert hm[4, 0] == pytest.approx(math.exp(-4.0 / TWO_VAR), rel=1e-5)
    assert np.count_nonzero(hm[:, 1:]) == 0
    assert np.count_nonzero(hm[:, 0]) == 4  # rows [int(2.2), int(5.8) + 1) = [2, 6)
    # Further out: int(-2.5 + 1.8) = 0 still, but at -2.9 too; at -3.0 int(-1.2) = -1 -> empty.
    kp, sc = one([(-3.0, 4.0)], [1.0])
    assert keypoint_heatmaps(kp, sc, (8, 8), S).max() == 0


def test_limb_pixels():
    kp = np.array([[2, 2], [8, 2]], np.float32).reshape(1, 1, 2, 2)
    sc = np.array([0.9, 0.6], np.float32).reshape(1, 1, 2)
    hm = limb_heatmaps(kp, sc, (8, 12), [(0, 1)], S)[0, 0]
    amp = 0.6  # min of the two scores
    assert hm[3, 5] == pytest.approx(amp * math.exp(-1 / TWO_VAR), rel=1e-5)  # 1 px off the middle
    assert hm[2, 5] == pytest.approx(amp, rel=1e-6)  # on the segment
    assert hm[2, 9] == pytest.approx(amp * math.exp(-1 / TWO_VAR), rel=1e-5)  # beyond b: to b
    assert hm[3, 0] == pytest.approx(amp * math.exp(-5 / TWO_VAR), rel=1e-5)  # beyond a: to a
    # Window: x in [int(0.2), int(9.8) + 1) = [0, 10), y in [0, int(3.8) + 1) = [0, 4).
    assert hm[:, 10:].max() == 0 and hm[4:].max() == 0
    assert np.count_nonzero(hm) == 10 * 4


def test_degenerate_limb_is_the_start_joint():
    # |a - b|^2 = 0.34 < 1: drawn as joint a with a's score (PYSKL).
    kp = np.array([[5, 5], [5.5, 5.3]], np.float32).reshape(1, 1, 2, 2)
    sc = np.array([0.9, 0.5], np.float32).reshape(1, 1, 2)
    hm = limb_heatmaps(kp, sc, (12, 12), [(0, 1)], S)[0, 0]
    joint = keypoint_heatmaps(kp[:, :, :1], sc[:, :, :1], (12, 12), S)[0, 0]
    np.testing.assert_array_equal(hm, joint)
    assert hm[5, 5] == pytest.approx(0.9)


def test_persons_merge_by_max_not_sum():
    kp, sc = one([(5.0, 5.0), (5.4, 5.0)], [0.5, 0.9])
    kp = kp.reshape(2, 1, 1, 2)
    hm = keypoint_heatmaps(kp, sc.reshape(2, 1, 1), (10, 10), S)[0, 0]
    p0 = lambda x: 0.5 * math.exp(-((x - 5.0) ** 2) / TWO_VAR)  # noqa: E731
    p1 = lambda x: 0.9 * math.exp(-((x - 5.4) ** 2) / TWO_VAR)  # noqa: E731
    assert hm[5, 5] == pytest.approx(max(p0(5), p1(5)), rel=1e-5)  # person 1 wins
    assert hm[5, 4] == pytest.approx(max(p0(4), p1(4)), rel=1e-5)  # person 0 wins
    assert hm[5, 4] == pytest.approx(p0(4), rel=1e-5)


def test_low_scores_skipped_and_use_score_false():
    kp, _ = one([(4.0, 4.0)], [1])
    assert keypoint_heatmaps(kp, np.full((1, 1, 1), 0.0009, np.float32), (8, 8), S).max() == 0
    lit = keypoint_heatmaps(kp, np.full((1, 1, 1), 0.001, np.float32), (8, 8), S)
    assert lit[0, 0, 4, 4] == pytest.approx(0.001)
    flat = keypoint_heatmaps(kp, np.full((1, 1, 1), 0.2, np.float32), (8, 8), S, use_score=False)
    assert flat[0, 0, 4, 4] == pytest.approx(1.0)
    assert flat[0, 0, 4, 5] == pytest.approx(math.exp(-1 / TWO_VAR), rel=1e-5)


# --------------------------------------------------------------------------- reference loops
def _ref_point(arr, mx, my, value, sigma):
    h, w = arr.shape
    if value < 1e-3:
        return
    for y in range(max(int(my - 3 * sigma), 0), min(int(my + 3 * sigma) + 1, h)):
        for x in range(max(int(mx - 3 * sigma), 0), min(int(mx + 3 * sigma) + 1, w)):
            v = value * math.exp(-((x - mx) ** 2 + (y - my) ** 2) / 2 / sigma**2)
            arr[y, x] = max(arr[y, x], v)


def _ref_limb(arr, a, b, sa, sb, sigma):
    h, w = arr.shape
    value = min(sa, sb)
    if value < 1e-3:
        return
    ab = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    if ab < 1:
        _ref_point(arr, a[0], a[1], sa, sigma)
        return
    for y in range(max(int(min(a[1], b[1]) - 3 * sigma), 0), min(int(max(a[1], b[1]) + 3 * sigma) + 1, h)):  # fmt: skip
        for x in range(max(int(min(a[0], b[0]) - 3 * sigma), 0), min(int(max(a[0], b[0]) + 3 * sigma) + 1, w)):  # fmt: skip
            t = ((x - a[0]) * (b[0] - a[0]) + (y - a[1]) * (b[1] - a[1])) / ab
            t = min(max(t, 0.0), 1.0)
            px, py = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
            v = value * math.exp(-((x - px) ** 2 + (y - py) ** 2) / 2 / sigma**2)
            arr[y, x] = max(arr[y, x], v)


def _random_pose(seed, m=2, t=3, v=17, size=20.0):
    rng = np.random.default_rng(seed)
    kp = rng.uniform(-3, size + 3, (m, t, v, 2)).astype(np.float32)
    sc = rng.uniform(0, 1, (m, t, v)).astype(np.float32)
    sc[sc < 0.15] = 0
    kp[0, 0, 3] = kp[0, 0, 1] + 0.4  # a degenerate limb (1, 3)
    return kp, sc


@pytest.mark.parametrize("sigma", [0.6, 1.1])
def test_matches_reference_loops(sigma):
    kp, sc = _random_pose(1)
    shape = (20, 18)
    m, t, v, _ = kp.shape
    ref = np.zeros((t, v + len(COCO17.limbs)) + shape, np.float64)
    for tt in range(t):
        for p in range(m):
            for j in range(v):
                _ref_point(ref[tt, j], *map(float, kp[p, tt, j]), float(sc[p, tt, j]), sigma)
            for li, (a, b) in enumerate(COCO17.limbs):
                _ref_limb(ref[tt, v + li], kp[p, tt, a].astype(float), kp[p, tt, b].astype(float),
                          float(sc[p, tt, a]), float(sc[p, tt, b]), sigma)  # fmt: skip
    got = np.concatenate(
        [
            keypoint_heatmaps(kp, sc, shape, sigma),
            limb_heatmaps(kp, sc, shape, COCO17.limbs, sigma),
        ],
        axis=1,
    )
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # Identical windows (far window pixels underflow to 0 in float32, hence the 1e-30).
    assert not (got > 0)[ref == 0].any() and (got > 0)[ref > 1e-30].all()


def test_flip_doubled_equals_mirrored_swapped():
    kp, sc = _random_pose(2)
    single = generate_pose_target(kp, sc, (20, 20), with_limb=True)
    double = generate_pose_target(kp, sc, (20, 20), with_limb=True, double=True)
    perm = channel_flip_perm(COCO17, True, True)
    np.testing.assert_array_equal(double, flip_test_heatmaps(single, perm))
    # By hand: left eye (1) at x = 3 shows as the right eye (2) at column 20 - 1 - 3 = 16.
    kp1 = np.zeros((1, 1, 17, 2), np.float32)
    sc1 = np.zeros((1, 1, 17), np.float32)
    kp1[0, 0, 1], sc1[0, 0, 1] = (3, 5), 1
    d = generate_pose_target(kp1, sc1, (20, 20), double=True)
    assert d[1, 2, 5, 16] == pytest.approx(1.0) and d[1, 1].max() == 0
    assert d[0, 1, 5, 3] == pytest.approx(1.0)


def test_clip_layout_and_scaling():
    kp, sc = _random_pose(3, t=4)
    flat = generate_pose_target(kp, sc, (20, 20), double=True)
    views = generate_pose_target(kp, sc, (20, 20), double=True, clip_len=2)
    np.testing.assert_array_equal(views, flat.reshape(-1, 2, 17, 20, 20).transpose(0, 2, 1, 3, 4))
    # scaling 0.25: canvas int(224 * 0.25 + 0.5) = 56, coordinates / 4.
    kp1 = np.zeros((1, 1, 17, 2), np.float32)
    sc1 = np.zeros((1, 1, 17), np.float32)
    kp1[0, 0, 0], sc1[0, 0, 0] = (100, 40), 1
    hm = generate_pose_target(kp1, sc1, (224, 222), scaling=0.25)
    assert hm.shape == (1, 17, 56, 56) and hm[0, 0, 10, 25] == pytest.approx(1.0)


@pytest.mark.parametrize("sigma", [0.6, 0.9])
def test_torch_equals_numpy(sigma):
    kp, sc = _random_pose(4, t=4)
    kp2, sc2 = _random_pose(5, t=4)
    shape = (20, 18)
    expected = np.stack(
        [
            np.concatenate(
                [
                    keypoint_heatmaps(k, s, shape, sigma),
                    limb_heatmaps(k, s, shape, COCO17.limbs, sigma),
                ],
                axis=1,
            ).transpose(1, 0, 2, 3)
            for k, s in ((kp, sc), (kp2, sc2))
        ]
    )
    got = batch_heatmaps_torch(
        torch.from_numpy(np.stack([kp, kp2])),
        torch.from_numpy(np.stack([sc, sc2])),
        shape,
        sigma,
        limbs=COCO17.limbs,
    )
    assert got.shape == (2, 17 + 17, 4, 20, 18)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    # Limb-only channels and use_score=False.
    got = batch_heatmaps_torch(
        torch.from_numpy(kp[None]), None, shape, sigma, limbs=COCO17.limbs, with_kp=False
    )
    ref = limb_heatmaps(kp, sc, shape, COCO17.limbs, sigma, use_score=False)
    np.testing.assert_allclose(got[0].numpy(), ref.transpose(1, 0, 2, 3), atol=1e-5)
    # Flip on device equals the numpy doubling.
    perm = channel_flip_perm(COCO17)
    hm = batch_heatmaps_torch(torch.from_numpy(kp[None]), torch.from_numpy(sc[None]), shape, sigma)
    flipped = flip_heatmaps_torch(hm, perm.tolist())[0].numpy().transpose(1, 0, 2, 3)
    doubled = generate_pose_target(kp, sc, shape, sigma=sigma, double=True)
    np.testing.assert_allclose(flipped, doubled[4:], atol=1e-5)
    # Flip copies scattered directly: groups of 2 views, each followed by its mirrored views.
    both = batch_heatmaps_torch(
        torch.from_numpy(np.stack([kp, kp2, kp2, kp])),
        torch.from_numpy(np.stack([sc, sc2, sc2, sc])),
        shape,
        sigma,
        limbs=COCO17.limbs,
        flip_perm=channel_flip_perm(COCO17, True, True).tolist(),
        views=2,
    )
    assert both.shape == (8, 34, 4, 20, 18)
    plain = torch.from_numpy(expected)
    mirrored = flip_heatmaps_torch(plain, channel_flip_perm(COCO17, True, True).tolist())
    for got_i, want in zip(both, [plain[0], plain[1], mirrored[0], mirrored[1],
                                  plain[1], plain[0], mirrored[1], mirrored[0]]):  # fmt: skip
        torch.testing.assert_close(got_i, want, atol=1e-5, rtol=0)


def test_empty_and_nonfinite_inputs():
    kp = np.full((1, 2, 17, 2), np.nan, np.float32)
    assert keypoint_heatmaps(kp, np.ones((1, 2, 17), np.float32), (8, 8)).max() == 0
    assert keypoint_heatmaps(np.zeros((0, 2, 17, 2)), np.zeros((0, 2, 17)), (8, 8)).shape == (
        2,
        17,
        8,
        8,
    )
    with pytest.raises(ValueError, match="with_kp"):
        generate_pose_target(kp, None, (8, 8), with_kp=False)
