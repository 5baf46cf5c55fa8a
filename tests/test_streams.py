"""Streams as configuration: the workflow plans a dataset's declared streams and fusions, a model
registered outside the package plugs in, and a model that does not fit its data fails while
planning, before any job, naming the key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PLUGIN = REPO / "tests/plugins/tiny_skeleton.py"


def dry_run(workdir: Path, cfg: dict, *targets: str) -> subprocess.CompletedProcess:
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--snakefile",
           str(REPO / "Snakefile"), "--directory", str(workdir), *targets]  # fmt: skip
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


def tiny_config(mutate=None) -> dict:
    from test_localcluster import TINY

    cfg = json.loads(json.dumps(TINY))
    if mutate is not None:
        mutate(cfg["datasets"]["tiny"])
    return cfg


def run_config(tmp_path: Path, name: str, base: str, **sets) -> str:
    """A copy of config/models/<base>.yaml with dotted keys set; returns its path."""
    from rgbpose.engine.config import apply_overrides

    raw = yaml.safe_load((REPO / f"config/models/{base}.yaml").read_text())
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(apply_overrides(raw, sets, str(path))))
    return str(path)


def planned_jobs(out: str) -> list[dict[str, str]]:
    """The planned jobs of a dry run's log: rule, input and output lines."""
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", out, flags=re.M):
        head = re.match(r"(?:local)?rule (\w+):$", block, re.M)
        if head is None:
            continue
        job = {"rule": head.group(1)}
        job.update(re.findall(r"^\s+(input|output): (.*)$", block, re.M))
        jobs.append(job)
    return jobs


def planned(out: str) -> dict[str, list[str]]:
    """rule -> the output files of its planned jobs."""
    outputs: dict[str, list[str]] = {}
    for job in planned_jobs(out):
        files = [o.strip() for o in job.get("output", "").split(",") if o.strip()]
        outputs.setdefault(job["rule"], []).extend(files)
    return outputs


def test_a_model_registered_outside_the_package_plugs_in_as_a_stream(tmp_path):
    """The definition of done of "plugs in": a test module registers a data modality and a
    model with its own input contract; a run config imports it; the dataset declares it as a
    stream and fuses it with a built-in one; the workflow plans train, test and fuse for it."""
    tiny = {
        "imports": [str(PLUGIN)],
        "model": {"name": "tiny_skeleton_mlp", "overrides": {"frames": 4}},
        "data": {"modality": "tiny_skeleton", "clip_len": 4},
        "optim": {"lr": 0.1, "base_batch": 4},
        "schedule": {"kind": "cosine", "epochs": 2},
        "batch_size": 4,
        "num_workers": 0,
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))

    def declare(d):
        d["streams"] = {
            "pose_only": d["streams"]["pose_only"],
            "skel": {"config": "tiny.yaml", "title": "Tiny skeleton MLP"},
        }
        d["fusions"] = {"skel_pose": {"weights": {"skel": 2, "pose_only": 1}}}

    proc = dry_run(tmp_path, tiny_config(declare), "results/tiny_xsub/fusion.txt")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned(proc.stdout + proc.stderr)
    assert "results/tiny_xsub/skel/best.pt" in jobs["train"]
    assert "results/tiny_xsub/pose_only/best.pt" in jobs["train"]
    assert "results/tiny_xsub/skel/scores.pkl" in jobs["test"]
    assert jobs["fuse"][0] == "results/tiny_xsub/fusion.txt"
    assert "merge" not in jobs  # no init_from
    # the skeleton stream reads no videos: its train job does not wait for compression
    train = {j["output"].split(",")[0]: j["input"] for j in planned_jobs(proc.stdout + proc.stderr)
             if j["rule"] == "train"}  # fmt: skip
    assert train["results/tiny_xsub/skel/best.pt"] == ("results/tiny/annotations.pkl, tiny.yaml")
    assert (
        "results/tiny/shards/compress/0000.tsv" not in train["results/tiny_xsub/pose_only/best.pt"]
    )


def cross_check_cases(tmp_path: Path) -> list[tuple[str, dict, str]]:
    pose = "demo_pose_only"
    return [
        ("modality", {"pose_only": run_config(tmp_path, "m", pose, **{"data.modality": "rgb"})},
         "streams.pose_only.config: {dir}/m.yaml: key 'data.modality': model 'pose_only' takes "
         "['heatmap_imgs'] but modality 'rgb' gives ['imgs']"),
        ("channels", {"pose_only": run_config(tmp_path, "c", pose, **{
            "model.overrides.in_channels": 25})},
         "key 'model.overrides.in_channels': model 'pose_only' takes 25 channels of "
         "'heatmap_imgs', the data gives 17 (layout coco17, with_kp True, with_limb False)"),
        ("limb channels", {"pose_only": run_config(tmp_path, "l", pose, **{
            "data.with_limb": True})},
         "the data gives 34 (layout coco17, with_kp True, with_limb True)"),
        ("speed ratio", {"rgbpose": run_config(tmp_path, "s", "demo_rgbpose_conv3d", **{
            "model.overrides.speed_ratio": 2})},
         "key 'model.overrides.speed_ratio': data.rgb_clip_len 4 x ratio 2 = 8 frames of "
         "'heatmap_imgs', but data.pose_clip_len is 16"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", ["modality", "channels", "limb channels", "speed ratio"])
def test_model_data_cross_checks_fail_while_planning(tmp_path, case):
    name, streams, expected = next(c for c in cross_check_cases(tmp_path) if c[0] == case)
    stream, path = next(iter(streams.items()))
    cfg = tiny_config(lambda d: d["streams"][stream].update(config=path))
    proc = dry_run(tmp_path, cfg, "results/tiny_xsub/fusion.txt")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert expected.format(dir=tmp_path) in out, out[-2000:]
    assert "Job stats" not in out


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["fusions"].update(f={"weights": {"rgb_only": 1, "depth": 1}}),
         "datasets.tiny.fusions.f.weights: unknown stream 'depth' in 'depth'"),
        (lambda d: d["fusions"].update(f={"weights": {"rgbpose.depth": 1}}),
         "datasets.tiny.fusions.f.weights: stream 'rgbpose' has no head 'depth' (its heads: rgb, "
         "pose)"),
        (lambda d: d["streams"]["rgbpose"].update(init_from=["rgb_only", "pose"]),
         "datasets.tiny.streams.rgbpose.init_from: unknown stream 'pose'"),
        (lambda d: d["streams"]["rgb_only"].update(init_from=["rgbpose"]),
         "datasets.tiny.streams: init_from cycle"),
        (lambda d: d["fusions"].update(pose_only={"weights": {"rgb_only": 1}}),
         "datasets.tiny.fusions.pose_only: a stream has this name"),
        (lambda d: d["streams"].update({"Bad-Name": {"config": "x.yaml"}}), "Bad-Name"),
    ],
)  # fmt: skip
def test_stream_and_fusion_names_are_checked_before_any_job(tmp_path, mutate, expected):
    proc = dry_run(tmp_path, tiny_config(mutate), "results/tiny_xsub/fusion.txt")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert expected in out, out[-2000:]
    assert "Job stats" not in out


def test_ntu_plans_posec3d_joint_and_limb_with_their_fusion(tmp_path):
    """NTU datasets declare the PoseC3D streams (joint, limb with PYSKL's COCO limb list, 1:1
    fusion) beside the RGBPoseConv3D ones, and the workflow plans them all."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    ntu = cfg["datasets"]["ntu60"]
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("S001C001P001R001A001", "S001C001P002R001A002"):  # P001 train, P002 val
        (raw / f"{name}_rgb.avi").write_bytes(b"x")
        (raw / f"{name}.skeleton").write_text("0\n")
    ntu.update(raw_video_dir=str(raw), raw_skeleton_dir=str(raw))
    for stream in ntu["streams"].values():
        stream["config"] = str(REPO / stream["config"])
    cfg["run"] = ["ntu60"]
    proc = dry_run(tmp_path, cfg, "results/ntu60_xsub/fusion.txt")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned(proc.stdout + proc.stderr)
    trained = sorted(o.split("/")[2] for o in jobs["train"] if o.endswith("best.pt"))
    assert trained == sorted(ntu["streams"]) and len(trained) == 23
    assert {"posec3d_joint", "posec3d_limb"} <= set(trained)
    assert sorted(jobs["merge"]) == [
        f"results/ntu60_xsub/{s}/init.pt"
        for s in ("rgbpose", "ske2grid_6", "ske2grid_7", "ske2grid_8")
    ]
    assert len(jobs["test"]) == 23 * 4  # scores, metrics, confusion, per-class of each stream
    assert set(ntu["streams"]) >= {"posec3d_joint", "posec3d_limb"}
    assert ntu["fusions"]["posec3d_fusion"]["weights"] == {"posec3d_joint": 1, "posec3d_limb": 1}
    from rgbpose.engine.config import check_model_data, load_run_config

    limb = load_run_config(REPO / ntu["streams"]["posec3d_limb"]["config"])
    check_model_data(limb, "limb", "coco17")  # 17 limb channels
    assert (limb.data.with_kp, limb.data.with_limb, limb.model.overrides["in_channels"]) == (
        False, True, 17,
    )  # fmt: skip
    joint = load_run_config(REPO / ntu["streams"]["posec3d_joint"]["config"])
    assert limb.to_dict() == {
        **joint.to_dict(),
        "data": {**joint.to_dict()["data"], "with_kp": False, "with_limb": True},
    }


def test_the_plugin_stream_trains_tests_and_fuses_through_the_clis(tmp_path):
    """The same plug-in, run by the commands the workflow's generic rules run: train, test,
    fuse; nothing in the engine knows the model or its data."""
    import numpy as np

    from rgbpose.engine import evaluate, fusion, train
    from rgbpose.io import dump_pickle, load_pickle

    rng = np.random.default_rng(0)
    annos, split = [], {"xsub_train": [], "xsub_val": []}
    for i in range(16):  # class 0 stands left of the frame, class 1 right; P001/P002 train
        label, performer = i % 2, 1 + i // 4
        name = f"S001C00{1 + (i // 2) % 2}P{performer:03d}R001A{1 + label:03d}"
        kp = rng.normal(0, 3, (1, 10, 17, 2)) + [40 + 80 * label, 48]
        annos.append({"frame_dir": name, "label": label, "total_frames": 10,
                      "img_shape": (96, 160), "keypoint": kp.astype(np.float32),
                      "keypoint_score": np.ones((1, 10, 17), np.float32)})  # fmt: skip
        split["xsub_train" if performer <= 2 else "xsub_val"].append(name)
    ann = tmp_path / "ann.pkl"
    dump_pickle({"split": split, "annotations": annos}, ann)
    cfg = tmp_path / "skel.yaml"
    cfg.write_text(yaml.safe_dump({
        "imports": [str(PLUGIN)],
        "model": {"name": "tiny_skeleton_mlp", "overrides": {"frames": 4}},
        "data": {"modality": "tiny_skeleton", "clip_len": 4},
        "optim": {"lr": 0.05, "base_batch": 4},
        "schedule": {"kind": "cosine", "epochs": 10},
        "batch_size": 4, "num_workers": 0,
    }))  # fmt: skip
    common = ["--config", str(cfg), "--ann", str(ann)]
    best = tmp_path / "skel/best.pt"
    rc = train.cli([*common, "--split", "xsub", "--num-classes", "2", "--device", "cpu",
                    "--work-dir", str(tmp_path / "skel/work"), "--out", str(best)])  # fmt: skip
    assert rc == 0
    scores = tmp_path / "skel/scores.pkl"
    rc = evaluate.cli([*common, "--checkpoint", str(best), "--split", "xsub_val",
                       "--out", str(scores), "--device", "cpu"])  # fmt: skip
    assert rc == 0
    s = load_pickle(scores)
    assert sorted(s["names"]) == sorted(split["xsub_val"])
    assert list(s["probs"]) == ["tiny_skeleton_mlp"] and s["probs"]["tiny_skeleton_mlp"].shape == (
        8, 2,
    )  # fmt: skip
    assert (s["probs"]["tiny_skeleton_mlp"].argmax(1) == s["labels"]).all()  # separable: 8/8
    out = tmp_path / "fusion.json"
    rc = fusion.cli(["--scores", f"skel={scores}", "--fusion", "twice=logits:skel:2",
                     "-o", str(tmp_path / "fusion.txt"), "--json", str(out)])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    assert list(report) == ["skel", "twice", "num_val_samples"]
    assert report["skel"]["top1"] == report["twice"]["top1"] == 1.0


def test_every_shipped_stream_fits_its_data():
    """Every stream of config/config.yaml and config/extra/*.yaml: its run config loads and its
    model takes what its data gives for the dataset's pose layout (17 joints / 17 limbs)."""
    from rgbpose.engine.config import check_model_data, load_run_config

    files = [REPO / "config/config.yaml", *sorted((REPO / "config/extra").glob("*.yaml"))]
    checked = set()
    for f in files:
        for name, ds in yaml.safe_load(f.read_text())["datasets"].items():
            layout = {"ntu25": "ntu25", "native": None}.get(ds.get("pose_layout"), "coco17")
            for stream, scfg in ds["streams"].items():
                cfg = load_run_config(REPO / scfg["config"])
                check_model_data(cfg, scfg["config"], layout)
                checked.add((name, stream))
    assert {("demo", "posec3d_limb"), ("ntu120", "rgbpose"), ("ntu60", "posec3d_joint")} <= checked
    assert {
        ("demo", "ske2grid_6"),
        ("ntu120", "infogcn_k8_mot"),
        ("demo", "infogcn_mot"),
    } <= checked
    assert {("demo", "drsr_rgbd"), ("ntu60", "drsr_depth")} <= checked
    # demo 3, demo_posec3d 2, demo_zoo 8, ntu60 23 (+ 3 DRSR in ntu60_drsr), ntu120 23, demo_drsr 3
    assert len(checked) == 3 + 2 + 8 + 23 + 23 + 3 + 3


def test_demo_posec3d_adds_two_streams_and_their_fusion():
    """make demo-posec3d: --configfile merges config/extra/demo_posec3d.yaml into the demo."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "1", "--configfile",
           "config/config.yaml", "config/extra/demo_posec3d.yaml"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned(proc.stdout + proc.stderr)
    trained = sorted(o.split("/")[2] for o in jobs["train"] if o.endswith("best.pt"))
    assert trained == ["pose_only", "posec3d_joint", "posec3d_limb", "rgb_only", "rgbpose"]
    fuse = next(j for j in planned_jobs(proc.stdout + proc.stderr) if j["rule"] == "fuse")
    assert "results/demo_xsub/posec3d_limb/scores.pkl" in fuse["input"]


def test_a_stream_sets_run_config_keys_for_train_test_and_merge(tmp_path):
    """streams.<s>.set: dotted run-config keys passed as --set to the stream's jobs, checked
    while planning like the file's own keys."""

    def declare(d):
        d["streams"]["pose_only"]["set"] = {"schedule.epochs": 3, "data.sigma": 0.7}
        d["streams"]["rgbpose"]["set"] = {"model.overrides.dropout": 0.3}

    proc = dry_run(tmp_path, tiny_config(declare), "results/tiny_xsub/fusion.txt", "-p")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert (
        "--out results/tiny_xsub/pose_only/best.pt  --set data.sigma=0.7 schedule.epochs=3" in out
    )
    assert "--set model.overrides.dropout=0.3 -o results/tiny_xsub/rgbpose/init.pt" in out
    bad = dry_run(
        tmp_path,
        tiny_config(lambda d: d["streams"]["pose_only"].update(set={"optim.lrr": 1})),
        "results/tiny_xsub/fusion.txt",
    )
    assert bad.returncode != 0
    assert "datasets.tiny.streams.pose_only.config:" in bad.stdout + bad.stderr
    assert "unknown key 'optim.lrr'" in bad.stdout + bad.stderr
