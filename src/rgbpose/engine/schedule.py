"""The run's schedule: the optimizer, the per-iteration learning rate (linear scaling rule,
warm-up, cosine or step decay) and the per-epoch seeds, functions of the config and the position
in the run so that a resumed epoch repeats exactly.

At each epoch start every RNG (torch, numpy, python) is seeded from ``(seed, epoch, rank)``, the
sampler shuffles with ``seed + epoch``, and DataLoader workers derive their seeds from the torch
RNG, so an epoch's data order, augmentation and dropout are a function of (seed, epoch) alone: a
run killed anywhere and rerun with the same ``work_dir`` ends with bitwise the same weights as an
uninterrupted run (on CPU; CUDA kernels may add their own nondeterminism).
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn

from rgbpose.engine.config import OptimConfig, ScheduleConfig


def scaled_lr(optim: OptimConfig, batch_size: int, world_size: int = 1) -> float:
    """Linear scaling rule: ``lr * (batch_size * world_size) / base_batch``."""
    return optim.lr * batch_size * world_size / optim.base_batch


def sgd(model: nn.Module, optim: OptimConfig, lr: float) -> torch.optim.SGD:
    """SGD over ``model``'s parameters at ``lr`` with the config's momentum, weight decay and
    Nesterov setting (``lr_at`` then sets the rate of every iteration).  On CUDA the fused
    implementation (one kernel for every parameter's update); elsewhere PyTorch's default."""
    params = list(model.parameters())
    on_cuda = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
        nesterov=optim.nesterov,
        fused=True if on_cuda else None,
    )


def iters_per_epoch(num_samples: int, repeat: int, batch_size: int, world_size: int = 1) -> int:
    """Iterations per epoch on each process: the repeated dataset is split evenly over the
    processes (DistributedSampler pads), the last batch may be short (no drop_last)."""
    per_rank = math.ceil(num_samples * repeat / world_size)
    return math.ceil(per_rank / batch_size)


def lr_at(iteration: int, base_lr: float, schedule: ScheduleConfig, iters_per_ep: int) -> float:
    """Learning rate of (0-based) ``iteration``.

    cosine: ``min_lr + 0.5 * (base_lr - min_lr) * (1 + cos(pi * it / total))`` with ``total =
    epochs * iters_per_epoch`` (reaches ``min_lr``, default 0, at the end); step: ``base_lr * gamma ** k`` where k is the
    number of milestones ``m`` with ``it >= m * iters_per_epoch``. During the first
    ``warmup_epochs * iters_per_epoch`` iterations the rate is multiplied by ``(it + 1) / W``.
    """
    total = schedule.epochs * iters_per_ep
    if schedule.kind == "cosine":
        floor = schedule.min_lr
        lr = floor + 0.5 * (base_lr - floor) * (
            1.0 + math.cos(math.pi * min(iteration, total) / total)
        )
    elif schedule.kind == "step":
        passed = sum(iteration >= m * iters_per_ep for m in schedule.milestones)
        lr = base_lr * schedule.gamma**passed
    else:  # pragma: no cover - rejected by the config loader
        raise ValueError(f"unknown schedule kind {schedule.kind!r}")
    warmup = round(schedule.warmup_epochs * iters_per_ep)
    if warmup > 0 and iteration < warmup:
        lr *= (iteration + 1) / warmup
    return lr


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Seed of one epoch on one process: distinct per rank so augmentations differ between
    processes, and a pure function of (seed, epoch, rank) so a resumed epoch repeats exactly."""
    return (seed + 1_000_003 * epoch + 7_919 * rank) % (2**31)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global RNG and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def worker_init(worker_id: int) -> None:
    """DataLoader worker init: seed numpy/random from the worker's torch seed (base seed drawn
    from the per-epoch seeded torch RNG + worker id), so worker augmentation is reproducible."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
