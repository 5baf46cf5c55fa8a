# Per-video stages run one job per shard of `shard_size` videos, so even NTU 120 plans in seconds.


rule synthesize_dataset:
    output:
        directory("results/{dataset}/raw"),
    log:
        "logs/synthesize_dataset/{dataset}.log",
    benchmark:
        "benchmarks/synthesize_dataset/{dataset}.tsv"
    conda:
        "../../envs/rgbpose.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        synth=synth_config_json,
    shell:
        "rgbpose synthesize -o {output:q} --config-json {params.synth:q} --jobs {threads}"
        " > {log:q} 2>&1"


rule contact_sheet:
    input:
        "results/{dataset}/raw",
    output:
        report(
            "results/{dataset}/contact_sheet.png",
            caption="../report/contact_sheet.rst",
            category="Data",
        ),
    log:
        "logs/contact_sheet/{dataset}.log",
    conda:
        "../../envs/rgbpose.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        videos=contact_sheet_videos,
    shell:
        "rgbpose contact-sheet {params.videos:q} -o {output:q} --frames 5 > {log:q} 2>&1"


rule scan_raw:
    input:
        raw_dir("raw_video_dir"),
    output:
        "results/{dataset}/shards/scan.skipped.tsv",
    log:
        "logs/scan_raw/{dataset}.log",
    conda:
        "../../envs/rgbpose.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        videos=lambda w: dataset_cfg(w.dataset)["raw_video_dir"],
        skeletons=scan_skeleton_option,
        missing=lambda w: "--no-exclude-missing" if is_synthetic(w.dataset) else "",
        policy=bad_sample_policy,
    shell:
        "rgbpose scan-raw --video-dir {params.videos:q} {params.skeletons:q} {params.missing}"
        " --out {output:q} --on-bad-sample {params.policy} > {log:q} 2>&1"


rule compress_videos:
    input:
        raw_dir("raw_video_dir"),
    output:
        manifest="results/{dataset}/shards/compress/{shard}.tsv",
        skipped="results/{dataset}/shards/compress/{shard}.skipped.tsv",
    log:
        "logs/compress_videos/{dataset}_{shard}.log",
    benchmark:
        "benchmarks/compress_videos/{dataset}_{shard}.tsv"
    conda:
        "../../envs/rgbpose.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        videos=raw_videos_of_shard,
        options=compress_options,
        policy=bad_sample_policy,
    shell:
        "rgbpose compress {params.videos:q} --out-dir results/{wildcards.dataset}/videos"
        " --manifest {output.manifest:q} --skipped {output.skipped:q} {params.options:q}"
        " --on-bad-sample {params.policy} --jobs {threads} > {log:q} 2>&1"


rule extract_poses:
    input:
        pose_inputs_of_shard,
    output:
        poses="results/{dataset}/shards/poses/{shard}.pkl",
        skipped="results/{dataset}/shards/poses/{shard}.skipped.tsv",
    log:
        "logs/extract_poses/{dataset}_{shard}.log",
    benchmark:
        "benchmarks/extract_poses/{dataset}_{shard}.tsv"
    conda:
        "../../envs/rgbpose.yaml"
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        inputs=pose_input_paths,
        options=extract_options,
        policy=bad_sample_policy,
    shell:
        "rgbpose extract-poses {params.options:q} {params.inputs:q} -o {output.poses:q}"
        " --skipped {output.skipped:q} --on-bad-sample {params.policy} > {log:q} 2>&1"


rule denoise_poses:
    input:
        "results/{dataset}/shards/poses/{shard}.pkl",
    output:
        poses="results/{dataset}/shards/denoised/{shard}.pkl",
        skipped="results/{dataset}/shards/denoised/{shard}.skipped.tsv",
    log:
        "logs/denoise_poses/{dataset}_{shard}.log",
    conda:
        "../../envs/rgbpose.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        policy=bad_sample_policy,
        compat=lambda w: dataset_cfg(w.dataset)["denoise_compat"],
    shell:
        "rgbpose denoise {input:q} -o {output.poses:q} --skipped {output.skipped:q}"
        " --compat {params.compat:q} --on-bad-sample {params.policy} > {log:q} 2>&1"


rule build_annotations:
    input:
        poses=all_shards("results/{dataset}/shards/denoised/{shard}.pkl"),
        scan="results/{dataset}/shards/scan.skipped.tsv",
        manifests=all_shards("results/{dataset}/shards/compress/{shard}.tsv"),
        skipped=all_shards(
            "results/{dataset}/shards/compress/{shard}.skipped.tsv",
            "results/{dataset}/shards/poses/{shard}.skipped.tsv",
            "results/{dataset}/shards/denoised/{shard}.skipped.tsv",
        ),
        depth_skipped=depth_skips,
    output:
        ann="results/{dataset}/annotations.pkl",
        skipped=report(
            "results/{dataset}/skipped.tsv",
            caption="../report/skipped.rst",
            category="Data",
        ),
    log:
        "logs/build_annotations/{dataset}.log",
    conda:
        "../../envs/rgbpose.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        protocol=split_protocol,
        benchmarks=benchmark_list,
        layout=pose_layout,
        policy=bad_sample_policy,
    shell:
        "rgbpose build-annotations {input.poses:q} -o {output.ann:q}"
        " --dataset {params.protocol} --benchmarks {params.benchmarks:q}"
        " --skipped-in {input.scan:q} {input.skipped:q} {input.depth_skipped:q}"
        " --skipped-out {output.skipped:q}"
        " --video-manifests {input.manifests:q} --on-bad-sample {params.policy}"
        " --pose-layout {params.layout} > {log:q} 2>&1"


# The training frame store (rgbpose.data.framestore): per video, the frames training can read,
# each a JPEG of the region holding every clip's compaction box.  It needs the annotations (the
# boxes come from the poses); an unchanged sample's file is kept when they are rebuilt.  A sample
# this stage skips is read from its video by the loader (listed in the shard's skipped TSV).
rule frame_store:
    input:
        ann="results/{dataset}/annotations.pkl",
        manifest="results/{dataset}/shards/compress/{shard}.tsv",
    output:
        manifest="results/{dataset}/shards/frames/{shard}.tsv",
        skipped="results/{dataset}/shards/frames/{shard}.skipped.tsv",
    log:
        "logs/frame_store/{dataset}_{shard}.log",
    benchmark:
        "benchmarks/frame_store/{dataset}_{shard}.tsv"
    conda:
        "../../envs/rgbpose.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        names=shard_sample_names,
        options=frame_store_options,
        policy=bad_sample_policy,
    shell:
        "rgbpose frame-store --ann {input.ann:q} --video-dir results/{wildcards.dataset}/videos"
        " --out-dir results/{wildcards.dataset}/frames --manifest {output.manifest:q}"
        " --skipped {output.skipped:q} --names {params.names:q} {params.options:q}"
        " --on-bad-sample {params.policy} --jobs {threads} > {log:q} 2>&1"


# DRSR (RGB-D): NTU masked depth -> per sample the 320x240 RGB region of interest and depth crop
# of every frame (rgbpose.preprocess.depth).  Its bad samples go to build_annotations, which
# leaves them out of every stream.  A synthetic dataset renders its depth first.
rule synthesize_depth:
    output:
        directory("results/{dataset}/depth_masked"),
    log:
        "logs/synthesize_depth/{dataset}.log",
    benchmark:
        "benchmarks/synthesize_depth/{dataset}.tsv"
    conda:
        "../../envs/rgbpose.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        synth=synth_config_json,
    shell:
        "rgbpose synthesize --depth-only --depth-dir {output:q}"
        " --config-json {params.synth:q} --jobs {threads} > {log:q} 2>&1"


rule depth_store:
    input:
        depth=raw_dir("raw_depth_dir"),
        manifest="results/{dataset}/shards/compress/{shard}.tsv",
    output:
        manifest="results/{dataset}/shards/depth/{shard}.tsv",
        skipped="results/{dataset}/shards/depth/{shard}.skipped.tsv",
    log:
        "logs/depth_store/{dataset}_{shard}.log",
    benchmark:
        "benchmarks/depth_store/{dataset}_{shard}.tsv"
    conda:
        "../../envs/rgbpose.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        names=shard_sample_names,
        tolerance=lambda w: dataset_cfg(w.dataset)["depth_frame_tolerance"],
        policy=bad_sample_policy,
    shell:
        "rgbpose depth-store {params.names:q} --depth-dir {input.depth:q}"
        " --video-dir results/{wildcards.dataset}/videos"
        " --out-dir results/{wildcards.dataset}/drsr_store --manifest {output.manifest:q}"
        " --skipped {output.skipped:q} --frame-tolerance {params.tolerance}"
        " --on-bad-sample {params.policy} --jobs {threads} > {log:q} 2>&1"
