"""Single-video inference: ``rgbpose predict VIDEO --checkpoint best.pt``.

No compression step and no dataset layout needed: the video is decoded directly, poses come from
an offline estimator (mediapipe by default, or a user ONNX model), are tracked and reduced to the
model's persons, and the model's own test pipeline (from the checkpoint's resolved run config)
turns them into clips.  Prints the top-k actions with NTU class names and probabilities.

First it says what the checkpoint can tell apart (a demo model may be trained on 10 actions
inside NTU's 60-class label space: its other 50 outputs are meaningless)::

    checkpoint: model rgbpose_conv3d, 60-class head (NTU RGB+D 60 label space), trained on 10
    classes: A001 drink water, A002 eat meal/snack, ...

The trained classes come from the checkpoint meta's ``trained_labels`` (a sorted list of int
labels, 0-based); top-k entries outside it are marked ``(not trained)``.

    video --decode--> frames --estimator--> COCO-17 poses --track/select--> annotation
          --test pipeline (clips, compaction, heatmaps / RGB crops)--> model --> mean softmax
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from .io import BadSampleError, write_text_atomic
from .ntu import class_names


def estimate_poses(
    video: Path, backend: str, onnx_model: str | None = None, num_persons: int = 1
) -> dict[str, Any]:
    """Run the pose backend on ``video`` and keep ``num_persons`` tracked persons."""
    from .preprocess.denoise import denoise_estimator
    from .preprocess.poses import OnnxConfig, OnnxPoseEstimator, extract_mediapipe, extract_onnx

    if backend == "mediapipe":
        pose = extract_mediapipe(video, name=video.stem)
    elif backend == "onnx":
        if not onnx_model:
            raise ValueError("--pose-backend onnx needs --onnx-model")
        pose = extract_onnx(video, OnnxPoseEstimator(onnx_model, OnnxConfig()), name=video.stem)
    else:
        raise ValueError(f"unknown pose backend {backend!r} (mediapipe | onnx)")
    return denoise_estimator(pose, num_persons=num_persons, source=str(video))


def to_annotation(pose: dict[str, Any], name: str) -> dict[str, Any]:
    """A one-sample annotation dict in the PYSKL layout (label unknown: 0)."""
    return {
        "frame_dir": name,
        "label": 0,
        "img_shape": tuple(pose["img_shape"]),
        "original_shape": tuple(pose["img_shape"]),
        "total_frames": int(pose["total_frames"]),
        "keypoint": pose["keypoint"].astype(np.float32),
        "keypoint_score": pose["keypoint_score"].astype(np.float32),
        "layout": pose["layout"],
    }


def require_video(video: str | Path) -> Path:
    """``video`` as a path; ``BadSampleError`` when there is no such file (checked first, before
    the checkpoint is read)."""
    video = Path(video)
    if not video.is_file():
        raise BadSampleError(video, "no such video file")
    return video


def predict(
    video: str | Path,
    checkpoint: str | Path,
    *,
    backend: str = "mediapipe",
    onnx_model: str | None = None,
    num_clips: int | None = None,
    device: str | None = None,
    ckpt: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Class probabilities ``{head: [K]}`` for one video (heads as in ``rgbpose test``);
    ``ckpt``: the checkpoint file's content when the caller has already read it."""
    from .data.batch import batch_transform, collate
    from .data.config import TestViews
    from .data.datasets import build_dataset
    from .engine.checkpoint import model_from_checkpoint
    from .engine.runtime import predict_scores

    video = require_video(video)
    model, cfg = model_from_checkpoint(checkpoint, ckpt=ckpt)

    clips = num_clips if num_clips is not None else cfg.test.num_clips
    pcfg = cfg.data
    if getattr(pcfg, "needs_3d_joints", False):  # the pipeline config says so
        raise ValueError(
            f"{checkpoint}: this model reads 3D Kinect joints (data.modality {pcfg.modality!r}); "
            "predict estimates 2D poses from the video, so it can only run 2D pose and RGB models"
        )
    if any(f.name == "video_ext" for f in dataclasses.fields(pcfg)):  # pipelines reading RGB
        pcfg = dataclasses.replace(pcfg, video_ext=video.suffix)
    persons = getattr(pcfg, "max_persons", 2)
    pose = estimate_poses(video, backend, onnx_model, num_persons=persons)
    ann = to_annotation(pose, video.stem)
    dataset = build_dataset(
        pcfg, {"split": {"predict": [video.stem]}, "annotations": [ann]}, "predict", "test",
        video_dir=video.parent, views=TestViews(clips, cfg.test.flip),
    )  # fmt: skip
    scores = predict_scores(
        model, dataset, head_name=cfg.model.name, device=device, collate_fn=collate,
        batch_transform=batch_transform(pcfg),  # the same on-device step as test and train
    )  # fmt: skip
    return {head: p[0] for head, p in scores["probs"].items()}


#: checkpoint meta key: sorted list of the int labels (0-based) the model was trained on
TRAINED_LABELS_KEY = "trained_labels"
#: names of the label spaces a head size stands for
LABEL_SPACES = {60: "NTU RGB+D 60 label space", 120: "NTU RGB+D 120 label space"}
#: at most this many trained classes are named in the checkpoint line
MAX_LISTED_CLASSES = 20


def trained_labels(
    meta: dict[str, Any], num_classes: int, src: str = "checkpoint"
) -> list[int] | None:
    """The labels a checkpoint was trained on (``meta['trained_labels']``), sorted and unique;
    None when the checkpoint does not record them.  ``BadSampleError`` naming ``src`` when the
    entry is not a list of labels in ``[0, num_classes)``."""
    raw = meta.get(TRAINED_LABELS_KEY)
    if raw is None:
        return None
    ok = isinstance(raw, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < num_classes for v in raw
    )
    if not ok:
        raise BadSampleError(
            src, f"meta {TRAINED_LABELS_KEY!r} must be a list of labels in [0, {num_classes})"
        )
    return sorted(set(raw))


def _action(label: int, names: list[str]) -> str:
    return f"A{label + 1:03d} {names[label] if label < len(names) else f'class {label}'}"


def describe_checkpoint(meta: dict[str, Any], num_classes: int, src: str = "checkpoint") -> str:
    """One line: the model, its head size / label space and the classes it was trained on."""
    model = meta.get("model_name") or (meta.get("config") or {}).get("model", {}).get("name")
    space = LABEL_SPACES.get(num_classes)
    head = f"{num_classes}-class head" + (f" ({space})" if space else "")
    trained = trained_labels(meta, num_classes, src)
    if trained is None:
        classes = "trained classes not recorded in this checkpoint"
    elif len(trained) == num_classes:
        classes = f"trained on all {num_classes} classes"
    else:
        names = class_names()
        listed = [_action(lab, names) for lab in trained[:MAX_LISTED_CLASSES]]
        more = len(trained) - len(listed)
        classes = f"trained on {len(trained)} classes: {', '.join(listed)}"
        classes += f", ... (+{more} more)" if more else ""
    return f"checkpoint: model {model or 'unknown'}, {head}, {classes}"


def top_k(probs: np.ndarray, k: int = 5) -> list[tuple[int, str, float]]:
    """``(label, class name, probability)`` of the k most likely classes."""
    names = class_names()
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), names[i] if i < len(names) else f"class {i}", float(probs[i])) for i in order]


def cli(argv: list[str] | None = None) -> int:
    """``rgbpose predict VIDEO --checkpoint CKPT [--pose-backend mediapipe|onnx]``."""
    ap = argparse.ArgumentParser(prog="rgbpose predict", description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--checkpoint", required=True, type=Path, help="best.pt from rgbpose train")
    ap.add_argument("--pose-backend", default="mediapipe", choices=("mediapipe", "onnx"))
    ap.add_argument("--onnx-model", help="ONNX pose model (with --pose-backend onnx)")
    ap.add_argument("--num-clips", type=int, help="test clips (default: the run config's)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--device", help="cpu | cuda (default: cuda if available)")
    ap.add_argument("--json", type=Path, help="also write the top-k list as JSON")
    args = ap.parse_args(argv)
    from .cli import report_error
    from .engine.checkpoint import load_checkpoint

    try:
        require_video(args.video)
        ckpt = load_checkpoint(args.checkpoint)  # read once: the model and its meta
        heads = predict(
            args.video,
            args.checkpoint,
            backend=args.pose_backend,
            onnx_model=args.onnx_model,
            num_clips=args.num_clips,
            device=args.device,
            ckpt=ckpt,
        )
        # Two-stream models: report the 1:1 fusion of the heads, the way fusion.txt scores them.
        probs = np.mean(list(heads.values()), axis=0)
        meta = ckpt.get("meta") or {}
        src = str(args.checkpoint)
        header = describe_checkpoint(meta, len(probs), src)
        trained = trained_labels(meta, len(probs), src)
    except (BadSampleError, ValueError) as exc:
        return report_error("rgbpose predict", exc)
    result = top_k(probs, args.top_k)
    print(header)
    print(f"{args.video.name}: top-{args.top_k} ({' + '.join(heads)})")
    for rank, (label, name, p) in enumerate(result, 1):
        mark = "  (not trained)" if trained is not None and label not in trained else ""
        print(f"  {rank}. A{label + 1:03d} {name:<40} {p:6.1%}{mark}")
    if args.json:
        rows = [
            {"label": lab, "action": f"A{lab + 1:03d}", "name": n, "prob": p,
             "trained": None if trained is None else lab in trained}
            for lab, n, p in result
        ]  # fmt: skip
        ckpt = {
            "path": str(args.checkpoint), "model": meta.get("model_name"),
            "num_classes": len(probs), "label_space": LABEL_SPACES.get(len(probs)),
            "trained_labels": trained,
        }  # fmt: skip
        doc = {"video": str(args.video), "checkpoint": ckpt, "top": rows}
        write_text_atomic(args.json, json.dumps(doc, indent=2) + "\n")
    return 0
