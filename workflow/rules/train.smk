# Generic rules over the dataset's streams (streams.smk): train each stream (from its init_from
# streams' merged checkpoints when it has any), test it, fuse all scores.
# Resume state lives in an undeclared work/ directory (Snakemake deletes declared outputs of failed
# jobs); only the final model is a declared, protected output.  A retry resumes from work/last.pt
# when everything that defines the run is unchanged (else it starts fresh and keeps the old state in
# work/stale-<time>/); a deterministic data error is recorded in work/failed.json and a retry with
# the same inputs fails at once instead of repeating it.  See rgbpose.engine.train.


rule train:
    input:
        ann="results/{dataset}/annotations.pkl",
        config=stream_config,
        videos=stream_videos,
        init=stream_init,
    output:
        ckpt=protected("results/{dataset}_{bench}/{stream}/best.pt"),
        log_csv="results/{dataset}_{bench}/{stream}/train_log.csv",
    log:
        "logs/train/{dataset}_{bench}_{stream}.log",
    benchmark:
        "benchmarks/train/{dataset}_{bench}_{stream}.tsv"
    retries: 2
    conda:
        "../../envs/rgbpose.yaml"
    threads: 2
    resources:
        gpu=gpus,
        mem_mb=16000,
        runtime=train_runtime,
    params:
        launch=launcher,
        work="results/{dataset}_{bench}/{stream}/work",
        num_classes=num_classes,
        init=init_option,
        sets=set_options,
        store=frame_store_option,
    shell:
        "{params.launch} train --config {input.config:q} --ann {input.ann:q}"
        " --split {wildcards.bench} --video-dir results/{wildcards.dataset}/videos"
        " {params.store:q}"
        " --num-classes {params.num_classes} --work-dir {params.work:q} --out {output.ckpt:q}"
        " {params.init:q} {params.sets:q} > {log:q} 2>&1"
        " && cp {params.work:q}/train_log.csv {output.log_csv:q}"


# A stream's init_from: the best checkpoints of its source streams, merged by its model's
# registered merge (RGBPoseConv3D: one RGB and one pose stream).
rule merge:
    input:
        unpack(merge_sources),
        config=stream_config,
    output:
        "results/{dataset}_{bench}/{stream}/init.pt",
    log:
        "logs/merge/{dataset}_{bench}_{stream}.log",
    conda:
        "../../envs/rgbpose.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        sources=merge_options,
        sets=set_options,
    shell:
        "rgbpose merge --config {input.config:q} --from {params.sources:q}"
        " {params.sets:q} -o {output:q} > {log:q} 2>&1"


rule test:
    input:
        ckpt="results/{dataset}_{bench}/{stream}/best.pt",
        ann="results/{dataset}/annotations.pkl",
        config=stream_config,
        videos=stream_videos,
    output:
        scores="results/{dataset}_{bench}/{stream}/scores.pkl",
        metrics="results/{dataset}_{bench}/{stream}/metrics.json",
        confusion=report(
            "results/{dataset}_{bench}/{stream}/confusion.png",
            caption="../report/confusion.rst",
            category="Confusion matrices",
            subcategory="{dataset}_{bench}",
            labels={"stream": "{stream}"},
        ),
        per_class=report(
            "results/{dataset}_{bench}/{stream}/per_class.csv",
            caption="../report/per_class.rst",
            category="Per-class accuracy",
            subcategory="{dataset}_{bench}",
            labels={"stream": "{stream}"},
        ),
    log:
        "logs/test/{dataset}_{bench}_{stream}.log",
    benchmark:
        "benchmarks/test/{dataset}_{bench}_{stream}.tsv"
    conda:
        "../../envs/rgbpose.yaml"
    threads: 2
    resources:
        gpu=gpus,
        mem_mb=16000,
        runtime=train_runtime,
    params:
        sets=set_options,
        store=frame_store_option,
    shell:
        "rgbpose test --config {input.config:q} --checkpoint {input.ckpt:q}"
        " --ann {input.ann:q} --split {wildcards.bench}_val"
        " --video-dir results/{wildcards.dataset}/videos {params.store:q}"
        " --out {output.scores:q}"
        " --metrics-out {output.metrics:q} --confusion-png {output.confusion:q}"
        " --per-class-csv {output.per_class:q} {params.sets:q} > {log:q} 2>&1"


# fusion.txt / fusion.json: every stream (a row per head for multi-head models) and every
# declared fusion of the dataset.
rule fuse:
    input:
        stream_outputs("scores.pkl"),
    output:
        txt=report(
            "results/{dataset}_{bench}/fusion.txt",
            caption="../report/fusion.rst",
            category="Fusion",
            labels={"benchmark": "{dataset}_{bench}"},
        ),
        json="results/{dataset}_{bench}/fusion.json",
    log:
        "logs/fuse/{dataset}_{bench}.log",
    conda:
        "../../envs/rgbpose.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        opts=fuse_options,
    shell:
        "rgbpose fuse {params.opts:q} -o {output.txt:q} --json {output.json:q} > {log:q} 2>&1"


rule plot_training_curves:
    input:
        stream_outputs("train_log.csv"),
    output:
        report(
            "results/{dataset}_{bench}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            labels={"benchmark": "{dataset}_{bench}"},
        ),
    log:
        "logs/plot_training_curves/{dataset}_{bench}.log",
    conda:
        "../../envs/rgbpose.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        titles=stream_names,
    shell:
        "rgbpose plot-curves {input:q} -o {output:q}"
        " --titles {params.titles:q} > {log:q} 2>&1"
