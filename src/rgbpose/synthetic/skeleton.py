"""The Kinect ``.skeleton`` records one camera sees: the actors, plus noise bodies.

Noise bodies are in ``k = floor(noise_share * n + 0.5)`` of the ``n`` samples of the config
(which ones: a permutation drawn from the seed; kinds alternate short / wide along it), written to
the skeleton file only, never drawn: *short* -- a ghost standing body present in 5-10 consecutive
frames (never more than 11); *wide* -- a horizontal "furniture" skeleton whose x spread exceeds
0.8 x its y spread in every frame, present in at least 12 frames (all frames of short clips).
``synthesize`` reports them in ``synthetic_meta.json``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from rgbpose.ntu import parse_name
from rgbpose.skeleton_file import Body, SkeletonSequence

from .body import (
    L_FOOT,
    L_HAND,
    L_THUMB,
    L_TIP,
    R_FOOT,
    R_HAND,
    R_THUMB,
    R_TIP,
    SPINE_MID,
    Motion,
    Performer,
    forward_kinematics,
    make_performer,
)
from .config import SynthConfig, sample_names
from .scene import Actor, Camera, color_intrinsics, depth_intrinsics, project

#: a Kinect body ID looks like 72057594037931101 = 2**56 + a small tracking counter
_BODY_ID_BASE = 2**56

SHORT_NOISE_MAX_FRAMES = 10  # <= 11, the NTU "short body" threshold
WIDE_NOISE_MIN_FRAMES = 12


@lru_cache(maxsize=8)
def noise_plan(cfg: SynthConfig) -> dict[str, str]:
    """name -> noise kind ('short' | 'wide') for the ``floor(noise_share*n + .5)`` noisy samples."""
    names = sample_names(cfg)
    k = int(math.floor(cfg.noise_share * len(names) + 0.5))
    order = np.random.default_rng([cfg.seed, 0x5EED]).permutation(len(names))[:k]
    return {names[i]: ("short" if j % 2 == 0 else "wide") for j, i in enumerate(order)}


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


def _rest_template(p: Performer) -> np.ndarray:
    j, _ = forward_kinematics(p, Motion.rest(1))
    return j[0]


def _noise_body(
    kind: str, cfg: SynthConfig, rng: np.random.Generator, actor_cam: np.ndarray
) -> tuple[np.ndarray, int, int]:
    """Camera-space joints ``[n,25,3]`` of a noise body and its first frame / frame count."""
    t = cfg.frames
    tmpl = _rest_template(make_performer(cfg.seed, 900 + int(rng.integers(50))))
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


def kinect_skeleton(
    cfg: SynthConfig, name: str, cam: Camera, actors: list[Actor]
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
    kind = noise_plan(cfg).get(name)
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
