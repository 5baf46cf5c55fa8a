"""The Snakemake workflow: config validation before any job, and the planned DAG."""

import json
import os
import pickle
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
    assert counts["scan_raw"] == "1"
    for rule in ("compress_videos", "extract_poses", "denoise_poses"):
        assert counts[rule] == str(shards), rule
    for rule in ("build_annotations", "merge", "fuse"):
        assert counts[rule] == "1", rule
    assert counts["train"] == counts["test"] == str(len(cfg["streams"])) == "3"


def test_bad_samples_skipped_end_to_end_are_listed_not_lost(tmp_path):
    """A corrupt raw video and a malformed .skeleton under on_bad_sample: skip."""
    from test_localcluster import TINY

    cfg = json.loads(json.dumps(TINY))
    cfg["datasets"]["tiny"]["on_bad_sample"] = "skip"
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    run = ("--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path))
    assert snakemake(*run, "results/tiny/raw", cwd=tmp_path).returncode == 0
    raw = tmp_path / "results/tiny/raw"
    video = raw / "S001C001P001R001A001_rgb.avi"
    video.write_bytes(video.read_bytes()[:300])  # truncated
    skel = raw / "S001C001P003R001A058.skeleton"
    skel.write_text(skel.read_text().replace("\n25\n", "\n24\n", 1))  # wrong joint count

    proc = snakemake(*run, "results/tiny/annotations.pkl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [
        ln.split("\t") for ln in (tmp_path / "results/tiny/skipped.tsv").read_text().splitlines()
    ]
    assert rows[0] == ["sample", "stage", "file", "reason"]
    skipped = {r[0]: r for r in rows[1:]}
    assert set(skipped) == {"S001C001P001R001A001", "S001C001P003R001A058"}
    assert skipped["S001C001P001R001A001"][1] == "compress"
    assert skipped["S001C001P001R001A001"][2].endswith("S001C001P001R001A001_rgb.avi")
    assert skipped["S001C001P003R001A058"][1] == "extract_poses"
    assert "expected 25 joints" in skipped["S001C001P003R001A058"][3]
    ann = pickle.loads((tmp_path / "results/tiny/annotations.pkl").read_bytes())
    assert [a["frame_dir"] for a in ann["annotations"]] == [
        "S001C001P001R001A058",
        "S001C001P003R001A001",
    ]
    assert ann["split"] == {
        "xsub_train": ["S001C001P001R001A058"],
        "xsub_val": ["S001C001P003R001A001"],
    }
