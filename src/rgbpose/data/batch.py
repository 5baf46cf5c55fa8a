"""Batching: the one collate of every data loader, and the batch transform that ``rgbpose
train``, ``test`` and ``predict`` all apply before the forward pass (on-device heatmaps).

Item keys: model inputs (``imgs``, ``heatmap_imgs``, ``keypoint``, ...; ``[V, ...]`` per item,
V views), ``label`` and ``frame_dir``.  With ``heatmaps_on_device`` a pose item carries the
keypoints the heatmaps are drawn from as ``hm_keypoint`` / ``hm_keypoint_score`` (names of
their own, so a skeleton pipeline's ``keypoint`` input never collides with them) plus
``canvas_hw`` and ``flip_views``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rgbpose.data.config import PipelineConfig
from rgbpose.data.heatmaps import batch_heatmaps_torch, channel_flip_perm
from rgbpose.data.rgb_device import decode_batch
from rgbpose.data.transforms import RGB_MEAN, RGB_STD
from rgbpose.layouts import get_layout

BatchTransform = Callable[[dict[str, Any], torch.device], dict[str, Any]]

#: plain values every item of a batch must agree on (passed through once, not stacked)
SHARED_KEYS = ("canvas_hw", "flip_views")


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack dataset items into a batch, whatever their keys: tensors and arrays are stacked
    (``[B, V, ...]``), integers become a LongTensor (``label`` ``[B]``), floats a tensor,
    :data:`SHARED_KEYS` must agree across the batch and pass through once, anything else
    (``frame_dir``) becomes a list."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        first = values[0]
        if key in SHARED_KEYS:
            distinct = {tuple(v) if isinstance(v, list | tuple) else v for v in values}
            if len(distinct) != 1:
                raise ValueError(f"items disagree on {key}: {sorted(distinct)}")
            batch[key] = distinct.pop()
        elif isinstance(first, torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(first, np.ndarray):
            batch[key] = torch.from_numpy(np.stack(values))
        elif isinstance(first, bool | int | np.integer):
            batch[key] = torch.tensor([int(v) for v in values], dtype=torch.long)
        elif isinstance(first, float | np.floating):
            batch[key] = torch.tensor([float(v) for v in values])
        else:
            batch[key] = [str(v) if isinstance(v, str) else v for v in values]
    return batch


def heatmaps_to_device(
    batch: dict[str, Any], cfg: PipelineConfig, device: torch.device | str
) -> dict[str, Any]:
    """Fill ``batch['heatmap_imgs']`` ``[B, V', C, T, h, w]`` on ``device`` from keypoints.

    A no-op unless ``cfg.heatmaps_on_device`` and the batch holds keypoints.  The maps equal
    the data-loader ones (same formula, float32 rounding); with ``batch['flip_views']`` the
    mirrored views follow the originals (``V' = 2V``), as in the CPU pipeline.  The layout is
    ``cfg.layout`` or the one with the keypoints' joint count.
    """
    if not cfg.heatmaps_on_device or "hm_keypoint" not in batch:
        return batch
    kp = batch["hm_keypoint"].to(device, non_blocking=True)
    score = batch["hm_keypoint_score"].to(device, non_blocking=True)
    b, v = kp.shape[:2]
    layout = get_layout(cfg.layout) if cfg.layout else get_layout(int(kp.shape[-2]))
    flip = bool(batch.get("flip_views", False))
    hm = batch_heatmaps_torch(
        kp.flatten(0, 1),
        score.flatten(0, 1),
        tuple(batch["canvas_hw"]),
        cfg.sigma,
        limbs=layout.limbs if cfg.with_limb else None,
        use_score=cfg.use_score,
        with_kp=cfg.with_kp,
        flip_perm=channel_flip_perm(layout, cfg.with_kp, cfg.with_limb).tolist() if flip else None,
        views=v,
    )
    hm = hm.unflatten(0, (b, -1))
    batch["heatmap_imgs"] = hm
    return batch


def normalize_on_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """uint8 ``batch['imgs']`` ``[B, V, 3, L, H, W]`` -> normalised float32 on ``device``:
    ``(x - mean) * (1 / std)`` per channel, the float32 operations of the CPU pipeline
    (:func:`rgbpose.data.transforms.normalize`), so both give the same values."""
    imgs = batch.get("imgs")
    if imgs is None or imgs.dtype != torch.uint8:
        return batch
    batch["imgs"] = _normalize(imgs.to(device, non_blocking=True).float())
    return batch


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """In place: float ``[..., 3, L, H, W]`` in 0..255 -> ``(x - mean) * (1 / std)``."""
    mean = torch.tensor(RGB_MEAN, dtype=torch.float32, device=x.device).view(3, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(RGB_STD, dtype=torch.float32, device=x.device).view(3, 1, 1, 1)
    return x.sub_(mean).mul_(inv_std)


def decode_on_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """``rgb_decode_on_device``: the items' encoded frames decoded, resampled
    (:func:`rgbpose.data.rgb_device.decode_batch`) and normalised on ``device``."""
    if "rgb_source" not in batch:
        return batch
    batch = decode_batch(batch, device)
    batch["imgs"] = _normalize(batch["imgs"])
    return batch


def batch_transform(cfg: Any) -> BatchTransform | None:
    """The transform ``rgbpose train``, ``test`` and ``predict`` all apply to a collated batch
    before the forward pass: with ``heatmaps_on_device`` the heatmaps are drawn on the model's
    device from the batch keypoints (``heatmaps_to_device``), with ``rgb_decode_on_device`` the
    RGB frames are decoded and resampled there (``decode_on_device``), with
    ``rgb_normalize_on_device`` the uint8 RGB clips are normalised there
    (``normalize_on_device``); otherwise there is none.
    A plug-in pipeline's config may define its own ``batch_transform()``, used instead."""
    own = getattr(cfg, "batch_transform", None)
    if callable(own):
        return own()
    heatmaps = getattr(cfg, "heatmaps_on_device", False)
    rgb = getattr(cfg, "rgb_normalize_on_device", False)
    decode = getattr(cfg, "rgb_decode_on_device", False)
    if not (heatmaps or rgb or decode):
        return None

    def transform(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        if heatmaps:
            batch = heatmaps_to_device(batch, cfg, device)
        if decode:
            batch = decode_on_device(batch, device)
        if rgb:
            batch = normalize_on_device(batch, device)
        return batch

    return transform
