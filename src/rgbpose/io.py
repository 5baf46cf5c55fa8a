"""Safe file I/O shared by every stage: atomic writes, a restricted unpickler, bad-sample policy.

DESIGN.md section 8: outputs are written atomically (temp file + rename), untrusted pickles are
loaded with an unpickler that only builds numpy arrays and plain containers, and bad samples are
either fatal or listed in a ``skipped.tsv`` -- never dropped silently.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pickle
import tempfile
from collections.abc import Iterator
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

    The temp file keeps ``dst``'s suffix (or ``suffix``) so tools that pick a format by extension
    (ffmpeg, image writers) still work.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dst.name}.", suffix=suffix if suffix is not None else dst.suffix, dir=dst.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the final file the usual umask-based mode like open() would.
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        os.replace(tmp_path, dst)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
