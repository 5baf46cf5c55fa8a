"""The training loop and ``rgbpose train``: SGD + schedule, DDP via torchrun, exact resume.

``train()`` is generic over the model and the datasets: the model is any ``nn.Module`` with
``.loss(outputs, labels)`` (and optionally ``.set_epoch(epoch)``, called at the start of every
training epoch, before any batch), called by the names of its inputs (its registered contract:
``model(imgs=..., heatmap_imgs=...)``), views flattened ``[B, V, ...] -> [B*V, ...]`` first;
the datasets yield ``'label'``, ``'frame_dir'`` and those inputs shaped ``[V, ...]``.

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
* Resume granularity is one epoch: every epoch's seeds are a function of (seed, epoch, rank)
  (``rgbpose.engine.schedule``), so a run killed anywhere and rerun with the same ``work_dir``
  ends with bitwise the same weights as an uninterrupted run (on CPU). ``last.pt`` is resumed only
  when nothing that defines the run changed; a forced rerun starts fresh
  (``rgbpose.engine.checkpoint``: when a run resumes).
* Deterministic data errors are not retried (the Snakemake rules have ``retries``): ``cli`` runs
  inside ``runstate.failure_guard``, which writes a ``BadSampleError`` (also from a DataLoader
  worker or mid-epoch) or a ``ValueError`` raised before the training loop to ``failed.json``
  with the hash of the command's inputs; the same command with the same inputs then fails within
  a second with the same message, changed inputs run again (``rgbpose.engine.runstate``).
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
from torch.utils.data import DataLoader, Dataset

from rgbpose.data.batch import BatchTransform, collate
from rgbpose.engine.checkpoint import (
    checkpoint_meta,
    cpu_state,
    load_init,
    restore_training_state,
    resume_state,
    save_checkpoint,
    training_state,
)
from rgbpose.engine.config import RunConfig, dump_run_config
from rgbpose.engine.distributed import (
    DistInfo,
    barrier,
    dist_info_from_env,
    gather_shards,
    process_group,
    rank0_decides,
    resolve_device,
    shard_loader,
    sync_buffers,
    train_loader,
    wrap_model,
)
from rgbpose.engine.metrics import val_metrics
from rgbpose.engine.progress import Progress, default_log_every
from rgbpose.engine.runstate import (
    FINISHED_JSON,
    _fingerprint,
    failure_guard,
    fingerprint_hash,
    stash_state,
    utc_stamp,
)
from rgbpose.engine.runtime import (
    autocast,
    device_transform,
    fused_probs,
    head_outputs,
    infer,
    input_keys,
    place_model,
    prepare_inputs,
)
from rgbpose.engine.schedule import (
    epoch_seed,
    iters_per_epoch,
    lr_at,
    scaled_lr,
    seed_everything,
    sgd,
)
from rgbpose.io import BadSampleError, write_text_atomic

EXIT_TIME_BUDGET = 3
CSV_FIELDS = (
    "epoch", "iters", "lr", "train_loss", "train_top1", "val_top1", "val_top5", "val_mean_class",
    "time_s",
)  # fmt: skip


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


def _validate(
    model: nn.Module, val_set: Dataset, cfg: RunConfig, info: DistInfo, device: torch.device,
    collate_fn: Callable, transform: BatchTransform | None,
) -> dict[str, float]:  # fmt: skip
    """Validation metrics over the whole set; under DDP each rank scores a disjoint shard (no
    padding duplicates) and the results are gathered."""
    loader, indices = shard_loader(val_set, cfg, info, device, collate_fn)
    scores = infer(
        model,
        loader,
        device,
        precision=cfg.precision,
        channels_last=cfg.channels_last,
        batch_transform=transform,
    )
    labels, probs = gather_shards(indices, scores["labels"], scores["probs"], info)
    return val_metrics(probs, labels)


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
    device = resolve_device(device, info)
    with process_group(info, device):
        if num_classes is None:
            num_classes = getattr(model, "num_classes", None)
        if batch_transform is None:
            batch_transform = device_transform(run_cfg)
        if time_budget_s is None:
            time_budget_s = run_cfg.time_budget_s
        return _train(
            run_cfg, model, train_set, val_set, work_dir, out_ckpt, init, device, info,
            model_name=model_name or run_cfg.model.name, num_classes=num_classes,
            collate_fn=collate_fn or collate, batch_transform=batch_transform,
            time_budget_s=time_budget_s, stop_after_epoch=stop_after_epoch,
            epoch_end_hook=epoch_end_hook, tensorboard=tensorboard, log_every=log_every,
            t_start=t_start,
        )  # fmt: skip


def _train(
    cfg: RunConfig, model: nn.Module, train_set: Dataset, val_set: Dataset | None,
    work_dir: Path, out_ckpt: Path, init: str | os.PathLike | None, device: torch.device,
    info: DistInfo, *, model_name: str, num_classes: int | None, collate_fn: Callable,
    batch_transform: BatchTransform | None, time_budget_s: float | None,
    stop_after_epoch: int | None, epoch_end_hook: Callable[[int], None] | None,
    tensorboard: bool, log_every: int | None, t_start: float,
) -> TrainResult:  # fmt: skip
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
    state, why_fresh = resume_state(last_path, fingerprint, out_ckpt, finished_path,
                                    (best_path, csv_path, finished_path))  # fmt: skip
    barrier(info)
    if why_fresh is not None and info.is_main:
        stale = stash_state(work_dir)
        _log(info, f"{why_fresh}: starting fresh, old state kept in {stale}")
    barrier(info)
    if state is not None:
        model.load_state_dict(state["model"], strict=True)
    elif init is not None:
        load_init(model, init)

    place_model(model, device, cfg.channels_last)
    base_lr = scaled_lr(cfg.optim, cfg.batch_size, info.world_size)
    optimizer = sgd(model, cfg.optim, base_lr)
    start_epoch, global_iter, best_top1, best_epoch = 0, 0, None, None
    history: list[dict[str, Any]] = []
    if state is not None:
        start_epoch, global_iter, best_top1, best_epoch, history = restore_training_state(
            state, optimizer
        )
        _log(info, f"resumed from {last_path} at epoch {start_epoch}/{sched.epochs}")

    fwd = wrap_model(model, device, info)
    if cfg.compile:
        # reduce-overhead: CUDA graphs (static shapes; the short last batch of an epoch is one
        # more graph); compile time is paid in the first iterations and logged below
        fwd = torch.compile(fwd, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)

    repeated = RepeatDataset(train_set, sched.repeat) if sched.repeat > 1 else train_set
    loader, sampler = train_loader(repeated, cfg, info, device, collate_fn)
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
    every = default_log_every(ipe) if log_every is None else int(log_every)
    if info.is_main:
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
            if hasattr(model, "set_epoch"):  # an epoch-dependent model or loss (DRSR's sharpness)
                model.set_epoch(epoch)
            desc = f"epoch {epoch + 1}/{sched.epochs}"
            if progress is not None:
                progress.start_epoch(epoch + 1)
            global_iter, stats, lr = _train_epoch(
                fwd, model, loader, optimizer, cfg, base_lr, ipe, global_iter, device,
                batch_transform, writer, desc if show_bar else None, progress, every,
                info if cfg.compile and epoch == start_epoch else None,
            )  # fmt: skip
            if info.distributed:
                dist.all_reduce(stats)
            loss_sum, correct, seen = stats.tolist()
            if not math.isfinite(loss_sum):
                raise FloatingPointError(
                    f"training diverged: non-finite loss in epoch {epoch + 1} (lr {lr:g}); "
                    "lower optim.lr or check the inputs"
                )
            sync_buffers(model, info)
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
                        meta = checkpoint_meta(cfg, model_name, num_classes, epoch + 1,
                                               best_top1, "best_val", trained_labels)  # fmt: skip
                        save_checkpoint({"model": cpu_state(model), "meta": meta}, best_path)
            row["time_s"] = round(time.perf_counter() - t0, 3)
            history.append(row)
            epoch_times.append(time.perf_counter() - t0)
            if info.is_main:
                last = training_state(
                    model, optimizer, epoch=epoch + 1, global_iter=global_iter, base_lr=base_lr,
                    ipe=ipe, best_top1=best_top1, best_epoch=best_epoch, history=history,
                    fingerprint=fingerprint,
                )  # fmt: skip
                save_checkpoint(last, last_path)
                _write_csv(history, csv_path)
                if writer is not None:
                    writer.add_scalar("train/epoch_loss", row["train_loss"], global_iter)
                    writer.add_scalar("train/epoch_top1", row["train_top1"], global_iter)
                    writer.flush()
            _log(info, "epoch {epoch}/{n}: loss {train_loss:.4f} train top1 {train_top1:.3f}"
                 .format(n=sched.epochs, **row)
                 + (f" val top1 {row['val_top1']:.3f}" if "val_top1" in row else "")
                 + f" ({row['time_s']:.1f} s)")  # fmt: skip
            barrier(info)
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
            meta = checkpoint_meta(cfg, model_name, num_classes, sched.epochs,
                                   _last_val(history), "last", trained_labels)  # fmt: skip
            final = {"model": cpu_state(model), "meta": meta}
        save_checkpoint(final, out_ckpt)
        write_text_atomic(out_ckpt.with_suffix(".yaml"), dump_run_config(cfg))
        finished = {"fingerprint_hash": fingerprint_hash(fingerprint), "out": str(out_ckpt),
                    "time": utc_stamp()}  # fmt: skip
        write_text_atomic(finished_path, json.dumps(finished, indent=2) + "\n")
        _log(info, f"wrote {out_ckpt} ({final['meta']['selected']} epoch "
                   f"{final['meta']['epoch']}, val top1 {final['meta']['val_top1']})")  # fmt: skip
    barrier(info)
    return TrainResult("finished", sched.epochs, global_iter, best_top1, out_ckpt)


def _train_epoch(
    fwd: nn.Module, model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
    cfg: RunConfig, base_lr: float, ipe: int, global_iter: int, device: torch.device,
    batch_transform: BatchTransform | None, writer: Any, progress_desc: str | None,
    progress: Progress | None = None, log_every: int = 1, compile_info: DistInfo | None = None,
) -> tuple[int, torch.Tensor, float]:  # fmt: skip
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
    keys = input_keys(model)
    t_prev = time.perf_counter()
    for it, batch in enumerate(batches, 1):
        t_ready = time.perf_counter()
        lr = lr_at(global_iter, base_lr, cfg.schedule, ipe)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if batch_transform is not None:
            batch = batch_transform(batch, device)
        inputs, views = prepare_inputs(batch, device, keys, cfg.channels_last)
        labels = batch["label"].to(device, non_blocking=True).repeat_interleave(views)
        with autocast(device, cfg.precision):
            outputs = fwd(**inputs)
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
                 torch.full((), float(n), dtype=torch.float64, device=device)]
            )  # fmt: skip
        if compile_info is not None and it == 1:
            loss.item()  # wait for the first step: compiling happens there
            _log(compile_info, f"torch.compile ({cfg.compile_mode}): first step took "
                               f"{time.perf_counter() - t_prev:.1f} s (compile included)")  # fmt: skip
        # No host sync per iteration (it stalls the GPU queue): TensorBoard gets the loss every
        # log_every iterations, as the progress lines do.
        if writer is not None and (it % log_every == 0 or it == ipe):
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


def _out_of_time(
    t_start: float, epoch_times: Sequence[float], budget: float, info: DistInfo,
    device: torch.device,
) -> bool:  # fmt: skip
    """True when another epoch (mean duration so far) would not fit; rank 0 decides for all."""
    elapsed = time.perf_counter() - t_start
    return rank0_decides(elapsed + float(np.mean(epoch_times)) > budget, info, device)


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
    p.add_argument(
        "--frame-store", default=None,
        help="the training store of the pipeline: <name>.frames (rgbpose frame-store) for RGB, "
        "<name>.npz (rgbpose depth-store) for drsr",
    )  # fmt: skip
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
        from rgbpose.data.datasets import build_dataset  # noqa: PLC0415
        from rgbpose.engine.config import (  # noqa: PLC0415
            check_model_data,
            load_run_config,
            parse_set_args,
        )
        from rgbpose.io import load_pickle  # noqa: PLC0415
        from rgbpose.models import build_model  # noqa: PLC0415

        cfg = load_run_config(args.config, parse_set_args(args.overrides))
        pcfg = cfg.data
        num_classes = args.num_classes or cfg.num_classes
        if num_classes is None:
            ann = load_pickle(args.ann)
            if not isinstance(ann, dict) or "annotations" not in ann:
                raise BadSampleError(args.ann, "not an annotation pickle (no 'annotations' key)")
            num_classes = infer_num_classes(ann["annotations"])
        train_set = build_dataset(pcfg, args.ann, f"{args.split}_train", "train", args.video_dir,
                                  num_classes=num_classes, frame_store=args.frame_store)  # fmt: skip
        # the model against the data again, now that the annotations' layout is known
        check_model_data(cfg, args.config, getattr(train_set, "layout", None))
        val_set = None
        if not args.no_val:
            val_set = build_dataset(pcfg, args.ann, f"{args.split}_val", "val", args.video_dir,
                                    num_classes=num_classes, frame_store=args.frame_store)  # fmt: skip
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
