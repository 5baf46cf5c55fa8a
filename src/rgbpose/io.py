"""Safe file I/O shared by every stage: atomic writes, a restricted unpickler, bad-sample policy.

DESIGN.md section 8: outputs are written atomically (temp file + rename), untrusted pickles are
loaded with an unpickler that only builds numpy arrays and plain containers, and bad samples are
either fatal or listed in a ``skipped.tsv`` -- never dropped silently.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import pickle
import re
import stat
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Policy = Literal["fail", "skip"]


class BadSampleError(RuntimeError):
    """A sample's input is unusable; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(ValueError):
    """A configuration problem (a run config, the workflow config): the message names the file
    and the key (``config/models/x.yaml: key 'optim.lrr': unknown ...``).  Not a bad sample:
    nothing about the data is wrong, and a retry cannot help."""

    def __init__(self, path: str | os.PathLike, problem: str, key: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.key = key
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


#: errnos that mean "the disk (or the user's quota) is full"
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class NoSpaceError(OSError):
    """A write ran out of disk space (``ENOSPC``) or quota (``EDQUOT``).

    The message names the destination the caller asked for (``no space left writing <dst>``),
    never the hidden temp file the bytes were going to.
    """

    def __init__(self, path: str | os.PathLike, err: int = errno.ENOSPC):
        self.path = os.fspath(path)
        quota = " (disk quota exceeded)" if err == getattr(errno, "EDQUOT", None) else ""
        super().__init__(err, f"no space left writing {self.path}{quota}", self.path)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (self.path, self.errno))


def _is_torch_write_failure(exc: BaseException) -> bool:
    """``torch.save``'s zip writer reports a short write (a full disk) as a ``RuntimeError``
    ``[enforce fail at inline_container.cc:...] . PytorchStreamWriter failed writing file ...``
    without an errno."""
    return isinstance(exc, RuntimeError) and "PytorchStreamWriter failed writing" in str(exc)


def _no_space(exc: BaseException, dst: str | os.PathLike) -> NoSpaceError | None:
    """``exc`` as a ``NoSpaceError`` naming ``dst`` when it means the disk is full, else None."""
    if isinstance(exc, NoSpaceError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
        return NoSpaceError(dst, exc.errno)
    if _is_torch_write_failure(exc):
        return NoSpaceError(dst)
    return None


def describe_error(exc: BaseException) -> str:
    """One line for a user: ``<file>: <problem>`` when the error names a file, else the problem.

    ``BadSampleError`` -> ``path: problem``; ``OSError`` with a file name -> ``file: strerror``
    (``No such file or directory``, not ``[Errno 2] ...``); a full disk -> ``no space left
    writing <file>``; ``ValueError`` -> its message; anything else -> ``TypeName: message``.
    """
    if isinstance(exc, BadSampleError):
        return f"{exc.path}: {exc.problem}" if exc.path else exc.problem
    if isinstance(exc, NoSpaceError):
        return str(exc)
    if isinstance(exc, OSError):
        name = None if exc.filename is None else _fsname(exc.filename)
        if exc.errno in _NO_SPACE_ERRNOS:
            return str(NoSpaceError(name, exc.errno)) if name else "no space left on device"
        problem = exc.strerror or str(exc) or type(exc).__name__
        if name is None:
            return problem
        if exc.filename2 is not None:
            name = f"{name} -> {_fsname(exc.filename2)}"
        return f"{name}: {problem}"
    text = str(exc)
    if isinstance(exc, ValueError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fsname(name: Any) -> str:
    return os.fsdecode(name) if isinstance(name, str | bytes | os.PathLike) else str(name)


_REFUSED_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")
_REFUSED_OPERAND = re.compile(r"Unsupported operand \d+")
_REFUSED_TYPE = re.compile(r"but got <class '([\w.]+)'>")


def checkpoint_load_problem(exc: BaseException) -> str:
    """What ``torch.load(path, weights_only=True)`` failing with ``exc`` means, for a user.

    A refusal (the file holds Python objects other than tensors and plain containers) says so
    and names the refused global when torch does.  Torch's own advice -- load with the check off,
    or allowlist the global -- is never passed on: either would let the file run code.
    """
    text = str(exc)
    if "Weights only load failed" in text or "WeightsUnpickler error" in text:
        what = "it contains Python objects that are not allowed"
        if found := _REFUSED_GLOBAL.search(text):
            what += f" (global {found[1]})"
        elif found := _REFUSED_TYPE.search(text):
            what += f" (an object of type {found[1]})"
        elif found := _REFUSED_OPERAND.search(text):
            what = f"its pickle uses an instruction that is not allowed ({found[0]})"
        return (
            f"not a plain-tensor checkpoint: {what}; rgbpose loads only tensors, numbers, "
            "strings and plain containers"
        )
    if isinstance(exc, EOFError):
        return "not a loadable checkpoint: the file is empty or truncated"
    first = re.split(r"(?<=[.?!])\s", text.strip(), maxsplit=1)[0].rstrip(".") if text else ""
    if isinstance(exc, RuntimeError | pickle.UnpicklingError) and first:
        return f"not a loadable checkpoint: {first}"
    return f"not a loadable checkpoint ({type(exc).__name__}{': ' + first if first else ''})"


def _read_umask() -> int:
    # The only way to read the umask is to set it; do it once at import, before any worker
    # threads exist (the umask is process-wide, so toggling it per write would race).
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to ``dst``; rename it onto ``dst`` only if the block succeeds.

    The temp file is ``.<dst name>.<8 random chars><suffix>`` (``tempfile.mkstemp``) in ``dst``'s
    folder; it keeps ``dst``'s suffix (or ``suffix``) so tools that pick a format by extension
    (ffmpeg, image writers) still work.  It is removed whenever the block fails; a process killed
    mid-write leaves it behind for ``remove_stale_temps``.

    A full disk inside the block (an ``OSError`` with ``ENOSPC``/``EDQUOT``, or ``torch.save``'s
    ``PytorchStreamWriter failed writing`` ``RuntimeError``) is raised as ``NoSpaceError`` naming
    ``dst``.
    """
    dst = Path(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{dst.name}.",
            suffix=suffix if suffix is not None else dst.suffix,
            dir=dst.parent,
        )
    except OSError as exc:
        full = _no_space(exc, dst)
        if full is None:
            raise
        raise full from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp creates 0600; give the final file the usual umask-based mode like open() would.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        yield tmp_path
        os.replace(tmp_path, dst)
    except (OSError, RuntimeError) as exc:
        full = _no_space(exc, dst)
        if full is None or full is exc:
            raise
        raise full from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


#: the 8 characters ``tempfile.mkstemp`` puts between ``atomic_path``'s prefix and suffix
_TEMP_RAND = re.compile(r"[a-z0-9_]{8}")

#: default age after which ``remove_stale_temps`` treats a temp file as abandoned
STALE_TEMP_AGE_S = 3600.0


def atomic_temp_destination(name: str) -> str | None:
    """The destination name ``X`` when ``name`` is an ``atomic_path`` temp file name for it
    (``.X.`` + 8 random ``[a-z0-9_]`` (mkstemp) + ``X``'s own suffix), else None."""
    if not name.startswith("."):
        return None
    dot = name.find(".", 1)
    while dot != -1:  # every split point: X itself may contain dots
        dst, rest = name[1:dot], name[dot + 1 :]
        if dst and _TEMP_RAND.fullmatch(rest[:8]) and rest[8:] == Path(dst).suffix:
            return dst
        dot = name.find(".", dot + 1)
    return None


def remove_stale_temps(
    directory: str | os.PathLike,
    max_age_s: float = STALE_TEMP_AGE_S,
    destinations: Collection[str] | None = None,
) -> list[Path]:
    """Delete the temp files ``atomic_path`` left in ``directory`` (not recursive) when a process
    was killed mid-write; return the removed paths, sorted.

    Only regular files (not links or folders) whose name ``atomic_temp_destination`` recognises and
    that were last modified more than ``max_age_s`` seconds ago are removed.  The default (one hour)
    is safe while other jobs may still write into ``directory``: a live writer keeps its temp file's
    modification time fresh and renames it within seconds of its last write.  A caller that knows no
    other process writes there (e.g. the one Snakemake job that owns the folder) passes
    ``max_age_s=0`` to remove every leftover.  (Temps made with a custom ``suffix`` that differs
    from the destination's are not recognised, so they are never removed.)
    ``destinations``: only temps of these destination file names (e.g. one shard's videos, while
    other shards write into the same folder).
    """
    cutoff = time.time() - max_age_s
    removed = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        dst = atomic_temp_destination(entry.name)
        if dst is None or (destinations is not None and dst not in destinations):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or (max_age_s > 0 and st.st_mtime > cutoff):
                continue
            os.unlink(entry.path)
        except FileNotFoundError:  # renamed or removed by its writer meanwhile
            continue
        removed.append(Path(entry.path))
    return sorted(removed)


def write_bytes_atomic(dst: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dst`` atomically."""
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dst: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``dst`` atomically."""
    write_bytes_atomic(dst, text.encode("utf-8"))


def dump_pickle(obj: Any, dst: str | os.PathLike) -> None:
    """Pickle ``obj`` to ``dst`` atomically (protocol 4, readable by PYSKL's Python 3.7+)."""
    write_bytes_atomic(dst, pickle.dumps(obj, protocol=4))


# Globals a PYSKL/our annotation pickle legitimately needs: numpy array reconstruction only.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "slice"),
    ("builtins", "tuple"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def load_pickle(src: str | os.PathLike) -> Any:
    """Load a pickle that may come from elsewhere, allowing only numpy arrays and plain types.

    Raises ``BadSampleError`` naming the file when it holds anything else (e.g. code to run).
    """
    data = Path(src).read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise BadSampleError(src, f"refused to unpickle: {exc}") from exc
    except (EOFError, ValueError, TypeError) as exc:
        raise BadSampleError(src, f"not a readable pickle: {exc}") from exc


@dataclass
class SkipLog:
    """Collects bad samples under ``on_bad_sample: skip``; raises under ``fail``.

    ``handle(name, exc)`` either re-raises (fail) or records ``name``/file/reason (skip).
    ``write(path)`` stores the records as a TSV with a header, even when empty, so a stage's
    output always says what it skipped.
    """

    policy: Policy = "fail"
    stage: str = ""
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def handle(self, name: str, exc: BadSampleError) -> None:
        if self.policy == "fail":
            raise exc
        self.rows.append((name, self.stage, exc.path, exc.problem.replace("\t", " ")))

    def extend(self, rows: list[tuple[str, str, str, str]]) -> None:
        self.rows.extend(rows)

    @property
    def names(self) -> set[str]:
        return {r[0] for r in self.rows}

    def write(self, path: str | os.PathLike) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="\t", lineterminator="\n")
        w.writerow(SKIP_HEADER)
        w.writerows(self.rows)
        write_text_atomic(path, buf.getvalue())


SKIP_HEADER = ("sample", "stage", "file", "reason")


def read_skip_tsv(path: str | os.PathLike) -> list[tuple[str, str, str, str]]:
    """Read a TSV written by ``SkipLog.write`` (header checked)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or tuple(rows[0]) != SKIP_HEADER:
        raise BadSampleError(path, f"expected header {SKIP_HEADER}")
    return [tuple(r) for r in rows[1:]]  # type: ignore[misc]
