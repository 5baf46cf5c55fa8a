"""``rgbpose test``: multi-view testing of a trained checkpoint.

Writes the scores pickle (``--out``; format in ``rgbpose.engine.runtime``) and optionally the
metrics JSON, a confusion-matrix PNG and a per-class accuracy CSV (``rgbpose.engine.metrics``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rgbpose.engine.checkpoint import model_from_checkpoint, model_num_classes
from rgbpose.engine.metrics import (
    main_probs,
    per_class_rows,
    plot_confusion,
    scores_metrics,
    write_per_class_csv,
)
from rgbpose.engine.runtime import predict_scores
from rgbpose.io import dump_pickle, write_text_atomic


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgbpose test",
        description="Multi-clip test of a trained model: per-video scores (mean over views of "
        "softmax), metrics, confusion matrix and per-class accuracy.",
    )
    p.add_argument("--config", required=True, help="run-config YAML (data + test sections)")
    p.add_argument("--checkpoint", required=True, help="checkpoint from rgbpose train")
    p.add_argument("--ann", required=True, help="annotation pickle")
    p.add_argument("--split", required=True, help="split key, e.g. xsub_val")
    p.add_argument("--video-dir", default=None, help="folder of <name>.mp4 (RGB models)")
    p.add_argument(
        "--frame-store", default=None,
        help="the training store of the pipeline: <name>.frames (rgbpose frame-store) for RGB, "
        "<name>.npz (rgbpose depth-store) for drsr",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="scores pickle to write")
    p.add_argument("--metrics-out", default=None, help="metrics JSON")
    p.add_argument("--confusion-png", default=None, help="confusion-matrix PNG")
    p.add_argument("--per-class-csv", default=None, help="per-class accuracy CSV")
    p.add_argument("--num-clips", type=int, default=None, help="default: config test.num_clips")
    p.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, default=None,
        help="add flipped views (default: config test.flip)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=None, help="videos per batch")
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    return p


def cli(argv: list[str] | None = None) -> int:
    """``rgbpose test``: write the scores pickle (and optional metrics/plots)."""
    args = build_parser().parse_args(argv)
    from rgbpose.data.batch import batch_transform, collate  # noqa: PLC0415
    from rgbpose.data.config import TestViews  # noqa: PLC0415
    from rgbpose.data.datasets import build_dataset  # noqa: PLC0415
    from rgbpose.engine.config import (  # noqa: PLC0415
        check_model_data,
        load_run_config,
        parse_set_args,
    )

    cfg = load_run_config(args.config, parse_set_args(args.overrides))
    model, _ = model_from_checkpoint(args.checkpoint, cfg, args.config)
    model_name = cfg.model.name

    num_clips = args.num_clips if args.num_clips is not None else cfg.test.num_clips
    flip = args.flip if args.flip is not None else cfg.test.flip
    test_views = TestViews(num_clips, bool(flip))
    dataset = build_dataset(
        cfg.data, args.ann, args.split, "test", args.video_dir,
        num_classes=model_num_classes(model), views=test_views, frame_store=args.frame_store,
    )  # fmt: skip
    check_model_data(cfg, args.config, getattr(dataset, "layout", None))
    views = test_views.count
    batch_size = args.batch_size or max(1, cfg.batch_size // views)
    scores = predict_scores(
        model,
        dataset,
        head_name=model_name,
        batch_size=batch_size,
        num_workers=args.num_workers if args.num_workers is not None else cfg.num_workers,
        device=args.device,
        precision=cfg.precision,
        channels_last=cfg.channels_last,
        collate_fn=collate,
        batch_transform=batch_transform(cfg.data),
    )
    dump_pickle(scores, args.out)
    result = scores_metrics(scores)
    result.update(
        {"checkpoint": str(args.checkpoint), "split": args.split, "num_clips": num_clips,
         "flip": bool(flip)}
    )  # fmt: skip
    summary = ", ".join(
        f"{h} top1 {m['top1'] * 100:.2f}%" for h, m in result.items() if isinstance(m, dict)
    )
    print(f"rgbpose test: {len(scores['names'])} videos x {views} views; {summary}", flush=True)
    if args.metrics_out:
        write_text_atomic(args.metrics_out, json.dumps(result, indent=2) + "\n")
    if args.confusion_png:
        plot_confusion(
            main_probs(scores), scores["labels"], args.confusion_png,
            title=f"{Path(args.checkpoint).parent.name or model_name} on {args.split}",
        )  # fmt: skip
    if args.per_class_csv:
        write_per_class_csv(
            per_class_rows(main_probs(scores), scores["labels"]), args.per_class_csv
        )
    return 0
