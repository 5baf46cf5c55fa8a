"""Sparse frame decoding with decord (PYSKL's DecordInit + DecordDecode).

One ``VideoReader`` per call, deleted before returning, so data-loader workers never keep file
handles (or decoder memory) of videos they have finished with.  Every failure is a
``BadSampleError`` naming the file.

Frame counts: the annotation's ``total_frames`` comes from the skeleton/pose sequence, and a
re-encoded video can decode to a frame or two more or fewer.  Indices up to ``tolerance``
frames past the decoded length are clamped to the last frame (the sampled clip then repeats
it); indices further out mean the video and the annotation disagree and raise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rgbpose.io import BadSampleError

DEFAULT_TOLERANCE = 5


def _open(path: Path, num_threads: int):
    if not path.is_file():
        raise BadSampleError(path, "video file not found")
    if path.stat().st_size == 0:
        raise BadSampleError(path, "video file is empty")
    import decord  # imported lazily: pose-only training never needs it

    try:
        return decord.VideoReader(str(path), num_threads=num_threads)
    except (RuntimeError, decord.DECORDError) as exc:
        raise BadSampleError(path, f"unreadable or corrupt video ({exc})") from exc


def video_num_frames(path: str | os.PathLike, num_threads: int = 1) -> int:
    """Number of frames decord reports for ``path`` (BadSampleError if unreadable)."""
    vr = _open(Path(path), num_threads)
    try:
        return len(vr)
    finally:
        del vr


def read_frames(
    path: str | os.PathLike,
    indices: np.ndarray | list[int],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    num_threads: int = 1,
) -> np.ndarray:
    """Decode frames ``indices`` of ``path`` as uint8 RGB ``[len(indices), H, W, 3]``.

    Indices may repeat and come in any order (each distinct frame is decoded once).  Indices in
    ``[n, n + tolerance)`` for a video of ``n`` decoded frames are clamped to ``n - 1`` (see
    the module docstring); negative indices or ones beyond that raise ``BadSampleError``, as do
    missing, empty, truncated or otherwise undecodable files.  ``num_threads=1`` because data
    loading parallelises across worker processes.
    """
    path = Path(path)
    inds = np.asarray(indices, dtype=np.int64).reshape(-1)
    vr = _open(path, num_threads)
    try:
        n = len(vr)
        if n == 0:
            raise BadSampleError(path, "video has no frames")
        if inds.size and (inds.min() < 0 or inds.max() >= n + tolerance):
            raise BadSampleError(
                path,
                f"frame index out of range: asked for {inds.min()}..{inds.max()}, the video has "
                f"{n} frames (tolerance {tolerance})",
            )
        inds = np.minimum(inds, n - 1)
        uniq, inverse = np.unique(inds, return_inverse=True)
        try:
            if uniq.size == 0:
                return np.zeros((0, *vr[0].shape), dtype=np.uint8)
            frames = vr.get_batch(uniq.tolist()).asnumpy()
        except Exception as exc:  # decord raises bare DECORDError/RuntimeError/IndexError
            raise BadSampleError(path, f"decoding frames failed ({exc})") from exc
    finally:
        del vr
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] != uniq.size:
        raise BadSampleError(path, f"decoder returned frames of shape {frames.shape}")
    return np.ascontiguousarray(frames[inverse])
