"""The GCN data pipeline (modality ``skeleton``): PYSKL's recipe for ST-GCN / ST-GCN++ / CTR-GCN.

REFERENCE_SEEDS.md 4.3.  Per sample, with ``data:`` keys of :class:`SkeletonConfig`::

    keypoints '2d': keypoint [M, T, V, 2] + keypoint_score -> [M, T, V, 3] (x, y, score) ->
                    PreNormalize2D: (x - w/2) / (w/2), (y - h/2) / (h/2) with (h, w) the
                    annotation's img_shape; x = y = 0 where score <= score_threshold
    keypoints '3d': keypoint3d [M, T, 25, 3] (Kinect metres, ntu25) -> PreNormalize3D: keep
                    the frames where the main person (most non-empty frames) is present,
                    main person first; subtract SpineMid of the first frame (zero joints stay
                    zero); rotate SpineBase->SpineMid onto +z, then the shoulders
                    (right - left) onto +x
    feature:        j joints | b bones (x[v] - x[parent[v]], :data:`BONE_PARENTS`) |
                    jm / bm motion of j / b (x[t + 1] - x[t], zero at the last frame); for 2D
                    the score channel of b / jm / bm is the mean of the two scores
    sampling:       rgbpose.data.sampling.uniform_sample of clip_len frames (train: random;
                    val: 1 clip; test: the test views' num_clips, deterministic), after the
                    features (motion is taken between consecutive frames of the sequence)
    persons:        at most max_persons (2D: highest total score, as the heatmap pipelines;
                    3D: the first), zero-padded to max_persons

``test.flip`` adds mirrored views (x -> -x of the normalised joints, left/right joints
swapped, features recomputed) after the original ones; PYSKL's GCN recipes use none.  Item:
``{"keypoint": float32 [views, max_persons, clip_len, V, 3], "label", "frame_dir"}``.
Randomness: as ``rgbpose.data.datasets`` (a per-process generator seeded from
``torch.initial_seed()``; val/test deterministic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from rgbpose.data.config import DataOutput
from rgbpose.data.datasets import ActionDataset
from rgbpose.data.records import annotations_hash
from rgbpose.data.sampling import TEST_SAMPLINGS, TestSampling, uniform_sample
from rgbpose.io import BadSampleError
from rgbpose.layouts import Layout, get_layout

FEATURES = ("j", "b", "jm", "bm")
KEYPOINTS = ("2d", "3d")

#: PYSKL's ``JointToBone`` pairs: bone v = joint v - joint BONE_PARENTS[layout][v] (a joint
#: paired with itself has a zero bone).  COCO-17 hangs the hips on the nose; NTU-25 roots at
#: SpineShoulder and takes each hand tip from its thumb.
BONE_PARENTS = {
    "coco17": (0, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 0, 0, 11, 12, 13, 14),
    "ntu25": (
        1, 20, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, 20, 22, 7, 24, 11,
    ),
}  # fmt: skip

#: PreNormalize3D's joints (ntu25): the centre; (a, b) pairs whose vector a -> b is turned onto
#: +z (SpineBase -> SpineMid), then onto +x (left -> right shoulder)
CENTER_3D, SPINE_3D, SHOULDERS_3D = 1, (0, 1), (4, 8)


@dataclass(frozen=True)
class SkeletonConfig:
    """``data:`` of the skeleton modality (defaults: PYSKL's ST-GCN++ recipe).

    * ``keypoints``: ``'2d'`` (``keypoint`` + ``keypoint_score``) or ``'3d'`` (``keypoint3d``);
    * ``feature``: ``'j'``, ``'b'``, ``'jm'`` or ``'bm'``;
    * ``clip_len``: frames per view (100); ``max_persons``: persons per view (2);
    * ``layout``: the 2D keypoints' layout (None: the annotations'); 3D joints are ntu25;
    * ``score_threshold``: 2D joints with a score at most this are zeroed (0.01);
    * ``test_sampling``: the val/test frame indices, ``'ours'`` or ``'pyskl'``
      (``rgbpose.data.sampling``).
    """

    modality: str = "skeleton"
    keypoints: Literal["2d", "3d"] = "2d"

    @property
    def needs_3d_joints(self) -> bool:
        """Reads Kinect 3D joints (``keypoint3d``), which ``rgbpose predict`` cannot estimate."""
        return self.keypoints == "3d"

    feature: Literal["j", "b", "jm", "bm"] = "j"
    clip_len: int = 100
    max_persons: int = 2
    layout: str | None = None
    score_threshold: float = 0.01
    test_sampling: TestSampling = "ours"

    def __post_init__(self) -> None:
        problems = []
        if self.modality != "skeleton":
            problems.append(f"modality must be 'skeleton', got {self.modality!r}")
        if self.keypoints not in KEYPOINTS:
            problems.append(f"keypoints must be one of {KEYPOINTS}, got {self.keypoints!r}")
        if self.feature not in FEATURES:
            problems.append(f"feature must be one of {FEATURES}, got {self.feature!r}")
        for name in ("clip_len", "max_persons"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.score_threshold < 1:
            problems.append(f"score_threshold must be in [0, 1), got {self.score_threshold!r}")
        if self.test_sampling not in TEST_SAMPLINGS:
            problems.append(f"test_sampling must be one of {TEST_SAMPLINGS}")
        if self.layout is not None:
            if self.keypoints == "3d":
                problems.append("layout applies to 2D keypoints (3D joints are ntu25)")
            elif self.layout not in BONE_PARENTS:
                problems.append(f"layout must be one of {sorted(BONE_PARENTS)} or null")
        if problems:
            raise ValueError("invalid SkeletonConfig: " + "; ".join(problems))

    # what rgbpose.data.records and ActionDataset ask of a pipeline config
    uses_rgb = False
    uses_pose = True

    def outputs(self, layout: Layout | str | None = None) -> tuple[DataOutput, ...]:
        """``keypoint`` [M, clip_len, V, 3] per view."""
        what = "x, y, score" if self.keypoints == "2d" else "x, y, z"
        return (
            DataOutput(
                "keypoint", 3, self.clip_len, f"{what}: {self.keypoints} feature "
                f"{self.feature!r}", "data.clip_len",
            ),
        )  # fmt: skip


# ----------------------------------------------------------------------------- transforms
def pre_normalize_2d(
    kp: np.ndarray, score: np.ndarray, img_shape: Sequence[int], threshold: float = 0.01
) -> np.ndarray:
    """PreNormalize2D: ``[M, T, V, 2]`` pixels + ``[M, T, V]`` scores -> ``[M, T, V, 3]`` with
    x, y in [-1, 1] about the image centre and zeroed where ``score <= threshold``."""
    h, w = img_shape
    out = np.concatenate([kp, score[..., None]], axis=-1).astype(np.float32)
    out[..., 0] = (out[..., 0] - w / 2) / (w / 2)
    out[..., 1] = (out[..., 1] - h / 2) / (h / 2)
    out[..., :2][score <= threshold] = 0
    return out


def rotation_onto(v: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rotation ``R`` (about ``v x target``) with ``R v`` along ``target``; identity when
    ``v`` is (nearly) zero or (anti)parallel to ``target``, as PYSKL's."""
    axis = np.cross(v, target)
    if np.abs(v).sum() < 1e-6 or np.abs(axis).sum() < 1e-6:
        return np.eye(3)
    cos = np.clip(v @ target / (np.linalg.norm(v) * np.linalg.norm(target)), -1.0, 1.0)
    theta = np.arccos(cos)
    if abs(theta) < 1e-6:
        return np.eye(3)
    k = axis / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * cross @ cross


def pre_normalize_3d(kp: np.ndarray) -> np.ndarray:
    """PreNormalize3D of ntu25 joints ``[M, T, 25, 3]`` -> ``[M, T', 25, 3]`` (module doc)."""
    kp = np.asarray(kp, dtype=np.float64)
    if not kp.any():
        return kp.astype(np.float32)
    present = ~np.all(np.isclose(kp, 0), axis=(2, 3))  # [M, T]
    main = int(np.argmax(present.sum(axis=1)))  # the first of the longest
    order = [main] + [m for m in range(kp.shape[0]) if m != main]
    kp = kp[order][:, present[main]]
    mask = np.any(kp != 0, axis=-1, keepdims=True)
    kp = (kp - kp[0, 0, CENTER_3D]) * mask
    for (a, b), target in ((SPINE_3D, (0.0, 0.0, 1.0)), (SHOULDERS_3D, (1.0, 0.0, 0.0))):
        # the vector a -> b of the first frame onto the target axis (a rotation about 0 keeps
        # the zeroed joints at zero)
        kp = kp @ rotation_onto(kp[0, 0, b] - kp[0, 0, a], np.array(target)).T
    return kp.astype(np.float32)


def to_bones(x: np.ndarray, parents: Sequence[int], has_score: bool) -> np.ndarray:
    """Bones of ``x [..., V, 3]``: ``x[v] - x[parents[v]]``; with ``has_score`` (2D) the third
    channel is the mean of the two joints' scores instead."""
    parents = np.asarray(parents)
    out = x - x[..., parents, :]
    if has_score:
        out[..., 2] = (x[..., 2] + x[..., parents, 2]) / 2
    return out


def to_motion(x: np.ndarray, has_score: bool) -> np.ndarray:
    """Motion of ``x [M, T, V, 3]``: ``x[:, t + 1] - x[:, t]``, zero at the last frame; with
    ``has_score`` the third channel is the mean of the two frames' scores."""
    out = np.zeros_like(x)
    out[:, :-1] = x[:, 1:] - x[:, :-1]
    if has_score:
        out[:, :-1, :, 2] = (x[:, 1:, :, 2] + x[:, :-1, :, 2]) / 2
    return out


def skeleton_feature(
    joints: np.ndarray, feature: str, parents: Sequence[int], has_score: bool
) -> np.ndarray:
    """PYSKL's GenSkeFeat for one ``feature`` of normalised ``joints [M, T, V, 3]``."""
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
    x = to_bones(joints, parents, has_score) if feature in ("b", "bm") else joints
    return to_motion(x, has_score) if feature.endswith("m") else x


def flip_joints(joints: np.ndarray, flip_index: Sequence[int]) -> np.ndarray:
    """Mirror normalised joints ``[..., V, C]``: x -> -x, left and right joints swapped."""
    out = joints[..., list(flip_index), :].copy()
    out[..., 0] = -out[..., 0]
    return out


# ----------------------------------------------------------------------------- dataset
class SkeletonDataset(ActionDataset):
    """Items of one split for the skeleton modality (see the module docstring).

    ``layout`` is the layout of the joints fed to the model: the given (2D) one, or ntu25 for
    ``keypoints: 3d``.  3D records need ``keypoint3d`` ``[M, total_frames, 25, 3]``.
    """

    def __init__(
        self, cfg: SkeletonConfig, annotations: list[dict[str, Any]], mode: str, **kwargs: Any
    ):
        """As :class:`ActionDataset` (``layout``, ``source``, ``views``; no videos)."""
        super().__init__(cfg, annotations, mode, **kwargs)
        if cfg.keypoints == "3d":
            self.layout = get_layout("ntu25")
            for ann in annotations:
                self._check_3d(ann)
        elif self.layout.name not in BONE_PARENTS:
            raise ValueError(f"no bone pairs for layout {self.layout.name!r}")
        self.parents = BONE_PARENTS[self.layout.name]

    def _check_3d(self, ann: Mapping[str, Any]) -> None:
        name = ann.get("frame_dir", "?")
        if "keypoint3d" not in ann:
            raise BadSampleError(self.source, f"{name}: keypoints '3d' needs 'keypoint3d'")
        shape = np.shape(ann["keypoint3d"])
        if len(shape) != 4 or shape[2:] != (25, 3) or shape[1] != ann["total_frames"]:
            raise BadSampleError(
                self.source,
                f"{name}: keypoint3d shape {shape} is not [M, total_frames "
                f"{ann['total_frames']}, 25, 3]",
            )

    def content_hash(self) -> str:
        """The records' hash (:func:`annotations_hash`), with their ``keypoint3d`` for 3D."""
        base = annotations_hash(self.annotations)
        if self.cfg.keypoints == "2d":
            return base
        extra = annotations_hash([{"keypoint": a["keypoint3d"]} for a in self.annotations])
        return hashlib.sha256(f"{base}+keypoint3d:{extra}".encode()).hexdigest()

    def joints(self, ann: Mapping[str, Any], res: Mapping[str, Any]) -> np.ndarray:
        """Normalised joints ``[M <= max_persons, T', V, 3]`` of one record."""
        if self.cfg.keypoints == "2d":
            kp, score = self._pose_arrays(ann)
            if kp.shape[1] != res["total_frames"]:
                raise BadSampleError(
                    self.source,
                    f"{res['frame_dir']}: keypoint has {kp.shape[1]} frames, total_frames "
                    f"{res['total_frames']}",
                )
            return pre_normalize_2d(kp, score, res["img_shape"], self.cfg.score_threshold)
        kp = np.asarray(ann["keypoint3d"], dtype=np.float32)[: self.cfg.max_persons]
        return pre_normalize_3d(np.nan_to_num(kp, nan=0.0, posinf=0.0, neginf=0.0))

    def __getitem__(self, index: int) -> dict[str, Any]:
        cfg = self.cfg
        ann = self.annotations[index]
        res = self._base(ann)
        joints = self.joints(ann, res)
        m, total = joints.shape[:2]
        views, length = self.num_views, cfg.clip_len
        inds = uniform_sample(
            total, length, views, test_mode=self.test_mode,
            rng=None if self.test_mode else self.rng(), test_sampling=cfg.test_sampling,
        )  # fmt: skip
        variants = [joints, flip_joints(joints, self.layout.flip_index)][: 1 + self.flip_views]
        out = np.zeros(
            (len(variants), views, cfg.max_persons, length, self.layout.num_joints, 3), np.float32
        )
        has_score = cfg.keypoints == "2d"
        for i, x in enumerate(variants):
            feat = skeleton_feature(x, cfg.feature, self.parents, has_score)[:, inds]
            out[i, :, :m] = feat.reshape(m, views, length, -1, 3).swapaxes(0, 1)
        return {
            "keypoint": torch.from_numpy(out.reshape((-1,) + out.shape[2:])),
            "label": res["label"],
            "frame_dir": res["frame_dir"],
        }
