"""Uniform clip sampling (PYSKL ``UniformSampleFrames`` / ``MMUniformSampleFrames``, DESIGN.md 3.5).

A clip of ``clip_len`` (L) frame indices is drawn from a video of ``num_frames`` (T) frames:

* ``T < L``: a start frame, then ``L`` consecutive frames looping modulo ``T``;
* ``L <= T < 2L``: ``T - L`` distinct "gap" positions among ``L + 1`` are chosen; frame ``k`` is
  ``k + (number of gaps at positions <= k)``, i.e. ``arange(L) + cumsum(gaps)[:-1]``, so the
  clip is sorted, distinct and skips exactly ``T - L`` frames;
* ``T >= 2L``: ``L`` equal segments with bounds ``arange(L + 1) * T // L``; one random frame
  in each segment.

Training draws from the caller's ``np.random.Generator``.  Testing is deterministic: a local
generator seeded 255 is created per call, so the indices of a sample never depend on what was
sampled before and the global numpy RNG is never touched.  The exact test formulas for clip
``i`` of ``n`` (one generator shared by the ``n`` clips, drawn in order):

* ``T < L``: ``start = i if T < n else i * T // n``; ``inds = arange(start, start + L) % T``;
* ``L <= T < 2L``: ``gaps = rng.choice(L + 1, T - L, replace=False)``; as in training;
* ``T >= 2L``: ``inds = bounds[:-1] + (one integer draw in [0, size) per segment)``.

Two test-mode streams (``test_sampling``, the run config's ``data.test_sampling``):

* ``"ours"`` (default): ``np.random.default_rng(255)`` (PCG64); segment draws are
  ``rng.integers(sizes)``.
* ``"pyskl"``: PYSKL's exact test indices.  PYSKL re-seeds the *global* legacy RNG with
  ``np.random.seed(255)`` on every call and, per clip, first makes its ``p_interval`` draws
  (one uniform double, which consumes two 32-bit MT19937 words, then an offset draw in
  ``[0, 1)``, which consumes none) before the clip's own draws (``choice`` without replacement,
  which shuffles all ``L + 1`` slots even when ``T == L``; ``randint(sizes)``, one masked
  rejection draw per segment of size > 1).  We make the same calls, in the same order, on a
  local ``np.random.RandomState(255)``: identical indices, global state untouched.

The ``T < L`` formula has no randomness, so both streams give the same short-video indices; for
``T >= L`` they give different draws from the same distribution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

TEST_SEED = 255
#: test-mode index streams (see the module docstring); the first is the default
TEST_SAMPLINGS = ("ours", "pyskl")
TestSampling = Literal["ours", "pyskl"]

Rng = np.random.Generator | np.random.RandomState


def _one_clip(num_frames: int, clip_len: int, rng: Rng) -> np.ndarray:
    """Indices of one clip for ``T >= L`` (the two randomised cases shared by train and test);
    ``rng`` is a ``Generator`` or, for PYSKL's test stream, a legacy ``RandomState``."""
    if num_frames < 2 * clip_len:
        # Skip T - L frames: distinct gap positions among the L + 1 slots between/around frames.
        gaps = rng.choice(clip_len + 1, num_frames - clip_len, replace=False)
        offset = np.zeros(clip_len + 1, dtype=np.int64)
        offset[gaps] = 1
        return np.arange(clip_len, dtype=np.int64) + np.cumsum(offset)[:-1]
    bounds = np.arange(clip_len + 1, dtype=np.int64) * num_frames // clip_len
    sizes = np.diff(bounds)
    if isinstance(rng, np.random.RandomState):
        return bounds[:-1] + rng.randint(sizes)
    return bounds[:-1] + rng.integers(sizes)


def _check(num_frames: int, clip_len: int, num_clips: int, test_sampling: str) -> None:
    if test_sampling not in TEST_SAMPLINGS:
        raise ValueError(f"test_sampling must be one of {TEST_SAMPLINGS}, got {test_sampling!r}")
    if num_frames < 1:
        raise ValueError(f"cannot sample from a video with {num_frames} frames")
    if clip_len < 1 or num_clips < 1:
        raise ValueError(f"clip_len and num_clips must be >= 1, got {clip_len}, {num_clips}")


def uniform_sample(
    num_frames: int,
    clip_len: int,
    num_clips: int = 1,
    *,
    test_mode: bool = False,
    rng: np.random.Generator | None = None,
    seed: int = TEST_SEED,
    test_sampling: TestSampling = "ours",
) -> np.ndarray:
    """Frame indices of ``num_clips`` clips of ``clip_len`` frames, concatenated.

    Args:
        num_frames: T, frames in the video (or pose sequence).
        clip_len: L, frames per clip.
        num_clips: n, clips (test views).
        test_mode: deterministic sampling with a local generator seeded ``seed`` (module doc).
        rng: generator for training draws (required unless ``test_mode``).
        seed: the test-mode seed (PYSKL's 255).
        test_sampling: the test-mode stream: ``"ours"`` (``default_rng``) or ``"pyskl"``
            (PYSKL's exact indices from a local ``RandomState``); ignored in training.

    Returns:
        int64 array ``[num_clips * clip_len]`` of indices in ``[0, num_frames)``.
    """
    _check(num_frames, clip_len, num_clips, test_sampling)
    pyskl_draws = test_mode and test_sampling == "pyskl"
    if test_mode:
        # A fresh local generator per call (never the global one).
        rng = np.random.RandomState(seed) if pyskl_draws else np.random.default_rng(seed)
    elif rng is None:
        raise ValueError("training-mode sampling needs an np.random.Generator")
    clips = []
    for i in range(num_clips):
        if pyskl_draws:
            # PYSKL's p_interval draws, made even with p_interval 1 (ratio 1, offset 0): they
            # only advance the stream, so the clip's own draws below come where PYSKL's do.
            rng.random_sample()
            rng.randint(1)
        if num_frames < clip_len:
            if test_mode:
                start = i if num_frames < num_clips else i * num_frames // num_clips
            else:
                start = int(rng.integers(0, num_frames))
            inds = np.arange(start, start + clip_len, dtype=np.int64)
        else:
            inds = _one_clip(num_frames, clip_len, rng)
        clips.append(inds)
    return np.mod(np.concatenate(clips), num_frames)


def mm_uniform_sample(
    num_frames: int,
    clip_lens: Mapping[str, int],
    num_clips: int = 1,
    *,
    test_mode: bool = False,
    rng: np.random.Generator | None = None,
    seed: int = TEST_SEED,
    test_sampling: TestSampling = "ours",
) -> dict[str, np.ndarray]:
    """Sample each modality independently from the same ``num_frames`` (PYSKL MMUniformSample).

    ``clip_lens`` maps a modality name to its clip length, e.g. ``{"rgb": 8, "pose": 32}``.
    Training draws the modalities in the mapping's order from the one ``rng`` (PYSKL's config
    order is RGB then Pose, which ``rgbpose.data.datasets`` keeps).  In test mode each modality
    gets its own fresh generator seeded ``seed`` (of the ``test_sampling`` stream), as PYSKL
    re-seeds once per modality.

    Returns:
        ``{modality: int64 [num_clips * clip_len]}``.
    """
    return {
        name: uniform_sample(
            num_frames,
            length,
            num_clips,
            test_mode=test_mode,
            rng=rng,
            seed=seed,
            test_sampling=test_sampling,
        )
        for name, length in clip_lens.items()
    }
