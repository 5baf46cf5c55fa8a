"""``rgbpose import-pyskl``: published PYSKL / mmaction2 weights as a checkpoint that ``rgbpose
test`` and ``rgbpose predict`` use directly.

::

    rgbpose import-pyskl rgbpose_conv3d_20230301-ac7b0e77.pth -o ntu60_rgbpose.pt
    rgbpose predict clip.avi --checkpoint ntu60_rgbpose.pt

The input is a PYSKL (mmcv) or mmaction2 1.x (mmengine) checkpoint, or a bare state dict.
mmengine's files also hold a ``message_hub`` of mmengine objects: they are read without mmengine
and without running any of its code (``rgbpose.safe_unpickle``); only the ``state_dict`` tensors
and the plain values of ``meta`` are kept (the latter as ``source_meta``).

Which model and run config: ``--config RUN.yaml`` names them; without it the model is
``--model``, else the published file's name says it (below), else the weights (a
``rgb_path`` means ``rgbpose_conv3d``, 3 input channels ``rgb_only``), and the run config is
that model's NTU recipe under ``config/models/``:

* ``rgbpose_conv3d.pth``, ``rgbpose_conv3d_init.pth``; ``rgbpose_conv3d_20230301-ac7b0e77.pth``:
  ``rgbpose_conv3d``, ``ntu_rgbpose_conv3d.yaml``;
* ``rgb_only.pth``; ``rgb_only_20230228-576b9f86.pth``: ``rgb_only``, ``ntu_rgb_only.yaml``;
* ``pose_only.pth``; ``pose_only_20230228-fa40054e.pth``: ``pose_only``, ``ntu_pose_only.yaml``;
* ``joint.pth``; ``slowonly_r50_8xb16-u48-240e_ntu60-xsub-keypoint_20220815-38db104b.pth``:
  ``posec3d``, ``ntu_posec3d.yaml``;
* ``limb.pth``; ``slowonly_r50_8xb16-u48-240e_ntu60-xsub-limb_20220815-af2f119a.pth``:
  ``posec3d``, ``ntu_posec3d_limb.yaml``.

The class count comes from the head's weights unless ``--num-classes`` says it; 60 and 120 are
NTU RGB+D 60 / 120 (``--dataset``).  The written checkpoint's ``meta`` holds the model spec,
the resolved run config (``config``, with ``--overrides-json`` merged into ``model.overrides``
and ``--set`` applied), ``dataset``, ``benchmark`` (``xsub`` / ``xview`` / ``xset`` when the
file's name or folder says it), ``class_names``, ``trained_labels`` (all classes),
``imported_from``, ``config_source``, ``source_meta`` and ``ignored_entries`` (the file's
``message_hub``, ``optimizer``, ...; mmaction2's RGB mean/std buffers, checked against ours).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rgbpose.io import BadSampleError
from rgbpose.models import build_model, model_spec
from rgbpose.models.convert import _save_checkpoint, import_pyskl
from rgbpose.safe_unpickle import load_checkpoint_restricted, plain_metadata

#: model name -> its NTU recipe under config/models/
RECIPES = {
    "rgbpose_conv3d": "ntu_rgbpose_conv3d.yaml",
    "rgb_only": "ntu_rgb_only.yaml",
    "pose_only": "ntu_pose_only.yaml",
    "posec3d": "ntu_posec3d.yaml",
}
#: (file-name pattern, model, recipe) of the published PYSKL and mmaction2 1.x checkpoints
PUBLISHED_NAMES = tuple(
    (re.compile(pattern), model, recipe)
    for pattern, model, recipe in (
        (r"^rgbpose_conv3d", "rgbpose_conv3d", "ntu_rgbpose_conv3d.yaml"),
        (r"^rgb_only", "rgb_only", "ntu_rgb_only.yaml"),
        (r"^pose_only", "pose_only", "ntu_pose_only.yaml"),
        (r"(^|[-_])limb([-_.]|$)", "posec3d", "ntu_posec3d_limb.yaml"),
        (r"(^|[-_])(joint|keypoint)([-_.]|$)", "posec3d", "ntu_posec3d.yaml"),
    )
)
#: head size -> the NTU label space it stands for
DATASETS = {60: "ntu60", 120: "ntu120"}
_BENCHMARK = re.compile(r"(?<![a-z])(xsub|xview|xset)(?![a-z])")
_HEAD_WEIGHTS = ("cls_head.fc_cls.weight", "cls_head.fc_rgb.weight", "cls_head.fc_pose.weight")


def recipe_dir() -> Path:
    """``config/models`` of this source tree, else of the working directory."""
    here = Path(__file__).resolve().parents[3] / "config" / "models"
    return here if here.is_dir() else Path("config") / "models"


def published_model(path: str | Path) -> tuple[str, str] | None:
    """(model, recipe file) a published checkpoint's file name stands for, else None."""
    name = Path(path).name.lower()
    for pattern, model, recipe in PUBLISHED_NAMES:
        if pattern.search(name):
            return model, recipe
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


def model_from_weights(state: Mapping[str, Tensor]) -> str | None:
    """The model the weights alone identify (``pose_only`` and ``posec3d`` look the same)."""
    keys = [k.removeprefix("module.") for k in state]
    if any(k.startswith("backbone.rgb_path.") for k in keys):
        return "rgbpose_conv3d"
    stem = state.get("backbone.conv1.conv.weight", state.get("module.backbone.conv1.conv.weight"))
    return "rgb_only" if stem is not None and stem.ndim == 5 and stem.shape[1] == 3 else None


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
) -> tuple[Any, Path]:
    """(RunConfig, its source) for the import: ``--config``, else the model's NTU recipe;
    ``--set`` and ``--overrides-json`` applied, ``num_classes`` recorded."""
    from rgbpose.engine.config import (  # noqa: PLC0415
        load_run_config,
        parse_set_args,
        run_config_from_dict,
    )

    if args.config is not None:
        source = args.config
    else:
        hint = published_model(args.input)
        name = args.model or (hint[0] if hint else None) or model_from_weights(state)
        if name is None:
            raise BadSampleError(
                args.input,
                "neither its file name nor its weights say which model it holds (pose_only and "
                "posec3d have the same weights): pass --model or --config",
            )
        if name not in RECIPES:
            raise ValueError(f"no NTU recipe for model {name!r}: pass --config")
        source = recipe_dir() / (hint[1] if hint and hint[0] == name else RECIPES[name])
    cfg = load_run_config(source, parse_set_args(args.overrides))
    if args.model is not None and args.model != cfg.model.name:
        raise ValueError(f"--model {args.model} but {source} configures {cfg.model.name!r}")
    extra = json.loads(args.overrides_json)
    if not isinstance(extra, dict):
        raise ValueError(f"--overrides-json must be a JSON object, got {args.overrides_json}")
    raw = cfg.to_dict()
    raw["model"]["overrides"] = _deep_merge(raw["model"]["overrides"], extra)
    raw["num_classes"] = num_classes
    return run_config_from_dict(raw, f"{source} (as imported)"), source


def import_checkpoint(args: argparse.Namespace) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict, meta) of the rgbpose checkpoint ``args`` describe (see the module doc)."""
    from rgbpose.ntu import class_names  # noqa: PLC0415

    state, source_meta, ignored = read_source(args.input)
    num_classes = args.num_classes or head_classes(state)
    if num_classes is None:
        raise BadSampleError(args.input, "no classifier head: pass --num-classes")
    dataset = args.dataset or DATASETS.get(num_classes)
    if dataset is not None and DATASETS.get(num_classes) != dataset:
        size = {v: k for k, v in DATASETS.items()}[dataset]
        raise ValueError(f"--dataset {dataset} has {size} classes, the checkpoint {num_classes}")
    cfg, source = resolve_config(args, state, num_classes)
    model = build_model(cfg.model.name, num_classes, **cfg.model.overrides)
    converted = import_pyskl(state, model)
    meta = model_spec(model)
    meta.update(config=cfg.to_dict(), dataset=dataset, imported_from=str(args.input))
    meta.update(config_source=str(source), source_meta=source_meta, ignored_entries=ignored)
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
        "into an rgbpose checkpoint that rgbpose test and rgbpose predict use directly.",
    )
    p.add_argument("input", type=Path, help="PYSKL/mmaction2 checkpoint (.pth)")
    p.add_argument("-o", "--output", type=Path, required=True, help="rgbpose checkpoint to write")
    p.add_argument(
        "--config", type=Path, default=None,
        help="run config to record (default: the model's NTU recipe in config/models/)",
    )  # fmt: skip
    p.add_argument(
        "--model", default=None, choices=sorted(RECIPES),
        help="default: the --config's, else what the file name or the weights say",
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
    print(
        f"rgbpose import-pyskl: {args.output}: {meta['model_name']}, {meta['num_classes']} "
        f"classes ({meta['dataset'] or 'label space unknown'}), run config "
        f"{meta['config_source']}{ignored}"
    )
    return 0
