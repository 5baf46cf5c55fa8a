"""What the per-sample preprocessing stages share: inputs, bad-sample options, the sample runner
and its progress reporting.

A stage collects its inputs (files, directories, ``--names-file``), runs one function per sample
(``run_samples``), routes every ``BadSampleError`` through a ``SkipLog`` (``--on-bad-sample
fail|skip``, ``--skipped F.tsv``) and reports progress.  A shard job's log gets one line per
sample on stderr, flushed as it happens, and a summary at the end::

    compress 120/256 S001C001P001R001A001 ok (1.2 s)
    compress: 254 ok, 2 skipped in 312 s

On a terminal a tqdm bar replaces the per-sample lines (the summary is still printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO, TypeVar

from rgbpose.io import BadSampleError, SkipLog
from rgbpose.ntu import is_valid_name

S = TypeVar("S")
T = TypeVar("T")

#: Columns of the compress stage's video manifest (read back by build-annotations).
MANIFEST_HEADER = ("name", "frames", "width", "height", "fps")

#: Outcomes ``StageProgress.update`` counts, in the order the summary lists them.
STATUSES = ("ok", "skipped", "failed")


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar only when stderr is a terminal (logs stay clean)."""
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def format_seconds(seconds: float) -> str:
    """``1.2 s`` below ten seconds, ``312 s`` above."""
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


class StageProgress:
    """Counts a stage's samples and reports each one (see the module docstring).

    ``update(name, status, seconds)`` after every sample (status ``ok``, ``skipped`` or
    ``failed``); ``close()`` prints the summary and returns it.  Use as a context manager so the
    summary is printed even when the stage stops on a bad sample.
    """

    def __init__(self, stage: str, total: int, stream: TextIO | None = None):
        self.stage, self.total = stage, total
        self.stream = stream if stream is not None else sys.stderr
        self.counts = dict.fromkeys(STATUSES, 0)
        self.done = 0
        self.start = time.monotonic()
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=stage, leave=False, file=self.stream)

    def update(self, name: str, status: str, seconds: float) -> None:
        if status not in self.counts:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self.done += 1
        self.counts[status] += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        line = f"{self.stage} {self.done}/{self.total} {name} {status} ({format_seconds(seconds)})"
        print(line, file=self.stream, flush=True)

    def bad_sample(self, skip: SkipLog, name: str, exc: BadSampleError, seconds: float) -> None:
        """Report a bad sample (``failed`` under ``fail``, else ``skipped``), then hand it to
        ``skip``, which re-raises it under ``fail`` or records it under ``skip``."""
        self.update(name, "failed" if skip.policy == "fail" else "skipped", seconds)
        skip.handle(name, exc)

    def summary(self) -> str:
        parts = [f"{self.counts['ok']} ok", f"{self.counts['skipped']} skipped"]
        if self.counts["failed"]:
            parts.append(f"{self.counts['failed']} failed")
        elapsed = format_seconds(time.monotonic() - self.start)
        return f"{self.stage}: {', '.join(parts)} in {elapsed}"

    def close(self) -> str:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        text = self.summary()
        print(text, file=self.stream, flush=True)
        return text

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Inputs and sample names
# --------------------------------------------------------------------------------------------


def read_names_file(path: str | os.PathLike) -> list[str]:
    """Sample names from ``path``, one per line (blank lines and ``#`` comments ignored).

    Every name must be a valid NTU sample name: names become file name components, so a name with
    a path separator must never get through.
    """
    names = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not is_valid_name(line):
            raise ValueError(f"{path}: line {lineno}: not an NTU sample name: {line!r}")
        names.append(line)
    return names


def collect_inputs(
    inputs: Sequence[str | os.PathLike], suffix: str, names_file: str | os.PathLike | None = None
) -> list[Path]:
    """Expand ``inputs`` (files or directories) into input files, keeping the argument order.

    Files are taken as given (their names are checked later, per sample, so a badly named file is
    a bad sample rather than a usage error).  A directory contributes every ``*<suffix>`` file in
    it, sorted by name; with ``names_file`` only the listed samples, in the file's order, and a
    listed sample found in no directory yields its (missing) path in the first directory so the
    stage reports it as a bad sample instead of silently producing fewer outputs.
    """
    wanted = read_names_file(names_file) if names_file is not None else None
    dirs = [Path(item) for item in inputs if Path(item).is_dir()]
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            files.append(p)
        elif wanted is None:
            files.extend(sorted(p.glob(f"*{suffix}")))
        elif p == dirs[0]:  # the listed samples, once, where the first directory stands
            for name in wanted:
                found = [d / f"{name}{suffix}" for d in dirs if (d / f"{name}{suffix}").exists()]
                files.append(found[0] if found else dirs[0] / f"{name}{suffix}")
    unique: dict[Path, None] = {}
    for f in files:
        unique.setdefault(f, None)
    return list(unique)


def sample_name_from_path(path: str | os.PathLike, suffix: str) -> str:
    """The NTU sample name of ``<name><suffix>``; ``BadSampleError`` if it is not one."""
    base = Path(path).name
    name = base[: -len(suffix)] if base.endswith(suffix) else Path(base).stem
    if not base.endswith(suffix) or not is_valid_name(name):
        raise BadSampleError(
            path, f"file name is not <NTU sample name>{suffix} (SsssCcccPpppRrrrAaaa{suffix})"
        )
    return name


def raw_stem(path: str | os.PathLike, suffix: str) -> str:
    """Best-effort sample name for the skip log when the file name itself is bad."""
    base = Path(path).name
    return base[: -len(suffix)] if base.endswith(suffix) else Path(base).stem


# --------------------------------------------------------------------------------------------
# Command-line options and bad samples
# --------------------------------------------------------------------------------------------


def add_on_bad_sample_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--on-bad-sample fail|skip`` (DESIGN.md section 8)."""
    parser.add_argument("--on-bad-sample", choices=("fail", "skip"), default="fail")


def add_bad_sample_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--on-bad-sample fail|skip`` and ``--skipped F.tsv`` (DESIGN.md section 8)."""
    add_on_bad_sample_arg(parser)
    parser.add_argument(
        "--skipped",
        type=Path,
        help="TSV listing skipped samples (always written when given; header only when empty)",
    )


def add_names_file_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--names-file`` (selects samples from directory inputs)."""
    parser.add_argument(
        "--names-file", type=Path, help="with directory inputs: only these samples (one a line)"
    )


def finish_skips(skip: SkipLog, path: Path | None) -> None:
    """Write the skip TSV when asked for; otherwise make sure skips are at least on stderr."""
    if path is not None:
        skip.write(path)
    elif skip.rows:
        for name, stage, file, reason in skip.rows:
            print(f"skipped {name} ({stage}): {file}: {reason}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# The sample runner
# --------------------------------------------------------------------------------------------


def run_samples(
    func: Callable[[S], T],
    items: Sequence[S],
    skip: SkipLog,
    name_of: Callable[[S], str],
    jobs: int = 1,
    desc: str = "",
) -> list[tuple[S, T]]:
    """Apply ``func`` to every item (``jobs`` threads), routing ``BadSampleError`` to ``skip``.

    Items are input files or samples already in memory (``name_of`` names each for the skip log
    and the progress lines).  Results come back in input order.  Under ``fail`` the first bad
    sample's error propagates and pending work is cancelled (samples already running still
    finish; outputs are atomic).  Each sample gets a progress line on stderr (``<desc> i/n <name>
    ok|skipped|failed (1.2 s)``) and the stage a summary line (``StageProgress``).
    """

    def guarded(item: S) -> tuple[S, T | BadSampleError, float]:
        start = time.monotonic()
        try:
            res: T | BadSampleError = func(item)
        except BadSampleError as exc:
            res = exc
        return item, res, time.monotonic() - start

    done: list[tuple[S, T]] = []

    def consume(results: Iterator[tuple[S, T | BadSampleError, float]]) -> None:
        with StageProgress(desc, len(items)) as prog:
            for item, res, seconds in results:
                name = name_of(item)
                if isinstance(res, BadSampleError):
                    prog.bad_sample(skip, name, res, seconds)
                else:
                    prog.update(name, "ok", seconds)
                    done.append((item, res))

    if jobs <= 1:
        consume(guarded(item) for item in items)
        return done
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        consume(pool.map(guarded, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done
