"""Read torch checkpoints that hold OpenMMLab objects, without OpenMMLab and without running them.

A checkpoint saved by mmengine (mmaction2 1.x) carries, next to its ``state_dict``, a
``message_hub`` whose log scalars are ``mmengine.logging.history_buffer.HistoryBuffer`` objects
(and their statistics functions); ``torch.load(weights_only=True)`` refuses such a file, and a
plain ``pickle`` load would import mmengine and run its code.  :func:`load_checkpoint_restricted`
reads it with its own unpickler (``torch.load(..., pickle_module=this module)``):

* every global of the OpenMMLab packages (``mmengine``, ``mmcv``, ``mmaction``, ``pyskl``)
  becomes an inert :class:`Placeholder` class named after it: nothing is imported and none of
  their code runs (calling, instantiating, ``__setstate__``, items and attributes are only
  recorded; ``getattr`` on a placeholder gives another placeholder);
* tensors are rebuilt with torch's own rebuild functions, numpy arrays and scalars with numpy's,
  and only plain containers (``OrderedDict``, ``set``, ``slice``, ...) besides;
* every other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) is refused,
  and so is any call, ``NEWOBJ`` or ``BUILD`` on an object outside those lists.

:func:`plain_metadata` then keeps what a caller may store: numbers, strings and plain
containers of them (placeholders and arrays are dropped).
"""

from __future__ import annotations

import _compat_pickle
import importlib
import os
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from rgbpose.io import _ALLOWED_GLOBALS, BadSampleError

#: top-level packages whose globals become inert placeholders
PLACEHOLDER_PACKAGES = ("mmengine", "mmcv", "mmaction", "pyskl")


class ForbiddenError(pickle.UnpicklingError):
    """The pickle asks for a global, call or ``BUILD`` this loader does not allow."""


class Placeholder:
    """Stands for an object of a class that was not loaded; records what the pickle gave it."""

    origin: ClassVar[str] = "?"
    __slots__ = ("pickle_args", "pickle_state", "pickle_dict", "pickle_list")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.pickle_args = (args, kwargs)
        self.pickle_state: Any = None
        self.pickle_dict: dict[Any, Any] = {}
        self.pickle_list: list[Any] = []

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEMS of a dict subclass
        self.pickle_dict[key] = value

    def append(self, value: Any) -> None:  # APPENDS of a list subclass
        self.pickle_list.append(value)

    def extend(self, values: Any) -> None:
        self.pickle_list.extend(values)

    def __repr__(self) -> str:
        return f"<{self.origin} (not loaded)>"


_PLACEHOLDERS: dict[str, type[Placeholder]] = {}


def placeholder(origin: str) -> type[Placeholder]:
    """The placeholder class standing for the global ``origin`` (``module.qualname``)."""
    cls = _PLACEHOLDERS.get(origin)
    if cls is None:
        name = origin.rsplit(".", 1)[-1]
        cls = _PLACEHOLDERS[origin] = type(
            name, (Placeholder,), {"origin": origin, "__slots__": ()}
        )
    return cls


def _placeholder_attribute(obj: Any, name: str) -> type[Placeholder]:
    """``getattr`` as pickles spell a method or nested class (``HistoryBuffer.mean`` under
    protocol 2): allowed on placeholders only, and answered with another placeholder."""
    origin = obj.origin if isinstance(obj, Placeholder) or _is_placeholder_class(obj) else None
    if origin is None or not isinstance(name, str):
        raise ForbiddenError(f"forbidden getattr on {type(obj).__name__}")
    return placeholder(f"{origin}.{name}")


def _latin1(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol 2 spells ``bytes``: latin-1 only."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise ForbiddenError(f"forbidden _codecs.encode encoding {encoding!r}")
    return text.encode("latin-1")


def _is_placeholder_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Placeholder)


def _resolve(module: str, name: str) -> Any:
    if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:  # numpy >= 2 (and 1.26's forward alias); numpy.core is deprecated there
            module_obj = importlib.import_module("numpy._core.multiarray")
        except ImportError:
            module_obj = importlib.import_module("numpy.core.multiarray")
        return getattr(module_obj, name)
    return getattr(importlib.import_module(module), name)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table = {key: _resolve(*key) for key in _ALLOWED_GLOBALS}
    table[("_codecs", "encode")] = _latin1
    table[("builtins", "getattr")] = _placeholder_attribute
    table[("builtins", "complex")] = complex
    table[("builtins", "bytearray")] = bytearray
    table[("torch", "Size")] = torch.Size
    table[("torch", "device")] = torch.device
    for fn in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"):
        if hasattr(torch._utils, fn):
            table[("torch._utils", fn)] = getattr(torch._utils, fn)
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            table[("torch", name)] = getattr(torch, name)
    return table


_TABLE: dict[tuple[str, str], Any] = {}


def _table() -> dict[tuple[str, str], Any]:
    if not _TABLE:
        _TABLE.update(_allowed_globals())
    return _TABLE


def _is_placeholder_module(module: str) -> bool:
    return module.split(".", 1)[0] in PLACEHOLDER_PACKAGES


class Unpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be checked
    """The restricted unpickler (see the module doc); ``torch.load`` subclasses it."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # names Python 2 pickles (and protocol 2) use
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        found = _table().get((module, name))
        if found is not None:
            return found
        if _is_placeholder_module(module):
            return placeholder(f"{module}.{name}")
        raise ForbiddenError(f"forbidden global {module}.{name}")

    def _callable(self, func: Any) -> Callable[..., Any]:
        if _is_placeholder_class(func) or any(func is v for v in _table().values()):
            return func
        raise ForbiddenError(f"forbidden call of a {type(func).__name__} object")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._callable(self.stack[-1])(*args)

    def _new(self, cls: Any, args: Any, kwargs: Any) -> None:
        if not _is_placeholder_class(cls):
            raise ForbiddenError(f"forbidden __new__ of {getattr(cls, '__name__', cls)}")
        obj = cls.__new__(cls)
        Placeholder.__init__(obj, *args, **kwargs)
        self.append(obj)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        self._new(self.stack.pop(), args, {})

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        self._new(self.stack.pop(), args, kwargs)

    def _instantiate(self, klass: Any, args: Any) -> None:  # INST / OBJ (protocols 0 and 1)
        self.append(self._callable(klass)(*args))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Placeholder):
            inst.pickle_state = state
        elif isinstance(inst, np.ndarray | np.dtype):
            inst.__setstate__(state)
        elif type(inst) is OrderedDict and isinstance(state, dict):  # state_dict._metadata
            inst.__dict__.update(state)
        else:
            raise ForbiddenError(f"forbidden BUILD of a {type(inst).__name__} object")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build


def load(file: Any, **kwargs: Any) -> Any:
    """``pickle.load`` with the restricted unpickler (torch's legacy format reads headers so)."""
    return Unpickler(file, **kwargs).load()


def load_checkpoint_restricted(path: str | os.PathLike) -> Any:
    """``torch.load`` of ``path`` on CPU with the restricted unpickler; a refused object or an
    unreadable file is a ``BadSampleError`` naming the file."""
    import rgbpose.safe_unpickle as this  # noqa: PLC0415 - torch wants a module

    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=this)
    except OSError as exc:
        raise BadSampleError(path, exc.strerror or str(exc)) from exc
    except ForbiddenError as exc:
        raise BadSampleError(
            path,
            f"refused to load: {exc}; rgbpose builds only tensors, numpy arrays, plain "
            f"containers and inert stand-ins for {'/'.join(PLACEHOLDER_PACKAGES)} objects",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any other failure means a bad file
        raise BadSampleError(path, f"not a readable torch checkpoint ({exc})") from exc


def plain_metadata(obj: Any) -> Any:
    """``obj`` reduced to what a ``weights_only`` checkpoint may hold: ``None``, bools, numbers,
    strings, lists and string-keyed dicts of those (numpy scalars become numbers; a placeholder
    of a dict subclass becomes its items).  Anything else is dropped (``None`` at top level)."""
    if isinstance(obj, np.generic) and obj.shape == () and obj.dtype.kind in "biufU":
        obj = obj.item()
    if obj is None:
        return None
    for kind in (bool, int, float, str):  # their subclasses (enums, np.float64) as plain values
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, Placeholder) and obj.pickle_dict:
        obj = obj.pickle_dict
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            kept = plain_metadata(value)
            if isinstance(key, str) and (kept is not None or value is None):
                out[str(key)] = kept
        return out
    if isinstance(obj, list | tuple):
        kept = [plain_metadata(v) for v in obj]
        return [k for k, v in zip(kept, obj) if k is not None or v is None]
    return None
