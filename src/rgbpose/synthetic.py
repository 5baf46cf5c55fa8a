"""The embedded synthetic NTU-like dataset (DESIGN.md section 9).

Writes ``<name>_rgb.avi`` (H.264 in AVI, like the raw NTU videos) and ``<name>.skeleton`` (the NTU
Kinect text format) for every ``SsssCcccPpppRrrrAaaa`` combination of a small config, so every
pipeline stage runs for real without the licensed data.

How a sample is made
--------------------
* **Body**: a 25-joint Kinect skeleton (``rgbpose.layouts.NTU25`` order) driven by joint-angle
  trajectories (trunk pitch/roll/yaw, head pitch; per arm shoulder flexion / abduction / humeral
  twist and elbow flexion; per leg hip flexion / abduction and knee flexion) through forward
  kinematics of limb segments.  The standing foot (or both feet) is kept on the floor by solving
  the pelvis position from the leg chain.  Each performer has fixed proportions (height, arm and
  leg length, shoulder width, bulk) and clothing (shirt, trousers, shoes, sleeves), skin and hair
  colours, all drawn from ``(seed, performer)``.  Each performance draws start, duration,
  amplitude, cycle count, standing spot and facing jitter from ``(seed, setup, performer,
  replication, action)`` -- *not* the camera: like NTU, the three cameras film one performance.
* **Cameras** (NTU: three Kinects at -45, 0, +45 degrees): C1 stands at azimuth 0, C2 at -45
  (to the left of C1 as seen from C1), C3 at +45, all looking at the performer (small per-setup
  jitter of angle, distance 2.8-3.2 m, height 0.9-1.2 m, aimed 1.12 m above the floor).  In
  replication 1 the performer faces C2, in replication 2 faces C3, so (as the NTU paper
  describes) C1 always sees a 45 degree view and C2/C3 see one front and one side (90 degree)
  view each.
  Camera space is Kinect-like: x right, y up, z forward, metres.  ``colorX/colorY`` are the
  pinhole projection into the raw ``width x height`` frame (horizontal FoV 84.1 degrees like the
  Kinect v2 colour camera, square pixels, principal point at the image centre, image y down):
  ``u = W/2 + f*x/z``, ``v = H/2 - f*y/z`` with ``f = (W/2) / tan(42.05 deg)``; ``depthX/depthY``
  use the same formula with the 512x424 depth camera (``f = 365``).
* **Rendering** (OpenCV): a per-setup room (wall, floor with tiles, a door), a floor shadow, the
  body as outlined capsules (limbs, neck), a torso polygon plus capsule, a head disc (exact skin
  colour, centred on joint 3; the hair is a disc behind it), held objects at the right hand, all
  drawn back-to-front by camera depth.
* **Noise bodies** in ``k = floor(noise_share * n + 0.5)`` of the ``n`` samples of the config
  (which ones: a permutation drawn from the seed; kinds alternate short / wide along it), written
  to the skeleton file only, never drawn: *short* -- a ghost standing body present in 5-10
  consecutive frames (never more than 11); *wide* -- a horizontal "furniture" skeleton whose x
  spread exceeds 0.8 x its y spread in every frame, present in at least 12 frames (all frames of
  short clips).  ``synthesize`` reports them in ``synthetic_meta.json``.

Classes (label = A - 1; names from ``rgbpose.ntu.class_names()``)
----------------------------------------------------------------
Appearance-mainly (the *same* right-hand-to-mouth motion distribution; only the held object
differs, so the skeleton cannot tell them apart but RGB can; the objects are deliberately
oversized -- a 32 cm cup, a 26 cm fruit, a 40 cm brush -- so that the cue survives the demo's
small input size):

* A001 drink water -- a tall blue cup (upright, tilted towards the mouth when raised);
* A002 eat meal/snack -- a round orange piece of food;
* A003 brushing teeth -- a long thin white toothbrush with a green head, held across the mouth.

Motion-mainly (no object, or an object that does not identify the class on its own):

* A008 sitting down -- stand, lean forward, lower onto a stool (hips and knees flex ~90 deg);
* A009 standing up -- the reverse, from the same stool (the stool is in both: order matters);
* A010 clapping -- both forearms in front of the chest, hands meet 3-5 times;
* A023 hand waving -- right upper arm raised sideways, forearm up, swinging 2-4 times;
* A024 kicking something -- right leg back-swing then kick (left foot planted); a ball flies off;
* A027 jump up -- crouch, arm swing back then up, a ~0.2 m jump, landing crouch;

Two-person (2 real bodies: the named performer plus a fixed partner per performer, facing each
other sideways to the "front" camera):

* A058 handshaking -- both right hands meet in the middle and pump up and down;
* A050 punching/slapping other person (optional, not in the default 10) -- a right punch from a
  guard, the partner recoils.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_path, write_text_atomic
from .ntu import TWO_PERSON_ACTIONS, class_names, parse_name
from .skeleton_file import Body, SkeletonSequence, write_skeleton

# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

#: action id -> (group, what distinguishes it); the group is "appearance", "motion" or "two-person"
SUPPORTED_ACTIONS: dict[int, tuple[str, str]] = {
    1: ("appearance", "hand to mouth holding a tall blue cup"),
    2: ("appearance", "hand to mouth holding a round orange snack"),
    3: ("appearance", "hand to mouth holding a thin white/green toothbrush"),
    8: ("motion", "sit down onto a stool"),
    9: ("motion", "stand up from a stool"),
    10: ("motion", "clap hands in front of the chest"),
    23: ("motion", "wave the raised right forearm"),
    24: ("motion", "kick a ball with the right leg"),
    27: ("motion", "crouch and jump up"),
    50: ("two-person", "punch the partner, who recoils"),
    58: ("two-person", "shake right hands"),
}
DEFAULT_ACTIONS = (1, 2, 3, 8, 9, 10, 23, 24, 27, 58)

#: Kinect v2 colour camera horizontal field of view (degrees); depth camera intrinsics.
COLOR_HFOV_DEG = 84.1
DEPTH_SIZE = (512, 424)
DEPTH_FOCAL = 365.0

#: a Kinect body ID looks like 72057594037931101 = 2**56 + a small tracking counter
_BODY_ID_BASE = 2**56

SHORT_NOISE_MAX_FRAMES = 10  # <= 11, the NTU "short body" threshold
WIDE_NOISE_MIN_FRAMES = 12


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesize: the sample grid (names), sizes and the seed.

    NTU X-Sub train performers among the defaults are 1, 2, 4, 5 (val: 3, 6); X-View trains on
    cameras 2 and 3.  ``noise_share`` of the samples get one noise body in their skeleton file.
    """

    seed: int = 0
    setup: int = 1
    performers: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    cameras: tuple[int, ...] = (1, 2, 3)
    replications: tuple[int, ...] = (1, 2)
    actions: tuple[int, ...] = DEFAULT_ACTIONS
    frames: int = 40
    width: int = 640
    height: int = 360
    fps: float = 30.0
    noise_share: float = 0.3

    def __post_init__(self) -> None:
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"SynthConfig: {msg}")

        for key in ("performers", "cameras", "replications", "actions"):
            values = getattr(self, key)
            check(isinstance(values, tuple) and len(values) > 0, f"{key} must be a non-empty tuple")
            check(all(isinstance(v, int) for v in values), f"{key} must hold integers")
            check(len(set(values)) == len(values), f"{key} has duplicates: {values}")
        check(1 <= self.setup <= 999, f"setup out of range 1..999: {self.setup}")
        check(all(1 <= p <= 999 for p in self.performers), "performers must be in 1..999")
        check(all(c in (1, 2, 3) for c in self.cameras), "cameras must be in 1..3")
        check(all(r in (1, 2) for r in self.replications), "replications must be in 1..2")
        unknown = [a for a in self.actions if a not in SUPPORTED_ACTIONS]
        check(
            not unknown, f"unsupported actions {unknown} (supported: {sorted(SUPPORTED_ACTIONS)})"
        )
        check(self.frames >= 2, f"frames must be >= 2, got {self.frames}")
        check(self.width >= 32 and self.height >= 32, "width and height must be >= 32")
        check(
            self.width % 2 == 0 and self.height % 2 == 0, "width and height must be even (yuv420p)"
        )
        check(self.fps > 0, f"fps must be > 0, got {self.fps}")
        check(0.0 <= self.noise_share <= 1.0, f"noise_share must be in [0, 1]: {self.noise_share}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthConfig:
        """Build from a plain dict (e.g. YAML): lists become tuples; an unknown key is an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key not in known:
                raise ValueError(f"unknown synthetic config key {key!r} (known: {sorted(known)})")
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


def sample_names(cfg: SynthConfig) -> list[str]:
    """All sample names of ``cfg`` (performer x camera x replication x action), sorted.

    Cheap and import-light: Snakemake calls it while planning.
    """
    return sorted(
        f"S{cfg.setup:03d}C{c:03d}P{p:03d}R{r:03d}A{a:03d}"
        for p in cfg.performers
        for c in cfg.cameras
        for r in cfg.replications
        for a in cfg.actions
    )


@lru_cache(maxsize=8)
def _noise_plan(cfg: SynthConfig) -> dict[str, str]:
    """name -> noise kind ('short' | 'wide') for the ``floor(noise_share*n + .5)`` noisy samples."""
    names = sample_names(cfg)
    k = int(math.floor(cfg.noise_share * len(names) + 0.5))
    order = np.random.default_rng([cfg.seed, 0x5EED]).permutation(len(names))[:k]
    return {names[i]: ("short" if j % 2 == 0 else "wide") for j, i in enumerate(order)}


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
class _Performer:
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
def _performer(seed: int, performer: int, partner: bool = False) -> _Performer:
    """The fixed look of ``performer`` (or of that performer's fixed partner) under ``seed``."""
    rng = np.random.default_rng([seed, performer, 2 if partner else 1, 0xB0D7])
    return _Performer(
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
class _Motion:
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
    def rest(cls, t: int) -> _Motion:
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


def _unit(v: np.ndarray) -> np.ndarray:
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


def _forward_kinematics(p: _Performer, m: _Motion) -> tuple[np.ndarray, dict[str, np.ndarray]]:
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
        foot_dir = _unit(
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
        g = _unit(b - np.sum(b * f, -1, keepdims=True) * f)
        j[:, thumb] = j[:, wr] + 0.5 * p.hand * f + 0.05 * p.scale * g
    return j, {"mouth": mouth, "pelvis": pelvis}


# --------------------------------------------------------------------------------------------
# Actions: joint-angle trajectories per class
# --------------------------------------------------------------------------------------------


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _ramp(p: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 before ``a``, 1 after ``b``, smoothstep between."""
    return _smooth((p - a) / max(b - a, 1e-6))


def _bump(p: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """Rise over [a, b], hold, fall over [c, d]."""
    return _ramp(p, a, b) * (1.0 - _ramp(p, c, d))


@dataclass
class _Performance:
    """The per-performance random draws (shared by the three cameras)."""

    phase: np.ndarray  # action progress per frame, 0..1
    amp: float  # amplitude factor ~1
    cycles: int  # repetitions for cyclic actions
    sway: np.ndarray  # [T, 3] idle sway
    offset: np.ndarray  # standing spot offset (world x, z)
    yaw_jitter: float  # degrees
    extra: np.random.Generator


def _performance(cfg: SynthConfig, name: str) -> _Performance:
    s = parse_name(name)
    rng = np.random.default_rng([cfg.seed, s.setup, s.performer, s.replication, s.action, 0xAC7])
    t = cfg.frames
    u = np.linspace(0.0, 1.0, t)
    start = rng.uniform(0.0, 0.12)
    dur = rng.uniform(0.78, 0.96) * (1.0 - start)
    phase = np.clip((u - start) / dur, 0.0, 1.0)
    ph = rng.uniform(0, 2 * np.pi, 3)
    secs = np.arange(t) / cfg.fps
    sway = 0.008 * np.stack([np.sin(1.3 * secs + ph[0]), 0 * secs, np.sin(0.9 * secs + ph[1])], -1)
    return _Performance(
        phase=phase,
        amp=float(rng.uniform(0.9, 1.1)),
        cycles=int(rng.integers(3, 6)),
        sway=sway,
        offset=rng.uniform(-0.15, 0.15, 2),
        yaw_jitter=float(rng.uniform(-8, 8)),
        extra=rng,
    )


# Key arm poses solved once (offline, Nelder-Mead on the scale-1 body) for hand targets:
_MOUTH = (50.1, -13.3, 27.8, 131.4)  # right hand just in front of and right of the mouth
_MOUTH2 = (52.7, -11.0, 22.6, 130.7)  # the same, a little further right (brushing stroke)
_CLAP_IN = (26.2, -1.1, 26.4, 96.3)  # hands meet at the midline in front of the chest
_CLAP_OUT = (23.0, 13.0, 4.6, 104.6)  # hands 0.4 m apart
_WAVE = (40.0, 87.7, -37.2, 99.5)  # upper arm raised sideways, forearm up
_SHAKE = (23.3, -4.9, 8.4, 42.7)  # hand 0.42 m forward at hip-belt height
_GUARD = (18.0, 3.5, 22.2, 140.1)  # fist near the chin
_PUNCH = (87.8, -10.2, 0.4, 1.0)  # arm stretched forward at shoulder height
_THIGH_REST = (-2.5, -6.0, 5.0, 70.6)  # seated: hand resting on the thigh


def _hand_to_mouth(m: _Motion, pf: _Performance) -> None:
    """A001/A002/A003: identical motion (raise right hand to the mouth, small strokes, lower)."""
    p, rng = pf.phase, pf.extra
    up_end, down_start = rng.uniform(0.22, 0.34), rng.uniform(0.66, 0.8)
    w = _bump(p, 0.0, up_end, down_start, 1.0)
    strokes = 0.5 - 0.5 * np.cos(
        2 * np.pi * pf.cycles * np.clip((p - up_end) / (down_start - up_end), 0, 1)
    )
    key = (
        np.asarray(_MOUTH)[:, None] + (np.asarray(_MOUTH2) - np.asarray(_MOUTH))[:, None] * strokes
    )
    m.arms[1] += (key - m.arms[1]) * w[None]
    m.head_pitch += 6.0 * w * pf.amp
    m.arms[0] += np.array([4.0, 2.0, 0.0, 10.0])[:, None] * w[None]


def _sit(m: _Motion, w: np.ndarray, lean: np.ndarray) -> None:
    """Blend from standing (w=0) to seated (w=1); ``lean`` adds trunk pitch (degrees)."""
    for side in (0, 1):
        m.blend_leg(side, (88.0, 7.0, 92.0), w)
        m.blend_arm(side, _THIGH_REST, _smooth(w * 1.3 - 0.3))
    m.pitch += 8.0 * w + lean
    m.head_pitch -= 0.3 * lean


def _sit_down(m: _Motion, pf: _Performance) -> None:
    p = pf.phase
    w = _ramp(p, 0.15, 0.8)
    lean = 28.0 * pf.amp * np.sin(np.pi * np.clip((p - 0.12) / 0.7, 0, 1))
    _sit(m, w, lean)
    reach = np.sin(np.pi * np.clip((p - 0.15) / 0.55, 0, 1))
    for side in (0, 1):
        m.blend_arm(side, (45.0, 2.0, 0.0, 35.0), 0.7 * reach)


def _stand_up(m: _Motion, pf: _Performance) -> None:
    p = pf.phase
    w = 1.0 - _ramp(p, 0.3, 0.85)
    lean = 32.0 * pf.amp * np.sin(np.pi * np.clip((p - 0.1) / 0.65, 0, 1))
    _sit(m, w, lean)
    push = np.sin(np.pi * np.clip((p - 0.2) / 0.5, 0, 1))
    for side in (0, 1):
        m.blend_arm(side, (30.0, 4.0, 0.0, 25.0), 0.6 * push)


def _clap(m: _Motion, pf: _Performance) -> None:
    p = pf.phase
    w = _bump(p, 0.0, 0.18, 0.85, 1.0)
    cyc = 0.5 + 0.5 * np.cos(2 * np.pi * pf.cycles * np.clip((p - 0.18) / 0.67, 0, 1))
    key = np.asarray(_CLAP_IN)[:, None] + (np.asarray(_CLAP_OUT) - np.asarray(_CLAP_IN))[
        :, None
    ] * (1 - cyc)
    key = key.copy()
    key[1] *= pf.amp
    for side in (0, 1):
        m.arms[side] += (key - m.arms[side]) * w[None]


def _wave(m: _Motion, pf: _Performance) -> None:
    p = pf.phase
    w = _bump(p, 0.0, 0.2, 0.82, 1.0)
    swing = np.sin(2 * np.pi * max(2, pf.cycles - 1) * np.clip((p - 0.2) / 0.62, 0, 1))
    key = np.asarray(_WAVE)[:, None] + np.array([0.0, 0.0, 0.0, 28.0 * pf.amp])[:, None] * swing
    m.arms[1] += (key - m.arms[1]) * w[None]
    m.roll += 3.0 * w


def _kick(m: _Motion, pf: _Performance) -> None:
    p = pf.phase
    m.plant = "left"
    back = _bump(p, 0.15, 0.35, 0.35, 0.5)
    fwd = _bump(p, 0.38, 0.55, 0.6, 0.85)
    m.blend_leg(1, (-15.0, 4.0, 70.0), back)
    m.blend_leg(1, (58.0 * pf.amp, 2.0, 10.0), fwd)
    m.pitch += -10.0 * fwd + 4.0 * back
    m.blend_arm(0, (20.0, 22.0, 0.0, 40.0), np.maximum(back, fwd))
    m.blend_arm(1, (-15.0, 12.0, 0.0, 25.0), fwd)
    m.blend_arm(1, (30.0, 15.0, 0.0, 30.0), back)
    m.roll += 4.0 * np.maximum(back, fwd)


def _jump(m: _Motion, pf: _Performance) -> None:
    p = pf.phase
    crouch = _bump(p, 0.08, 0.32, 0.34, 0.44)
    land = _bump(p, 0.6, 0.68, 0.72, 0.92)
    air = np.clip((p - 0.42) / 0.2, 0, 1)
    height = (0.2 + 0.15 * pf.amp - 0.15) * np.sin(np.pi * air) * (air > 0) * (air < 1)
    for side in (0, 1):
        m.blend_leg(side, (55.0, 5.0, 85.0), crouch)
        m.blend_leg(side, (35.0, 5.0, 55.0), land)
        m.blend_arm(side, (-40.0, 12.0, 0.0, 20.0), crouch)
        m.blend_arm(side, (132.0, 15.0, 0.0, 10.0), _bump(p, 0.36, 0.46, 0.5, 0.66))
    m.pitch += 30.0 * crouch + 18.0 * land
    m.root[:, 1] += height


def _handshake(m: _Motion, pf: _Performance) -> None:
    p = pf.phase
    w = _bump(p, 0.05, 0.3, 0.78, 0.98)
    pump = np.sin(2 * np.pi * 3 * np.clip((p - 0.3) / 0.48, 0, 1))
    key = np.asarray(_SHAKE)[:, None] + np.array([9.0, 0, 0, 4.0])[:, None] * pump
    m.arms[1] += (key - m.arms[1]) * w[None]
    m.pitch += 5.0 * w


def _punch(m: _Motion, pf: _Performance) -> None:
    p = pf.phase
    guard = _bump(p, 0.0, 0.2, 0.8, 1.0)
    hit = _bump(p, 0.42, 0.5, 0.55, 0.65)
    for side in (0, 1):
        m.blend_arm(side, _GUARD, guard)
    m.blend_arm(1, _PUNCH, hit)
    m.yaw += 18.0 * hit - 6.0 * guard
    m.pitch += 6.0 * guard + 6.0 * hit
    m.legs[0, 0] += 8 * guard  # left leg a little forward: fighting stance


def _recoil(m: _Motion, pf: _Performance, hit_at: float = 0.5) -> None:
    """The partner of A050: flinches back when the punch lands."""
    p = pf.phase
    r = _bump(p, hit_at - 0.02, hit_at + 0.08, hit_at + 0.15, hit_at + 0.4)
    m.pitch -= 16.0 * r
    m.head_pitch -= 18.0 * r
    m.root[:, 2] -= 0.12 * r
    for side in (0, 1):
        m.blend_arm(side, (45.0, 10.0, 30.0, 120.0), r)


_ACTION_FUNCS = {
    1: _hand_to_mouth,
    2: _hand_to_mouth,
    3: _hand_to_mouth,
    8: _sit_down,
    9: _stand_up,
    10: _clap,
    23: _wave,
    24: _kick,
    27: _jump,
    50: _punch,
    58: _handshake,
}


# --------------------------------------------------------------------------------------------
# Scene: actors, props, cameras
# --------------------------------------------------------------------------------------------


@dataclass
class _Prop:
    """Something drawn but not in the skeleton: a held object, a stool, a ball (world metres)."""

    kind: str  # cup | food | brush | stool | ball
    points: np.ndarray  # [T, K, 3]
    radius: float
    colour: RGB
    depth_bias: float = 0.0


@dataclass
class _Actor:
    performer: _Performer
    joints: np.ndarray  # [T, 25, 3] world
    yaw: float  # facing, degrees
    lean: np.ndarray  # [T, 2] (leanX, leanY) for the info line


@dataclass
class _Camera:
    position: np.ndarray  # world
    rot: np.ndarray  # rows: right, up, forward (world -> camera)
    fx: float
    cx: float
    cy: float

    def to_cam(self, pts: np.ndarray) -> np.ndarray:
        return (pts - self.position) @ self.rot.T

    def project(self, cam: np.ndarray) -> np.ndarray:
        """Pixel (u, v) of camera-space points (``[..., 3]``)."""
        return project(cam, self.fx, self.fx, self.cx, self.cy)


def project(cam: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Pinhole projection of camera-space points (x right, y up, z forward) to pixels (y down)."""
    z = np.maximum(cam[..., 2], 1e-6)
    return np.stack([cx + fx * cam[..., 0] / z, cy - fy * cam[..., 1] / z], -1)


def color_intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the raw colour frame: Kinect v2 horizontal FoV, square pixels."""
    f = (width / 2.0) / math.tan(math.radians(COLOR_HFOV_DEG / 2.0))
    return f, f, width / 2.0, height / 2.0


def depth_intrinsics() -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the 512x424 depth image."""
    return DEPTH_FOCAL, DEPTH_FOCAL, DEPTH_SIZE[0] / 2.0, DEPTH_SIZE[1] / 2.0


@lru_cache(maxsize=64)
def _setup_params(seed: int, setup: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, setup, 0x5E7])
    wall = rng.uniform([150, 140, 120], [225, 220, 205]).astype(int)
    floor = (wall * rng.uniform(0.45, 0.7) + rng.uniform(-15, 15, 3)).clip(0, 255).astype(int)
    return {
        "distance": float(rng.uniform(2.8, 3.2)),
        "height": float(rng.uniform(0.9, 1.2)),
        "azimuth_jitter": rng.uniform(-4, 4, 3),
        "wall": tuple(int(v) for v in wall),
        "floor": tuple(int(v) for v in floor),
        "door": tuple(int(v) for v in (wall * 0.6).astype(int)),
        "texture_seed": int(rng.integers(2**31)),
    }


CAMERA_AZIMUTH = {1: 0.0, 2: -45.0, 3: 45.0}  # degrees around the performer, C1 = 0
FACING_CAMERA = {1: 2, 2: 3}  # replication -> camera the performer faces


def _camera(cfg: SynthConfig, camera: int) -> _Camera:
    sp = _setup_params(cfg.seed, cfg.setup)
    az = math.radians(CAMERA_AZIMUTH[camera] + sp["azimuth_jitter"][camera - 1])
    d, h = sp["distance"], sp["height"]
    pos = np.array([d * math.sin(az), h, -d * math.cos(az)])
    fwd = _unit(np.array([0.0, 1.12, 0.0]) - pos)
    right = _unit(np.cross([0.0, 1.0, 0.0], fwd))
    up = np.cross(fwd, right)
    fx, _, cx, cy = color_intrinsics(cfg.width, cfg.height)
    return _Camera(pos, np.stack([right, up, fwd]), fx, cx, cy)


def _facing_axes(yaw_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """World (left, forward) unit vectors of a body facing azimuth ``yaw_deg``.

    World: X to the right and Z away from camera C1, Y up.  A body facing C1 (yaw 0) faces -Z
    and has its left at +X (it appears on the right of C1's image).
    """
    a = math.radians(yaw_deg)
    return np.array([math.cos(a), 0.0, math.sin(a)]), np.array([math.sin(a), 0.0, -math.cos(a)])


def _to_world(local: np.ndarray, origin: np.ndarray, yaw_deg: float) -> np.ndarray:
    left, fwd = _facing_axes(yaw_deg)
    return (
        origin
        + local[..., 0:1] * left
        + local[..., 1:2] * np.array([0, 1.0, 0])
        + local[..., 2:3] * fwd
    )


def _build_scene(cfg: SynthConfig, name: str) -> tuple[list[_Actor], list[_Prop]]:
    """The real people and the props of a performance in world coordinates (camera-independent)."""
    s = parse_name(name)
    pf = _performance(cfg, name)
    t = cfg.frames
    face = CAMERA_AZIMUTH[FACING_CAMERA[s.replication]] + pf.yaw_jitter
    main = _performer(cfg.seed, s.performer)
    m = _Motion.rest(t)
    _ACTION_FUNCS[s.action](m, pf)
    m.root += pf.sway
    local, extra = _forward_kinematics(main, m)
    props: list[_Prop] = []
    lean = np.stack([np.sin(np.deg2rad(m.roll)), np.sin(np.deg2rad(m.pitch))], -1)

    if s.action in TWO_PERSON_ACTIONS:
        partner = _performer(cfg.seed, s.performer, partner=True)
        m2 = _Motion.rest(t)
        pf2 = dataclasses.replace(pf, amp=1.0, sway=pf.sway[::-1] * 0.8)
        if s.action == 58:
            _handshake(m2, pf2)
        else:
            _recoil(m2, pf2, hit_at=0.5)
        m2.root += pf2.sway
        local2, _ = _forward_kinematics(partner, m2)
        # The two face each other, side-on to the camera the performer would face alone; they
        # stand so that A's right hand meets B's right hand (A050: B's chest) at the key moment.
        k = (
            int(np.argmax(_bump(pf.phase, 0.3, 0.4, 0.6, 0.7)))
            if s.action == 58
            else int(np.argmin(np.abs(pf.phase - 0.52)))
        )
        ha = local[k, R_HAND]
        hb = local2[k, R_HAND] if s.action == 58 else local2[k, SPINE_SHOULDER] + [0, 0, 0.12]
        gap_fwd = ha[2] + hb[2] + (0.0 if s.action == 58 else 0.05)
        gap_lat = ha[0] + hb[0]
        centre = np.array([pf.offset[0], 0.0, pf.offset[1]])
        # person A looks along +left of the pair's facing, B along -left
        yaw_a, yaw_b = face + 90.0, face - 90.0
        la, fa = _facing_axes(yaw_a)
        pos_a = centre - 0.5 * gap_fwd * fa - 0.5 * gap_lat * la
        pos_b = centre + 0.5 * gap_fwd * fa + 0.5 * gap_lat * la
        actors = [
            _Actor(main, _to_world(local, pos_a, yaw_a), yaw_a, lean),
            _Actor(
                partner,
                _to_world(local2, pos_b, yaw_b),
                yaw_b,
                np.stack([np.sin(np.deg2rad(m2.roll)), np.sin(np.deg2rad(m2.pitch))], -1),
            ),
        ]
        return actors, props

    origin = np.array([pf.offset[0], 0.0, pf.offset[1]])
    world = _to_world(local, origin, face)
    actors = [_Actor(main, world, face, lean)]
    mouth = _to_world(extra["mouth"], origin, face)
    hand, wrist, elbow = world[:, R_HAND], world[:, R_WRIST], world[:, R_ELBOW]
    up = np.array([0.0, 1.0, 0.0])
    to_mouth = _unit(mouth - hand)
    if s.action == 1:
        # upright while the forearm is low, tilting towards the mouth as it rises
        raised = np.clip((wrist[:, 1] - elbow[:, 1]) / max(main.forearm, 1e-6), 0, 1)[:, None]
        axis = _unit((1 - 0.65 * raised) * up + 0.65 * raised * to_mouth)
        centre = hand + 0.02 * _unit(hand - wrist)
        cup = np.stack([centre - 0.16 * axis, centre + 0.16 * axis], 1)
        props.append(_Prop("cup", cup, 0.095, (30, 90, 235)))
    elif s.action == 2:
        centre = hand + 0.05 * _unit(hand - wrist) + 0.02 * up
        props.append(_Prop("food", centre[:, None], 0.13, (255, 140, 10)))
    elif s.action == 3:
        # held across the mouth (towards it and to the left) so that it shows from every view
        axis = _unit(to_mouth + 0.9 * _facing_axes(face)[0])
        a, b = hand - 0.06 * axis, hand + 0.34 * axis
        props.append(_Prop("brush", np.stack([a, b], 1), 0.04, (245, 245, 245)))
    elif s.action in (8, 9):
        # stool under the seated pelvis (from the seated end of the motion)
        seated = _Motion.rest(1)
        _sit(seated, np.ones(1), np.zeros(1))
        _, se = _forward_kinematics(main, seated)
        seat = se["pelvis"][0] + [0.0, -0.09 * main.scale, -0.02]
        half = 0.2
        corners = (
            np.array([[sx, 0.0, sz] for sx, sz in ((-1, -1), (1, -1), (1, 1), (-1, 1))]) * half
        )
        top = seat + corners * [1, 0, 1]
        bottom = top * [1, 0, 1]
        pts = _to_world(np.concatenate([top, bottom]), origin, face)
        props.append(
            _Prop("stool", np.broadcast_to(pts, (t, 8, 3)).copy(), 0.025, (120, 78, 40), 0.35)
        )
    elif s.action == 24:
        foot_z = local[:, R_FOOT, 2]
        r = 0.11
        ball0 = np.array([local[0, R_FOOT, 0], r, local[0, R_FOOT, 2] + 0.35])
        contact = np.nonzero(foot_z >= ball0[2] - r - 0.03)[0]
        ball = np.broadcast_to(ball0, (t, 3)).copy()
        if contact.size:
            dt = np.maximum(np.arange(t) - contact[0], 0) / cfg.fps
            ball[:, 2] += np.minimum(5.0 * dt, 1.8)  # rolls out of the way, never at the camera
            ball[:, 1] += 3.0 * dt - 4.9 * dt**2
            ball[:, 1] = np.maximum(ball[:, 1], r)
        props.append(_Prop("ball", _to_world(ball, origin, face)[:, None], r, (235, 235, 225)))
    return actors, props


# --------------------------------------------------------------------------------------------
# Skeleton rows
# --------------------------------------------------------------------------------------------


def _joint_rows(
    cam_xyz: np.ndarray, cfg: SynthConfig, quat: np.ndarray, tracking: np.ndarray
) -> np.ndarray:
    """``[T,25,12]`` NTU joint rows from camera-space joints ``[T,25,3]``."""
    t = cam_xyz.shape[0]
    rows = np.zeros((t, 25, 12))
    rows[..., 0:3] = cam_xyz
    rows[..., 3:5] = project(cam_xyz, *depth_intrinsics())
    rows[..., 5:7] = project(cam_xyz, *color_intrinsics(cfg.width, cfg.height))
    rows[..., 7:11] = quat
    rows[..., 11] = tracking
    return rows


def _yaw_quat(yaw_deg: float) -> np.ndarray:
    a = math.radians(yaw_deg) / 2
    return np.array([math.cos(a), 0.0, math.sin(a), 0.0])


def _rest_template(p: _Performer) -> np.ndarray:
    j, _ = _forward_kinematics(p, _Motion.rest(1))
    return j[0]


def _noise_body(
    kind: str, cfg: SynthConfig, rng: np.random.Generator, actor_cam: np.ndarray
) -> tuple[np.ndarray, int, int]:
    """Camera-space joints ``[n,25,3]`` of a noise body and its first frame / frame count."""
    t = cfg.frames
    tmpl = _rest_template(_performer(cfg.seed, 900 + int(rng.integers(50))))
    tmpl = tmpl - tmpl[SPINE_MID]
    if kind == "short":
        n = int(min(t, rng.integers(5, SHORT_NOISE_MAX_FRAMES + 1)))
        first = int(rng.integers(0, t - n + 1))
        centre = actor_cam[first, SPINE_MID] + [
            rng.choice([-1, 1]) * rng.uniform(0.7, 1.3),
            0.0,
            rng.uniform(0.0, 0.8),
        ]
        body = tmpl[None] * [1, 1, -1] + centre
        body = body + rng.normal(0, 0.02, (n, 25, 3))
        return body, first, n
    # wide: a skeleton lying horizontally (rotated ~90 degrees about the camera axis)
    n_min = min(t, WIDE_NOISE_MIN_FRAMES)
    first = int(rng.integers(0, min(int(0.2 * t), t - n_min) + 1))
    n = int(rng.integers(max(n_min, int(0.6 * (t - first))), t - first + 1))
    ang = math.radians(90.0 + rng.uniform(-15, 15))
    rot = np.array(
        [[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1]]
    )
    centre = np.array(
        [
            rng.choice([-1, 1]) * rng.uniform(0.8, 1.5),
            rng.uniform(-0.9, -0.4),
            rng.uniform(3.4, 4.4),
        ]
    )
    body = (tmpl @ rot.T)[None] + centre + rng.normal(0, 0.015, (n, 25, 3))
    return body, first, n


def _skeleton(
    cfg: SynthConfig, name: str, cam: _Camera, actors: list[_Actor]
) -> tuple[SkeletonSequence, list[np.ndarray], dict[str, Any]]:
    """The NTU skeleton sequence of one camera, the actors' camera-space joints and metadata."""
    s = parse_name(name)
    t = cfg.frames
    rng = np.random.default_rng([cfg.seed, *s, 0x5C1])
    base = _BODY_ID_BASE + int(rng.integers(2000, 90000))
    ids = [str(base + 1 + 3 * i) for i in range(len(actors) + 1)]
    cams, rows = [], []
    for a in actors:
        xyz = cam.to_cam(a.joints) + rng.normal(0, 0.003, (t, 25, 3))  # Kinect jitter
        tracking = np.full((t, 25), 2.0)
        # Kinect infers (state 1) occluded or fast distal joints now and then.
        distal = [L_HAND, R_HAND, L_FOOT, R_FOOT, L_TIP, L_THUMB, R_TIP, R_THUMB]
        flips = rng.random((t, len(distal))) < 0.04
        tracking[:, distal] = np.where(flips, 1.0, 2.0)
        cams.append(xyz)
        rows.append(_joint_rows(xyz, cfg, _yaw_quat(a.yaw), tracking))
    frames: list[list[Body]] = [[] for _ in range(t)]
    for i, a in enumerate(actors):
        for k in range(t):
            info = (0, 1, 1, 1, 1, 0, float(a.lean[k, 0]), float(a.lean[k, 1]), 2)
            frames[k].append(Body(ids[i], rows[i][k], info))
    noise = []
    kind = _noise_plan(cfg).get(name)
    if kind is not None:
        body, first, n = _noise_body(kind, cfg, rng, cams[0])
        tracking = np.where(rng.random((n, 25)) < 0.5, 1.0, 2.0)
        nrows = _joint_rows(body, cfg, np.array([1.0, 0, 0, 0]), tracking)
        slot = int(rng.integers(0, len(actors) + 1))  # Kinect body slots are not ordered
        for k in range(n):
            frames[first + k].insert(slot, Body(ids[-1], nrows[k], (0, 0, 0, 0, 0, 0, 0.0, 0.0, 2)))
        noise.append({"body_id": ids[-1], "kind": kind, "first_frame": first, "num_frames": n})
    meta = {"actor_body_ids": ids[: len(actors)], "noise_bodies": noise}
    return SkeletonSequence(frames), cams, meta


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _shade(c: RGB, f: float) -> RGB:
    return tuple(int(min(255, max(0, round(v * f)))) for v in c)  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _background(cfg: SynthConfig, camera: int) -> np.ndarray:
    """The empty room seen from ``camera``: wall, door, tiled floor, low-frequency texture."""
    import cv2

    sp = _setup_params(cfg.seed, cfg.setup)
    cam = _camera(cfg, camera)
    w, h = cfg.width, cfg.height
    rng = np.random.default_rng([sp["texture_seed"], camera])
    img = np.empty((h, w, 3), np.uint8)
    img[:] = sp["wall"]
    # The wall stands 2.2 m behind the performer, perpendicular to the camera's ground direction.
    fwd = cam.rot[2] * [1, 0, 1]
    fwd = fwd / np.linalg.norm(fwd)
    right = cam.rot[0]
    wall_d = np.linalg.norm(cam.position * [1, 0, 1]) + 2.2
    base = cam.position * [1, 0, 1] + wall_d * fwd
    line = cam.project(cam.to_cam(np.array([base - 8 * right, base + 8 * right])))
    v_floor = float(np.mean(line[:, 1]))
    # a door on the wall
    door_x = rng.uniform(-2.5, 2.5)
    door = np.array([base + door_x * right, base + (door_x + 0.9) * right])
    door = np.concatenate([door, door + [0, 2.0, 0]])
    dp = cam.project(cam.to_cam(door))
    cv2.rectangle(img, tuple(int(v) for v in dp[2]), tuple(int(v) for v in dp[1]), sp["door"], -1)
    floor_rows = np.arange(h) >= v_floor
    img[floor_rows] = sp["floor"]
    # floor tiles: lines of constant ground depth and lateral offset (0.6 m grid)
    tile = _shade(sp["floor"], 0.88)
    ground0 = cam.position * [1, 0, 1]
    for dz in np.arange(0.6, wall_d, 0.6):
        p = cam.project(
            cam.to_cam(np.array([ground0 + dz * fwd - 8 * right, ground0 + dz * fwd + 8 * right]))
        )
        cv2.line(
            img, tuple(int(v) for v in p[0]), tuple(int(v) for v in p[1]), tile, 1, cv2.LINE_AA
        )
    for dx in np.arange(-6.0, 6.01, 0.6):
        p = cam.project(
            cam.to_cam(
                np.array([ground0 + 0.6 * fwd + dx * right, ground0 + wall_d * fwd + dx * right])
            )
        )
        cv2.line(
            img, tuple(int(v) for v in p[0]), tuple(int(v) for v in p[1]), tile, 1, cv2.LINE_AA
        )
    cv2.line(img, (0, int(v_floor)), (w, int(v_floor)), _shade(sp["wall"], 0.7), max(1, h // 120))
    noise = rng.normal(0, 6.0, (max(2, h // 24), max(2, w // 24), 1)).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    img.setflags(write=False)
    return img


_SHIFT = 4  # cv2 sub-pixel bits
_ONE = 1 << _SHIFT
_FAR = 1e5  # pixels
_NEAR = 0.3  # metres: nothing closer to the camera is drawn (a ball may fly past it)


def _pt(p: np.ndarray) -> tuple[int, int]:
    # clipped so that a point far outside the frame still fits cv2's int32 fixed point
    x, y = np.clip(p, -_FAR, _FAR)
    return int(round(float(x) * _ONE)), int(round(float(y) * _ONE))


class _Canvas:
    """Depth-sorted drawing of capsules, discs and polygons with a dark outline."""

    def __init__(self, img: np.ndarray, cam: _Camera):
        self.img = img
        self.cam = cam
        self.fx = cam.fx
        self.items: list[tuple[float, int, tuple]] = []

    def _px(self, r: float, z: float) -> float:
        return r * self.fx / max(z, 1e-3)

    def capsule(
        self, a: np.ndarray, b: np.ndarray, pa, pb, r: float, colour: RGB, bias: float = 0.0
    ):
        z = 0.5 * (a[2] + b[2])
        if min(a[2], b[2]) < _NEAR:
            return
        self.items.append((z + bias, len(self.items), ("line", pa, pb, self._px(r, z), colour)))

    def disc(
        self, c: np.ndarray, pc, r: float, colour: RGB, bias: float = 0.0, back: tuple | None = None
    ):
        if c[2] < _NEAR:
            return
        self.items.append(
            (c[2] + bias, len(self.items), ("disc", pc, self._px(r, c[2]), colour, back))
        )

    def poly(self, pts3: np.ndarray, pts2: np.ndarray, colour: RGB, bias: float = 0.0):
        if pts3[:, 2].min() < _NEAR:
            return
        self.items.append(
            (float(pts3[:, 2].mean()) + bias, len(self.items), ("poly", pts2, colour))
        )

    def draw(self) -> None:
        import cv2

        img, aa = self.img, cv2.LINE_AA
        for _, _, item in sorted(self.items, key=lambda it: (-it[0], it[1])):
            kind = item[0]
            if kind == "line":
                _, pa, pb, rad, col = item
                th = max(1, int(round(2 * rad)))
                cv2.line(img, _pt(pa), _pt(pb), _shade(col, 0.55), th + 2, aa, _SHIFT)
                cv2.line(img, _pt(pa), _pt(pb), col, th, aa, _SHIFT)
            elif kind == "disc":
                _, pc, rad, col, back = item
                if back is not None:  # hair: a disc behind the head, offset upwards/backwards
                    bc, brad, bcol = back
                    cv2.circle(
                        img,
                        _pt(bc),
                        int(round((brad + 1) * _ONE)),
                        _shade(bcol, 0.6),
                        -1,
                        aa,
                        _SHIFT,
                    )
                    cv2.circle(img, _pt(bc), int(round(brad * _ONE)), bcol, -1, aa, _SHIFT)
                cv2.circle(
                    img, _pt(pc), int(round((rad + 1) * _ONE)), _shade(col, 0.55), -1, aa, _SHIFT
                )
                cv2.circle(img, _pt(pc), int(round(rad * _ONE)), col, -1, aa, _SHIFT)
            else:
                _, pts, col = item
                ipts = np.round(np.clip(pts, -_FAR, _FAR) * _ONE).astype(np.int32)[None]
                cv2.fillPoly(img, ipts, col, aa, _SHIFT)
                cv2.polylines(img, ipts, True, _shade(col, 0.55), 1, aa, _SHIFT)


def _draw_body(cv: _Canvas, xyz: np.ndarray, px: np.ndarray, p: _Performer) -> None:
    """Queue one body's parts (camera-space joints ``xyz`` [25,3], pixels ``px`` [25,2])."""
    k = p.bulk * p.scale
    shirt, trousers, skin = p.shirt, p.trousers, p.skin
    limb_skin = _shade(skin, 0.93)  # hands/forearms: not the head's exact colour
    for hip, knee, ankle, foot in (
        (L_HIP, L_KNEE, L_ANKLE, L_FOOT),
        (R_HIP, R_KNEE, R_ANKLE, R_FOOT),
    ):
        cv.capsule(xyz[hip], xyz[knee], px[hip], px[knee], 0.075 * k, trousers, 0.02)
        cv.capsule(
            xyz[knee], xyz[ankle], px[knee], px[ankle], 0.055 * k, _shade(trousers, 0.92), 0.02
        )
        cv.capsule(xyz[ankle], xyz[foot], px[ankle], px[foot], 0.045 * p.scale, p.shoes, 0.02)
    cv.capsule(xyz[L_HIP], xyz[R_HIP], px[L_HIP], px[R_HIP], 0.09 * k, trousers, 0.03)
    torso = [L_SHOULDER, R_SHOULDER, R_HIP, L_HIP]
    cv.poly(xyz[torso], px[torso], shirt, 0.03)
    # The torso's depth (seen from the side) is a capsule; it stops short of the shoulder line
    # so that its round cap never reaches the chin.
    r_torso = 0.12 * k
    top = xyz[SPINE_SHOULDER] - 0.6 * r_torso * _unit(xyz[SPINE_SHOULDER] - xyz[SPINE_BASE])
    cv.capsule(xyz[SPINE_BASE], top, px[SPINE_BASE], cv.cam.project(top), r_torso, shirt, 0.025)
    cv.capsule(
        xyz[SPINE_SHOULDER],
        xyz[NECK],
        px[SPINE_SHOULDER],
        px[NECK],
        0.045 * p.scale,
        _shade(skin, 0.82),
        0.01,
    )
    # head: exact skin colour, centred on joint 3; hair is a disc behind it, a little up.  Drawn
    # after the trunk even when leaning back (bias); a hand in front of the face still covers it.
    up = _unit(xyz[HEAD] - xyz[NECK])
    hair_c = xyz[HEAD] + 0.02 * p.scale * up
    hair_px = cv.cam.project(hair_c)
    hair_r = cv._px(p.head_r * 1.04, xyz[HEAD][2])
    cv.disc(xyz[HEAD], px[HEAD], p.head_r, skin, -0.05, back=(hair_px, hair_r, p.hair))
    sleeve = shirt if p.long_sleeves else limb_skin
    for sh, el, wr, tip in (
        (L_SHOULDER, L_ELBOW, L_WRIST, L_TIP),
        (R_SHOULDER, R_ELBOW, R_WRIST, R_TIP),
    ):
        cv.capsule(xyz[sh], xyz[el], px[sh], px[el], 0.05 * k, _shade(shirt, 0.9))
        cv.capsule(xyz[el], xyz[wr], px[el], px[wr], 0.04 * k, _shade(sleeve, 0.95))
        cv.capsule(xyz[wr], xyz[tip], px[wr], px[tip], 0.035 * p.scale, limb_skin, -0.005)


def _draw_prop(cv: _Canvas, prop: _Prop, cam: _Camera, k: int) -> None:
    pts = cam.to_cam(prop.points[k])
    px = cam.project(pts)
    if prop.kind == "cup":
        a, b = pts
        half = cv._px(prop.radius, float(pts[:, 2].mean()))
        d = px[1] - px[0]
        n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-6) * half
        quad = np.array([px[0] + n, px[1] + n, px[1] - n, px[0] - n])
        cv.poly(pts, quad, prop.colour, -0.01)
        cv.capsule(b, b, px[1], px[1], prop.radius * 0.5, (200, 220, 255), -0.011)  # rim highlight
    elif prop.kind == "food":
        cv.disc(pts[0], px[0], prop.radius, prop.colour, -0.01)
    elif prop.kind == "brush":
        a, b = pts
        head = a + (b - a) * 0.75
        hp = px[0] + (px[1] - px[0]) * 0.75
        cv.capsule(a, b, px[0], px[1], prop.radius, prop.colour, -0.01)
        cv.capsule(head, b, hp, px[1], prop.radius * 1.6, (40, 200, 70), -0.011)
    elif prop.kind == "ball":
        cv.disc(pts[0], px[0], prop.radius, prop.colour)
    elif prop.kind == "stool":
        top, bottom = pts[:4], pts[4:]
        for i in range(4):
            cv.capsule(
                top[i],
                bottom[i],
                px[i],
                px[4 + i],
                prop.radius,
                _shade(prop.colour, 0.8),
                prop.depth_bias,
            )
        cv.poly(top, px[:4], prop.colour, prop.depth_bias - 0.01)


def _shadow(img: np.ndarray, cam: _Camera, joints: np.ndarray, colour: RGB) -> None:
    import cv2

    c = np.mean(joints[[L_ANKLE, R_ANKLE, SPINE_BASE]], axis=0) * [1, 0, 1]
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = c + np.stack([0.38 * np.cos(ang), np.zeros_like(ang), 0.3 * np.sin(ang)], -1)
    px = cam.project(cam.to_cam(ring))
    cv2.fillPoly(img, [np.round(px * _ONE).astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)


def render_sample(
    cfg: SynthConfig, name: str, marker_joints: Sequence[int] = ()
) -> tuple[np.ndarray, SkeletonSequence, dict[str, Any]]:
    """Render one sample: RGB frames ``uint8 [T,H,W,3]``, its skeleton sequence, metadata.

    ``marker_joints`` (for tests) draws a 2-pixel magenta dot on top of those joints of every
    real body at the skeleton's (colorX, colorY).
    """
    s = parse_name(name)
    if (
        s.setup != cfg.setup
        or s.performer not in cfg.performers
        or s.camera not in cfg.cameras
        or s.replication not in cfg.replications
        or s.action not in cfg.actions
    ):
        raise ValueError(f"sample {name} is not part of this synthetic config")
    actors, props = _build_scene(cfg, name)
    cam = _camera(cfg, s.camera)
    seq, cams, meta = _skeleton(cfg, name, cam, actors)
    bg = _background(cfg, s.camera)
    shadow = _shade(_setup_params(cfg.seed, cfg.setup)["floor"], 0.78)
    frames = np.empty((cfg.frames, cfg.height, cfg.width, 3), np.uint8)
    px_all = [cam.project(c) for c in cams]
    for k in range(cfg.frames):
        img = bg.copy()
        for a in actors:
            _shadow(img, cam, a.joints[k], shadow)
        cv = _Canvas(img, cam)
        for a, xyz, px in zip(actors, cams, px_all):
            _draw_body(cv, xyz[k], px[k], a.performer)
        for prop in props:
            _draw_prop(cv, prop, cam, k)
        cv.draw()
        if marker_joints:
            import cv2

            for px in px_all:
                for v in marker_joints:
                    cv2.circle(img, _pt(px[k, v]), 2 * _ONE, (255, 0, 255), -1, cv2.LINE_8, _SHIFT)
        frames[k] = img
    meta = {
        "name": name,
        "label": s.label,
        "action": s.action,
        "class_name": class_names()[s.label],
        "group": SUPPORTED_ACTIONS[s.action][0],
        "setup": s.setup,
        "camera": s.camera,
        "performer": s.performer,
        "replication": s.replication,
        "frames": cfg.frames,
        "width": cfg.width,
        "height": cfg.height,
        **meta,
    }
    return frames, seq, meta


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_video(frames: np.ndarray, dst: str | os.PathLike, fps: float, crf: int = 18) -> None:
    """Encode RGB ``frames`` [T,H,W,3] to H.264 (libx264, yuv420p) at ``dst``, atomically."""
    import ffmpeg
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    with atomic_path(dst) as tmp:
        stream = (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)
            .output(
                str(tmp), vcodec="libx264", pix_fmt="yuv420p", preset="veryfast", crf=crf, threads=1
            )
            .global_args("-hide_banner", "-nostdin", "-v", "error")
            .overwrite_output()
        )
        try:
            stream.run(
                cmd=imageio_ffmpeg.get_ffmpeg_exe(),
                input=np.ascontiguousarray(frames).tobytes(),
                capture_stdout=True,
                capture_stderr=True,
            )
        except ffmpeg.Error as exc:
            raise RuntimeError(
                f"ffmpeg failed writing {dst}: {exc.stderr.decode(errors='replace')}"
            ) from None


def _write_one(args: tuple[SynthConfig, str, str]) -> dict[str, Any]:
    cfg, name, out_dir = args
    frames, seq, meta = render_sample(cfg, name)
    out = Path(out_dir)
    write_skeleton(seq, out / f"{name}.skeleton")
    write_video(frames, out / f"{name}_rgb.avi", cfg.fps)
    return meta


def synthesize(
    cfg: SynthConfig,
    out_dir: str | os.PathLike,
    names: Iterable[str] | None = None,
    progress: bool = False,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Write ``<name>_rgb.avi`` + ``<name>.skeleton`` for ``names`` (default: all) into ``out_dir``.

    Returns per-sample metadata (name, label, class, real body ids, noise bodies) in name order
    and writes it, with the config, to ``<out_dir>/synthetic_meta.json``
    (``{"config": {...}, "samples": [...]}``).  ``jobs`` > 1 renders in worker processes.
    """
    all_names = sample_names(cfg)
    todo = all_names if names is None else sorted(names)
    valid = set(all_names)
    bad = [n for n in todo if n not in valid]
    if bad:
        raise ValueError(f"not samples of this synthetic config: {bad[:5]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = [(cfg, n, str(out)) for n in todo]
    show = progress and sys.stderr.isatty()
    if jobs > 1 and len(work) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(jobs, len(work))) as pool:
            it = pool.imap(_write_one, work, chunksize=4)
            metas = list(_progress(it, len(work), show))
    else:
        metas = list(_progress(map(_write_one, work), len(work), show))
    doc = {"config": _config_dict(cfg), "samples": metas}
    write_text_atomic(out / "synthetic_meta.json", json.dumps(doc, indent=1) + "\n")
    return metas


def _config_dict(cfg: SynthConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def _progress(it: Iterable, total: int, show: bool) -> Iterable:
    if not show:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="synthesize", leave=False)


# --------------------------------------------------------------------------------------------
# Contact sheet
# --------------------------------------------------------------------------------------------


def _label_for(path: Path) -> list[str]:
    stem = path.name
    for suffix in ("_rgb.avi", ".avi", ".mp4"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    try:
        s = parse_name(stem)
    except ValueError:
        return [path.name]
    return [stem, f"A{s.action:03d} {class_names()[s.label]}"]


def contact_sheet(
    video_paths: Sequence[str | os.PathLike],
    out_png: str | os.PathLike,
    frames_per_video: int = 4,
    labels: Sequence[str] | None = None,
    thumb_height: int = 180,
) -> np.ndarray:
    """Tile ``frames_per_video`` evenly spaced frames of each video (one row each) into a PNG.

    Each row starts with a label panel (sample name and class name, or ``labels[i]``).  Returns
    the RGB sheet; ``out_png`` is written atomically (PNG via Pillow).
    """
    import cv2

    from .data.video import read_frames, video_num_frames

    if not video_paths:
        raise ValueError("contact_sheet needs at least one video")
    rows = []
    panel_w = 260
    for i, path in enumerate(video_paths):
        n = video_num_frames(path)
        frames = read_frames(path, np.linspace(0, n - 1, frames_per_video).round().astype(int))
        h, w = frames.shape[1:3]
        tw = max(1, int(round(w * thumb_height / h)))
        thumbs = [cv2.resize(f, (tw, thumb_height), interpolation=cv2.INTER_AREA) for f in frames]
        panel = np.full((thumb_height, panel_w, 3), 255, np.uint8)
        text = [labels[i]] if labels is not None else _label_for(Path(path))
        lines: list[str] = []
        for t in text:  # wrap long class names
            words, cur = t.split(), ""
            for wd in words:
                if len(cur) + len(wd) + 1 > 26 and cur:
                    lines.append(cur)
                    cur = wd
                else:
                    cur = f"{cur} {wd}".strip()
            lines.append(cur)
        for j, line in enumerate(lines):
            cv2.putText(
                panel,
                line,
                (8, 24 + 22 * j),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
        rows.append(np.concatenate([panel, *thumbs], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    sheet = np.concatenate(rows, axis=0)
    # Pillow, not cv2.imwrite: OpenCV's bundled libpng can fail ("bad parameters to zlib") once
    # torch or mediapipe has loaded another zlib into the same process.
    from PIL import Image

    with atomic_path(out_png) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return sheet


# --------------------------------------------------------------------------------------------
# CLIs
# --------------------------------------------------------------------------------------------


def _load_config_file(path: str) -> dict[str, Any]:
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of SynthConfig keys")
    return data


def cli_synthesize(argv: Sequence[str] | None = None) -> int:
    """``rgbpose synthesize -o OUT_DIR [--config F] [--seed N] [--width W] [--height H] ...``."""
    ap = argparse.ArgumentParser(prog="rgbpose synthesize", description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out-dir", required=True, type=Path)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", help="YAML/JSON file with SynthConfig keys")
    src.add_argument("--config-json", help="SynthConfig keys as an inline JSON object")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="write only these samples")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    args = ap.parse_args(argv)
    try:
        if args.config_json:
            d = json.loads(args.config_json)
        else:
            d = _load_config_file(args.config) if args.config else {}
        for key in ("seed", "width", "height", "frames"):
            if getattr(args, key) is not None:
                d[key] = getattr(args, key)
        cfg = SynthConfig.from_dict(d)
        t0 = time.perf_counter()
        metas = synthesize(cfg, args.out_dir, names=args.only, progress=True, jobs=args.jobs)
    except (ValueError, OSError) as exc:
        from .cli import report_error

        # a bad config/--only value is a usage error (2); an unreadable/unwritable file is 1
        return report_error("rgbpose synthesize", exc, 2 if isinstance(exc, ValueError) else 1)
    noisy = sum(1 for m in metas if m["noise_bodies"])
    print(
        f"wrote {len(metas)} samples ({noisy} with noise bodies) to {args.out_dir} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def cli_contact_sheet(argv: Sequence[str] | None = None) -> int:
    """``rgbpose contact-sheet VIDEO... -o sheet.png [--frames 4]``."""
    ap = argparse.ArgumentParser(
        prog="rgbpose contact-sheet", description="tile video frames into a PNG"
    )
    ap.add_argument("videos", nargs="+")
    ap.add_argument("-o", "--out", required=True, type=Path)
    ap.add_argument("--frames", type=int, default=4, help="frames per video (default 4)")
    args = ap.parse_args(argv)
    contact_sheet(args.videos, args.out, frames_per_video=args.frames)
    print(f"wrote {args.out}")
    return 0
