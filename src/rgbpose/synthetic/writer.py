"""Writing the dataset: ``<name>_rgb.avi`` + ``<name>.skeleton`` per sample, optionally NTU's
masked depth ``<depth_dir>/<name>/MDepth-%08d.png`` (``synthetic.depth``), the metadata file,
and the ``rgbpose synthesize`` command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rgbpose.io import atomic_path, write_text_atomic
from rgbpose.skeleton_file import write_skeleton

from .config import SynthConfig, sample_names
from .depth import render_depth, write_depth_frames
from .render import render_sample


def write_video(frames: np.ndarray, dst: str | os.PathLike, fps: float, crf: int = 18) -> None:
    """Encode RGB ``frames`` [T,H,W,3] to H.264 (libx264, yuv420p) at ``dst``, atomically."""
    import ffmpeg
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    with atomic_path(dst) as tmp:
        stream = (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)
            .output(
                str(tmp), vcodec="libx264", pix_fmt="yuv420p", preset="veryfast", crf=crf, threads=1
            )
            .global_args("-hide_banner", "-nostdin", "-v", "error")
            .overwrite_output()
        )
        try:
            stream.run(
                cmd=imageio_ffmpeg.get_ffmpeg_exe(),
                input=np.ascontiguousarray(frames).tobytes(),
                capture_stdout=True,
                capture_stderr=True,
            )
        except ffmpeg.Error as exc:
            raise RuntimeError(
                f"ffmpeg failed writing {dst}: {exc.stderr.decode(errors='replace')}"
            ) from None


def _write_one(args: tuple[SynthConfig, str, str | None, str | None]) -> dict[str, Any]:
    cfg, name, out_dir, depth_dir = args
    if out_dir is None:  # depth only
        write_depth_frames(render_depth(cfg, name), Path(depth_dir) / name)
        return {"name": name}
    frames, seq, meta = render_sample(cfg, name)
    out = Path(out_dir)
    write_skeleton(seq, out / f"{name}.skeleton")
    write_video(frames, out / f"{name}_rgb.avi", cfg.fps)
    if depth_dir is not None:
        write_depth_frames(render_depth(cfg, name), Path(depth_dir) / name)
    return meta


def synthesize(
    cfg: SynthConfig,
    out_dir: str | os.PathLike | None,
    names: Iterable[str] | None = None,
    progress: bool = False,
    jobs: int = 1,
    depth_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Write ``<name>_rgb.avi`` + ``<name>.skeleton`` for ``names`` (default: all) into ``out_dir``.

    With ``depth_dir`` also NTU's masked depth, ``<depth_dir>/<name>/MDepth-%08d.png`` (16-bit,
    512x424, mm, background 0; one per RGB frame, 1-based; ``rgbpose.synthetic.depth``).  The
    depth is an extra output only: the videos, skeletons and metadata are the same without it.
    ``out_dir`` None writes the depth alone (returns ``[{"name": ...}]``, no metadata file).

    Returns per-sample metadata (name, label, class, real body ids, noise bodies) in name order
    and writes it, with the config, to ``<out_dir>/synthetic_meta.json``
    (``{"config": {...}, "samples": [...]}``).  ``jobs`` > 1 renders in worker processes.
    """
    all_names = sample_names(cfg)
    todo = all_names if names is None else sorted(names)
    valid = set(all_names)
    bad = [n for n in todo if n not in valid]
    if bad:
        raise ValueError(f"not samples of this synthetic config: {bad[:5]}")
    if out_dir is None and depth_dir is None:
        raise ValueError("nothing to write: give an output folder or a depth folder")
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    depth = None if depth_dir is None else str(depth_dir)
    work = [(cfg, n, None if out is None else str(out), depth) for n in todo]
    show = progress and sys.stderr.isatty()
    if jobs > 1 and len(work) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(jobs, len(work))) as pool:
            it = pool.imap(_write_one, work, chunksize=4)
            metas = list(_progress(it, len(work), show))
    else:
        metas = list(_progress(map(_write_one, work), len(work), show))
    if out is None:
        return metas
    doc = {"config": _config_dict(cfg), "samples": metas}
    write_text_atomic(out / "synthetic_meta.json", json.dumps(doc, indent=1) + "\n")
    return metas


def _config_dict(cfg: SynthConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def _progress(it: Iterable, total: int, show: bool) -> Iterable:
    if not show:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="synthesize", leave=False)


def _load_config_file(path: str) -> dict[str, Any]:
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of SynthConfig keys")
    return data


def cli_synthesize(argv: Sequence[str] | None = None) -> int:
    """``rgbpose synthesize -o OUT_DIR [--config F] [--seed N] [--width W] [--height H]
    [--depth-dir DIR] ...``."""
    ap = argparse.ArgumentParser(
        prog="rgbpose synthesize",
        description="The embedded synthetic NTU-like dataset (DESIGN.md section 9).",
    )
    ap.add_argument("-o", "--out-dir", type=Path, help="videos, skeletons and metadata")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", help="YAML/JSON file with SynthConfig keys")
    src.add_argument("--config-json", help="SynthConfig keys as an inline JSON object")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="write only these samples")
    ap.add_argument(
        "--depth-dir",
        type=Path,
        help="also write NTU masked depth DIR/<name>/MDepth-%%08d.png (off by default)",
    )
    ap.add_argument(
        "--depth-only", action="store_true", help="write only the depth (needs --depth-dir)"
    )
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    args = ap.parse_args(argv)
    if args.depth_only != (args.out_dir is None) or (args.depth_only and not args.depth_dir):
        ap.error("give -o OUT_DIR, or --depth-only with --depth-dir DIR")
    try:
        if args.config_json:
            d = json.loads(args.config_json)
        else:
            d = _load_config_file(args.config) if args.config else {}
        for key in ("seed", "width", "height", "frames"):
            if getattr(args, key) is not None:
                d[key] = getattr(args, key)
        cfg = SynthConfig.from_dict(d)
        t0 = time.perf_counter()
        metas = synthesize(
            cfg,
            args.out_dir,
            names=args.only,
            progress=True,
            jobs=args.jobs,
            depth_dir=args.depth_dir,
        )
    except (ValueError, OSError) as exc:
        from rgbpose.cli import report_error  # noqa: PLC0415

        # a bad config/--only value is a usage error (2); an unreadable/unwritable file is 1
        return report_error("rgbpose synthesize", exc, 2 if isinstance(exc, ValueError) else 1)
    if args.depth_only:
        print(f"wrote the depth of {len(metas)} samples to {args.depth_dir} "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        return 0
    noisy = sum(1 for m in metas if m["noise_bodies"])
    print(
        f"wrote {len(metas)} samples ({noisy} with noise bodies) to {args.out_dir} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0
