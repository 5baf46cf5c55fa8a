"""Re-encode raw NTU videos to short-GOP 540p H.264 (DESIGN.md section 3.1).

Reference: ``ffmpeg -i src -threads 1 -vf scale=-2:540 -c:v libx264 dst.mp4``.  We add a short GOP
(``-g 32``) because training decodes a few sparse frames per clip and every random access costs a
decode from the previous keyframe, keep every input frame (``-fps_mode passthrough``: no frame is
duplicated or dropped, so frame t of the mp4 is frame t of the raw video and of its skeleton),
drop audio, and move the ``moov`` atom to the front so readers can seek without scanning the file.

A video is a bad sample (``BadSampleError``) when it is missing, empty, not a video, truncated
(ffmpeg reports corrupt data -- we run it with ``-xerror`` -- or an AVI decodes to fewer frames
than its header declares) or when the re-encoded file does not decode to the input's frame count
and the expected size.  Output is written atomically; a failed sample leaves no ``<name>.mp4``.

This module also holds what the other preprocessing stages share: ``open_video`` (decord with
bad-sample errors, used by the estimator backends) and the small CLI helpers (collecting inputs
from files / directories / ``--names-file``, the bad-sample options, running a shard's samples
with per-sample progress lines).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np

from rgbpose.io import (
    BadSampleError,
    SkipLog,
    atomic_path,
    remove_stale_temps,
    write_text_atomic,
)
from rgbpose.ntu import is_valid_name

from . import StageProgress

T = TypeVar("T")

RAW_VIDEO_SUFFIX = "_rgb.avi"
MANIFEST_HEADER = ("name", "frames", "width", "height", "fps")


# --------------------------------------------------------------------------------------------
# Shared CLI helpers (used by poses.py, denoise.py and annotations.py too)
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


def add_bad_sample_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--on-bad-sample fail|skip`` and ``--skipped F.tsv`` (DESIGN.md section 8)."""
    parser.add_argument("--on-bad-sample", choices=("fail", "skip"), default="fail")
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


def run_samples(
    func: Callable[[Path], T],
    paths: Sequence[Path],
    skip: SkipLog,
    name_of: Callable[[Path], str],
    jobs: int = 1,
    desc: str = "",
) -> list[tuple[Path, T]]:
    """Apply ``func`` to every path (``jobs`` threads), routing ``BadSampleError`` to ``skip``.

    Results come back in input order.  Under ``fail`` the first bad sample's error propagates and
    pending work is cancelled (samples already running still finish; outputs are atomic).  Each
    sample gets a progress line on stderr (``<desc> i/n <name> ok|skipped|failed (1.2 s)``) and
    the stage a summary line (``StageProgress``).
    """

    def guarded(p: Path) -> tuple[Path, T | BadSampleError, float]:
        start = time.monotonic()
        try:
            res: T | BadSampleError = func(p)
        except BadSampleError as exc:
            res = exc
        return p, res, time.monotonic() - start

    done: list[tuple[Path, T]] = []

    def consume(results: Iterator[tuple[Path, T | BadSampleError, float]]) -> None:
        with StageProgress(desc, len(paths)) as prog:
            for p, res, seconds in results:
                name = name_of(p)
                if isinstance(res, BadSampleError):
                    prog.bad_sample(skip, name, res, seconds)
                else:
                    prog.update(name, "ok", seconds)
                    done.append((p, res))

    if jobs <= 1:
        consume(guarded(p) for p in paths)
        return done
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        consume(pool.map(guarded, paths))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done


# --------------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------------


class VideoInfo(NamedTuple):
    """Frame count, size and frame rate of a decoded video."""

    frames: int
    width: int
    height: int
    fps: float


class VideoFrames(NamedTuple):
    """An opened video: its info and an iterator over its RGB uint8 frames [H, W, 3]."""

    info: VideoInfo
    iterator: Iterator[np.ndarray]


def open_video(path: str | os.PathLike, chunk: int = 16) -> VideoFrames:
    """Open ``path`` with decord; any failure, now or while iterating, is a ``BadSampleError``.

    Missing, empty (0 bytes), non-video and frameless files are reported before decoding starts.
    """
    import decord

    path = Path(path)
    if not path.exists():
        raise BadSampleError(path, "file not found")
    if path.stat().st_size == 0:
        raise BadSampleError(path, "empty file (0 bytes)")
    try:
        vr = decord.VideoReader(str(path), num_threads=1)
        n = len(vr)
        h, w = vr[0].shape[:2] if n else (0, 0)
        fps = float(vr.get_avg_fps())
    except Exception as exc:  # decord raises bare RuntimeError/DECORDError for every failure
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadSampleError(path, f"not a decodable video ({msg})") from exc
    if n == 0:
        raise BadSampleError(path, "video has no frames")

    def frames() -> Iterator[np.ndarray]:
        for start in range(0, n, chunk):
            try:
                batch = vr.get_batch(list(range(start, min(n, start + chunk)))).asnumpy()
            except Exception as exc:
                raise BadSampleError(path, f"decoding failed at frame {start} ({exc})") from exc
            yield from batch

    return VideoFrames(VideoInfo(n, int(w), int(h), fps), frames())


def _avi_declared_frames(path: Path) -> int | None:
    """Total frame count an AVI's header declares (``avih``, or OpenDML ``dmlh`` if larger).

    A file cut at a packet boundary decodes cleanly but to fewer frames than this, which is how a
    truncated raw NTU video is recognised.  ``None`` for non-AVI files or unreadable headers.
    """
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return None
    counts = []
    i = head.find(b"avih")
    if i >= 0 and i + 28 <= len(head):
        counts.append(struct.unpack("<I", head[i + 24 : i + 28])[0])  # dwTotalFrames: 5th DWORD
    i = head.find(b"dmlh")
    if i >= 0 and i + 12 <= len(head):
        counts.append(struct.unpack("<I", head[i + 8 : i + 12])[0])
    # Writers leave dmlh at 0 unless the file really spans several RIFF chunks; avih then counts
    # only the first chunk, so the larger of the two is the total.
    return max(counts) if counts and max(counts) > 0 else None


def _rescale(a: int, b: int, c: int) -> int:
    """``a * b / c`` rounded to nearest, ties away from zero (ffmpeg's ``av_rescale``)."""
    return (a * b + c // 2) // c


def scaled_size(width: int, height: int, target: int = 540) -> tuple[int, int]:
    """Output (width, height) of ``scale=-2:target`` (landscape/square) or ``scale=target:-2``.

    Same arithmetic as ffmpeg's scale filter: the free side keeps the aspect ratio and is rounded
    to a multiple of 2.
    """
    if width >= height:
        return _rescale(target, width, height * 2) * 2, target
    return target, _rescale(target, height, width * 2) * 2


def compress_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    height: int = 540,
    crf: int = 23,
    preset: str = "veryfast",
    gop: int = 32,
    threads: int = 1,
) -> VideoInfo:
    """Re-encode ``src`` to H.264 ``dst`` (short side ``height``); return the output's info.

    Raises ``BadSampleError`` naming ``src`` on an empty, missing, non-video, truncated or
    undecodable input, or when the output does not decode to the input's frame count at the
    expected size.  ``dst`` is written atomically; on failure a stale ``dst`` from an earlier run
    is removed too, so no output ever outlives the input it was made from.
    """
    src, dst = Path(src), Path(dst)
    try:
        return _compress(src, dst, height, crf, preset, gop, threads)
    except BadSampleError:
        dst.unlink(missing_ok=True)
        raise


def _compress(
    src: Path, dst: Path, height: int, crf: int, preset: str, gop: int, threads: int
) -> VideoInfo:
    import decord
    import ffmpeg
    import imageio_ffmpeg

    info = open_video(src).info
    declared = _avi_declared_frames(src)
    expect_w, expect_h = scaled_size(info.width, info.height, height)
    scale = f"scale=-2:{height}" if info.width >= info.height else f"scale={height}:-2"
    with atomic_path(dst) as tmp:
        stream = ffmpeg.input(str(src), threads=threads).output(
            str(tmp),
            vf=scale,
            vcodec="libx264",
            crf=crf,
            preset=preset,
            g=gop,
            pix_fmt="yuv420p",
            an=None,
            fps_mode="passthrough",
            movflags="+faststart",
            threads=threads,
        )
        # -xerror: stop on the first corrupt packet instead of concealing it (truncated input).
        stream = stream.global_args("-hide_banner", "-nostdin", "-v", "error", "-xerror")
        try:
            stream.overwrite_output().run(
                cmd=imageio_ffmpeg.get_ffmpeg_exe(), capture_stdout=True, capture_stderr=True
            )
        except ffmpeg.Error as exc:
            lines = exc.stderr.decode(errors="replace").strip().splitlines()
            raise BadSampleError(src, f"ffmpeg failed: {lines[0] if lines else exc}") from None
        try:
            vr = decord.VideoReader(str(tmp), num_threads=1)
            frames = len(vr)
            # Decode both ends: the output must be readable, not only well-formed.
            first_last = vr.get_batch([0, frames - 1]).asnumpy() if frames else None
            fps = float(vr.get_avg_fps())
            del vr
        except Exception as exc:
            raise BadSampleError(src, f"re-encoded video does not decode ({exc})") from exc
        if frames != info.frames:
            raise BadSampleError(
                src, f"frame count mismatch: input has {info.frames}, output {frames}"
            )
        if declared is not None and declared > frames:
            raise BadSampleError(
                src, f"truncated: AVI header declares {declared} frames, {frames} decode"
            )
        out_h, out_w = first_last.shape[1:3]
        if (out_w, out_h) != (expect_w, expect_h):
            raise BadSampleError(src, f"output is {out_w}x{out_h}, expected {expect_w}x{expect_h}")
    return VideoInfo(frames, int(out_w), int(out_h), fps)


def remove_stale_shard_temps(
    out_dir: str | os.PathLike, destinations: Iterable[str | os.PathLike], max_age_s: float = 0.0
) -> list[Path]:
    """Delete ``atomic_path`` temp files of ``destinations`` (file names in ``out_dir``).

    An interrupted compress job leaves ``.<name>.mp4.XXXXXXXX.mp4`` behind.  Only temps whose
    destination is one of ``destinations`` (this shard's videos) are touched: other shards may be
    writing into the same directory right now.  Snakemake never runs the same shard twice at
    once, so by default every such temp is stale; ``max_age_s`` keeps those modified more
    recently.  Returns the removed paths, sorted.
    """
    wanted = {Path(d).name for d in destinations}
    return remove_stale_temps(out_dir, max_age_s=max_age_s, destinations=wanted)


def write_manifest(rows: Sequence[tuple[str, VideoInfo]], path: str | os.PathLike) -> None:
    """Write ``name frames width height fps`` rows (TSV with header) atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(MANIFEST_HEADER)
    for name, info in rows:
        w.writerow([name, info.frames, info.width, info.height, f"{info.fps:.6g}"])
    write_text_atomic(path, buf.getvalue())


def cli(argv: Sequence[str] | None = None) -> int:
    """``rgbpose compress INPUT... --out-dir DIR --manifest SHARD.tsv [options]``."""
    p = argparse.ArgumentParser(
        prog="rgbpose compress",
        description="Re-encode raw <name>_rgb.avi videos to <out-dir>/<name>.mp4 (H.264, 540p).",
    )
    p.add_argument("inputs", nargs="+", help="raw <name>_rgb.avi files or directories of them")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True, help="TSV: name frames width height fps")
    p.add_argument("--height", type=int, default=540, help="short side of the output")
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--preset", default="veryfast")
    p.add_argument("--gop", type=int, default=32, help="keyframe interval (frames)")
    p.add_argument("--jobs", type=int, default=1, help="videos encoded in parallel")
    add_names_file_arg(p)
    add_bad_sample_args(p)
    args = p.parse_args(argv)
    from rgbpose.cli import report_error  # noqa: PLC0415

    try:
        paths = collect_inputs(args.inputs, RAW_VIDEO_SUFFIX, args.names_file)
    except (OSError, ValueError) as exc:
        return report_error("rgbpose compress", exc)
    skip = SkipLog(args.on_bad_sample, stage="compress")
    # This shard's destinations only (names that are not NTU names never become outputs).
    ours = [f"{n}.mp4" for n in (raw_stem(q, RAW_VIDEO_SUFFIX) for q in paths) if is_valid_name(n)]
    for stale in remove_stale_shard_temps(args.out_dir, ours):
        print(f"compress: removed {stale} (temp file of an interrupted run)", file=sys.stderr)

    def work(path: Path) -> tuple[str, VideoInfo]:
        name = sample_name_from_path(path, RAW_VIDEO_SUFFIX)
        info = compress_video(
            path, args.out_dir / f"{name}.mp4", args.height, args.crf, args.preset, args.gop
        )
        return name, info

    try:
        done = run_samples(
            work, paths, skip, lambda q: raw_stem(q, RAW_VIDEO_SUFFIX), args.jobs, "compress"
        )
    except BadSampleError as exc:
        return report_error("rgbpose compress", exc)
    write_manifest([res for _, res in done], args.manifest)
    finish_skips(skip, args.skipped)
    print(f"compressed {len(done)} video(s) to {args.out_dir}; skipped {len(skip.rows)}")
    return 0
