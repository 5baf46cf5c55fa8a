# Streams and fusions as configuration.  A dataset declares its `streams:` (name -> run config,
# optional init_from) and its `fusions:` (name -> weights of streams or stream heads); the rules
# in train.smk are generic over {stream}.  Names and references are checked when the workflow is
# parsed; each stream's run config (model vs data cross-checks) when the DAG first needs it.
# Either way before any job runs, and every message names the config key.

#: dataset pose_layout -> the layout name the annotations carry (native: known only from them)
POSE_LAYOUTS = {"coco17": "coco17", "ntu25": "ntu25", "native": None}


def check_streams(name, cfg):
    """init_from and fusion references name declared streams; no init_from cycle."""
    key = f"config: datasets.{name}"
    streams = cfg["streams"]
    known = ", ".join(streams)
    for stream, scfg in streams.items():
        for src in scfg.get("init_from", []):
            if src not in streams:
                raise WorkflowError(
                    f"{key}.streams.{stream}.init_from: unknown stream {src!r} (streams: {known})"
                )

    def visit(stream, path):
        if stream in path:
            cycle = " -> ".join([*path[path.index(stream) :], stream])
            raise WorkflowError(f"{key}.streams: init_from cycle {cycle}")
        for src in streams[stream].get("init_from", []):
            visit(src, [*path, stream])

    for stream in streams:
        visit(stream, [])
    for fusion, fcfg in cfg["fusions"].items():
        if fusion in streams:
            raise WorkflowError(
                f"{key}.fusions.{fusion}: a stream has this name; rows must be unique"
            )
        for ref in fcfg["weights"]:
            stream = ref.split(".")[0]
            if stream not in streams:
                raise WorkflowError(
                    f"{key}.fusions.{fusion}.weights: unknown stream {stream!r} in {ref!r} "
                    f"(streams: {known})"
                )


for _name, _cfg in config["datasets"].items():
    check_streams(_name, _cfg)


def stream_cfg(dataset, stream):
    streams = dataset_cfg(dataset)["streams"]
    if stream not in streams:
        raise WorkflowError(
            f"dataset {dataset} has no stream {stream!r} (streams: {', '.join(streams)})"
        )
    return streams[stream]


@cache
def stream_run_config(dataset, stream):
    """(path, RunConfig) of a stream, loaded once: a typo (``optim.lrr``) or a model that does
    not fit the data (modality, channels vs the dataset's pose layout, frame ratios) fails
    while the DAG is built, naming the key and the file."""
    from rgbpose.engine.config import check_model_data, load_run_config
    from rgbpose.io import ConfigError

    scfg = stream_cfg(dataset, stream)
    path = scfg["config"]
    layout = POSE_LAYOUTS[dataset_cfg(dataset)["pose_layout"]]
    try:
        cfg = load_run_config(path, scfg.get("set"))
        check_model_data(cfg, path, layout)
    except ConfigError as exc:
        raise WorkflowError(
            f"config: datasets.{dataset}.streams.{stream}.config: {exc}"
        ) from None
    if getattr(cfg.data, "store_kind", None) == "drsr" and not has_depth(dataset):
        raise WorkflowError(
            f"config: datasets.{dataset}.streams.{stream}: its pipeline ({path}: data.modality "
            f"drsr) reads depth; set datasets.{dataset}.raw_depth_dir"
        )
    return path, cfg


def stream_contract(dataset, stream):
    from rgbpose.models.registry import get_entry

    cfg = stream_run_config(dataset, stream)[1]
    return get_entry(cfg.model.name).contract(cfg.model.overrides)


def stream_config(wildcards):
    """Input function: the (checked) run-config YAML of the stream."""
    return stream_run_config(wildcards.dataset, wildcards.stream)[0]


def set_options(wildcards):
    """``--set KEY=VALUE ...`` of the stream's ``set:`` (values as JSON, which is YAML)."""
    sets = stream_cfg(wildcards.dataset, wildcards.stream).get("set") or {}
    return ["--set", *(f"{k}={json.dumps(v)}" for k, v in sets.items())] if sets else []


def stream_store(wildcards):
    """(shard manifest pattern, folder) of the training store the stream's pipeline reads (its
    data config's ``store_kind``), or None: the RGB frame store when the dataset has it on,
    DRSR's depth store."""
    cfg = stream_run_config(wildcards.dataset, wildcards.stream)[1]
    kind = getattr(cfg.data, "store_kind", None)
    if kind == "frames" and frame_store_on(wildcards.dataset):
        return "results/{dataset}/shards/frames/{shard}.tsv", "frames"
    if kind == "drsr":
        return "results/{dataset}/shards/depth/{shard}.tsv", "drsr_store"
    return None


def stream_videos(wildcards):
    """What the stream reads besides the annotations: the compressed-video manifests when its
    pipeline decodes video, and its training store's manifests."""
    cfg = stream_run_config(wildcards.dataset, wildcards.stream)[1]
    patterns = []
    if getattr(cfg.data, "uses_rgb", False):
        patterns.append("results/{dataset}/shards/compress/{shard}.tsv")
    store = stream_store(wildcards)
    if store is not None:
        patterns.append(store[0])
    return all_shards(*patterns)(wildcards) if patterns else []


def frame_store_option(wildcards):
    """``--frame-store DIR`` of the stream's training store, if it reads one."""
    store = stream_store(wildcards)
    if store is None:
        return []
    return ["--frame-store", f"results/{wildcards.dataset}/{store[1]}"]


def stream_dir(wildcards, stream=None):
    return f"results/{wildcards.dataset}_{wildcards.bench}/{stream or wildcards.stream}"


def stream_init(wildcards):
    """init.pt of a stream with init_from (built by the merge rule), else nothing."""
    if stream_cfg(wildcards.dataset, wildcards.stream).get("init_from"):
        return f"{stream_dir(wildcards)}/init.pt"
    return []


def init_option(wildcards):
    init = stream_init(wildcards)
    return ["--init", init] if init else []


def merge_sources(wildcards):
    """{source stream: its best.pt} of the stream's init_from."""
    sources = stream_cfg(wildcards.dataset, wildcards.stream).get("init_from")
    if not sources:
        raise WorkflowError(
            f"datasets.{wildcards.dataset}.streams.{wildcards.stream} has no init_from"
        )
    return {s: f"{stream_dir(wildcards, s)}/best.pt" for s in sources}


def merge_options(wildcards):
    return [f"{s}={p}" for s, p in merge_sources(wildcards).items()]


def stream_names(wildcards):
    return list(dataset_cfg(wildcards.dataset)["streams"])


def stream_outputs(name):
    """Input function: results/<dataset>_<bench>/<stream>/<name> of every stream."""

    def inputs(wildcards):
        return [f"{stream_dir(wildcards, s)}/{name}" for s in stream_names(wildcards)]

    return inputs


def fusion_spec(dataset):
    """The rgbpose fuse spec: row titles and the fusions, with head references checked against
    the models' contracts (``datasets.<d>.fusions.<f>.weights: stream 'x' has no head 'y'``).
    """
    cfg = dataset_cfg(dataset)
    titles = {s: sc["title"] for s, sc in cfg["streams"].items() if "title" in sc}
    fusions = {}
    for name, fcfg in cfg["fusions"].items():
        for ref in fcfg["weights"]:
            stream, _, head = ref.partition(".")
            heads = stream_contract(dataset, stream).heads
            if head and head not in heads:
                raise WorkflowError(
                    f"config: datasets.{dataset}.fusions.{name}.weights: stream {stream!r} has "
                    f"no head {head!r} (its heads: {', '.join(heads)})"
                )
        fusions[name] = {"weights": fcfg["weights"], "scores": fcfg["scores"]}
        if "title" in fcfg:
            titles[name] = fcfg["title"]
    return {"fusions": fusions, "titles": titles}


def fuse_options(wildcards):
    scores = stream_outputs("scores.pkl")(wildcards)
    pairs = [f"{s}={p}" for s, p in zip(stream_names(wildcards), scores)]
    spec = json.dumps(fusion_spec(wildcards.dataset), separators=(",", ":"))
    return ["--scores", *pairs, "--spec", spec]
