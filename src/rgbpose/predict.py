"""Single-video inference: ``rgbpose predict VIDEO --checkpoint best.pt``.

No compression step and no dataset layout needed: the video is decoded directly, poses come from
an offline estimator (mediapipe by default, or a user ONNX model), are tracked and reduced to the
model's persons, and the model's own test pipeline (from the checkpoint's resolved run config)
turns them into clips.  Prints the top-k actions with NTU class names and probabilities.

    video --decode--> frames --estimator--> COCO-17 poses --track/select--> annotation
          --test pipeline (clips, compaction, heatmaps / RGB crops)--> model --> mean softmax
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .io import BadSampleError
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


def predict(
    video: str | Path,
    checkpoint: str | Path,
    *,
    backend: str = "mediapipe",
    onnx_model: str | None = None,
    num_clips: int | None = None,
    device: str | None = None,
) -> dict[str, np.ndarray]:
    """Class probabilities ``{head: [K]}`` for one video (heads as in ``rgbpose test``)."""
    from .data.datasets import PipelineConfig, build_dataset, collate
    from .engine.evaluate import model_from_checkpoint, predict_scores

    video = Path(video)
    if not video.is_file():
        raise BadSampleError(video, "no such video file")
    model, cfg = model_from_checkpoint(checkpoint)

    clips = num_clips if num_clips is not None else cfg.test.num_clips
    data = dict(cfg.data, num_clips=clips, flip_test=cfg.test.flip, video_ext=video.suffix)
    pcfg = PipelineConfig.from_dict(data)
    pose = estimate_poses(video, backend, onnx_model, num_persons=pcfg.max_persons)
    ann = to_annotation(pose, video.stem)
    dataset = build_dataset(
        pcfg, {"split": {"predict": [video.stem]}, "annotations": [ann]}, "predict", "test",
        video_dir=video.parent,
    )  # fmt: skip
    scores = predict_scores(
        model, dataset, head_name=cfg.model.name, device=device, collate_fn=collate
    )
    return {head: p[0] for head, p in scores["probs"].items()}


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
    try:
        heads = predict(
            args.video,
            args.checkpoint,
            backend=args.pose_backend,
            onnx_model=args.onnx_model,
            num_clips=args.num_clips,
            device=args.device,
        )
    except (BadSampleError, ValueError) as exc:
        print(f"rgbpose predict: error: {exc}", file=sys.stderr)
        return 1
    # Two-stream models: report the 1:1 fusion of the heads, the way fusion.txt scores them.
    probs = np.mean(list(heads.values()), axis=0)
    result = top_k(probs, args.top_k)
    print(f"{args.video.name}: top-{args.top_k} ({' + '.join(heads)})")
    for rank, (label, name, p) in enumerate(result, 1):
        print(f"  {rank}. A{label + 1:03d} {name:<40} {p:6.1%}")
    if args.json:
        rows = [
            {"label": lab, "action": f"A{lab + 1:03d}", "name": n, "prob": p}
            for lab, n, p in result
        ]
        args.json.write_text(json.dumps({"video": str(args.video), "top": rows}, indent=2))
    return 0
