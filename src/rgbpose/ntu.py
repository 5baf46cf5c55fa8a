"""NTU RGB+D naming, class names, missing-skeleton exclusion and the standard benchmark splits.

Sample names are ``SsssCcccPpppRrrrAaaa`` (setup, camera, performer, replication, action);
label = action - 1.  Split rules and sizes: DESIGN.md section 2.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import NamedTuple

NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")

XSUB60_TRAIN_PERFORMERS = frozenset(
    {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
)
XSUB120_TRAIN_PERFORMERS = XSUB60_TRAIN_PERFORMERS | frozenset(
    {45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85,
     86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103}
)  # fmt: skip
XVIEW_TRAIN_CAMERAS = frozenset({2, 3})
TWO_PERSON_ACTIONS = frozenset(range(50, 61)) | frozenset(range(106, 121))

#: benchmarks each dataset supports
#: NTU's masked depth: (width, height) of every frame, and the file of 1-based frame t in a
#: sample's folder (``nturgb+d_depth_masked/<name>/MDepth-%08d.png``, 16-bit millimetres)
DEPTH_SIZE = (512, 424)


def depth_frame_name(frame: int) -> str:
    """``MDepth-00000001.png`` for 1-based ``frame``."""
    return f"MDepth-{frame:08d}.png"


BENCHMARKS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset"), "demo": ("xsub", "xview")}


class SampleName(NamedTuple):
    """Parsed NTU sample name."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    @property
    def label(self) -> int:
        return self.action - 1

    @property
    def two_person(self) -> bool:
        return self.action in TWO_PERSON_ACTIONS

    def __str__(self) -> str:
        return "S{:03d}C{:03d}P{:03d}R{:03d}A{:03d}".format(*self)


def parse_name(name: str) -> SampleName:
    """Parse ``SsssCcccPpppRrrrAaaa``; raise ``ValueError`` naming the string otherwise.

    Anything else -- a path, an extension, a separator, lower case -- is rejected, so a name can
    be used safely as a file name component.
    """
    m = NAME_RE.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(f"not an NTU sample name (SsssCcccPpppRrrrAaaa): {name!r}")
    s = SampleName(*(int(g) for g in m.groups()))
    if not (s.setup >= 1 and 1 <= s.camera <= 3 and s.performer >= 1 and 1 <= s.replication <= 2
            and 1 <= s.action <= 120):  # fmt: skip
        raise ValueError(f"NTU sample name out of range: {name!r}")
    return s


def is_valid_name(name: str) -> bool:
    """True when ``name`` parses as an NTU sample name."""
    try:
        parse_name(name)
    except ValueError:
        return False
    return True


def _resource_lines(filename: str) -> list[str]:
    ref = resources.files("rgbpose.resources").joinpath(filename)
    raw = ref.read_bytes()
    if filename.endswith(".gz"):
        raw = gzip.decompress(raw)
    return [ln.strip() for ln in raw.decode().splitlines() if ln.strip()]


@cache
def class_names() -> tuple[str, ...]:
    """The 120 NTU action names; index = label (A - 1)."""
    return tuple(_resource_lines("class_names_ntu120.txt"))


@cache
def missing_skeletons() -> frozenset[str]:
    """The 535 samples every published NTU benchmark excludes."""
    return frozenset(_resource_lines("missing_skeletons_ntu120.txt"))


@cache
def recorded_samples() -> tuple[str, ...]:
    """All 114,480 recorded NTU 120 sample names (missing ones included)."""
    return tuple(_resource_lines("recorded_samples_ntu120.txt.gz"))


def in_dataset(name: str, dataset: str) -> bool:
    """Whether sample ``name`` belongs to ``dataset`` (ntu60: A <= 60; ntu120/demo: all)."""
    s = parse_name(name)
    return s.action <= 60 if dataset == "ntu60" else True


def is_train(name: str | SampleName, benchmark: str, dataset: str = "ntu60") -> bool:
    """Whether a sample is in the train (True) or val (False) half of ``benchmark``."""
    s = parse_name(name) if isinstance(name, str) else name
    if benchmark == "xsub":
        performers = XSUB120_TRAIN_PERFORMERS if dataset == "ntu120" else XSUB60_TRAIN_PERFORMERS
        return s.performer in performers
    if benchmark == "xview":
        return s.camera in XVIEW_TRAIN_CAMERAS
    if benchmark == "xset":
        return s.setup % 2 == 0
    raise ValueError(f"unknown benchmark {benchmark!r} (expected xsub, xview or xset)")


def make_splits(
    names: Iterable[str], dataset: str, benchmarks: Iterable[str], exclude_missing: bool = True
) -> dict[str, list[str]]:
    """Split ``names`` into ``{bench}_train`` / ``{bench}_val`` lists (input order kept).

    Samples of other datasets (A > 60 for ntu60) and, unless disabled, the missing-skeleton
    samples are excluded first, as every published benchmark does.
    """
    missing = missing_skeletons() if exclude_missing else frozenset()
    kept = [n for n in names if n not in missing and in_dataset(n, dataset)]
    parsed = [parse_name(n) for n in kept]
    splits: dict[str, list[str]] = {}
    for bench in benchmarks:
        if dataset in BENCHMARKS and bench not in BENCHMARKS[dataset]:
            raise ValueError(f"benchmark {bench!r} is not defined for {dataset!r}")
        flags = [is_train(s, bench, dataset) for s in parsed]
        splits[f"{bench}_train"] = [n for n, t in zip(kept, flags) if t]
        splits[f"{bench}_val"] = [n for n, t in zip(kept, flags) if not t]
    return splits
