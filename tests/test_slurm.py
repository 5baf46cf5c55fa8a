"""The cluster path on a real single-node SLURM (``.ci/slurm-up``), through the shipped
``profiles/slurm`` with its requests scaled to the node.

Runs only with ``RGBPOSE_TEST_SLURM=1`` and ``SLURM_CONF`` from ``.ci/slurm-up`` (``.ci/run`` does
both in CI); a plain ``pytest`` skips it. The tests share one work folder and run in order:
preprocessing, an uninterrupted training, the same training cancelled mid-epoch and retried, the
same on two (fake) GPUs with torchrun, and the status guards.
"""

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_localcluster import TINY

from rgbpose.cluster import SlurmSetupError, preflight, query_problem, status_query

REPO = Path(__file__).resolve().parents[1]
ENABLED = os.environ.get("RGBPOSE_TEST_SLURM") == "1" and bool(os.environ.get("SLURM_CONF"))
pytestmark = pytest.mark.skipif(
    not ENABLED,
    reason="needs the test cluster: RGBPOSE_SLURM_SANDBOX=1 .ci/slurm-up, then "
    "RGBPOSE_TEST_SLURM=1 with SLURM_CONF set",
)
TARGET = "results/tiny_xsub/pose_only/best.pt"
# .ci/slurm-up starts the cluster without accounting (CI) or with it (--accounting): the profile
# then uses the site defaults of most clusters (sacct, an account) instead.
ACCOUNTING = ENABLED and query_problem(status_query("sacct")) is None
TRAIN_LOG = "logs/train/tiny_xsub_pose_only.log"


def scaled_profile(path: Path, gpus: int = 1, **extra) -> Path:
    """profiles/slurm with every request scaled to the 2-CPU test node; the site keys set as a
    cluster without accounting needs them."""
    prof = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    if ACCOUNTING:  # the account .ci/slurm-up --accounting made
        prof["default-resources"]["slurm_account"] = "rgbpose"
        site = {"slurm-status-command": "sacct"}
    else:
        prof["default-resources"].pop("slurm_account")
        site = {"slurm-no-account": True, "slurm-status-command": "squeue"}
    prof["default-resources"]["mem_mb"] = 500
    for rule, res in prof["set-resources"].items():
        for key in ("cpus_per_task", "cpus_per_gpu"):
            if key in res:
                res[key] = 1
        if "gpu" in res:
            res["gpu"] = gpus if rule.startswith(("train", "finetune")) else 1
            res["mem_mb"] = 1500
        res.pop("runtime", None)
    prof["set-threads"] = {rule: 1 for rule in prof["set-threads"]}
    prof.update({"jobs": 4, "latency-wait": 5, "slurm-init-seconds-before-status-checks": 5,
                 **site, **extra})  # fmt: skip
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(prof))
    return path


def snakemake(work: Path, profile: Path, *args: str, timeout: int = 600, env=None):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(work), "--workflow-profile", str(profile), *args]  # fmt: skip
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout,
                          env=env or dict(os.environ))  # fmt: skip


def jobs_of(work: Path) -> list[dict[str, str]]:
    """Every job of this run still known to slurmctld (MinJobAge 600 s): rule, partition,
    state, GPUs requested (there is no accounting to record allocations), from squeue."""
    fields = ("JobID", "Partition", "State", "Comment", "tres-per-job", "WorkDir")
    fmt = ",".join(f"{f}:|" for f in fields)  # each field followed by "|", full width
    out = subprocess.run(["squeue", "--states=all", "--noheader", "-O", fmt],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        jobid, part, state, comment, gres, wd = (v.strip() for v in line.split("|")[:6])
        if Path(wd) == work:
            rule = comment.removeprefix("rule_").split("_wildcards_")[0]
            rows.append({"id": jobid, "partition": part, "state": state, "rule": rule,
                         "gres": gres})  # fmt: skip
    return rows


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def reset_training(work: Path) -> None:
    ckpt = work / TARGET
    if ckpt.exists():
        ckpt.chmod(0o644)
        ckpt.unlink()
    shutil.rmtree(work / "results/tiny_xsub/pose_only", ignore_errors=True)
    (work / TRAIN_LOG).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("slurm")
    pose = yaml.safe_load((REPO / "config/models/demo_pose_only.yaml").read_text())
    pose["schedule"].update(epochs=4, repeat=24)  # 48 clips, 3 iterations per epoch
    pose["val_interval"] = 1
    (work / "pose.yaml").write_text(yaml.safe_dump(pose))
    cfg = json.loads(json.dumps(TINY))
    cfg["datasets"]["tiny"]["streams"]["pose_only"]["config"] = str(work / "pose.yaml")
    (work / "config").mkdir()
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    return work


def test_preprocessing_dag_runs_as_slurm_jobs(work):
    profile = scaled_profile(work / "profile")
    proc = snakemake(work, profile, "results/tiny/annotations.pkl")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = jobs_of(work)
    rules = sorted(j["rule"] for j in jobs)
    assert rules == sorted(["synthesize_dataset", "scan_raw", "build_annotations"]
                           + ["compress_videos", "extract_poses", "denoise_poses"] * 2)  # fmt: skip
    assert {(j["state"], j["partition"]) for j in jobs} == {("COMPLETED", "cpu")}
    ann = pickle.loads((work / "results/tiny/annotations.pkl").read_bytes())
    names = [a["frame_dir"] for a in ann["annotations"]]
    assert names == ["S001C001P001R001A001", "S001C001P001R001A058",
                     "S001C001P003R001A001", "S001C001P003R001A058"]  # fmt: skip
    assert ann["split"] == {"xsub_train": names[:2], "xsub_val": names[2:]}


def test_training_job_on_the_gpu_partition(work):
    profile = scaled_profile(work / "profile")
    proc = snakemake(work, profile, TARGET)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train = [j for j in jobs_of(work) if j["rule"] == "train"]
    assert len(train) == 1
    assert (train[0]["partition"], train[0]["state"]) == ("gpu", "COMPLETED")
    assert "gpu:h100:1" in train[0]["gres"]
    log = (work / TRAIN_LOG).read_text()
    assert "world size 1" in log and "epoch 4/4:" in log
    shutil.copy(work / TARGET, work / "uninterrupted.pt")


def test_cancelled_training_job_is_retried_and_resumes_exactly(work):
    reset_training(work)
    profile = scaled_profile(work / "profile")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(work), "--workflow-profile", str(profile), TARGET]  # fmt: skip
    run = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)  # fmt: skip
    last = work / "results/tiny_xsub/pose_only/work/last.pt"
    deadline = time.monotonic() + 300
    while not last.exists():  # epoch 1 saved: the job is now inside epoch 2
        assert run.poll() is None and time.monotonic() < deadline, "training never saved"
        time.sleep(0.2)
    job = [j for j in jobs_of(work) if j["rule"] == "train" and j["state"] == "RUNNING"]
    assert len(job) == 1
    subprocess.run(["scancel", job[0]["id"]], check=True)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-4000:]

    cancelled = int(job[0]["id"])
    train = {int(j["id"]): j["state"] for j in jobs_of(work) if j["rule"] == "train"}
    assert train[cancelled] == "CANCELLED"
    assert [state for i, state in sorted(train.items()) if i > cancelled] == ["COMPLETED"]
    log = (work / TRAIN_LOG).read_text()
    assert "resumed from results/tiny_xsub/pose_only/work/last.pt at epoch" in log
    assert "starting fresh" not in log
    resumed, clean = weights(work / TARGET), weights(work / "uninterrupted.pt")
    assert resumed.keys() == clean.keys()
    assert all(torch.equal(resumed[k], clean[k]) for k in clean)


def test_two_gpus_run_torchrun_with_two_processes(work):
    reset_training(work)
    profile = scaled_profile(work / "profile2", gpus=2)
    proc = snakemake(work, profile, TARGET)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (work / TRAIN_LOG).read_text()
    assert "world size 2" in log and "epoch 4/4:" in log
    train = [j for j in jobs_of(work) if j["rule"] == "train"]
    assert "gpu:h100:2" in train[-1]["gres"] and train[-1]["state"] == "COMPLETED"


def fake_tool(folder: Path, name: str, script: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + script + "\n")
    (folder / name).chmod(0o755)


@pytest.mark.skipif(ACCOUNTING, reason="sacct works on a cluster with accounting")
def test_failing_status_command_stops_before_any_submission(work, tmp_path):
    """sacct without accounting (this cluster has none): a clear error at once, no job."""
    reset_training(work)
    profile = scaled_profile(tmp_path / "profile", **{"slurm-status-command": "sacct"})
    before = len(jobs_of(work))
    t0 = time.monotonic()
    proc = snakemake(work, profile, TARGET, timeout=120)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "SLURM status command 'sacct' does not work here" in out
    assert "set `slurm-status-command: squeue` in the profile" in out
    assert time.monotonic() - t0 < 60
    assert len(jobs_of(work)) == before
    # squeue with a first poll later than MinJobAge / 3: the executor would use sacct
    with pytest.raises(SlurmSetupError, match="falls back to sacct"):
        preflight("squeue", init_seconds=400)
    assert preflight("squeue", init_seconds=5) == "squeue"


def test_wrong_account_stops_before_any_submission(work, tmp_path):
    """The shipped placeholder account: the executor would hang silently; we stop at once."""
    profile = scaled_profile(tmp_path / "profile")
    prof = yaml.safe_load((profile / "config.yaml").read_text())
    prof.pop("slurm-no-account", None)
    prof["default-resources"]["slurm_account"] = "my_account"
    (profile / "config.yaml").write_text(yaml.safe_dump(prof))
    before = len(jobs_of(work))
    t0 = time.monotonic()
    proc = snakemake(work, profile, "results/tiny/annotations.pkl", "--forcerun",
                     "build_annotations", timeout=120)  # fmt: skip
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    if ACCOUNTING:
        assert "SLURM account 'my_account' is not an account of user" in out
        assert "rgbpose" in out  # lists the user's accounts
    else:
        assert "cannot check SLURM account 'my_account'" in out
        assert "set `slurm-no-account: true` in the profile" in out
    assert time.monotonic() - t0 < 60
    assert len(jobs_of(work)) == before


def test_status_failing_mid_run_ends_the_run_in_bounded_time(work, tmp_path):
    """The status query starts failing after the run began (controller gone): the watchdog ends
    the run within its timeout, naming the problem, instead of polling forever."""
    reset_training(work)
    flag = tmp_path / "broken"
    for tool in ("squeue", "sacct"):  # whichever the profile uses for status
        fake_tool(tmp_path / "bin", tool,
                  f'[ -e "{flag}" ] && {{ echo "slurm_load_jobs error: Unable to contact slurm '
                  f'controller" >&2; exit 1; }}\nexec "{shutil.which(tool)}" "$@"')  # fmt: skip
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
               RGBPOSE_SLURM_STATUS_TIMEOUT="6", RGBPOSE_SLURM_STATUS_INTERVAL="2")  # fmt: skip
    profile = scaled_profile(tmp_path / "profile")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(work), "--workflow-profile", str(profile), TARGET]  # fmt: skip
    run = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)  # fmt: skip
    t_start = time.monotonic()
    before = len(jobs_of(work))
    deadline = time.monotonic() + 120
    while len(jobs_of(work)) == before:  # a job of this run was submitted
        assert run.poll() is None and time.monotonic() < deadline, "nothing submitted"
        time.sleep(0.5)
    flag.touch()
    t0 = time.monotonic()
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 1
    assert time.monotonic() - t0 < 40  # timeout 6 s + one interval + the query
    assert "SLURM status queries have failed for" in out
    assert "Unable to contact slurm controller" in out
    assert not list((work / ".snakemake/locks").glob("*"))  # released: a plain rerun works
    subprocess.run(["scancel", "--partition=cpu,gpu"], check=False)
    print(
        f"run ended {time.monotonic() - t_start:.1f} s after start, "
        f"{time.monotonic() - t0:.1f} s after squeue broke"
    )
