"""The training stores in the DAG: the RGB frame store (rule frame_store) and DRSR's depth store
(rules synthesize_depth, depth_store), and which streams read them."""

import os
import re
import subprocess
import sys

from test_streams import BIN, REPO, dry_run, planned, tiny_config


def _demo_dry_run(*extra: str) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--cores", "1",
           "--configfile", "config/config.yaml", *extra]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _train_command(out: str, stream: str) -> str:
    (cmd,) = [
        line for line in out.splitlines()
        if " train --config " in line and f"--out results/demo_xsub/{stream}/best.pt" in line
    ]  # fmt: skip
    return cmd


def test_demo_drsr_plans_depth_stages_three_streams_and_the_stores_each_reads():
    out = _demo_dry_run("config/extra/demo_drsr.yaml")
    jobs = planned(out)
    assert jobs["synthesize_depth"] == ["results/demo/depth_masked"]
    assert len(jobs["depth_store"]) == 2 * 6 and len(jobs["frame_store"]) == 2 * 6  # 6 shards
    trained = sorted(o.split("/")[2] for o in jobs["train"] if o.endswith("best.pt"))
    assert trained == ["drsr_depth", "drsr_rgb", "drsr_rgbd", "pose_only", "rgb_only", "rgbpose"]
    assert sorted(jobs["merge"]) == [
        "results/demo_xsub/drsr_rgbd/init.pt", "results/demo_xsub/rgbpose/init.pt"
    ]  # fmt: skip
    # each stream gets the store its pipeline reads: RGB the frame store, DRSR the depth store
    assert "--frame-store results/demo/frames " in _train_command(out, "rgb_only")
    assert "--frame-store results/demo/frames " in _train_command(out, "rgbpose")
    assert "--frame-store results/demo/drsr_store " in _train_command(out, "drsr_rgb")
    assert "--set 'data.source=\"depth\"'" in _train_command(out, "drsr_depth")
    assert "--frame-store" not in _train_command(out, "pose_only")
    merge = next(line for line in out.splitlines() if " merge --config " in line and "drsr" in line)
    assert re.search(r"--from drsr_rgb=\S+drsr_rgb/best.pt drsr_depth=\S+drsr_depth/best.pt", merge)
    # the depth stage's skips reach build_annotations, so every stream sees the same samples
    build = next(line for line in out.splitlines() if "rgbpose build-annotations" in line)
    assert build.count("shards/depth/") == 6


def test_without_depth_no_depth_stages_and_the_frame_store_can_be_off(tmp_path):
    out = _demo_dry_run()
    assert "synthesize_depth" not in planned(out) and "depth_store" not in planned(out)
    assert "shards/depth/" not in out
    off = tmp_path / "off.yaml"
    off.write_text("datasets:\n  demo:\n    frame_store: {enabled: false}\n")
    out = _demo_dry_run(str(off))
    assert "frame_store" not in planned(out) and "--frame-store" not in out


def test_a_drsr_stream_needs_depth_and_synthetic_depth_has_one_place(tmp_path):
    def drsr_without_depth(d):
        d["streams"]["drsr_rgb"] = {"config": str(REPO / "config/models/demo_drsr.yaml")}

    proc = dry_run(tmp_path, tiny_config(drsr_without_depth), "results/tiny_xsub/fusion.txt")
    assert proc.returncode != 0
    assert "datasets.tiny.streams.drsr_rgb: its pipeline" in proc.stdout + proc.stderr
    assert "set datasets.tiny.raw_depth_dir" in proc.stdout + proc.stderr

    def elsewhere(d):
        d["raw_depth_dir"] = "somewhere/else"

    proc = dry_run(tmp_path, tiny_config(elsewhere), "results/tiny_xsub/fusion.txt")
    assert proc.returncode != 0
    assert "datasets.tiny.raw_depth_dir: a synthetic dataset writes its depth to " \
        "results/tiny/depth_masked" in proc.stdout + proc.stderr  # fmt: skip
