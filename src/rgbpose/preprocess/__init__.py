"""Per-video preprocessing stages (compress, extract-poses, denoise, build-annotations).

This file holds the progress reporting the stages share.  A shard job's log gets one line per
sample on stderr, flushed as it happens, and a summary at the end::

    compress 120/256 S001C001P001R001A001 ok (1.2 s)
    compress: 254 ok, 2 skipped in 312 s

On a terminal a tqdm bar replaces the per-sample lines (the summary is still printed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO, TypeVar

from rgbpose.io import BadSampleError, SkipLog

T = TypeVar("T")

#: Outcomes ``StageProgress.update`` counts, in the order the summary lists them.
STATUSES = ("ok", "skipped", "failed")


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
