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
Videos are opened with ``rgbpose.data.video``'s opener, like everywhere else.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import struct
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from rgbpose.data.video import VideoInfo, open_reader, open_video
from rgbpose.io import (
    BadSampleError,
    SkipLog,
    atomic_path,
    remove_stale_temps,
    write_text_atomic,
)
from rgbpose.ntu import is_valid_name

from . import stage

RAW_VIDEO_SUFFIX = "_rgb.avi"


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
            vr = open_reader(tmp)
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
    w.writerow(stage.MANIFEST_HEADER)
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
    stage.add_names_file_arg(p)
    stage.add_bad_sample_args(p)
    args = p.parse_args(argv)
    from rgbpose.cli import report_error  # noqa: PLC0415

    try:
        paths = stage.collect_inputs(args.inputs, RAW_VIDEO_SUFFIX, args.names_file)
    except (OSError, ValueError) as exc:
        return report_error("rgbpose compress", exc)
    skip = SkipLog(args.on_bad_sample, stage="compress")
    # This shard's destinations only (names that are not NTU names never become outputs).
    ours = [
        f"{n}.mp4" for n in (stage.raw_stem(q, RAW_VIDEO_SUFFIX) for q in paths) if is_valid_name(n)
    ]
    for stale in remove_stale_shard_temps(args.out_dir, ours):
        print(f"compress: removed {stale} (temp file of an interrupted run)", file=sys.stderr)

    def work(path: Path) -> tuple[str, VideoInfo]:
        name = stage.sample_name_from_path(path, RAW_VIDEO_SUFFIX)
        info = compress_video(
            path, args.out_dir / f"{name}.mp4", args.height, args.crf, args.preset, args.gop
        )
        return name, info

    try:
        done = stage.run_samples(
            work, paths, skip, lambda q: stage.raw_stem(q, RAW_VIDEO_SUFFIX), args.jobs, "compress"
        )
    except BadSampleError as exc:
        return report_error("rgbpose compress", exc)
    write_manifest([res for _, res in done], args.manifest)
    stage.finish_skips(skip, args.skipped)
    print(f"compressed {len(done)} video(s) to {args.out_dir}; skipped {len(skip.rows)}")
    return 0
