"""RGB clips decoded and resampled on the model's device (``data.rgb_decode_on_device``).

The loader workers read a clip's frames from the frame store still encoded (JPEG bytes, a few
KB each) and run the pipeline's geometry on the keypoints only; each transform records what it
did to the frame (``results['geometry']``: compaction and crops, resizes, the flip).  The item
carries the encoded frames and that record (:class:`RGBSource`).  The batch transform then
decodes every frame of the batch at once on the device (nvJPEG through
``torchvision.io.decode_jpeg(device='cuda')`` when torchvision and a CUDA device are there;
OpenCV on the CPU otherwise), samples each clip's output pixels with one bilinear
``grid_sample`` from the composed geometry, and normalises.  A clip the store does not cover
comes as decoded frames from the video (same record, origin 0).

Against the CPU pipeline (the tested default): test clips (one resize after the compaction)
equal it up to rounding (the CPU path rounds to uint8 after the resize; OpenCV's bilinear uses
11-bit fixed-point weights; the one-pixel border band is sampled against zero instead of the
replicated edge); training clips resample once where the CPU path resizes twice (to the
pre-crop size, then to the train size), a slight difference in blur.  ``tests/test_rgb_device.py``
bounds both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

#: one geometric step: ("crop", x1, y1, x2, y2) | ("resize", h, w, new_h, new_w) | ("flip", w)
GeometryOp = tuple


@dataclasses.dataclass
class RGBSource:
    """One item's RGB frames before decoding and where its output pixels come from.

    ``frames``: per frame, the encoded bytes (uint8 1-D arrays, ``codec`` jpeg | png) or the
    decoded frames ``[N, h, w, 3]`` uint8 (``codec`` raw); ``origin``: (x, y) of the frames'
    top-left in the video frame (a frame-store region); ``geometry``: the recorded steps;
    ``out_hw``: the output size; ``views``: clips in ``frames`` (N = views x clip length);
    ``flip_views``: append mirrored copies of the views (test-time flip).
    """

    frames: list[np.ndarray] | np.ndarray
    codec: str
    origin: tuple[int, int]
    geometry: list[GeometryOp]
    out_hw: tuple[int, int]
    views: int
    flip_views: bool


def record(results: dict[str, Any], op: GeometryOp) -> None:
    """Append ``op`` to ``results['geometry']`` when the pipeline keeps one."""
    steps = results.get("geometry")
    if steps is not None:
        steps.append(op)


def compose(geometry: Sequence[GeometryOp], origin: tuple[int, int]) -> np.ndarray:
    """float64 ``[ax, bx, ay, by]``: output pixel (u, v) of the last step samples the frames at
    ``(ax u + bx, ay v + by)`` (pixel centres at integers, frame coordinates minus ``origin``).

    Steps, each mapping the new image back to the previous one: a crop ``old = new + x1``; a
    resize ``old = (new + 0.5) * old_size / new_size - 0.5`` (OpenCV's bilinear); a flip
    ``old = w - 1 - new``.
    """
    ax, bx, ay, by = 1.0, -float(origin[0]), 1.0, -float(origin[1])
    for op in geometry:
        kind = op[0]
        if kind == "crop":
            _, x1, y1, _, _ = op
            bx, by = ax * x1 + bx, ay * y1 + by
        elif kind == "resize":
            _, h, w, new_h, new_w = op
            sx, sy = w / new_w, h / new_h
            bx, by = ax * (0.5 * sx - 0.5) + bx, ay * (0.5 * sy - 0.5) + by
            ax, ay = ax * sx, ay * sy
        elif kind == "flip":
            _, w = op
            bx, ax = ax * (w - 1) + bx, -ax
        else:
            raise ValueError(f"unknown geometry step {op!r}")
    return np.array([ax, bx, ay, by])


def _torchvision_decode() -> Any:
    try:
        from torchvision.io import decode_jpeg  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - missing, or a wheel that does not import on this torch
        return None
    return decode_jpeg


def decode(src: RGBSource, device: torch.device) -> torch.Tensor:
    """The item's frames as uint8 ``[N, 3, h, w]`` on ``device``."""
    if src.codec == "raw":
        return torch.from_numpy(np.asarray(src.frames)).to(device).permute(0, 3, 1, 2)
    if src.codec == "jpeg" and device.type == "cuda":
        decode_jpeg = _torchvision_decode()
        if decode_jpeg is not None:
            data = [torch.from_numpy(f) for f in src.frames]
            return torch.stack(decode_jpeg(data, device=device))
    frames = []
    for buf in src.frames:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError("a frame-store frame does not decode")
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2)


def sample(src: RGBSource, device: torch.device) -> torch.Tensor:
    """float32 ``[V', 3, L, H, W]`` in 0..255 of one item (V' = views, doubled with
    ``flip_views``): its decoded frames resampled along the composed geometry, zero outside."""
    frames = decode(src, device).float()
    n, _, h, w = frames.shape
    out_h, out_w = src.out_hw
    ax, bx, ay, by = compose(src.geometry, src.origin).tolist()
    xs = torch.arange(out_w, dtype=torch.float32, device=device) * ax + bx
    ys = torch.arange(out_h, dtype=torch.float32, device=device) * ay + by
    # grid_sample's normalised coordinates (align_corners=False): pixel i spans [i, i + 1)
    gx = (xs + 0.5) * (2.0 / w) - 1.0
    gy = (ys + 0.5) * (2.0 / h) - 1.0
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)
    out = F.grid_sample(frames, grid.expand(n, -1, -1, -1), mode="bilinear",
                        padding_mode="zeros", align_corners=False)  # fmt: skip
    out = out.unflatten(0, (src.views, n // src.views)).transpose(1, 2)  # [V, 3, L, H, W]
    if src.flip_views:
        out = torch.cat([out, out.flip(-1)], dim=0)
    return out


def decode_batch(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """``batch['rgb_source']`` (one :class:`RGBSource` per item) -> ``batch['imgs']`` float32
    ``[B, V', 3, L, H, W]`` in 0..255 on ``device`` (normalised by the caller)."""
    sources = batch.pop("rgb_source", None)
    if sources is None:
        return batch
    device = torch.device(device)
    batch["imgs"] = torch.stack([sample(s, device) for s in sources])
    return batch
