"""Time `snakemake -n` on the full NTU 120 DAG with empty placeholder raw files.

Creates 114,480 empty `<name>_rgb.avi` and `<name>.skeleton` placeholders (names from the
recorded-sample list) in a temp dir, points an `ntu120` dataset at them and dry-runs the default
target (fusion for X-Sub and X-Set).  Each shard size given is timed in the same run, so the
sharded plan can be compared with one job per video (`--shard-sizes 256 1`; the latter takes
minutes and several GB).

    .venv/bin/python benchmarks/plan_ntu120.py --out benchmarks/plan_ntu120.tsv
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rgbpose import ntu

REPO = Path(__file__).resolve().parents[1]


def make_placeholders(root: Path) -> tuple[Path, Path]:
    videos, skeletons = root / "rgb", root / "skeletons"
    videos.mkdir()
    skeletons.mkdir()
    for name in ntu.recorded_samples():
        (videos / f"{name}_rgb.avi").touch()
        (skeletons / f"{name}.skeleton").touch()
    return videos, skeletons


def plan(config_path: Path) -> tuple[float, int, float]:
    """Run the dry run; return (seconds, planned jobs, child peak RSS in MB)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--quiet", "rules"]
    cmd += ["--configfile", str(config_path)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n failed:\n{proc.stdout}\n{proc.stderr}")
    total = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.M)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, int(total.group(1)) if total else -1, rss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard-sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--out", default="benchmarks/plan_ntu120.tsv")
    args = ap.parse_args(argv)
    base = yaml.safe_load((REPO / "config/config.yaml").read_text())["datasets"]["ntu120"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        videos, skeletons = make_placeholders(Path(tmp))
        for size in args.shard_sizes:
            cfg = dict(base, raw_video_dir=str(videos), raw_skeleton_dir=str(skeletons))
            cfg["shard_size"] = size
            cfg["models"] = {k: str(REPO / v) for k, v in base["models"].items()}
            path = Path(tmp) / f"config_{size}.yaml"
            path.write_text(yaml.safe_dump({"run": ["ntu120"], "datasets": {"ntu120": cfg}}))
            seconds, jobs, rss = plan(path)
            rows.append((size, jobs, seconds, rss))
            print(
                f"shard_size={size}: {jobs} jobs planned in {seconds:.1f} s (peak RSS {rss:.0f} MB)"
            )
    lines = ["shard_size\tjobs\tseconds\tpeak_rss_mb"]
    lines += [f"{s}\t{j}\t{sec:.2f}\t{rss:.0f}" for s, j, sec, rss in rows]
    if len(rows) > 1:
        lines.append(f"# speed-up of shard_size={rows[0][0]} over {rows[-1][0]}: "
                     f"{rows[-1][2] / rows[0][2]:.1f}x")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
