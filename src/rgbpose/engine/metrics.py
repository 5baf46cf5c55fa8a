"""Metrics of scores: top-1, top-5 and mean class accuracy (the mean over the ground-truth
classes present of the per-class recall), all as fractions in [0, 1]; the confusion matrix (PNG)
and per-class accuracy (CSV). A scores dict with two heads (RGBPoseConv3D) is also scored as their
1:1 fusion.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import numpy as np
import torch

from rgbpose.io import write_bytes_atomic, write_text_atomic


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


def val_metrics(probs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """The training log's validation metrics: ``metrics`` of the 1:1 fusion of the heads (the
    only head of a unimodal model), plus ``top1_<head>`` of every head when there are several."""
    heads = {h: torch.from_numpy(p) for h, p in probs.items()}
    fused = (
        next(iter(heads.values())) if len(heads) == 1 else torch.stack(list(heads.values())).mean(0)
    )
    out = metrics(fused.numpy(), labels)
    if len(heads) > 1:
        for h, p in probs.items():
            out[f"top1_{h}"] = metrics(p, labels)["top1"]
    return out


def main_probs(scores: dict[str, Any]) -> np.ndarray:
    """The prediction a scores dict stands for: its only head, or the 1:1 mean of its heads."""
    heads = list(scores["probs"].values())
    return heads[0] if len(heads) == 1 else np.mean(heads, axis=0)
