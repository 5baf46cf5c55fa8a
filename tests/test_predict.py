"""rgbpose predict: single-video inference on real footage, top-k formatting."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import rgbpose.predict as predict_mod
from rgbpose.engine.config import load_run_config
from rgbpose.io import BadSampleError
from rgbpose.models import build_model
from rgbpose.predict import cli, describe_checkpoint, predict, top_k, trained_labels

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
    assert out[0] == (
        "checkpoint: model rgbpose_conv3d, 60-class head (NTU RGB+D 60 label space), "
        "trained classes not recorded in this checkpoint"
    )
    assert out[1] == "ntu_sample.avi: top-5 (rgb + pose)"
    fused = (heads["rgb"] + heads["pose"]) / 2
    best = int(np.argmax(fused))
    assert out[2].startswith(f"  1. A{best + 1:03d} ")
    assert f"{fused[best]:6.1%}" in out[2]
    assert len(out) == 7 and "(not trained)" not in "".join(out)


def test_predict_missing_video_names_file(checkpoint, capsys, tmp_path):
    path, _ = checkpoint
    assert cli([str(tmp_path / "nope.avi"), "--checkpoint", str(path)]) == 1
    assert "nope.avi: no such video file" in capsys.readouterr().err


DEMO_META = {"model_name": "rgbpose_conv3d", "num_classes": 60, "epoch": 3}


def test_describe_checkpoint_names_label_space_and_trained_classes():
    ten = dict(DEMO_META, trained_labels=list(range(9, -1, -1)))  # any order in the meta
    assert trained_labels(ten, 60) == list(range(10))
    line = describe_checkpoint(ten, 60)
    assert line.startswith(
        "checkpoint: model rgbpose_conv3d, 60-class head (NTU RGB+D 60 label space), trained "
        "on 10 classes: A001 drink water, A002 eat meal/snack, A003 brushing teeth, "
    )
    assert line.endswith(", A009 standing up (from sitting position), A010 clapping")
    assert describe_checkpoint(DEMO_META, 60) == (
        "checkpoint: model rgbpose_conv3d, 60-class head (NTU RGB+D 60 label space), "
        "trained classes not recorded in this checkpoint"
    )
    assert trained_labels(DEMO_META, 60) is None
    everything = dict(DEMO_META, num_classes=120, trained_labels=list(range(120)))
    assert describe_checkpoint(everything, 120) == (
        "checkpoint: model rgbpose_conv3d, 120-class head (NTU RGB+D 120 label space), "
        "trained on all 120 classes"
    )
    many = describe_checkpoint(dict(DEMO_META, trained_labels=list(range(0, 50, 2))), 60)
    assert many.count(", A0") == 19 and many.endswith("A039 put the palms together, ... (+5 more)")
    # a head size that is no NTU label space; the model name from the stored config
    other = {"config": {"model": {"name": "pose_only"}}, "trained_labels": [0, 1]}
    assert describe_checkpoint(other, 7) == (
        "checkpoint: model pose_only, 7-class head, trained on 2 classes: A001 drink water, "
        "A002 eat meal/snack"
    )


@pytest.mark.parametrize("bad", [[0, 60], [-1], "0,1", [0.0, 1.0], [True]])
def test_malformed_trained_labels_name_the_checkpoint(bad):
    with pytest.raises(BadSampleError, match=r"meta 'trained_labels' must be a list of labels "
                       r"in \[0, 60\)") as info:  # fmt: skip
        trained_labels(dict(DEMO_META, trained_labels=bad), 60, "/ckpt/best.pt")
    assert info.value.path == "/ckpt/best.pt"


def _fake_checkpoint(tmp_path, **meta):
    path = tmp_path / "best.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "meta": dict(DEMO_META, **meta)}, path)
    return path


@pytest.fixture()
def fake_predict(monkeypatch, tmp_path):
    """predict() without pose estimation or a model: fixed fused probabilities."""
    probs = np.full(60, 0.1 / 55, np.float32)
    probs[[7, 57, 0, 30, 2]] = [0.4, 0.25, 0.15, 0.06, 0.04]
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    monkeypatch.setattr(predict_mod, "predict", lambda *a, **k: {"pose_only": probs})
    return video


def test_cli_marks_classes_the_checkpoint_never_saw(tmp_path, fake_predict, capsys):
    ckpt = _fake_checkpoint(tmp_path, trained_labels=list(range(10)))
    out_json = tmp_path / "top.json"
    assert cli([str(fake_predict), "--checkpoint", str(ckpt), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == describe_checkpoint(dict(DEMO_META, trained_labels=list(range(10))), 60)
    assert out[1:] == [
        "clip.mp4: top-5 (pose_only)",
        f"  1. A008 {'sitting down':<40}  40.0%",
        f"  2. A058 {'handshaking':<40}  25.0%  (not trained)",
        f"  3. A001 {'drink water':<40}  15.0%",
        f"  4. A031 {'pointing to something with finger':<40}   6.0%  (not trained)",
        f"  5. A003 {'brushing teeth':<40}   4.0%",
    ]
    doc = json.loads(out_json.read_text())
    assert doc["checkpoint"] == {
        "path": str(ckpt), "model": "rgbpose_conv3d", "num_classes": 60,
        "label_space": "NTU RGB+D 60 label space", "trained_labels": list(range(10)),
    }  # fmt: skip
    assert [(r["action"], r["trained"]) for r in doc["top"]] == [
        ("A008", True), ("A058", False), ("A001", True), ("A031", False), ("A003", True)
    ]  # fmt: skip


def test_cli_without_recorded_classes_marks_nothing(tmp_path, fake_predict, capsys):
    ckpt = _fake_checkpoint(tmp_path)
    assert cli([str(fake_predict), "--checkpoint", str(ckpt), "--top-k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("60-class head (NTU RGB+D 60 label space), trained classes not "
                           "recorded in this checkpoint")  # fmt: skip
    assert len(out) == 4 and "(not trained)" not in "".join(out)
    bad = _fake_checkpoint(tmp_path, trained_labels=[75])
    assert cli([str(fake_predict), "--checkpoint", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"rgbpose predict: error: {bad}: meta 'trained_labels' must be a list of labels in "
        "[0, 60)\n"
    )


def _checkpoint_of(config: Path, tmp_path: Path, sets: dict | None = None) -> Path:
    cfg = load_run_config(config, sets)
    torch.manual_seed(0)
    model = build_model(cfg.model.name, 60, **cfg.model.overrides)
    meta = {"model_name": cfg.model.name, "num_classes": 60, "overrides": cfg.model.overrides,
            "epoch": 1, "val_top1": None, "selected": "last", "config": cfg.to_dict()}  # fmt: skip
    path = tmp_path / f"{config.stem}.pt"
    torch.save({"model": model.state_dict(), "meta": meta}, path)
    return path


def _predict_and_test(config: Path, ckpt: Path, tmp_path: Path, monkeypatch, seed: int):
    """(predict's probabilities, rgbpose test's) for the same estimated poses of one video."""
    from rgbpose.engine import evaluate
    from rgbpose.io import dump_pickle, load_pickle

    rng = np.random.default_rng(seed)
    pose = {"img_shape": (96, 160), "total_frames": 24, "layout": "coco17",
            "keypoint": rng.uniform(20, 80, (1, 24, 17, 2)).astype(np.float32),
            "keypoint_score": np.full((1, 24, 17), 0.9, np.float32)}  # fmt: skip
    monkeypatch.setattr(predict_mod, "estimate_poses", lambda *a, **k: pose)
    video = tmp_path / "S001C001P001R001A001.avi"  # a pose model never decodes it
    video.write_bytes(b"")
    heads = predict(video, ckpt, device="cpu")
    ann = tmp_path / "ann.pkl"
    dump_pickle({"split": {"xsub_val": [video.stem]},
                 "annotations": [predict_mod.to_annotation(pose, video.stem)]}, ann)  # fmt: skip
    out = tmp_path / "scores.pkl"
    assert evaluate.cli(["--config", str(config), "--checkpoint", str(ckpt), "--ann", str(ann),
                         "--split", "xsub_val", "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    return heads, load_pickle(out)["probs"]


def test_predict_draws_on_device_heatmaps_like_test(tmp_path, monkeypatch):
    """A checkpoint trained with ``heatmaps_on_device: true``: predict runs the same on-device
    heatmap step as ``rgbpose test``, so both give the same probabilities for the same clip."""
    raw = (REPO / "config/models/demo_pose_only.yaml").read_text()
    cfg_path = tmp_path / "pose.yaml"
    cfg_path.write_text(raw.replace("  with_limb: false\n",
                                    "  with_limb: false\n  heatmaps_on_device: true\n"))  # fmt: skip
    assert load_run_config(cfg_path).data.heatmaps_on_device is True
    ckpt = _checkpoint_of(cfg_path, tmp_path)
    heads, tested = _predict_and_test(cfg_path, ckpt, tmp_path, monkeypatch, seed=0)
    assert set(heads) == set(tested) == {"pose_only"}
    np.testing.assert_allclose(heads["pose_only"], tested["pose_only"][0], rtol=0, atol=1e-6)
    assert heads["pose_only"].sum() == pytest.approx(1.0, abs=1e-5)


def test_predict_gcn_equals_test_and_refuses_3d_models(tmp_path, monkeypatch):
    """A 2D ST-GCN++ checkpoint predicts from estimated poses like ``rgbpose test`` scores the
    same poses; models of 3D Kinect joints are refused, naming the checkpoint."""
    config = REPO / "config/models/demo_stgcnpp_j.yaml"
    ckpt = _checkpoint_of(config, tmp_path)
    heads, tested = _predict_and_test(config, ckpt, tmp_path, monkeypatch, seed=1)
    assert set(heads) == set(tested) == {"stgcnpp"}
    np.testing.assert_allclose(heads["stgcnpp"], tested["stgcnpp"][0], rtol=0, atol=1e-6)

    video = tmp_path / "S001C001P001R001A001.avi"
    for cfg, sets in ((config, {"data.keypoints": "3d", "model.overrides.layout": "ntu25"}),
                      (REPO / "config/models/demo_infogcn.yaml", None)):  # fmt: skip
        bad = _checkpoint_of(cfg, tmp_path, sets)
        with pytest.raises(ValueError, match=rf"{bad.name}: this model reads 3D Kinect joints"):
            predict(video, bad, device="cpu")
