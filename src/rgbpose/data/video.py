"""Video decoding with decord: the one opener every stage uses, sparse and sequential reads.

``open_reader`` is where a video file is opened: a missing, empty or undecodable file is a
``BadSampleError`` naming it.  On top of it:

* ``read_frames`` / ``video_num_frames``: sparse frame decoding for the data loader (PYSKL's
  DecordInit + DecordDecode).  One ``VideoReader`` per call, deleted before returning, so
  data-loader workers never keep file handles (or decoder memory) of videos they have finished
  with.
* ``open_video``: every frame in order, in chunks, with the video's ``VideoInfo`` (the compress
  stage and the pose estimator backends).

Every failure, while opening or while decoding, is a ``BadSampleError`` naming the file.

Frame counts: the annotation's ``total_frames`` comes from the skeleton/pose sequence, and a
re-encoded video can decode to a frame or two more or fewer.  Indices up to ``tolerance``
frames past the decoded length are clamped to the last frame (the sampled clip then repeats
it); indices further out mean the video and the annotation disagree and raise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rgbpose.io import BadSampleError

DEFAULT_TOLERANCE = 5


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (decord's can run to a stack dump), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def import_decord() -> Any:
    """The ``decord`` module, imported after OpenCV.  decord bundles its own zlib: an OpenCV
    first loaded after it cannot read or write PNG ("libpng error: bad parameters to zlib"),
    which breaks the depth and frame stores in the same process.  Import decord through this."""
    import cv2  # noqa: F401, PLC0415 - must be loaded before decord
    import decord  # noqa: PLC0415

    return decord


def open_reader(path: str | os.PathLike, num_threads: int = 1) -> Any:
    """A ``decord.VideoReader`` of ``path``.

    ``BadSampleError`` naming the file when it is missing (or not a regular file), empty (0 bytes)
    or not a decodable video.  decord is imported here, lazily: pose-only training never needs it.
    """
    path = Path(path)
    if not path.is_file():
        raise BadSampleError(path, "video file not found")
    if path.stat().st_size == 0:
        raise BadSampleError(path, "video file is empty (0 bytes)")
    decord = import_decord()

    try:
        return decord.VideoReader(str(path), num_threads=num_threads)
    except Exception as exc:  # decord raises bare RuntimeError/DECORDError for every failure
        raise BadSampleError(path, f"unreadable or corrupt video ({_first_line(exc)})") from exc


def _num_frames(vr: Any, path: Path) -> int:
    """Decoded length of an opened video; ``BadSampleError`` when it has no frames."""
    n = len(vr)
    if n == 0:
        raise BadSampleError(path, "video has no frames")
    return n


# --------------------------------------------------------------------------------------------
# Sparse reads (data loader)
# --------------------------------------------------------------------------------------------


def video_num_frames(path: str | os.PathLike, num_threads: int = 1) -> int:
    """Number of frames decord reports for ``path`` (BadSampleError if unreadable)."""
    vr = open_reader(path, num_threads)
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
    vr = open_reader(path, num_threads)
    try:
        n = _num_frames(vr, path)
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


# --------------------------------------------------------------------------------------------
# Sequential reads (compress, pose estimators)
# --------------------------------------------------------------------------------------------


class VideoInfo(NamedTuple):
    """Frame count, size and frame rate of a decoded video."""

    frames: int
    width: int
    height: int
    fps: float


class VideoFrames(NamedTuple):
    """An opened video: its info and an iterator over its RGB uint8 frames [H, W, 3]."""

    info: VideoInfo
    iterator: Iterator[np.ndarray]


def open_video(path: str | os.PathLike, chunk: int = 16) -> VideoFrames:
    """Open ``path`` for reading every frame; any failure, now or while iterating, is a
    ``BadSampleError``.

    Missing, empty (0 bytes), non-video and frameless files are reported before decoding starts
    (the first frame is decoded to learn the size).
    """
    path = Path(path)
    vr = open_reader(path)
    n = _num_frames(vr, path)
    try:
        h, w = vr[0].shape[:2]
        fps = float(vr.get_avg_fps())
    except Exception as exc:
        raise BadSampleError(path, f"unreadable or corrupt video ({_first_line(exc)})") from exc

    def frames() -> Iterator[np.ndarray]:
        for start in range(0, n, chunk):
            try:
                batch = vr.get_batch(list(range(start, min(n, start + chunk)))).asnumpy()
            except Exception as exc:
                raise BadSampleError(path, f"decoding failed at frame {start} ({exc})") from exc
            yield from batch

    return VideoFrames(VideoInfo(n, int(w), int(h), fps), frames())
