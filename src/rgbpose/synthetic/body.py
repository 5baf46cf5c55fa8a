"""Performers and the kinematics of their 25-joint Kinect skeleton.

A body is a 25-joint Kinect skeleton (``rgbpose.layouts.NTU25`` order) driven by joint-angle
trajectories (trunk pitch/roll/yaw, head pitch; per arm shoulder flexion / abduction / humeral
twist and elbow flexion; per leg hip flexion / abduction and knee flexion) through forward
kinematics of limb segments.  The standing foot (or both feet) is kept on the floor by solving the
pelvis position from the leg chain.  Each performer has fixed proportions (height, arm and leg
length, shoulder width, bulk) and clothing (shirt, trousers, shoes, sleeves), skin and hair
colours, all drawn from ``(seed, performer)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# --------------------------------------------------------------------------------------------
# Performers
# --------------------------------------------------------------------------------------------

RGB = tuple[int, int, int]

_SKIN: tuple[RGB, ...] = (
    (250, 214, 180), (236, 188, 150), (220, 168, 122), (196, 136, 94), (156, 102, 68),
    (112, 72, 48),
)  # fmt: skip
# No saturated blue, orange, white or green: those are the held objects' colours.
_SHIRTS: tuple[RGB, ...] = (
    (196, 40, 44), (128, 32, 64), (128, 128, 128), (226, 196, 64), (112, 64, 152), (44, 44, 48),
    (226, 122, 168), (120, 80, 52), (156, 152, 96), (84, 148, 148), (170, 92, 92),
)  # fmt: skip
_TROUSERS: tuple[RGB, ...] = (
    (44, 46, 70), (32, 32, 34), (92, 92, 96), (124, 104, 72), (72, 52, 40), (150, 140, 118),
)  # fmt: skip
_HAIR: tuple[RGB, ...] = ((24, 20, 18), (70, 44, 26), (150, 110, 60), (120, 120, 120), (40, 30, 24))


@dataclass(frozen=True)
class Performer:
    """Body proportions (metres) and colours of one person."""

    scale: float
    arm: float
    leg: float
    width: float
    bulk: float
    skin: RGB
    hair: RGB
    shirt: RGB
    trousers: RGB
    shoes: RGB
    long_sleeves: bool

    # segment lengths (a 1.75 m person at scale 1)
    @property
    def spine_low(self) -> float:  # SpineBase -> SpineMid
        return 0.27 * self.scale

    @property
    def spine_up(self) -> float:  # SpineMid -> SpineShoulder
        return 0.22 * self.scale

    @property
    def neck(self) -> float:  # SpineShoulder -> Neck
        return 0.06 * self.scale

    @property
    def head(self) -> float:  # Neck -> Head (centre)
        return 0.13 * self.scale

    @property
    def shoulder_w(self) -> float:
        return 0.18 * self.scale * self.width

    @property
    def hip_w(self) -> float:
        return 0.085 * self.scale * self.width

    @property
    def hip_drop(self) -> float:
        return 0.05 * self.scale

    @property
    def upper_arm(self) -> float:
        return 0.29 * self.scale * self.arm

    @property
    def forearm(self) -> float:
        return 0.26 * self.scale * self.arm

    @property
    def hand(self) -> float:  # wrist -> hand
        return 0.08 * self.scale

    @property
    def thigh(self) -> float:
        return 0.42 * self.scale * self.leg

    @property
    def shank(self) -> float:
        return 0.41 * self.scale * self.leg

    @property
    def ankle_h(self) -> float:
        return 0.08 * self.scale

    @property
    def foot(self) -> float:
        return 0.13 * self.scale

    @property
    def head_r(self) -> float:
        return 0.11 * self.scale


def _jitter_colour(rng: np.random.Generator, c: RGB, amount: int) -> RGB:
    r, g, b = (int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)
    return r, g, b


@lru_cache(maxsize=256)
def make_performer(seed: int, performer: int, partner: bool = False) -> Performer:
    """The fixed look of ``performer`` (or of that performer's fixed partner) under ``seed``."""
    rng = np.random.default_rng([seed, performer, 2 if partner else 1, 0xB0D7])
    return Performer(
        scale=float(rng.uniform(0.9, 1.07)),
        arm=float(rng.uniform(0.95, 1.05)),
        leg=float(rng.uniform(0.95, 1.05)),
        width=float(rng.uniform(0.92, 1.1)),
        bulk=float(rng.uniform(0.9, 1.25)),
        skin=_jitter_colour(rng, _SKIN[rng.integers(len(_SKIN))], 8),
        hair=_HAIR[rng.integers(len(_HAIR))],
        shirt=_jitter_colour(rng, _SHIRTS[rng.integers(len(_SHIRTS))], 14),
        trousers=_jitter_colour(rng, _TROUSERS[rng.integers(len(_TROUSERS))], 10),
        shoes=_jitter_colour(rng, (40, 34, 30), 10),
        long_sleeves=bool(rng.random() < 0.5),
    )


# --------------------------------------------------------------------------------------------
# Kinematics
# --------------------------------------------------------------------------------------------

# Kinect joint indices (DESIGN.md section 2)
SPINE_BASE, SPINE_MID, NECK, HEAD = 0, 1, 2, 3
L_SHOULDER, L_ELBOW, L_WRIST, L_HAND = 4, 5, 6, 7
R_SHOULDER, R_ELBOW, R_WRIST, R_HAND = 8, 9, 10, 11
L_HIP, L_KNEE, L_ANKLE, L_FOOT = 12, 13, 14, 15
R_HIP, R_KNEE, R_ANKLE, R_FOOT = 16, 17, 18, 19
SPINE_SHOULDER, L_TIP, L_THUMB, R_TIP, R_THUMB = 20, 21, 22, 23, 24

# Rest angles (degrees): arm = (flexion, abduction, twist, elbow), leg = (flexion, abduction, knee)
_ARM_REST = np.array([8.0, 9.0, 0.0, 12.0])
_LEG_REST = np.array([0.0, 4.0, 3.0])


@dataclass
class Motion:
    """Joint-angle trajectories of one body over T frames (degrees; body-local metres).

    Body-local frame: x = the person's left, y = up, z = the person's forward; origin on the
    floor under the standing pelvis.  ``arms[s]`` / ``legs[s]`` (s = 0 left, 1 right) are
    ``[4, T]`` / ``[3, T]``; ``plant`` names the foot kept on the floor (``both``, ``left``).
    """

    arms: np.ndarray  # [2, 4, T]
    legs: np.ndarray  # [2, 3, T]
    pitch: np.ndarray  # trunk forward lean
    roll: np.ndarray  # trunk sideways lean (towards the left > 0)
    yaw: np.ndarray  # trunk twist (left shoulder back > 0)
    head_pitch: np.ndarray  # head forward nod
    root: np.ndarray  # [T, 3] pelvis offset added after foot planting
    plant: str = "both"

    @classmethod
    def rest(cls, t: int) -> Motion:
        return cls(
            arms=np.broadcast_to(_ARM_REST[None, :, None], (2, 4, t)).copy(),
            legs=np.broadcast_to(_LEG_REST[None, :, None], (2, 3, t)).copy(),
            pitch=np.zeros(t),
            roll=np.zeros(t),
            yaw=np.zeros(t),
            head_pitch=np.zeros(t),
            root=np.zeros((t, 3)),
        )

    def blend_arm(self, side: int, key: Sequence[float], w: np.ndarray) -> None:
        """Move arm ``side`` from its current trajectory towards the fixed pose ``key`` by ``w``."""
        self.arms[side] += (np.asarray(key, float)[:, None] - self.arms[side]) * w[None]

    def blend_leg(self, side: int, key: Sequence[float], w: np.ndarray) -> None:
        self.legs[side] += (np.asarray(key, float)[:, None] - self.legs[side]) * w[None]


def _rot_x(a: np.ndarray) -> np.ndarray:
    """[T,3,3] rotation taking up (0,1,0) towards forward (0,0,1) by ``a`` radians."""
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack(
        [np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2
    )


def _rot_z(a: np.ndarray) -> np.ndarray:
    """[T,3,3] rotation taking up (0,1,0) towards the left (1,0,0) by ``a`` radians."""
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack(
        [np.stack([c, s, z], -1), np.stack([-s, c, z], -1), np.stack([z, z, o], -1)], -2
    )


def _rot_y(a: np.ndarray) -> np.ndarray:
    """[T,3,3] rotation taking forward (0,0,1) towards the left (1,0,0) by ``a`` radians."""
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack(
        [np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2
    )


def _apply(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate ``v`` [T,3] (or [3]) by ``r`` [T,3,3]."""
    return np.einsum("tij,tj->ti", r, np.broadcast_to(v, (r.shape[0], 3)))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _limb_dirs(
    flex: np.ndarray, abd: np.ndarray, twist: np.ndarray, bend: np.ndarray, s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit directions of a two-segment limb in its parent frame (radians; s=+1 left, -1 right).

    The proximal segment hangs down at zero angles, flexion swings it forward, abduction
    sideways.  The distal segment bends by ``bend`` towards the direction ``b`` that is
    perpendicular to the proximal one (forward for a hanging limb), turned about it by ``twist``
    (internal rotation > 0 turns it towards the body's midline).  Returns (proximal, distal, b).
    """
    ca, sa, cf, sf = np.cos(abd), np.sin(abd), np.cos(flex), np.sin(flex)
    u = np.stack([s * sa, -ca * cf, ca * sf], -1)
    b0 = np.stack([np.zeros_like(flex), sf, cf], -1)  # d u / d flex: always perpendicular to u
    b = np.cos(twist)[:, None] * b0 + (s * np.sin(twist))[:, None] * np.cross(u, b0)
    d = np.cos(bend)[:, None] * u + np.sin(bend)[:, None] * b
    return u, d, b


def forward_kinematics(p: Performer, m: Motion) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Joints ``[T,25,3]`` in the body-local frame, plus named extra points (mouth, ...)."""
    t = m.pitch.shape[0]
    rad = np.deg2rad
    j = np.zeros((t, 25, 3))
    up = np.array([0.0, 1.0, 0.0])

    # Legs hang from the pelvis frame (the trunk pitch does not tilt the hips).
    rel = {}
    for side, s in ((0, 1.0), (1, -1.0)):
        flex, abd, knee = (rad(a) for a in m.legs[side])
        thigh, shank, _ = _limb_dirs(flex, abd, np.zeros(t), -knee, s)
        hip = np.array([s * p.hip_w, -p.hip_drop, 0.0])
        knee_p = hip + p.thigh * thigh
        ankle = knee_p + p.shank * shank
        # the foot points forward and slightly down, following the shank's swing when kicking
        foot_dir = unit(
            np.stack([np.zeros(t), -0.3 + 0.5 * shank[:, 2], 1.0 + 0.0 * shank[:, 2]], -1)
        )
        rel[side] = (np.broadcast_to(hip, (t, 3)), knee_p, ankle, ankle + p.foot * foot_dir)

    # Pelvis position: keep the planted ankle(s) at their rest spot on the floor.
    planted = {"both": (0, 1), "left": (0,), "right": (1,)}[m.plant]
    ank = np.mean([rel[s][2] for s in planted], axis=0)
    rest_ank_z = 0.0
    pelvis = np.stack([np.zeros(t), p.ankle_h - ank[:, 1], rest_ank_z - ank[:, 2]], -1) + m.root
    for side, idx in ((0, (L_HIP, L_KNEE, L_ANKLE, L_FOOT)), (1, (R_HIP, R_KNEE, R_ANKLE, R_FOOT))):
        for k, pt in zip(idx, rel[side]):
            j[:, k] = pelvis + pt

    # Spine and head.
    rt = _rot_y(rad(m.yaw)) @ _rot_x(rad(m.pitch)) @ _rot_z(rad(m.roll))
    rh = rt @ _rot_x(rad(m.head_pitch))
    trunk_up = _apply(rt, up)
    head_up = _apply(rh, up)
    j[:, SPINE_BASE] = pelvis
    j[:, SPINE_MID] = pelvis + p.spine_low * trunk_up
    j[:, SPINE_SHOULDER] = j[:, SPINE_MID] + p.spine_up * trunk_up
    j[:, NECK] = j[:, SPINE_SHOULDER] + p.neck * head_up
    j[:, HEAD] = j[:, NECK] + p.head * head_up
    mouth = j[:, HEAD] + _apply(rh, np.array([0.0, -0.06, 0.10]) * p.scale)

    # Arms in the trunk frame.
    for side, s in ((0, 1.0), (1, -1.0)):
        flex, abd, twist, elbow = (rad(a) for a in m.arms[side])
        u, f, b = _limb_dirs(flex, abd, twist, elbow, s)
        u, f, b = _apply(rt, u), _apply(rt, f), _apply(rt, b)
        sh, el, wr, hand, tip, thumb = (
            (L_SHOULDER, L_ELBOW, L_WRIST, L_HAND, L_TIP, L_THUMB)
            if side == 0
            else (R_SHOULDER, R_ELBOW, R_WRIST, R_HAND, R_TIP, R_THUMB)
        )
        j[:, sh] = j[:, SPINE_SHOULDER] + _apply(
            rt, np.array([s * p.shoulder_w, -0.03 * p.scale, 0])
        )
        j[:, el] = j[:, sh] + p.upper_arm * u
        j[:, wr] = j[:, el] + p.forearm * f
        j[:, hand] = j[:, wr] + p.hand * f
        j[:, tip] = j[:, hand] + 0.06 * p.scale * f
        # The thumb sits on the inner side of the hand: perpendicular to the forearm, in the
        # elbow's bending plane and towards the body.
        g = unit(b - np.sum(b * f, -1, keepdims=True) * f)
        j[:, thumb] = j[:, wr] + 0.5 * p.hand * f + 0.05 * p.scale * g
    return j, {"mouth": mouth, "pelvis": pelvis}
