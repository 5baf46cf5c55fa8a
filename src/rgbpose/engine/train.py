"""Training loop: SGD + per-iteration schedule, DDP via torchrun, epoch-granular exact resume.

``train()`` is generic over the model and the datasets: the model is any ``nn.Module`` with
``.loss(outputs, labels)``; the datasets yield the contract's items (``'label'``, ``'frame_dir'``
and ``'imgs'`` and/or ``'heatmap_imgs'`` shaped ``[V, ...]``). A two-input model is called
``model(imgs, heatmap_imgs)``, a one-input model ``model(x)``; views are flattened
``[B, V, ...] -> [B*V, ...]`` first.

Files in ``work_dir`` (undeclared in Snakemake, so they survive a failed job)::

    last.pt         full state after the latest epoch (model, optimizer, schedule position,
                    epoch, RNG states, history): a rerun resumes from it
    best.pt         {'model', 'meta'} of the epoch with the best validation top-1
    train_log.csv   one row per epoch: epoch, iters, lr, train_loss, train_top1, val_top1,
                    val_top5, val_mean_class, time_s (val_top1 of the two-stream model = 1:1
                    fusion of its heads)
    tb/             TensorBoard event files
    config.yaml     resolved run config
    finished.json   {fingerprint_hash, out, time}: written (atomically) after ``out_ckpt``
    failed.json     {fingerprint_hash, error, type, path, problem[, bad_file, bad_file_sha256],
                    time}: the deterministic data error the same inputs failed with (CLI only)
    stale-<UTC YYYYmmddTHHMMSS>/
                    an earlier run's last.pt, best.pt, train_log.csv, tb/, config.yaml and
                    finished.json, moved here when a run starts fresh over them (never deleted)

Decisions:

* ``out_ckpt`` holds the best-validation-top-1 epoch (ties: the earlier epoch); without a
  validation set, the last epoch. (PYSKL reports the last epoch; with a cosine schedule to 0 the
  two are usually the same or within noise.) ``meta['selected']`` says which.
* Resume granularity is one epoch. At each epoch start every RNG (torch, numpy, python) is seeded
  from ``(seed, epoch, rank)``, the sampler shuffles with ``seed + epoch``, and DataLoader workers
  derive their seeds from the torch RNG, so an epoch's data order, augmentation and dropout are a
  function of (seed, epoch) alone: a run killed anywhere and rerun with the same ``work_dir``
  ends with bitwise the same weights as an uninterrupted run (on CPU; CUDA kernels may add
  their own nondeterminism).
* Resume state is reused only when everything that defines the run is unchanged. ``last.pt`` stores
  a fingerprint (``rgbpose.engine.runstate``): the config (minus ``num_workers`` and
  ``time_budget_s``), the training and validation sets' sizes and content hashes
  (``dataset.content_hash()``: sha256 of every sample's name, label, keypoints, scores,
  total_frames, frame_inds...; datasets without that method count by size only; video bytes are not
  hashed), the sha256 of the ``init`` checkpoint's bytes, the model spec (name, num_classes,
  overrides, hash of the state-dict keys and shapes) and the world size. On any difference training
  starts fresh, the old state goes to ``stale-<time>/`` and the log says what differs, e.g.
  ``work/last.pt does not match this run (annotations changed; config changed: optim.lr): starting
  fresh, old state kept in work/stale-20250101T120000``. A ``last.pt`` of an older version (no full
  fingerprint) is not resumed either.
* Forced rerun: ``finished.json`` present but ``out_ckpt`` gone means the output was deleted
  on purpose (``snakemake --forcerun``), so the run starts fresh (``previous run finished and
  its output <out> is gone (forced rerun): starting fresh, old state kept in ...``) instead of
  resuming the finished state. A killed run has no ``finished.json`` and resumes.
* Deterministic data errors are not retried (the Snakemake rules have ``retries``). ``cli``
  runs inside ``runstate.FailureGuard``: a ``BadSampleError`` (also from a DataLoader worker or
  mid-epoch) or a ``ValueError`` raised before the training loop is written to
  ``failed.json`` with the hash of the command's inputs (``runstate.failure_guard``: run config
  and annotation file contents, init checkpoint, split and the other data/model arguments, world
  size) and re-raised. The same command with the same inputs then fails within a second,
  before loading data or building a model, with the same message plus ``(same inputs failed
  before; not retrying: fix the input or delete <work>/failed.json)``. Changed inputs (or a
  changed file that the error named, e.g. a video) remove ``failed.json`` and run again.
* Progress (``rgbpose.engine.progress``): rank 0 prints ``[rgbpose train] epoch 2/4 iter 30/120 loss
  1.2345 lr 0.01 8.3 clips/s data 0.012 s/iter eta 0:03:12`` every ``log_every`` iterations (default
  10% of an epoch): mean loss, clips/s (all processes) and loader wait since the previous line, ETA
  of the whole remaining run at the mean iteration time. A tqdm bar is added when stderr is a TTY.
* Time budget: after each epoch, if the elapsed time plus the mean epoch time would exceed the
  budget, the run stops (``last.pt`` is already saved) and the CLI exits with
  ``EXIT_TIME_BUDGET`` (3); rerunning resumes. Each invocation runs at least one epoch.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from rgbpose.engine.config import (
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    dump_run_config,
    load_run_config,
    parse_set_args,
)
from rgbpose.engine.evaluate import (
    BatchTransform,
    autocast,
    default_collate,
    fused_probs,
    head_outputs,
    infer,
    metrics,
    prepare_inputs,
    read_checkpoint_file,
)
from rgbpose.engine.progress import Progress, default_log_every
from rgbpose.engine.runstate import (
    FINISHED_JSON,
    _fingerprint,
    failure_guard,
    fingerprint_changes,
    fingerprint_hash,
    stash_state,
    utc_stamp,
)
from rgbpose.io import BadSampleError, atomic_path, write_text_atomic

EXIT_TIME_BUDGET = 3
CSV_FIELDS = (
    "epoch", "iters", "lr", "train_loss", "train_top1", "val_top1", "val_top5", "val_mean_class",
    "time_s",
)  # fmt: skip


# ----------------------------------------------------------------------------- schedule
def scaled_lr(optim: OptimConfig, batch_size: int, world_size: int = 1) -> float:
    """Linear scaling rule: ``lr * (batch_size * world_size) / base_batch``."""
    return optim.lr * batch_size * world_size / optim.base_batch


def iters_per_epoch(num_samples: int, repeat: int, batch_size: int, world_size: int = 1) -> int:
    """Iterations per epoch on each process: the repeated dataset is split evenly over the
    processes (DistributedSampler pads), the last batch may be short (no drop_last)."""
    per_rank = math.ceil(num_samples * repeat / world_size)
    return math.ceil(per_rank / batch_size)


def lr_at(iteration: int, base_lr: float, schedule: ScheduleConfig, iters_per_ep: int) -> float:
    """Learning rate of (0-based) ``iteration``.

    cosine: ``0.5 * base_lr * (1 + cos(pi * it / total))`` with ``total = epochs *
    iters_per_epoch`` (reaches 0 at the end); step: ``base_lr * gamma ** k`` where k is the
    number of milestones ``m`` with ``it >= m * iters_per_epoch``. During the first
    ``warmup_epochs * iters_per_epoch`` iterations the rate is multiplied by ``(it + 1) / W``.
    """
    total = schedule.epochs * iters_per_ep
    if schedule.kind == "cosine":
        lr = 0.5 * base_lr * (1.0 + math.cos(math.pi * min(iteration, total) / total))
    elif schedule.kind == "step":
        passed = sum(iteration >= m * iters_per_ep for m in schedule.milestones)
        lr = base_lr * schedule.gamma**passed
    else:  # pragma: no cover - rejected by the config loader
        raise ValueError(f"unknown schedule kind {schedule.kind!r}")
    warmup = round(schedule.warmup_epochs * iters_per_ep)
    if warmup > 0 and iteration < warmup:
        lr *= (iteration + 1) / warmup
    return lr


# ----------------------------------------------------------------------------- distributed
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


def _resolve_device(device: str | torch.device | None, info: DistInfo) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank if info.distributed else 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


# ----------------------------------------------------------------------------- RNG / seeding
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


def _u8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.uint8).copy())


def rng_state() -> dict[str, Any]:
    """All global RNG states as uint8 tensors and plain numbers (``weights_only``-loadable)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": _u8(np.asarray(keys, np.uint32)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached),
        "python_version": int(version),
        "python_internal": _u8(np.asarray(py_internal, np.uint32)),
        "python_gauss": py_gauss,
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().view(np.uint32)
    np.random.set_state(
        ("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"],
         state["numpy_cached_gaussian"])
    )  # fmt: skip
    internal = tuple(int(v) for v in state["python_internal"].numpy().view(np.uint32))
    random.setstate((state["python_version"], internal, state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(obj: dict[str, Any], dst: str | os.PathLike) -> None:
    """``torch.save`` to a temp file, renamed onto ``dst`` only when complete."""
    with atomic_path(dst) as tmp:
        torch.save(obj, tmp)


def load_init(model: nn.Module, path: str | os.PathLike) -> None:
    """Load ``path`` (``{'model': state_dict}`` or a bare state dict) into ``model`` strictly."""
    ckpt = read_checkpoint_file(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise BadSampleError(path, "no model state dict in the checkpoint")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BadSampleError(path, f"does not fit the model: {exc}") from exc


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- helpers
class RepeatDataset(Dataset):
    """``times`` passes over ``dataset`` as one dataset (PYSKL's RepeatDataset), so one epoch of
    the recipes' schedule = ``repeat`` passes, shuffled together."""

    def __init__(self, dataset: Dataset, times: int):
        self.dataset, self.times = dataset, int(times)
        self._n = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._n * self.times

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index % self._n]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of ``train``: ``status`` 'finished' (out_ckpt written), 'time_budget' (stopped to
    fit the budget; rerun to resume) or 'stopped' (``stop_after_epoch`` reached)."""

    status: Literal["finished", "time_budget", "stopped"]
    epoch: int
    global_iter: int
    best_val_top1: float | None
    out_ckpt: Path | None


def _log(info: DistInfo, msg: str) -> None:
    if info.is_main:
        print(f"[rgbpose train] {msg}", flush=True)


def _bar_safe_log(msg: str) -> None:
    """``_log`` while a tqdm bar is on screen (printed above the bar)."""
    from tqdm import tqdm  # noqa: PLC0415

    tqdm.write(f"[rgbpose train] {msg}", file=sys.stdout)


def _write_csv(rows: list[dict[str, Any]], dst: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in CSV_FIELDS})
    write_text_atomic(dst, buf.getvalue())


def _device_transform(cfg: RunConfig) -> BatchTransform | None:
    """Heatmaps built on the training device when ``data.heatmaps_on_device`` is set."""
    if not cfg.data.get("heatmaps_on_device"):
        return None
    from rgbpose.data.datasets import PipelineConfig, batch_transform  # noqa: PLC0415

    return batch_transform(PipelineConfig.from_dict(cfg.data))


def _sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Broadcast rank 0's buffers (BN running stats) so every rank holds identical state."""
    if info.distributed:
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)


def _validate(
    model: nn.Module,
    val_set: Dataset,
    cfg: RunConfig,
    info: DistInfo,
    device: torch.device,
    collate_fn: Callable,
    transform: BatchTransform | None,
) -> dict[str, float]:
    """Validation metrics over the whole set; under DDP each rank scores a disjoint shard (no
    padding duplicates) and the results are gathered."""
    n = len(val_set)  # type: ignore[arg-type]
    indices = list(range(info.rank, n, info.world_size))
    loader = DataLoader(
        Subset(val_set, indices),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        collate_fn=collate_fn,
        worker_init_fn=worker_init,
        pin_memory=device.type == "cuda",
    )
    _, labels, probs = infer(
        model,
        loader,
        device,
        precision=cfg.precision,
        channels_last=cfg.channels_last,
        batch_transform=transform,
    )
    if info.distributed:
        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, (indices, labels, probs))
        order = np.concatenate([np.asarray(g[0], np.int64) for g in gathered])
        labels = np.concatenate([g[1] for g in gathered])[np.argsort(order)]
        probs = {
            h: np.concatenate([g[2][h] for g in gathered if len(g[1])])[np.argsort(order)]
            for h in gathered[0][2]
        }
    heads = {h: torch.from_numpy(p) for h, p in probs.items()}
    fused = (
        next(iter(heads.values())) if len(heads) == 1 else torch.stack(list(heads.values())).mean(0)
    )
    out = metrics(fused.numpy(), labels)
    if len(heads) > 1:
        for h, p in probs.items():
            out[f"top1_{h}"] = metrics(p, labels)["top1"]
    return out


# ----------------------------------------------------------------------------- train
def train(
    run_cfg: RunConfig,
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    work_dir: str | os.PathLike,
    out_ckpt: str | os.PathLike,
    init: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    model_name: str | None = None,
    num_classes: int | None = None,
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
    batch_transform: BatchTransform | None = None,
    time_budget_s: float | None = None,
    stop_after_epoch: int | None = None,
    epoch_end_hook: Callable[[int], None] | None = None,
    tensorboard: bool = True,
    log_every: int | None = None,
) -> TrainResult:
    """Train ``model`` per ``run_cfg``; resume from ``work_dir/last.pt`` when it exists.

    Writes the files listed in the module docstring (rank 0 only) and, when all epochs are done,
    ``out_ckpt`` = ``{'model': state_dict, 'meta': {model_name, num_classes, overrides, epoch,
    val_top1, selected, config}}`` (best validation top-1, or the last epoch without
    ``val_set``) plus the resolved config as ``out_ckpt`` with suffix ``.yaml``.

    ``init``: checkpoint loaded strictly into ``model`` before training (ignored on resume).
    ``collate_fn`` defaults to a generic stacking collate; ``batch_transform(batch, device)``
    (default: on-device heatmaps when ``data.heatmaps_on_device``) runs before each forward.
    ``stop_after_epoch`` / ``epoch_end_hook`` exist for tests (simulate an interruption).
    ``log_every``: print a progress line every that many iterations (default: 10% of an
    epoch, at least 1; 0: none).
    Under torchrun (``WORLD_SIZE > 1``) it joins/creates the process group (gloo on CPU, nccl on
    CUDA) and wraps the model in DistributedDataParallel.
    """
    t_start = time.perf_counter()
    work_dir = Path(work_dir)
    out_ckpt = Path(out_ckpt)
    info = dist_info_from_env()
    device = _resolve_device(device, info)
    created_group = False
    if info.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created_group = True
    if num_classes is None:
        num_classes = getattr(model, "num_classes", None)
    if batch_transform is None:
        batch_transform = _device_transform(run_cfg)
    if time_budget_s is None:
        time_budget_s = run_cfg.time_budget_s
    try:
        return _train(
            run_cfg,
            model,
            train_set,
            val_set,
            work_dir,
            out_ckpt,
            init,
            device,
            info,
            model_name=model_name or run_cfg.model.name,
            num_classes=num_classes,
            collate_fn=collate_fn or default_collate,
            batch_transform=batch_transform,
            time_budget_s=time_budget_s,
            stop_after_epoch=stop_after_epoch,
            epoch_end_hook=epoch_end_hook,
            tensorboard=tensorboard,
            log_every=log_every,
            t_start=t_start,
        )
    finally:
        if created_group:
            dist.destroy_process_group()


def _train(
    cfg: RunConfig,
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    work_dir: Path,
    out_ckpt: Path,
    init: str | os.PathLike | None,
    device: torch.device,
    info: DistInfo,
    *,
    model_name: str,
    num_classes: int | None,
    collate_fn: Callable,
    batch_transform: BatchTransform | None,
    time_budget_s: float | None,
    stop_after_epoch: int | None,
    epoch_end_hook: Callable[[int], None] | None,
    tensorboard: bool,
    log_every: int | None,
    t_start: float,
) -> TrainResult:
    sched = cfg.schedule
    train_len = len(train_set)  # type: ignore[arg-type]
    # The classes the model saw (rgbpose predict says which a checkpoint knows).
    labels = getattr(train_set, "labels", None)
    trained_labels = None if labels is None else sorted({int(x) for x in labels})
    if train_len == 0:
        raise ValueError("the training set is empty")
    if val_set is not None and len(val_set) == 0:  # type: ignore[arg-type]
        val_set = None
    if cfg.precision == "bf16" and device.type != "cuda":
        warnings.warn("precision bf16 applies on CUDA only; running fp32 on CPU", stacklevel=2)
    last_path, best_path = work_dir / "last.pt", work_dir / "best.pt"
    csv_path, finished_path = work_dir / "train_log.csv", work_dir / FINISHED_JSON
    fingerprint = _fingerprint(
        cfg, train_set, val_set, init, model, model_name, num_classes, info.world_size
    )

    # ---- resume or fresh start: every rank decides from the same files, then rank 0 moves
    # the old state aside (never deleted, never mixed into the new run)
    state: dict[str, Any] | None = None
    why_fresh = None
    if finished_path.exists() and not out_ckpt.exists():
        why_fresh = f"previous run finished and its output {out_ckpt} is gone (forced rerun)"
    elif last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        changes = fingerprint_changes(state.get("fingerprint"), fingerprint)
        if changes:
            why_fresh = f"{last_path} does not match this run ({'; '.join(changes)})"
            state = None
    elif any(p.exists() for p in (best_path, csv_path, finished_path)):
        why_fresh = f"no resumable {last_path}"
    if info.distributed:
        dist.barrier()
    if why_fresh is not None and info.is_main:
        stale = stash_state(work_dir)
        _log(info, f"{why_fresh}: starting fresh, old state kept in {stale}")
    if info.distributed:
        dist.barrier()
    if state is not None:
        model.load_state_dict(state["model"], strict=True)
    elif init is not None:
        load_init(model, init)

    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    base_lr = scaled_lr(cfg.optim, cfg.batch_size, info.world_size)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=base_lr,
        momentum=cfg.optim.momentum,
        weight_decay=cfg.optim.weight_decay,
        nesterov=cfg.optim.nesterov,
    )
    start_epoch, global_iter, best_top1, best_epoch = 0, 0, None, None
    history: list[dict[str, Any]] = []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, global_iter = int(state["epoch"]), int(state["global_iter"])
        best_top1, best_epoch = state.get("best_top1"), state.get("best_epoch")
        history = list(state.get("history", []))
        set_rng_state(state["rng"])
        _log(info, f"resumed from {last_path} at epoch {start_epoch}/{sched.epochs}")

    fwd: nn.Module = model
    if info.distributed:
        fwd = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        fwd = torch.compile(fwd)

    repeated = RepeatDataset(train_set, sched.repeat) if sched.repeat > 1 else train_set
    # One sampler for 1 or N processes; it shuffles with seed + epoch (set_epoch).
    sampler = DistributedSampler(
        repeated, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed
    )
    loader = DataLoader(
        repeated,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=collate_fn,
        worker_init_fn=worker_init,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )
    ipe = len(loader)
    assert ipe == iters_per_epoch(train_len, sched.repeat, cfg.batch_size, info.world_size)

    writer = None
    if info.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(work_dir / "config.yaml", dump_run_config(cfg))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

            # purge_step drops events logged after the resumed point by the interrupted run
            writer = SummaryWriter(str(work_dir / "tb"), purge_step=global_iter or None)
    show_bar = info.is_main and sys.stderr.isatty()
    progress = None
    if info.is_main:
        every = default_log_every(ipe) if log_every is None else int(log_every)
        progress = Progress(every, sched.epochs, ipe, info.world_size,
                             _bar_safe_log if show_bar else lambda m: _log(info, m))  # fmt: skip
    _log(info, f"{model_name}: {train_len} train clips x repeat {sched.repeat}, "
               f"{ipe} iters/epoch, world size {info.world_size}, batch {cfg.batch_size}/process, "
               f"lr {base_lr:g}, device {device}")  # fmt: skip

    status: Literal["finished", "time_budget", "stopped"] = "finished"
    epoch_times: list[float] = []
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, sched.epochs):
            t0 = time.perf_counter()
            seed_everything(epoch_seed(cfg.seed, epoch, info.rank))
            sampler.set_epoch(epoch)
            desc = f"epoch {epoch + 1}/{sched.epochs}"
            if progress is not None:
                progress.start_epoch(epoch + 1)
            global_iter, stats, lr = _train_epoch(
                fwd, model, loader, optimizer, cfg, base_lr, ipe, global_iter, device,
                batch_transform, writer, desc if show_bar else None, progress,
            )  # fmt: skip
            if info.distributed:
                dist.all_reduce(stats)
            loss_sum, correct, seen = stats.tolist()
            if not math.isfinite(loss_sum):
                raise FloatingPointError(
                    f"training diverged: non-finite loss in epoch {epoch + 1} (lr {lr:g}); "
                    "lower optim.lr or check the inputs"
                )
            _sync_buffers(model, info)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "iters": global_iter,
                "lr": lr,
                "train_loss": loss_sum / seen,
                "train_top1": correct / seen,
            }
            validate_now = (epoch + 1) % cfg.val_interval == 0 or epoch + 1 == sched.epochs
            if val_set is not None and validate_now:
                vm = _validate(model, val_set, cfg, info, device, collate_fn, batch_transform)
                row.update(
                    val_top1=vm["top1"], val_top5=vm["top5"], val_mean_class=vm["mean_class"]
                )
                if writer is not None:
                    for k, v in vm.items():
                        writer.add_scalar(f"val/{k}", v, global_iter)
                if best_top1 is None or vm["top1"] > best_top1:
                    best_top1, best_epoch = float(vm["top1"]), epoch + 1
                    if info.is_main:
                        meta = _meta(cfg, model_name, num_classes, epoch + 1, best_top1,
                                     "best_val", trained_labels)  # fmt: skip
                        save_checkpoint({"model": _cpu_state(model), "meta": meta}, best_path)
            row["time_s"] = round(time.perf_counter() - t0, 3)
            history.append(row)
            epoch_times.append(time.perf_counter() - t0)
            if info.is_main:
                save_checkpoint(
                    {
                        "model": _cpu_state(model),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": {"global_iter": global_iter, "base_lr": base_lr,
                                      "iters_per_epoch": ipe},
                        "epoch": epoch + 1,
                        "global_iter": global_iter,
                        "best_top1": best_top1,
                        "best_epoch": best_epoch,
                        "history": history,
                        "rng": rng_state(),
                        "fingerprint": fingerprint,
                        "fingerprint_hash": fingerprint_hash(fingerprint),
                    },
                    last_path,
                )  # fmt: skip
                _write_csv(history, csv_path)
                if writer is not None:
                    writer.add_scalar("train/epoch_loss", row["train_loss"], global_iter)
                    writer.add_scalar("train/epoch_top1", row["train_top1"], global_iter)
                    writer.flush()
            _log(info, "epoch {epoch}/{n}: loss {train_loss:.4f} train top1 {train_top1:.3f}"
                 .format(n=sched.epochs, **row)
                 + (f" val top1 {row['val_top1']:.3f}" if "val_top1" in row else "")
                 + f" ({row['time_s']:.1f} s)")  # fmt: skip
            if info.distributed:
                dist.barrier()
            if epoch_end_hook is not None:
                epoch_end_hook(epoch + 1)
            if epoch + 1 == sched.epochs:
                break
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                status = "stopped"
                break
            if time_budget_s is not None and _out_of_time(
                t_start, epoch_times, time_budget_s, info, device
            ):
                status = "time_budget"
                _log(info, f"time budget {time_budget_s:g} s: stopping after epoch {epoch + 1}; "
                           f"state saved in {last_path}, rerun the same command to resume")  # fmt: skip
                break
    finally:
        if writer is not None:
            writer.close()

    done = start_epoch >= sched.epochs or (status == "finished")
    if not done:
        return TrainResult(status, epoch + 1, global_iter, best_top1, None)

    if info.is_main:
        if best_path.exists() and val_set is not None:
            final = torch.load(best_path, map_location="cpu", weights_only=True)
        else:
            meta = _meta(cfg, model_name, num_classes, sched.epochs, _last_val(history), "last",
                         trained_labels)  # fmt: skip
            final = {"model": _cpu_state(model), "meta": meta}
        save_checkpoint(final, out_ckpt)
        write_text_atomic(out_ckpt.with_suffix(".yaml"), dump_run_config(cfg))
        finished = {"fingerprint_hash": fingerprint_hash(fingerprint), "out": str(out_ckpt),
                    "time": utc_stamp()}  # fmt: skip
        write_text_atomic(finished_path, json.dumps(finished, indent=2) + "\n")
        _log(info, f"wrote {out_ckpt} ({final['meta']['selected']} epoch "
                   f"{final['meta']['epoch']}, val top1 {final['meta']['val_top1']})")  # fmt: skip
    if info.distributed:
        dist.barrier()
    return TrainResult("finished", sched.epochs, global_iter, best_top1, out_ckpt)


def _train_epoch(
    fwd: nn.Module,
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    cfg: RunConfig,
    base_lr: float,
    ipe: int,
    global_iter: int,
    device: torch.device,
    batch_transform: BatchTransform | None,
    writer: Any,
    progress_desc: str | None,
    progress: Progress | None = None,
) -> tuple[int, torch.Tensor, float]:
    """One pass over ``loader``: per-iteration lr, forward (autocast), loss, backward, clipping,
    SGD step. Returns the new global iteration, this process's [loss sum, correct, seen] (float64)
    and the last lr."""
    model.train()
    stats = torch.zeros(3, dtype=torch.float64, device=device)
    batches: Any = loader
    if progress_desc is not None:
        from tqdm import tqdm  # noqa: PLC0415

        batches = tqdm(loader, desc=progress_desc, leave=False)
    lr = base_lr
    t_prev = time.perf_counter()
    for it, batch in enumerate(batches, 1):
        t_ready = time.perf_counter()
        lr = lr_at(global_iter, base_lr, cfg.schedule, ipe)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if batch_transform is not None:
            batch = batch_transform(batch, device)
        xs, views = prepare_inputs(batch, device, cfg.channels_last)
        labels = batch["label"].to(device, non_blocking=True).repeat_interleave(views)
        with autocast(device, cfg.precision):
            outputs = fwd(*xs)
            loss = model.loss(outputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        global_iter += 1
        with torch.no_grad():
            pred = fused_probs(head_outputs(outputs, "logits")).argmax(-1)
            n = labels.numel()
            stats += torch.stack(
                [loss.detach().double() * n, (pred == labels).sum().double(),
                 torch.tensor(float(n), dtype=torch.float64, device=device)]
            )  # fmt: skip
        if writer is not None:
            writer.add_scalar("train/loss", loss.item(), global_iter)
            writer.add_scalar("train/lr", lr, global_iter)
        if progress_desc is not None:
            batches.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.3g}")
        if progress is not None:
            clips = len(batch["label"])
            progress.step(it, global_iter, clips, time.perf_counter() - t_prev,
                          t_ready - t_prev, lr, stats)  # fmt: skip
        t_prev = time.perf_counter()
    return global_iter, stats, lr


def _last_val(history: list[dict[str, Any]]) -> float | None:
    vals = [r["val_top1"] for r in history if r.get("val_top1") is not None]
    return float(vals[-1]) if vals else None


def _meta(
    cfg: RunConfig,
    model_name: str,
    num_classes: int | None,
    epoch: int,
    val_top1: float | None,
    selected: str,
    trained_labels: list[int] | None = None,
) -> dict[str, Any]:
    meta = {
        "model_name": model_name,
        "num_classes": None if num_classes is None else int(num_classes),
        "overrides": dict(cfg.model.overrides),
        "epoch": int(epoch),
        "val_top1": None if val_top1 is None else float(val_top1),
        "selected": selected,
        "config": cfg.to_dict(),
    }
    if trained_labels is not None:
        meta["trained_labels"] = list(trained_labels)  # rgbpose.predict.TRAINED_LABELS_KEY
    return meta


def _out_of_time(
    t_start: float, epoch_times: Sequence[float], budget: float, info: DistInfo,
    device: torch.device,
) -> bool:  # fmt: skip
    """True when another epoch (mean duration so far) would not fit; rank 0 decides for all."""
    elapsed = time.perf_counter() - t_start
    stop = elapsed + float(np.mean(epoch_times)) > budget
    if info.distributed:
        flag = torch.tensor([1.0 if stop else 0.0], device=device)
        dist.broadcast(flag, src=0)
        stop = bool(flag.item())
    return stop


# ----------------------------------------------------------------------------- CLI
def infer_num_classes(annotations: Sequence[dict[str, Any]]) -> int:
    """Number of classes from the annotations: ``max label + 1``; when every sample has an NTU
    name the count is rounded up to the NTU dataset size (60, else 120), so a model trained on a
    subset of actions keeps NTU's label space (and checkpoints stay comparable)."""
    from rgbpose.ntu import is_valid_name  # noqa: PLC0415

    if not annotations:
        raise ValueError("no annotations to infer the number of classes from")
    n = max(int(a["label"]) for a in annotations) + 1
    if all(is_valid_name(str(a.get("frame_dir", ""))) for a in annotations):
        return 60 if n <= 60 else 120
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgbpose train",
        description="Train a model (single process, or one process per GPU under torchrun). "
        "Resumes from WORK/last.pt; exits with code 3 when stopped by --time-budget.",
    )
    p.add_argument("--config", required=True, help="run-config YAML (config/models/*.yaml)")
    p.add_argument("--ann", required=True, help="annotation pickle")
    p.add_argument("--split", required=True, help="benchmark, e.g. xsub: uses <split>_train/_val")
    p.add_argument("--video-dir", default=None, help="folder of <name>.mp4 (RGB models)")
    p.add_argument("--work-dir", required=True, help="resume state, logs, TensorBoard")
    p.add_argument("--out", required=True, help="final checkpoint (best validation top-1)")
    p.add_argument("--init", default=None, help="checkpoint to initialise from (strict)")
    p.add_argument(
        "--num-classes", type=int, default=None,
        help="default: config num_classes, else max label + 1 rounded up to 60/120 for NTU names",
    )  # fmt: skip
    p.add_argument("--time-budget", type=float, default=None, help="seconds; exit 3 to resume")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--no-val", action="store_true", help="skip validation (final = last epoch)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. optim.lr=0.1 schedule.epochs=2")  # fmt: skip
    return p


def cli(argv: list[str] | None = None) -> int:
    """``rgbpose train``: 0 when finished, ``EXIT_TIME_BUDGET`` (3) when stopped to resume."""
    args = build_parser().parse_args(argv)
    # failed.json: the same inputs failing again on a data error fail at once, not retried
    with failure_guard(args):
        from rgbpose.data.datasets import PipelineConfig, build_dataset, collate  # noqa: PLC0415
        from rgbpose.io import load_pickle  # noqa: PLC0415
        from rgbpose.models import build_model  # noqa: PLC0415

        cfg = load_run_config(args.config, parse_set_args(args.overrides))
        pcfg = PipelineConfig.from_dict(cfg.data)
        num_classes = args.num_classes or cfg.num_classes
        if num_classes is None:
            ann = load_pickle(args.ann)
            if not isinstance(ann, dict) or "annotations" not in ann:
                raise BadSampleError(args.ann, "not an annotation pickle (no 'annotations' key)")
            num_classes = infer_num_classes(ann["annotations"])
        train_set = build_dataset(pcfg, args.ann, f"{args.split}_train", "train", args.video_dir,
                                  num_classes=num_classes)  # fmt: skip
        val_set = None
        if not args.no_val:
            val_set = build_dataset(pcfg, args.ann, f"{args.split}_val", "val", args.video_dir,
                                    num_classes=num_classes)  # fmt: skip
        torch.manual_seed(cfg.seed)  # deterministic initial weights
        model = build_model(cfg.model.name, num_classes, **cfg.model.overrides)
        result = train(
            cfg, model, train_set, val_set, args.work_dir, args.out, init=args.init,
            device=args.device, model_name=cfg.model.name, num_classes=num_classes,
            collate_fn=collate, time_budget_s=args.time_budget,
        )  # fmt: skip
    if result.status == "time_budget":
        print(
            f"rgbpose train: stopped by the time budget after epoch {result.epoch}; rerun the "
            f"same command to resume from {Path(args.work_dir) / 'last.pt'}",
            file=sys.stderr,
        )
        return EXIT_TIME_BUDGET
    return 0


if __name__ == "__main__":
    sys.exit(cli())
