# Helpers shared by all rules: config validation, sample lists, shards, input functions.
import json
import math
import os
import shlex
import sys
from functools import cache
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

# The workflow runs its own package (src/ next to this Snakefile), whatever is installed.
SRC = Path(workflow.basedir, "src").resolve()
sys.path.insert(0, str(SRC))

from rgbpose import ntu

validate(config, workflow.source_path("../schemas/config.schema.yaml"))


def protocol_of(dataset):
    """Split rules of a dataset: its ``protocol`` key, else demo (synthetic) or its own name."""
    cfg = config["datasets"][dataset]
    protocol = cfg.get("protocol") or ("demo" if "synthetic" in cfg else dataset)
    if protocol not in ntu.BENCHMARKS:
        raise WorkflowError(
            f"config: datasets.{dataset}: no split protocol for this name; set "
            f"datasets.{dataset}.protocol to one of {sorted(ntu.BENCHMARKS)}"
        )
    return protocol


def check_dataset(name, cfg):
    """What the schema cannot say, checked before any job runs (messages name the key)."""
    key = f"datasets.{name}"
    protocol = protocol_of(name)
    wrong = [b for b in cfg["benchmarks"] if b not in ntu.BENCHMARKS[protocol]]
    if wrong:
        raise WorkflowError(
            f"config: {key}.benchmarks: {wrong} not defined for protocol {protocol!r} "
            f"(it has {list(ntu.BENCHMARKS[protocol])})"
        )
    if cfg["pose_backend"] == "onnx" and "onnx_model" not in cfg:
        raise WorkflowError(
            f"config: {key}.onnx_model is required by pose_backend onnx"
        )
    depth = cfg.get("raw_depth_dir")
    if (
        "synthetic" in cfg
        and depth
        and Path(depth) != Path(f"results/{name}/depth_masked")
    ):
        raise WorkflowError(
            f"config: {key}.raw_depth_dir: a synthetic dataset writes its depth to "
            f"results/{name}/depth_masked, got {depth!r}"
        )
    if "synthetic" in cfg:
        from rgbpose.synthetic import SynthConfig

        try:
            SynthConfig.from_dict(cfg["synthetic"])
        except (ValueError, TypeError) as exc:
            raise WorkflowError(f"config: {key}.synthetic: {exc}") from None


for _name in config["run"]:
    if _name not in config["datasets"]:
        raise WorkflowError(
            f"config: run lists {_name!r}, which is not a key of datasets "
            f"(known: {', '.join(sorted(config['datasets']))})"
        )
for _name, _cfg in config["datasets"].items():
    check_dataset(_name, _cfg)


def python_command():
    """The interpreter of every job, as a shell word.

    Locally and on a cluster with a shared file system: the interpreter running Snakemake (an
    absolute path, so no activated venv or PATH entry is needed).  Under ``--sdm conda``: the env's
    ``python``, found on the PATH the env activation sets.
    """
    methods = workflow.deployment_settings.deployment_method
    return (
        "python" if DeploymentMethod.CONDA in methods else shlex.quote(sys.executable)
    )


# Every job's shell defines `rgbpose` (and `rgbpose_torchrun GPUS ...`) as our package (SRC) run
# by the job's interpreter, so rules read `rgbpose <command> ...` and need nothing on PATH.
_PYTHON = f"PYTHONPATH={shlex.quote(str(SRC))}${{PYTHONPATH:+:$PYTHONPATH}} {python_command()}"
_PREFIX = (
    "set -euo pipefail; "
    f'rgbpose() {{ {_PYTHON} -m rgbpose.cli "$@"; }}; '
    f"rgbpose_torchrun() {{ {_PYTHON} -m torch.distributed.run --standalone"
    ' --nproc-per-node="$1" -m rgbpose.cli "${@:2}"; }; '
)
shell.prefix(
    _PREFIX.replace("{", "{{").replace("}", "}}")
)  # the prefix is formatted too


wildcard_constraints:
    dataset=r"[a-z][a-z0-9]*",
    bench=r"xsub|xview|xset",
    shard=r"\d{4}",
    stream=r"[a-z][a-z0-9_]*",


def dataset_cfg(dataset):
    """The config block of one dataset (defaults filled in by the schema)."""
    try:
        return config["datasets"][dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}") from None


def is_synthetic(dataset):
    return "synthetic" in dataset_cfg(dataset)


def scanned_skeleton_dir(dataset):
    """The skeleton directory a raw scan checks: only Kinect datasets read skeleton files."""
    cfg = dataset_cfg(dataset)
    return cfg["raw_skeleton_dir"] if cfg["pose_backend"] == "kinect" else None


@cache
def raw_scan(dataset):
    """The raw-directory scan of a real dataset (``rgbpose.preprocess.scan``), once per run.

    Only NTU sample names become samples; every other ``*_rgb.avi`` (and a skeleton without its
    video) is a bad sample: under ``on_bad_sample: fail`` planning stops here naming the files,
    under ``skip`` the scan_raw rule lists them in skipped.tsv.  No other name reaches a shell.
    """
    from rgbpose.io import BadSampleError
    from rgbpose.preprocess.scan import scan_raw

    cfg = dataset_cfg(dataset)
    skeletons = scanned_skeleton_dir(dataset)
    try:
        scan = scan_raw(cfg["raw_video_dir"], skeletons, ntu.missing_skeletons())
    except BadSampleError as exc:
        raise WorkflowError(f"dataset {dataset}: {exc}") from None
    if scan.bad and cfg["on_bad_sample"] == "fail":
        raise WorkflowError(
            f"dataset {dataset} (on_bad_sample: fail): {scan.error()}\n"
            "Rename or remove these files, or set on_bad_sample: skip to list them in "
            f"results/{dataset}/skipped.tsv."
        )
    return scan


@cache
def sample_names(dataset):
    """Sorted sample names of a dataset, known at planning time.

    Synthetic: computed from its config.  Real: every <name>_rgb.avi in raw_video_dir with an NTU
    name, minus the NTU missing-skeleton samples that every published benchmark excludes
    (documented in the README); see raw_scan for the other files.
    """
    cfg = dataset_cfg(dataset)
    if is_synthetic(dataset):
        from rgbpose.synthetic import SynthConfig
        from rgbpose.synthetic import sample_names as synth_names

        return tuple(synth_names(SynthConfig.from_dict(cfg["synthetic"])))
    names = raw_scan(dataset).names
    if not names:
        raise WorkflowError(
            f"dataset {dataset}: no <NTU name>_rgb.avi files in {cfg['raw_video_dir']!r}"
        )
    return names


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


def scan_skeleton_option(wildcards):
    """``--skeleton-dir DIR`` for the scan_raw rule: the directory planning scanned too."""
    skeletons = scanned_skeleton_dir(wildcards.dataset)
    return [] if skeletons is None else ["--skeleton-dir", skeletons]


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


# Option builders return argument lists: rules print them with {params.x:q}, one quoted word
# each, so a configured path with spaces or shell characters stays one argument.
def extract_options(wildcards):
    cfg = dataset_cfg(wildcards.dataset)
    opts = ["--backend", cfg["pose_backend"]]
    if cfg["pose_backend"] == "kinect":
        opts += ["--img-shape", *map(str, cfg["img_shape"])]
    if cfg["pose_backend"] == "onnx":
        opts += ["--model", cfg["onnx_model"]]
    return opts


def compress_options(wildcards):
    c = dataset_cfg(wildcards.dataset)["compress"]
    return [f"--{k}={c[k]}" for k in ("height", "crf", "preset", "gop")]


def has_depth(dataset):
    return bool(dataset_cfg(dataset).get("raw_depth_dir"))


def depth_skips(wildcards):
    """The depth stage's skip TSVs when the dataset has depth: build_annotations leaves those
    samples out of every stream, so all streams (and their fusions) see the same samples.
    """
    if not has_depth(wildcards.dataset):
        return []
    return all_shards("results/{dataset}/shards/depth/{shard}.skipped.tsv")(wildcards)


def frame_store_on(dataset):
    return dataset_cfg(dataset)["frame_store"]["enabled"]


def frame_store_options(wildcards):
    c = dataset_cfg(wildcards.dataset)["frame_store"]
    return [f"--codec={c['codec']}", f"--quality={c['quality']}"]


def shard_sample_names(wildcards):
    return shard_names(wildcards.dataset, wildcards.shard)


def split_protocol(wildcards):
    """Split rules of the dataset (rgbpose.ntu.make_splits' dataset argument)."""
    return protocol_of(wildcards.dataset)


def benchmark_list(wildcards):
    return dataset_cfg(wildcards.dataset)["benchmarks"]


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


def gpus(wildcards):
    return dataset_cfg(wildcards.dataset)["gpus"]


def num_classes(wildcards):
    return dataset_cfg(wildcards.dataset)["num_classes"]


def launcher(wildcards, resources):
    """`rgbpose` for one process; torchrun with one process per GPU when a job has several."""
    if int(resources.gpu) > 1:
        return f"rgbpose_torchrun {int(resources.gpu)}"
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
