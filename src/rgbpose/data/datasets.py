"""Datasets for pose-only, RGB-only and RGB+pose action recognition (PYSKL RGBPoseConv3D recipe).

``build_dataset(cfg, ann_file, split, mode, video_dir)`` returns a torch ``Dataset`` whose items
follow the shared contract (``/tmp/rgbpose/CONTRACT.md``).  The pipelines mirror PYSKL's
``configs/rgbpose_conv3d`` (sizes from :class:`PipelineConfig`; defaults in brackets)::

    pose  train: sample L_p -> compact -> resize (pre, pre) [64] -> random resized crop
                 -> resize (train, train) [56] -> flip 0.5 -> heatmaps (sigma)
          val/test: sample L_p x n -> compact -> resize (test, test) [64] -> heatmaps (+flip)
    rgb   train: sample L_r -> decode -> compact with the pose box -> resize (pre, pre) [256]
                 -> random resized crop -> resize (train, train) [224] -> flip -> normalise
          val/test: sample L_r x n -> decode -> compact -> resize (test, test) [224] -> normalise
    rgbpose: as rgb, with both modalities sampled from the same T (RGB L_r = 8 and pose
             L_p = 32, RNG order RGB then pose), the box computed from the pose-sampled frames,
             every geometric step applied to frames and keypoints alike, and heatmaps drawn at
             ``pose_scaling`` (0.25) of the RGB size (56 for 224, 64 for 256).

"compact" is PoseC3D's compaction (one square box over all sampled keypoints, 25% padding,
frames zero-padded where it leaves the image); keypoints are first rescaled from the
annotation's ``img_shape`` to the decoded frame size.  Views: 1 in train and val, ``num_clips``
in test, doubled (original views, then their mirrored copies) with ``flip_test`` -- for every
modality (PYSKL flips only heatmaps).  Persons: at most ``max_persons``, those with the highest
total keypoint score in their original order (denoised annotations have <= 2); the same
persons feed the CPU heatmaps and the on-device keypoints, so both give equal maps.

Randomness: train items draw from a per-process ``np.random.Generator`` seeded from
``torch.initial_seed()``, which DataLoader sets to ``base_seed + worker_id`` in each worker, so
workers differ and a fixed ``torch.manual_seed`` reproduces a run.  Val/test items are
deterministic (local RNG seeded 255 per sample).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rgbpose.data import transforms as tf
from rgbpose.data.heatmaps import (
    batch_heatmaps_torch,
    channel_flip_perm,
    generate_pose_target,
    heatmap_canvas,
)
from rgbpose.data.sampling import mm_uniform_sample
from rgbpose.data.video import read_frames
from rgbpose.io import BadSampleError, load_pickle
from rgbpose.layouts import Layout, get_layout

log = logging.getLogger(__name__)

MODALITIES = ("pose", "rgb", "rgbpose")
MODES = ("train", "val", "test")


@dataclass(frozen=True)
class PipelineConfig:
    """Data pipeline settings; defaults are PYSKL's RGBPoseConv3D recipe.

    Contract fields: ``modality`` ('pose' | 'rgb' | 'rgbpose'), clip lengths, ``num_clips``
    (test views), RGB/pose train and test sizes, ``sigma``, ``with_kp``/``with_limb``,
    ``flip_test``, ``heatmaps_on_device``, ``max_persons``.  Added here:

    * ``use_score``: heatmap amplitude = keypoint score (else 1);
    * ``rgb_resize_size`` / ``pose_resize_size``: train-time square resize before the random
      crop (None: ``round(train_size * 8 / 7)``, i.e. 256 for 224 and 64 for 56);
    * ``pose_scaling``: rgbpose heatmap canvas / RGB size (the pose sizes apply to 'pose');
    * ``crop_area``, ``crop_aspect``, ``flip_ratio``: train augmentation;
    * ``compact_padding``, ``compact_threshold``: PoseC3D compaction;
    * ``layout``: joint layout name (None: the annotation's 'layout', else from the joint
      count);
    * ``video_ext``: videos are ``<video_dir>/<frame_dir><video_ext>``;
    * ``frame_tolerance``: indices this many frames past a video's decoded length are clamped.
    """

    modality: str = "rgbpose"
    pose_clip_len: int = 32
    rgb_clip_len: int = 8
    num_clips: int = 1
    rgb_train_size: int = 224
    rgb_test_size: int = 224
    pose_train_size: int = 56
    pose_test_size: int = 64
    sigma: float = 0.6
    with_kp: bool = True
    with_limb: bool = False
    flip_test: bool = False
    heatmaps_on_device: bool = False
    max_persons: int = 2
    use_score: bool = True
    rgb_resize_size: int | None = None
    pose_resize_size: int | None = None
    pose_scaling: float = 0.25
    crop_area: tuple[float, float] = (0.56, 1.0)
    crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)
    flip_ratio: float = 0.5
    compact_padding: float = 0.25
    compact_threshold: float = 10.0
    layout: str | None = None
    video_ext: str = ".mp4"
    frame_tolerance: int = 5

    def __post_init__(self) -> None:
        problems = []
        if self.modality not in MODALITIES:
            problems.append(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        for name in (
            "pose_clip_len", "rgb_clip_len", "num_clips", "rgb_train_size", "rgb_test_size",
            "pose_train_size", "pose_test_size", "max_persons",
        ):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        for name in ("rgb_resize_size", "pose_resize_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                problems.append(f"{name} must be a positive integer or null, got {value!r}")
        if not self.sigma > 0 or not self.pose_scaling > 0:
            problems.append("sigma and pose_scaling must be positive")
        if not (self.with_kp or self.with_limb):
            problems.append("at least one of with_kp and with_limb must be true")
        lo, hi = self.crop_area
        if not 0 < lo <= hi <= 1:
            problems.append(f"crop_area must satisfy 0 < lo <= hi <= 1, got {self.crop_area}")
        if not 0 < self.crop_aspect[0] <= self.crop_aspect[1]:
            problems.append(f"crop_aspect must satisfy 0 < lo <= hi, got {self.crop_aspect}")
        if not 0 <= self.flip_ratio <= 1:
            problems.append(f"flip_ratio must be in [0, 1], got {self.flip_ratio}")
        if self.layout is not None:
            try:
                get_layout(self.layout)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("invalid PipelineConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineConfig:
        """Build from a plain mapping (YAML); unknown keys raise ``ValueError`` naming them."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(
                f"unknown PipelineConfig key(s): {', '.join(unknown)} (known: {sorted(fields)})"
            )
        values = dict(data)
        for key in ("crop_area", "crop_aspect"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)

    @property
    def uses_rgb(self) -> bool:
        return self.modality in ("rgb", "rgbpose")

    @property
    def uses_pose(self) -> bool:
        return self.modality in ("pose", "rgbpose")

    def pre_crop_size(self, kind: str) -> int:
        """Train-time resize before the random crop for 'rgb' or 'pose'."""
        if kind == "rgb":
            return self.rgb_resize_size or int(round(self.rgb_train_size * 8 / 7))
        return self.pose_resize_size or int(round(self.pose_train_size * 8 / 7))


# ----------------------------------------------------------------------------- annotations
def _load_annotations(
    ann_file: str | os.PathLike | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    split: str | None,
) -> tuple[list[dict[str, Any]], str]:
    """Annotations of ``split`` (all without a split) and a name for error messages."""
    if isinstance(ann_file, Mapping | list | tuple):
        data, source = ann_file, "<annotations>"
    else:
        source = str(ann_file)
        data = load_pickle(ann_file)
    if isinstance(data, Mapping):
        if "annotations" not in data:
            raise BadSampleError(source, "annotation pickle has no 'annotations' key")
        annos, splits = list(data["annotations"]), data.get("split", {})
    elif isinstance(data, list | tuple):
        annos, splits = list(data), {}
    else:
        raise BadSampleError(source, f"expected a dict or list, got {type(data).__name__}")
    if split is None:
        return annos, source
    if split not in splits:
        raise ValueError(f"{source}: no split {split!r} (available: {sorted(splits)})")
    wanted = set(splits[split])
    selected = [a for a in annos if a.get("frame_dir") in wanted]
    if len(selected) < len(wanted):
        log.warning(
            "%s: %d of %d names in split %r have no annotation (excluded upstream)",
            source,
            len(wanted) - len(selected),
            len(wanted),
            split,
        )
    return selected, source


def _resolve_layout(cfg: PipelineConfig, annos: list[dict[str, Any]], source: str) -> Layout:
    if cfg.layout is not None:
        return get_layout(cfg.layout)
    for ann in annos:
        if ann.get("layout"):
            return get_layout(str(ann["layout"]))
        kp = ann.get("keypoint")
        if kp is not None and np.ndim(kp) == 4:
            try:
                return get_layout(int(np.shape(kp)[2]))
            except ValueError as exc:
                raise BadSampleError(source, str(exc)) from exc
    return get_layout("coco17")


def _sample_problems(
    ann: Any, cfg: PipelineConfig, layout: Layout, num_classes: int | None
) -> str | None:
    """The first problem of one annotation record (None when it is usable)."""
    if not isinstance(ann, Mapping):
        return f"expected a dict per sample, got {type(ann).__name__}"
    name = ann.get("frame_dir")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        return f"invalid sample name {name!r}"
    label = ann.get("label")
    if not isinstance(label, numbers.Integral) or isinstance(label, bool):
        return f"label {label!r} is not an integer"
    if label < 0 or (num_classes is not None and label >= num_classes):
        classes = "" if num_classes is None else f" for {num_classes} classes"
        return f"label {label} is out of range{classes}"
    total = ann.get("total_frames")
    if not isinstance(total, numbers.Integral) or isinstance(total, bool) or total < 1:
        return f"total_frames {total!r} is not a positive integer"
    shp = ann.get("img_shape")
    if not (
        isinstance(shp, tuple | list)
        and len(shp) == 2
        and all(isinstance(v, numbers.Integral) and v > 0 for v in shp)
    ):
        return f"img_shape {shp!r} is not (height, width)"
    if "keypoint" not in ann:
        return "annotation has no 'keypoint'" if cfg.uses_pose else None
    kp_shape = np.shape(ann["keypoint"])
    if len(kp_shape) != 4 or kp_shape[3] not in (2, 3):
        return f"keypoint shape {kp_shape} is not [M, T, V, C] with C 2 or 3"
    _, t, v, c = kp_shape
    if c != 2:
        return f"keypoint shape {kp_shape} holds 3D joints; the 2D pipeline needs [M, T, V, 2]"
    if v != layout.num_joints:
        return f"keypoint has {v} joints, layout {layout.name} has {layout.num_joints}"
    if t != total:
        return f"keypoint has {t} frames, total_frames is {total}"
    if "keypoint_score" in ann and np.shape(ann["keypoint_score"]) != kp_shape[:3]:
        return (
            f"keypoint_score shape {np.shape(ann['keypoint_score'])} does not match {kp_shape[:3]}"
        )
    if "frame_inds" in ann and np.shape(ann["frame_inds"]) != (total,):
        return f"frame_inds shape {np.shape(ann['frame_inds'])} is not ({total},)"
    return None


def validate_annotations(
    annos: Sequence[Any],
    source: str,
    cfg: PipelineConfig,
    layout: Layout,
    num_classes: int | None = None,
) -> None:
    """Check every record before any item is loaded: a usable name, an integer label in
    ``[0, num_classes)`` (``>= 0`` without ``num_classes``), positive ``total_frames``,
    ``img_shape`` (h, w), and when there are keypoints (required for pose modalities)
    ``keypoint`` ``[M, T, V, 2]`` with ``T == total_frames`` and V of ``layout``,
    ``keypoint_score`` ``[M, T, V]`` and ``frame_inds`` ``[T]`` when present.

    Raises ``BadSampleError(source, "sample <name>: <problem> (and N more bad samples)")`` on
    the first bad record, so a broken annotation file stops a job before it trains or tests.
    """
    bad: list[tuple[str, str]] = []
    for ann in annos:
        problem = _sample_problems(ann, cfg, layout, num_classes)
        if problem is not None:
            name = ann.get("frame_dir", "?") if isinstance(ann, Mapping) else "?"
            bad.append((str(name), problem))
    if bad:
        name, problem = bad[0]
        more = f" (and {len(bad) - 1} more bad samples)" if len(bad) > 1 else ""
        raise BadSampleError(source, f"sample {name}: {problem}{more}")


def _hash_value(h: Any, value: Any) -> None:
    """Feed one value to ``h`` in a canonical, length-prefixed form (arrays by dtype, shape and
    bytes; scalars, strings and sequences as JSON with numpy scalars made plain)."""
    if isinstance(value, np.ndarray) and value.dtype != object:
        arr = np.ascontiguousarray(value)
        head = f"A{arr.dtype.str}{arr.shape}".encode()
        h.update(len(head).to_bytes(8, "little") + head + arr.nbytes.to_bytes(8, "little"))
        h.update(arr.data)
        return
    text = json.dumps(_plain_value(value), sort_keys=True).encode()
    h.update(b"J" + len(text).to_bytes(8, "little") + text)


def _plain_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_plain_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


#: annotation fields that define what a sample feeds to a model (hashed in this order)
HASHED_FIELDS = (
    "frame_dir", "label", "total_frames", "img_shape", "layout", "keypoint", "keypoint_score",
    "frame_inds",
)  # fmt: skip


def annotations_hash(annos: Sequence[Mapping[str, Any]]) -> str:
    """sha256 hex of the samples' :data:`HASHED_FIELDS`, in sample order; independent of the
    records' key order and of any other key."""
    h = hashlib.sha256(b"rgbpose-annotations-v1\0")
    h.update(len(annos).to_bytes(8, "little"))
    for ann in annos:
        for key in HASHED_FIELDS:
            if key in ann:
                h.update(b"+" + key.encode())
                _hash_value(h, ann[key])
            else:
                h.update(b"-" + key.encode())
    return h.hexdigest()


def _select_persons(kp: np.ndarray, score: np.ndarray, max_persons: int):
    """Keep the ``max_persons`` persons of highest total score, in their original order."""
    if kp.shape[0] <= max_persons:
        return kp, score
    keep = np.sort(np.argsort(-score.sum(axis=(1, 2)), kind="stable")[:max_persons])
    return kp[keep], score[keep]


# ----------------------------------------------------------------------------- dataset
class ActionDataset(Dataset):
    """Items of one split for one modality and mode (see the module docstring)."""

    def __init__(
        self,
        cfg: PipelineConfig,
        annotations: list[dict[str, Any]],
        mode: str,
        *,
        video_dir: str | os.PathLike | None = None,
        layout: Layout,
        source: str = "<annotations>",
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if cfg.uses_rgb and video_dir is None:
            raise ValueError(f"modality {cfg.modality!r} needs video_dir")
        self.cfg = cfg
        self.annotations = annotations
        self.mode = mode
        self.video_dir = Path(video_dir) if video_dir is not None else None
        self.layout = layout
        self.source = source
        self._rng_key: tuple[int, int] | None = None
        self._gen: np.random.Generator | None = None

    # -- bookkeeping
    def __len__(self) -> int:
        return len(self.annotations)

    @property
    def names(self) -> list[str]:
        return [str(a["frame_dir"]) for a in self.annotations]

    def content_hash(self) -> str:
        """sha256 hex of the samples this dataset serves (see :func:`annotations_hash`): the
        training engine resumes only when it is unchanged."""
        return annotations_hash(self.annotations)

    @property
    def labels(self) -> np.ndarray:
        return np.array([int(a["label"]) for a in self.annotations], dtype=np.int64)

    @property
    def test_mode(self) -> bool:
        return self.mode != "train"

    @property
    def num_views(self) -> int:
        """Clips per item (before flip doubling)."""
        return self.cfg.num_clips if self.mode == "test" else 1

    @property
    def flip_views(self) -> bool:
        return self.mode == "test" and self.cfg.flip_test

    def rng(self) -> np.random.Generator:
        """This process's generator, re-seeded whenever torch's initial seed changes."""
        key = (os.getpid(), torch.initial_seed())
        if self._rng_key != key:
            self._gen = np.random.default_rng(torch.initial_seed())
            self._rng_key = key
        return self._gen

    def video_path(self, frame_dir: str) -> Path:
        if not frame_dir or "/" in frame_dir or "\\" in frame_dir or frame_dir in (".", ".."):
            raise BadSampleError(self.source, f"invalid sample name {frame_dir!r}")
        return self.video_dir / f"{frame_dir}{self.cfg.video_ext}"

    # -- loading
    def _pose_arrays(self, ann: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        name = ann.get("frame_dir", "?")
        if "keypoint" not in ann:
            raise BadSampleError(self.source, f"{name}: annotation has no 'keypoint'")
        kp = np.asarray(ann["keypoint"], dtype=np.float32)
        if kp.ndim != 4 or kp.shape[-1] != 2:
            raise BadSampleError(self.source, f"{name}: keypoint shape {kp.shape} is not [M,T,V,2]")
        if kp.shape[2] != self.layout.num_joints:
            raise BadSampleError(
                self.source,
                f"{name}: {kp.shape[2]} joints, layout {self.layout.name} has "
                f"{self.layout.num_joints}",
            )
        if "keypoint_score" in ann:
            score = np.asarray(ann["keypoint_score"], dtype=np.float32)
            if score.shape != kp.shape[:3]:
                raise BadSampleError(
                    self.source, f"{name}: keypoint_score {score.shape} vs keypoint {kp.shape}"
                )
        else:
            score = np.ones(kp.shape[:3], dtype=np.float32)
        kp = np.nan_to_num(kp, nan=0.0, posinf=0.0, neginf=0.0)
        score = np.nan_to_num(score, nan=0.0)
        return _select_persons(kp, score, self.cfg.max_persons)

    def _base(self, ann: Mapping[str, Any]) -> dict[str, Any]:
        name = str(ann.get("frame_dir", "?"))
        try:
            total = int(ann["total_frames"])
            h, w = (int(v) for v in ann["img_shape"])
            label = int(ann["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadSampleError(self.source, f"{name}: bad annotation ({exc!r})") from exc
        if total < 1:
            raise BadSampleError(self.source, f"{name}: total_frames is {total}")
        return {"frame_dir": name, "label": label, "total_frames": total, "img_shape": (h, w)}

    # -- item
    def __getitem__(self, index: int) -> dict[str, Any]:
        cfg = self.cfg
        ann = self.annotations[index]
        res = self._base(ann)
        rng = None if self.test_mode else self.rng()
        total = res["total_frames"]
        clip_lens = {}
        if cfg.uses_rgb:
            clip_lens["rgb"] = cfg.rgb_clip_len
        if cfg.uses_pose:
            clip_lens["pose"] = cfg.pose_clip_len
        inds = mm_uniform_sample(
            total, clip_lens, self.num_views, test_mode=self.test_mode, rng=rng
        )

        if not cfg.uses_pose and "keypoint" not in ann:
            # RGB-only without poses: no compaction box, the whole frame is used.
            kp = np.zeros((0, total, self.layout.num_joints, 2), dtype=np.float32)
            score = np.zeros(kp.shape[:3], dtype=np.float32)
        else:
            kp, score = self._pose_arrays(ann)
        if cfg.uses_pose and kp.shape[1] != total:
            raise BadSampleError(
                self.source,
                f"{res['frame_dir']}: keypoint has {kp.shape[1]} frames, total_frames {total}",
            )
        if cfg.uses_pose:
            kp, score = kp[:, inds["pose"]], score[:, inds["pose"]]
        res["keypoint"], res["keypoint_score"] = kp, score
        if cfg.uses_rgb:
            # Kinect poses may have had empty frames trimmed: map pose frames to video frames.
            video_inds = ann["frame_inds"][inds["rgb"]] if "frame_inds" in ann else inds["rgb"]
            res["imgs"] = read_frames(
                self.video_path(res["frame_dir"]), video_inds, tolerance=cfg.frame_tolerance
            )
            tf.scale_to_frames(res)

        tf.pose_compact(
            res,
            padding=cfg.compact_padding,
            threshold=cfg.compact_threshold,
            hw_ratio=1.0,
            allow_imgpad=True,
        )
        if not cfg.uses_pose:
            del res["keypoint"], res["keypoint_score"]  # only needed for the box
        kind = "rgb" if cfg.uses_rgb else "pose"
        if self.mode == "train":
            pre = cfg.pre_crop_size(kind)
            size = cfg.rgb_train_size if cfg.uses_rgb else cfg.pose_train_size
            tf.resize(res, (pre, pre))
            tf.random_resized_crop(
                res, rng, area_range=cfg.crop_area, aspect_ratio_range=cfg.crop_aspect
            )
            tf.resize(res, (size, size))
            tf.flip(res, rng, flip_index=self.layout.flip_index, flip_ratio=cfg.flip_ratio)
        else:
            size = cfg.rgb_test_size if cfg.uses_rgb else cfg.pose_test_size
            tf.resize(res, (size, size))

        item: dict[str, Any] = {"label": res["label"], "frame_dir": res["frame_dir"]}
        if cfg.uses_rgb:
            item["imgs"] = torch.from_numpy(self._rgb_views(res["imgs"]))
        if cfg.uses_pose:
            item.update(self._pose_output(res))
        return item

    def _rgb_views(self, imgs: np.ndarray) -> np.ndarray:
        """uint8 ``[n*L, H, W, 3]`` -> normalised float32 ``[views, 3, L, H, W]``."""
        n_l, h, w, _ = imgs.shape
        out = tf.normalize(imgs).reshape(self.num_views, n_l // self.num_views, h, w, 3)
        out = out.transpose(0, 4, 1, 2, 3)
        if self.flip_views:
            out = np.concatenate([out, out[..., ::-1]], axis=0)
        return np.ascontiguousarray(out)

    def _pose_output(self, res: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        scaling = cfg.pose_scaling if cfg.modality == "rgbpose" else 1.0
        kp, score = res["keypoint"], res["keypoint_score"]
        if not cfg.heatmaps_on_device:
            hm = generate_pose_target(
                kp,
                score,
                res["img_shape"],
                sigma=cfg.sigma,
                use_score=cfg.use_score,
                with_kp=cfg.with_kp,
                with_limb=cfg.with_limb,
                layout=self.layout,
                scaling=scaling,
                double=self.flip_views,
                clip_len=cfg.pose_clip_len,
            )
            return {"heatmap_imgs": torch.from_numpy(hm)}
        m, nt, v, _ = kp.shape
        views, mx, length = self.num_views, cfg.max_persons, cfg.pose_clip_len
        kp_out = np.zeros((views, mx, length, v, 2), dtype=np.float32)
        sc_out = np.zeros((views, mx, length, v), dtype=np.float32)
        kp_out[:, :m] = (kp * np.float32(scaling)).reshape(m, views, length, v, 2).swapaxes(0, 1)
        sc_out[:, :m] = score.reshape(m, views, length, v).swapaxes(0, 1)
        return {
            "keypoint": torch.from_numpy(kp_out),
            "keypoint_score": torch.from_numpy(sc_out),
            "canvas_hw": heatmap_canvas(res["img_shape"], scaling),
            "flip_views": self.flip_views,
        }


def build_dataset(
    cfg: PipelineConfig,
    ann_file: str | os.PathLike | Mapping[str, Any],
    split: str | None,
    mode: str,
    video_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
) -> ActionDataset:
    """Dataset of ``split`` (None: every annotation) in ``mode`` ('train' | 'val' | 'test').

    ``ann_file`` is an annotation pickle (read with the restricted unpickler) or an already
    loaded ``{'split': ..., 'annotations': [...]}`` dict.  ``video_dir`` holds
    ``<frame_dir>.mp4`` and is required for 'rgb' and 'rgbpose'.  Every record of the split is
    checked first (:func:`validate_annotations`; labels against ``num_classes`` when given): a
    bad one raises ``BadSampleError`` naming the file and the sample.
    """
    annos, source = _load_annotations(ann_file, split)
    layout = _resolve_layout(cfg, annos, source)
    validate_annotations(annos, source, cfg, layout, num_classes)
    return ActionDataset(cfg, annos, mode, video_dir=video_dir, layout=layout, source=source)


# ----------------------------------------------------------------------------- batching
_STACKED = ("imgs", "heatmap_imgs", "keypoint", "keypoint_score")
_SHARED = ("canvas_hw", "flip_views")


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch: tensors ``[B, V, ...]``, ``label`` LongTensor ``[B]``,
    ``frame_dir`` list.

    With ``heatmaps_on_device`` items also carry ``canvas_hw`` (heatmap canvas ``(h, w)``) and
    ``flip_views`` (whether :func:`heatmaps_to_device` must append flipped views); these must
    agree across the batch and are passed through as plain values.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {
        "label": torch.tensor([int(it["label"]) for it in items], dtype=torch.long),
        "frame_dir": [str(it["frame_dir"]) for it in items],
    }
    for key in _STACKED:
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    for key in _SHARED:
        if key in items[0]:
            values = {tuple(it[key]) if key == "canvas_hw" else it[key] for it in items}
            if len(values) != 1:
                raise ValueError(f"items disagree on {key}: {sorted(values)}")
            batch[key] = values.pop()
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
    if not cfg.heatmaps_on_device or "keypoint" not in batch:
        return batch
    kp = batch["keypoint"].to(device, non_blocking=True)
    score = batch["keypoint_score"].to(device, non_blocking=True)
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


def batch_transform(
    cfg: PipelineConfig,
) -> Callable[[dict[str, Any], torch.device], dict[str, Any]] | None:
    """The transform ``rgbpose train``, ``test`` and ``predict`` all apply to a collated batch
    before the forward pass: with ``heatmaps_on_device`` the heatmaps are drawn on the model's
    device from the batch keypoints (``heatmaps_to_device``); otherwise there is none."""
    if not cfg.heatmaps_on_device:
        return None

    def transform(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        res = heatmaps_to_device(batch, cfg, device)
        return res if isinstance(res, dict) else batch

    return transform
