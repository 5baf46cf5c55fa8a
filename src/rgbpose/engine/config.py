"""Run configuration (``config/models/*.yaml``): frozen dataclasses, strict loading, overrides.

A run config says *how* one model is trained and tested (DESIGN.md 3.8)::

    model:    {name: pose_only, overrides: {in_channels: 17}}   # -> rgbpose.models.build_model
    data:     {modality: pose, sigma: 0.6, ...}                 # -> rgbpose.data PipelineConfig
    optim:    {lr: 0.2, base_batch: 128, weight_decay: 3.0e-4}  # lr is meant for base_batch
    schedule: {kind: cosine, epochs: 18, repeat: 10}
    batch_size: 16          # per process (per GPU)
    test:     {num_clips: 1, flip: false}

Every key is checked when the file is read: an unknown key or a wrong type fails at once with an
error naming the key and the file (``BadSampleError``), never half-way into a training job.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rgbpose.io import BadSampleError

# PipelineConfig fields from the shared contract; used to check ``data:`` keys when the data
# package cannot be imported (the real dataclass is preferred when it is importable).
_CONTRACT_DATA_KEYS = (
    "modality",
    "pose_clip_len",
    "rgb_clip_len",
    "num_clips",
    "rgb_train_size",
    "rgb_test_size",
    "pose_train_size",
    "pose_test_size",
    "sigma",
    "with_kp",
    "with_limb",
    "flip_test",
    "heatmaps_on_device",
    "max_persons",
)

MODEL_NAMES = ("posec3d", "pose_only", "rgb_only", "rgbpose_conv3d")


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
    rate linearly from ``lr / warmup_iters`` up to the scheduled value.
    """

    kind: Literal["cosine", "step"]
    epochs: int
    repeat: int = 1
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0


@dataclass(frozen=True)
class TestConfig:
    """Test-time views: ``num_clips`` temporal clips, doubled by horizontal flip if ``flip``."""

    num_clips: int = 1
    flip: bool = False


@dataclass(frozen=True)
class RunConfig:
    """A whole run config (see module docstring). ``data`` stays a plain dict of PipelineConfig
    fields so this module does not import the data package (it is built lazily by the CLIs)."""

    model: ModelConfig
    optim: OptimConfig
    schedule: ScheduleConfig
    data: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    num_workers: int = 2
    test: TestConfig = field(default_factory=TestConfig)
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    val_interval: int = 1  # validate every N epochs (the last epoch always)
    num_classes: int | None = None  # null: inferred from the annotations (see engine.train)
    time_budget_s: float | None = None

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
    "test": TestConfig,
}
_ENUMS = {
    ("schedule", "kind"): ("cosine", "step"),
    ("", "precision"): ("fp32", "bf16"),
}


def _model_names() -> tuple[str, ...]:
    try:  # the model registry, when the models package is there
        from rgbpose.models import MODELS  # noqa: PLC0415
    except ImportError:
        return MODEL_NAMES
    return tuple(MODELS)


def _data_keys() -> tuple[str, ...]:
    try:  # the real dataclass, when the data package is there
        from rgbpose.data.datasets import PipelineConfig  # noqa: PLC0415
    except ImportError:
        return _CONTRACT_DATA_KEYS
    return tuple(f.name for f in dataclasses.fields(PipelineConfig))


def _check_value(src: str, key: str, value: Any, annotation: str) -> Any:
    """Check ``value`` against a dataclass field annotation (as a string); return it coerced."""
    ann = annotation.replace(" ", "")
    optional = ann.endswith("|None")
    base = ann[: -len("|None")] if optional else ann

    def bad(expected: str) -> BadSampleError:
        return BadSampleError(src, f"key {key!r}: expected {expected}, got {value!r}")

    if value is None:
        if optional:
            return None
        raise bad(base)
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        if not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if base == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if base == "str" or base.startswith("Literal"):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if base.startswith("tuple[int"):
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise bad("a list of integers")
        return tuple(value)
    if base.startswith("dict"):
        if not isinstance(value, dict):
            raise bad("a mapping")
        return dict(value)
    raise AssertionError(f"unhandled annotation {annotation}")  # pragma: no cover


def _build_section(src: str, section: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise BadSampleError(src, f"key {section!r}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{section}.{key}" if section else str(key)
        if key not in fields:
            raise BadSampleError(
                src, f"unknown key {dotted!r} (known in {section or 'top level'}: "
                f"{', '.join(sorted(fields))})",
            )  # fmt: skip
        if section == "" and key in _SECTIONS:
            kwargs[key] = _build_section(src, key, _SECTIONS[key], value)
            continue
        if section == "" and key == "data":
            kwargs[key] = _check_data(src, value)
            continue
        kwargs[key] = _check_value(src, dotted, value, str(fields[key].type))
        allowed = (
            _model_names() if (section, key) == ("model", "name") else _ENUMS.get((section, key))
        )
        if allowed is not None and kwargs[key] not in allowed:
            raise BadSampleError(src, f"key {dotted!r}: {value!r} is not one of {allowed}")
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        where = f"{section}." if section else ""
        raise BadSampleError(
            src, f"missing required key(s): {', '.join(where + m for m in missing)}"
        )
    return cls(**kwargs)


def _check_data(src: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadSampleError(src, f"key 'data': expected a mapping, got {raw!r}")
    known = _data_keys()
    for key in raw:
        if key not in known:
            raise BadSampleError(
                src, f"unknown key 'data.{key}' (known: {', '.join(sorted(known))})"
            )
    return dict(raw)


def _validate(cfg: RunConfig, src: str) -> None:
    """Cross-field and range checks that a type check cannot express."""
    problems = []
    if cfg.optim.lr <= 0:
        problems.append("optim.lr must be > 0")
    if cfg.optim.base_batch < 1:
        problems.append("optim.base_batch must be >= 1")
    if cfg.optim.grad_clip is not None and cfg.optim.grad_clip <= 0:
        problems.append("optim.grad_clip must be > 0 or null")
    if cfg.schedule.epochs < 1:
        problems.append("schedule.epochs must be >= 1")
    if cfg.schedule.repeat < 1:
        problems.append("schedule.repeat must be >= 1")
    if list(cfg.schedule.milestones) != sorted(cfg.schedule.milestones):
        problems.append("schedule.milestones must be increasing")
    if cfg.schedule.warmup_epochs < 0:
        problems.append("schedule.warmup_epochs must be >= 0")
    if cfg.batch_size < 1:
        problems.append("batch_size must be >= 1")
    if cfg.num_workers < 0:
        problems.append("num_workers must be >= 0")
    if cfg.test.num_clips < 1:
        problems.append("test.num_clips must be >= 1")
    if cfg.val_interval < 1:
        problems.append("val_interval must be >= 1")
    if cfg.num_classes is not None and cfg.num_classes < 2:
        problems.append("num_classes must be >= 2")
    if cfg.time_budget_s is not None and cfg.time_budget_s <= 0:
        problems.append("time_budget_s must be > 0")
    if problems:
        raise BadSampleError(src, "; ".join(problems))


def run_config_from_dict(raw: Any, src: str = "<dict>") -> RunConfig:
    """Build and validate a ``RunConfig`` from a nested dict; ``src`` names it in errors."""
    if not isinstance(raw, dict):
        raise BadSampleError(src, f"a run config must be a mapping, got {type(raw).__name__}")
    cfg = _build_section(src, "", RunConfig, raw)
    _validate(cfg, src)
    _validate_data(cfg, src)
    return cfg


def _validate_data(cfg: RunConfig, src: str) -> None:
    """Build the data package's PipelineConfig once so bad values fail now, naming the file."""
    try:
        from rgbpose.data.datasets import PipelineConfig  # noqa: PLC0415
    except ImportError:  # data package absent: keys were checked against the contract list
        return
    try:
        PipelineConfig.from_dict(cfg.data)
    except (ValueError, TypeError) as exc:
        raise BadSampleError(src, f"data: {exc}") from exc


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
                raise BadSampleError(src, f"override {dotted!r}: {where!r} is not a mapping")
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

    Raises ``BadSampleError(path, problem)`` naming the offending key (e.g. a typo
    ``optim.lrr``) or the YAML syntax error.
    """
    src = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BadSampleError(src, f"cannot read run config: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadSampleError(src, f"invalid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BadSampleError(src, "a run config must be a mapping")
    if overrides:
        raw = apply_overrides(raw, overrides, src + " (with --set overrides)")
        src = src + " (with --set overrides)"
    return run_config_from_dict(raw, src)


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
