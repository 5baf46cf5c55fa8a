"""Report figures that no single stage owns: training curves and contact sheets of videos.

``rgbpose plot-curves LOG.csv... -o curves.png`` draws, per run, the training loss and the
validation top-1 per epoch (one column per run); ``rgbpose contact-sheet VIDEO... -o sheet.png``
tiles a few evenly spaced frames of each video, one row a video, behind a label panel (sample name
and class name).  Both are for ``snakemake --report``.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .io import BadSampleError, atomic_path
from .ntu import class_names, parse_name

# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------

NEEDED = ("epoch", "train_loss", "val_top1")


def read_train_log(path: str | os.PathLike) -> dict[str, list[float]]:
    """Columns of a training CSV as float lists (empty cells -> NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise BadSampleError(path, "training log has no epochs")
    missing = [k for k in NEEDED if k not in rows[0]]
    if missing:
        raise BadSampleError(path, f"training log lacks columns {missing}")
    return {
        k: [float(r[k]) if r[k] not in ("", None) else float("nan") for r in rows] for k in rows[0]
    }


def plot_training_curves(
    logs: Sequence[str | os.PathLike],
    out_png: str | os.PathLike,
    titles: Sequence[str] | None = None,
) -> None:
    """Loss (top row) and validation top-1 (bottom row) per epoch, one column per log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = list(titles) if titles else [Path(p).parent.name for p in logs]
    fig, axes = plt.subplots(2, len(logs), figsize=(4 * len(logs), 5), squeeze=False)
    for col, (path, title) in enumerate(zip(logs, titles)):
        log = read_train_log(path)
        ax_loss, ax_acc = axes[0][col], axes[1][col]
        ax_loss.plot(log["epoch"], log["train_loss"], marker="o")
        ax_loss.set_title(title)
        ax_loss.set_ylabel("train loss")
        # Validation runs every val_interval epochs: join the epochs that have a value.
        val = [(e, 100 * v) for e, v in zip(log["epoch"], log["val_top1"]) if v == v]
        ax_acc.plot([e for e, _ in val], [v for _, v in val], marker="o", color="C1")
        ax_acc.set_ylabel("val top-1 (%)")
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylim(0, 100)
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def cli(argv: Sequence[str] | None = None) -> int:
    """``rgbpose plot-curves LOG.csv... -o curves.png [--titles T...]``."""
    ap = argparse.ArgumentParser(
        prog="rgbpose plot-curves",
        description="Report figures that no single stage owns: training curves from "
        "``train_log.csv``.",
    )
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", required=True, type=Path)
    ap.add_argument("--titles", nargs="+")
    args = ap.parse_args(argv)
    plot_training_curves(args.logs, args.out, args.titles)
    return 0


# --------------------------------------------------------------------------------------------
# Contact sheet
# --------------------------------------------------------------------------------------------


def _label_for(path: Path) -> list[str]:
    stem = path.name
    for suffix in ("_rgb.avi", ".avi", ".mp4"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    try:
        s = parse_name(stem)
    except ValueError:
        return [path.name]
    return [stem, f"A{s.action:03d} {class_names()[s.label]}"]


def contact_sheet(
    video_paths: Sequence[str | os.PathLike],
    out_png: str | os.PathLike,
    frames_per_video: int = 4,
    labels: Sequence[str] | None = None,
    thumb_height: int = 180,
) -> np.ndarray:
    """Tile ``frames_per_video`` evenly spaced frames of each video (one row each) into a PNG.

    Each row starts with a label panel (sample name and class name, or ``labels[i]``).  Returns
    the RGB sheet; ``out_png`` is written atomically (PNG via Pillow).
    """
    import cv2

    from .data.video import read_frames, video_num_frames

    if not video_paths:
        raise ValueError("contact_sheet needs at least one video")
    rows = []
    panel_w = 260
    for i, path in enumerate(video_paths):
        n = video_num_frames(path)
        frames = read_frames(path, np.linspace(0, n - 1, frames_per_video).round().astype(int))
        h, w = frames.shape[1:3]
        tw = max(1, int(round(w * thumb_height / h)))
        thumbs = [cv2.resize(f, (tw, thumb_height), interpolation=cv2.INTER_AREA) for f in frames]
        panel = np.full((thumb_height, panel_w, 3), 255, np.uint8)
        text = [labels[i]] if labels is not None else _label_for(Path(path))
        lines: list[str] = []
        for t in text:  # wrap long class names
            words, cur = t.split(), ""
            for wd in words:
                if len(cur) + len(wd) + 1 > 26 and cur:
                    lines.append(cur)
                    cur = wd
                else:
                    cur = f"{cur} {wd}".strip()
            lines.append(cur)
        for j, line in enumerate(lines):
            cv2.putText(
                panel,
                line,
                (8, 24 + 22 * j),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
        rows.append(np.concatenate([panel, *thumbs], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    sheet = np.concatenate(rows, axis=0)
    # Pillow, not cv2.imwrite: OpenCV's bundled libpng can fail ("bad parameters to zlib") once
    # torch or mediapipe has loaded another zlib into the same process.
    from PIL import Image

    with atomic_path(out_png) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return sheet


def cli_contact_sheet(argv: Sequence[str] | None = None) -> int:
    """``rgbpose contact-sheet VIDEO... -o sheet.png [--frames 4]``."""
    ap = argparse.ArgumentParser(
        prog="rgbpose contact-sheet", description="tile video frames into a PNG"
    )
    ap.add_argument("videos", nargs="+")
    ap.add_argument("-o", "--out", required=True, type=Path)
    ap.add_argument("--frames", type=int, default=4, help="frames per video (default 4)")
    args = ap.parse_args(argv)
    contact_sheet(args.videos, args.out, frames_per_video=args.frames)
    print(f"wrote {args.out}")
    return 0
