"""The training frame store: one file per video holding the frames training can read, each
encoded on its own, cropped to a region that contains every clip's compaction box.

Why: the RGB pipelines decode 8 sparse frames per clip; from a GOP-32 540p H.264 video every
frame costs a decode from the previous key frame (~65 ms per clip on one core), while a
person-region JPEG per frame decodes in ~0.4 ms (``benchmarks/loader.py``).  The store trades
disk (~20 KB per frame at quality 90, 4:4:4, against ~2 KB in the mp4) for that.

File ``<store_dir>/<name>.frames`` (written by ``rgbpose frame-store``,
:mod:`rgbpose.preprocess.framestore`)::

    b"RGBPFS1\\n" | uint64 LE header length | header (UTF-8 JSON) | frame 0 bytes | frame 1 ...

Header: ``version``, ``name``, ``frame_hw`` (the decoded video's ``[H, W]``), ``region``
(``[x1, y1, x2, y2]``: the stored crop in video pixels, inside the frame), ``num_frames`` (the
video's decoded length), ``frames`` (the stored video frame indices, ascending), ``offsets``
(byte offsets of each frame relative to the end of the header, plus the end), ``codec``
(``jpeg`` | ``png``), ``quality``, ``fingerprint`` (what the stage built it from).

Reading (:class:`FrameStore`) follows :func:`rgbpose.data.video.read_frames`: indices in
``[n, n + tolerance)`` clamp to the last frame, others raise ``BadSampleError`` naming the store
file; every distinct frame is decoded once.  An index the store does not hold is an error (the
store is older than the annotations: rebuild it).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rgbpose.io import BadSampleError, atomic_path

MAGIC = b"RGBPFS1\n"
VERSION = 1
SUFFIX = ".frames"
CODECS = ("jpeg", "png")


def store_path(store_dir: str | os.PathLike, name: str) -> Path:
    return Path(store_dir) / f"{name}{SUFFIX}"


def encode_frame(rgb: np.ndarray, codec: str = "jpeg", quality: int = 90) -> bytes:
    """One uint8 RGB frame ``[h, w, 3]`` as JPEG (4:4:4, ``quality``) or lossless PNG bytes."""
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if codec == "jpeg":
        params = [
            cv2.IMWRITE_JPEG_QUALITY, int(quality),
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
        ]  # fmt: skip
        ok, buf = cv2.imencode(".jpg", bgr, params)
    elif codec == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
    if not ok:
        raise RuntimeError(f"cv2.imencode failed ({codec})")
    return buf.tobytes()


def write_store(
    path: str | os.PathLike,
    *,
    name: str,
    frame_hw: tuple[int, int],
    region: Sequence[int],
    num_frames: int,
    frames: dict[int, bytes],
    codec: str,
    quality: int,
    fingerprint: str,
) -> int:
    """Write a store file atomically; returns its size in bytes."""
    ids = sorted(frames)
    offsets = [0]
    for i in ids:
        offsets.append(offsets[-1] + len(frames[i]))
    header = {
        "version": VERSION,
        "name": name,
        "frame_hw": [int(v) for v in frame_hw],
        "region": [int(v) for v in region],
        "num_frames": int(num_frames),
        "frames": ids,
        "offsets": offsets,
        "codec": codec,
        "quality": int(quality),
        "fingerprint": fingerprint,
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(head)) + head)
        for i in ids:
            f.write(frames[i])
    return len(MAGIC) + 8 + len(head) + offsets[-1]


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The header of a store file; ``BadSampleError`` naming it when it is not one."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = _read_header(f, path)
    except OSError as exc:
        raise BadSampleError(path, f"cannot read frame store ({exc.strerror or exc})") from exc
    return head


def _read_header(f: Any, path: Path) -> dict[str, Any]:
    lead = f.read(len(MAGIC) + 8)
    if len(lead) < len(MAGIC) + 8 or lead[: len(MAGIC)] != MAGIC:
        raise BadSampleError(path, "not a frame store file (bad magic)")
    (n,) = struct.unpack("<Q", lead[len(MAGIC) :])
    raw = f.read(n)
    try:
        head = json.loads(raw)
        if head.get("version") != VERSION:
            raise ValueError(f"version {head.get('version')!r}, expected {VERSION}")
        frames, offsets = head["frames"], head["offsets"]
        if len(offsets) != len(frames) + 1:
            raise ValueError("offsets do not match frames")
        head["data_start"] = len(MAGIC) + 8 + n
    except (ValueError, KeyError, TypeError) as exc:
        raise BadSampleError(path, f"corrupt frame store header ({exc})") from exc
    return head


class FrameStore:
    """Read access to one store file (the header is read when opened)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.header = read_header(self.path)
        self.region: tuple[int, int, int, int] = tuple(self.header["region"])  # type: ignore[assignment]
        self.frame_hw: tuple[int, int] = tuple(self.header["frame_hw"])  # type: ignore[assignment]
        self.num_frames = int(self.header["num_frames"])
        self._pos = {int(i): k for k, i in enumerate(self.header["frames"])}

    def covers(self, box: tuple[int, int, int, int]) -> bool:
        """Whether the part of ``box`` (x1, y1, x2, y2; may leave the frame) inside the frame
        lies in the stored region, so cropping the store equals cropping the full frame."""
        h, w = self.frame_hw
        x1, y1, x2, y2 = max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)
        if x2 <= x1 or y2 <= y1:
            return True  # the box shows nothing of the frame: all padding
        r = self.region
        return r[0] <= x1 and r[1] <= y1 and x2 <= r[2] and y2 <= r[3]

    def read(self, indices: Sequence[int] | np.ndarray, tolerance: int = 5) -> np.ndarray:
        """uint8 RGB crops ``[len(indices), region h, region w, 3]`` of video frames ``indices``
        (clamping and errors as :func:`rgbpose.data.video.read_frames`)."""
        uniq, inverse, bufs = self._read_bytes(indices, tolerance)
        x1, y1, x2, y2 = self.region
        out = np.empty((uniq.size, y2 - y1, x2 - x1, 3), dtype=np.uint8)
        for j, (i, buf) in enumerate(zip(uniq, bufs, strict=True)):
            img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
            if img is None or img.shape != out.shape[1:]:
                got = None if img is None else img.shape
                raise BadSampleError(
                    self.path, f"frame {int(i)} does not decode to {out.shape[1:]} (got {got})"
                )
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=out[j])
        return out[inverse]

    def read_encoded(
        self, indices: Sequence[int] | np.ndarray, tolerance: int = 5
    ) -> list[np.ndarray]:
        """The encoded bytes (uint8 1-D arrays) of video frames ``indices``, undecoded (for
        decoding on the GPU; clamping and errors as :meth:`read`)."""
        _, inverse, bufs = self._read_bytes(indices, tolerance)
        arrays = [np.frombuffer(b, np.uint8) for b in bufs]
        return [arrays[k] for k in inverse]

    def _read_bytes(
        self, indices: Sequence[int] | np.ndarray, tolerance: int
    ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """(distinct clamped indices, the position of each asked index among them, the encoded
        bytes of each distinct frame)."""
        n = self.num_frames
        inds = np.asarray(indices, dtype=np.int64).reshape(-1)
        if inds.size and (inds.min() < 0 or inds.max() >= n + tolerance):
            raise BadSampleError(
                self.path,
                f"frame index out of range: asked for {inds.min()}..{inds.max()}, the video has "
                f"{n} frames (tolerance {tolerance})",
            )
        inds = np.minimum(inds, n - 1)
        uniq, inverse = np.unique(inds, return_inverse=True)
        missing = [int(i) for i in uniq if int(i) not in self._pos]
        if missing:
            raise BadSampleError(
                self.path,
                f"frames {missing[:5]} are not in the store (it is older than the annotations: "
                "rebuild it with rgbpose frame-store)",
            )
        offsets, start = self.header["offsets"], self.header["data_start"]
        bufs = []
        with open(self.path, "rb") as f:
            for i in uniq:
                k = self._pos[int(i)]
                f.seek(start + offsets[k])
                bufs.append(f.read(offsets[k + 1] - offsets[k]))
        return uniq, inverse.reshape(-1), bufs
