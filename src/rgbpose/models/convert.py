"""Checkpoint surgery: merge rgb_only + pose_only into an RGBPoseConv3D init; import PYSKL weights.

DESIGN.md 3.7. ``merge_unimodal`` renames the unimodal backbones/heads into the two pathways
and heads of ``rgbpose_conv3d``::

    rgb_only  backbone.*      -> backbone.rgb.*          head.fc.* -> head.rgb.fc.*
    pose_only backbone.*      -> backbone.pose.*         head.fc.* -> head.pose.fc.*
    (fresh init)              -> backbone.rgb_laterals.*, backbone.pose_laterals.*

The eight first-block weights that gain lateral input channels (rgb layer3/layer4 and pose
layer2/layer3: conv1 and downsample conv) are zero-padded on the input-channel axis *after* the
pathway's own channels (the concat order is ``[own, lateral]``), so the merged network computes
exactly the two unimodal networks until training moves those zeros.

``import_pyskl`` maps PYSKL / mmaction2 names (mmcv ``ConvModule`` wraps ``conv`` + ``bn``) to
ours::

    backbone.conv1.conv / .bn                 -> backbone.stem.conv / .bn
    backbone.layerI.J.convK.conv / .bn        -> backbone.layerI.J.convK / .bnK
    backbone.layerI.J.downsample.conv / .bn   -> backbone.layerI.J.downsample.0 / .1
    backbone.rgb_path.* / backbone.pose_path.* -> backbone.rgb.* / backbone.pose.*
    backbone.rgb_path.layerI_lateral.conv     -> backbone.rgb_laterals.layerI.conv
    backbone.pose_path.layerI_lateral.conv/bn -> backbone.pose_laterals.layerI.conv / .bn
    cls_head.fc_cls / fc_rgb / fc_pose        -> head.fc / head.rgb.fc / head.pose.fc

C3D-light and X3D-shallow (``c3d_light``, ``x3d_shallow``) were written with PYSKL's module names,
so only the head is renamed (``backbone.*`` unchanged, ``cls_head.fc_cls`` -> ``head.fc``).
ST-GCN++ (``stgcnpp``; PYSKL ``STGCN`` with ``gcn_adaptive='init'``, ``gcn_with_res=True``,
``tcn_type='mstcn'``; mmaction2 1.x's is the same network)::

    backbone.data_bn.*                        -> backbone.data_bn.*
    backbone.gcn.I.gcn.{A, conv, bn, down}    -> backbone.blocks.I.gcn.{A, conv, bn, down}
    backbone.gcn.I.tcn.branches.B.3.conv.*    -> backbone.blocks.I.tcn.branches.B.3.*
    backbone.gcn.I.tcn.{branches, transform, bn}.* (other) -> backbone.blocks.I.tcn.*
    backbone.gcn.I.residual.conv / .bn        -> backbone.blocks.I.residual.0 / .1
    cls_head.fc_cls (PYSKL) / cls_head.fc (mmaction2 1.x GCNHead) -> head.fc

:data:`PYSKL_KEY_RULES` holds one rule per model; ``import_pyskl`` picks it by the target
model's registered name.  ST-GCN's other PYSKL variants (a ``PA`` importance adjacency, a
single ``unit_tcn``), AAGCN, CTR-GCN, ... have keys no rule maps: they fail the strict check.

Both are strict: every key of the target model is produced exactly once with the right shape,
and every source key is used; otherwise ``ValueError`` lists the offending keys.  The
``rgbpose import-pyskl`` command (reading published files, recording the run config) is
``rgbpose.models.pyskl_import``.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from rgbpose.io import atomic_path, checkpoint_load_problem
from rgbpose.models.init_from import merge_sources
from rgbpose.models.rgbpose import RGBPoseRecognizer

StateDict = dict[str, Tensor]

# Only these buffers may be absent from a source (old checkpoints, 2D->3D inflations); they are
# taken from the target model. Everything else must be present.
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)
_MAX_LISTED = 20


def _fmt_keys(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f" ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{len(keys)}: {shown}{more}"


def _check_and_collect(
    target: Mapping[str, Tensor],
    produced: Mapping[str, list[tuple[str, Tensor]]],
    unmapped: list[str],
    what: str,
    fill: Callable[[str, Tensor, str, Tensor], Tensor | None] | None = None,
) -> StateDict:
    """Assemble the target state dict from ``produced`` (target key -> [(source key, tensor)]).

    ``fill(target_key, target_tensor, source_key, source_tensor)`` may return a tensor of the
    target shape for an allowed shape change (zero-padding); ``None`` means a mismatch.
    """
    missing, duplicated, mismatched = [], [], []
    out: StateDict = {}
    for key, tgt in target.items():
        sources = produced.get(key, [])
        if not sources:
            if key.endswith(_OPTIONAL_SUFFIXES):
                out[key] = tgt.clone()
            else:
                missing.append(key)
            continue
        if len(sources) > 1:
            duplicated.append(f"{key} <- {[s for s, _ in sources]}")
            continue
        src_key, src = sources[0]
        if tuple(src.shape) == tuple(tgt.shape):
            out[key] = src.detach().to(dtype=tgt.dtype).clone()
            continue
        value = fill(key, tgt, src_key, src) if fill is not None else None
        if value is None:
            mismatched.append(f"{key} {tuple(tgt.shape)} <- {src_key} {tuple(src.shape)}")
        else:
            out[key] = value
    unexpected = list(unmapped) + [
        f"{s} -> {k}" for k, srcs in produced.items() if k not in target for s, _ in srcs
    ]
    problems = []
    if missing:
        problems.append(f"missing target keys {_fmt_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected source keys {_fmt_keys(unexpected)}")
    if duplicated:
        problems.append(f"target keys covered more than once {_fmt_keys(duplicated)}")
    if mismatched:
        problems.append(f"shape mismatches {_fmt_keys(mismatched)}")
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))
    return out


def merge_unimodal(
    rgb_state: Mapping[str, Tensor], pose_state: Mapping[str, Tensor], model: nn.Module
) -> StateDict:
    """State dict for ``model`` (an ``rgbpose_conv3d``) from rgb_only and pose_only state dicts.

    Laterals keep ``model``'s current (fresh) weights; see the module docstring for the mapping.
    """
    if not isinstance(model, RGBPoseRecognizer):
        raise ValueError(
            f"merge_unimodal needs an rgbpose_conv3d model, got {type(model).__name__}"
        )
    target = model.state_dict()
    padded = {f"backbone.{k}": v for k, v in model.backbone.padded_weight_keys().items()}
    produced: dict[str, list[tuple[str, Tensor]]] = {}
    unmapped: list[str] = []
    for label, state in (("rgb", rgb_state), ("pose", pose_state)):
        for key, value in state.items():
            if key.startswith("backbone."):
                new = f"backbone.{label}.{key.removeprefix('backbone.')}"
            elif key.startswith("head.fc."):
                new = f"head.{label}.fc.{key.removeprefix('head.fc.')}"
            else:
                unmapped.append(f"{label}:{key}")
                continue
            produced.setdefault(new, []).append((f"{label}:{key}", value))
    for key, value in target.items():
        if key.startswith(("backbone.rgb_laterals.", "backbone.pose_laterals.")):
            produced.setdefault(key, []).append(("<fresh lateral>", value))

    def zero_pad(key: str, tgt: Tensor, src_key: str, src: Tensor) -> Tensor | None:
        extra = padded.get(key)
        expected = (tgt.shape[0], tgt.shape[1] - extra, *tgt.shape[2:]) if extra else None
        if expected is None or tuple(src.shape) != expected:
            return None
        out = torch.zeros_like(tgt)
        out[:, : src.shape[1]] = src.to(dtype=tgt.dtype)
        return out

    return _check_and_collect(
        target,
        produced,
        unmapped,
        "merge_unimodal (rgb_only + pose_only -> rgbpose_conv3d)",
        zero_pad,
    )


# --- PYSKL / mmaction2 names -> ours ------------------------------------------------------------

_RESNET_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"^conv1\.conv\.(weight)$", r"stem.conv.\1"),
        (r"^conv1\.bn\.(\w+)$", r"stem.bn.\1"),
        (r"^(layer\d+\.\d+)\.conv(\d)\.conv\.(weight)$", r"\1.conv\2.\3"),
        (r"^(layer\d+\.\d+)\.conv(\d)\.bn\.(\w+)$", r"\1.bn\2.\3"),
        (r"^(layer\d+\.\d+)\.downsample\.conv\.(weight)$", r"\1.downsample.0.\2"),
        (r"^(layer\d+\.\d+)\.downsample\.bn\.(\w+)$", r"\1.downsample.1.\2"),
    )
)
_LATERAL_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^rgb_path\.layer(\d+)_lateral\.conv\.(weight)$"),
        r"rgb_laterals.layer\1.conv.\2",
    ),
    (
        re.compile(r"^pose_path\.layer(\d+)_lateral\.(conv|bn)\.(\w+)$"),
        r"pose_laterals.layer\1.\2.\3",
    ),
)
_HEAD_UNIMODAL = {"cls_head.fc_cls.": "head.fc."}
_HEAD_RGBPOSE = {"cls_head.fc_rgb.": "head.rgb.fc.", "cls_head.fc_pose.": "head.pose.fc."}


def _map_resnet(key: str) -> str | None:
    for pattern, repl in _RESNET_RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None


def pyskl_key(key: str, rgbpose: bool) -> str | None:
    """Our name for a PYSKL/mmaction2 state-dict key (``None`` if it has no counterpart)."""
    heads = _HEAD_RGBPOSE if rgbpose else _HEAD_UNIMODAL
    for prefix, ours in heads.items():
        if key.startswith(prefix) and key.count(".") == 2:
            return ours + key.removeprefix(prefix)
    if not key.startswith("backbone."):
        return None
    rest = key.removeprefix("backbone.")
    if not rgbpose:
        mapped = _map_resnet(rest)
        return None if mapped is None else f"backbone.{mapped}"
    for pattern, repl in _LATERAL_RULES:
        if pattern.match(rest):
            return "backbone." + pattern.sub(repl, rest)
    for theirs, ours in (("rgb_path.", "rgb."), ("pose_path.", "pose.")):
        if rest.startswith(theirs):
            mapped = _map_resnet(rest.removeprefix(theirs))
            return None if mapped is None else f"backbone.{ours}{mapped}"
    return None


def plain_key(key: str) -> str | None:
    """Our name for a PYSKL key of C3D / X3D (module names as PYSKL's; only the head moves)."""
    if key.startswith("cls_head.fc_cls.") and key.count(".") == 2:
        return "head.fc." + key.removeprefix("cls_head.fc_cls.")
    return key if key.startswith("backbone.") else None


_STGCNPP_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"^data_bn\.(\w+)$", r"data_bn.\1"),
        (r"^gcn\.(\d+)\.gcn\.(A|(?:conv|bn|down\.[01])\.\w+)$", r"blocks.\1.gcn.\2"),
        (r"^gcn\.(\d+)\.tcn\.branches\.(\d+)\.3\.conv\.(\w+)$", r"blocks.\1.tcn.branches.\2.3.\3"),
        (
            r"^gcn\.(\d+)\.tcn\.((?:branches\.\d+(?:\.[01])?|transform\.[02]|bn)\.\w+)$",
            r"blocks.\1.tcn.\2",
        ),
        (r"^gcn\.(\d+)\.residual\.conv\.(\w+)$", r"blocks.\1.residual.0.\2"),
        (r"^gcn\.(\d+)\.residual\.bn\.(\w+)$", r"blocks.\1.residual.1.\2"),
    )
)
#: GCN heads: PYSKL's GCNHead (a SimpleHead: fc_cls) and mmaction2 1.x's (fc)
_HEAD_GCN = ("cls_head.fc_cls.", "cls_head.fc.")


def stgcnpp_key(key: str) -> str | None:
    """Our ``stgcnpp`` name for a PYSKL / mmaction2 ST-GCN++ key (see the module docstring)."""
    for prefix in _HEAD_GCN:
        if key.startswith(prefix) and key.count(".") == 2:
            return "head.fc." + key.removeprefix(prefix)
    rest = key.removeprefix("backbone.")
    if rest == key:
        return None
    for pattern, repl in _STGCNPP_RULES:
        if pattern.match(rest):
            return "backbone." + pattern.sub(repl, rest)
    return None


#: the unimodal ResNet3d models: one family of checkpoints (same names, shapes differ)
RESNET3D_UNIMODAL = ("posec3d", "pose_only", "rgb_only")
#: our model name -> its key rule (PYSKL / mmaction2 key -> ours; None: no counterpart)
PYSKL_KEY_RULES: dict[str, Callable[[str], str | None]] = {
    "rgbpose_conv3d": partial(pyskl_key, rgbpose=True),
    **dict.fromkeys(RESNET3D_UNIMODAL, partial(pyskl_key, rgbpose=False)),
    "c3d_light": plain_key,
    "x3d_shallow": plain_key,
    "stgcnpp": stgcnpp_key,
}


def pyskl_model_name(model: nn.Module) -> str:
    """The registered name whose rule ``import_pyskl`` applies to ``model`` (its ``spec``;
    without one, ``rgbpose_conv3d`` or a ResNet3d unimodal model by type)."""
    spec = getattr(model, "spec", None)
    if isinstance(spec, Mapping) and isinstance(spec.get("model_name"), str):
        return spec["model_name"]
    return "rgbpose_conv3d" if isinstance(model, RGBPoseRecognizer) else "posec3d"


def import_pyskl(state_dict: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """Convert a PYSKL/mmaction2 state dict to ``model``'s names with the rule of its model
    (:data:`PYSKL_KEY_RULES`); ``ValueError`` naming the keys on any mismatch."""
    name = pyskl_model_name(model)
    rule = PYSKL_KEY_RULES.get(name)
    if rule is None:
        raise ValueError(
            f"import_pyskl: no PYSKL key rules for model {name!r} "
            f"(supported: {', '.join(sorted(PYSKL_KEY_RULES))})"
        )
    produced: dict[str, list[tuple[str, Tensor]]] = {}
    unmapped: list[str] = []
    for key, value in state_dict.items():
        # DDP-wrapped saves prefix every key with "module."; the names are otherwise the same.
        new = rule(key.removeprefix("module."))
        if new is None:
            unmapped.append(key)
        else:
            produced.setdefault(new, []).append((key, value))
    return _check_and_collect(
        model.state_dict(), produced, unmapped, f"import_pyskl (PYSKL -> {name})"
    )


# --- command lines ------------------------------------------------------------------------------


def _load_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)``; explain what to do when a checkpoint needs more."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is long; its "WeightsUnpickler error:" line says what broke.
        found = re.search(r"WeightsUnpickler error: ([^\n]*)", str(exc))
        detail = found.group(1).strip() if found else str(exc).strip()
        if "Unsupported global" not in detail:
            raise ValueError(f"{path}: not a readable torch checkpoint ({detail})") from exc
        raise ValueError(
            f"{path}: {checkpoint_load_problem(exc)}. PYSKL/mmcv checkpoints often carry a "
            "'meta' or optimizer entry with such objects: save the file's 'state_dict' alone "
            "(tensors only) with a tool you trust, and import that file."
        ) from exc
    except (RuntimeError, EOFError) as exc:  # truncated / not a torch file
        raise ValueError(f"{path}: not a readable torch checkpoint ({exc})") from exc


def _state_and_meta(obj: Any, path: Path, key: str) -> tuple[StateDict, dict[str, Any]]:
    if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
        meta = obj.get("meta")
        return dict(obj[key]), dict(meta) if isinstance(meta, Mapping) else {}
    if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        return dict(obj), {}  # a bare state dict
    raise ValueError(f"{path}: expected a checkpoint dict with a {key!r} state dict")


def _save_checkpoint(state: StateDict, meta: dict[str, Any], out: Path) -> None:
    with atomic_path(out) as tmp:
        torch.save({"model": state, "meta": meta}, tmp)


def _source(path: Path, expected: str | None = None) -> dict[str, Any]:
    """A checkpoint as an init_from source; ``expected``: the model name it must hold."""
    state, meta = _state_and_meta(_load_torch(path), path, "model")
    if expected is not None:
        if meta.get("model_name") not in (None, expected):
            flag = expected.removesuffix("_only")
            raise ValueError(
                f"{path}: is a {meta['model_name']!r} checkpoint, --{flag} needs {expected!r}"
            )
        meta.setdefault("model_name", expected)  # a bare state dict: as the flag says
    return {"state": state, "meta": meta, "path": str(path)}


def merge_checkpoints(
    rgb_path: Path,
    pose_path: Path,
    overrides: Mapping[str, Any],
    num_classes: int | None = None,
    seed: int = 0,
) -> tuple[StateDict, dict[str, Any]]:
    """Merge an ``rgb_only`` and a ``pose_only`` checkpoint for ``rgbpose_conv3d(**overrides)``
    (``num_classes`` defaults to the checkpoints', which must agree). Returns (state, meta)."""
    sources = {"rgb": _source(rgb_path, "rgb_only"), "pose": _source(pose_path, "pose_only")}
    return merge_sources(sources, "rgbpose_conv3d", overrides, num_classes, seed)


def _model_section(
    config_path: Path, sets: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """(model.name, model.overrides) of a run config with its ``--set`` overrides (only the
    ``model:`` section is read)."""
    with open(config_path) as fh:
        cfg = yaml.safe_load(fh) or {}
    if sets and isinstance(cfg, dict):
        from rgbpose.engine.config import apply_overrides  # noqa: PLC0415

        cfg = apply_overrides(cfg, sets, str(config_path))
    section = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("name"), str):
        raise ValueError(f"{config_path}: no 'model:' mapping with a name")
    if isinstance(cfg.get("imports"), list):
        from rgbpose.models.registry import import_plugins  # noqa: PLC0415

        import_plugins(cfg["imports"], config_path.parent)
    overrides = section.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"{config_path}: model.overrides must be a mapping")
    return section["name"], overrides


def cli_merge(argv: list[str]) -> int:
    """``rgbpose merge --from STREAM=CKPT ... --config RUN.yaml -o INIT.pt`` (or ``--rgb``
    / ``--pose`` for RGBPoseConv3D)."""
    parser = argparse.ArgumentParser(
        prog="rgbpose merge",
        description="Build a stream's initialisation from the checkpoints of its init_from "
        "streams, with the merge its model registers (RGBPoseConv3D: an RGB and a pose stream).",
    )
    parser.add_argument(
        "--from", dest="sources", nargs="+", default=[], metavar="STREAM=CKPT",
        help="the init_from streams' checkpoints, e.g. rgb_only=a.pt pose_only=b.pt",
    )  # fmt: skip
    parser.add_argument("--rgb", type=Path, default=None, help="rgb_only checkpoint (.pt)")
    parser.add_argument("--pose", type=Path, default=None, help="pose_only checkpoint (.pt)")
    parser.add_argument("--config", type=Path, required=True, help="the stream's run YAML")
    parser.add_argument("-o", "--output", type=Path, required=True, help="merged checkpoint")
    parser.add_argument("--num-classes", type=int, default=None, help="default: the inputs'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh init")
    parser.add_argument("--set", dest="sets", nargs="*", default=[], metavar="KEY=VALUE",
                        help="run-config overrides, as rgbpose train --set")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        from rgbpose.engine.config import parse_set_args  # noqa: PLC0415

        name, overrides = _model_section(args.config, parse_set_args(args.sets))
        sources = {}
        for item in args.sources:
            stream, sep, path = item.partition("=")
            if not sep or not stream or not path:
                raise ValueError(f"--from expects STREAM=CKPT, got {item!r}")
            sources[stream] = _source(Path(path))
        for label, path in (("rgb", args.rgb), ("pose", args.pose)):
            if path is not None:
                sources[label] = _source(path, f"{label}_only")
        merged, meta = merge_sources(sources, name, overrides, args.num_classes, args.seed)
    except (ValueError, FileNotFoundError) as exc:
        from rgbpose.cli import report_error  # noqa: PLC0415

        return report_error("rgbpose merge", exc)
    _save_checkpoint(merged, meta, args.output)
    return 0
