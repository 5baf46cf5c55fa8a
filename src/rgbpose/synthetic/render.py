"""Rendering the RGB frames of one sample (OpenCV).

A per-setup room (wall, floor with tiles, a door), a floor shadow, the body as outlined capsules
(limbs, neck), a torso polygon plus capsule, a head disc (exact skin colour, centred on joint 3;
the hair is a disc behind it), held objects at the right hand, all drawn back-to-front by camera
depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from rgbpose.ntu import class_names, parse_name
from rgbpose.skeleton_file import SkeletonSequence

from .body import (
    HEAD,
    L_ANKLE,
    L_ELBOW,
    L_FOOT,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_TIP,
    L_WRIST,
    NECK,
    R_ANKLE,
    R_ELBOW,
    R_FOOT,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_TIP,
    R_WRIST,
    RGB,
    SPINE_BASE,
    SPINE_SHOULDER,
    Performer,
    unit,
)
from .config import SUPPORTED_ACTIONS, SynthConfig
from .scene import Camera, Prop, build_scene, make_camera, setup_params
from .skeleton import kinect_skeleton


def _shade(c: RGB, f: float) -> RGB:
    return tuple(int(min(255, max(0, round(v * f)))) for v in c)  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _background(cfg: SynthConfig, camera: int) -> np.ndarray:
    """The empty room seen from ``camera``: wall, door, tiled floor, low-frequency texture."""
    import cv2

    sp = setup_params(cfg.seed, cfg.setup)
    cam = make_camera(cfg, camera)
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

    def __init__(self, img: np.ndarray, cam: Camera):
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


def _draw_body(cv: _Canvas, xyz: np.ndarray, px: np.ndarray, p: Performer) -> None:
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
    top = xyz[SPINE_SHOULDER] - 0.6 * r_torso * unit(xyz[SPINE_SHOULDER] - xyz[SPINE_BASE])
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
    up = unit(xyz[HEAD] - xyz[NECK])
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


def _draw_prop(cv: _Canvas, prop: Prop, cam: Camera, k: int) -> None:
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


def _shadow(img: np.ndarray, cam: Camera, joints: np.ndarray, colour: RGB) -> None:
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
    actors, props = build_scene(cfg, name)
    cam = make_camera(cfg, s.camera)
    seq, cams, meta = kinect_skeleton(cfg, name, cam, actors)
    bg = _background(cfg, s.camera)
    shadow = _shade(setup_params(cfg.seed, cfg.setup)["floor"], 0.78)
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
