"""Multi-view testing: per-video scores, metrics, confusion matrix and per-class accuracy.

Scores follow PYSKL's test protocol (DESIGN.md 3.8): a video is seen as ``V`` views (temporal
clips x optional horizontal flip); each view gets a softmax and the video's probability vector is
the mean over its views. Metrics are top-1, top-5 and mean class accuracy (the mean over the
ground-truth classes present of the per-class recall), all as fractions in [0, 1].

Scores file (``rgbpose test --out``; pickle of plain types, read by ``rgbpose fuse``)::

    {'names': [str, ...], 'labels': int64 [N], 'probs': {head: float32 [N, K]}}

with ``head`` = the model name for a unimodal model ('rgb_only', 'pose_only', 'posec3d') and
'rgb', 'pose' for the two heads of RGBPoseConv3D.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rgbpose.io import BadSampleError, dump_pickle, write_bytes_atomic, write_text_atomic

#: batch keys holding model inputs, in the order the two-stream model takes them
INPUT_KEYS = ("imgs", "heatmap_imgs")

BatchTransform = Callable[[dict[str, Any], torch.device], dict[str, Any]]


# ----------------------------------------------------------------------------- forward helpers
def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``precision == 'bf16'``; a no-op otherwise (CPU runs fp32)."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of dataset items: tensors/arrays -> stacked tensor, ints -> LongTensor,
    strings -> list. (The data package's ``collate`` does the same for the real items.)"""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(first, np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))
        elif isinstance(first, bool | int | np.integer):
            out[key] = torch.tensor([int(v) for v in values], dtype=torch.long)
        elif isinstance(first, float | np.floating):
            out[key] = torch.tensor([float(v) for v in values])
        else:
            out[key] = list(values)
    return out


def prepare_inputs(
    batch: dict[str, Any], device: torch.device, channels_last: bool = False
) -> tuple[list[torch.Tensor], int]:
    """Move the model inputs of ``batch`` to ``device`` and flatten views: [B, V, ...] ->
    [B*V, ...]. Returns the inputs in model order (rgb first) and V."""
    xs, views = [], None
    for key in INPUT_KEYS:
        if key not in batch:
            continue
        x = batch[key]
        if views is None:
            views = int(x.shape[1])
        elif int(x.shape[1]) != views:
            raise ValueError(f"batch inputs disagree on the number of views: {key} {x.shape}")
        x = x.to(device, non_blocking=True).flatten(0, 1)
        if channels_last and x.dim() == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        xs.append(x)
    if not xs:
        raise ValueError(f"batch has none of the input keys {INPUT_KEYS}: {sorted(batch)}")
    return xs, int(views)


def head_outputs(outputs: Any, head_name: str) -> dict[str, torch.Tensor]:
    """Name the logits a model returned: a NamedTuple gives its fields ('rgb', 'pose'), a single
    tensor the given ``head_name``."""
    if isinstance(outputs, torch.Tensor):
        return {head_name: outputs}
    if hasattr(outputs, "_fields"):
        return dict(zip(outputs._fields, outputs))
    if isinstance(outputs, dict):
        return dict(outputs)
    raise TypeError(f"unsupported model output type {type(outputs).__name__}")


def fused_probs(heads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Softmax of every head, averaged (1:1 fusion for the two-stream model), in fp32."""
    probs = [torch.softmax(v.float(), dim=-1) for v in heads.values()]
    return torch.stack(probs).mean(0)


# ----------------------------------------------------------------------------- inference
@torch.no_grad()
def infer(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    device: torch.device,
    *,
    head_name: str = "logits",
    precision: str = "fp32",
    channels_last: bool = False,
    batch_transform: BatchTransform | None = None,
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Run ``model`` (in eval mode) over collated batches; per video the mean over views of the
    softmax. Returns (names, int64 labels [N], {head: float32 [N, K]})."""
    was_training = model.training
    model.eval()
    names: list[str] = []
    labels: list[np.ndarray] = []
    probs: dict[str, list[np.ndarray]] = {}
    try:
        for batch in batches:
            if batch_transform is not None:
                batch = batch_transform(batch, device)
            xs, views = prepare_inputs(batch, device, channels_last)
            with autocast(device, precision):
                outputs = model(*xs)
            for head, logits in head_outputs(outputs, head_name).items():
                p = torch.softmax(logits.float(), dim=-1)
                p = p.view(-1, views, p.shape[-1]).mean(1)
                probs.setdefault(head, []).append(p.cpu().numpy().astype(np.float32))
            labels.append(np.asarray(batch["label"], dtype=np.int64).reshape(-1))
            names.extend(str(n) for n in batch.get("frame_dir", [""] * len(labels[-1])))
    finally:
        model.train(was_training)
    if not labels:
        return [], np.zeros(0, np.int64), {}
    return names, np.concatenate(labels), {h: np.concatenate(v) for h, v in probs.items()}


def predict_scores(
    model: nn.Module,
    dataset: Dataset,
    *,
    head_name: str = "logits",
    batch_size: int = 1,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
    batch_transform: BatchTransform | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Scores dict for every item of ``dataset`` (in dataset order):
    ``{'names', 'labels' int64 [N], 'probs': {head: float32 [N, K]}}``.

    Views ([B, V, ...] inputs: clips x flips) are flattened for the forward pass and the softmax
    probabilities averaged per video. ``head_name`` names the single output of a unimodal model.
    """
    device = torch.device(device) if device is not None else _default_device()
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn or default_collate,
        pin_memory=device.type == "cuda",
    )
    if progress is None:
        progress = sys.stderr.isatty()
    batches: Iterable[dict[str, Any]] = loader
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        batches = tqdm(loader, desc="test", unit="batch")
    names, labels, probs = infer(
        model,
        batches,
        device,
        head_name=head_name,
        precision=precision,
        channels_last=channels_last,
        batch_transform=batch_transform,
    )
    return {"names": names, "labels": labels, "probs": probs}


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- metrics
def metrics(probs: np.ndarray, labels: np.ndarray, k: int = 5) -> dict[str, float]:
    """Top-1, top-``k`` and mean class accuracy of ``probs`` [N, K] against ``labels`` [N].

    Fractions in [0, 1]. Mean class accuracy is the mean over the classes present in ``labels``
    of (correct top-1 predictions of that class) / (videos of that class).
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} do not match")
    if labels.size == 0:
        return {"top1": float("nan"), "top5": float("nan"), "mean_class": float("nan")}
    # stable descending order: ties go to the lower class index, as argmax does
    order = np.argsort(-probs, axis=1, kind="stable")
    pred = order[:, 0]
    hit1 = pred == labels
    topk = (order[:, : min(k, probs.shape[1])] == labels[:, None]).any(1)
    classes = np.unique(labels)
    recalls = [hit1[labels == c].mean() for c in classes]
    return {
        "top1": float(hit1.mean()),
        "top5": float(topk.mean()),
        "mean_class": float(np.mean(recalls)),
    }


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [K, K] counts; row = ground truth, column = prediction."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def class_name(label: int) -> str:
    """NTU class name of ``label`` (``A001 drink water``), or ``class <label>`` beyond 120."""
    from rgbpose.ntu import class_names  # noqa: PLC0415

    names = class_names()
    return names[label] if 0 <= label < len(names) else f"class {label}"


def per_class_rows(probs: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    """One row per ground-truth class present: label, name, n, correct, recall."""
    pred = np.asarray(probs).argmax(1)
    labels = np.asarray(labels, np.int64)
    rows = []
    for c in np.unique(labels):
        mask = labels == c
        n, correct = int(mask.sum()), int((pred[mask] == c).sum())
        rows.append(
            {"label": int(c), "name": class_name(int(c)), "n": n, "correct": correct,
             "recall": correct / n}
        )  # fmt: skip
    return rows


def write_per_class_csv(rows: list[dict[str, Any]], dst: str | os.PathLike) -> None:
    """Per-class accuracy CSV (header label,name,n,correct,recall), written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["label", "name", "n", "correct", "recall"])
    w.writeheader()
    for r in rows:
        w.writerow({**r, "recall": f"{r['recall']:.6f}"})
    write_text_atomic(dst, buf.getvalue())


def plot_confusion(
    probs: np.ndarray, labels: np.ndarray, dst: str | os.PathLike, title: str = ""
) -> np.ndarray:
    """Save a row-normalised confusion-matrix PNG over the classes present (ground truth or
    predicted), labelled with class names. Returns the restricted count matrix."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    labels = np.asarray(labels, np.int64)
    pred = np.asarray(probs).argmax(1)
    present = np.union1d(np.unique(labels), np.unique(pred))
    index = {int(c): i for i, c in enumerate(present)}
    cm = confusion_matrix(
        np.array([index[int(p)] for p in pred]),
        np.array([index[int(t)] for t in labels]),
        len(present),
    )
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    n = len(present)
    size = min(4 + 0.3 * n, 40)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [class_name(int(c)) for c in present]
    ax.set_xticks(range(n), names, rotation=90, fontsize=max(4, 9 - n // 20))
    ax.set_yticks(range(n), names, fontsize=max(4, 9 - n // 20))
    if n <= 30:  # counts are readable only on small matrices
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(dst, buf.getvalue())
    return cm


def scores_metrics(scores: dict[str, Any]) -> dict[str, Any]:
    """Metrics of every head of a scores dict, plus 'fusion' (1:1 mean) when there are two."""
    out: dict[str, Any] = {"num_samples": len(scores["names"])}
    for head, p in scores["probs"].items():
        out[head] = metrics(p, scores["labels"])
    if len(scores["probs"]) > 1:
        out["fusion"] = metrics(main_probs(scores), scores["labels"])
    return out


def main_probs(scores: dict[str, Any]) -> np.ndarray:
    """The prediction a scores dict stands for: its only head, or the 1:1 mean of its heads."""
    heads = list(scores["probs"].values())
    return heads[0] if len(heads) == 1 else np.mean(heads, axis=0)


# ----------------------------------------------------------------------------- CLI
def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` on CPU; any failure is a ``BadSampleError`` naming
    the file (``x.pt: No such file or directory``; ``x.pt: not a plain-tensor checkpoint: ...``
    for a file holding other Python objects -- never advice to disable the check)."""
    from rgbpose.io import checkpoint_load_problem  # noqa: PLC0415

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:  # missing, unreadable, a folder
        raise BadSampleError(path, exc.strerror or str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise BadSampleError(path, checkpoint_load_problem(exc)) from exc


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A ``{'model', 'meta'}`` checkpoint (``weights_only``), errors naming the file."""
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise BadSampleError(path, "checkpoint has no 'model' state dict")
    return ckpt


def model_from_checkpoint(
    path: str | os.PathLike,
    cfg: Any = None,
    cfg_src: str = "the run config",
    ckpt: dict[str, Any] | None = None,
) -> tuple[nn.Module, Any]:
    """Rebuild the model a ``rgbpose train`` checkpoint holds and load its weights strictly.

    The architecture comes from the checkpoint's meta (name, classes, overrides), falling back
    to ``cfg`` (a ``RunConfig``).  Without ``cfg`` the run config stored in the meta is used.
    Returns ``(model, cfg)``; a checkpoint of another model than ``cfg`` configures is refused.
    ``ckpt``: the checkpoint ``load_checkpoint(path)`` already read (``path`` then only names it).
    """
    from rgbpose.engine.config import run_config_from_dict  # noqa: PLC0415
    from rgbpose.models import build_model  # noqa: PLC0415

    if ckpt is None:
        ckpt = load_checkpoint(path)
    meta = ckpt.get("meta") or {}
    if cfg is None:
        if "config" not in meta:
            raise BadSampleError(path, "checkpoint meta lacks the run config (train with rgbpose)")
        cfg = run_config_from_dict(meta["config"], f"{path} meta")
    model_name = meta.get("model_name", cfg.model.name)
    if model_name != cfg.model.name:
        raise BadSampleError(
            path,
            f"checkpoint holds a {model_name!r} model but {cfg_src} configures {cfg.model.name!r}",
        )
    num_classes = int(meta.get("num_classes") or cfg.num_classes or 0)
    if num_classes < 2:
        raise BadSampleError(path, "checkpoint meta has no num_classes")
    overrides = dict(meta.get("overrides", cfg.model.overrides))
    model = build_model(model_name, num_classes, **overrides)
    model.load_state_dict(ckpt["model"], strict=True)
    return model, cfg


def model_num_classes(model: nn.Module) -> int | None:
    """Classes a model predicts: its ``spec`` (``rgbpose.models.build_model``), else its
    ``num_classes`` attribute; None when neither says (labels are then only checked >= 0)."""
    spec = getattr(model, "spec", None)
    n = spec.get("num_classes") if isinstance(spec, dict) else getattr(model, "num_classes", None)
    return None if n is None else int(n)


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
    from rgbpose.data.datasets import (  # noqa: PLC0415
        PipelineConfig,
        batch_transform,
        build_dataset,
        collate,
    )
    from rgbpose.engine.config import load_run_config, parse_set_args  # noqa: PLC0415

    cfg = load_run_config(args.config, parse_set_args(args.overrides))
    model, _ = model_from_checkpoint(args.checkpoint, cfg, args.config)
    model_name = cfg.model.name

    num_clips = args.num_clips if args.num_clips is not None else cfg.test.num_clips
    flip = args.flip if args.flip is not None else cfg.test.flip
    pcfg = PipelineConfig.from_dict({**cfg.data, "num_clips": num_clips, "flip_test": flip})
    dataset = build_dataset(
        pcfg, args.ann, args.split, "test", args.video_dir, num_classes=model_num_classes(model)
    )
    views = num_clips * (2 if flip else 1)
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
        batch_transform=batch_transform(pcfg),
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
