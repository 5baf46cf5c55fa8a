"""Uniform clip sampling (DESIGN.md 3.5): structure in train mode, exact indices in test mode."""

import numpy as np
import pytest

from rgbpose.data.sampling import mm_uniform_sample, uniform_sample


@pytest.mark.parametrize("seed", range(20))
def test_train_short_video_loops_from_random_start(seed):
    # T=5 < L=8: consecutive frames from a start in [0, T), wrapping modulo T.
    inds = uniform_sample(5, 8, rng=np.random.default_rng(seed))
    assert inds.shape == (8,) and inds.dtype == np.int64
    assert 0 <= inds[0] < 5
    np.testing.assert_array_equal(inds, (inds[0] + np.arange(8)) % 5)


@pytest.mark.parametrize("seed", range(20))
def test_train_medium_video_skips_t_minus_l_frames(seed):
    # L=8 <= T=12 < 16: arange(L) + cumsum(gaps), gaps at T-L=4 distinct slots among L+1.
    inds = uniform_sample(12, 8, rng=np.random.default_rng(seed))
    assert inds.shape == (8,)
    assert np.all(np.diff(inds) >= 1)  # strictly increasing, hence distinct
    assert set(np.diff(inds).tolist()) <= {1, 2}  # at most one gap between two frames
    assert inds[0] in (0, 1) and inds[-1] <= 11
    skipped_inside = inds[0] + int(np.sum(np.diff(inds) - 1))
    # A gap at the last slot (after frame L-1) does not show in the indices.
    assert skipped_inside in (3, 4)
    assert skipped_inside == 4 or inds[-1] == 7 + 3


@pytest.mark.parametrize("seed", range(20))
def test_train_long_video_one_frame_per_segment(seed):
    # T=50 >= 2L: segment bounds arange(9) * 50 // 8 = [0, 6, 12, 18, 25, 31, 37, 43, 50].
    bounds = [0, 6, 12, 18, 25, 31, 37, 43, 50]
    inds = uniform_sample(50, 8, 2, rng=np.random.default_rng(seed))
    assert inds.shape == (16,)
    for clip in inds.reshape(2, 8):
        for k in range(8):
            assert bounds[k] <= clip[k] < bounds[k + 1]


def test_train_segments_cover_every_frame_of_a_segment():
    rng = np.random.default_rng(0)
    seen = np.stack([uniform_sample(50, 8, rng=rng) for _ in range(400)])
    assert set(seen[:, 0].tolist()) == set(range(0, 6))
    assert set(seen[:, 3].tolist()) == set(range(18, 25))


def test_test_mode_short_video_offsets_hand_computed():
    # T=5 < L=8, n=2: clip i starts at i*T//n -> 0 and 2.
    np.testing.assert_array_equal(
        uniform_sample(5, 8, 2, test_mode=True),
        [0, 1, 2, 3, 4, 0, 1, 2, 2, 3, 4, 0, 1, 2, 3, 4],
    )
    # T=3 < n=5: clip i starts at i.
    expected = np.concatenate([(i + np.arange(4)) % 3 for i in range(5)])
    np.testing.assert_array_equal(uniform_sample(3, 4, 5, test_mode=True), expected)


def test_test_mode_fixed_indices():
    # Deterministic (local default_rng(255)); values pinned so a change is noticed.
    np.testing.assert_array_equal(
        uniform_sample(50, 8, test_mode=True), [1, 10, 17, 21, 28, 35, 41, 47]
    )
    np.testing.assert_array_equal(
        uniform_sample(12, 8, 2, test_mode=True),
        [0, 2, 3, 4, 6, 8, 9, 11, 1, 2, 3, 5, 7, 8, 9, 10],
    )
    # The same as drawing from default_rng(255) by the documented formula.
    rng = np.random.default_rng(255)
    bounds = np.arange(9) * 50 // 8
    np.testing.assert_array_equal(
        uniform_sample(50, 8, test_mode=True), bounds[:-1] + rng.integers(np.diff(bounds))
    )


def test_test_mode_repeatable_and_leaves_global_rng_alone():
    np.random.seed(7)
    before = np.random.get_state()
    a = uniform_sample(40, 8, 3, test_mode=True)
    b = uniform_sample(40, 8, 3, test_mode=True, rng=np.random.default_rng(1))
    after = np.random.get_state()
    np.testing.assert_array_equal(a, b)
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])


def test_mm_sampling_order_and_test_reseed():
    # Train: modalities drawn in mapping order from one generator.
    got = mm_uniform_sample(60, {"rgb": 8, "pose": 32}, rng=np.random.default_rng(3))
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(got["rgb"], uniform_sample(60, 8, rng=rng))
    np.testing.assert_array_equal(got["pose"], uniform_sample(60, 32, rng=rng))
    # Test: each modality as if sampled alone with a fresh seed-255 generator.
    got = mm_uniform_sample(60, {"rgb": 8, "pose": 32}, 2, test_mode=True)
    np.testing.assert_array_equal(got["rgb"], uniform_sample(60, 8, 2, test_mode=True))
    np.testing.assert_array_equal(got["pose"], uniform_sample(60, 32, 2, test_mode=True))


def test_bad_arguments():
    with pytest.raises(ValueError, match="0 frames"):
        uniform_sample(0, 8, test_mode=True)
    with pytest.raises(ValueError, match="Generator"):
        uniform_sample(10, 8)
