"""Kinect denoising exactly as a reference does it: ``rgbpose denoise --compat infogcn|pyskl``.

For users who compare with published numbers: the same bodies, rows and joints as the reference's
NTU preprocessing, in our pose-dict format.  ``infogcn`` is SGN's ``get_raw_skes_data.py`` +
``get_raw_denoised_data.py`` as shipped by InfoGCN (and CTR-GCN); ``pyskl`` is PYSKL's
``tools/data/ntu_preproc.py``.  Our default (``denoise.py``) applies the same thresholds but
keeps the video's timeline; the table below says what differs and why.

What both references do, on the bodies as read from the ``.skeleton`` file:

* **Packed timeline.**  Frames listing no body are dropped when the file is read; the others
  become rows 0..R-1.  A body's data is its n appearances, placed at rows ``start .. start+n-1``
  where ``start`` is the row of its first appearance: a body that is absent from some rows (while
  another body is listed) has its later appearances shifted earlier, off its true frames.
* **Motion** of a body: ``sum over x, y, z of var(coordinate)`` over its appearances' 25 joints
  pooled, in float32 as the references compute it.  **Spread test**: an appearance is valid when
  ``x extent <= 0.8 * y extent`` of its 3D joints (compared in float64, as numpy 1.x promoted
  the float32 extents); a body with an invalid fraction ``>= 0.69754`` is removed, else its
  motion becomes ``min(motion, motion over the valid appearances)``.
* A sample with a single bodyID is not denoised.  With several, bodies with ``<= 11``
  appearances are removed first; if none is left the reference crashes and we report a bad
  sample ("no valid body after denoising").  A sample with no body at all is a bad sample too.
* **Slots.**  Survivors are sorted by motion (descending, stable).  The first opens slot 1 with
  its span ``[start, end]``; each next body goes to slot 1 if its span does not overlap slot 1's
  *hull* (the min start to the max end of its bodies, not their union), else to slot 2 under the
  same test, else it is discarded.  Slot 2's hull starts as a placeholder at row 0 (``[0, 0]``
  in InfoGCN, the empty ``[0, 0)`` in PYSKL) and grows as ``[min(start, start2), max(end,
  end2)]``, so it always starts at row 0: once slot 2 holds a body, a later body fits there only
  if it starts on (InfoGCN) or after (PYSKL) slot 2's last row.  When two or more bodies
  survive the output has two slots even if slot 2 stays empty (InfoGCN's 150-value rows); a
  single survivor gives one slot.

``infogcn``:

* overlap means ``min(end1, end) - max(start1, start) > 0``: spans that touch at one row do
  not overlap, and the later body overwrites that row;
* only with several bodyIDs, after the slots are written, every row whose 150 (or 75, when one
  body survives) values sum to 0 in float32 is removed, wherever it is; that includes a row where
  the listed body has all-zero joints.  A single-bodyID sample keeps all its rows.

``pyskl``:

* overlap means the spans share a row (touching spans overlap);
* the spread test is applied to every body, not only while more than one is left.  Where it
  removes them all, PYSKL crashes (an assertion); we keep InfoGCN's outcome instead, the last
  body in order of first appearance (InfoGCN tests bodies in that order and stops at one), and
  say so on stderr (``notes``);
* ties in the final motion order keep the order of the motions before the spread test;
* one surviving body: its own rows ``start .. start+n-1`` only.  Two slots: rows
  ``0 .. max(start+n)-1``, then leading and trailing rows whose absolute values sum to ``< 1e-3``
  are cut (inner empty rows stay); then, if slot 1's joint 1 (SpineMid) is ``~0`` (abs sum
  ``< 1e-3``) in the first row and slot 2's is not (``> 1e-3``), the two slots are swapped.
  PYSKL stores float16; build-annotations does the same for every mode.

Output: ``keypoint`` (colour pixels), ``keypoint_score`` and ``keypoint3d`` follow the same
packing and slots as the references' joints; ``present[k, t]`` is True where a body's data was
written to slot k in row t.  ``frame_inds[t]`` is the video frame of output row t on the
reference's timeline: the video frame of the t-th kept row among the frames that list a body.
That is the frame the reference puts the row at; a shifted body's joints in that row come from
a later video frame (the misalignment the references have, reproduced, not repaired).

How the modes differ from the default (``none``) and why the default is what it is:

=====================  =========================  ======================  ======================
rule                   default ``none``           ``infogcn``             ``pyskl``
=====================  =========================  ======================  ======================
frames without a body  leading/trailing trimmed   dropped at read (rows   same as ``infogcn``
                       (``--empty-frames drop``:  renumbered)
                       all dropped)
a body's frames        its true frames            packed: shifted         same as ``infogcn``
                                                  earlier after a gap
spread test            first-appearance order,    same as default         every body; all wide:
                       stops at one body                                  InfoGCN's survivor
motion arithmetic      float64                    float32                 float32
slot test              union of the slot's        hull of the slot;       hull; no shared row;
                       spans, no shared frame;    touching spans share    slot 2 hull from 0;
                       empty slot 2 not output    a row (later wins);     2 slots if >= 2 bodies
                                                  slot 2 hull from 0;
                                                  2 slots if >= 2 bodies
rows removed after     none (empty frames only    several bodyIDs: rows   2 slots: leading and
the slots              by the rule above)         summing to 0, also      trailing rows ~0; one
                                                  listed all-zero bodies  body: its rows only
slot order             by motion                  by motion               swap if slot 1's
                                                                          SpineMid ~0 in row 0
=====================  =========================  ======================  ======================

Why the default: a pose frame stays its video frame (the RGB stream decodes through
``frame_inds``, and a body's joints are never moved to another body's frames); a body that fits
in a gap of a slot, or before slot 2's first body, is kept; no row is written twice; whether a
body is present comes from the file's listing, not from its coordinates summing to zero (a real
coordinate sum can be 0); actor 1 is always the body with the most motion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rgbpose.io import BadSampleError

from .denoise import Compat, with_arrays

LENGTH_THRESHOLD = 11  # bodies with <= this many appearances are noise
SPREAD_RATIO = 0.8
NOISE_RATIO = 0.69754
PYSKL_EPS = 1e-3  # PYSKL's "zero" for absolute sums of joints
SPINE_MID = 1  # joint PYSKL's slot swap looks at
ARRAY_KEYS = ("keypoint", "keypoint_score", "keypoint3d")


@dataclass(eq=False)
class PackedBody:
    """One bodyID on the references' packed timeline (see the module docstring)."""

    index: int  # its index m in the input pose dict
    frames: np.ndarray  # input frames where it is listed, [n]
    start: int  # row of its first appearance
    xyz: np.ndarray  # float32 [n, 25, 3], its appearances in order
    motion: np.float32

    @property
    def stop(self) -> int:
        """One past its last row (``start + n``)."""
        return self.start + len(self.frames)


def motion32(xyz: np.ndarray) -> np.float32:
    """``sum(var(joints pooled over appearances))`` in float32, as the references compute it."""
    return np.var(np.ascontiguousarray(xyz, np.float32).reshape(-1, 3), axis=0).sum()


def spread_valid32(xyz: np.ndarray) -> np.ndarray:
    """Per appearance: float32 x extent <= 0.8 * float32 y extent, compared in float64."""
    ext = xyz.max(axis=1) - xyz.min(axis=1)  # [n, 3], float32 like the references' scalars
    return ext[:, 0].astype(np.float64) <= SPREAD_RATIO * ext[:, 1].astype(np.float64)


def pack_bodies(present: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, list[PackedBody]]:
    """The rows (input frames listing a body) and the bodies in order of first appearance."""
    rows = np.flatnonzero(present.any(axis=0))
    bodies = []
    for m in sorted(np.flatnonzero(present.any(axis=1)), key=lambda m: present[m].argmax()):
        frames = np.flatnonzero(present[m])
        pts = np.ascontiguousarray(xyz[m, frames], np.float32)
        start = int(np.searchsorted(rows, frames[0]))
        bodies.append(PackedBody(int(m), frames, start, pts, motion32(pts)))
    return rows, bodies


def _spread_motion(body: PackedBody) -> tuple[float, np.float32]:
    """(invalid fraction, motion after the spread test) of one body."""
    valid = spread_valid32(body.xyz)
    n = len(valid)
    if valid.all():
        return 0.0, body.motion
    updated = min(body.motion, motion32(body.xyz[valid])) if valid.any() else body.motion
    return (n - int(valid.sum())) / n, updated


def select_bodies(
    bodies: list[PackedBody], mode: Compat, notes: list[str] | None = None
) -> tuple[list[PackedBody], dict[int, str]]:
    """Survivors of the length and spread tests, by motion (descending); why the others went."""
    if len(bodies) == 1:
        return list(bodies), {}
    dropped = {
        b.index: f"present in only {len(b.frames)} frames"
        for b in bodies
        if len(b.frames) <= LENGTH_THRESHOLD
    }
    kept = [b for b in bodies if b.index not in dropped]
    motion = {b.index: b.motion for b in kept}
    if mode == "pyskl":
        kept.sort(key=lambda b: -motion[b.index])  # PYSKL sorts before the spread test
    survivors = list(kept)
    for b in kept if len(kept) > 1 else ():  # neither tests a lone survivor of the length rule
        if mode == "infogcn" and len(survivors) == 1:
            break
        invalid, motion[b.index] = _spread_motion(b)
        if invalid >= NOISE_RATIO:
            dropped[b.index] = f"too wide in {invalid:.1%} of its frames"
            survivors.remove(b)
    if not survivors and len(kept) > 1:  # PYSKL crashes: keep what InfoGCN keeps
        last = [b for b in bodies if b in kept][-1]  # tested last, in order of first appearance
        del dropped[last.index]
        survivors = [last]
        if notes is not None:
            notes.append("every body is too wide: PYSKL crashes here; kept InfoGCN's survivor")
    survivors.sort(key=lambda b: -motion[b.index])
    return survivors, dropped


def assign_hull(order: Sequence[PackedBody], shared: int) -> list[list[PackedBody]]:
    """The references' two-slot assignment against each slot's hull (module docstring).

    ``shared`` is how many rows a body may share with a slot's hull and still fit: 1 for
    InfoGCN (touching spans), 0 for PYSKL.
    """
    first = order[0]
    slots: list[list[PackedBody]] = [[first], []]
    hulls = [[first.start, first.stop - 1], [0, 0 if shared else -1]]  # [start, last] inclusive
    for b in order[1:]:
        for slot, hull in zip(slots, hulls):
            if min(hull[1], b.stop - 1) - max(hull[0], b.start) + 1 <= shared:
                slot.append(b)
                hull[0], hull[1] = min(hull[0], b.start), max(hull[1], b.stop - 1)
                break
    return slots


def write_slots(
    pose: dict[str, Any], slots: list[list[PackedBody]], num_rows: int
) -> dict[str, np.ndarray]:
    """Arrays ``[M, num_rows, ...]`` with each body's appearances at its rows, in slot order."""
    M = len(slots)
    out = {key: np.zeros((M, num_rows, *pose[key].shape[2:]), np.float32) for key in ARRAY_KEYS}
    out["present"] = np.zeros((M, num_rows), bool)
    for k, members in enumerate(slots):
        for b in members:
            for key in ARRAY_KEYS:
                out[key][k, b.start : b.stop] = np.asarray(pose[key])[b.index, b.frames]
            out["present"][k, b.start : b.stop] = True
    return out


def _pyskl_rows(xyz: np.ndarray) -> np.ndarray:
    """Rows left after PYSKL cuts leading and trailing rows whose abs sum is < 1e-3."""
    s, e = 0, xyz.shape[1]
    while s < e and np.sum(np.abs(xyz[:, s])) < PYSKL_EPS:
        s += 1
    while e > s and np.sum(np.abs(xyz[:, e - 1])) < PYSKL_EPS:
        e -= 1
    return np.arange(s, e)


def denoise_kinect_compat(
    pose: dict[str, Any], mode: Compat, source: str = "", notes: list[str] | None = None
) -> dict[str, Any]:
    """Denoise a kinect pose dict as InfoGCN or PYSKL does (module docstring)."""
    if mode not in ("infogcn", "pyskl"):
        raise ValueError(f"compat mode must be 'infogcn' or 'pyskl', got {mode!r}")
    name = pose["frame_dir"]
    rows, bodies = pack_bodies(np.asarray(pose["present"], bool), np.asarray(pose["keypoint3d"]))
    if not bodies:
        raise BadSampleError(source, f"{name}: no body in any frame")
    said: list[str] = []
    order, dropped = select_bodies(bodies, mode, said)
    if notes is not None:
        notes.extend(f"{name}: {note}" for note in said)
    if not order:
        ids = pose.get("body_ids") or [str(m) for m in range(len(pose["present"]))]
        why = "; ".join(f"body {ids[m]}: {reason}" for m, reason in dropped.items())
        raise BadSampleError(
            source, f"{name}: no valid body after denoising ({why}; {mode} would crash)"
        )
    slots = assign_hull(order, 1 if mode == "infogcn" else 0) if len(order) > 1 else [order]
    arrays = write_slots(pose, slots, len(rows))
    if mode == "infogcn":
        if len(bodies) == 1:
            keep = np.arange(len(rows))
        else:
            flat = np.ascontiguousarray(arrays["keypoint3d"].transpose(1, 0, 2, 3))
            keep = np.flatnonzero(flat.reshape(len(rows), -1).sum(axis=1) != 0)
    elif len(slots) == 1:
        keep = np.arange(order[0].start, order[0].stop)
    else:
        keep = _pyskl_rows(arrays["keypoint3d"][:, : max(b.stop for b in order)])
    if keep.size == 0:
        raise BadSampleError(source, f"{name}: every joint of the kept bodies is zero")
    arrays = {key: arr[:, keep] for key, arr in arrays.items()}
    if mode == "pyskl" and len(slots) == 2:
        spine = np.abs(arrays["keypoint3d"][:, 0, SPINE_MID]).sum(axis=-1)
        if spine[0] < PYSKL_EPS and spine[1] > PYSKL_EPS:
            arrays = {key: arr[::-1].copy() for key, arr in arrays.items()}
    return with_arrays(pose, arrays, rows[keep])
