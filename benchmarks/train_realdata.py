"""Real-data training throughput: is this machine loader-bound? (issue 13, item 4)

Builds the real-clip dataset in a temp folder -- the real NTU clip
(``../shared/data/real/ntu_sample.avi``, 1920x1080, 72 frames, one person) through our compress
stage (540p H.264, GOP 32), hard-linked under ``--videos`` NTU sample names (labels spread over
the 60 classes), its mediapipe poses as every sample's annotation (``xsub_train`` = those names,
``xsub_val`` = 60 more), and the training frame store (built once, hard-linked under every name)
-- then runs ``rgbpose train`` as a subprocess, one epoch of ``--clips`` clips per model
(``schedule.repeat`` = clips / videos, no validation), with the recipe's run config
(``config/models/ntu_<model>.yaml``: batch, bf16, channels_last) and ``num_workers=--workers``.
Each RGB model runs twice: RGB decoded from the 540p videos (row ``<model>``, source ``video``)
and read from the frame store (row ``<model>_store``, ``vs_video`` = its clips/s over the video
row of the same run); ``pose_only`` reads keypoints only (source ``keypoints``).

Measured from the trainer's progress lines (``... N clips/s data X s/iter ...``, every 10% of
the epoch), skipping the first interval (worker start-up, cuDNN autotuning):

* ``clips_per_s``: clips trained per second between the first and the last progress line.
* ``epoch_clips_per_s``: clips / the epoch's ``time_s`` (train_log.csv), start-up included
  (``n/a`` when the run was stopped early by ``--max-iters`` / ``--max-seconds``).
* ``data_wait_share``: time the training loop waited for the DataLoader / wall time, same
  interval.
* ``gpu_util_pct``: mean ``sm`` % of ``nvidia-smi dmon -s u -d 1`` over the same interval
  (``n/a`` without nvidia-smi).
* ``iters`` (iterations run), ``wall_s`` (the whole subprocess, model build included),
  ``vs_synthetic`` (clips/s over the synthetic-input clips/s of the same model in the
  ``--synthetic`` TSV written by ``benchmarks/train_throughput.py``).

How to read it: ``data_wait_share`` near 0 with high GPU utilisation = GPU-bound (the loader
keeps up; only a faster model step helps); a large ``data_wait_share`` (and low GPU utilisation)
= loader-bound: add workers (``num_workers``) or train from the frame store (``rgbpose
frame-store``; compare the ``_store`` row).  Issue 13's target: with <= 16 workers, real-data
clips/s >= 0.9x the synthetic-input clips/s of ``benchmarks/train_throughput.py`` (same
precision / channels_last / batch) for rgb_only, pose_only and rgbpose_conv3d.

    # GPU (H200, 16 cores): synthetic reference first, then the real-data runs (~2,400 clips each)
    python benchmarks/train_throughput.py --device cuda --precision bf16 --channels-last \\
        --models rgb_only pose_only rgbpose_conv3d --out /tmp/train_throughput.tsv
    python benchmarks/train_realdata.py --device cuda --workers 15 \\
        --synthetic /tmp/train_throughput.tsv --out benchmarks/train_realdata_results.tsv
    # CPU smoke run (~2-3 minutes on 2 cores)
    python benchmarks/train_realdata.py --device cpu --workers 1 --videos 12 --clips 12 \\
        --batch 2 --models rgb_only pose_only --out /tmp/train_realdata_smoke.tsv
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_CLIP = ROOT.parent / "shared/data/real/ntu_sample.avi"
MODELS = ("rgb_only", "pose_only", "rgbpose_conv3d")
RGB_MODELS = frozenset({"rgb_only", "rgbpose_conv3d"})
NUM_CLASSES = 60
FIELDS = (
    "model", "source", "batch", "workers", "clips_per_s", "epoch_clips_per_s",
    "data_wait_share", "gpu_util_pct", "iters", "wall_s", "vs_video", "vs_synthetic",
)  # fmt: skip

PROGRESS_RE = re.compile(
    r"epoch (\d+)/\d+ iter (\d+)/(\d+) loss \S+ lr \S+ ([\d.]+) clips/s data ([\d.]+) s/iter"
)
HEADER_RE = re.compile(
    r"(\d+) train clips x repeat (\d+), (\d+) iters/epoch, world size (\d+), batch (\d+)/process"
)
STORE_FALLBACK = "reading the video instead"


# ----------------------------------------------------------------------------- dataset
def ntu_name(i: int) -> str:
    """A distinct NTU sample name for every ``i``; action (label + 1) = ``i % 60 + 1``."""
    k = i // NUM_CLASSES
    performer, setup, rep = k % 40 + 1, (k // 40) % 17 + 1, (k // 680) % 2 + 1
    camera = (k // 1360) % 3 + 1
    if k >= 4080:
        raise ValueError(f"at most {4080 * NUM_CLASSES} distinct names")
    return f"S{setup:03d}C{camera:03d}P{performer:03d}R{rep:03d}A{i % NUM_CLASSES + 1:03d}"


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def make_dataset(
    root: Path, videos: int, store: bool, real_clip: Path = REAL_CLIP,
    poses: Path | None = None, save_poses: Path | None = None,
) -> str:  # fmt: skip
    """Write ``root/videos/<name>.mp4``, ``root/ann.pkl`` and (``store``) ``root/frames``.
    ``poses``: a pose dict saved by ``save_poses`` (a machine without mediapipe)."""
    from rgbpose.data.framestore import store_path  # noqa: PLC0415
    from rgbpose.io import dump_pickle, load_pickle  # noqa: PLC0415
    from rgbpose.preprocess.compress import compress_video  # noqa: PLC0415
    from rgbpose.preprocess.framestore import build_store  # noqa: PLC0415

    if not real_clip.is_file():
        raise SystemExit(f"the real clip is missing: {real_clip}")
    t0 = time.perf_counter()
    clip = root / "real.mp4"
    info = compress_video(real_clip, clip, height=540, gop=32)
    if poses is not None:
        found = load_pickle(poses)
    else:
        from rgbpose.preprocess.poses import extract_mediapipe  # noqa: PLC0415

        found = extract_mediapipe(clip)
    if save_poses is not None:
        dump_pickle(found, save_poses)
    names = [ntu_name(i) for i in range(videos + NUM_CLASSES)]
    train, val = names[:videos], names[videos:]
    vdir = root / "videos"
    vdir.mkdir(exist_ok=True)
    annos = []
    for name in names:
        _link(clip, vdir / f"{name}.mp4")
        annos.append(
            {
                "frame_dir": name,
                "label": int(name[-3:]) - 1,
                "img_shape": found["img_shape"],
                "original_shape": found["img_shape"],
                "total_frames": int(found["keypoint"].shape[1]),
                "keypoint": found["keypoint"].astype(np.float16),
                "keypoint_score": found["keypoint_score"].astype(np.float16),
                "layout": "coco17",
            }
        )
    dump_pickle({"split": {"xsub_train": train, "xsub_val": val}, "annotations": annos},
                root / "ann.pkl")  # fmt: skip
    desc = (
        f"video {info.width}x{info.height} {info.frames} frames, {clip.stat().st_size / 1e3:.0f} KB"
    )
    if store:
        sdir = root / "frames"
        sdir.mkdir(exist_ok=True)
        first = store_path(sdir, names[0])
        _, region, nbytes, _ = build_store(annos[0], vdir / f"{names[0]}.mp4", first)
        for name in names[1:]:
            _link(first, store_path(sdir, name))
        x1, y1, x2, y2 = region
        desc += f"; frame store region {x2 - x1}x{y2 - y1}, {nbytes / 1e3:.0f} KB"
    print(f"[train_realdata] dataset: {videos} train videos ({desc}), built in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)  # fmt: skip
    return desc


# ----------------------------------------------------------------------------- GPU monitor
class GpuMonitor:
    """``nvidia-smi dmon -s u -d 1`` in the background: (arrival time, sm %) samples."""

    def __init__(self, index: int):
        self.samples: list[tuple[float, float]] = []
        self.proc: subprocess.Popen | None = None
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return
        self.proc = subprocess.Popen(
            [exe, "dmon", "-s", "u", "-d", "1", "-i", str(index)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        col = None
        for line in self.proc.stdout:
            parts = line.split()
            if line.startswith("#"):
                cols = line.lstrip("#").split()
                if "sm" in cols and col is None:
                    col = cols.index("sm")
                continue
            if col is None or len(parts) <= col:
                continue
            try:
                self.samples.append((time.monotonic(), float(parts[col])))
            except ValueError:  # "-": not supported / no sample
                continue

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def mean(self, t0: float, t1: float) -> float | None:
        if self.proc is None:
            return None
        inside = [v for t, v in self.samples if t0 <= t <= t1]
        return float(np.mean(inside)) if inside else None


def gpu_index(device: str) -> int:
    """The nvidia-smi index of ``device`` (``cuda:N``; mapped through CUDA_VISIBLE_DEVICES)."""
    idx = int(device.split(":")[1]) if ":" in device else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    if all(v.isdigit() for v in visible) and idx < len(visible) and visible[0]:
        return int(visible[idx])
    return idx


# ----------------------------------------------------------------------------- one run
@dataclass
class RunLog:
    """What one ``rgbpose train`` subprocess printed, with arrival times."""

    header: tuple[int, ...] | None = None  # train clips, repeat, ipe, world size, batch
    progress: list[tuple[float, int, float]] = field(default_factory=list)  # (t, iter, data_s)
    lines: list[str] = field(default_factory=list)
    store_fallback: bool = False
    stopped_early: bool = False
    rc: int | None = None
    t_start: float = 0.0
    wall_s: float = 0.0


def _pump(stream: Any, q: queue.Queue) -> None:
    for line in stream:
        q.put((time.monotonic(), line.rstrip("\n")))
    q.put((time.monotonic(), None))


def run_train(cmd: list[str], env: dict[str, str], max_iters: int | None,
              max_seconds: float | None, verbose: bool) -> RunLog:  # fmt: skip
    log = RunLog(t_start=time.monotonic())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT, start_new_session=True)  # fmt: skip
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, q), daemon=True).start()
    try:
        while True:
            try:
                t, line = q.get(timeout=1.0)
            except queue.Empty:
                t, line = time.monotonic(), ""
            if line is None:
                break
            if line:
                log.lines.append(line)
                if verbose or "[rgbpose train]" in line:
                    print(f"    {line}", file=sys.stderr, flush=True)
                if (m := HEADER_RE.search(line)) is not None:
                    log.header = tuple(int(g) for g in m.groups())
                elif (m := PROGRESS_RE.search(line)) is not None:
                    log.progress.append((t, int(m.group(2)), float(m.group(5))))
                elif STORE_FALLBACK in line:
                    log.store_fallback = True
            n = len(log.progress)
            over_iters = max_iters is not None and n and log.progress[-1][1] >= max_iters
            over_time = max_seconds is not None and t - log.t_start > max_seconds
            if (over_iters or over_time) and n >= 2 and proc.poll() is None:
                log.stopped_early = True
                break
    finally:
        if proc.poll() is None:  # our own child's process group: the trainer and its workers
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.rc = proc.wait()
    log.wall_s = time.monotonic() - log.t_start
    return log


def measure(log: RunLog, clips_per_epoch: int, batch: int) -> dict[str, Any]:
    """Steady-state numbers between the first and the last progress line (none with fewer
    than two lines)."""
    pts = log.progress
    if len(pts) < 2:
        return {"clips_per_s": None, "data_wait_share": None, "t0": None, "t1": None}
    (t0, it0, _), (t1, it1, _) = pts[0], pts[-1]
    clips = min(it1 * batch, clips_per_epoch) - min(it0 * batch, clips_per_epoch)
    data = 0.0
    for (_, a, _), (_, b, d) in zip(pts, pts[1:]):
        data += (b - a) * d  # the line's data s/iter is the mean over its interval
    span = max(t1 - t0, 1e-9)
    return {"clips_per_s": clips / span, "data_wait_share": data / span, "t0": t0, "t1": t1}


def epoch_rate(work_dir: Path, clips_per_epoch: int) -> float | None:
    path = work_dir / "train_log.csv"
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.read_text().splitlines()))
    if not rows or not rows[0].get("time_s"):
        return None
    return clips_per_epoch / float(rows[0]["time_s"])


# ----------------------------------------------------------------------------- main
def synthetic_rates(path: str | None) -> dict[str, list[tuple[int, float]]]:
    """model -> [(batch, clips/s)] from a ``benchmarks/train_throughput.py`` TSV."""
    out: dict[str, list[tuple[int, float]]] = {}
    if not path:
        return out
    lines = [ln for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("#")]
    for row in csv.DictReader(lines, delimiter="\t"):
        out.setdefault(row["model"], []).append((int(row["batch"]), float(row["clips_per_s"])))
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None or not math.isfinite(v) else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--videos", type=int, default=600, help="train videos (NTU names)")
    p.add_argument("--clips", type=int, default=2400,
                   help="clips per epoch (schedule.repeat = ceil(clips / videos))")  # fmt: skip
    p.add_argument("--workers", type=int, default=min(16, max(1, (os.cpu_count() or 2) - 1)))
    p.add_argument("--device", default=None, help="cuda if available, else cpu")
    p.add_argument("--source", choices=("video", "store", "both"), default="both",
                   help="RGB from the 540p videos, the frame store, or both (two rows)")  # fmt: skip
    p.add_argument("--batch", type=int, default=0, help="per-process batch (0: the recipe's)")
    p.add_argument("--max-iters", type=int, default=None,
                   help="stop a run at the first progress line at or past this iteration")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop a run after this many seconds (once two progress lines came)")  # fmt: skip
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="more rgbpose train --set overrides, e.g. data.heatmaps_on_device=true")  # fmt: skip
    p.add_argument("--synthetic", default=None,
                   help="TSV of benchmarks/train_throughput.py: adds vs_synthetic")  # fmt: skip
    p.add_argument("--verbose", action="store_true", help="echo every line of the trainer")
    p.add_argument("--clip", type=Path, default=REAL_CLIP, help="the real clip (1080p NTU .avi)")
    p.add_argument(
        "--poses",
        type=Path,
        default=None,
        help="the clip's pose dict saved by --save-poses (no mediapipe needed)",
    )
    p.add_argument("--save-poses", type=Path, default=None, help="save the clip's pose dict")
    p.add_argument("--keep", default=None, help="build the dataset/work dirs here and keep them")
    p.add_argument("--out", default="benchmarks/train_realdata_results.tsv")
    args = p.parse_args(argv)

    import torch  # noqa: PLC0415

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.startswith("cuda")
    dev_name = torch.cuda.get_device_name(device) if gpu and torch.cuda.is_available() else "cpu"
    repeat = max(1, math.ceil(args.clips / args.videos))
    clips_per_epoch = args.videos * repeat
    synth = synthetic_rates(args.synthetic)
    want_store = args.source in ("store", "both") and bool(RGB_MODELS & set(args.models))

    plan: list[tuple[str, str]] = []  # (model, source)
    for model in args.models:
        if model not in RGB_MODELS:
            plan.append((model, "keypoints"))
            continue
        if args.source in ("video", "both"):
            plan.append((model, "video"))
        if args.source in ("store", "both"):
            plan.append((model, "store"))

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    src_path = str(ROOT / "src")
    env["PYTHONPATH"] = src_path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    rows: list[dict[str, str]] = []
    notes: list[str] = []
    failed = 0
    tmp_ctx = tempfile.TemporaryDirectory(prefix="rgbpose-realdata-") if not args.keep else None
    root = Path(tmp_ctx.name) if tmp_ctx else Path(args.keep)
    root.mkdir(parents=True, exist_ok=True)
    try:
        desc = make_dataset(root, args.videos, want_store, args.clip, args.poses,
                            args.save_poses)  # fmt: skip
        rate_of: dict[str, float] = {}
        for model, source in plan:
            row_name = f"{model}_store" if source == "store" else model
            work = root / "work" / row_name
            sets = ["schedule.epochs=1", f"schedule.repeat={repeat}", f"num_workers={args.workers}"]
            if args.batch:
                sets.append(f"batch_size={args.batch}")
            cmd = [
                sys.executable, "-m", "rgbpose", "train",
                "--config", str(ROOT / f"config/models/ntu_{model}.yaml"),
                "--ann", str(root / "ann.pkl"), "--split", "xsub",
                "--video-dir", str(root / "videos"),
                "--work-dir", str(work), "--out", str(work / "final.pt"),
                "--no-val", "--device", device, "--set", *sets, *args.overrides,
            ]  # fmt: skip
            if source == "store":
                cmd[cmd.index("--work-dir"):cmd.index("--work-dir")] = [
                    "--frame-store", str(root / "frames")
                ]  # fmt: skip
            print(f"[train_realdata] {row_name}: {clips_per_epoch} clips, {args.workers} "
                  f"workers, device {device}", file=sys.stderr, flush=True)  # fmt: skip
            monitor = GpuMonitor(gpu_index(device)) if gpu else None
            try:
                log = run_train(cmd, env, args.max_iters, args.max_seconds, args.verbose)
            finally:
                if monitor is not None:
                    monitor.stop()
            ok = log.rc == 0 or log.stopped_early
            if not ok:
                failed += 1
                tail = "\n".join(log.lines[-30:])
                print(f"[train_realdata] {row_name} FAILED (exit {log.rc}):\n{tail}",
                      file=sys.stderr)  # fmt: skip
                notes.append(f"{row_name}: rgbpose train failed with exit {log.rc}")
            batch = log.header[4] if log.header else (args.batch or 0)
            m = measure(log, clips_per_epoch, batch)
            util = None
            if monitor is not None and m["t0"] is not None:
                util = monitor.mean(m["t0"], m["t1"])
            rate = m["clips_per_s"]
            if rate is not None:
                rate_of[row_name] = rate
            if log.store_fallback:
                notes.append(f"{row_name}: some clips fell back to the video (store region)")
            iters = log.progress[-1][1] if log.progress else 0
            if log.rc == 0 and log.header:
                iters = log.header[2]
            base = rate_of.get(model) if source == "store" else None
            ref = sorted(synth.get(model, []), key=lambda r: (r[0] != batch, -r[1]))
            rows.append(
                {
                    "model": row_name,
                    "source": source,
                    "batch": str(batch),
                    "workers": str(args.workers),
                    "clips_per_s": _fmt(rate, ".2f"),
                    "epoch_clips_per_s": _fmt(
                        None if log.stopped_early else epoch_rate(work, clips_per_epoch), ".2f"
                    ),
                    "data_wait_share": _fmt(m["data_wait_share"], ".3f"),
                    "gpu_util_pct": _fmt(util, ".1f"),
                    "iters": str(iters),
                    "wall_s": f"{log.wall_s:.1f}",
                    "vs_video": _fmt(rate / base if rate and base else None, ".2f")
                    if source == "store" else "",
                    "vs_synthetic": _fmt(rate / ref[0][1] if rate and ref else None, ".2f")
                    if ref else "",
                }
            )  # fmt: skip
            print("[train_realdata] " + "\t".join(f"{k}={rows[-1][k]}" for k in FIELDS),
                  file=sys.stderr, flush=True)  # fmt: skip
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()

    header = [
        f"# rgbpose train, 1 epoch of {clips_per_epoch} clips per run ({args.videos} hard-linked "
        f"copies of the real NTU clip at 540p x repeat {repeat}; {desc}), no validation",
        f"# machine {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, python "
        f"{platform.python_version()}, torch {torch.__version__}, device {device} ({dev_name}), "
        f"workers {args.workers}, batch {'recipe' if not args.batch else args.batch}"
        + (f", --set {' '.join(args.overrides)}" if args.overrides else ""),
        "# clips_per_s / data_wait_share / gpu_util_pct: between the first and last progress "
        "line; epoch_clips_per_s: whole epoch incl. start-up",
        *(f"# note: {n}" for n in notes),
    ]
    lines = [*header, "\t".join(FIELDS), *("\t".join(r[k] for k in FIELDS) for r in rows)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    from rgbpose.io import write_text_atomic  # noqa: PLC0415

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
