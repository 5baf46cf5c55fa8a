"""The pose dict: what extract-poses writes, denoise reads and writes, build-annotations reads.

DESIGN.md section 3.2.  One dict per video::

    frame_dir       sample name
    layout          'ntu25' (kinect) | 'coco17' (estimators)
    img_shape       (h, w) the pixel coordinates refer to; original_shape the same
    total_frames    T
    keypoint        float32 [M, T, V, 2] pixels
    keypoint_score  float32 [M, T, V]
    present         bool [M, T]: body / detection m exists in frame t
    keypoint3d      float32 [M, T, V, 3] metres           (kinect only)
    body_ids        list[str], length M                    (kinect only, before denoising)
    frame_inds      int [T]: video frame of pose frame t  (after denoising dropped frames)

Absent entries are zeros with score 0.  ``make_pose_dict`` builds one with the contract's key
names and dtypes; ``check_pose_arrays`` checks one (or an annotation, which shares the arrays).
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

from rgbpose.io import BadSampleError
from rgbpose.layouts import Layout, get_layout
from rgbpose.ntu import is_valid_name


def is_int(x: Any) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def make_pose_dict(
    frame_dir: str,
    layout: str,
    img_shape: tuple[int, int],
    keypoint: np.ndarray,
    keypoint_score: np.ndarray,
    present: np.ndarray,
    **extra: Any,
) -> dict[str, Any]:
    """Assemble a pose dict with the contract's key names and dtypes."""
    return {
        "frame_dir": frame_dir,
        "layout": layout,
        "img_shape": (int(img_shape[0]), int(img_shape[1])),
        "original_shape": (int(img_shape[0]), int(img_shape[1])),
        "total_frames": int(keypoint.shape[1]),
        "keypoint": np.ascontiguousarray(keypoint, dtype=np.float32),
        "keypoint_score": np.ascontiguousarray(keypoint_score, dtype=np.float32),
        "present": np.ascontiguousarray(present, dtype=bool),
        **extra,
    }


def check_pose_arrays(d: Any, source: str | os.PathLike, *, ntu_name: bool = True) -> Layout:
    """Check one pose dict / annotation's arrays and return its layout.

    Checks: a string ``frame_dir`` (an NTU name unless ``ntu_name=False``); ``keypoint`` a float
    array ``[M >= 1, T >= 1, V, C in (2, 3)]``; a known layout agreeing with V (inferred from V when
    there is no ``layout`` key); ``total_frames == T``; ``keypoint_score`` [M, T, V] (required
    when C == 2), ``keypoint3d`` [M, T, V, 3] and ``present`` [M, T] bool when present; finite
    values; ``img_shape`` / ``original_shape`` two positive ints when present.  Raises
    ``BadSampleError(source, "<frame_dir>: <problem>")``.
    """
    if not isinstance(d, dict):
        raise BadSampleError(source, f"expected a dict per sample, got {type(d).__name__}")
    name = d.get("frame_dir")
    if not isinstance(name, str):
        raise BadSampleError(source, f"sample without a string 'frame_dir' ({name!r})")

    def bad(problem: str) -> BadSampleError:
        return BadSampleError(source, f"{name}: {problem}")

    if ntu_name and not is_valid_name(name):
        raise bad("frame_dir is not an NTU sample name (SsssCcccPpppRrrrAaaa)")
    kp = d.get("keypoint")
    if not isinstance(kp, np.ndarray) or kp.ndim != 4 or kp.dtype.kind != "f":
        got = f"{kp.dtype} {kp.shape}" if isinstance(kp, np.ndarray) else type(kp).__name__
        raise bad(f"keypoint must be a float array [M, T, V, C], got {got}")
    M, T, V, C = kp.shape
    if M < 1 or T < 1:
        raise bad(f"keypoint {kp.shape} has no person or no frame")
    if C not in (2, 3):
        raise bad(f"keypoint has {C} coordinates per joint (expected 2 or 3)")
    try:
        layout = get_layout(d["layout"] if "layout" in d else V)
    except (ValueError, TypeError) as exc:
        raise bad(str(exc)) from None
    if layout.num_joints != V:
        raise bad(f"layout {layout.name} has {layout.num_joints} joints, keypoint has {V}")
    tf = d.get("total_frames")
    if not is_int(tf) or tf != T:
        raise bad(f"total_frames {tf!r} does not match keypoint's T = {T}")
    if C == 2 and "keypoint_score" not in d:
        raise bad("keypoint_score is missing")
    # 3D joints keep the sensor's layout when the 2D keypoints were converted (``layout3d``).
    V3 = get_layout(d["layout3d"]).num_joints if "layout3d" in d else V
    expected = {"keypoint_score": (M, T, V), "keypoint3d": (M, T, V3, 3), "present": (M, T)}
    for key, shape in expected.items():
        if key not in d:
            continue
        arr = d[key]
        kind = "b" if key == "present" else "f"
        if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype.kind != kind:
            got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise bad(
                f"{key} must be {'bool' if kind == 'b' else 'float'} {list(shape)}, got {got}"
            )
    if "frame_inds" in d:
        fi = d["frame_inds"]
        if (
            not isinstance(fi, np.ndarray)
            or fi.shape != (T,)
            or fi.dtype.kind not in "iu"
            or (fi.size and (fi[0] < 0 or (np.diff(fi) <= 0).any()))
        ):
            raise bad(f"frame_inds must be {T} increasing non-negative video frame indices")
    for key in ("keypoint", "keypoint_score", "keypoint3d"):
        if key in d and not np.isfinite(d[key]).all():
            raise bad(f"{key} has non-finite values")
    for key in ("img_shape", "original_shape"):
        if key in d:
            shp = d[key]
            if not (
                isinstance(shp, tuple | list)
                and len(shp) == 2
                and all(is_int(s) and s > 0 for s in shp)
            ):
                raise bad(f"{key} must be (height, width), got {shp!r}")
    return layout
