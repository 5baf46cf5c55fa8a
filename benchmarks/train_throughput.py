"""Training throughput of the four full-size models on random inputs of the recipes' shapes.

DESIGN.md section 6: clips/s per GPU with bf16 autocast and channels_last_3d, and the share of the
GPU's peak reached (model FLOPs per clip x clips/s / peak). Model FLOPs per clip are counted with
``torch.utils.flop_counter.FlopCounterMode`` on one forward pass (it counts 2 FLOPs per
multiply-add of convolutions and matmuls); one training step is taken as 3x the forward
(forward + backward for activations + backward for weights).

    # GPU (H100 SXM bf16 dense peak 989 TFLOP/s; the H200 has the same compute, more memory)
    python benchmarks/train_throughput.py --device cuda --precision bf16 --channels-last \
        --out benchmarks/train_throughput_h100.tsv
    # CPU smoke check (batch 1, 1 timed step per model; about a minute on 2 cores)
    python benchmarks/train_throughput.py --device cpu

Batch defaults: the recipes' per-GPU batch on CUDA (posec3d 32, pose_only 16, rgb_only 12,
rgbpose_conv3d 6; DESIGN.md 3.8), 1 on CPU.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rgbpose.engine.config import OptimConfig
from rgbpose.engine.runtime import autocast
from rgbpose.engine.schedule import sgd
from rgbpose.models import build_model

# Input shapes per clip (DESIGN.md 3.7/3.8): pose heatmaps [17, T, 56, 56], RGB [3, 8, 224, 224]
SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "posec3d": ((17, 48, 56, 56),),
    "pose_only": ((17, 32, 56, 56),),
    "rgb_only": ((3, 8, 224, 224),),
    "rgbpose_conv3d": ((3, 8, 224, 224), (17, 32, 56, 56)),
}
RECIPE_BATCH = {"posec3d": 32, "pose_only": 16, "rgb_only": 12, "rgbpose_conv3d": 6}
FIELDS = (
    "model", "device", "batch", "precision", "channels_last", "compile", "warmup_s", "steps",
    "step_s",
    "clips_per_s", "peak_mem_gib", "fwd_gflops_per_clip", "train_tflops_per_s",
    "peak_tflops", "share_of_peak",
)  # fmt: skip


def make_inputs(name: str, batch: int, device: torch.device, channels_last: bool) -> list:
    xs = []
    for shape in SHAPES[name]:
        x = torch.randn(batch, *shape, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        xs.append(x)
    return xs


def forward_flops(model: nn.Module, name: str, device: torch.device) -> float:
    """FLOPs of one forward pass for one clip."""
    xs = make_inputs(name, 1, device, False)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*xs)
    model.train()
    return float(counter.get_total_flops())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_model(name, args.num_classes).to(device)
    flops = forward_flops(model, name, device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    batch = args.batch or (RECIPE_BATCH[name] if device.type == "cuda" else 1)
    # the engine's optimiser: fused on CUDA
    opt = sgd(model, OptimConfig(lr=1e-4, base_batch=batch, weight_decay=1e-4), 1e-4)
    mode = None if args.compile_mode == "default" else args.compile_mode
    fwd = torch.compile(model, mode=mode) if args.compile else model
    xs = make_inputs(name, batch, device, args.channels_last)
    labels = torch.randint(0, args.num_classes, (batch,), device=device)

    def step() -> None:
        with autocast(device, args.precision):
            loss = model.loss(fwd(*xs), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 40.0)
        opt.step()

    t_warm = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - t_warm  # compile time included
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    step_s = (time.perf_counter() - t0) / args.steps
    clips_per_s = batch / step_s
    train_tflops = 3 * flops * clips_per_s / 1e12
    peak = args.peak_tflops if args.peak_tflops is not None else (
        989.0 if device.type == "cuda" else None
    )  # fmt: skip
    row = {
        "model": name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": batch,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "compile": args.compile_mode if args.compile else False,
        "warmup_s": f"{warmup_s:.1f}",
        "steps": args.steps,
        "step_s": f"{step_s:.4f}",
        "clips_per_s": f"{clips_per_s:.2f}",
        "peak_mem_gib": (
            f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"
            if device.type == "cuda"
            else "NA"
        ),  # fmt: skip
        "fwd_gflops_per_clip": f"{flops / 1e9:.2f}",
        "train_tflops_per_s": f"{train_tflops:.3f}",
        "peak_tflops": "NA" if peak is None else f"{peak:g}",
        "share_of_peak": "NA" if peak is None else f"{train_tflops / peak:.4f}",
    }
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--batch", type=int, default=0, help="clips per step (0: recipe / 1 on CPU)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--channels-last", action="store_true", help="channels_last_3d model+inputs")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--compile-mode", default="default",
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        help="torch.compile mode (reduce-overhead: CUDA graphs); warmup_s includes compiling",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 GPU, 1 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5 GPU, 1 CPU)")
    p.add_argument("--num-classes", type=int, default=60)
    p.add_argument(
        "--peak-tflops", type=float, default=None,
        help="dense bf16 peak of the GPU in TFLOP/s (default 989 = H100 SXM; H200 the same)",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="TSV to write (also printed)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.steps = args.steps or (20 if gpu else 1)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    if gpu:
        torch.backends.cudnn.benchmark = True
    rows = []
    for name in args.models:
        row = bench_model(name, args, device)
        rows.append(row)
        print("\t".join(f"{k}={row[k]}" for k in ("model", "batch", "clips_per_s",
                                                   "fwd_gflops_per_clip", "peak_mem_gib",
                                                   "share_of_peak")), file=sys.stderr)  # fmt: skip
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(FIELDS), delimiter="\t", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    print(buf.getvalue(), end="")
    if args.out:
        from rgbpose.io import write_text_atomic  # noqa: PLC0415

        write_text_atomic(args.out, buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
