"""Model zoo: a registry of typed builders for the four models of DESIGN.md 3.7.

=================  ==========================================================  ================
name               what                                                        input
=================  ==========================================================  ================
``posec3d``        PoseC3D SlowOnly (pose, 48 frames, temporal strides 1,1,2)  [N,17,48,56,56]
``pose_only``      SlowOnly pose pathway alone (32 frames)                     [N,17,32,56,56]
``rgb_only``       SlowOnly-R50 RGB pathway alone (8 frames)                   [N,3,8,224,224]
``rgbpose_conv3d`` both pathways with two-way laterals, two heads              (rgb, pose)
=================  ==========================================================  ================

``build_model(name, num_classes, **overrides)`` is the one entry point; the (name, num_classes,
overrides) triple is stored on the model as ``model.spec`` (plain types) so checkpoints can
record it and ``build_from_spec`` can rebuild the same architecture. Every model has
``.backbone``, ``.head``, ``forward_features``, ``forward_head``, ``forward`` and
``loss(outputs, labels)``.

Overrides: unimodal models take ``dropout`` and any :class:`ResNet3dConfig` field
(``in_channels``, ``base_channels``, ``stage_blocks``, ``spatial_strides``, ...);
``rgbpose_conv3d`` takes ``rgb: {...}`` and ``pose: {...}`` (unimodal backbone overrides of
each pathway), ``dropout``, ``lateral_drop_path``, ``detach_lateral``, ``speed_ratio``,
``channel_ratio``, ``lateral_kernel``. Unknown names or keys raise ``ValueError`` naming them.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from rgbpose.models.heads import ClsHead, RGBPose, RGBPoseHead
from rgbpose.models.resnet3d import (
    POSE_ONLY,
    POSEC3D,
    PRESETS,
    RGB_ONLY,
    Recognizer3D,
    ResNet3d,
    ResNet3dConfig,
    count_parameters,
)
from rgbpose.models.rgbpose import RGBPoseConfig, RGBPoseConv3D, RGBPoseRecognizer

# extra_in_channels is wired by RGBPoseConv3D, never set by users.
BACKBONE_OVERRIDES: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(ResNet3dConfig) if f.name != "extra_in_channels"
)


def resnet3d_config(
    preset: ResNet3dConfig, overrides: Mapping[str, Any], where: str
) -> ResNet3dConfig:
    """``preset`` with ``overrides`` applied; unknown keys raise ``ValueError`` naming ``where``."""
    unknown = sorted(set(overrides) - BACKBONE_OVERRIDES)
    if unknown:
        raise ValueError(
            f"unknown override(s) {unknown} for {where}; allowed: {sorted(BACKBONE_OVERRIDES)}"
        )
    return dataclasses.replace(preset, **overrides)


def _unimodal(
    preset: ResNet3dConfig, where: str, num_classes: int, dropout: float, backbone: dict[str, Any]
) -> Recognizer3D:
    return Recognizer3D(resnet3d_config(preset, backbone, where), num_classes, dropout)


def posec3d(num_classes: int, dropout: float = 0.5, **backbone: Any) -> Recognizer3D:
    """PoseC3D SlowOnly (17 -> 512 ch, temporal strides (1, 1, 2), 1.99 M backbone params)."""
    return _unimodal(POSEC3D, "posec3d", num_classes, dropout, backbone)


def pose_only(num_classes: int, dropout: float = 0.5, **backbone: Any) -> Recognizer3D:
    """The RGBPoseConv3D pose pathway alone (32 frames, no temporal stride)."""
    return _unimodal(POSE_ONLY, "pose_only", num_classes, dropout, backbone)


def rgb_only(num_classes: int, dropout: float = 0.5, **backbone: Any) -> Recognizer3D:
    """SlowOnly-R50 on 8 RGB frames (3 -> 2048 ch, 31.6 M backbone params)."""
    return _unimodal(RGB_ONLY, "rgb_only", num_classes, dropout, backbone)


def rgbpose_conv3d(
    num_classes: int,
    rgb: Mapping[str, Any] | None = None,
    pose: Mapping[str, Any] | None = None,
    dropout: float = 0.5,
    lateral_drop_path: float = 0.0,
    detach_lateral: bool = False,
    speed_ratio: int = 4,
    channel_ratio: int = 4,
    lateral_kernel: int = 7,
) -> RGBPoseRecognizer:
    """RGBPoseConv3D (rgb_only + pose_only pathways, four laterals, ~36.0 M backbone params)."""
    for name, value in (("rgb", rgb), ("pose", pose)):
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"rgbpose_conv3d override {name!r} must be a mapping, got {value!r}")
    cfg = RGBPoseConfig(
        rgb=resnet3d_config(RGB_ONLY, rgb or {}, "rgbpose_conv3d.rgb"),
        pose=resnet3d_config(POSE_ONLY, pose or {}, "rgbpose_conv3d.pose"),
        speed_ratio=speed_ratio,
        channel_ratio=channel_ratio,
        lateral_kernel=lateral_kernel,
        lateral_drop_path=lateral_drop_path,
        detach_lateral=detach_lateral,
    )
    return RGBPoseRecognizer(cfg, num_classes, dropout)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "posec3d": posec3d,
    "pose_only": pose_only,
    "rgb_only": rgb_only,
    "rgbpose_conv3d": rgbpose_conv3d,
}


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively: spec values must survive YAML/JSON and weights_only loads."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def build_model(name: str, num_classes: int, **overrides: Any) -> nn.Module:
    """Build a registered model; the spec is stored as ``model.spec`` (see :func:`model_spec`)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    builder = MODELS[name]
    params = inspect.signature(builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(overrides) - (set(params) - {"num_classes"}))
        if unknown:
            allowed = sorted(set(params) - {"num_classes"})
            raise ValueError(f"unknown override(s) {unknown} for {name}; allowed: {allowed}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    model = builder(num_classes, **overrides)
    model.spec = {"model_name": name, "num_classes": num_classes, "overrides": _plain(overrides)}
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{'model_name', 'num_classes', 'overrides'}`` of a model made by :func:`build_model`."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict):
        raise ValueError("model has no .spec: build it with rgbpose.models.build_model")
    return copy.deepcopy(spec)


def build_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from :func:`model_spec` output (e.g. a checkpoint's ``meta``)."""
    missing = [k for k in ("model_name", "num_classes") if k not in spec]
    if missing:
        raise ValueError(f"model spec lacks {missing}: {dict(spec)!r}")
    return build_model(spec["model_name"], spec["num_classes"], **(spec.get("overrides") or {}))


__all__ = [
    "BACKBONE_OVERRIDES",
    "MODELS",
    "PRESETS",
    "ClsHead",
    "RGBPose",
    "RGBPoseConfig",
    "RGBPoseConv3D",
    "RGBPoseHead",
    "RGBPoseRecognizer",
    "Recognizer3D",
    "ResNet3d",
    "ResNet3dConfig",
    "build_from_spec",
    "build_model",
    "count_parameters",
    "model_spec",
    "pose_only",
    "posec3d",
    "resnet3d_config",
    "rgb_only",
    "rgbpose_conv3d",
]
