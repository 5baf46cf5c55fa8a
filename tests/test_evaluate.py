"""Testing: mean over views of softmax, metrics, confusion matrix, per-class CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from rgbpose.engine.metrics import (
    confusion_matrix,
    metrics,
    per_class_rows,
    plot_confusion,
    scores_metrics,
    write_per_class_csv,
)
from rgbpose.engine.runtime import predict_scores

# 5 videos, 6 classes. Hand-computed:
#  v0 label 0: argmax 0            -> top-1 hit
#  v1 label 1: order 0,1,...       -> top-1 miss, top-5 hit
#  v2 label 5: class 5 ranked 6th  -> top-1 miss, top-5 miss
#  v3 label 1: argmax 1            -> hit
#  v4 label 0: argmax 0            -> hit
PROBS = np.array(
    [
        [0.50, 0.10, 0.10, 0.10, 0.10, 0.10],
        [0.40, 0.30, 0.10, 0.10, 0.05, 0.05],
        [0.30, 0.25, 0.20, 0.15, 0.10, 0.00],
        [0.10, 0.60, 0.10, 0.10, 0.05, 0.05],
        [0.70, 0.10, 0.05, 0.05, 0.05, 0.05],
    ]
)
LABELS = np.array([0, 1, 5, 1, 0])


def test_metrics_hand_computed() -> None:
    m = metrics(PROBS, LABELS)
    assert m["top1"] == pytest.approx(3 / 5)
    assert m["top5"] == pytest.approx(4 / 5)
    # per-class recall: class 0: 2/2, class 1: 1/2, class 5: 0/1 -> mean 0.5
    assert m["mean_class"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_confusion_matrix_and_per_class(tmp_path: Path) -> None:
    cm = confusion_matrix(PROBS.argmax(1), LABELS, 6)
    expected = np.zeros((6, 6), int)
    expected[0, 0] = 2  # v0, v4
    expected[1, 0] = 1  # v1 predicted 0
    expected[5, 0] = 1  # v2 predicted 0
    expected[1, 1] = 1  # v3
    assert np.array_equal(cm, expected)

    rows = per_class_rows(PROBS, LABELS)
    assert [(r["label"], r["name"], r["n"], r["correct"]) for r in rows] == [
        (0, "drink water", 2, 2),
        (1, "eat meal/snack", 2, 1),
        (5, "pickup", 1, 0),
    ]
    write_per_class_csv(rows, tmp_path / "pc.csv")
    with open(tmp_path / "pc.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["label", "name", "n", "correct", "recall"]
    assert [float(r["recall"]) for r in got] == [1.0, 0.5, 0.0]

    restricted = plot_confusion(PROBS, LABELS, tmp_path / "cm.png")
    # classes present (truth or prediction): 0, 1, 5
    assert np.array_equal(restricted, [[2, 0, 0], [1, 1, 0], [1, 0, 0]])
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class FirstVoxel(nn.Module):
    """logits = the input's first voxel per channel: [N, C, T, H, W] -> [N, C]."""

    input_keys = ("heatmap_imgs",)

    def forward(self, heatmap_imgs: torch.Tensor) -> torch.Tensor:
        return heatmap_imgs[:, :, 0, 0, 0]


class Pair(NamedTuple):
    rgb: torch.Tensor
    pose: torch.Tensor


class TwoHeads(nn.Module):
    input_keys = ("imgs", "heatmap_imgs")

    def forward(self, imgs: torch.Tensor, heatmap_imgs: torch.Tensor) -> Pair:
        return Pair(imgs[:, :, 0, 0, 0], 2 * heatmap_imgs[:, :, 0, 0, 0])


class Views(Dataset):
    """Two videos with two views each; view logits chosen so the softmaxes are simple."""

    LOGITS = [
        [[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0]],  # softmax 1/3 each; (1/2, 1/4, 1/4)
        [[0.0, math.log(3), 0.0], [0.0, 0.0, 0.0]],  # (1/5, 3/5, 1/5); 1/3 each
    ]

    def __init__(self, two: bool = False):
        self.two = two

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = torch.tensor(self.LOGITS[i]).view(2, 3, 1, 1, 1)
        item = {"heatmap_imgs": x, "label": i, "frame_dir": f"v{i}"}
        if self.two:
            item["imgs"] = x
        return item


def test_predict_scores_mean_of_softmax_over_views() -> None:
    s = predict_scores(FirstVoxel(), Views(), head_name="pose_only", batch_size=2, device="cpu")
    assert s["names"] == ["v0", "v1"] and s["labels"].tolist() == [0, 1]
    assert s["labels"].dtype == np.int64
    p = s["probs"]["pose_only"]
    assert p.dtype == np.float32 and p.shape == (2, 3)
    expected = np.array([[5 / 12, 7 / 24, 7 / 24], [4 / 15, 7 / 15, 4 / 15]])
    assert np.allclose(p, expected, atol=1e-6)
    # the logits, averaged over the same views, for logit-level fusions
    half = math.log(2) / 2, math.log(3) / 2
    assert np.allclose(s["logits"]["pose_only"], [[half[0], 0, 0], [0, half[1], 0]], atol=1e-6)
    # batch size does not change the result
    s1 = predict_scores(FirstVoxel(), Views(), head_name="pose_only", batch_size=1, device="cpu")
    assert np.allclose(s1["probs"]["pose_only"], p, atol=1e-7)


def test_predict_scores_two_heads_and_fusion_metrics() -> None:
    s = predict_scores(TwoHeads(), Views(two=True), batch_size=2, device="cpu")
    assert list(s["probs"]) == ["rgb", "pose"]
    assert np.allclose(s["probs"]["rgb"][0], [5 / 12, 7 / 24, 7 / 24], atol=1e-6)
    # pose head doubles the logits: view (2 ln 2, 0, 0) -> (4/6, 1/6, 1/6)
    assert np.allclose(s["probs"]["pose"][0], [(1 / 3 + 4 / 6) / 2, (1 / 3 + 1 / 6) / 2,
                                               (1 / 3 + 1 / 6) / 2], atol=1e-6)  # fmt: skip
    m = scores_metrics(s)
    assert set(m) == {"num_samples", "rgb", "pose", "fusion"} and m["num_samples"] == 2
    assert m["rgb"]["top1"] == 1.0 and m["fusion"]["top1"] == 1.0


def test_model_from_checkpoint_rebuilds_and_refuses_mismatches(tmp_path):
    import torch

    from rgbpose.engine.checkpoint import model_from_checkpoint
    from rgbpose.engine.config import load_run_config
    from rgbpose.io import BadSampleError
    from rgbpose.models import build_model

    repo = Path(__file__).resolve().parents[1]
    cfg = load_run_config(repo / "config/models/demo_pose_only.yaml")
    torch.manual_seed(1)
    model = build_model(cfg.model.name, 60, **cfg.model.overrides).eval()
    meta = {"model_name": "pose_only", "num_classes": 60, "overrides": cfg.model.overrides,
            "config": cfg.to_dict()}  # fmt: skip
    torch.save({"model": model.state_dict(), "meta": meta}, tmp_path / "ok.pt")
    rebuilt, got_cfg = model_from_checkpoint(tmp_path / "ok.pt")
    x = torch.randn(2, 17, 16, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x), rtol=0, atol=0)
    assert got_cfg.model.name == "pose_only"

    rgb_cfg = load_run_config(repo / "config/models/demo_rgb_only.yaml")
    with pytest.raises(
        BadSampleError, match=r"ok\.pt: .*'pose_only' model but rgb\.yaml configures 'rgb_only'"
    ):
        model_from_checkpoint(tmp_path / "ok.pt", rgb_cfg, "rgb.yaml")
    torch.save({"model": model.state_dict(), "meta": {}}, tmp_path / "bare.pt")
    with pytest.raises(BadSampleError, match=r"bare\.pt: checkpoint meta lacks the run config"):
        model_from_checkpoint(tmp_path / "bare.pt")


def test_head_outputs_conventions() -> None:
    from typing import NamedTuple

    from rgbpose.engine.runtime import head_outputs

    class WithLatent(NamedTuple):
        logits: torch.Tensor
        z: torch.Tensor

    t, z = torch.ones(2, 3), torch.zeros(2, 5)
    assert list(head_outputs(t, "m")) == ["m"]
    named = head_outputs(WithLatent(t, z), "infogcn")  # z is for the loss only
    assert list(named) == ["infogcn"] and named["infogcn"] is t
    assert list(head_outputs(Pair(t, 2 * t), "x")) == ["rgb", "pose"]
    assert list(head_outputs({"a": t, "b": t}, "x")) == ["a", "b"]
