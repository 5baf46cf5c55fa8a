"""A small real DAG through the cluster-generic executor (profiles/localcluster).

Each job is submitted as a detached process with a minimal environment (submit.sh), so the run
only passes if every job is self-contained: it re-reads the config, recomputes its shard's sample
list and finds its inputs on disk, sharing nothing with the parent snakemake process.
"""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "run": ["tiny"],
    "datasets": {
        "tiny": {
            "raw_video_dir": "results/tiny/raw",
            "raw_skeleton_dir": "results/tiny/raw",
            "synthetic": {
                "seed": 3,
                "performers": [1, 3],
                "cameras": [1],
                "replications": [1],
                "actions": [1, 58],
                "frames": 16,
                "width": 160,
                "height": 96,
            },
            "pose_backend": "kinect",
            "img_shape": [96, 160],
            "benchmarks": ["xsub"],
            "num_classes": 60,
            "shard_size": 2,
            "on_bad_sample": "fail",
            "compress": {"height": 48},
            "streams": {
                "rgb_only": {"config": str(REPO / "config/models/demo_rgb_only.yaml")},
                "pose_only": {"config": str(REPO / "config/models/demo_pose_only.yaml")},
                "rgbpose": {
                    "config": str(REPO / "config/models/demo_rgbpose_conv3d.yaml"),
                    "init_from": ["rgb_only", "pose_only"],
                },
            },
            "fusions": {"late_fusion": {"weights": {"rgb_only": 1, "pose_only": 1}}},
        }
    },
}


def test_localcluster_runs_preprocessing_dag(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(TINY))
    # The shipped profile, with its script paths made absolute (it is used from the repo root).
    profile = yaml.safe_load((REPO / "profiles/localcluster/config.yaml").read_text())
    for key in ("submit", "status", "cancel"):
        cmd = profile[f"cluster-generic-{key}-cmd"]
        profile[f"cluster-generic-{key}-cmd"] = str(REPO / cmd)
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.yaml").write_text(yaml.safe_dump(profile))

    # No venv on PATH, as in a cluster job's login shell: jobs call our package through the
    # interpreter that runs snakemake (an absolute path), never a PATH lookup.
    env = dict(os.environ, PATH="/usr/local/bin:/usr/bin:/bin")
    env["LOCALCLUSTER_DIR"] = str(tmp_path / "jobs")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    cmd += ["--directory", str(tmp_path), "--profile", str(tmp_path / "profile")]
    cmd += ["results/tiny/annotations.pkl"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Every job ran as its own submitted process and exited 0.
    exits = sorted((tmp_path / "jobs").glob("*.exit"))
    # synthesize + scan_raw + 2 shards x (compress, extract, denoise) + build_annotations
    assert len(exits) == 9
    assert {p.read_text().strip() for p in exits} == {"0"}

    ann = pickle.loads((tmp_path / "results/tiny/annotations.pkl").read_bytes())
    names = [a["frame_dir"] for a in ann["annotations"]]
    assert names == [
        "S001C001P001R001A001",
        "S001C001P001R001A058",
        "S001C001P003R001A001",
        "S001C001P003R001A058",
    ]
    assert ann["split"] == {"xsub_train": names[:2], "xsub_val": names[2:]}
    # Two persons for the handshake (A058), one otherwise, after denoising the noise bodies.
    assert [a["keypoint"].shape[0] for a in ann["annotations"]] == [1, 2, 1, 2]
    assert all(a["keypoint"].shape[2] == 17 for a in ann["annotations"])
    assert len(list((tmp_path / "results/tiny/videos").glob("*.mp4"))) == 4
