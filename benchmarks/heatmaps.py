"""Benchmark: PoseC3D heatmap generation, ours vs a per-pixel reference loop (DESIGN.md 6).

The clip is PoseC3D's test input: 2 persons, 17 COCO joints, 48 frames, a 64x64 canvas,
sigma 0.6, flip-test doubled (96 maps of 17 channels).  Keypoints follow a standing skeleton
with arm swing and jitter, scores 0.3-1 with some joints missing; fixed seed.

Rows (clips/s, higher is better):

* ``loop``: the formula written as plain loops (person, frame, joint, then every pixel of the
  3-sigma window with ``math.exp``), max-merged, then the mirrored copy -- the baseline;
* ``pyskl_numpy``: PYSKL's own structure (Python loops over persons/frames/joints, numpy per
  window), for reference;
* ``ours_numpy``: ``rgbpose.data.heatmaps.generate_pose_target(double=True)``, what the data
  loader runs;
* ``torch_cpu`` / ``torch_cuda``: ``batch_heatmaps_torch(..., flip_perm=...)`` on a batch of 16
  clips (what ``heatmaps_to_device`` runs on the training device).

Every implementation is checked against the loop (max abs diff <= 1e-4) before it is timed.
Usage: ``python benchmarks/heatmaps.py [--out benchmarks/heatmaps_results.tsv]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from rgbpose.data.heatmaps import (
    EPS,
    batch_heatmaps_torch,
    channel_flip_perm,
    generate_pose_target,
)
from rgbpose.io import write_text_atomic
from rgbpose.layouts import COCO17

M, T, V, SIZE, SIGMA = 2, 48, 17, 64, 0.6
TOLERANCE = 1e-4

# Standing COCO-17 skeleton, unit height, centred at the hips' midpoint height.
TEMPLATE = np.array(
    [
        (0.0, -0.45), (-0.03, -0.48), (0.03, -0.48), (-0.07, -0.46), (0.07, -0.46),
        (-0.15, -0.30), (0.15, -0.30), (-0.20, -0.10), (0.20, -0.10), (-0.22, 0.08),
        (0.22, 0.08), (-0.10, 0.05), (0.10, 0.05), (-0.11, 0.28), (0.11, 0.28),
        (-0.12, 0.50), (0.12, 0.50),
    ],
    dtype=np.float64,
)  # fmt: skip


def realistic_clip(
    seed: int = 0,
    persons: int = M,
    frames: int = T,
    canvas: tuple[int, int] = (SIZE, SIZE),
    height: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``[persons, frames, 17, 2]`` (canvas pixels) and scores, deterministic."""
    rng = np.random.default_rng(seed)
    h, w = canvas
    kp = np.zeros((persons, frames, V, 2), np.float32)
    t = np.arange(frames)[:, None]
    for p in range(persons):
        scale = height * h * rng.uniform(0.9, 1.1)
        centre = np.array([w * (p + 1) / (persons + 1), h * 0.5])
        pose = np.broadcast_to(TEMPLATE, (frames, V, 2)).copy()
        swing = 0.12 * np.sin(2 * np.pi * t / rng.uniform(16, 40) + rng.uniform(0, 6))
        pose[:, [7, 9], 1] -= swing * np.array([1.0, 2.0])  # left arm waves
        pose[:, [8, 10], 0] += swing * np.array([0.5, 1.0])  # right arm swings out
        drift = np.cumsum(rng.normal(0, 0.01, (frames, 1, 2)), axis=0)
        kp[p] = (pose + drift) * scale + centre + rng.normal(0, 0.4, (frames, V, 2))
    score = rng.uniform(0.3, 1.0, (persons, frames, V)).astype(np.float32)
    missing = rng.random((persons, frames, V)) < 0.05
    kp[missing] = 0
    score[missing] = 0
    return kp, score


def loop_heatmaps(kp: np.ndarray, score: np.ndarray, shape, sigma: float) -> np.ndarray:
    """The formula as plain per-pixel loops (per person, frame, joint, window pixel)."""
    h, w = shape
    m, t, v, _ = kp.shape
    out = np.zeros((t, v, h, w), np.float32)
    two_var = 2 * sigma**2
    for p in range(m):
        for f in range(t):
            for j in range(v):
                s = float(score[p, f, j])
                if s < EPS:
                    continue
                mx, my = float(kp[p, f, j, 0]), float(kp[p, f, j, 1])
                x0, x1 = max(int(mx - 3 * sigma), 0), min(int(mx + 3 * sigma) + 1, w)
                y0, y1 = max(int(my - 3 * sigma), 0), min(int(my + 3 * sigma) + 1, h)
                plane = out[f, j]
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        val = s * math.exp(-((x - mx) ** 2 + (y - my) ** 2) / two_var)
                        if val > plane[y, x]:
                            plane[y, x] = val
    perm = np.asarray(COCO17.flip_index)
    return np.concatenate([out, out[:, perm, :, ::-1]])


def pyskl_numpy_heatmaps(kp: np.ndarray, score: np.ndarray, shape, sigma: float) -> np.ndarray:
    """PYSKL's structure: loops over frames/joints/persons, one numpy patch per window."""
    h, w = shape
    m, t, v, _ = kp.shape
    out = np.zeros((t, v, h, w), np.float32)
    for f in range(t):
        for j in range(v):
            arr = out[f, j]
            for p in range(m):
                s = score[p, f, j]
                if s < EPS:
                    continue
                mx, my = kp[p, f, j]
                x0, x1 = max(int(mx - 3 * sigma), 0), min(int(mx + 3 * sigma) + 1, w)
                y0, y1 = max(int(my - 3 * sigma), 0), min(int(my + 3 * sigma) + 1, h)
                x = np.arange(x0, x1, 1, np.float32)
                y = np.arange(y0, y1, 1, np.float32)
                if not (len(x) and len(y)):
                    continue
                y = y[:, None]
                patch = np.exp(-((x - mx) ** 2 + (y - my) ** 2) / 2 / sigma**2) * s
                arr[y0:y1, x0:x1] = np.maximum(arr[y0:y1, x0:x1], patch)
    perm = np.asarray(COCO17.flip_index)
    return np.concatenate([out, out[:, perm, :, ::-1]])


def time_interleaved(fns: dict[str, object], min_time: float, rounds: int = 5) -> dict:
    """Seconds per call of each function, measured in interleaved rounds.

    Each round times every function for ``min_time / rounds`` seconds, one after another, so a
    change in machine load hits all of them alike; returns per function the list of per-round
    means (callers take medians, and medians of per-round ratios).
    """
    for fn in fns.values():
        fn()  # warm-up
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n, start = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time / rounds:
                    break
            out[name].append(elapsed / n)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/heatmaps_results.tsv")
    parser.add_argument("--batch", type=int, default=16, help="clips per torch batch")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (per core)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    kp, score = realistic_clip(args.seed)
    shape = (SIZE, SIZE)
    reference = loop_heatmaps(kp, score, shape, SIGMA)
    perm = channel_flip_perm(COCO17).tolist()

    # name -> (device, clips per call, function returning [2T, C, H, W] of the last clip)
    impls: dict[str, tuple[str, int, object]] = {
        "loop": ("cpu", 1, lambda: loop_heatmaps(kp, score, shape, SIGMA)),
        "pyskl_numpy": ("cpu", 1, lambda: pyskl_numpy_heatmaps(kp, score, shape, SIGMA)),
        "ours_numpy": (
            "cpu",
            1,
            lambda: generate_pose_target(kp, score, shape, sigma=SIGMA, double=True),
        ),
    }
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        kp_t = torch.from_numpy(kp)[None].repeat(args.batch, 1, 1, 1, 1).to(device)
        sc_t = torch.from_numpy(score)[None].repeat(args.batch, 1, 1, 1).to(device)

        def batched(kp_t=kp_t, sc_t=sc_t, device=device):
            # As heatmaps_to_device: flip copies scattered directly, [2N, C, T, H, W].
            hm = batch_heatmaps_torch(kp_t, sc_t, shape, SIGMA, flip_perm=perm)
            if device == "cuda":
                torch.cuda.synchronize()
            return torch.cat([hm[-2], hm[-1]], dim=1).permute(1, 0, 2, 3)

        impls[f"torch_{device}"] = (device, args.batch, batched)

    diffs = {}
    for name, (_, _, fn) in impls.items():
        result = fn()
        result = result.cpu().numpy() if isinstance(result, torch.Tensor) else result
        diffs[name] = float(np.abs(np.asarray(result, np.float32) - reference).max())
        if diffs[name] > TOLERANCE:
            raise SystemExit(f"{name}: max abs diff {diffs[name]:.2e} > {TOLERANCE}")
    times = time_interleaved({k: v[2] for k, v in impls.items()}, args.min_time * len(impls))
    rows: list[dict[str, object]] = []
    for name, (device, batch, _) in impls.items():
        per_clip = np.array(times[name]) / batch
        rows.append(
            {
                "impl": name,
                "device": device,
                "batch": batch,
                "clips_per_s": float(1 / np.median(per_clip)),
                "ms_per_clip": float(1e3 * np.median(per_clip)),
                "max_abs_diff": diffs[name],
                "speedup_vs_loop": float(np.median(np.array(times["loop"]) / per_clip)),
                "speedup_vs_pyskl_numpy": float(
                    np.median(np.array(times["pyskl_numpy"]) / per_clip)
                ),
            }
        )
    cols = list(rows[0])
    header = (
        f"# clip: {M} persons, {V} joints, {T} frames, {SIZE}x{SIZE}, sigma {SIGMA}, flip-doubled;"
        f" torch {torch.__version__}, threads {torch.get_num_threads()}, numpy {np.__version__},"
        f" {platform.processor() or platform.machine()}"
    )
    lines = [header, "\t".join(cols)]
    for row in rows:
        lines.append(
            "\t".join(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols)
        )
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
