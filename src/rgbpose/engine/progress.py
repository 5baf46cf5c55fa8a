"""Training progress lines a user can follow in a job log: every N iterations the epoch,
iteration, loss, learning rate, clips/s, loader wait and the ETA of the whole run."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def default_log_every(iters_per_epoch: int) -> int:
    """Progress-line interval: 10% of an epoch's iterations, at least 1."""
    return max(1, iters_per_epoch // 10)


def eta_seconds(elapsed_s: float, iters_done: int, iters_left: int) -> float:
    """Time left at the mean iteration time so far: ``elapsed / done * left`` (nan before the
    first iteration)."""
    if iters_done <= 0:
        return math.nan
    return elapsed_s / iters_done * iters_left


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` rounded to the second (hours unbounded); ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def progress_line(
    epoch: int, epochs: int, it: int, ipe: int, loss: float, lr: float, clips_per_s: float,
    data_s: float, eta_s: float,
) -> str:  # fmt: skip
    """``epoch 2/4 iter 30/120 loss 1.2345 lr 0.01 8.3 clips/s data 0.012 s/iter eta 0:03:12``
    (1-based epoch and iteration within the epoch)."""
    return (
        f"epoch {epoch}/{epochs} iter {it}/{ipe} loss {loss:.4f} lr {lr:.4g} "
        f"{clips_per_s:.1f} clips/s data {data_s:.3f} s/iter eta {format_duration(eta_s)}"
    )


class Progress:
    """Iteration timing of one ``train`` call and its progress lines (rank 0 only).

    Every ``every`` iterations of an epoch it emits :func:`progress_line` with: the mean loss
    per clip and the throughput (clips/s, all processes) and mean loader wait over the
    iterations since the previous line, and the ETA of the remaining iterations of the whole
    run at this call's mean iteration time (validation not counted).
    """

    def __init__(self, every: int, epochs: int, ipe: int, world_size: int,
                 emit: Callable[[str], None]):  # fmt: skip
        self.every, self.epochs, self.ipe, self.world_size = every, epochs, ipe, world_size
        self.emit = emit
        self.total_iters = epochs * ipe
        self.run_s, self.run_iters = 0.0, 0
        self.start_epoch(0)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # 1-based
        self._seen_loss, self._seen = 0.0, 0.0  # epoch stats at the previous line
        self._win_s, self._win_data, self._win_iters, self._win_clips = 0.0, 0.0, 0, 0

    def step(self, it: int, global_iter: int, clips: int, iter_s: float, data_s: float,
             lr: float, stats: torch.Tensor) -> None:  # fmt: skip
        """Record iteration ``it`` (1-based in the epoch); ``stats`` = the epoch's running
        [loss sum, correct, seen]."""
        self.run_s += iter_s
        self.run_iters += 1
        self._win_s += iter_s
        self._win_data += data_s
        self._win_iters += 1
        self._win_clips += clips
        if self.every < 1 or it % self.every:
            return
        loss_sum, _, seen = stats.tolist()
        loss = (loss_sum - self._seen_loss) / max(seen - self._seen, 1.0)
        self._seen_loss, self._seen = loss_sum, seen
        rate = self._win_clips * self.world_size / max(self._win_s, 1e-9)
        eta = eta_seconds(self.run_s, self.run_iters, self.total_iters - global_iter)
        self.emit(progress_line(self.epoch, self.epochs, it, self.ipe, loss, lr, rate,
                                self._win_data / self._win_iters, eta))  # fmt: skip
        self._win_s, self._win_data, self._win_iters, self._win_clips = 0.0, 0.0, 0, 0
