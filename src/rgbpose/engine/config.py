"""Run configuration (``config/models/*.yaml``): frozen dataclasses, strict loading, overrides.

A run config says *how* one model is trained and tested (DESIGN.md 3.8)::

    model:    {name: pose_only, overrides: {in_channels: 17}}   # -> rgbpose.models.build_model
    data:     {modality: pose, sigma: 0.6, ...}                 # -> rgbpose.data PipelineConfig
    optim:    {lr: 0.2, base_batch: 128, weight_decay: 3.0e-4}  # lr is meant for base_batch
    schedule: {kind: cosine, epochs: 18, repeat: 10}
    batch_size: 16          # per process (per GPU)
    test:     {num_clips: 1, flip: false}

    imports:  [my_models.py]  # optional: modules that register plug-in models / pipelines

Every key is checked when the file is read, against the dataclass types: an unknown key or a
wrong type fails at once with a ``ConfigError`` naming the key and the file, never half-way
into a training job.  ``data:`` is parsed by the config class of the pipeline registered for
``data.modality`` (``rgbpose.data.config``).  The model is then cross-checked against the data
(:func:`check_model_data`): the pipeline must produce every input of the model's contract, with
the channel counts and frame ratios the model expects.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from rgbpose.data.config import PipelineConfig, TestViews, pipeline_entry
from rgbpose.io import ConfigError

#: the test views (``test:`` section): defined once, in the data package
TestConfig = TestViews


@dataclass(frozen=True)
class ModelConfig:
    """Which network: ``build_model(name, num_classes, **overrides)``."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """SGD settings; ``lr`` is the rate for a total batch of ``base_batch`` clips.

    The learning rate actually used is ``lr * batch_size * world_size / base_batch`` (the linear
    scaling rule the PYSKL recipes are quoted with: 8 GPUs, DESIGN.md 3.8).
    """

    lr: float
    base_batch: int
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    grad_clip: float | None = 40.0  # max global L2 norm of the gradients; null = no clipping


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, applied per iteration.

    One epoch is ``repeat`` passes over the training split (PYSKL's ``RepeatDataset(times=...)``:
    the 18/24 "epochs" of the recipes are each 10 passes). ``milestones`` are epochs at which a
    step schedule multiplies the rate by ``gamma``. ``warmup_epochs`` (may be fractional) ramps the
    rate linearly from ``lr / warmup_iters`` up to the scheduled value. ``min_lr``: the rate a
    cosine schedule ends at (absolute, not scaled with the batch).
    """

    kind: Literal["cosine", "step"]
    epochs: int
    repeat: int = 1
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0


@dataclass(frozen=True)
class RunConfig:
    """A whole run config (see module docstring); ``data`` is the typed config of the data
    pipeline (:class:`rgbpose.data.config.PipelineConfig` for the built-in modalities)."""

    model: ModelConfig
    optim: OptimConfig
    schedule: ScheduleConfig
    data: Any = field(default_factory=PipelineConfig)
    batch_size: int = 8
    num_workers: int = 2
    test: TestViews = field(default_factory=TestViews)
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    #: torch.compile mode: default | reduce-overhead (CUDA graphs) | max-autotune[-no-cudagraphs]
    compile_mode: Literal[
        "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    ] = "default"
    #: batches each DataLoader worker keeps ready (PyTorch's prefetch_factor)
    prefetch_factor: int = 2
    seed: int = 0
    val_interval: int = 1  # validate every N epochs (the last epoch always)
    num_classes: int | None = None  # null: inferred from the annotations (see engine.train)
    time_budget_s: float | None = None
    imports: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, no tuples) that ``load_run_config`` reads back unchanged."""
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- validation
_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "test": TestViews,
}
#: keys that moved: a hint instead of a bare "unknown key"
_MOVED = {
    "data.num_clips": "test views are set once, in test.num_clips",
    "data.flip_test": "test views are set once, in test.flip",
}


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return "a list of " + (
            "numbers" if float in args else "integers" if int in args else "strings"
        )
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " or null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, "a mapping" if origin is dict or tp is dict else str(tp)
    )


def _check_value(src: str, key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the type ``tp`` of a dataclass field (lists become tuples)."""

    def bad() -> ConfigError:
        return ConfigError(src, f"key {key!r}: expected {_describe(tp)}, got {value!r}", key)

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_value(src, key, value, arg)
            except ConfigError:
                continue
        raise bad()
    if origin is Literal:
        if value not in args:
            raise ConfigError(src, f"key {key!r}: {value!r} is not {_describe(tp)}", key)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise bad()
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise ConfigError(src, f"key {key!r}: expected {len(items)} values, got {value!r}", key)
        return tuple(_check_value(src, key, v, t) for v, t in zip(value, items))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise bad()
        return dict(value)
    raise AssertionError(f"unhandled field type {tp!r}")  # pragma: no cover


def _build_section(src: str, section: str, cls: type, raw: Any) -> Any:
    """``cls(**raw)`` with every key and value checked; ``section`` prefixes the key names."""
    if not isinstance(raw, dict):
        raise ConfigError(src, f"key {section!r}: expected a mapping, got {raw!r}", section)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{section}.{key}" if section else str(key)
        if key not in fields:
            hint = _MOVED.get(dotted) or (
                f"known in {section or 'top level'}: {', '.join(sorted(fields))}"
            )
            raise ConfigError(src, f"unknown key {dotted!r} ({hint})", dotted)
        if section == "" and key in _SECTIONS:
            kwargs[key] = _build_section(src, key, _SECTIONS[key], value)
        elif section == "" and key == "data":
            kwargs[key] = _build_data(src, value)
        else:
            kwargs[key] = _check_value(src, dotted, value, hints[key])
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        where = f"{section}." if section else ""
        raise ConfigError(
            src, f"missing required key(s): {', '.join(where + m for m in missing)}",
            where + missing[0],
        )  # fmt: skip
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(src, f"{section or 'config'}: {exc}", section or None) from exc


def _build_data(src: str, raw: Any) -> Any:
    """The ``data:`` section, parsed by the config class of its modality's pipeline."""
    if not isinstance(raw, dict):
        raise ConfigError(src, f"key 'data': expected a mapping, got {raw!r}", "data")
    modality = raw.get("modality", PipelineConfig.modality)
    try:
        entry = pipeline_entry(modality)
    except ValueError as exc:
        raise ConfigError(src, f"key 'data.modality': {exc}", "data.modality") from None
    return _build_section(src, "data", entry.config_cls, raw)


def _validate(cfg: RunConfig, src: str) -> None:
    """Cross-field and range checks that a type check cannot express."""
    checks = (
        (cfg.optim.lr <= 0, "optim.lr", "must be > 0"),
        (cfg.optim.base_batch < 1, "optim.base_batch", "must be >= 1"),
        (cfg.optim.grad_clip is not None and cfg.optim.grad_clip <= 0, "optim.grad_clip",
         "must be > 0 or null"),
        (cfg.schedule.epochs < 1, "schedule.epochs", "must be >= 1"),
        (cfg.schedule.repeat < 1, "schedule.repeat", "must be >= 1"),
        (list(cfg.schedule.milestones) != sorted(cfg.schedule.milestones),
         "schedule.milestones", "must be increasing"),
        (cfg.schedule.warmup_epochs < 0, "schedule.warmup_epochs", "must be >= 0"),
        (cfg.batch_size < 1, "batch_size", "must be >= 1"),
        (cfg.num_workers < 0, "num_workers", "must be >= 0"),
        (cfg.test.num_clips < 1, "test.num_clips", "must be >= 1"),
        (cfg.val_interval < 1, "val_interval", "must be >= 1"),
        (cfg.prefetch_factor < 1, "prefetch_factor", "must be >= 1"),
        (cfg.num_classes is not None and cfg.num_classes < 2, "num_classes", "must be >= 2"),
        (cfg.time_budget_s is not None and cfg.time_budget_s <= 0, "time_budget_s",
         "must be > 0"),
    )  # fmt: skip
    problems = [(key, f"{key} {text}") for failed, key, text in checks if failed]
    if problems:
        raise ConfigError(src, "; ".join(p for _, p in problems), problems[0][0])


def check_model_data(cfg: RunConfig, src: str, layout: Any = None) -> None:
    """Cross-check the model's input contract against what the data pipeline produces.

    The pipeline must produce every input the model takes (else ``data.modality`` is named),
    with the channel count the model expects (``in_channels`` vs the pose layout's joints /
    limbs; the layout is ``data.layout``, else ``layout``, else unknown and not checked), and
    the clip lengths must follow the model's temporal ratios (RGBPoseConv3D:
    ``rgb_clip_len x speed_ratio == pose_clip_len``).  Raises ``ConfigError`` naming the key.
    """
    from rgbpose.models.registry import get_entry  # noqa: PLC0415 - imports torch

    contract = get_entry(cfg.model.name).contract(cfg.model.overrides)
    outputs_of = getattr(cfg.data, "outputs", None)
    if outputs_of is None:  # a plug-in pipeline that declares no outputs
        return
    outputs = {o.key: o for o in outputs_of(layout)}
    missing = [i.key for i in contract.inputs if i.key not in outputs]
    if missing:
        raise ConfigError(
            src,
            f"key 'data.modality': model {cfg.model.name!r} takes {list(contract.input_keys)} "
            f"but modality {cfg.data.modality!r} gives {sorted(outputs)}",
            "data.modality",
        )
    for inp in contract.inputs:
        out = outputs[inp.key]
        if None not in (inp.channels, out.channels) and inp.channels != out.channels:
            key = inp.channels_key or "model.overrides"
            raise ConfigError(
                src,
                f"key {key!r}: model {cfg.model.name!r} takes {inp.channels} channels of "
                f"{inp.key!r}, the data gives {out.channels} ({out.channels_from})",
                key,
            )
    ref = next((i for i in contract.inputs if i.time_ratio == 1), None)
    for inp in contract.inputs:
        if ref is None or inp is ref:
            continue
        base, out = outputs[ref.key], outputs[inp.key]
        if base.clip_len * inp.time_ratio != out.clip_len:
            key = inp.ratio_key or out.clip_len_key
            raise ConfigError(
                src,
                f"key {key!r}: {base.clip_len_key} {base.clip_len} x ratio {inp.time_ratio} "
                f"= {base.clip_len * inp.time_ratio} frames of {inp.key!r}, but "
                f"{out.clip_len_key} is {out.clip_len}",
                key,
            )


def run_config_from_dict(
    raw: Any, src: str = "<dict>", base: str | os.PathLike | None = None
) -> RunConfig:
    """Build and validate a ``RunConfig`` from a nested dict; ``src`` names it in errors.

    ``imports:`` are imported first (paths relative to the working directory, else ``base``).
    """
    if not isinstance(raw, dict):
        raise ConfigError(src, f"a run config must be a mapping, got {type(raw).__name__}")
    imports = raw.get("imports") or []
    if isinstance(imports, list | tuple) and all(isinstance(i, str) for i in imports):
        from rgbpose.models.registry import import_plugins  # noqa: PLC0415

        try:
            import_plugins(imports, base)
        except ValueError as exc:
            raise ConfigError(src, str(exc), "imports") from exc
    cfg = _build_section(src, "", RunConfig, raw)
    from rgbpose.models.registry import registry  # noqa: PLC0415

    known = registry()
    if cfg.model.name not in known:
        raise ConfigError(
            src, f"key 'model.name': {cfg.model.name!r} is not one of {sorted(known)}",
            "model.name",
        )  # fmt: skip
    _validate(cfg, src)
    check_model_data(cfg, src)
    return cfg


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], src: str) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted keys set (``{'optim.lr': 0.1}``).

    Keys are checked like file keys: ``optim.lrr`` fails naming the key. ``model.overrides.X``
    and ``data.X`` may create new entries (they are checked against their own key lists later).
    """
    out = _deepcopy(raw)
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(src, f"override {dotted!r}: {where!r} is not a mapping", dotted)
            node = child
        node[parts[-1]] = value
    return out


def _deepcopy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deepcopy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deepcopy(v) for v in obj]
    return obj


def load_run_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a run-config YAML, apply dotted ``overrides`` and validate every key and type.

    Raises ``ConfigError(path, problem)`` naming the offending key (e.g. a typo
    ``optim.lrr``) or the YAML syntax error.
    """
    src = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(src, f"cannot read run config: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(src, f"invalid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(src, "a run config must be a mapping")
    if overrides:
        raw = apply_overrides(raw, overrides, src + " (with --set overrides)")
        src = src + " (with --set overrides)"
    return run_config_from_dict(raw, src, Path(path).parent)


def parse_set_args(items: list[str] | None) -> dict[str, Any]:
    """Parse CLI ``--set key=value`` items; values are YAML (``0.1``, ``true``, ``[12, 16]``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def dump_run_config(cfg: RunConfig) -> str:
    """YAML text of the resolved config (what ``load_run_config`` reads back to ``cfg``)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
