"""Trustworthy runs at the workflow level: hostile raw file names, plain-shell commands, errors
before any job (DESIGN.md section 8)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_localcluster import TINY

from rgbpose.io import read_skip_tsv
from rgbpose.preprocess.scan import NOT_A_NAME, printable, scan_raw

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# A shell as a user opens it: no activated venv, nothing of ours on PATH.
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"
HOSTILE = ["$(touch INJECTED)_rgb.avi", "a b_rgb.avi", "x(1)_rgb.avi", "`touch TICK`_rgb.avi"]


def plain_snakemake(workdir, *args, timeout=600):
    """The README's `.venv/bin/snakemake ...` from a shell whose PATH lacks .venv/bin."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = PLAIN_PATH
    cmd = [str(VENV_BIN / "snakemake"), "--cores", "2", "--snakefile", str(REPO / "Snakefile")]
    cmd += ["--directory", str(workdir), *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def write_tiny(workdir, policy="skip", mutate=None):
    cfg = json.loads(json.dumps(TINY))
    cfg["datasets"]["tiny"]["on_bad_sample"] = policy
    if mutate is not None:
        mutate(cfg["datasets"]["tiny"])
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(cfg))


def test_scan_raw_lists_every_non_sample_file(tmp_path):
    for name in [*HOSTILE, "S001C001P001R001A001_rgb.avi", "S001C001P002R001A001_rgb.avi",
                 "bad\nline_rgb.avi", "notes.txt"]:  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "S001C001P001R001A001.skeleton").write_text("1\n0\n")
    (tmp_path / "S001C001P009R001A001.skeleton").write_text("1\n0\n")  # no video
    (tmp_path / "S001C001P005R001A001_rgb.avi").mkdir()  # not a file
    scan = scan_raw(tmp_path, tmp_path, exclude={"S001C001P002R001A001"})
    assert scan.names == ("S001C001P001R001A001",)
    bad = {row[0]: row for row in scan.bad}
    assert set(bad) == {
        "$(touch INJECTED)", "a b", "x(1)", "`touch TICK`", "bad\\x0aline",
        "S001C001P009R001A001", "S001C001P005R001A001",
    }  # fmt: skip
    assert bad["a b"] == ("a b", "scan_raw", str(tmp_path / "a b_rgb.avi"), NOT_A_NAME)
    assert bad["S001C001P009R001A001"][3].startswith("skeleton without a video")
    assert bad["S001C001P005R001A001"][3] == "not a regular file"
    assert printable("a\tb\nc") == "a\\x09b\\x0ac"


def as_real_dataset(d, raw):
    """The tiny dataset as a user's real one: raw files in a directory of theirs."""
    d.pop("synthetic")
    d.update(protocol="demo", raw_video_dir=raw, raw_skeleton_dir=raw)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """Real-data layout (raw files made once by the synthetic generator) plus hostile raw names,
    preprocessed by the README command from a plain shell under on_bad_sample: skip."""
    work = tmp_path_factory.mktemp("hostile")
    write_tiny(work)
    first = plain_snakemake(work, "results/tiny/raw")
    assert first.returncode == 0, first.stderr[-3000:]
    raw = work / "my raw"  # a space in the configured directory too
    (work / "results/tiny/raw").rename(raw)
    write_tiny(work, mutate=lambda d: as_real_dataset(d, "my raw"))
    video = (raw / "S001C001P001R001A001_rgb.avi").read_bytes()
    for name in HOSTILE:
        (raw / name).write_bytes(video)
    # a skeleton whose video is missing, and a copy under a hostile name
    skel = (raw / "S001C001P001R001A058.skeleton").read_text()
    (raw / "S001C001P007R001A058.skeleton").write_text(skel)
    (raw / "$(touch INJECTED2).skeleton").write_text(skel)
    proc = plain_snakemake(work, "results/tiny/annotations.pkl")
    return work, proc


def test_hostile_names_never_reach_a_shell(hostile_run):
    work, proc = hostile_run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    created = [p for p in work.rglob("*") if p.name in ("INJECTED", "INJECTED2", "TICK")]
    assert created == []
    assert not Path("INJECTED").exists() and not (REPO / "INJECTED").exists()


def test_hostile_names_are_listed_as_skipped(hostile_run):
    work, _ = hostile_run
    rows = read_skip_tsv(work / "results/tiny/skipped.tsv")
    by_sample = {r[0]: r for r in rows}
    assert set(by_sample) == {
        "$(touch INJECTED)", "a b", "x(1)", "`touch TICK`", "$(touch INJECTED2)",
        "S001C001P007R001A058",
    }  # fmt: skip
    assert {r[1] for r in rows} == {"scan_raw"}
    assert by_sample["a b"][2] == "my raw/a b_rgb.avi"
    assert by_sample["a b"][3] == NOT_A_NAME
    assert "skeleton without a video" in by_sample["S001C001P007R001A058"][3]
    ann = __import__("pickle").loads((work / "results/tiny/annotations.pkl").read_bytes())
    assert len(ann["annotations"]) == 4  # the four real samples, nothing else


def test_plain_shell_jobs_ran_the_workflow_package(hostile_run):
    """Jobs found `rgbpose` without PATH: through the interpreter that runs Snakemake."""
    work, proc = hostile_run
    log = (work / "logs/scan_raw/tiny.log").read_text()
    assert "scan_raw: 4 samples, 6 bad raw file(s)" in log
    assert "command not found" not in proc.stderr


def test_hostile_name_under_fail_stops_before_any_job(tmp_path):
    write_tiny(tmp_path, policy="fail", mutate=lambda d: as_real_dataset(d, "raw"))
    raw = tmp_path / "raw"
    raw.mkdir(parents=True)
    (raw / "S001C001P001R001A001_rgb.avi").write_bytes(b"x")
    (raw / "S001C001P001R001A001.skeleton").write_text("1\n0\n")
    (raw / "$(touch INJECTED)_rgb.avi").write_bytes(b"x")
    proc = plain_snakemake(tmp_path, "-n", "results/tiny/annotations.pkl")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "raw/$(touch INJECTED)_rgb.avi: not an NTU sample name" in out
    assert "on_bad_sample: fail" in out
    assert not (tmp_path / "INJECTED").exists()
    assert not (tmp_path / "logs").exists()  # no job ran


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(benchmarks=["xset"]),
         "datasets.tiny.benchmarks: ['xset'] not defined for protocol 'demo'"),
        (lambda d: d["synthetic"].update(actions=[1, 100]),
         "datasets.tiny.synthetic: SynthConfig: unsupported actions [100]"),
        (lambda d: d.update(pose_backend="onnx"),
         "datasets.tiny.onnx_model is required by pose_backend onnx"),
        (lambda d: d.pop("synthetic"), "set datasets.tiny.protocol to one of"),
    ],
)  # fmt: skip
def test_dataset_config_errors_before_any_job(tmp_path, mutate, expected):
    write_tiny(tmp_path, mutate=mutate)
    (tmp_path / "results/tiny/raw").mkdir(parents=True)
    proc = plain_snakemake(tmp_path, "-n", "results/tiny/annotations.pkl")
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout + proc.stderr


def test_model_config_typo_fails_while_planning(tmp_path):
    typo = (REPO / "config/models/demo_pose_only.yaml").read_text().replace("  lr:", "  lrr:", 1)
    assert "lrr:" in typo
    (tmp_path / "pose.yaml").write_text(typo)
    write_tiny(tmp_path, mutate=lambda d: d["streams"]["pose_only"].update(config="pose.yaml"))
    proc = plain_snakemake(tmp_path, "-n", "results/tiny_xsub/fusion.txt")
    assert proc.returncode != 0
    assert "datasets.tiny.streams.pose_only.config: pose.yaml: unknown key 'optim.lrr'" in (
        proc.stdout + proc.stderr
    )
    assert "Job stats" not in proc.stdout + proc.stderr


def test_make_clean_results_removes_what_runs_write(tmp_path):
    for d in ("results/demo", "logs/fuse", "benchmarks/compress_videos", "benchmarks/test",
              ".snakemake/metadata", ".snakemake/conda/abc"):  # fmt: skip
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "f.tsv").write_text("x")
    (tmp_path / "benchmarks/heatmaps.py").write_text("# a benchmark script\n")
    (tmp_path / "report.html").write_text("<html>")
    proc = subprocess.run(["make", "-f", str(REPO / "Makefile"), "-C", str(tmp_path),
                           "clean-results"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == [".snakemake/conda/abc/f.tsv", "benchmarks/heatmaps.py"]


def test_forcerun_retrains_from_scratch(tmp_path):
    """README: unprotect the checkpoint, then `--forcerun <its best.pt>`: a fresh training,
    not a resume of the finished run's state."""
    tiny = yaml.safe_load((REPO / "config/models/demo_pose_only.yaml").read_text())
    tiny["schedule"]["epochs"] = 2
    tiny["val_interval"] = 1
    (tmp_path / "pose.yaml").write_text(yaml.safe_dump(tiny))
    write_tiny(tmp_path, mutate=lambda d: d["streams"]["pose_only"].update(config="pose.yaml"))
    target = "results/tiny_xsub/pose_only/best.pt"
    first = plain_snakemake(tmp_path, target)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = tmp_path / target
    assert ckpt.stat().st_mode & 0o222 == 0  # protected: no write bits
    log = tmp_path / "logs/train/tiny_xsub_pose_only.log"
    assert "starting fresh" not in log.read_text()

    ckpt.chmod(0o644)
    again = plain_snakemake(tmp_path, "--forcerun", target)
    assert again.returncode == 0, again.stderr[-3000:]
    text = log.read_text()
    assert f"previous run finished and its output {target} is gone (forced rerun)" in text
    assert "resumed from" not in text
    assert "epoch 1/2" in text and "epoch 2/2" in text  # both epochs trained again
    stale = list((tmp_path / "results/tiny_xsub/pose_only/work").glob("stale-*/last.pt"))
    assert len(stale) == 1
