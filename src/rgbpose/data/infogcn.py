"""InfoGCN's own data pipeline (modality ``infogcn``): Kinect 3D joints as its NTU scripts and
feeder prepare them (REFERENCE_SEEDS 1.1 steps C-E), from an annotation's ``keypoint3d``.

Per sample (``[M, T, 25, 3]`` -> item ``keypoint`` float32 ``[1, 2, window, 25, 3]``, one view
of ``[M, T, V, C]``: persons, frames, joints, xyz; the reference's ``[C, T, V, M]`` transposed)::

    persons      the first two; a single person fills slot 1 and slot 2 is zeros, or a copy
                 of slot 1 with ``duplicate_single`` (the NTU 120 scripts duplicate a lone actor)
    empty frames frames where every person is all-zero are dropped (the reference drops frames
                 that list no body when it reads the skeleton file)
    translate    subtract slot 1's SpineMid in its first non-zero frame from every joint; frames
                 where a person was absent stay zero
    align        per person, from frame 0 only: spine v1 = SpineMid - SpineBase, hip axis
                 v2 = LeftHip - RightHip made orthogonal to v1, v3 = v2 x v1 (all unit);
                 every frame x <- R^-1 x with R = [v2 | v3 | v1]: the hips become +x, the spine +z.
                 Quirk kept: a person whose frame 0 has v1 = 0 (absent in frame 0, e.g. a second
                 actor who enters later) is left ALL ZERO
    crop-resize  valid = frames whose values do not sum to 0 (counted after alignment, so the
                 quirk can shorten it); crop within the first ``valid`` frames, then resize the
                 time axis linearly to ``window`` (64; half-pixel, as F.interpolate with
                 align_corners=False).  train: p ~ U(train_crop) (0.5, 1), length =
                 clip(floor(valid * p), min_crop_len, valid) at a random offset; val/test:
                 centre crop dropping int((1 - test_crop) / 2 * valid) frames at each end
    rotate       train only: angles (ax, ay, az) ~ U(-rotation, rotation) rad, fixed over the
                 clip, R = Rz Ry Rx as the reference's feeder builds them
    motion       with ``motion``: x[t] <- x[t + 1] - x[t], last frame 0 (after all the above)

Differences from the reference, all where it would fail or drop data: a sample that is all
zero gives an all-zero clip (the reference crashes); a person whose hip axis is parallel to
the spine in frame 0 is translated but not rotated (the reference produces NaNs and its feeder
drops the whole sample); non-finite coordinates become 0 (its feeder drops such samples); a
slot 1 that is never present translates by 0.  One view in every mode: the test crop is
deterministic, so ``test.num_clips`` must be 1 and ``test.flip`` false.

Randomness: train items draw from a per-process ``np.random.Generator`` seeded from
``torch.initial_seed()`` (``base_seed + worker_id`` in a DataLoader worker), as the other
pipelines do; val/test items are deterministic.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from rgbpose.data.config import DataOutput, TestViews, require_one_test_view
from rgbpose.data.records import annotations_hash
from rgbpose.io import BadSampleError
from rgbpose.layouts import NTU25, Layout

MODES = ("train", "val", "test")
NUM_PERSONS = 2
SPINE_BASE, SPINE_MID, LEFT_HIP, RIGHT_HIP = 0, 1, 12, 16


@dataclass(frozen=True)
class InfoGCNConfig:
    """``data:`` of the ``infogcn`` modality (defaults: the reference's NTU feeder).

    ``window``: frames per clip (64); ``train_crop``: the range of the crop fraction p (0.5, 1);
    ``test_crop``: the val/test centre-crop fraction (0.95); ``min_crop_len``: the shortest
    train crop when the sequence is longer (64, fixed in the reference); ``rotation``: the train
    rotation half-range in radians (0.3; 0 disables); ``motion``: frame differences instead of
    positions (the reference's ``use_vel``); ``duplicate_single``: copy a lone actor into slot 2
    (true for NTU 120, false for NTU 60).
    """

    #: the 2D ``keypoint`` is not read (only ``keypoint3d``), so records need not have one
    uses_pose: ClassVar[bool] = False
    #: reads Kinect 3D joints, which ``rgbpose predict`` cannot estimate from a video
    needs_3d_joints: ClassVar[bool] = True

    modality: str = "infogcn"
    window: int = 64
    train_crop: tuple[float, float] = (0.5, 1.0)
    test_crop: float = 0.95
    min_crop_len: int = 64
    rotation: float = 0.3
    motion: bool = False
    duplicate_single: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.modality != "infogcn":
            problems.append(f"modality must be 'infogcn', got {self.modality!r}")
        for name in ("window", "min_crop_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        lo, hi = self.train_crop
        if not 0 < lo <= hi <= 1:
            problems.append(f"train_crop must satisfy 0 < lo <= hi <= 1, got {self.train_crop}")
        if not 0 < self.test_crop <= 1:
            problems.append(f"test_crop must be in (0, 1], got {self.test_crop}")
        if not 0 <= self.rotation <= np.pi:
            problems.append(f"rotation must be in [0, pi] radians, got {self.rotation}")
        if problems:
            raise ValueError("invalid InfoGCNConfig: " + "; ".join(problems))

    def outputs(self, layout: Layout | str | None = None) -> tuple[DataOutput, ...]:
        """``keypoint`` [2, window, 25, 3] per view (3D joints; any 2D ``layout`` is unused)."""
        what = "x, y, z of Kinect keypoint3d"
        return (DataOutput("keypoint", 3, self.window, what, "data.window"),)


# ----------------------------------------------------------------------------- steps
def two_persons(keypoint3d: np.ndarray, duplicate_single: bool) -> np.ndarray:
    """float32 ``[2, T, V, 3]``: the first two persons; a lone one is copied into slot 2 when
    ``duplicate_single``, else slot 2 is zeros.  Non-finite values become 0."""
    kp = np.nan_to_num(np.asarray(keypoint3d, np.float32)[:NUM_PERSONS], nan=0, posinf=0, neginf=0)
    if kp.shape[0] == 1:
        kp = np.concatenate([kp, kp if duplicate_single else np.zeros_like(kp)])
    return kp


def drop_empty_frames(x: np.ndarray) -> np.ndarray:
    """``[M, T, V, C]`` without the frames where every value is 0."""
    return x[:, np.any(x != 0, axis=(0, 2, 3))]


def translate_to_first_spine_mid(x: np.ndarray) -> np.ndarray:
    """Subtract person 0's SpineMid in its first present frame from every joint of every
    person; frames where a person is absent (all zero) stay zero."""
    present = np.any(x != 0, axis=(2, 3))  # [M, T]
    origin = np.zeros(x.shape[-1], x.dtype)
    if present[0].any():
        origin = x[0, np.argmax(present[0]), SPINE_MID]
    return np.where(present[:, :, None, None], x - origin, 0).astype(x.dtype)


def first_frame_rotation(frame: np.ndarray) -> np.ndarray | None:
    """``R = [v2 | v3 | v1]`` (columns) from one person's joints ``[V, 3]`` (see the module
    docstring); None when the spine vector is 0; the identity when the hip axis is parallel to
    the spine (no rotation is defined: the reference gets NaNs and drops the sample)."""
    frame = frame.astype(np.float64)
    v1 = frame[SPINE_MID] - frame[SPINE_BASE]
    if np.linalg.norm(v1) <= 0:
        return None
    v1 = v1 / np.linalg.norm(v1)
    hips = frame[LEFT_HIP] - frame[RIGHT_HIP]
    v2 = hips - np.dot(v1, hips) * v1
    if np.linalg.norm(v2) <= 0:
        return np.eye(3)
    v2 = v2 / np.linalg.norm(v2)
    v3 = np.cross(v2, v1)
    return np.stack([v2, v3 / np.linalg.norm(v3), v1], axis=1)


def align_to_first_frame(x: np.ndarray) -> np.ndarray:
    """Rotate each person by ``R^-1`` of its frame-0 axes (:func:`first_frame_rotation`); a
    person with a zero spine vector in frame 0 becomes all zero (the reference's quirk)."""
    out = np.zeros_like(x)
    for m in range(x.shape[0] if x.shape[1] else 0):
        rot = first_frame_rotation(x[m, 0])
        if rot is not None:  # else the quirk: left all zero
            # R is orthonormal, so R^-1 x = R^T x, i.e. x @ R for row vectors.
            out[m] = (x[m].astype(np.float64) @ rot).astype(x.dtype)
    return out


def resize_time(x: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of axis 1 of ``[M, T, V, C]`` to ``length`` frames, half-pixel centres
    (PyTorch's ``interpolate(mode='linear', align_corners=False)``)."""
    t = x.shape[1]
    src = np.maximum((np.arange(length) + 0.5) * (t / length) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), t - 1)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (src - i0).astype(np.float32)[None, :, None, None]
    return ((1 - w) * x[:, i0] + w * x[:, i1]).astype(np.float32)


def crop_resize(
    x: np.ndarray, cfg: InfoGCNConfig, rng: np.random.Generator | None
) -> np.ndarray:  # fmt: skip
    """The crop of the first ``valid`` frames (random with ``rng``, centred without), resized
    to ``cfg.window`` frames; all zero when no frame is valid."""
    valid = int(np.sum(x.sum(axis=(0, 2, 3)) != 0))
    if valid == 0:
        return np.zeros((x.shape[0], cfg.window, *x.shape[2:]), np.float32)
    if rng is None:
        bias = int((1 - cfg.test_crop) * valid / 2)
        clip = x[:, bias : valid - bias]
    else:
        p = rng.uniform(*cfg.train_crop)
        length = min(max(int(np.floor(valid * p)), cfg.min_crop_len), valid)
        begin = int(rng.integers(0, valid - length + 1))
        clip = x[:, begin : begin + length]
    return resize_time(clip, cfg.window)


def rotation_matrix(ax: float, ay: float, az: float) -> np.ndarray:
    """``Rz @ Ry @ Rx`` with the reference feeder's sign convention (float32 [3, 3])."""
    (cx, cy, cz), (sx, sy, sz) = np.cos([ax, ay, az]), np.sin([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


def motion(x: np.ndarray) -> np.ndarray:
    """Frame differences along axis 1: ``x[t + 1] - x[t]``, the last frame zero."""
    out = np.zeros_like(x)
    out[:, :-1] = x[:, 1:] - x[:, :-1]
    return out


def prepare_skeleton(keypoint3d: np.ndarray, duplicate_single: bool = False) -> np.ndarray:
    """The deterministic preparation (persons, empty frames, translation, alignment):
    ``[M, T, 25, 3]`` -> float32 ``[2, T', 25, 3]``."""
    x = drop_empty_frames(two_persons(keypoint3d, duplicate_single))
    return align_to_first_frame(translate_to_first_spine_mid(x))


def clip(x: np.ndarray, cfg: InfoGCNConfig, rng: np.random.Generator | None) -> np.ndarray:
    """The clip of a prepared skeleton: crop-resize, rotation (with ``rng``), motion."""
    out = crop_resize(x, cfg, rng)
    if rng is not None and cfg.rotation > 0:
        out = out @ rotation_matrix(*rng.uniform(-cfg.rotation, cfg.rotation, 3)).T
    return motion(out) if cfg.motion else out


# ----------------------------------------------------------------------------- dataset
def _keypoint3d_problem(ann: Mapping[str, Any]) -> str | None:
    if "keypoint3d" not in ann:
        return "annotation has no 'keypoint3d' (the infogcn pipeline needs Kinect 3D joints)"
    layout = ann.get("layout3d", ann.get("layout", NTU25.name))
    if layout != NTU25.name:
        return f"keypoint3d layout is {layout!r}, the infogcn pipeline needs 'ntu25'"
    shape = np.shape(ann["keypoint3d"])
    if len(shape) != 4 or shape[0] < 1 or shape[1] < 1 or shape[2:] != (NTU25.num_joints, 3):
        return f"keypoint3d shape {shape} is not [M, T, 25, 3]"
    return None


class InfoGCNDataset(Dataset):
    """Items ``{'keypoint': float32 [1, 2, window, 25, 3], 'label', 'frame_dir'}`` of one split
    (see the module docstring).  ``layout`` (the 2D keypoints') and ``video_dir`` are unused."""

    def __init__(
        self,
        cfg: InfoGCNConfig,
        annotations: list[dict[str, Any]],
        mode: str,
        *,
        video_dir: str | os.PathLike | None = None,
        layout: Layout | None = None,
        source: str = "<annotations>",
        views: TestViews | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        require_one_test_view("infogcn", mode, views)
        bad = [(a.get("frame_dir", "?"), p) for a in annotations if (p := _keypoint3d_problem(a))]
        if bad:
            more = f" (and {len(bad) - 1} more bad samples)" if len(bad) > 1 else ""
            raise BadSampleError(source, f"sample {bad[0][0]}: {bad[0][1]}{more}")
        self.cfg, self.annotations, self.mode, self.source = cfg, annotations, mode, source
        self._rng_key: tuple[int, int] | None = None
        self._gen: np.random.Generator | None = None

    def __len__(self) -> int:
        return len(self.annotations)

    def content_hash(self) -> str:
        """sha256 hex of the annotation fields every pipeline hashes plus each ``keypoint3d``
        (what this pipeline reads): the training engine resumes only when it is unchanged."""
        h = hashlib.sha256(b"rgbpose-infogcn-v1\0" + annotations_hash(self.annotations).encode())
        for ann in self.annotations:
            kp = np.ascontiguousarray(ann["keypoint3d"])
            h.update(f"{kp.dtype.str}{kp.shape}".encode() + kp.tobytes())
        return h.hexdigest()

    def rng(self) -> np.random.Generator:
        """This process's generator, re-seeded whenever torch's initial seed changes."""
        key = (os.getpid(), torch.initial_seed())
        if self._rng_key != key:
            self._gen, self._rng_key = np.random.default_rng(torch.initial_seed()), key
        return self._gen

    def __getitem__(self, index: int) -> dict[str, Any]:
        ann = self.annotations[index]
        x = prepare_skeleton(ann["keypoint3d"], self.cfg.duplicate_single)
        out = clip(x, self.cfg, self.rng() if self.mode == "train" else None)
        return {
            "keypoint": torch.from_numpy(np.ascontiguousarray(out, np.float32))[None],
            "label": int(ann["label"]),
            "frame_dir": str(ann["frame_dir"]),
        }
