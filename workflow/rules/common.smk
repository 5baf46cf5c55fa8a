# Helpers shared by all rules: config validation, sample lists, shards, input functions.
import json
import os
import math
from functools import cache
from pathlib import Path

from snakemake.utils import validate

from rgbpose import ntu

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

for _name in config["run"]:
    if _name not in config["datasets"]:
        raise ValueError(
            f"config: run lists {_name!r}, which is not a key of datasets "
            f"(known: {', '.join(sorted(config['datasets']))})"
        )

MODELS = ("rgb_only", "pose_only", "rgbpose_conv3d")


wildcard_constraints:
    dataset=r"[a-z][a-z0-9]*",
    bench=r"xsub|xview|xset",
    shard=r"\d{4}",
    model="|".join(MODELS),


def dataset_cfg(dataset):
    """The config block of one dataset (defaults filled in by the schema)."""
    try:
        return config["datasets"][dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}") from None


def is_synthetic(dataset):
    return "synthetic" in dataset_cfg(dataset)


@cache
def sample_names(dataset):
    """Sorted sample names of a dataset, known at planning time.

    Synthetic: computed from its config.  Real: every <name>_rgb.avi in raw_video_dir, minus the
    NTU missing-skeleton samples that every published benchmark excludes (documented in the README).
    """
    cfg = dataset_cfg(dataset)
    if is_synthetic(dataset):
        from rgbpose.synthetic import SynthConfig
        from rgbpose.synthetic import sample_names as synth_names

        return tuple(synth_names(SynthConfig.from_dict(cfg["synthetic"])))
    raw = Path(cfg["raw_video_dir"])
    if not raw.is_dir():
        raise ValueError(
            f"dataset {dataset}: raw_video_dir {str(raw)!r} is not a directory"
        )
    missing = ntu.missing_skeletons()
    names = []
    with os.scandir(raw) as it:
        for entry in it:
            if entry.name.endswith("_rgb.avi"):
                name = entry.name[: -len("_rgb.avi")]
                if name not in missing:
                    names.append(name)
    if not names:
        raise ValueError(f"dataset {dataset}: no *_rgb.avi files in {str(raw)!r}")
    return tuple(sorted(names))


def shard_ids(dataset):
    n = math.ceil(len(sample_names(dataset)) / dataset_cfg(dataset)["shard_size"])
    return [f"{i:04d}" for i in range(n)]


def shard_names(dataset, shard):
    size = dataset_cfg(dataset)["shard_size"]
    i = int(shard)
    return sample_names(dataset)[i * size : (i + 1) * size]


def raw_videos_of_shard(wildcards):
    """Raw video paths of one shard (passed to the compress command)."""
    d = dataset_cfg(wildcards.dataset)["raw_video_dir"]
    return [f"{d}/{n}_rgb.avi" for n in shard_names(wildcards.dataset, wildcards.shard)]


def raw_skeletons_of_shard(wildcards):
    d = dataset_cfg(wildcards.dataset)["raw_skeleton_dir"]
    return [
        f"{d}/{n}.skeleton" for n in shard_names(wildcards.dataset, wildcards.shard)
    ]


def raw_dir(key):
    """Input function: a raw directory of the dataset (``raw_video_dir``/``raw_skeleton_dir``).

    Shard jobs depend on the directory, not on each raw file: declaring 229k raw files makes
    Snakemake plan NTU 120 several times slower.  The shard's own files are passed in ``params``
    and a missing or unreadable one is reported by the stage as a bad sample.  Real raw data is
    ``ancient`` (its directory mtime must not re-trigger every shard); the synthetic directory is
    an output of synthesize_dataset.
    """

    def inputs(wildcards):
        path = dataset_cfg(wildcards.dataset)[key]
        return path if is_synthetic(wildcards.dataset) else ancient(path)

    return inputs


def pose_inputs_of_shard(wildcards):
    """Kinect reads the raw skeletons; estimators read the shard's compressed videos."""
    if dataset_cfg(wildcards.dataset)["pose_backend"] == "kinect":
        return raw_dir("raw_skeleton_dir")(wildcards)
    return f"results/{wildcards.dataset}/shards/compress/{wildcards.shard}.tsv"


def pose_input_paths(wildcards):
    if dataset_cfg(wildcards.dataset)["pose_backend"] == "kinect":
        return raw_skeletons_of_shard(wildcards)
    return [
        f"results/{wildcards.dataset}/videos/{n}.mp4"
        for n in shard_names(wildcards.dataset, wildcards.shard)
    ]


def extract_options(wildcards):
    cfg = dataset_cfg(wildcards.dataset)
    opts = [f"--backend {cfg['pose_backend']}"]
    if cfg["pose_backend"] == "kinect":
        h, w = cfg["img_shape"]
        opts.append(f"--img-shape {h} {w}")
    if cfg["pose_backend"] == "onnx":
        if "onnx_model" not in cfg:
            raise ValueError(
                f"dataset {wildcards.dataset}: pose_backend onnx needs onnx_model"
            )
        opts.append(f"--model {cfg['onnx_model']}")
    return " ".join(opts)


def compress_options(wildcards):
    c = dataset_cfg(wildcards.dataset)["compress"]
    return f"--height {c['height']} --crf {c['crf']} --preset {c['preset']} --gop {c['gop']}"


def split_protocol(wildcards):
    """Split rules of the dataset (rgbpose.ntu.make_splits' dataset argument)."""
    cfg = dataset_cfg(wildcards.dataset)
    protocol = cfg.get("protocol") or (
        "demo" if is_synthetic(wildcards.dataset) else wildcards.dataset
    )
    if protocol not in ntu.BENCHMARKS:
        raise ValueError(
            f"dataset {wildcards.dataset}: set protocol to one of {sorted(ntu.BENCHMARKS)}"
        )
    return protocol


def benchmark_list(wildcards):
    return " ".join(dataset_cfg(wildcards.dataset)["benchmarks"])


def pose_layout(wildcards):
    return dataset_cfg(wildcards.dataset)["pose_layout"]


def bad_sample_policy(wildcards):
    return dataset_cfg(wildcards.dataset)["on_bad_sample"]


def all_shards(*patterns):
    """Input function: each pattern (with {dataset} and {shard}) for every shard of the dataset."""

    def inputs(wildcards):
        shards = shard_ids(wildcards.dataset)
        return [
            p.format(dataset=wildcards.dataset, shard=s)
            for p in patterns
            for s in shards
        ]

    return inputs


def synth_config_json(wildcards):
    return json.dumps(
        dataset_cfg(wildcards.dataset)["synthetic"], separators=(",", ":")
    )


def model_config(model):
    """Input function: the run-config YAML of ``model`` for the dataset."""

    def path(wildcards):
        return dataset_cfg(wildcards.dataset)["models"][model]

    return path


def gpus(wildcards):
    return dataset_cfg(wildcards.dataset)["gpus"]


def num_classes(wildcards):
    return dataset_cfg(wildcards.dataset)["num_classes"]


def launcher(wildcards, resources):
    """`rgbpose` for one process; torchrun with one process per GPU when a job has several."""
    if int(resources.gpu) > 1:
        return f"torchrun --standalone --nproc-per-node={resources.gpu} -m rgbpose.cli"
    return "rgbpose"


def train_runtime(wildcards, attempt):
    """Minutes; grows with each retry (a retry resumes from the last checkpoint)."""
    base = 30 if is_synthetic(wildcards.dataset) else 24 * 60
    return base * attempt


def contact_sheet_videos(wildcards):
    """One raw video per action class (first performer/camera/replication), for a quick look."""
    first = {}
    for name in sample_names(wildcards.dataset):
        first.setdefault(ntu.parse_name(name).action, name)
    d = dataset_cfg(wildcards.dataset)["raw_video_dir"]
    return [f"{d}/{n}_rgb.avi" for n in first.values()]


def final_targets():
    """fusion.txt and the report figures of every benchmark of every dataset in ``run``."""
    targets = []
    for d in config["run"]:
        runs = [f"results/{d}_{b}" for b in dataset_cfg(d)["benchmarks"]]
        targets += [
            f"{r}/{n}" for r in runs for n in ("fusion.txt", "training_curves.png")
        ]
        if is_synthetic(d):
            targets.append(f"results/{d}/contact_sheet.png")
    return targets


def test_model_config(wildcards):
    return dataset_cfg(wildcards.dataset)["models"][wildcards.model]


def test_video_inputs(wildcards):
    """RGB models read the compressed videos; the pose model only the annotations."""
    if wildcards.model == "pose_only":
        return []
    return all_shards("results/{dataset}/shards/compress/{shard}.tsv")(wildcards)
