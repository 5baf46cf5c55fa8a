"""Spatial transforms for pose and RGB clips (PYSKL's pipeline steps, DESIGN.md 3.5).

Each transform takes and returns a per-sample ``results`` dict, like PYSKL's pipelines, so a
pipeline is a plain sequence of calls.  Keys used:

* ``img_shape``: ``(h, w)`` ints, the frame the coordinates refer to;
* ``keypoint``: float32 ``[M, T, V, 2]`` pixels (x, y); ``keypoint_score``: float32 ``[M, T, V]``;
* ``imgs`` (optional): uint8 (or float) ``[N, h, w, 3]`` RGB frames;
* ``geometry`` (optional): a list each geometric step appends itself to, for frames that are
  resampled later on the device (``rgbpose.data.rgb_device``).

All randomness comes from a passed ``np.random.Generator``.  Conventions kept from PYSKL because
they decide the numbers: keypoints equal to exactly 0 mark absent joints -- compaction and flip
leave them at 0, while crops shift every point (absent joints carry score 0 and produce no
heatmap); resizes scale x by ``new_w / old_w`` and y by ``new_h / old_h``; images are resized
with OpenCV bilinear interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from rgbpose.data.rgb_device import record

Results = dict[str, Any]

RGB_MEAN = (123.675, 116.28, 103.53)
RGB_STD = (58.395, 57.12, 57.375)


# ----------------------------------------------------------------------------- compaction
def compact_box(
    keypoint: np.ndarray,
    img_shape: tuple[int, int],
    *,
    padding: float = 0.25,
    threshold: float = 10.0,
    hw_ratio: float | tuple[float, float] | None = 1.0,
    allow_imgpad: bool = True,
) -> tuple[int, int, int, int] | None:
    """The PoseC3D compaction box ``(x1, y1, x2, y2)`` in pixels, or None to skip compaction.

    One tight box over all non-zero coordinates (each axis separately, all persons, frames and
    joints); None when it is narrower than ``threshold`` pixels on either side (no usable
    pose).  Otherwise the box keeps its centre and grows by ``padding`` (0.25 -> 1.25x the
    side); with ``hw_ratio`` r the height becomes at least r * width and the width at least
    height / r (r = 1 makes it square by growing the shorter side).  With ``allow_imgpad`` the
    box may leave the image (callers zero-pad), else it is clipped to it.  Corners are
    truncated toward zero with ``int`` as PYSKL does.
    """
    h, w = img_shape
    kp = np.nan_to_num(np.asarray(keypoint, dtype=np.float64), nan=0.0)
    xs, ys = kp[..., 0], kp[..., 1]
    xs, ys = xs[xs != 0], ys[ys != 0]
    if xs.size == 0 or ys.size == 0:
        return None
    min_x, max_x, min_y, max_y = xs.min(), xs.max(), ys.min(), ys.max()
    if max_x - min_x < threshold or max_y - min_y < threshold:
        return None
    cx, cy = (max_x + min_x) / 2, (max_y + min_y) / 2
    half_w = (max_x - min_x) / 2 * (1 + padding)
    half_h = (max_y - min_y) / 2 * (1 + padding)
    if hw_ratio is not None:
        r_lo, r_hi = (hw_ratio, hw_ratio) if np.isscalar(hw_ratio) else hw_ratio
        half_h = max(r_lo * half_w, half_h)
        half_w = max(1 / r_hi * half_h, half_w)
    x1, x2, y1, y2 = cx - half_w, cx + half_w, cy - half_h, cy + half_h
    if allow_imgpad:
        return int(x1), int(y1), int(x2), int(y2)
    return int(max(0, x1)), int(max(0, y1)), int(min(w, x2)), int(min(h, y2))


def _shift_nonzero(keypoint: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Move present (non-zero) coordinates by (-dx, -dy); zeros stay as the 'absent' marker."""
    kp = np.nan_to_num(keypoint.astype(np.float32, copy=True), nan=0.0)
    x, y = kp[..., 0], kp[..., 1]
    x[x != 0] -= dx
    y[y != 0] -= dy
    return kp


def crop_with_padding(imgs: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Crop ``imgs [N, h, w, C]`` to ``box`` (x1, y1, x2, y2); outside the image reads as 0."""
    x1, y1, x2, y2 = box
    n, h, w = imgs.shape[:3]
    out = np.zeros((n, y2 - y1, x2 - x1) + imgs.shape[3:], dtype=imgs.dtype)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if sx2 > sx1 and sy2 > sy1:
        out[:, sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = imgs[:, sy1:sy2, sx1:sx2]
    return out


def pose_compact(
    results: Results,
    *,
    padding: float = 0.25,
    threshold: float = 10.0,
    hw_ratio: float | tuple[float, float] | None = 1.0,
    allow_imgpad: bool = True,
) -> Results:
    """PoseCompact: shift keypoints into the compaction box; ``img_shape`` becomes its size.

    With ``imgs`` present this is PYSKL's MMCompact: the frames are cropped with the same box
    (computed from the keypoints in ``results``, i.e. the pose-sampled frames), zero-padded where
    the box leaves the image.  A skipped compaction (box under ``threshold``) changes nothing.
    ``imgs_origin`` (x, y), when present, says ``imgs`` is a crop of the frame starting there (a
    frame-store read) that holds every pixel of the box inside the frame; it is consumed.
    """
    box = compact_box(
        results["keypoint"],
        results["img_shape"],
        padding=padding,
        threshold=threshold,
        hw_ratio=hw_ratio,
        allow_imgpad=allow_imgpad,
    )
    origin = results.pop("imgs_origin", None)
    if box is not None:
        record(results, ("crop", *box))
    if box is None:
        if origin is not None and tuple(origin) != (0, 0):
            raise ValueError("compaction skipped but imgs is a crop of the frame (imgs_origin)")
        return results
    x1, y1, x2, y2 = box
    results["keypoint"] = _shift_nonzero(results["keypoint"], x1, y1)
    if "imgs" in results:
        ox, oy = origin if origin is not None else (0, 0)
        results["imgs"] = crop_with_padding(results["imgs"], (x1 - ox, y1 - oy, x2 - ox, y2 - oy))
    results["img_shape"] = (y2 - y1, x2 - x1)
    results["compact_box"] = box
    return results


# ----------------------------------------------------------------------------- resize / crop
def scale_to_frames(results: Results) -> Results:
    """Rescale keypoints from the annotation's ``img_shape`` to the decoded frame size.

    Annotations refer to the original video (1080p for NTU) while the compressed videos are
    540p (or any size): x is scaled by ``frame_w / ann_w`` and y by ``frame_h / ann_h`` and
    ``img_shape`` becomes the frame size (PYSKL MMDecode does the same).
    """
    return scale_to_shape(results, results["imgs"].shape[1:3])


def scale_to_shape(results: Results, frame_hw: tuple[int, int]) -> Results:
    """:func:`scale_to_frames` to a frame size known without the frames (a frame store's)."""
    fh, fw = (int(v) for v in frame_hw)
    oh, ow = results["img_shape"]
    if (fh, fw) != (oh, ow):
        if "keypoint" in results:
            kp = results["keypoint"].astype(np.float32, copy=True)
            kp[..., 0] *= fw / ow
            kp[..., 1] *= fh / oh
            results["keypoint"] = kp
        results["img_shape"] = (fh, fw)
    return results


def short_side_size(img_shape: tuple[int, int], short: int) -> tuple[int, int]:
    """``(h, w)`` with the short side ``short`` and the aspect kept (mmcv ``rescale_size``)."""
    h, w = img_shape
    f = short / min(h, w)
    return int(h * f + 0.5), int(w * f + 0.5)


def resize_imgs(imgs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``imgs [N, h, w, 3]`` to ``size = (new_h, new_w)`` (cv2.INTER_LINEAR)."""
    new_h, new_w = size
    if imgs.shape[1:3] == (new_h, new_w):
        return imgs
    out = np.empty((imgs.shape[0], new_h, new_w) + imgs.shape[3:], dtype=imgs.dtype)
    for i, img in enumerate(imgs):
        out[i] = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR).reshape(
            out.shape[1:]
        )
    return out


def resize(results: Results, size: tuple[int, int]) -> Results:
    """Resize to ``size = (new_h, new_w)`` (keep_ratio=False): keypoints scale by new/old."""
    h, w = results["img_shape"]
    new_h, new_w = int(size[0]), int(size[1])
    record(results, ("resize", h, w, new_h, new_w))
    if "keypoint" in results:
        factor = np.array([new_w / w, new_h / h], dtype=np.float32)
        results["keypoint"] = results["keypoint"] * factor
    if "imgs" in results:
        results["imgs"] = resize_imgs(results["imgs"], (new_h, new_w))
    results["img_shape"] = (new_h, new_w)
    return results


def resize_short_side(results: Results, short: int) -> Results:
    """PYSKL ``Resize(scale=(-1, short))``: short side to ``short``, aspect kept."""
    return resize(results, short_side_size(results["img_shape"], short))


def random_resized_crop_box(
    img_shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    area_range: tuple[float, float] = (0.56, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    max_attempts: int = 10,
) -> tuple[int, int, int, int]:
    """A random crop box ``(x1, y1, x2, y2)`` inside ``img_shape`` (PYSKL RandomResizedCrop).

    ``max_attempts`` candidates are drawn at once: aspect ratio log-uniform in the range, area a
    uniform fraction of the image; width ``round(sqrt(area * ar))``, height
    ``round(sqrt(area / ar))``.  The first that fits gets a uniform offset (bounds inclusive);
    if none fits, the centred square of the short side is used.
    """
    if not 0 < area_range[0] <= area_range[1] <= 1:
        raise ValueError(f"area_range must satisfy 0 < lo <= hi <= 1, got {area_range}")
    img_h, img_w = img_shape
    area = img_h * img_w
    lo, hi = aspect_ratio_range
    ratios = np.exp(rng.uniform(math.log(lo), math.log(hi), size=max_attempts))
    areas = rng.uniform(area_range[0], area_range[1], size=max_attempts) * area
    cand_w = np.round(np.sqrt(areas * ratios)).astype(np.int64)
    cand_h = np.round(np.sqrt(areas / ratios)).astype(np.int64)
    for cw, ch in zip(cand_w.tolist(), cand_h.tolist()):
        if 0 < ch <= img_h and 0 < cw <= img_w:
            x1 = int(rng.integers(0, img_w - cw + 1))
            y1 = int(rng.integers(0, img_h - ch + 1))
            return x1, y1, x1 + cw, y1 + ch
    side = min(img_h, img_w)
    x1, y1 = (img_w - side) // 2, (img_h - side) // 2
    return x1, y1, x1 + side, y1 + side


def crop(results: Results, box: tuple[int, int, int, int]) -> Results:
    """Crop to ``box`` inside the image: every keypoint moves by (-x1, -y1), as in PYSKL."""
    x1, y1, x2, y2 = box
    record(results, ("crop", *box))
    if "keypoint" in results:
        results["keypoint"] = results["keypoint"] - np.array([x1, y1], dtype=np.float32)
    if "imgs" in results:
        results["imgs"] = results["imgs"][:, y1:y2, x1:x2]
    results["img_shape"] = (y2 - y1, x2 - x1)
    return results


def random_resized_crop(
    results: Results,
    rng: np.random.Generator,
    *,
    area_range: tuple[float, float] = (0.56, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> Results:
    """Crop images and keypoints with one :func:`random_resized_crop_box` (no resize here)."""
    box = random_resized_crop_box(
        results["img_shape"], rng, area_range=area_range, aspect_ratio_range=aspect_ratio_range
    )
    return crop(results, box)


def center_crop(results: Results, size: tuple[int, int]) -> Results:
    """Centred crop to ``size = (h, w)`` (offsets ``(img - size) // 2``)."""
    img_h, img_w = results["img_shape"]
    ch, cw = size
    x1, y1 = (img_w - cw) // 2, (img_h - ch) // 2
    return crop(results, (x1, y1, x1 + cw, y1 + ch))


# ----------------------------------------------------------------------------- flip / normalise
def flip_keypoints(
    keypoint: np.ndarray,
    score: np.ndarray | None,
    width: float,
    flip_index: Sequence[int],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror keypoints: non-zero x -> ``width - x``; joint v takes joint ``flip_index[v]``."""
    kp = keypoint.astype(np.float32, copy=True)
    x = kp[..., 0]
    x[x != 0] = width - x[x != 0]
    order = np.asarray(flip_index, dtype=np.int64)
    kp = kp[:, :, order]
    if score is not None:
        score = score[:, :, order]
    return kp, score


def flip(
    results: Results,
    rng: np.random.Generator,
    *,
    flip_index: Sequence[int],
    flip_ratio: float = 0.5,
) -> Results:
    """Horizontal flip with probability ``flip_ratio`` of frames and keypoints together.

    One uniform draw decides (``rng.random() < flip_ratio``); ``results['flip']`` records it.
    Flipped frames are a reversed view of the input.
    """
    do_flip = bool(rng.random() < flip_ratio)
    results["flip"] = do_flip
    if not do_flip:
        return results
    record(results, ("flip", results["img_shape"][1]))
    if "imgs" in results:
        results["imgs"] = results["imgs"][:, :, ::-1]  # a view: normalising makes the copy
    if "keypoint" in results:
        kp, score = flip_keypoints(
            results["keypoint"],
            results.get("keypoint_score"),
            results["img_shape"][1],
            flip_index,
        )
        results["keypoint"] = kp
        if score is not None:
            results["keypoint_score"] = score
    return results


def normalize(
    imgs: np.ndarray,
    mean: Sequence[float] = RGB_MEAN,
    std: Sequence[float] = RGB_STD,
) -> np.ndarray:
    """``(imgs - mean) / std`` per RGB channel, as float32 ``[N, h, w, 3]``."""
    out = imgs.astype(np.float32)  # a copy; the in-place ops below avoid two more
    out -= np.asarray(mean, dtype=np.float32)
    out *= 1.0 / np.asarray(std, dtype=np.float32)
    return out


def _lut(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """float32 [3, 256]: :func:`normalize` of every uint8 value, per channel (the same float32
    operations, so a lookup equals the arithmetic bit for bit)."""
    levels = np.arange(256, dtype=np.float32)
    return np.stack(
        [
            (levels - np.float32(m)) * (np.float32(1.0) / np.float32(s))
            for m, s in zip(mean, std, strict=True)
        ]
    )


_RGB_LUT = _lut(RGB_MEAN, RGB_STD)


def normalize_channels_first(imgs: np.ndarray) -> np.ndarray:
    """``[..., L, h, w, 3]`` frames -> normalised float32 ``[..., 3, L, h, w]``.

    Equal to ``normalize`` then moving the channel axis, in one pass; uint8 frames go through a
    256-entry table per channel (6x faster than broadcasting over a last axis of 3).
    """
    lead = imgs.shape[:-4]
    out = np.empty((*lead, 3, *imgs.shape[-4:-1]), dtype=np.float32)
    if imgs.dtype == np.uint8:
        for c in range(3):
            out[..., c, :, :, :] = _RGB_LUT[c][imgs[..., c]]
    else:
        out[...] = np.moveaxis(normalize(imgs), -1, -4)
    return out
