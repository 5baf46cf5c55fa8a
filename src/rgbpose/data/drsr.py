"""DRSR's data pipeline (modality ``drsr``): RGB and/or masked-depth clips plus the FRP guidance
map, as MotionRGBD's ``lib/datasets/base.py`` + ``NTU.py`` prepare them (REFERENCE_SEEDS 3.1),
read from the depth stage's per-sample stores (``rgbpose.preprocess.depth``:
``<store_dir>/<name>.npz``, 320x240 RGB ROI crops and uint8-wrapped depth crops per frame).

Per sample and modality (``source``: ``rgb``, ``depth``, or ``rgbd`` for FusionNet)::

    sampling   get_sl: clip_len (64) segments of the store's T frames, segment i =
               [int(T*i/L), max(int(T*i/L) + 1, int(T*(i+1)/L))); train: a random index in
               each; test: int(mean(segment)) (``test_sampling: drsr``; ``ours``: the train
               rule drawn from a local default_rng(255)); short videos repeat indices
               (T = 40: 0, 0, 1, 1, 2, 3, ...)
    depth      the stored wrapped depth ((-D) mod 256) -> cv2 COLORMAP_JET, 3 channels in
               OpenCV's BGR order, used as they are (the reference does not convert)
    augment    one draw per clip, shared by all its frames (:func:`draw_aug`), applied per frame
               in the reference's order: rotate (train, p 0.5, integer angle in [-10, 9]
               degrees about the centre, bilinear, zero border) -> resize to ``resize``
               (320x240; the stored size, so a no-op by default) -> crop ``crop`` (224; train:
               left in [0, W - crop), top in [0, H - crop), the reference's exclusive
               randint; test: the centre ((W - crop) // 2, (H - crop) // 2)) -> horizontal
               flip (train, p 0.5)
    normalise  (x - 127.5) / 128, float32 [3, T, crop, crop]
    guidance   FRP's ``garr`` (:func:`frp_guidance`) from the normalised clip: for every frame
               i, rank-pool frames i..i+w-1 (w = ``frp_window``, 10) with weights
               alpha_j = 2j - w - 1, ReLU, min-max normalise, grey (0.2989 c0 + 0.587 c1 +
               0.114 c2, torchvision's weights on the channels as they are) -> D_i; static
               mask S_i = D_i * [D_i > mean D_i], erode 2x2, dilate 3x3, min-max; both
               shifted by w - 1 zero frames (D_i at index i + w - 1) and truncated to T;
               garr = (D + S) * S, float32 [1, T, crop, crop]

With ``rgbd`` the two modalities share the frame indices and are augmented independently
(separate draws, as FusionNet's two ``image_propose`` calls).

Items: ``clip`` [V, 3, T, crop, crop] and ``guidance`` [V, 1, T, crop, crop] (``rgb`` /
``depth``) or ``clip_rgb``, ``guidance_rgb``, ``clip_depth``, ``guidance_depth`` (``rgbd``),
with V = 1 view in every mode (the test clip is deterministic: ``test.num_clips`` must be 1 and
``test.flip`` false), plus ``label`` and ``frame_dir``.

Differences from the reference: the store's frames are already 320x240, so the loader rotates
the resized frame, where the reference rotates its saved crop before resizing.  For depth that
is the same except for boxes clipped at the image edge (smaller than 320x240); for RGB the
reference's NTU loader reads the 16:9 window crops (960x540 from the 1080p video), so its
rotation happens before the 16:9 -> 4:3 squeeze and ours after it (a slight shear at +-10
degrees), and it resizes with PIL's bicubic where the store used bilinear.  The reference keeps
only samples with more than 16 frames, we keep all (``get_sl`` repeats indices); frames with
no person contour use a neighbour's centre instead of crashing (the depth stage).  The sample length T is the store's frame count (the RGB video's), not the
annotation's ``total_frames`` (the skeleton's).

Randomness: train items draw from a per-process ``np.random.Generator`` seeded from
``torch.initial_seed()`` (``base_seed + worker_id`` in a DataLoader worker), as the other
pipelines; val/test items are deterministic.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from rgbpose.data.config import DataOutput, TestViews, require_one_test_view
from rgbpose.data.records import annotations_hash
from rgbpose.io import BadSampleError
from rgbpose.layouts import Layout
from rgbpose.preprocess.depth import DepthStore, store_path

MODES = ("train", "val", "test")
SOURCES = ("rgb", "depth", "rgbd")
DRSR_TEST_SAMPLINGS = ("drsr", "ours")
ROTATION_RANGE = (-10, 10)  # np.random.randint(-10, 10): [-10, 9]
ROTATION_PROB = 0.5
FLIP_PROB = 0.5
GREY_WEIGHTS = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class DRSRConfig:
    """``data:`` of the ``drsr`` modality (defaults: MotionRGBD's ``config/NTU.yml``).

    * ``source``: ``rgb`` | ``depth`` | ``rgbd`` (both, for FusionNet);
    * ``clip_len``: frames per clip (64, the reference's ``sample_duration``);
    * ``resize``: (width, height) before the crop (320, 240); ``crop``: the square crop (224);
    * ``store_dir``: the depth stage's ``<name>.npz`` folder (None: the ``--frame-store``
      folder the train/test command is given, else its ``--video-dir``);
    * ``rotation`` / ``flip``: train-time rotation (p 0.5, [-10, 9] degrees) and horizontal
      flip (p 0.5) on or off;
    * ``frp_window``: the rank-pooling window w of the guidance map (10);
    * ``test_sampling``: ``drsr`` (the reference's segment means) or ``ours`` (one random
      frame per segment from a local ``default_rng(255)``).
    """

    uses_pose: ClassVar[bool] = False  # records need no 'keypoint'
    uses_rgb: ClassVar[bool] = False  # no video decoding (the store holds the frames)
    #: the store it reads (``--frame-store``): the depth stage's (``rgbpose depth-store``)
    store_kind: ClassVar[str] = "drsr"

    modality: str = "drsr"
    source: Literal["rgb", "depth", "rgbd"] = "rgb"
    clip_len: int = 64
    resize: tuple[int, int] = (320, 240)
    crop: int = 224
    store_dir: str | None = None
    rotation: bool = True
    flip: bool = True
    frp_window: int = 10
    test_sampling: Literal["drsr", "ours"] = "drsr"

    def __post_init__(self) -> None:
        problems = []
        if self.modality != "drsr":
            problems.append(f"modality must be 'drsr', got {self.modality!r}")
        if self.source not in SOURCES:
            problems.append(f"source must be one of {SOURCES}, got {self.source!r}")
        for name in ("clip_len", "crop", "frp_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if (
            not isinstance(self.resize, tuple)
            or len(self.resize) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in self.resize)
        ):
            problems.append(f"resize must be (width, height) integers, got {self.resize!r}")
        elif isinstance(self.crop, int) and min(self.resize) < self.crop:
            problems.append(f"crop {self.crop} is larger than resize {self.resize}")
        if self.test_sampling not in DRSR_TEST_SAMPLINGS:
            problems.append(
                f"test_sampling must be one of {DRSR_TEST_SAMPLINGS}, got {self.test_sampling!r}"
            )
        if problems:
            raise ValueError("invalid DRSRConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DRSRConfig:
        """Build from a plain mapping (YAML); unknown keys raise ``ValueError`` naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DRSRConfig key(s): {', '.join(unknown)}")
        values = dict(data)
        if isinstance(values.get("resize"), list):
            values["resize"] = tuple(values["resize"])
        return cls(**values)

    @property
    def modalities(self) -> tuple[str, ...]:
        return ("rgb", "depth") if self.source == "rgbd" else (self.source,)

    def output_keys(self, modality: str) -> tuple[str, str]:
        """(clip key, guidance key) of ``modality`` in an item."""
        if self.source == "rgbd":
            return f"clip_{modality}", f"guidance_{modality}"
        return "clip", "guidance"

    def outputs(self, layout: Layout | str | None = None) -> tuple[DataOutput, ...]:
        """Per modality: the clip [3, clip_len, crop, crop] and its guidance map [1, ...]."""
        out = []
        for m in self.modalities:
            clip_key, guide_key = self.output_keys(m)
            what = "RGB ROI" if m == "rgb" else "depth JET (BGR)"
            out.append(DataOutput(clip_key, 3, self.clip_len, what, "data.clip_len"))
            out.append(
                DataOutput(guide_key, 1, self.clip_len, "FRP rank-pool map", "data.clip_len")
            )
        return tuple(out)


# ----------------------------------------------------------------------------- steps
def get_sl(
    n: int, clip_len: int = 64, train: bool = False, rng: np.random.Generator | None = None
) -> list[int]:
    """The reference's ``get_sl``: one index per segment ``[int(n*i/L), max(int(n*i/L) + 1,
    int(n*(i+1)/L)))`` of ``n`` frames; a random one with ``train`` (from ``rng``), else
    ``int(mean(segment))``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if train and rng is None:
        raise ValueError("train sampling needs rng")
    out = []
    for i in range(clip_len):
        lo = int(n * i / clip_len)
        hi = max(lo + 1, int(n * (i + 1) / clip_len))
        out.append(int(rng.integers(lo, hi)) if train else int(np.mean(range(lo, hi))))
    return out


def rank_pool_weights(n: int) -> np.ndarray:
    """float32 rank-pooling weights ``alpha_j = 2j - n - 1`` for j = 1..n (the dynamic image of
    n frames is ``sum_j alpha_j frame_j``); n = 10 -> [-9, -7, ..., 7, 9]."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"rank pooling needs n >= 1 frames, got {n!r}")
    return (2 * np.arange(1, n + 1) - n - 1).astype(np.float32)


def normalize(frames: np.ndarray) -> np.ndarray:
    """``(x - 127.5) / 128`` as float32."""
    x = np.array(frames, dtype=np.float32)
    x -= np.float32(127.5)
    x /= np.float32(128.0)
    return x


def jet(depth: np.ndarray) -> np.ndarray:
    """uint8 wrapped depth ``[..., H, W]`` -> ``cv2.COLORMAP_JET`` ``[..., H, W, 3]`` (BGR)."""
    import cv2

    d = np.ascontiguousarray(depth, np.uint8)
    flat = d.reshape(-1, d.shape[-1])
    return cv2.applyColorMap(flat, cv2.COLORMAP_JET).reshape(*d.shape, 3)


@dataclass(frozen=True)
class ClipAug:
    """One clip's augmentation: crop origin, flip, rotation angle (degrees)."""

    left: int
    top: int
    flip: bool = False
    angle: int = 0


def draw_aug(cfg: DRSRConfig, rng: np.random.Generator | None) -> ClipAug:
    """Train (``rng``): crop origin in ``[0, W - crop) x [0, H - crop)``, then flip, then the
    rotation, drawn in the reference's order; test (None): centre crop, nothing else."""
    w, h = cfg.resize
    if rng is None:
        return ClipAug((w - cfg.crop) // 2, (h - cfg.crop) // 2)
    left = int(rng.integers(0, max(w - cfg.crop, 1)))
    top = int(rng.integers(0, max(h - cfg.crop, 1)))
    flip = bool(rng.uniform(0, 1) < FLIP_PROB) if cfg.flip else False
    angle = 0
    if cfg.rotation and rng.uniform(0, 1) < ROTATION_PROB:
        angle = int(rng.integers(*ROTATION_RANGE))
    return ClipAug(left, top, flip, angle)


def apply_aug(frames: np.ndarray, aug: ClipAug, cfg: DRSRConfig) -> np.ndarray:
    """uint8 ``[T, h, w, 3]`` -> ``[T, crop, crop, 3]``: rotate, resize, crop, flip."""
    import cv2

    w, h, c = *cfg.resize, cfg.crop
    out = []
    for f in frames:
        if aug.angle:
            fh, fw = f.shape[:2]
            m = cv2.getRotationMatrix2D((fw / 2, fh / 2), aug.angle, 1.0)
            f = cv2.warpAffine(f, m, (fw, fh))
        if f.shape[:2] != (h, w):
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(f[aug.top : aug.top + c, aug.left : aug.left + c])
    clip = np.stack(out)
    return clip[:, :, ::-1] if aug.flip else clip


def frp_guidance(clip: np.ndarray, window: int = 10) -> np.ndarray:
    """FRP's ``garr`` of a normalised clip ``[C, T, H, W]`` (C = 3): float32 ``[1, T, H, W]``
    (module docstring)."""
    import cv2

    c, t, h, w = clip.shape
    dyn = np.zeros((t, h, w), np.float32)
    static = np.zeros((t, h, w), np.float32)
    alpha = rank_pool_weights(window)
    frames = np.ascontiguousarray(np.swapaxes(np.asarray(clip, np.float32), 0, 1))
    frames = frames.reshape(t, c * h * w)
    grey = np.asarray(GREY_WEIGHTS, np.float32)[:c, None, None]
    k_erode, k_dilate = np.ones((2, 2), np.uint8), np.ones((3, 3), np.uint8)
    # windows shorter than w (the last w - 1 frames) land beyond T and are cut off
    for i in range(t - window + 1):
        re = (alpha @ frames[i : i + window]).reshape(c, h, w)
        re = np.maximum(re, 0)
        re -= re.min()
        mx = re.max()
        re = re / mx if mx != 0 else re / (mx + 1e-5)
        g = (re * grey).sum(0, dtype=np.float32)
        s = np.where(g > g.mean(), g, 0).astype(np.float32)
        s = cv2.dilate(cv2.erode(s, k_erode), k_dilate)
        s -= s.min()
        mx = s.max()
        s = s / mx if mx != 0 else s / (mx + 1e-5)
        dyn[i + window - 1], static[i + window - 1] = g, s
    return ((dyn + static) * static)[None]


def modality_clip(
    store: DepthStore, modality: str, inds: Sequence[int], aug: ClipAug, cfg: DRSRConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(clip float32 [3, T, crop, crop], guidance [1, T, crop, crop]) of one modality."""
    frames = store.rgb(inds) if modality == "rgb" else jet(store.depth(inds))
    clip = normalize(apply_aug(frames, aug, cfg)).transpose(3, 0, 1, 2)
    clip = np.ascontiguousarray(clip)
    return clip, frp_guidance(clip, cfg.frp_window)


# ----------------------------------------------------------------------------- dataset
class DRSRDataset(Dataset):
    """Items of one split for the ``drsr`` modality (see the module docstring).

    The store folder is ``cfg.store_dir``, else ``frame_store``, else ``video_dir``; every sample's store file must
    exist (checked here: ``BadSampleError`` naming the first missing one).  ``layout`` unused.
    """

    def __init__(
        self,
        cfg: DRSRConfig,
        annotations: list[dict[str, Any]],
        mode: str,
        *,
        video_dir: str | os.PathLike | None = None,
        layout: Layout | None = None,
        source: str = "<annotations>",
        views: TestViews | None = None,
        frame_store: str | os.PathLike | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        require_one_test_view("drsr", mode, views)
        root = next((r for r in (cfg.store_dir, frame_store, video_dir) if r is not None), None)
        if root is None:
            raise ValueError("the drsr pipeline needs data.store_dir (or a video_dir)")
        self.cfg, self.annotations, self.mode, self.source = cfg, annotations, mode, source
        self.store_dir = Path(root)
        self.layout = layout
        missing = [self.store_path(a) for a in annotations if not self.store_path(a).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise BadSampleError(missing[0], f"DRSR store file not found{more} (depth stage)")
        self._rng_key: tuple[int, int] | None = None
        self._gen: np.random.Generator | None = None

    def store_path(self, ann: Mapping[str, Any]) -> Path:
        name = str(ann.get("frame_dir", ""))
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise BadSampleError(self.source, f"invalid sample name {name!r}")
        return store_path(self.store_dir, name)

    def __len__(self) -> int:
        return len(self.annotations)

    @property
    def labels(self) -> np.ndarray:
        return np.array([int(a["label"]) for a in self.annotations], dtype=np.int64)

    def content_hash(self) -> str:
        """sha256 hex of the records (:func:`annotations_hash`) and every store's recorded
        digest (its frames and boxes): the training engine resumes only when both are
        unchanged."""
        h = hashlib.sha256(b"rgbpose-drsr-v1\0" + annotations_hash(self.annotations).encode())
        for ann in self.annotations:
            h.update(DepthStore(self.store_path(ann)).digest.encode() + b"\0")
        return h.hexdigest()

    def rng(self) -> np.random.Generator:
        """This process's generator, re-seeded whenever torch's initial seed changes."""
        key = (os.getpid(), torch.initial_seed())
        if self._rng_key != key:
            self._gen, self._rng_key = np.random.default_rng(torch.initial_seed()), key
        return self._gen

    def __getitem__(self, index: int) -> dict[str, Any]:
        cfg = self.cfg
        ann = self.annotations[index]
        store = DepthStore(self.store_path(ann))
        if "rgb" in cfg.modalities and not store.has_rgb:
            raise BadSampleError(store.path, "the store holds no RGB frames (depth-only)")
        train = self.mode == "train"
        if train:
            rng = self.rng()
            inds = get_sl(store.num_frames, cfg.clip_len, True, rng)
        elif cfg.test_sampling == "ours":
            rng = None
            inds = get_sl(store.num_frames, cfg.clip_len, True, np.random.default_rng(255))
        else:
            rng = None
            inds = get_sl(store.num_frames, cfg.clip_len, False)
        item: dict[str, Any] = {}
        for m in cfg.modalities:
            clip, guide = modality_clip(store, m, inds, draw_aug(cfg, rng), cfg)
            clip_key, guide_key = cfg.output_keys(m)
            item[clip_key] = torch.from_numpy(clip)[None]
            item[guide_key] = torch.from_numpy(guide)[None]
        item["label"] = int(ann["label"])
        item["frame_dir"] = str(ann["frame_dir"])
        return item
