"""Datasets for pose-only, RGB-only and RGB+pose action recognition (PYSKL RGBPoseConv3D recipe).

``build_dataset(cfg, ann_file, split, mode, video_dir, views=...)`` returns the torch ``Dataset``
of the modality's registered pipeline (``rgbpose.data.config.register_pipeline``); this module
holds the three built-in ones, composed from ``rgbpose.data.transforms``.  Items: the model
inputs by name (``imgs`` and/or ``heatmap_imgs``, ``[V, C, T, H, W]``), ``label``,
``frame_dir`` (batching: ``rgbpose.data.batch``).  The pipelines mirror PYSKL's
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
annotation's ``img_shape`` to the decoded frame size.  Views: 1 in train and val, the test
views' ``num_clips`` in test, doubled (original views, then their mirrored copies) with ``flip`` -- for every
modality (PYSKL flips only heatmaps).  Persons: at most ``max_persons``, those with the highest
total keypoint score in their original order (denoised annotations have <= 2); the same
persons feed the CPU heatmaps and the on-device keypoints, so both give equal maps.

Randomness: train items draw from a per-process ``np.random.Generator`` seeded from
``torch.initial_seed()``, which DataLoader sets to ``base_seed + worker_id`` in each worker, so
workers differ and a fixed ``torch.manual_seed`` reproduces a run.  Val/test items are
deterministic (local RNG seeded 255 per sample).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rgbpose.data import transforms as tf
from rgbpose.data.config import PipelineConfig, TestViews, pipeline_entry
from rgbpose.data.framestore import FrameStore, store_path
from rgbpose.data.heatmaps import generate_pose_target, heatmap_canvas
from rgbpose.data.records import annotations_hash, load_split, resolve_layout, validate_annotations
from rgbpose.data.rgb_device import RGBSource
from rgbpose.data.sampling import mm_uniform_sample
from rgbpose.data.video import read_frames
from rgbpose.io import BadSampleError
from rgbpose.layouts import Layout

MODES = ("train", "val", "test")


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
        views: TestViews | None = None,
        frame_store: str | os.PathLike | None = None,
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
        self.views = views or TestViews()
        self.frame_store = Path(frame_store) if frame_store is not None else None
        self._store_warned = False
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
        return self.views.num_clips if self.mode == "test" else 1

    @property
    def flip_views(self) -> bool:
        return self.mode == "test" and self.views.flip

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
            total,
            clip_lens,
            self.num_views,
            test_mode=self.test_mode,
            rng=rng,
            test_sampling=cfg.test_sampling,
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
            if cfg.rgb_decode_on_device:
                res["rgb_source"] = self._encoded_rgb(res, video_inds)
                res["geometry"] = res["rgb_source"].geometry
            else:
                res["imgs"] = self._read_rgb(res, video_inds)

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
        if "rgb_source" in res:
            item["rgb_source"] = res["rgb_source"]
            item["rgb_source"].out_hw = tuple(res["img_shape"])
        elif cfg.uses_rgb:
            item["imgs"] = torch.from_numpy(self._rgb_views(res["imgs"]))
        if cfg.uses_pose:
            item.update(self._pose_output(res))
        return item

    def _read_rgb(self, res: dict[str, Any], video_inds: np.ndarray) -> np.ndarray:
        """The clip's frames, from the frame store when it covers the clip's compaction box
        (then ``imgs_origin`` says where the crop sits in the frame), else from the video.
        Keypoints are scaled to the frame size either way."""
        store = self._store_for_clip(res)
        if store is not None:
            res["imgs_origin"] = store.region[:2]
            return store.read(video_inds, tolerance=self.cfg.frame_tolerance)
        return self._video_frames(res, video_inds)

    def _encoded_rgb(self, res: dict[str, Any], video_inds: np.ndarray) -> RGBSource:
        """``rgb_decode_on_device``: the clip's frames still encoded, from the frame store when
        it covers the clip (else decoded from the video), for the batch transform to decode."""
        store = self._store_for_clip(res)
        views = (self.num_views, self.flip_views)
        if store is not None:
            frames = store.read_encoded(video_inds, tolerance=self.cfg.frame_tolerance)
            return RGBSource(frames, store.header["codec"], store.region[:2], [], (0, 0), *views)
        return RGBSource(self._video_frames(res, video_inds), "raw", (0, 0), [], (0, 0), *views)

    def _video_frames(self, res: dict[str, Any], video_inds: np.ndarray) -> np.ndarray:
        imgs = read_frames(
            self.video_path(res["frame_dir"]), video_inds, tolerance=self.cfg.frame_tolerance
        )
        tf.scale_to_shape(res, imgs.shape[1:3])
        return imgs

    def _store_for_clip(self, res: dict[str, Any]) -> FrameStore | None:
        """The sample's frame store when it covers the clip's compaction box (keypoints are
        scaled to its frame size), else None (said once per process)."""
        cfg = self.cfg
        store = self._open_store(res["frame_dir"])
        if store is None:
            return None
        tf.scale_to_shape(res, store.frame_hw)
        box = tf.compact_box(
            res["keypoint"], res["img_shape"], padding=cfg.compact_padding,
            threshold=cfg.compact_threshold, hw_ratio=1.0, allow_imgpad=True,
        )  # fmt: skip
        h, w = store.frame_hw
        if store.region == (0, 0, w, h) or (box is not None and store.covers(box)):
            return store
        self._warn_store(store.path, f"its region {store.region} misses the clip's box {box}")
        return None

    def _open_store(self, name: str) -> FrameStore | None:
        if self.frame_store is None:
            return None
        path = store_path(self.frame_store, name)
        if not path.is_file():
            self._warn_store(path, "no such file (the frame-store stage skipped it)")
            return None
        return FrameStore(path)

    def _warn_store(self, path: Path, why: str) -> None:
        """Say once per process that a clip came from its video instead of the store."""
        if not self._store_warned:
            self._store_warned = True
            print(f"[rgbpose] frame store {path}: {why}; reading the video instead "
                  "(said once per process)", file=sys.stderr, flush=True)  # fmt: skip

    def _rgb_views(self, imgs: np.ndarray) -> np.ndarray:
        """uint8 ``[n*L, H, W, 3]`` -> normalised float32 ``[views, 3, L, H, W]`` (uint8 with
        ``rgb_normalize_on_device``: the batch transform normalises)."""
        n_l, h, w, _ = imgs.shape
        views = imgs.reshape(self.num_views, n_l // self.num_views, h, w, 3)
        if self.cfg.rgb_normalize_on_device:
            out = np.moveaxis(views, -1, -4)
        else:
            out = tf.normalize_channels_first(views)
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
            "hm_keypoint": torch.from_numpy(kp_out),
            "hm_keypoint_score": torch.from_numpy(sc_out),
            "canvas_hw": heatmap_canvas(res["img_shape"], scaling),
            "flip_views": self.flip_views,
        }


def build_dataset(
    cfg: Any,
    ann_file: str | os.PathLike | Mapping[str, Any],
    split: str | None,
    mode: str,
    video_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
    views: TestViews | None = None,
    frame_store: str | os.PathLike | None = None,
) -> Dataset:
    """Dataset of ``split`` (None: every annotation) in ``mode`` ('train' | 'val' | 'test'),
    built by the pipeline registered for ``cfg.modality``; ``views`` are the test views.

    ``ann_file`` is an annotation pickle (read with the restricted unpickler) or an already
    loaded ``{'split': ..., 'annotations': [...]}`` dict.  ``video_dir`` holds
    ``<frame_dir>.mp4`` and is required for 'rgb' and 'rgbpose'; ``frame_store``, when given,
    is the folder of the training store the pipeline reads (its config's ``store_kind``): the RGB
    pipelines' ``<frame_dir>.frames`` (``rgbpose frame-store``; a clip the store does not cover
    comes from the video), DRSR's ``<frame_dir>.npz`` (``rgbpose depth-store``).  Every record of the split is
    checked first (:func:`validate_annotations`; labels against ``num_classes`` when given): a
    bad one raises ``BadSampleError`` naming the file and the sample.
    """
    annos, source = load_split(ann_file, split)
    layout = resolve_layout(cfg, annos, source)
    validate_annotations(annos, source, cfg, layout, num_classes)
    dataset_cls = pipeline_entry(cfg.modality).dataset_cls()
    extra = {"frame_store": frame_store} if frame_store and getattr(cfg, "store_kind", None) else {}
    return dataset_cls(
        cfg, annos, mode, video_dir=video_dir, layout=layout, source=source, views=views, **extra
    )
