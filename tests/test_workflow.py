"""The Snakemake workflow: config validation before any job, and the planned DAG."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(*args, cwd=REPO):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def write_config(tmp_path, mutate):
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    mutate(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["datasets"]["demo"].update(shard_szie=3), "shard_szie"),
        (lambda c: c["datasets"]["demo"].update(on_bad_sample="ignore"), "ignore"),
        (lambda c: c["datasets"]["demo"].update(shard_size="many"), "many"),
        (lambda c: c["datasets"]["demo"].update(benchmarks=["xsbu"]), "xsbu"),
        (lambda c: c.update(run=["ntu61"]), "ntu61"),
    ],
)
def test_config_error_names_the_key_before_any_job(tmp_path, mutate, expected):
    proc = snakemake("-n", "--configfile", str(write_config(tmp_path, mutate)))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert expected in out
    assert "Building DAG" not in out or "Job stats" not in out


def test_demo_dry_run_plans_every_stage():
    proc = snakemake("-n", "--forceall", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, re.M))
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())["datasets"]["demo"]
    syn = cfg["synthetic"]
    n = len(syn["performers"]) * len(syn["cameras"]) * len(syn["replications"]) * 10
    shards = -(-n // cfg["shard_size"])
    assert counts["synthesize_dataset"] == "1"
    for rule in ("compress_videos", "extract_poses", "denoise_poses"):
        assert counts[rule] == str(shards), rule
    for rule in ("build_annotations", "train_rgb_only", "train_pose_only", "merge_checkpoints",
                 "finetune_rgbpose", "fuse"):  # fmt: skip
        assert counts[rule] == "1", rule
    assert counts["test_model"] == "3"
