"""Raw-directory scan: which raw files are samples, and which are bad samples.

The workflow plans its shards from this scan (``workflow/rules/common.smk``), and the
``scan_raw`` rule writes the same scan's bad samples as a skip TSV that ``build_annotations``
merges into ``skipped.tsv``.  Only names that parse as NTU sample names (``SsssCcccPpppRrrrAaaa``:
letters and digits only) ever become samples, so no other file name can reach a command line; any
other ``*_rgb.avi`` is a bad sample, never a command:

* a ``*_rgb.avi`` whose stem is not an NTU name (``$(touch x)_rgb.avi``, ``a b_rgb.avi``, ...);
* a ``*.skeleton`` whose stem is not an NTU name;
* a ``<name>.skeleton`` without its ``<name>_rgb.avi`` (the sample has no video);
* a ``<name>_rgb.avi`` that is not a regular file (a directory, a dangling link).

Samples of the dataset authors' missing-skeleton list are left out (``exclude``), as in every
published benchmark; that exclusion is documented in the README, not listed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from rgbpose.io import BadSampleError, SkipLog
from rgbpose.ntu import is_valid_name

from .stage import add_on_bad_sample_arg

VIDEO_SUFFIX = "_rgb.avi"
SKELETON_SUFFIX = ".skeleton"
STAGE = "scan_raw"
NOT_A_NAME = "not an NTU sample name (SsssCcccPpppRrrrAaaa); the file is not used"


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n`` -> ``\\x0a``), so one name is one line
    of a log or a TSV row whatever bytes the file name holds."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


@dataclass(frozen=True)
class RawScan:
    """``names``: sorted sample names to process; ``bad``: skip rows (sample, stage, file,
    reason) for everything else that looks like a sample file."""

    names: tuple[str, ...]
    bad: tuple[tuple[str, str, str, str], ...]

    def error(self) -> str:
        """One message listing every bad file (for ``on_bad_sample: fail``)."""
        lines = [f"  {file}: {reason}" for _, _, file, reason in self.bad]
        return f"{len(self.bad)} bad raw file(s):\n" + "\n".join(lines)


def _entries(directory: Path, suffix: str) -> list[tuple[str, os.DirEntry]]:
    with os.scandir(directory) as it:
        return [(e.name[: -len(suffix)], e) for e in it if e.name.endswith(suffix)]


def scan_raw(
    video_dir: str | os.PathLike,
    skeleton_dir: str | os.PathLike | None = None,
    exclude: Collection[str] = frozenset(),
) -> RawScan:
    """Scan ``video_dir`` for ``<name>_rgb.avi`` and ``skeleton_dir`` (when it is a directory)
    for ``<name>.skeleton``; see the module docstring for what is a bad sample."""
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise BadSampleError(video_dir, "raw video directory does not exist")
    names: list[str] = []
    bad: list[tuple[str, str, str, str]] = []

    def reject(stem: str, path: str, reason: str) -> None:
        bad.append((printable(stem), STAGE, printable(path), reason))

    videos = set()
    for stem, entry in _entries(video_dir, VIDEO_SUFFIX):
        if not is_valid_name(stem):
            reject(stem, entry.path, NOT_A_NAME)
        elif stem in exclude:
            continue
        elif not entry.is_file():
            reject(stem, entry.path, "not a regular file")
        else:
            names.append(stem)
            videos.add(stem)
    if skeleton_dir is not None and Path(skeleton_dir).is_dir():
        for stem, entry in _entries(Path(skeleton_dir), SKELETON_SUFFIX):
            if not is_valid_name(stem):
                reject(stem, entry.path, NOT_A_NAME)
            elif stem not in videos and stem not in exclude:
                reject(stem, entry.path, f"skeleton without a video ({stem}{VIDEO_SUFFIX} "
                                         f"missing in {printable(str(video_dir))})")  # fmt: skip
    bad.sort(key=lambda r: (r[2], r[0]))
    return RawScan(tuple(sorted(names)), tuple(bad))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgbpose scan-raw",
        description="List the raw files that are not usable samples (non-NTU names, skeletons "
        "without a video) as a skip TSV; with --on-bad-sample fail, stop naming them.",
    )
    p.add_argument("--video-dir", required=True, help="directory of <name>_rgb.avi")
    p.add_argument("--skeleton-dir", default=None, help="directory of <name>.skeleton")
    p.add_argument("--out", required=True, type=Path, help="skip TSV (sample stage file reason)")
    add_on_bad_sample_arg(p)
    p.add_argument(
        "--no-exclude-missing", action="store_true",
        help="keep the NTU missing-skeleton samples (synthetic data has none)",
    )  # fmt: skip
    return p


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rgbpose.ntu import missing_skeletons  # noqa: PLC0415

    exclude = frozenset() if args.no_exclude_missing else missing_skeletons()
    scan = scan_raw(args.video_dir, args.skeleton_dir, exclude)
    if scan.bad and args.on_bad_sample == "fail":
        raise BadSampleError(args.video_dir, scan.error())
    log = SkipLog("skip", STAGE, list(scan.bad))
    log.write(args.out)
    print(f"scan_raw: {len(scan.names)} samples, {len(scan.bad)} bad raw file(s)", file=sys.stderr)
    for _, _, file, reason in scan.bad:
        print(f"scan_raw: skipped {file}: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
