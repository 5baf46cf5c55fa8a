"""The model registry: every model file registers its builders here, with an input contract.

A model is registered where it is defined::

    @register_model(contract=Contract(inputs=(ModelInput("heatmap_imgs", "C,T,H,W", 17),)))
    def my_model(num_classes: int, dropout: float = 0.5) -> nn.Module: ...

The *contract* says what the model eats and what it returns, so the engine and the workflow need
no per-model code:

* ``inputs``: the batch keys it is called with (``model(**{key: tensor})``; tensors are one
  view each, ``[N, *shape]``), their channel counts, and their temporal ratios (an input with
  ``time_ratio`` r takes r frames per frame of a ratio-1 input: RGBPoseConv3D's pose pathway has
  ``speed_ratio`` 4);
* ``heads``: the names of its score heads (one head: the model's own name; RGBPoseConv3D:
  ``rgb`` and ``pose``).

A contract may depend on the build overrides (``in_channels``, ``speed_ratio``): pass a function
``contract(overrides) -> Contract`` instead of a constant.  ``merge``, when given, builds this
model's initialisation from the checkpoints of the streams named in its ``init_from`` (see
:func:`rgbpose.models.init_from.merge_sources`).

A model outside the package registers the same way from its own module; a run config lists that
module under ``imports:`` so every process that reads the config (planning, train, test,
predict) imports it first (see :func:`import_plugins`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelInput:
    """One named input of a model.

    ``key``: the batch key (``imgs`` RGB, ``heatmap_imgs`` pose heatmaps, ``keypoint``, ...);
    ``shape``: its per-view layout, for humans (``C,T,H,W``); ``channels``: C (None: any);
    ``channels_key``: the dotted config key that sets C (named by the cross-checks);
    ``time_ratio``: frames per frame of a ratio-1 input; ``ratio_key``: the key that sets it.
    """

    key: str
    shape: str
    channels: int | None = None
    channels_key: str | None = None
    time_ratio: int = 1
    ratio_key: str | None = None


@dataclass(frozen=True)
class Contract:
    """What a model takes (named inputs) and returns (named heads; empty: one head)."""

    inputs: tuple[ModelInput, ...]
    heads: tuple[str, ...] = ()

    @property
    def input_keys(self) -> tuple[str, ...]:
        return tuple(i.key for i in self.inputs)


MergeFn = Callable[[Mapping[str, Any], nn.Module], dict[str, Any]]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder, its contract and its optional ``init_from`` merge."""

    name: str
    builder: Callable[..., nn.Module]
    contract_of: Callable[[Mapping[str, Any]], Contract]
    merge: MergeFn | None = None
    module: str = field(default="")

    def contract(self, overrides: Mapping[str, Any] | None = None) -> Contract:
        """The contract of this model built with ``overrides`` (heads default to the name)."""
        c = self.contract_of(dict(overrides or {}))
        return c if c.heads else Contract(c.inputs, (self.name,))


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str | None = None,
    *,
    contract: Contract | Callable[[Mapping[str, Any]], Contract],
    merge: MergeFn | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(num_classes, **overrides)`` under ``name`` (default: the
    function's name).  Registering a taken name from another function raises ``ValueError``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        old = _REGISTRY.get(key)
        same = old is not None and (old.module, old.builder.__qualname__) == (
            builder.__module__, builder.__qualname__,
        )  # fmt: skip
        if old is not None and not same:
            raise ValueError(
                f"model {key!r} is already registered by {old.module}.{old.builder.__qualname__}"
            )
        fn = contract if callable(contract) else (lambda _overrides, c=contract: c)
        _REGISTRY[key] = ModelEntry(key, builder, fn, merge, builder.__module__)
        return builder

    return decorate


def registry() -> dict[str, ModelEntry]:
    """Name -> entry of every registered model (the package's own models are imported first)."""
    import rgbpose.models  # noqa: F401, PLC0415 - registers the built-in models

    return dict(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    entries = registry()
    if name not in entries:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(entries)}")
    return entries[name]


def import_plugins(items: Sequence[str], base: str | Path | None = None) -> None:
    """Import the modules a run config lists under ``imports:`` (they register models or data
    pipelines).  An item ending in ``.py`` is a file path (relative to ``base``, else the
    working directory); any other item is a dotted module name.  Errors name the item."""
    for item in items:
        if item.endswith(".py"):
            path = Path(item)
            if not path.is_absolute() and base is not None and not path.exists():
                path = Path(base) / path
            path = path.resolve()
            mod_name = "rgbpose_plugin_" + path.stem
            existing = sys.modules.get(mod_name)
            if existing is not None and getattr(existing, "__file__", None) == str(path):
                continue
            if not path.is_file():
                raise ValueError(f"imports: {item!r}: no such file")
            spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception:
                del sys.modules[mod_name]
                raise
        else:
            try:
                importlib.import_module(item)
            except ImportError as exc:
                raise ValueError(f"imports: cannot import {item!r}: {exc}") from exc
