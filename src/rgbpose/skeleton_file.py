"""Read and write NTU RGB+D ``.skeleton`` text files (DESIGN.md section 2).

Layout: frame count; per frame a body count, then per body an info line (bodyID clippedEdges
handLeftConfidence handLeftState handRightConfidence handRightState isRestricted leanX leanY
trackingState), the joint count (25) and one line of 12 numbers per joint: x y z depthX depthY
colorX colorY orientationW orientationX orientationY orientationZ trackingState.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .io import BadSampleError, write_text_atomic

NUM_JOINTS = 25


@dataclass
class Body:
    """One Kinect body in one frame.  ``joints`` is ``[25, 12]`` in file column order."""

    body_id: str
    joints: np.ndarray
    info: tuple[float, ...] = (0, 0, 0, 0, 0, 0, 0.0, 0.0, 2)  # the 9 fields after bodyID

    @property
    def xyz(self) -> np.ndarray:
        return self.joints[:, 0:3]

    @property
    def color_xy(self) -> np.ndarray:
        return self.joints[:, 5:7]

    @property
    def tracking(self) -> np.ndarray:
        return self.joints[:, 11]


@dataclass
class SkeletonSequence:
    """All frames of a ``.skeleton`` file: ``frames[t]`` is the list of bodies in frame t."""

    frames: list[list[Body]] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def body_ids(self) -> list[str]:
        """Distinct body IDs in order of first appearance."""
        seen: dict[str, None] = {}
        for bodies in self.frames:
            for b in bodies:
                seen.setdefault(b.body_id, None)
        return list(seen)


def _fmt(v: float) -> str:
    return format(float(v), ".7g")


def format_skeleton(seq: SkeletonSequence) -> str:
    """Render ``seq`` in the NTU text format."""
    out = [str(seq.num_frames)]
    for bodies in seq.frames:
        out.append(str(len(bodies)))
        for b in bodies:
            info = [str(int(v)) if i not in (6, 7) else _fmt(v) for i, v in enumerate(b.info)]
            out.append(" ".join([b.body_id, *info]))
            out.append(str(NUM_JOINTS))
            for row in b.joints:
                out.append(" ".join([*(_fmt(v) for v in row[:11]), str(int(row[11]))]))
    return "\n".join(out) + "\n"


def write_skeleton(seq: SkeletonSequence, path: str | os.PathLike) -> None:
    """Write ``seq`` to ``path`` atomically in the NTU ``.skeleton`` format."""
    write_text_atomic(path, format_skeleton(seq))


def _numbers(line: str, count: int, path: str, lineno: int, what: str) -> list[float]:
    parts = line.split()
    if len(parts) != count:
        raise BadSampleError(
            path, f"line {lineno}: expected {count} values ({what}), got {len(parts)}"
        )
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise BadSampleError(
            path, f"line {lineno}: non-numeric value in {what}: {line.strip()!r}"
        ) from None


def _int(line: str | None, path: str, lineno: int, what: str) -> int:
    if line is None:
        raise BadSampleError(path, f"truncated: expected {what} at line {lineno}")
    try:
        value = int(line.strip())
    except ValueError:
        raise BadSampleError(
            path, f"line {lineno}: expected an integer ({what}), got {line.strip()!r}"
        ) from None
    if value < 0:
        raise BadSampleError(path, f"line {lineno}: negative {what}: {value}")
    return value


def read_skeleton(path: str | os.PathLike) -> SkeletonSequence:
    """Parse a ``.skeleton`` file; raise ``BadSampleError`` naming the file and line on any defect."""
    path = str(path)
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadSampleError(path, f"cannot read skeleton file: {exc}") from exc
    if not lines:
        raise BadSampleError(path, "empty skeleton file")
    it: Iterator[tuple[int, str]] = iter(enumerate(lines, start=1))

    def nxt(what: str) -> tuple[int, str]:
        try:
            return next(it)
        except StopIteration:
            raise BadSampleError(
                path, f"truncated: expected {what} after line {len(lines)}"
            ) from None

    n, line = nxt("frame count")
    num_frames = _int(line, path, n, "frame count")
    seq = SkeletonSequence()
    for t in range(num_frames):
        n, line = nxt(f"body count of frame {t}")
        bodies = []
        for _ in range(_int(line, path, n, f"body count of frame {t}")):
            n, line = nxt("body info line")
            parts = line.split()
            if len(parts) != 10:
                raise BadSampleError(path, f"line {n}: body info needs 10 fields, got {len(parts)}")
            info = tuple(_numbers(" ".join(parts[1:]), 9, path, n, "body info"))
            n, line = nxt("joint count")
            if _int(line, path, n, "joint count") != NUM_JOINTS:
                raise BadSampleError(
                    path, f"line {n}: expected {NUM_JOINTS} joints, got {line.strip()}"
                )
            joints = np.empty((NUM_JOINTS, 12), dtype=np.float64)
            for v in range(NUM_JOINTS):
                n, line = nxt(f"joint {v}")
                joints[v] = _numbers(line, 12, path, n, f"joint {v}")
            if not np.isfinite(joints).all():
                raise BadSampleError(path, f"non-finite joint values in frame {t}")
            bodies.append(Body(parts[0], joints, info))
        seq.frames.append(bodies)
    for n, line in it:
        if line.strip():
            raise BadSampleError(path, f"line {n}: unexpected data after the last frame")
    return seq
