"""Skeleton joint layouts: joint count, left/right pairs for flipping, limbs for heatmaps.

``coco17`` is what 2D estimators (HRNet, mediapipe mapped, YOLO-pose) give and what PoseC3D
uses; ``ntu25`` is the Kinect v2 layout of NTU RGB+D (DESIGN.md section 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Layout:
    """A joint layout.  ``limbs`` are (a, b) joint pairs; ``parents[v]`` is v's tree parent."""

    name: str
    joint_names: tuple[str, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    limbs: tuple[tuple[int, int], ...]
    parents: tuple[int, ...]
    root: int

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @cached_property
    def flip_index(self) -> tuple[int, ...]:
        """``flip_index[v]`` is the joint that takes v's place after a horizontal flip."""
        idx = list(range(self.num_joints))
        for a, b in zip(self.left, self.right):
            idx[a], idx[b] = b, a
        return tuple(idx)

    @cached_property
    def limb_flip_index(self) -> tuple[int, ...]:
        """Channel permutation of limb heatmaps under a horizontal flip."""
        fi = self.flip_index
        lookup = {frozenset(limb): i for i, limb in enumerate(self.limbs)}
        return tuple(lookup[frozenset((fi[a], fi[b]))] for a, b in self.limbs)


COCO17 = Layout(
    name="coco17",
    joint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
        "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    left=(1, 3, 5, 7, 9, 11, 13, 15),
    right=(2, 4, 6, 8, 10, 12, 14, 16),
    limbs=(
        (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8), (8, 10),
        (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12),
    ),
    parents=(0, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
    root=0,
)  # fmt: skip

NTU25 = Layout(
    name="ntu25",
    joint_names=(
        "spine_base", "spine_mid", "neck", "head", "left_shoulder", "left_elbow", "left_wrist",
        "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip",
        "left_knee", "left_ankle", "left_foot", "right_hip", "right_knee", "right_ankle",
        "right_foot", "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip",
        "right_thumb",
    ),
    left=(4, 5, 6, 7, 12, 13, 14, 15, 21, 22),
    right=(8, 9, 10, 11, 16, 17, 18, 19, 23, 24),
    # Kinect bone list (child, parent), 0-based; a SpineMid-rooted tree. (InfoGCN chains hand ->
    # thumb -> hand tip for joints 21 and 23: rgbpose.models.infogcn keeps its own tree.)
    limbs=(
        (0, 1), (1, 20), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20), (9, 8),
        (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17),
        (19, 18), (21, 7), (22, 7), (23, 11), (24, 11),
    ),
    parents=(
        1, 1, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, 1, 7, 7, 11, 11,
    ),
    root=1,
)  # fmt: skip

LAYOUTS = {lay.name: lay for lay in (COCO17, NTU25)}


def get_layout(name_or_joints: str | int) -> Layout:
    """Look a layout up by name, or by joint count (17 -> coco17, 25 -> ntu25)."""
    if isinstance(name_or_joints, int):
        for lay in LAYOUTS.values():
            if lay.num_joints == name_or_joints:
                return lay
        raise ValueError(f"no layout with {name_or_joints} joints (known: 17, 25)")
    try:
        return LAYOUTS[name_or_joints]
    except KeyError:
        raise ValueError(f"unknown layout {name_or_joints!r} (known: {sorted(LAYOUTS)})") from None


# COCO-17 joint j taken from Kinect joint NTU25_TO_COCO17[j].  Kinect has no face points: the
# nose, eyes and ears all take the Head joint (the centre of the head), so those five heatmap
# channels coincide for Kinect-derived data; body joints map one to one.
NTU25_TO_COCO17 = (3, 3, 3, 3, 3, 4, 8, 5, 9, 6, 10, 12, 16, 13, 17, 14, 18)


def convert_layout(
    keypoint: np.ndarray, score: np.ndarray, src: str, dst: str
) -> tuple[np.ndarray, np.ndarray]:
    """Convert ``keypoint [..., V, C]`` and ``score [..., V]`` from layout ``src`` to ``dst``.

    Supported: identity, and ntu25 -> coco17 (see ``NTU25_TO_COCO17``).
    """
    if src == dst:
        return keypoint, score
    if (src, dst) == ("ntu25", "coco17"):
        idx = np.asarray(NTU25_TO_COCO17)
        return keypoint[..., idx, :], score[..., idx]
    raise ValueError(f"no conversion from layout {src!r} to {dst!r} (supported: ntu25 -> coco17)")
