"""Report figures that no single stage owns: training curves from ``train_log.csv``.

``rgbpose plot-curves LOG.csv... -o curves.png`` draws, per run, the training loss and the
validation top-1 per epoch (one column per run), for ``snakemake --report``.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Sequence
from pathlib import Path

from .io import BadSampleError, atomic_path

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
    ap = argparse.ArgumentParser(prog="rgbpose plot-curves", description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", required=True, type=Path)
    ap.add_argument("--titles", nargs="+")
    args = ap.parse_args(argv)
    plot_training_curves(args.logs, args.out, args.titles)
    return 0
