# Train the two unimodal models, merge them into an RGBPoseConv3D init, fine-tune, test, fuse.
# Resume state lives in an undeclared work/ directory (Snakemake deletes declared outputs of failed
# jobs); only the final model is a declared, protected output.  A retry resumes from work/last.pt
# when everything that defines the run is unchanged (else it starts fresh and keeps the old state in
# work/stale-<time>/); a deterministic data error is recorded in work/failed.json and a retry with
# the same inputs fails at once instead of repeating it.  See rgbpose.engine.train.


rule train_pose_only:
    input:
        ann="results/{dataset}/annotations.pkl",
        config=model_config("pose_only"),
    output:
        ckpt=protected("results/{dataset}_{bench}/pose_only/best.pt"),
        log_csv="results/{dataset}_{bench}/pose_only/train_log.csv",
    log:
        "logs/train_pose_only/{dataset}_{bench}.log",
    benchmark:
        "benchmarks/train_pose_only/{dataset}_{bench}.tsv"
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
        work="results/{dataset}_{bench}/pose_only/work",
        num_classes=num_classes,
        init=[],
    shell:
        "{params.launch} train --config {input.config:q} --ann {input.ann:q}"
        " --split {wildcards.bench} --video-dir results/{wildcards.dataset}/videos"
        " --num-classes {params.num_classes} --work-dir {params.work:q} --out {output.ckpt:q}"
        " {params.init:q} > {log:q} 2>&1"
        " && cp {params.work:q}/train_log.csv {output.log_csv:q}"


use rule train_pose_only as train_rgb_only with:
    input:
        ann="results/{dataset}/annotations.pkl",
        config=model_config("rgb_only"),
        videos=all_shards("results/{dataset}/shards/compress/{shard}.tsv"),
    output:
        ckpt=protected("results/{dataset}_{bench}/rgb_only/best.pt"),
        log_csv="results/{dataset}_{bench}/rgb_only/train_log.csv",
    log:
        "logs/train_rgb_only/{dataset}_{bench}.log",
    benchmark:
        "benchmarks/train_rgb_only/{dataset}_{bench}.tsv"
    params:
        launch=launcher,
        work="results/{dataset}_{bench}/rgb_only/work",
        num_classes=num_classes,
        init=[],


rule merge_checkpoints:
    input:
        rgb="results/{dataset}_{bench}/rgb_only/best.pt",
        pose="results/{dataset}_{bench}/pose_only/best.pt",
        config=model_config("rgbpose_conv3d"),
    output:
        "results/{dataset}_{bench}/rgbpose_conv3d/init.pt",
    log:
        "logs/merge_checkpoints/{dataset}_{bench}.log",
    conda:
        "../../envs/rgbpose.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "rgbpose merge --rgb {input.rgb:q} --pose {input.pose:q} --config {input.config:q}"
        " -o {output:q} > {log:q} 2>&1"


use rule train_pose_only as finetune_rgbpose with:
    input:
        ann="results/{dataset}/annotations.pkl",
        config=model_config("rgbpose_conv3d"),
        videos=all_shards("results/{dataset}/shards/compress/{shard}.tsv"),
        init="results/{dataset}_{bench}/rgbpose_conv3d/init.pt",
    output:
        ckpt=protected("results/{dataset}_{bench}/rgbpose_conv3d/best.pt"),
        log_csv="results/{dataset}_{bench}/rgbpose_conv3d/train_log.csv",
    log:
        "logs/finetune_rgbpose/{dataset}_{bench}.log",
    benchmark:
        "benchmarks/finetune_rgbpose/{dataset}_{bench}.tsv"
    params:
        launch=launcher,
        work="results/{dataset}_{bench}/rgbpose_conv3d/work",
        num_classes=num_classes,
        init=["--init", "results/{dataset}_{bench}/rgbpose_conv3d/init.pt"],


rule test_model:
    input:
        ckpt="results/{dataset}_{bench}/{model}/best.pt",
        ann="results/{dataset}/annotations.pkl",
        config=test_model_config,
        videos=test_video_inputs,
    output:
        scores="results/{dataset}_{bench}/{model}/scores.pkl",
        metrics="results/{dataset}_{bench}/{model}/metrics.json",
        confusion=report(
            "results/{dataset}_{bench}/{model}/confusion.png",
            caption="../report/confusion.rst",
            category="Confusion matrices",
            subcategory="{dataset}_{bench}",
            labels={"model": "{model}"},
        ),
        per_class=report(
            "results/{dataset}_{bench}/{model}/per_class.csv",
            caption="../report/per_class.rst",
            category="Per-class accuracy",
            subcategory="{dataset}_{bench}",
            labels={"model": "{model}"},
        ),
    log:
        "logs/test_model/{dataset}_{bench}_{model}.log",
    benchmark:
        "benchmarks/test_model/{dataset}_{bench}_{model}.tsv"
    conda:
        "../../envs/rgbpose.yaml"
    threads: 2
    resources:
        gpu=gpus,
        mem_mb=16000,
        runtime=train_runtime,
    shell:
        "rgbpose test --config {input.config:q} --checkpoint {input.ckpt:q}"
        " --ann {input.ann:q} --split {wildcards.bench}_val"
        " --video-dir results/{wildcards.dataset}/videos --out {output.scores:q}"
        " --metrics-out {output.metrics:q} --confusion-png {output.confusion:q}"
        " --per-class-csv {output.per_class:q} > {log:q} 2>&1"


rule fuse:
    input:
        rgb="results/{dataset}_{bench}/rgb_only/scores.pkl",
        pose="results/{dataset}_{bench}/pose_only/scores.pkl",
        rgbpose="results/{dataset}_{bench}/rgbpose_conv3d/scores.pkl",
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
    shell:
        "rgbpose fuse --scores rgb_only={input.rgb:q} pose_only={input.pose:q}"
        " rgbpose={input.rgbpose:q} -o {output.txt:q} --json {output.json:q} > {log:q} 2>&1"


rule plot_training_curves:
    input:
        expand(
            "results/{{dataset}}_{{bench}}/{model}/train_log.csv",
            model=("rgb_only", "pose_only", "rgbpose_conv3d"),
        ),
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
    shell:
        "rgbpose plot-curves {input:q} -o {output:q}"
        " --titles rgb_only pose_only rgbpose_conv3d > {log:q} 2>&1"
