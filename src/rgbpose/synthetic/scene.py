"""Cameras, projection, and the people and props of a performance in world coordinates.

Cameras (NTU: three Kinects at -45, 0, +45 degrees): C1 stands at azimuth 0, C2 at -45 (to the
left of C1 as seen from C1), C3 at +45, all looking at the performer (small per-setup jitter of
angle, distance 2.8-3.2 m, height 0.9-1.2 m, aimed 1.12 m above the floor).  In replication 1 the
performer faces C2, in replication 2 faces C3, so (as the NTU paper describes) C1 always sees a 45
degree view and C2/C3 see one front and one side (90 degree) view each.

Camera space is Kinect-like: x right, y up, z forward, metres.  ``colorX/colorY`` are the pinhole
projection into the raw ``width x height`` frame (horizontal FoV 84.1 degrees like the Kinect v2
colour camera, square pixels, principal point at the image centre, image y down):
``u = W/2 + f*x/z``, ``v = H/2 - f*y/z`` with ``f = (W/2) / tan(42.05 deg)``; ``depthX/depthY``
use the same formula with the 512x424 depth camera (``f = 365``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from rgbpose.ntu import DEPTH_SIZE, TWO_PERSON_ACTIONS, parse_name

from .actions import ACTION_FUNCS, bump, draw_performance, handshake, recoil, sit
from .body import (
    R_ELBOW,
    R_FOOT,
    R_HAND,
    R_WRIST,
    RGB,
    SPINE_SHOULDER,
    Motion,
    Performer,
    forward_kinematics,
    make_performer,
    unit,
)
from .config import SynthConfig

#: Kinect v2 colour camera horizontal field of view (degrees); depth camera intrinsics.
COLOR_HFOV_DEG = 84.1
DEPTH_FOCAL = 365.0


@dataclass
class Prop:
    """Something drawn but not in the skeleton: a held object, a stool, a ball (world metres)."""

    kind: str  # cup | food | brush | stool | ball
    points: np.ndarray  # [T, K, 3]
    radius: float
    colour: RGB
    depth_bias: float = 0.0


@dataclass
class Actor:
    performer: Performer
    joints: np.ndarray  # [T, 25, 3] world
    yaw: float  # facing, degrees
    lean: np.ndarray  # [T, 2] (leanX, leanY) for the info line


@dataclass
class Camera:
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
def setup_params(seed: int, setup: int) -> dict[str, Any]:
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


def make_camera(cfg: SynthConfig, camera: int) -> Camera:
    sp = setup_params(cfg.seed, cfg.setup)
    az = math.radians(CAMERA_AZIMUTH[camera] + sp["azimuth_jitter"][camera - 1])
    d, h = sp["distance"], sp["height"]
    pos = np.array([d * math.sin(az), h, -d * math.cos(az)])
    fwd = unit(np.array([0.0, 1.12, 0.0]) - pos)
    right = unit(np.cross([0.0, 1.0, 0.0], fwd))
    up = np.cross(fwd, right)
    fx, _, cx, cy = color_intrinsics(cfg.width, cfg.height)
    return Camera(pos, np.stack([right, up, fwd]), fx, cx, cy)


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


def build_scene(cfg: SynthConfig, name: str) -> tuple[list[Actor], list[Prop]]:
    """The real people and the props of a performance in world coordinates (camera-independent)."""
    s = parse_name(name)
    pf = draw_performance(cfg, name)
    t = cfg.frames
    face = CAMERA_AZIMUTH[FACING_CAMERA[s.replication]] + pf.yaw_jitter
    main = make_performer(cfg.seed, s.performer)
    m = Motion.rest(t)
    ACTION_FUNCS[s.action](m, pf)
    m.root += pf.sway
    local, extra = forward_kinematics(main, m)
    props: list[Prop] = []
    lean = np.stack([np.sin(np.deg2rad(m.roll)), np.sin(np.deg2rad(m.pitch))], -1)

    if s.action in TWO_PERSON_ACTIONS:
        partner = make_performer(cfg.seed, s.performer, partner=True)
        m2 = Motion.rest(t)
        pf2 = dataclasses.replace(pf, amp=1.0, sway=pf.sway[::-1] * 0.8)
        if s.action == 58:
            handshake(m2, pf2)
        else:
            recoil(m2, pf2, hit_at=0.5)
        m2.root += pf2.sway
        local2, _ = forward_kinematics(partner, m2)
        # The two face each other, side-on to the camera the performer would face alone; they
        # stand so that A's right hand meets B's right hand (A050: B's chest) at the key moment.
        k = (
            int(np.argmax(bump(pf.phase, 0.3, 0.4, 0.6, 0.7)))
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
            Actor(main, _to_world(local, pos_a, yaw_a), yaw_a, lean),
            Actor(
                partner,
                _to_world(local2, pos_b, yaw_b),
                yaw_b,
                np.stack([np.sin(np.deg2rad(m2.roll)), np.sin(np.deg2rad(m2.pitch))], -1),
            ),
        ]
        return actors, props

    origin = np.array([pf.offset[0], 0.0, pf.offset[1]])
    world = _to_world(local, origin, face)
    actors = [Actor(main, world, face, lean)]
    mouth = _to_world(extra["mouth"], origin, face)
    hand, wrist, elbow = world[:, R_HAND], world[:, R_WRIST], world[:, R_ELBOW]
    up = np.array([0.0, 1.0, 0.0])
    to_mouth = unit(mouth - hand)
    if s.action == 1:
        # upright while the forearm is low, tilting towards the mouth as it rises
        raised = np.clip((wrist[:, 1] - elbow[:, 1]) / max(main.forearm, 1e-6), 0, 1)[:, None]
        axis = unit((1 - 0.65 * raised) * up + 0.65 * raised * to_mouth)
        centre = hand + 0.02 * unit(hand - wrist)
        cup = np.stack([centre - 0.16 * axis, centre + 0.16 * axis], 1)
        props.append(Prop("cup", cup, 0.095, (30, 90, 235)))
    elif s.action == 2:
        centre = hand + 0.05 * unit(hand - wrist) + 0.02 * up
        props.append(Prop("food", centre[:, None], 0.13, (255, 140, 10)))
    elif s.action == 3:
        # held across the mouth (towards it and to the left) so that it shows from every view
        axis = unit(to_mouth + 0.9 * _facing_axes(face)[0])
        a, b = hand - 0.06 * axis, hand + 0.34 * axis
        props.append(Prop("brush", np.stack([a, b], 1), 0.04, (245, 245, 245)))
    elif s.action in (8, 9):
        # stool under the seated pelvis (from the seated end of the motion)
        seated = Motion.rest(1)
        sit(seated, np.ones(1), np.zeros(1))
        _, se = forward_kinematics(main, seated)
        seat = se["pelvis"][0] + [0.0, -0.09 * main.scale, -0.02]
        half = 0.2
        corners = (
            np.array([[sx, 0.0, sz] for sx, sz in ((-1, -1), (1, -1), (1, 1), (-1, 1))]) * half
        )
        top = seat + corners * [1, 0, 1]
        bottom = top * [1, 0, 1]
        pts = _to_world(np.concatenate([top, bottom]), origin, face)
        props.append(
            Prop("stool", np.broadcast_to(pts, (t, 8, 3)).copy(), 0.025, (120, 78, 40), 0.35)
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
        props.append(Prop("ball", _to_world(ball, origin, face)[:, None], r, (235, 235, 225)))
    return actors, props
