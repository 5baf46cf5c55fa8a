"""Model zoo: the registry of typed builders (DESIGN.md 3.7) and the one way to build a model.

=================  ==========================================================  ================
name               what                                                        input
=================  ==========================================================  ================
``posec3d``        PoseC3D SlowOnly (pose, 48 frames, temporal strides 1,1,2)  [N,17,48,56,56]
``pose_only``      SlowOnly pose pathway alone (32 frames)                     [N,17,32,56,56]
``rgb_only``       SlowOnly-R50 RGB pathway alone (8 frames)                   [N,3,8,224,224]
``rgbpose_conv3d`` both pathways with two-way laterals, two heads              (rgb, pose)
``infogcn``        InfoGCN: k-mode input, SA-GC, MS-TCN, VAE head, IB loss     [N,2,64,25,3]
``ske2grid``       Ske2Grid: UPT+GIT grid patch, grid conv net, PLS stages     [N,2,100,17,3]
``c3d_light``      PoseC3D C3D-light (3x3x3 conv stack, no temporal pooling)   [N,17,48,56,56]
``x3d_shallow``    PoseC3D X3D-shallow (blocks 2,5,3, gamma_b 2.25, no SE)     [N,17,48,56,56]
``stgcnpp``        ST-GCN++ (10 GCN blocks, learnable graph, MS-TCN; layout)   [N,2,100,17,3]
``drsr``           DRSR I3DWTrans: spatial Inception + FRP, RCM, 3-scale trans  clip, guidance
``drsr_fusion``    DRSR FusionNet (CAPF): RGB + depth I3DWTrans, cross fusion   (rgb, depth)
=================  ==========================================================  ================

Each model file registers its builders with an input contract (``rgbpose.models.registry``:
named inputs, channels, temporal ratios, heads); a model outside the package registers the
same way from a module a run config lists under ``imports:``.

``build_model(name, num_classes, **overrides)`` is the one entry point; the (name, num_classes,
overrides) triple is stored on the model as ``model.spec`` (plain types) so checkpoints can
record it and ``build_from_spec`` can rebuild the same architecture. Every model has
``.backbone``, ``.head``, ``forward_features``, ``forward_head``, ``forward`` and
``loss(outputs, labels)``.

Overrides: unimodal models take ``dropout`` and any :class:`ResNet3dConfig` field
(``in_channels``, ``base_channels``, ``stage_blocks``, ``spatial_strides``, ...);
``rgbpose_conv3d`` takes ``rgb: {...}`` and ``pose: {...}`` (unimodal backbone overrides of
each pathway), ``dropout``, ``lateral_drop_path``, ``detach_lateral``, ``speed_ratio``,
``channel_ratio``, ``lateral_kernel``; ``c3d_light`` / ``x3d_shallow`` take ``dropout`` and any
:class:`C3DConfig` / :class:`X3DConfig` field. Unknown names or keys raise ``ValueError`` naming
them.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from rgbpose.models.c3d import C3D, C3DConfig, c3d_light
from rgbpose.models.drsr import DRSR, drsr
from rgbpose.models.drsr_fusion import DRSRFusion, drsr_fusion
from rgbpose.models.heads import ClsHead, RGBPose, RGBPoseHead
from rgbpose.models.infogcn import InfoGCN, InfoGCNOutput, infogcn
from rgbpose.models.registry import (
    Contract,
    ModelEntry,
    ModelInput,
    get_entry,
    register_model,
    registry,
)
from rgbpose.models.resnet3d import (
    BACKBONE_OVERRIDES,
    PRESETS,
    Recognizer3D,
    ResNet3d,
    ResNet3dConfig,
    count_parameters,
    pose_only,
    posec3d,
    resnet3d_config,
    rgb_only,
)
from rgbpose.models.rgbpose import (
    RGBPoseConfig,
    RGBPoseConv3D,
    RGBPoseRecognizer,
    rgbpose_conv3d,
)
from rgbpose.models.ske2grid import Ske2Grid, ske2grid
from rgbpose.models.stgcn import GCNRecognizer, STGCNPlusPlus, stgcnpp
from rgbpose.models.x3d import X3D, X3DConfig, x3d_shallow

#: the package's own models (name -> builder); :func:`registry` also lists plug-in models
MODELS: dict[str, Callable[..., nn.Module]] = {
    name: entry.builder for name, entry in registry().items()
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
    builder = get_entry(name).builder
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


def model_contract(model: nn.Module) -> Contract:
    """The input contract of a model made by :func:`build_model` (from its ``spec``)."""
    spec = model_spec(model)
    return get_entry(spec["model_name"]).contract(spec.get("overrides"))


def build_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from :func:`model_spec` output (e.g. a checkpoint's ``meta``)."""
    missing = [k for k in ("model_name", "num_classes") if k not in spec]
    if missing:
        raise ValueError(f"model spec lacks {missing}: {dict(spec)!r}")
    return build_model(spec["model_name"], spec["num_classes"], **(spec.get("overrides") or {}))


__all__ = [
    "BACKBONE_OVERRIDES",
    "C3D",
    "C3DConfig",
    "DRSR",
    "DRSRFusion",
    "MODELS",
    "Contract",
    "ModelEntry",
    "ModelInput",
    "PRESETS",
    "ClsHead",
    "GCNRecognizer",
    "InfoGCN",
    "InfoGCNOutput",
    "RGBPose",
    "RGBPoseConfig",
    "RGBPoseConv3D",
    "RGBPoseHead",
    "RGBPoseRecognizer",
    "Recognizer3D",
    "ResNet3d",
    "ResNet3dConfig",
    "STGCNPlusPlus",
    "Ske2Grid",
    "X3D",
    "X3DConfig",
    "build_from_spec",
    "build_model",
    "c3d_light",
    "drsr",
    "drsr_fusion",
    "count_parameters",
    "get_entry",
    "infogcn",
    "model_contract",
    "model_spec",
    "pose_only",
    "posec3d",
    "register_model",
    "registry",
    "resnet3d_config",
    "rgb_only",
    "rgbpose_conv3d",
    "ske2grid",
    "stgcnpp",
    "x3d_shallow",
]
