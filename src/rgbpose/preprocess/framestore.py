"""``rgbpose frame-store``: build the training frame store of a shard of videos (DAG stage after
compress and build-annotations; format and reader: :mod:`rgbpose.data.framestore`).

Per sample: decode the compressed video once, keep the frames the annotation can ask for (its
``frame_inds`` or ``0..total_frames-1``, clamped like the loader clamps), crop them to
:func:`store_region` and encode each on its own (JPEG 4:4:4 quality 90 by default, or lossless
PNG).

The region contains the compaction box of *every* clip the RGB pipelines can sample, for any
subset of frames and persons (see :func:`store_region`), so a clip read from the store equals the
clip read from the video up to the codec's error.  A clip whose box the region does not cover
(possible only with another ``compact_padding`` than the store's, or a clip too small to compact,
which uses the whole frame) is read from the video by the loader instead.

A store file records a fingerprint of what it was built from (the sample's annotation record,
the video's size and mtime, the options): a rerun over an unchanged sample keeps the file
(``ok (kept)``), so rebuilding the annotations does not re-encode every video.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rgbpose.data import framestore as fs
from rgbpose.data.records import annotations_hash, load_split
from rgbpose.data.transforms import compact_box
from rgbpose.data.video import DEFAULT_TOLERANCE, open_video
from rgbpose.io import BadSampleError, SkipLog, remove_stale_temps, write_text_atomic
from rgbpose.ntu import is_valid_name

from . import stage

MANIFEST_HEADER = ("name", "frames", "region_w", "region_h", "bytes", "status")


def store_region(
    keypoint: np.ndarray | None,
    ann_hw: tuple[int, int],
    frame_hw: tuple[int, int],
    *,
    padding: float = 0.25,
    threshold: float = 10.0,
) -> tuple[int, int, int, int]:
    """The stored crop ``(x1, y1, x2, y2)`` in frame pixels: it contains the part inside the
    frame of the compaction box (square, ``padding``) of any subset of frames and persons.

    Keypoints ``[M, T, V, 2]`` are in the annotation's ``ann_hw`` pixels and scaled to
    ``frame_hw`` as the loader scales them.  Bound, per axis (x shown; y swaps the roles): over
    all frames and persons the present coordinates span ``[lo, hi]`` (width ``w``; the other axis
    spans ``h``); ``A`` is the smallest right extent of any single (person, frame) and ``B`` the
    largest left extent, so any subset's ``min`` lies in ``[lo, B]`` and its ``max`` in ``[A, hi]``.
    Its box is centred at ``(min + max) / 2`` with half side ``(1 + p) / 2 * max(w_s, h_s)``:

    * when ``w_s >= h_s`` its left edge is ``min - p/2 w_s >= lo - p/2 w``;
    * else it is ``>= (lo + A) / 2 - (1 + p)/2 h``;

    and symmetrically on the right.  No present keypoint, or a span under ``threshold`` (the
    loader then never compacts): the whole frame.
    """
    fh, fw = frame_hw
    whole = (0, 0, int(fw), int(fh))
    if keypoint is None or np.asarray(keypoint).size == 0:
        return whole
    kp = np.nan_to_num(np.asarray(keypoint, dtype=np.float64), nan=0.0).copy()
    oh, ow = ann_hw
    kp[..., 0] *= np.float32(fw / ow) if (fh, fw) != (oh, ow) else 1.0
    kp[..., 1] *= np.float32(fh / oh) if (fh, fw) != (oh, ow) else 1.0
    if compact_box(kp, frame_hw, padding=padding, threshold=threshold) is None:
        return whole
    spans = []
    for axis in (0, 1):
        c = kp[..., axis]  # [M, T, V]
        present = c != 0
        lo_mt = np.where(present, c, np.inf).min(-1)  # per (person, frame)
        hi_mt = np.where(present, c, -np.inf).max(-1)
        has = present.any(-1)
        spans.append((lo_mt[has].min(), hi_mt[has].max(), hi_mt[has].min(), lo_mt[has].max()))
    region = []
    for axis in (0, 1):
        lo, hi, a, b = spans[axis]
        other_lo, other_hi = spans[1 - axis][:2]
        w, h = hi - lo, other_hi - other_lo
        left = min(lo - padding / 2 * w, (lo + a) / 2 - (1 + padding) / 2 * h)
        right = max(hi + padding / 2 * w, (hi + b) / 2 + (1 + padding) / 2 * h)
        region.append((left, right))
    (x1, x2), (y1, y2) = region
    # compact_box truncates toward zero; one pixel more on each side covers float32 rounding.
    return (
        max(0, math.floor(x1) - 1),
        max(0, math.floor(y1) - 1),
        min(int(fw), math.ceil(x2) + 2),
        min(int(fh), math.ceil(y2) + 2),
    )


def needed_frames(record: Mapping[str, Any], num_frames: int, tolerance: int) -> list[int]:
    """The video frames the loader can ask for: ``frame_inds`` (or ``0..total_frames-1``) with
    indices in ``[n, n + tolerance)`` clamped to ``n - 1``; others are a ``BadSampleError`` of
    the caller (the video and the annotation disagree)."""
    inds = record.get("frame_inds")
    inds = np.arange(int(record["total_frames"])) if inds is None else np.asarray(inds)
    inds = inds.astype(np.int64).reshape(-1)
    if inds.size and (inds.min() < 0 or inds.max() >= num_frames + tolerance):
        raise ValueError(
            f"frame indices {inds.min()}..{inds.max()} but the video has {num_frames} frames"
        )
    return sorted({int(i) for i in np.minimum(inds, num_frames - 1)})


def fingerprint(record: Mapping[str, Any], video: Path, options: Mapping[str, Any]) -> str:
    st = video.stat()
    h = hashlib.sha256()
    h.update(annotations_hash([record]).encode())
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(repr(sorted(options.items())).encode())
    return h.hexdigest()


def build_store(
    record: Mapping[str, Any],
    video: str | os.PathLike,
    out: str | os.PathLike,
    *,
    codec: str = "jpeg",
    quality: int = 90,
    padding: float = 0.25,
    tolerance: int = DEFAULT_TOLERANCE,
) -> tuple[int, tuple[int, int, int, int], int, bool]:
    """Write the store of one sample; returns (frames, region, bytes, kept).  ``kept``: an
    existing file with the same fingerprint was left as it is.  Problems with the video are
    ``BadSampleError`` naming it."""
    video, out = Path(video), Path(out)
    name = str(record["frame_dir"])
    if not video.is_file():
        raise BadSampleError(video, "video file not found")
    options = {"codec": codec, "quality": quality, "padding": padding, "tolerance": tolerance}
    fp = fingerprint(record, video, options)
    if out.is_file():
        try:
            head = fs.read_header(out)
        except BadSampleError:
            head = {}
        if head.get("fingerprint") == fp:
            return len(head["frames"]), tuple(head["region"]), out.stat().st_size, True
    opened = open_video(video)
    n, fh, fw = opened.info.frames, opened.info.height, opened.info.width
    try:
        wanted = set(needed_frames(record, n, tolerance))
    except ValueError as exc:
        raise BadSampleError(video, str(exc)) from None
    ann_hw = tuple(int(v) for v in record.get("img_shape", (fh, fw)))
    region = store_region(record.get("keypoint"), ann_hw, (fh, fw), padding=padding)
    x1, y1, x2, y2 = region
    frames: dict[int, bytes] = {}
    for t, frame in enumerate(opened.iterator):
        if t in wanted:
            frames[t] = fs.encode_frame(frame[y1:y2, x1:x2], codec, quality)
    size = fs.write_store(
        out, name=name, frame_hw=(fh, fw), region=region, num_frames=n, frames=frames,
        codec=codec, quality=quality, fingerprint=fp,
    )  # fmt: skip
    return len(frames), region, size, False


def write_manifest(rows: Sequence[tuple], path: str | os.PathLike) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(MANIFEST_HEADER)
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def cli(argv: Sequence[str] | None = None) -> int:
    """``rgbpose frame-store --ann ANN --video-dir DIR --out-dir DIR --manifest M.tsv``."""
    p = argparse.ArgumentParser(
        prog="rgbpose frame-store",
        description="Build the training frame store (<out-dir>/<name>.frames) of videos "
        "<video-dir>/<name>.mp4 from their annotations.",
    )
    p.add_argument("--ann", type=Path, required=True, help="annotation pickle")
    p.add_argument("--video-dir", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True, help="TSV of the stored samples")
    p.add_argument("--names", nargs="*", help="only these samples (default: every annotation)")
    p.add_argument("--codec", choices=fs.CODECS, default="jpeg")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--padding", type=float, default=0.25, help="the pipelines' compact_padding")
    p.add_argument("--jobs", type=int, default=1)
    stage.add_bad_sample_args(p)
    args = p.parse_args(argv)
    from rgbpose.cli import report_error  # noqa: PLC0415

    try:
        annos, _ = load_split(args.ann, None)
        by_name = {str(a["frame_dir"]): a for a in annos}
        if args.names is not None:
            bad = [n for n in args.names if not is_valid_name(n)]
            if bad:
                raise ValueError(f"not NTU sample names: {bad[:5]}")
            # Samples of the shard that an earlier stage skipped are not in the annotations
            # (they are listed in skipped.tsv): nothing to store for them.
            records = [by_name[n] for n in args.names if n in by_name]
        else:
            records = list(annos)
        if not 1 <= args.quality <= 100:
            raise ValueError(f"--quality must be in 1..100, got {args.quality}")
    except (OSError, ValueError, BadSampleError) as exc:
        return report_error("rgbpose frame-store", exc)
    ours = {f"{a['frame_dir']}{fs.SUFFIX}" for a in records}
    for stale in remove_stale_temps(args.out_dir, destinations=ours):
        print(f"frame-store: removed {stale} (temp file of an interrupted run)", file=sys.stderr)
    skip = SkipLog(args.on_bad_sample, stage="frame-store")

    def work(record: Mapping[str, Any]) -> tuple:
        name = str(record["frame_dir"])
        n, region, size, kept = build_store(
            record, args.video_dir / f"{name}.mp4", fs.store_path(args.out_dir, name),
            codec=args.codec, quality=args.quality, padding=args.padding,
        )  # fmt: skip
        w, h = region[2] - region[0], region[3] - region[1]
        return (name, n, w, h, size, "kept" if kept else "written")

    try:
        done = stage.run_samples(
            work, records, skip, lambda a: str(a["frame_dir"]), args.jobs, "frame-store"
        )
    except BadSampleError as exc:
        return report_error("rgbpose frame-store", exc)
    write_manifest([row for _, row in done], args.manifest)
    stage.finish_skips(skip, args.skipped)
    total = sum(row[4] for _, row in done)
    print(
        f"stored {len(done)} video(s) in {args.out_dir} ({total / 1e6:.1f} MB); "
        f"skipped {len(skip.rows)} (the loader reads those from their videos)"
    )
    return 0
