"""Uniform clip sampling (DESIGN.md 3.5): structure in train mode, exact indices in test mode."""

import numpy as np
import pytest

from rgbpose.data import datasets
from rgbpose.data.config import PipelineConfig, TestViews
from rgbpose.data.sampling import mm_uniform_sample, uniform_sample
from rgbpose.layouts import get_layout


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


# --------------------------------------------------------------- PYSKL-compatible test mode
# ``test_sampling="pyskl"`` replays PYSKL's test-mode draws on a local RandomState(255). The
# expected lists below are derived by hand from the first 32-bit words of MT19937 seeded 255
# (printed once, pinned by the first test) and the legacy primitives' documented consumption:
#   * rand() (PYSKL's p_interval ratio, made for every clip) takes 2 words and is discarded;
#   * randint(1) (its offset in [0, 1)) takes no word: the value is 0;
#   * randint(size) for a segment of size s >= 2: w & mask with mask = 2^k - 1 >= s - 1, words
#     rejected while the result exceeds s - 1;
#   * choice(L + 1, T - L, replace=False) is permutation(L + 1)[:T - L]: a Fisher-Yates shuffle
#     of arange(L + 1) with, for i = L .. 1, j = w & mask(i) (rejected while > i) and swap
#     a[i] <-> a[j] -- all L + 1 slots are shuffled even when T - L is 0.
# w & 7 = (last three decimal digits) % 8, w & 3 = (last two) % 4, w & 1 = w % 2.
WORDS_255 = [
    1992592179,  # w0
    1460470953,  # w1
    957929695,  # w2: &1 = 1, &3 = 3, &7 = 7
    2012040825,  # w3: &1 = 1, &3 = 1, &7 = 1
    1383941606,  # w4: &1 = 0, &3 = 2, &7 = 6
    4205928325,  # w5: &1 = 1, &3 = 1, &7 = 5
    136570031,  # w6: &1 = 1, &3 = 3, &7 = 7
    4180688888,  # w7: &1 = 0, &3 = 0, &7 = 0
    3342830101,  # w8: &1 = 1, &3 = 1, &7 = 5
    1959227721,  # w9: &1 = 1, &3 = 1, &7 = 1
    1110646450,  # w10: &1 = 0, &3 = 2, &7 = 2
    1417693748,  # w11: &1 = 0, &3 = 0, &7 = 4
    1663577209,  # w12: &1 = 1, &3 = 1, &7 = 1
]


def test_pyskl_word_stream_of_seed_255():
    words = np.random.RandomState(255).randint(0, 2**32, size=len(WORDS_255), dtype=np.uint32)
    assert words.tolist() == WORDS_255
    # The consumption rules the derivations use: rand() takes two words, randint(1) none.
    rs = np.random.RandomState(255)
    rs.rand()
    rs.randint(1)
    assert rs.randint(0, 2**32, dtype=np.uint32) == WORDS_255[2]


PYSKL_CASES = {
    # T < L, T >= n: no draw affects the indices; clip i starts at i * T // n = 0, 1.
    "T<L": ((3, 5, 2), [0, 1, 2, 0, 1, 1, 2, 0, 1, 2]),
    # T < L, T < n: clip i starts at i: arange(i, i + 3) % 2.
    "T<L,T<n": ((2, 3, 3), [0, 1, 0, 1, 0, 1, 0, 1, 0]),
    # T == L: no gap (T - L = 0), so arange(4) per clip; the draws (clip 0: rand w0 w1, the
    # shuffle of 5 slots w2..w6; clip 1: rand w7 w8, shuffle w9..w12) do not show here.
    "T==L": ((4, 4, 2), [0, 1, 2, 3, 0, 1, 2, 3]),
    # L < T < 2L, T=6, L=4: two gaps among 5 slots.
    # clip 0: rand w0 w1; shuffle [0,1,2,3,4]: i=4 w2&7=7 > 4 rejected, w3&7=1 -> swap 4,1
    #   [0,4,2,3,1]; i=3 w4&3=2 -> [0,4,3,2,1]; i=2 w5&3=1 -> [0,3,4,2,1]; i=1 w6&1=1 (no-op).
    #   gaps {0, 3}: offsets per slot [1,0,0,1,0], cumsum [1,1,1,2,2][:-1] + arange(4) = 1 2 3 5.
    # clip 1: rand w7 w8; i=4 w9&7=1 -> [0,4,2,3,1]; i=3 w10&3=2 -> [0,4,3,2,1];
    #   i=2 w11&3=0 -> [3,4,0,2,1]; i=1 w12&1=1 (no-op). gaps {3, 4}: cumsum [0,0,0,1] -> 0 1 2 4.
    "L<T<2L": ((6, 4, 2), [1, 2, 3, 5, 0, 1, 2, 4]),
    # L < T < 2L, T=7: the same shuffles, three gaps: clip 0 {0, 3, 4} -> cumsum [1,1,1,2]
    # -> 1 2 3 5; clip 1 {3, 4, 0} -> the same set -> 1 2 3 5.
    "L<T<2L,3gaps": ((7, 4, 2), [1, 2, 3, 5, 1, 2, 3, 5]),
    # T == 2L, T=8, L=4: bounds [0,2,4,6,8], every size 2 (mask 1).
    # rand w0 w1; offsets w2&1=1, w3&1=1, w4&1=0, w5&1=1 -> 0+1, 2+1, 4+0, 6+1.
    "T==2L": ((8, 4, 1), [1, 3, 4, 7]),
    # T >= 2L, T=10, L=4: bounds [0,2,5,7,10], sizes 2,3,2,3 (masks 1,3,1,3; no rejection).
    # clip 0: rand w0 w1; w2&1=1, w3&3=1, w4&1=0, w5&3=1 -> 1, 3, 5, 8.
    # clip 1: rand w6 w7; w8&1=1, w9&3=1, w10&1=0, w11&3=0 -> 1, 3, 5, 7.
    "T>2L": ((10, 4, 2), [1, 3, 5, 8, 1, 3, 5, 7]),
    # L < T < 2L, T=10, L=6: four gaps among 7 slots (mask 7 for i = 6..4).
    # rand w0 w1; i=6 w2&7=7 > 6 rejected, w3&7=1 -> [0,6,2,3,4,5,1]; i=5 w4&7=6 > 5 rejected,
    # w5&7=5 (no-op); i=4 w6&7=7 > 4 rejected, w7&7=0 -> [4,6,2,3,0,5,1]; i=3 w8&3=1 ->
    # [4,3,2,6,0,5,1]; i=2 w9&3=1 -> [4,2,3,6,0,5,1]; i=1 w10&1=0 -> [2,4,3,6,0,5,1].
    # gaps {2, 4, 3, 6}: offsets [0,0,1,1,1,0,1], cumsum [0,0,1,2,3,3] + arange(6) -> 0 1 3 5 7 8.
    "L<T<2L,rejections": ((10, 6, 1), [0, 1, 3, 5, 7, 8]),
}


@pytest.mark.parametrize("case", list(PYSKL_CASES))
def test_pyskl_test_sampling_hand_derived(case):
    (t, clip_len, num_clips), expected = PYSKL_CASES[case]
    got = uniform_sample(t, clip_len, num_clips, test_mode=True, test_sampling="pyskl")
    assert got.dtype == np.int64
    assert got.tolist() == expected


def test_pyskl_test_sampling_multi_modality_restarts_each_modality():
    # T=10: rgb L=4 (T >= 2L) and pose L=6 (L < T < 2L), each from w0 as if sampled alone
    # (cases "T>2L" clip 0 and "L<T<2L,rejections"), whatever the modality order.
    expected = {"rgb": [1, 3, 5, 8], "pose": [0, 1, 3, 5, 7, 8]}
    for lens in ({"rgb": 4, "pose": 6}, {"pose": 6, "rgb": 4}):
        got = mm_uniform_sample(10, lens, test_mode=True, test_sampling="pyskl")
        assert {k: v.tolist() for k, v in got.items()} == expected


def test_pyskl_and_default_streams_differ_only_where_draws_matter():
    # T < L has no randomness: both streams agree; T >= L: different draws (default unchanged).
    for args in ((3, 5, 2), (2, 3, 3), (4, 4, 2)):
        np.testing.assert_array_equal(
            uniform_sample(*args, test_mode=True, test_sampling="pyskl"),
            uniform_sample(*args, test_mode=True),
        )
    assert uniform_sample(10, 4, 2, test_mode=True).tolist() != PYSKL_CASES["T>2L"][1]
    # Skipping PYSKL's p_interval draws would read w0.. for the offsets: w0&1=1, w1&3=1,
    # w2&1=1, w3&3=1 -> 1, 3, 6, 8, not PYSKL's 1, 3, 5, 8.
    bounds = np.array([0, 2, 5, 7, 10])
    no_interval = bounds[:-1] + np.random.RandomState(255).randint(np.diff(bounds))
    assert no_interval.tolist() == [1, 3, 6, 8]


def test_pyskl_test_sampling_leaves_global_rng_alone():
    np.random.seed(7)
    before = np.random.get_state()
    a = uniform_sample(10, 4, 2, test_mode=True, test_sampling="pyskl")
    mm = mm_uniform_sample(10, {"rgb": 4, "pose": 6}, test_mode=True, test_sampling="pyskl")
    after = np.random.get_state()
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])
    # ... and does not read it: another global state gives the same indices.
    np.random.seed(8)
    np.testing.assert_array_equal(
        a, uniform_sample(10, 4, 2, test_mode=True, test_sampling="pyskl")
    )
    assert mm["pose"].tolist() == PYSKL_CASES["L<T<2L,rejections"][1]
    np.random.set_state(before)


def test_test_sampling_is_validated():
    with pytest.raises(ValueError, match="test_sampling"):
        uniform_sample(10, 4, test_mode=True, test_sampling="PYSKL")
    with pytest.raises(ValueError, match="test_sampling"):
        PipelineConfig(test_sampling="legacy")
    assert PipelineConfig().test_sampling == "ours"


def test_dataset_passes_test_sampling(monkeypatch):
    # The dataset hands data.test_sampling to the sampler; val and test items use it.
    seen = []

    def spy(*args, **kwargs):
        out = mm_uniform_sample(*args, **kwargs)
        seen.append((kwargs["test_mode"], kwargs["test_sampling"], out["pose"].tolist()))
        return out

    monkeypatch.setattr(datasets, "mm_uniform_sample", spy)
    kp = np.broadcast_to(10 + 3.0 * np.arange(17)[:, None], (1, 10, 17, 2)).astype(np.float32)
    score = np.ones((1, 10, 17), np.float32)
    ann = [{"frame_dir": "x", "label": 0, "total_frames": 10, "img_shape": (96, 128)}]
    ann[0].update(keypoint=kp, keypoint_score=score)
    cfg = PipelineConfig(modality="pose", pose_clip_len=4, test_sampling="pyskl")
    views = TestViews(num_clips=2)
    layout = get_layout("coco17")
    datasets.ActionDataset(cfg, ann, "test", layout=layout, views=views)[0]
    datasets.ActionDataset(cfg, ann, "val", layout=layout, views=views)[0]
    assert seen == [(True, "pyskl", PYSKL_CASES["T>2L"][1]), (True, "pyskl", [1, 3, 5, 8])]
