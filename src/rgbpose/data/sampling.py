"""Uniform clip sampling (PYSKL ``UniformSampleFrames`` / ``MMUniformSampleFrames``, DESIGN.md 3.5).

A clip of ``clip_len`` (L) frame indices is drawn from a video of ``num_frames`` (T) frames:

* ``T < L``: a start frame, then ``L`` consecutive frames looping modulo ``T``;
* ``L <= T < 2L``: ``T - L`` distinct "gap" positions among ``L + 1`` are chosen; frame ``k`` is
  ``k + (number of gaps at positions <= k)``, i.e. ``arange(L) + cumsum(gaps)[:-1]``, so the
  clip is sorted, distinct and skips exactly ``T - L`` frames;
* ``T >= 2L``: ``L`` equal segments with bounds ``arange(L + 1) * T // L``; one random frame
  in each segment.

Training draws from the caller's ``np.random.Generator``.  Testing is deterministic: a local
``np.random.default_rng(seed)`` (seed 255) is created per call, so the indices of a sample never
depend on what was sampled before and the global numpy RNG is never touched.  The exact test
formulas for clip ``i`` of ``n`` (one generator shared by the ``n`` clips, drawn in order):

* ``T < L``: ``start = i if T < n else i * T // n``; ``inds = arange(start, start + L) % T``;
* ``L <= T < 2L``: ``gaps = rng.choice(L + 1, T - L, replace=False)``; as in training;
* ``T >= 2L``: ``inds = bounds[:-1] + rng.integers(diff(bounds))``; as in training.

PYSKL re-seeds the *global* RNG with ``np.random.seed(255)`` and uses the legacy stream, so its
test indices for ``T >= L`` differ from ours (same distribution, different draws); the
``T < L`` formula has no randomness and matches PYSKL exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

TEST_SEED = 255


def _one_clip(num_frames: int, clip_len: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of one clip for ``T >= L`` (the two randomised cases shared by train and test)."""
    if num_frames < 2 * clip_len:
        # Skip T - L frames: distinct gap positions among the L + 1 slots between/around frames.
        gaps = rng.choice(clip_len + 1, num_frames - clip_len, replace=False)
        offset = np.zeros(clip_len + 1, dtype=np.int64)
        offset[gaps] = 1
        return np.arange(clip_len, dtype=np.int64) + np.cumsum(offset)[:-1]
    bounds = np.arange(clip_len + 1, dtype=np.int64) * num_frames // clip_len
    return bounds[:-1] + rng.integers(np.diff(bounds))


def _check(num_frames: int, clip_len: int, num_clips: int) -> None:
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
) -> np.ndarray:
    """Frame indices of ``num_clips`` clips of ``clip_len`` frames, concatenated.

    Args:
        num_frames: T, frames in the video (or pose sequence).
        clip_len: L, frames per clip.
        num_clips: n, clips (test views).
        test_mode: deterministic sampling with a local ``default_rng(seed)`` (see module doc).
        rng: generator for training draws (required unless ``test_mode``).
        seed: the test-mode seed (PYSKL's 255).

    Returns:
        int64 array ``[num_clips * clip_len]`` of indices in ``[0, num_frames)``.
    """
    _check(num_frames, clip_len, num_clips)
    if test_mode:
        rng = np.random.default_rng(seed)
    elif rng is None:
        raise ValueError("training-mode sampling needs an np.random.Generator")
    clips = []
    for i in range(num_clips):
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
) -> dict[str, np.ndarray]:
    """Sample each modality independently from the same ``num_frames`` (PYSKL MMUniformSample).

    ``clip_lens`` maps a modality name to its clip length, e.g. ``{"rgb": 8, "pose": 32}``.
    Training draws the modalities in the mapping's order from the one ``rng`` (PYSKL's config
    order is RGB then Pose, which ``rgbpose.data.datasets`` keeps).  In test mode each modality
    gets its own fresh ``default_rng(seed)``, as PYSKL re-seeds once per modality.

    Returns:
        ``{modality: int64 [num_clips * clip_len]}``.
    """
    return {
        name: uniform_sample(num_frames, length, num_clips, test_mode=test_mode, rng=rng, seed=seed)
        for name, length in clip_lens.items()
    }
