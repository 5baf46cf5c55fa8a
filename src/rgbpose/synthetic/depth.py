"""NTU's masked depth for the synthetic dataset: ``<depth_dir>/<name>/MDepth-%08d.png``.

One 16-bit PNG per RGB frame (1-based numbers), 512x424, millimetres, background 0 -- the format
of NTU's ``nturgb+d_depth_masked``.  The depth camera is the skeleton's: the same camera space as
the ``.skeleton`` joints (x right, y up, z forward, metres, including their 3 mm Kinect jitter)
and the pinhole ``scene.depth_intrinsics`` (f = 365, principal point at the image centre), so a
joint's ``depthX/depthY`` is where its body part appears in the depth image.

The body is ray-cast, per pixel centre, as the union of the solids the RGB renderer draws
(``render._draw_body``): capsules of the same radii for the limbs, neck, hips and the trunk
axis, the torso quad (shoulders and hips, two planar triangles), a sphere for the head; plus a
thin capsule wrist -> thumb so that every Kinect joint lies on the body.  Held objects (cup,
snack, toothbrush) are part of the mask, as Kinect's body index usually includes what a hand
holds; the stool, the ball and the noise bodies are not (never drawn).  A pixel's value is the
nearest surface's z in mm (Kinect depth is the z coordinate, not the ray length).
"""

from __future__ import annotations

import os
import secrets
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from rgbpose.ntu import depth_frame_name, parse_name

from .body import (
    HEAD,
    L_ANKLE,
    L_ELBOW,
    L_FOOT,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_THUMB,
    L_TIP,
    L_WRIST,
    NECK,
    R_ANKLE,
    R_ELBOW,
    R_FOOT,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_THUMB,
    R_TIP,
    R_WRIST,
    SPINE_BASE,
    SPINE_SHOULDER,
    Performer,
    unit,
)
from .config import SynthConfig
from .scene import DEPTH_SIZE, Camera, Prop, build_scene, depth_intrinsics, make_camera, project
from .skeleton import kinect_skeleton

_NEAR = 0.3  # metres: as the RGB renderer, nothing closer to the camera is drawn
_HELD = ("cup", "food", "brush")


@lru_cache(maxsize=1)
def _rays() -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions through every depth pixel centre ``[H, W, 3]`` and their z."""
    fx, fy, cx, cy = depth_intrinsics()
    w, h = DEPTH_SIZE
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.stack([(u - cx) / fx, -(v - cy) / fy, np.ones_like(u)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    d.setflags(write=False)
    return d, d[..., 2]


class DepthCanvas:
    """A z-buffer (metres, ``inf`` = background) of the 512x424 depth camera."""

    def __init__(self) -> None:
        w, h = DEPTH_SIZE
        self.z = np.full((h, w), np.inf)
        self.fx, _, self.cx, self.cy = depth_intrinsics()

    def _box(self, centres: np.ndarray, r: float) -> tuple[slice, slice] | None:
        """Pixel rows/cols that can see balls of radius ``r`` at ``centres`` [K, 3]."""
        if centres[:, 2].min() < _NEAR:
            return None
        px = project(centres, self.fx, self.fx, self.cx, self.cy)
        pad = r * self.fx / centres[:, 2].min() + 2
        w, h = DEPTH_SIZE
        x0, y0 = np.floor(px.min(0) - pad).astype(int)
        x1, y1 = np.ceil(px.max(0) + pad).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x0 >= x1 or y0 >= y1:
            return None
        return slice(y0, y1), slice(x0, x1)

    def _keep(self, box: tuple[slice, slice], t: np.ndarray, rz: np.ndarray) -> None:
        z = np.where(np.isfinite(t) & (t > 0), t * rz, np.inf)
        np.minimum(self.z[box], z, out=self.z[box])

    @staticmethod
    def _sphere_t(rd: np.ndarray, c: np.ndarray, r: float) -> np.ndarray:
        """Ray parameter of the first hit of unit rays from the origin with a sphere."""
        b = rd @ c
        h = b * b - (c @ c - r * r)
        with np.errstate(invalid="ignore"):
            return np.where(h >= 0, b - np.sqrt(h), np.inf)

    def sphere(self, c: np.ndarray, r: float) -> None:
        box = self._box(c[None], r)
        if box is None:
            return
        rays, rz = _rays()
        self._keep(box, self._sphere_t(rays[box], c, r), rz[box])

    def capsule(self, a: np.ndarray, b: np.ndarray, r: float) -> None:
        """The points within ``r`` of the segment a-b (camera space, metres)."""
        box = self._box(np.stack([a, b]), r)
        if box is None:
            return
        rays, rz = _rays()
        rd = rays[box]
        ba, oa = b - a, -a
        baba, baoa, oaoa = ba @ ba, ba @ oa, oa @ oa
        t = np.minimum(self._sphere_t(rd, a, r), self._sphere_t(rd, b, r))
        if baba > 1e-12:
            bard, rdoa = rd @ ba, rd @ oa
            qa = baba - bard * bard
            qb = baba * rdoa - baoa * bard
            qc = baba * oaoa - baoa * baoa - r * r * baba
            h = qb * qb - qa * qc
            with np.errstate(invalid="ignore", divide="ignore"):
                tb = (-qb - np.sqrt(h)) / qa
                y = baoa + tb * bard
                ok = (h >= 0) & (qa > 1e-12) & (y > 0) & (y < baba)
            t = np.minimum(t, np.where(ok, tb, np.inf))
        self._keep(box, t, rz[box])

    def triangle(self, p0: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> None:
        """A planar triangle (camera space)."""
        import cv2

        pts = np.stack([p0, p1, p2])
        box = self._box(pts, 0.0)
        if box is None:
            return
        n = np.cross(p1 - p0, p2 - p0)
        px = project(pts, self.fx, self.fx, self.cx, self.cy)
        ys, xs = box
        mask = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8)
        shift = 4
        poly = np.round((px - [xs.start, ys.start]) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(mask, [poly], 1, cv2.LINE_8, shift)
        rays, rz = _rays()
        denom = rays[box] @ n
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where((mask > 0) & (np.abs(denom) > 1e-12), (p0 @ n) / denom, np.inf)
        self._keep(box, t, rz[box])

    def to_mm(self) -> np.ndarray:
        """uint16 millimetres, 0 where nothing was hit."""
        out = np.zeros(self.z.shape, np.uint16)
        hit = np.isfinite(self.z)
        out[hit] = np.clip(np.round(self.z[hit] * 1000.0), 1, 65535).astype(np.uint16)
        return out


def draw_body_depth(cv: DepthCanvas, xyz: np.ndarray, p: Performer) -> None:
    """One body (camera-space joints ``xyz`` [25, 3]) with the RGB renderer's radii."""
    k = p.bulk * p.scale
    for hip, knee, ankle, foot in (
        (L_HIP, L_KNEE, L_ANKLE, L_FOOT),
        (R_HIP, R_KNEE, R_ANKLE, R_FOOT),
    ):
        cv.capsule(xyz[hip], xyz[knee], 0.075 * k)
        cv.capsule(xyz[knee], xyz[ankle], 0.055 * k)
        cv.capsule(xyz[ankle], xyz[foot], 0.045 * p.scale)
    cv.capsule(xyz[L_HIP], xyz[R_HIP], 0.09 * k)
    cv.triangle(xyz[L_SHOULDER], xyz[R_SHOULDER], xyz[R_HIP])
    cv.triangle(xyz[L_SHOULDER], xyz[R_HIP], xyz[L_HIP])
    r_torso = 0.12 * k
    top = xyz[SPINE_SHOULDER] - 0.6 * r_torso * unit(xyz[SPINE_SHOULDER] - xyz[SPINE_BASE])
    cv.capsule(xyz[SPINE_BASE], top, r_torso)
    cv.capsule(xyz[SPINE_SHOULDER], xyz[NECK], 0.045 * p.scale)
    cv.sphere(xyz[HEAD], p.head_r)
    for sh, el, wr, tip, thumb in (
        (L_SHOULDER, L_ELBOW, L_WRIST, L_TIP, L_THUMB),
        (R_SHOULDER, R_ELBOW, R_WRIST, R_TIP, R_THUMB),
    ):
        cv.capsule(xyz[sh], xyz[el], 0.05 * k)
        cv.capsule(xyz[el], xyz[wr], 0.04 * k)
        cv.capsule(xyz[wr], xyz[tip], 0.035 * p.scale)
        cv.capsule(xyz[wr], xyz[thumb], 0.02 * p.scale)


def draw_held_prop_depth(cv: DepthCanvas, prop: Prop, cam: Camera, k: int) -> None:
    """A held object (cup, snack, toothbrush) as the RGB renderer shapes it; others: nothing."""
    if prop.kind not in _HELD:
        return
    pts = cam.to_cam(prop.points[k])
    if prop.kind == "cup":
        cv.capsule(pts[0], pts[1], prop.radius)
    elif prop.kind == "food":
        cv.sphere(pts[0], prop.radius)
    else:  # brush: handle, and the head over its last quarter
        a, b = pts
        cv.capsule(a, b, prop.radius)
        cv.capsule(a + (b - a) * 0.75, b, prop.radius * 1.6)


def render_depth(cfg: SynthConfig, name: str) -> np.ndarray:
    """Masked depth of one sample: uint16 millimetres ``[T, 424, 512]``, background 0.

    Deterministic, and consistent with ``render_sample``'s skeleton (same scene, same jittered
    camera-space joints): the RGB frames are not rendered, so they cannot change.
    """
    s = parse_name(name)
    actors, props = build_scene(cfg, name)
    cam = make_camera(cfg, s.camera)
    _, cams, _ = kinect_skeleton(cfg, name, cam, actors)
    w, h = DEPTH_SIZE
    out = np.zeros((cfg.frames, h, w), np.uint16)
    for k in range(cfg.frames):
        cv = DepthCanvas()
        for a, xyz in zip(actors, cams):
            draw_body_depth(cv, xyz[k], a.performer)
        for prop in props:
            draw_held_prop_depth(cv, prop, cam, k)
        out[k] = cv.to_mm()
    return out


def write_depth_frames(depth: np.ndarray, dst_dir: str | os.PathLike) -> Path:
    """Write ``depth`` uint16 ``[T, H, W]`` as ``dst_dir/MDepth-%08d.png`` (1-based), atomically:
    the frames go to a temp folder next to ``dst_dir`` that replaces it when complete."""
    import cv2

    if depth.dtype != np.uint16 or depth.ndim != 3:
        raise ValueError(f"depth must be uint16 [T, H, W], got {depth.dtype} {depth.shape}")
    dst = Path(dst_dir)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_dir(dst.parent, f".{dst.name}.")
    try:
        for i, frame in enumerate(depth, start=1):
            path = tmp / depth_frame_name(i)
            if not cv2.imwrite(str(path), frame):
                raise OSError(f"cannot write {dst / depth_frame_name(i)}")
        if dst.exists():
            old = _new_dir(dst.parent, f".{dst.name}.old.")
            os.replace(dst, old / dst.name)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _new_dir(parent: Path, prefix: str) -> Path:
    """A new folder ``parent/<prefix><random>`` (mode from the umask, unlike ``mkdtemp``)."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"cannot create a temp folder in {parent}")
