"""``rgbpose import-pyskl``: published PYSKL / mmaction2 weights as a checkpoint that ``rgbpose
test`` and ``rgbpose predict`` use directly.

::

    rgbpose import-pyskl rgbpose_conv3d_20230301-ac7b0e77.pth -o ntu60_rgbpose.pt
    rgbpose predict clip.avi --checkpoint ntu60_rgbpose.pt
    rgbpose import-pyskl stgcnpp_ntu60_xsub_hrnet/j.pth -o ntu60_stgcnpp_j.pt
    rgbpose import-pyskl c3d_light_ntu60_xsub/limb.pth -o ntu60_c3d_light_limb.pt

The input is a PYSKL (mmcv) or mmaction2 1.x (mmengine) checkpoint, or a bare state dict.
mmengine's files also hold a ``message_hub`` of mmengine objects: they are read without mmengine
and without running any of its code (``rgbpose.safe_unpickle``); only the ``state_dict`` tensors
and the plain values of ``meta`` are kept (the latter as ``source_meta``).

Models: RGBPoseConv3D and its unimodal streams (``rgbpose_conv3d``, ``rgb_only``,
``pose_only``), PoseC3D SlowOnly joint / limb (``posec3d``), C3D-light and X3D-shallow joint /
limb (``c3d_light``, ``x3d_shallow``) and ST-GCN++ (``stgcnpp``) on 2D COCO-17 keypoints (x, y,
score; PYSKL ``*_hrnet``) or 3D NTU-25 joints (x, y, z; ``*_3dkp``), features j / b / jm / bm.
The key rules are the model's (``rgbpose.models.convert.PYSKL_KEY_RULES``); every key and shape
must match.

Which model and run config: ``--config RUN.yaml`` names them; without it the model is
``--model``, else what the weights show (``rgb_path``: ``rgbpose_conv3d``; a 3-channel ResNet3d
stem: ``rgb_only``; ``conv1a``: ``c3d_light``; ``conv1_s``: ``x3d_shallow``; an ST-GCN++ graph
with multi-scale TCNs: ``stgcnpp``), else the file's name (and its folder's), as below.  The run
config is that model's NTU recipe under ``config/models/``, the stream's as the name says
(default: the first listed):

* ``rgbpose_conv3d.pth``, ``rgbpose_conv3d_init.pth``; ``rgbpose_conv3d_20230301-ac7b0e77.pth``:
  ``rgbpose_conv3d``, ``ntu_rgbpose_conv3d.yaml``;
* ``rgb_only.pth``; ``rgb_only_20230228-576b9f86.pth``: ``rgb_only``, ``ntu_rgb_only.yaml``;
* ``pose_only.pth``; ``pose_only_20230228-fa40054e.pth``: ``pose_only``, ``ntu_pose_only.yaml``;
* ``joint.pth``, ``slowonly_r50_ntu60_xsub/joint.pth``;
  ``slowonly_r50_8xb16-u48-240e_ntu60-xsub-keypoint_20220815-38db104b.pth``: ``posec3d``,
  ``ntu_posec3d.yaml``; ``limb`` in place of ``joint`` / ``keypoint``: ``ntu_posec3d_limb.yaml``;
* ``c3d_light_ntu60_xsub/joint.pth``, ``.../limb.pth``: ``c3d_light``,
  ``ntu_c3d_light_joint.yaml``, ``ntu_c3d_light_limb.yaml``; ``x3d_shallow_ntu60_xsub/...``:
  ``x3d_shallow``, ``ntu_x3d_shallow_joint.yaml``, ``ntu_x3d_shallow_limb.yaml``;
* ``stgcnpp_ntu60_xsub_hrnet/j.pth`` (``b``, ``jm``, ``bm``), ``stgcn++_ntu60_xsub_3dkp_j.pth``;
  ``stgcnpp_8xb16-joint-u100-80e_ntu60-xsub-keypoint-2d_20221228-86e1e77a.pth`` (``bone``,
  ``joint-motion``, ``bone-motion``): ``stgcnpp``, ``ntu_stgcnpp_j.yaml`` (``_b``, ``_jm``,
  ``_bm``).  The recipes are 2D COCO-17; weights of a 25-joint graph (NTU 3D) add
  ``model.overrides.layout=ntu25`` and ``data.keypoints=3d`` (:data:`STGCNPP_JOINTS`).

The class count comes from the head's weights unless ``--num-classes`` says it; 60 and 120 are
NTU RGB+D 60 / 120 (``--dataset``).  The written checkpoint's ``meta`` holds the model spec,
the resolved run config (``config``, with ``--overrides-json`` merged into ``model.overrides``
and ``--set`` applied after the settings the weights imply), ``dataset``, ``benchmark``
(``xsub`` / ``xview`` / ``xset`` when the file's name or folder says it), ``class_names``,
``trained_labels`` (all classes), ``imported_from``, ``config_source``, ``config_sets`` (the
settings the weights implied), ``source_meta`` and ``ignored_entries`` (the file's
``message_hub``, ``optimizer``, ...; mmaction2's RGB mean/std buffers, checked against ours).
Weights of another family than the run config's model (C3D weights for ``--model posec3d``),
of a GCN other than ST-GCN++ (ST-GCN's ``PA``, AAGCN, CTR-GCN, ...) and any key or shape
mismatch are errors naming the file and the key.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rgbpose.io import BadSampleError
from rgbpose.models import build_model, model_spec
from rgbpose.models.convert import RESNET3D_UNIMODAL, _save_checkpoint, import_pyskl
from rgbpose.safe_unpickle import load_checkpoint_restricted, plain_metadata

_JOINT = r"(^|[-_/])(joint|keypoint)([-_./]|$)"
_LIMB = r"(^|[-_/])limb([-_./]|$)"
_HEATMAP_STREAMS = ((_JOINT, "joint"), (_LIMB, "limb"))
_GCN_STREAMS = (
    (r"(^|[-_/])(j|joint(?!-motion))([-_.]|$)", "j"),
    (r"(^|[-_/])(b|bone(?!-motion))([-_.]|$)", "b"),
    (r"(^|[-_/])(jm|joint-motion)([-_.]|$)", "jm"),
    (r"(^|[-_/])(bm|bone-motion)([-_.]|$)", "bm"),
)


def _streams(recipe: str, streams: tuple[tuple[str, str], ...]) -> tuple[tuple[Any, str], ...]:
    """(compiled stream pattern, ``recipe`` filled with the stream's name) of each stream."""
    return tuple((re.compile(pattern), recipe.format(name)) for pattern, name in streams)


#: model -> ((pattern of a stream in the file's name, its NTU recipe under config/models/), ...);
#: the first is the default
RECIPES: dict[str, tuple[tuple[re.Pattern[str] | None, str], ...]] = {
    "rgbpose_conv3d": ((None, "ntu_rgbpose_conv3d.yaml"),),
    "rgb_only": ((None, "ntu_rgb_only.yaml"),),
    "pose_only": ((None, "ntu_pose_only.yaml"),),
    "posec3d": (
        (re.compile(_JOINT), "ntu_posec3d.yaml"), (re.compile(_LIMB), "ntu_posec3d_limb.yaml"),
    ),
    "c3d_light": _streams("ntu_c3d_light_{}.yaml", _HEATMAP_STREAMS),
    "x3d_shallow": _streams("ntu_x3d_shallow_{}.yaml", _HEATMAP_STREAMS),
    "stgcnpp": _streams("ntu_stgcnpp_{}.yaml", _GCN_STREAMS),
}  # fmt: skip
#: (pattern in the file's folder/name, model) of the published PYSKL and mmaction2 1.x
#: checkpoints, the first match wins
PUBLISHED_NAMES = tuple(
    (re.compile(pattern), model)
    for pattern, model in (
        (r"(^|/)rgbpose_conv3d", "rgbpose_conv3d"),
        (r"(^|/)rgb_only", "rgb_only"),
        (r"(^|/)pose_only", "pose_only"),
        (r"(^|[-_/])stgcn(\+\+|pp)([-_./]|$)", "stgcnpp"),
        (r"(^|[-_/])c3d_light([-_./]|$)", "c3d_light"),
        (r"(^|[-_/])x3d_shallow([-_./]|$)", "x3d_shallow"),
        (_LIMB, "posec3d"),
        (_JOINT, "posec3d"),
    )
)
#: (key under ``backbone.`` only that model's weights hold, model), tried in order; the ResNet3d
#: pose models (posec3d, pose_only) have none: their weights look the same
WEIGHT_MARKERS = (
    ("rgb_path.conv1.conv.weight", "rgbpose_conv3d"),
    ("gcn.0.tcn.branches.0.0.weight", "stgcnpp"),
    ("conv1a.conv.weight", "c3d_light"),
    ("conv1_s.conv.weight", "x3d_shallow"),
)
_RGB_STEM = "conv1.conv.weight"  # a ResNet3d stem of 3 input channels: rgb_only
#: joints of an ST-GCN++ graph -> the settings beyond the (2D COCO-17) NTU recipe
STGCNPP_JOINTS: dict[int, dict[str, Any]] = {
    17: {},
    25: {"model.overrides.layout": "ntu25", "data.keypoints": "3d"},
}
#: head size -> the NTU label space it stands for
DATASETS = {60: "ntu60", 120: "ntu120"}
_BENCHMARK = re.compile(r"(?<![a-z])(xsub|xview|xset)(?![a-z])")
_HEAD_WEIGHTS = (
    "cls_head.fc_cls.weight", "cls_head.fc_rgb.weight", "cls_head.fc_pose.weight",
    "cls_head.fc.weight",  # mmaction2 1.x's GCNHead
)  # fmt: skip


def recipe_dir() -> Path:
    """``config/models`` of this source tree, else of the working directory."""
    here = Path(__file__).resolve().parents[3] / "config" / "models"
    return here if here.is_dir() else Path("config") / "models"


def _name_of(path: str | Path) -> str:
    """The file's folder and name, lower case: what the published names are matched against."""
    return "/".join(Path(path).parts[-2:]).lower()


def recipe_for(model: str, path: str | Path) -> str:
    """``model``'s NTU recipe for the stream the file's name says (default: its first)."""
    choices = RECIPES[model]
    name = _name_of(path)
    found = [recipe for pattern, recipe in choices if pattern is not None and pattern.search(name)]
    return found[0] if found else choices[0][1]


def published_model(path: str | Path) -> tuple[str, str] | None:
    """(model, recipe file) a published checkpoint's folder/name stands for, else None."""
    name = _name_of(path)
    for pattern, model in PUBLISHED_NAMES:
        if pattern.search(name):
            return model, recipe_for(model, path)
    return None


def read_source(path: Path) -> tuple[dict[str, Tensor], dict[str, Any], list[str]]:
    """(state dict, plain ``meta``, other top-level entries ignored) of a PYSKL / mmaction2
    checkpoint; ``BadSampleError`` naming the file when it cannot be read safely."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise BadSampleError(path, exc.strerror or str(exc)) from exc
    except Exception:  # noqa: BLE001 - other objects than tensors (mmengine), or a bad file:
        obj = load_checkpoint_restricted(path)  # loads the former, says what is wrong otherwise
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        state, meta = dict(obj["state_dict"]), plain_metadata(obj.get("meta")) or {}
        ignored = sorted(str(k) for k in obj if k not in ("state_dict", "meta"))
    elif isinstance(obj, Mapping) and obj:
        state, meta, ignored = dict(obj), {}, []  # a bare state dict
    else:
        raise BadSampleError(path, "expected a checkpoint dict with a 'state_dict' state dict")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise BadSampleError(path, f"state dict entries that are not tensors: {bad[:5]}")
    return state, meta if isinstance(meta, dict) else {}, ignored + _normalisation(state, path)


def _normalisation(state: dict[str, Tensor], path: Path) -> list[str]:
    """Remove the RGB mean/std buffers some mmaction2 1.x saves hold (``data_preprocessor.*``;
    its publish tool drops them) after checking they are the ones rgbpose's pipeline applies."""
    from rgbpose.data.transforms import RGB_MEAN, RGB_STD  # noqa: PLC0415

    keys = [k for k in state if k.removeprefix("module.").startswith("data_preprocessor.")]
    for key in keys:
        value = state.pop(key)
        expected = RGB_MEAN if key.endswith(".mean") else RGB_STD if key.endswith(".std") else None
        flat = value.flatten().double()
        if (
            expected is None
            or flat.numel() != 3
            or not torch.allclose(flat, torch.tensor(expected).double())
        ):
            raise BadSampleError(
                path, f"{key} {flat.tolist()} is not the RGB normalisation rgbpose "
                f"applies (mean {list(RGB_MEAN)}, std {list(RGB_STD)})",
            )  # fmt: skip
    return [f"state_dict[{k}]" for k in keys]


def _tensor(state: Mapping[str, Tensor], key: str) -> Tensor | None:
    return state.get(key, state.get(f"module.{key}"))


def model_from_weights(state: Mapping[str, Tensor]) -> str | None:
    """The model the weights alone identify (:data:`WEIGHT_MARKERS`; a 3-channel ResNet3d stem
    is ``rgb_only``); None for ``pose_only`` / ``posec3d`` (alike) and unknown weights."""
    for marker, model in WEIGHT_MARKERS:
        if _tensor(state, f"backbone.{marker}") is not None:
            return model
    stem = _tensor(state, f"backbone.{_RGB_STEM}")
    return "rgb_only" if stem is not None and stem.ndim == 5 and stem.shape[1] == 3 else None


def family(model: str) -> str:
    """Models whose checkpoints differ in shapes only share a family (the unimodal ResNet3d)."""
    return "ResNet3d" if model in RESNET3D_UNIMODAL else model


def check_weights(state: Mapping[str, Tensor], model: str | None, path: Path) -> None:
    """``BadSampleError`` naming the file when its weights are of a PYSKL / mmaction2 GCN other
    than ST-GCN++ (a ``PA`` adjacency, a single-conv TCN, ...) or of another family than
    ``model`` (None: not checked)."""
    keys = [k.removeprefix("module.") for k in state]
    gcn = [k for k in keys if k.startswith("backbone.gcn.")]
    odd = [k for k in gcn if k.endswith(".PA") or ".tcn.conv." in k]
    found = model_from_weights(state)
    if odd or (gcn and found != "stgcnpp"):
        raise BadSampleError(
            path, f"GCN weights that are not ST-GCN++'s (e.g. {(odd or gcn)[0]}): rgbpose "
            "imports ST-GCN++ (gcn_adaptive 'init', mstcn) only",
        )  # fmt: skip
    if model is not None and found is not None and family(found) != family(model):
        markers = {name: f"backbone.{key}" for key, name in WEIGHT_MARKERS}
        marker = markers.get(found, f"backbone.{_RGB_STEM} of 3 channels")
        raise BadSampleError(path, f"holds {found} weights ({marker}), not {model!r} ones")


def _stgcnpp_sets(state: Mapping[str, Tensor], path: Path) -> dict[str, Any]:
    adjacency = _tensor(state, "backbone.gcn.0.gcn.A")
    if adjacency is None:
        return {}  # the strict import names what is missing
    joints = int(adjacency.shape[-1])
    if joints not in STGCNPP_JOINTS:
        raise BadSampleError(
            path, f"backbone.gcn.0.gcn.A {tuple(adjacency.shape)}: a graph of {joints} joints; "
            f"rgbpose's ST-GCN++ layouts have {sorted(STGCNPP_JOINTS)}",
        )  # fmt: skip
    return dict(STGCNPP_JOINTS[joints])


#: model -> the run-config settings its weights imply beyond its NTU recipe
RECIPE_SETS: dict[str, Callable[[Mapping[str, Tensor], Path], dict[str, Any]]] = {
    "stgcnpp": _stgcnpp_sets,
}


def head_classes(state: Mapping[str, Tensor]) -> int | None:
    """Rows of the classifier's weight (the class count), None when there is no head."""
    for key, value in state.items():
        if key.removeprefix("module.") in _HEAD_WEIGHTS and value.ndim == 2:
            return int(value.shape[0])
    return None


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        merge = isinstance(old, dict) and isinstance(value, Mapping)
        out[key] = _deep_merge(old, value) if merge else value
    return out


def resolve_config(
    args: argparse.Namespace, state: Mapping[str, Tensor], num_classes: int
) -> tuple[Any, Path, dict[str, Any]]:
    """(RunConfig, its source, the settings the weights implied) for the import: ``--config``,
    else the model's NTU recipe with :data:`RECIPE_SETS`; ``--set`` and ``--overrides-json``
    applied, ``num_classes`` recorded."""
    from rgbpose.engine.config import (  # noqa: PLC0415
        load_run_config,
        parse_set_args,
        run_config_from_dict,
    )

    implied: dict[str, Any] = {}
    if args.config is not None:
        source = args.config
    else:
        hint = published_model(args.input)
        name = args.model or model_from_weights(state) or (hint[0] if hint else None)
        if name is None:
            raise BadSampleError(
                args.input,
                "neither its file name nor its weights say which model it holds (pose_only and "
                "posec3d have the same weights): pass --model or --config",
            )
        if name not in RECIPES:
            raise ValueError(f"no NTU recipe for model {name!r}: pass --config")
        source = recipe_dir() / recipe_for(name, args.input)
        sets = RECIPE_SETS.get(name)
        implied = sets(state, args.input) if sets is not None else {}
    cfg = load_run_config(source, {**implied, **parse_set_args(args.overrides)})
    if args.model is not None and args.model != cfg.model.name:
        raise ValueError(f"--model {args.model} but {source} configures {cfg.model.name!r}")
    extra = json.loads(args.overrides_json)
    if not isinstance(extra, dict):
        raise ValueError(f"--overrides-json must be a JSON object, got {args.overrides_json}")
    raw = cfg.to_dict()
    raw["model"]["overrides"] = _deep_merge(raw["model"]["overrides"], extra)
    raw["num_classes"] = num_classes
    return run_config_from_dict(raw, f"{source} (as imported)"), source, implied


def import_checkpoint(args: argparse.Namespace) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict, meta) of the rgbpose checkpoint ``args`` describe (see the module doc)."""
    from rgbpose.ntu import class_names  # noqa: PLC0415

    state, source_meta, ignored = read_source(args.input)
    check_weights(state, None, args.input)
    num_classes = args.num_classes or head_classes(state)
    if num_classes is None:
        raise BadSampleError(args.input, "no classifier head: pass --num-classes")
    dataset = args.dataset or DATASETS.get(num_classes)
    if dataset is not None and DATASETS.get(num_classes) != dataset:
        size = {v: k for k, v in DATASETS.items()}[dataset]
        raise ValueError(f"--dataset {dataset} has {size} classes, the checkpoint {num_classes}")
    cfg, source, implied = resolve_config(args, state, num_classes)
    check_weights(state, cfg.model.name, args.input)
    model = build_model(cfg.model.name, num_classes, **cfg.model.overrides)
    try:
        converted = import_pyskl(state, model)
    except ValueError as exc:
        raise BadSampleError(args.input, str(exc)) from exc
    meta = model_spec(model)
    meta.update(config=cfg.to_dict(), dataset=dataset, imported_from=str(args.input))
    meta.update(config_source=str(source), config_sets=implied, source_meta=source_meta)
    meta["ignored_entries"] = ignored
    if found := _BENCHMARK.search("/".join(Path(args.input).parts[-2:]).lower()):
        meta["benchmark"] = found[1]
    if dataset is not None:
        meta["class_names"] = list(class_names()[:num_classes])
        meta["trained_labels"] = list(range(num_classes))  # rgbpose.predict.TRAINED_LABELS_KEY
    return converted, meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgbpose import-pyskl",
        description="Convert a published PYSKL/mmaction2 checkpoint (mmcv or mmengine format) "
        "into an rgbpose checkpoint that rgbpose test and rgbpose predict use directly: "
        "RGBPoseConv3D (rgbpose_conv3d, rgb_only, pose_only), PoseC3D SlowOnly, C3D-light and "
        "X3D-shallow joint/limb (posec3d, c3d_light, x3d_shallow), ST-GCN++ 2D COCO-17 / 3D "
        "NTU-25, j/b/jm/bm (stgcnpp). Keys and shapes must match exactly.",
    )
    p.add_argument(
        "input", type=Path,
        help="PYSKL/mmaction2 checkpoint (.pth), e.g. stgcnpp_ntu60_xsub_3dkp/j.pth",
    )  # fmt: skip
    p.add_argument("-o", "--output", type=Path, required=True, help="rgbpose checkpoint to write")
    p.add_argument(
        "--config", type=Path, default=None,
        help="run config to record (default: the model's NTU recipe in config/models/; for "
        "ST-GCN++ weights of 25 joints with model.overrides.layout=ntu25 data.keypoints=3d)",
    )  # fmt: skip
    p.add_argument(
        "--model", default=None, choices=sorted(RECIPES),
        help="default: the --config's, else what the weights, else the file name say (the "
        "stream, e.g. limb or jm, always comes from the file name)",
    )  # fmt: skip
    p.add_argument("--num-classes", type=int, default=None, help="default: the head's")
    p.add_argument(
        "--dataset",
        choices=sorted(set(DATASETS.values())),
        default=None,
        help="label space (default: by class count, 60 -> ntu60, 120 -> ntu120)",
    )
    p.add_argument(
        "--overrides-json",
        default="{}",
        help="build_model overrides as JSON, merged into the config's model.overrides",
    )
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="run-config overrides, as for rgbpose train/test")  # fmt: skip
    return p


def cli(argv: list[str] | None = None) -> int:
    """``rgbpose import-pyskl IN.pth [--config RUN.yaml | --model NAME] -o OUT.pt``."""
    args = build_parser().parse_args(argv)
    try:
        converted, meta = import_checkpoint(args)
    except (BadSampleError, ValueError, FileNotFoundError) as exc:
        from rgbpose.cli import report_error  # noqa: PLC0415

        return report_error("rgbpose import-pyskl", exc)
    _save_checkpoint(converted, meta, args.output)
    ignored = f"; ignored {', '.join(meta['ignored_entries'])}" if meta["ignored_entries"] else ""
    implied = " ".join(f"{k}={v}" for k, v in meta["config_sets"].items())
    print(
        f"rgbpose import-pyskl: {args.output}: {meta['model_name']}, {meta['num_classes']} "
        f"classes ({meta['dataset'] or 'label space unknown'}), run config "
        f"{meta['config_source']}{' with ' + implied if implied else ''}{ignored}"
    )
    return 0
