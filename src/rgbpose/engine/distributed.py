"""Multi-process training under torchrun: process coordinates (rank, world size), each
process's device, the process group, each rank's share of the data (the training sampler,
validation shards and their gathering) and keeping ranks in step (DDP wrapping, barriers, rank
0's decisions and buffers broadcast)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from rgbpose.engine.schedule import worker_init

if TYPE_CHECKING:
    from rgbpose.engine.config import RunConfig


@dataclass(frozen=True)
class DistInfo:
    """Process coordinates under torchrun (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info_from_env() -> DistInfo:
    """Read torchrun's environment; a plain ``python`` run is rank 0 of 1."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def resolve_device(device: str | torch.device | None, info: DistInfo) -> torch.device:
    """``device`` (default: CUDA when available, else CPU); a bare ``cuda`` becomes this
    process's GPU (``LOCAL_RANK`` under torchrun), made the current CUDA device."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank if info.distributed else 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Broadcast rank 0's buffers (BN running stats) so every rank holds identical state."""
    if info.distributed:
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)


@contextlib.contextmanager
def process_group(info: DistInfo, device: torch.device) -> Iterator[None]:
    """Under torchrun, join or create the process group (nccl on CUDA, gloo on CPU) unless one
    exists; a group created here is destroyed on exit."""
    created_group = False
    if info.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created_group = True
    try:
        yield
    finally:
        if created_group:
            dist.destroy_process_group()


def wrap_model(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """``model`` in DistributedDataParallel under torchrun; ``model`` itself otherwise."""
    if not info.distributed:
        return model
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def rank0_decides(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank."""
    if info.distributed:
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.broadcast(t, src=0)
        flag = bool(t.item())
    return flag


def train_loader(
    dataset: Dataset, cfg: RunConfig, info: DistInfo, device: torch.device, collate_fn: Callable
) -> tuple[DataLoader, DistributedSampler]:
    """This rank's training loader and its sampler: one sampler for 1 or N processes (padded to
    an even split); it shuffles with ``cfg.seed + epoch`` (``set_epoch``). No drop_last."""
    sampler = DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed
    )
    loader = _loader(dataset, cfg, device, collate_fn, sampler=sampler, drop_last=False)
    return loader, sampler


def shard_loader(
    dataset: Dataset, cfg: RunConfig, info: DistInfo, device: torch.device, collate_fn: Callable
) -> tuple[DataLoader, list[int]]:
    """A loader over this rank's disjoint shard of ``dataset`` (every ``world_size``-th item, no
    padding duplicates), in order, and the shard's indices (for ``gather_shards``)."""
    n = len(dataset)  # type: ignore[arg-type]
    indices = list(range(info.rank, n, info.world_size))
    loader = _loader(Subset(dataset, indices), cfg, device, collate_fn, shuffle=False)
    return loader, indices


def _loader(
    dataset: Dataset, cfg: RunConfig, device: torch.device, collate_fn: Callable, **kwargs: Any
) -> DataLoader:
    """A DataLoader with the run's batch size and workers (seeded by ``worker_init``), pinned
    host memory on CUDA (the copies to the GPU are non-blocking) and ``prefetch_factor`` batches
    ready per worker.  Workers are not persistent: each epoch's workers are seeded from that
    epoch's seed, which is what makes a resumed run repeat an uninterrupted one."""
    extra = {"prefetch_factor": cfg.prefetch_factor} if cfg.num_workers > 0 else {}
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        collate_fn=collate_fn,
        worker_init_fn=worker_init,
        pin_memory=device.type == "cuda",
        **extra,
        **kwargs,
    )


def gather_shards(
    indices: list[int], labels: np.ndarray, probs: dict[str, np.ndarray], info: DistInfo
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every rank's scored shard (dataset ``indices``, ``labels``, ``{head: probs}``), gathered
    and put back in dataset order; a single process keeps its own."""
    if info.distributed:
        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, (indices, labels, probs))
        order = np.concatenate([np.asarray(g[0], np.int64) for g in gathered])
        labels = np.concatenate([g[1] for g in gathered])[np.argsort(order)]
        probs = {
            h: np.concatenate([g[2][h] for g in gathered if len(g[1])])[np.argsort(order)]
            for h in gathered[0][2]
        }
    return labels, probs
