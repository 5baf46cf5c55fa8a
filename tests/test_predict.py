"""rgbpose predict: single-video inference on real footage, top-k formatting."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rgbpose.engine.config import load_run_config
from rgbpose.models import build_model
from rgbpose.predict import cli, predict, top_k

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared/data/real/ntu_sample.avi"


def test_top_k_orders_and_names():
    probs = np.zeros(60, np.float32)
    probs[[0, 7, 57, 9]] = [0.1, 0.5, 0.3, 0.1]
    assert top_k(probs, 3) == [
        (7, "sitting down", 0.5),
        (57, "handshaking", pytest.approx(0.3)),
        (0, "drink water", pytest.approx(0.1)),
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A (random-weight) demo RGBPoseConv3D checkpoint as rgbpose train writes it."""
    cfg = load_run_config(REPO / "config/models/demo_rgbpose_conv3d.yaml")
    torch.manual_seed(0)
    model = build_model(cfg.model.name, 60, **cfg.model.overrides)
    meta = {"model_name": cfg.model.name, "num_classes": 60, "overrides": cfg.model.overrides,
            "epoch": 1, "val_top1": None, "selected": "last", "config": cfg.to_dict()}  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"model": model.state_dict(), "meta": meta}, path)
    return path, model


@pytest.mark.skipif(not REAL.exists(), reason="shared real clip not available")
def test_predict_real_clip(checkpoint, capsys, tmp_path):
    path, _ = checkpoint
    heads = predict(REAL, path, device="cpu")
    assert set(heads) == {"rgb", "pose"}
    for p in heads.values():
        assert p.shape == (60,) and p.dtype == np.float32
        assert p.sum() == pytest.approx(1.0, abs=1e-5) and (p > 0).all()
    assert cli([str(REAL), "--checkpoint", str(path), "--device", "cpu",
                "--json", str(tmp_path / "top.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ntu_sample.avi: top-5 (rgb + pose)"
    fused = (heads["rgb"] + heads["pose"]) / 2
    best = int(np.argmax(fused))
    assert out[1].startswith(f"  1. A{best + 1:03d} ")
    assert f"{fused[best]:6.1%}" in out[1]
    assert len(out) == 6


def test_predict_missing_video_names_file(checkpoint, capsys, tmp_path):
    path, _ = checkpoint
    assert cli([str(tmp_path / "nope.avi"), "--checkpoint", str(path)]) == 1
    assert "nope.avi: no such video file" in capsys.readouterr().err
