"""Typed data configuration: the pipeline settings of a run config's ``data:`` section, the
test views, what each pipeline feeds a model, and the registry of data pipelines.

No torch import here: the workflow and the config loader read this module while planning.

* :class:`PipelineConfig`: the clip pipelines of PYSKL's RGBPoseConv3D / PoseC3D recipes
  (modalities ``pose``, ``rgb``, ``rgbpose``; see ``rgbpose.data.datasets``).
* :class:`TestViews`: the test-time views (``num_clips`` temporal clips, doubled by ``flip``):
  the run config's ``test:`` section, the one place they are set.
* :class:`DataOutput`: one named model input a pipeline produces (after the batch transform),
  with its channel count and clip length, so config loading can cross-check it against the
  model's input contract (``rgbpose.models.registry``).
* :func:`register_pipeline`: a data module registers a modality with its config class and its
  dataset class, as model files register models; ``data.modality`` picks one.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rgbpose.data.sampling import TEST_SAMPLINGS, TestSampling
from rgbpose.layouts import Layout, get_layout

BUILTIN_MODALITIES = ("pose", "rgb", "rgbpose")


@dataclass(frozen=True)
class TestViews:
    """Test-time views: ``num_clips`` temporal clips, doubled by horizontal flip if ``flip``."""

    __test__ = False  # not a pytest class

    num_clips: int = 1
    flip: bool = False

    @property
    def count(self) -> int:
        return self.num_clips * (2 if self.flip else 1)


def require_one_test_view(modality: str, mode: str, views: TestViews | None) -> None:
    """For a pipeline with a single deterministic test clip: ``ValueError`` naming the keys when
    the test views ask for more (``test.num_clips`` > 1 or ``test.flip``)."""
    if mode == "test" and views is not None and views.count != 1:
        raise ValueError(
            f"the {modality} pipeline has one test view (the centre crop): set test.num_clips 1 "
            f"and test.flip false, got {views}"
        )


@dataclass(frozen=True)
class DataOutput:
    """A model input a pipeline produces: batch ``key``, ``channels`` (None: unknown until the
    layout is known), ``clip_len`` frames per view, and the data keys that set them."""

    key: str
    channels: int | None
    clip_len: int
    channels_from: str
    clip_len_key: str


@dataclass(frozen=True)
class PipelineConfig:
    """Data pipeline settings; defaults are PYSKL's RGBPoseConv3D recipe.

    Fields: ``modality`` ('pose' | 'rgb' | 'rgbpose'), clip lengths, RGB/pose train and test
    sizes, ``sigma``, ``with_kp``/``with_limb``, ``heatmaps_on_device``, ``max_persons``, and:

    * ``use_score``: heatmap amplitude = keypoint score (else 1);
    * ``rgb_resize_size`` / ``pose_resize_size``: train-time square resize before the random
      crop (None: ``round(train_size * 8 / 7)``, i.e. 256 for 224 and 64 for 56);
    * ``pose_scaling``: rgbpose heatmap canvas / RGB size (the pose sizes apply to 'pose');
    * ``crop_area``, ``crop_aspect``, ``flip_ratio``: train augmentation;
    * ``compact_padding``, ``compact_threshold``: PoseC3D compaction;
    * ``layout``: joint layout name (None: the annotation's 'layout', else from the joint
      count);
    * ``video_ext``: videos are ``<video_dir>/<frame_dir><video_ext>``;
    * ``frame_tolerance``: indices this many frames past a video's decoded length are clamped;
    * ``rgb_normalize_on_device``: RGB items stay uint8 (4x less to copy to the GPU) and the
      batch transform normalises them on the model's device (the same float32 operations);
    * ``rgb_decode_on_device``: with a frame store, items carry the clip's JPEG frames and its
      geometry; the batch transform decodes (nvJPEG on CUDA when torchvision is installed),
      resamples and normalises on the device (``rgbpose.data.rgb_device``);
    * ``test_sampling``: the val/test clip indices (``rgbpose.data.sampling``): ``'ours'``
      (default; a local ``default_rng(255)`` per sample) or ``'pyskl'`` (PYSKL's exact test
      indices, from a local legacy ``RandomState(255)`` drawn in PYSKL's order).
    """

    modality: str = "rgbpose"
    pose_clip_len: int = 32
    rgb_clip_len: int = 8
    rgb_train_size: int = 224
    rgb_test_size: int = 224
    pose_train_size: int = 56
    pose_test_size: int = 64
    sigma: float = 0.6
    with_kp: bool = True
    with_limb: bool = False
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
    rgb_normalize_on_device: bool = False
    rgb_decode_on_device: bool = False
    test_sampling: TestSampling = "ours"

    def __post_init__(self) -> None:
        problems = []
        if self.modality not in BUILTIN_MODALITIES:
            problems.append(f"modality must be one of {BUILTIN_MODALITIES}, got {self.modality!r}")
        for name in (
            "pose_clip_len", "rgb_clip_len", "rgb_train_size", "rgb_test_size",
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
        if self.test_sampling not in TEST_SAMPLINGS:
            problems.append(
                f"test_sampling must be one of {TEST_SAMPLINGS}, got {self.test_sampling!r}"
            )
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
    def store_kind(self) -> str | None:
        """The training store this pipeline reads (``--frame-store``): the RGB frame store
        (``rgbpose frame-store``) when it decodes video, else none."""
        return "frames" if self.uses_rgb else None

    @property
    def uses_pose(self) -> bool:
        return self.modality in ("pose", "rgbpose")

    def pre_crop_size(self, kind: str) -> int:
        """Train-time resize before the random crop for 'rgb' or 'pose'."""
        if kind == "rgb":
            return self.rgb_resize_size or int(round(self.rgb_train_size * 8 / 7))
        return self.pose_resize_size or int(round(self.pose_train_size * 8 / 7))

    def outputs(self, layout: Layout | str | None = None) -> tuple[DataOutput, ...]:
        """The model inputs this pipeline produces: ``imgs`` [3, rgb_clip_len, H, W] and/or
        ``heatmap_imgs`` [C, pose_clip_len, H, W] with C = joints (``with_kp``) + limbs
        (``with_limb``) of ``layout`` (``self.layout`` first; None: C unknown)."""
        out = []
        if self.uses_rgb:
            out.append(DataOutput("imgs", 3, self.rgb_clip_len, "RGB", "data.rgb_clip_len"))
        if self.uses_pose:
            name = self.layout or layout
            channels = None
            if name is not None:
                lay = get_layout(name) if isinstance(name, str) else name
                channels = lay.num_joints * self.with_kp + len(lay.limbs) * self.with_limb
                what = f"layout {lay.name}, with_kp {self.with_kp}, with_limb {self.with_limb}"
            else:
                what = "the annotations' layout"
            out.append(
                DataOutput("heatmap_imgs", channels, self.pose_clip_len, what, "data.pose_clip_len")
            )
        return tuple(out)


# ----------------------------------------------------------------------------- registry
def _resolve(ref: str | Any) -> Any:
    """``"module:attr"`` -> the attribute (imported on first use); anything else as is."""
    if isinstance(ref, str):
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)
    return ref


@dataclass(frozen=True)
class PipelineEntry:
    """A registered modality: its config class (``from_dict``, ``outputs(layout)``) and
    ``dataset`` class, each the class or ``"module:attr"`` (imported on first use), built as
    ``dataset(cfg, annotations, mode, video_dir=..., layout=..., source=..., views=...)``."""

    modality: str
    config: str | type
    dataset: str | Callable[..., Any]

    @property
    def config_cls(self) -> type:
        return _resolve(self.config)

    def dataset_cls(self) -> Callable[..., Any]:
        return _resolve(self.dataset)


#: the package's own modalities; a module outside it calls :func:`register_pipeline`
_PIPELINES: dict[str, PipelineEntry] = {
    **{
        m: PipelineEntry(m, PipelineConfig, "rgbpose.data.datasets:ActionDataset")
        for m in BUILTIN_MODALITIES
    },
    "skeleton": PipelineEntry(
        "skeleton", "rgbpose.data.skeleton:SkeletonConfig", "rgbpose.data.skeleton:SkeletonDataset"
    ),
    "infogcn": PipelineEntry(
        "infogcn", "rgbpose.data.infogcn:InfoGCNConfig", "rgbpose.data.infogcn:InfoGCNDataset"
    ),
    "drsr": PipelineEntry("drsr", "rgbpose.data.drsr:DRSRConfig", "rgbpose.data.drsr:DRSRDataset"),
}


def register_pipeline(modality: str, config_cls: type, dataset: str | Callable[..., Any]) -> None:
    """Register a data modality (a plug-in module does this at import; see the module doc)."""
    old = _PIPELINES.get(modality)
    if old is not None and (old.config, old.dataset) != (config_cls, dataset):
        raise ValueError(f"data modality {modality!r} is already registered")
    _PIPELINES[modality] = PipelineEntry(modality, config_cls, dataset)


def pipelines() -> dict[str, PipelineEntry]:
    return dict(_PIPELINES)


def pipeline_entry(modality: str) -> PipelineEntry:
    if modality not in _PIPELINES:
        raise ValueError(
            f"unknown data modality {modality!r} (known: {', '.join(sorted(_PIPELINES))})"
        )
    return _PIPELINES[modality]
