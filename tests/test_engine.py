"""Training engine: run config, lr schedule, exact resume, checkpoints, time budget, DDP, CLI."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import Dataset

from rgbpose.engine import train as train_mod
from rgbpose.engine.config import (
    ScheduleConfig,
    apply_overrides,
    load_run_config,
    parse_set_args,
    run_config_from_dict,
)
from rgbpose.engine.schedule import iters_per_epoch, lr_at, scaled_lr
from rgbpose.engine.train import EXIT_TIME_BUDGET, infer_num_classes, train
from rgbpose.io import ConfigError

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- toys
class ToyNet(nn.Module):
    """Conv3d + BN + dropout + linear: enough state (BN buffers, dropout RNG) to catch any
    resume mismatch."""

    input_keys = ("heatmap_imgs",)  # called by name, as the engine calls registered models

    def __init__(self, in_channels: int = 3, num_classes: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv3d(in_channels, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, heatmap_imgs: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(heatmap_imgs))).mean((2, 3, 4))
        return self.fc(self.drop(x))

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, labels)


class TwoOut(NamedTuple):
    rgb: torch.Tensor
    pose: torch.Tensor


class ToyTwoStream(nn.Module):
    """Two-input model like RGBPoseConv3D: model(imgs, heatmap_imgs) -> (rgb, pose) logits."""

    input_keys = ("imgs", "heatmap_imgs")

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.rgb = ToyNet(3, num_classes)
        self.pose = ToyNet(2, num_classes)

    def forward(self, imgs: torch.Tensor, heatmap_imgs: torch.Tensor) -> TwoOut:
        return TwoOut(self.rgb(imgs), self.pose(heatmap_imgs))

    def loss(self, outputs: TwoOut, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.rgb, labels) + F.cross_entropy(outputs.pose, labels)


class ToyData(Dataset):
    """Items like the data package's: [V=1, C, T, H, W] inputs, 'label', 'frame_dir'.

    Training items get random augmentation from BOTH torch's and numpy's global RNGs (like the
    real pipeline), so a resume that does not restore the randomness changes the weights.
    ``fail_at`` raises on that many-th __getitem__ call, simulating a kill in mid-epoch.
    """

    def __init__(self, n: int = 12, augment: bool = True, two_stream: bool = False,
                 fail_at: int | None = None, num_classes: int = 4):  # fmt: skip
        g = torch.Generator().manual_seed(1234)
        self.labels = [i % num_classes for i in range(n)]
        self.base = [torch.randn(3, 4, 6, 6, generator=g) + 0.5 * lab for lab in self.labels]
        self.augment, self.two_stream, self.fail_at, self.calls = augment, two_stream, fail_at, 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        x = self.base[i].clone()
        if self.augment:
            x = x + 0.3 * torch.randn_like(x) + float(np.random.uniform(-0.5, 0.5))
            if np.random.rand() < 0.5:
                x = x.flip(-1)
        item: dict[str, Any] = {"label": self.labels[i], "frame_dir": f"video{i:03d}"}
        if self.two_stream:
            item["imgs"] = x[None]
            item["heatmap_imgs"] = x[None, :2]
        else:
            item["heatmap_imgs"] = x[None]
        return item


def toy_config(**over: Any) -> Any:
    raw = {
        "model": {"name": "pose_only", "overrides": {}},
        "data": {"modality": "pose"},
        "optim": {"lr": 0.2, "base_batch": 8, "weight_decay": 1e-3, "grad_clip": 1.0},
        "schedule": {"kind": "cosine", "epochs": 3, "repeat": 2, "warmup_epochs": 0.5},
        "batch_size": 4,
        "num_workers": 0,
        "seed": 7,
    }
    return run_config_from_dict(apply_overrides(raw, over, "<test>"), "<test>")


def fresh_model(seed: int = 0, two_stream: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    return ToyTwoStream() if two_stream else ToyNet()


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- lr schedule
def test_cosine_lr_hand_computed() -> None:
    sched = ScheduleConfig(kind="cosine", epochs=2)
    # total = 2 epochs x 5 iterations = 10
    assert lr_at(0, 0.1, sched, 5) == pytest.approx(0.1)
    assert lr_at(2, 0.1, sched, 5) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.2)))
    assert lr_at(2, 0.1, sched, 5) == pytest.approx(0.0904508, abs=1e-7)
    assert lr_at(5, 0.1, sched, 5) == pytest.approx(0.05)
    assert lr_at(10, 0.1, sched, 5) == pytest.approx(0.0, abs=1e-12)


def test_cosine_to_min_lr_hand_computed() -> None:
    # DRSR's recipe: cosine down to 1e-5; total 10 iterations, base 0.01
    sched = ScheduleConfig(kind="cosine", epochs=2, min_lr=1e-5)
    assert lr_at(0, 0.01, sched, 5) == pytest.approx(0.01)
    assert lr_at(5, 0.01, sched, 5) == pytest.approx(1e-5 + 0.5 * (0.01 - 1e-5))  # 0.005005
    assert lr_at(10, 0.01, sched, 5) == pytest.approx(1e-5, abs=1e-15)


def test_step_lr_at_milestones() -> None:
    sched = ScheduleConfig(kind="step", epochs=4, milestones=(2, 3), gamma=0.1)
    ipe = 4
    assert lr_at(7, 1.0, sched, ipe) == pytest.approx(1.0)  # last iteration of epoch 2
    assert lr_at(8, 1.0, sched, ipe) == pytest.approx(0.1)  # first of epoch 3 (milestone 2)
    assert lr_at(11, 1.0, sched, ipe) == pytest.approx(0.1)
    assert lr_at(12, 1.0, sched, ipe) == pytest.approx(0.01)


def test_linear_warmup() -> None:
    sched = ScheduleConfig(kind="cosine", epochs=10, warmup_epochs=1)
    ipe = 4  # warm-up = 4 iterations, total 40
    assert lr_at(0, 1.0, sched, ipe) == pytest.approx(0.25)  # cos(0) = 1, times 1/4
    assert lr_at(1, 1.0, sched, ipe) == pytest.approx(0.5 * (1 + math.cos(math.pi / 40)) * 0.5)
    assert lr_at(4, 1.0, sched, ipe) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 40)))
    step = ScheduleConfig(kind="step", epochs=3, milestones=(2,), warmup_epochs=0.5)
    assert lr_at(0, 0.8, step, 4) == pytest.approx(0.4)  # warm-up 2 iterations: 0.8 * 1/2
    assert lr_at(2, 0.8, step, 4) == pytest.approx(0.8)


def test_linear_lr_scaling_and_iterations() -> None:
    optim = toy_config().optim  # lr 0.2 for a total batch of 8
    assert scaled_lr(optim, batch_size=4, world_size=1) == pytest.approx(0.1)
    assert scaled_lr(optim, batch_size=4, world_size=2) == pytest.approx(0.2)
    assert scaled_lr(optim, batch_size=16, world_size=8) == pytest.approx(3.2)
    # 10 samples x repeat 3 = 30 -> 15 per rank on 2 ranks -> 4 batches of 4 (last one short)
    assert iters_per_epoch(10, 3, 4, 2) == 4
    assert iters_per_epoch(12, 2, 4, 1) == 6


# ----------------------------------------------------------------------------- config
def test_config_roundtrip_and_overrides(tmp_path: Path) -> None:
    cfg = toy_config()
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_run_config(path) == cfg
    cfg2 = load_run_config(path, parse_set_args(["optim.lr=0.5", "schedule.milestones=[1, 2]"]))
    assert cfg2.optim.lr == 0.5 and cfg2.schedule.milestones == (1, 2)
    assert cfg2.optim.momentum == 0.9 and cfg2.optim.nesterov is False
    assert cfg2.optim.grad_clip == 1.0 and cfg2.schedule.gamma == 0.1


def test_config_typo_names_key_and_file(tmp_path: Path) -> None:
    raw = toy_config().to_dict()
    raw["optim"]["lrr"] = 0.1
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.lrr'") as exc:
        load_run_config(path)
    assert str(path) in str(exc.value) and exc.value.key == "optim.lrr"

    raw = toy_config().to_dict()
    raw["batch_size"] = "8"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"'batch_size': expected an integer"):
        load_run_config(path)

    raw = toy_config().to_dict()
    raw["data"]["sigmaa"] = 0.6
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"unknown key 'data\.sigmaa'"):
        load_run_config(path)

    raw = toy_config().to_dict()
    raw["data"]["modality"] = "video"  # no pipeline is registered for it
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"key 'data\.modality': unknown data modality 'video'"):
        load_run_config(path)

    raw = toy_config().to_dict()
    raw["data"]["num_clips"] = 10  # test views live in one place
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"'data\.num_clips' \(test views are set once, in test"):
        load_run_config(path)

    raw = toy_config().to_dict()
    raw["data"]["crop_area"] = [0.5, "x"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"key 'data\.crop_area': expected a number, got 'x'"):
        load_run_config(path)

    raw = toy_config().to_dict()
    raw["schedule"]["kind"] = "linear"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ConfigError, match=r"'schedule\.kind': 'linear' is not one of 'cosine', 'step'"
    ):
        load_run_config(path)

    raw = toy_config().to_dict()
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.momentumm'"):
        load_run_config(path, {"optim.momentumm": 0.5})
    del raw["optim"]["lr"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"missing required key\(s\): optim\.lr"):
        load_run_config(path)


def test_shipped_model_configs_load() -> None:
    paths = sorted((REPO / "config" / "models").glob("*.yaml"))
    assert {p.stem for p in paths} >= {
        "ntu_pose_only", "ntu_rgb_only", "ntu_rgbpose_conv3d", "ntu_posec3d",
        "demo_pose_only", "demo_rgb_only", "demo_rgbpose_conv3d",
    }  # fmt: skip
    cfgs = {p.stem: load_run_config(p) for p in paths}
    rgbpose = cfgs["ntu_rgbpose_conv3d"]
    assert (rgbpose.optim.lr, rgbpose.optim.base_batch) == (0.0075, 48)
    assert rgbpose.schedule.kind == "step" and rgbpose.schedule.milestones == (12, 16)
    assert rgbpose.data.sigma == 0.7 and rgbpose.data.rgb_test_size == 256
    pose = cfgs["ntu_pose_only"]
    assert (pose.optim.lr, pose.optim.base_batch, pose.optim.weight_decay) == (0.2, 128, 3e-4)
    assert (pose.schedule.epochs, pose.schedule.repeat) == (18, 10)


def test_infer_num_classes() -> None:
    ntu = [{"frame_dir": "S001C001P001R001A010", "label": 9}]
    assert infer_num_classes(ntu) == 60
    assert infer_num_classes(ntu + [{"frame_dir": "S018C001P001R001A061", "label": 60}]) == 120
    assert infer_num_classes([{"frame_dir": "clip_a", "label": 4}]) == 5


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("num_workers", [0, 2])
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path: Path, num_workers: int) -> None:
    cfg = toy_config(num_workers=num_workers)
    val = ToyData(8, augment=False)
    ref = train(cfg, fresh_model(), ToyData(), val, tmp_path / "a", tmp_path / "a.pt",
                device="cpu", tensorboard=False)  # fmt: skip
    assert ref.status == "finished" and ref.global_iter == 3 * 6

    # run B: stopped after epoch 1, then killed in the middle of epoch 2 (dataset raises; with
    # workers the worker's exception surfaces too), then rerun to completion
    work = tmp_path / "b"
    r1 = train(cfg, fresh_model(), ToyData(), val, work, tmp_path / "b.pt", device="cpu",
               stop_after_epoch=1, tensorboard=False)  # fmt: skip
    assert r1.status == "stopped" and r1.out_ckpt is None and not (tmp_path / "b.pt").exists()
    if num_workers == 0:  # a mid-epoch kill: 5 items into epoch 2 (12 x 2 items per epoch)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, fresh_model(seed=99), ToyData(fail_at=5), val, work, tmp_path / "b.pt",
                  device="cpu", tensorboard=False)  # fmt: skip
    # the resumed run starts from a *different* fresh model: weights must come from last.pt
    r2 = train(cfg, fresh_model(seed=99), ToyData(), val, work, tmp_path / "b.pt", device="cpu",
               tensorboard=False)  # fmt: skip
    assert r2.status == "finished" and r2.global_iter == ref.global_iter

    last_a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    last_b = torch.load(work / "last.pt", weights_only=True)
    assert states_equal(last_a["model"], last_b["model"])
    opt_a, opt_b = last_a["optimizer"]["state"], last_b["optimizer"]["state"]
    assert all(torch.equal(opt_a[k]["momentum_buffer"], opt_b[k]["momentum_buffer"]) for k in opt_a)
    out_a = torch.load(tmp_path / "a.pt", weights_only=True)
    out_b = torch.load(tmp_path / "b.pt", weights_only=True)
    assert states_equal(out_a["model"], out_b["model"])
    rows_a, rows_b = read_csv(tmp_path / "a" / "train_log.csv"), read_csv(work / "train_log.csv")
    drop_time = [{k: v for k, v in r.items() if k != "time_s"} for r in rows_a]
    assert drop_time == [{k: v for k, v in r.items() if k != "time_s"} for r in rows_b]
    assert [r["epoch"] for r in rows_a] == ["1", "2", "3"]
    assert [r["iters"] for r in rows_a] == ["6", "12", "18"]


def test_augmentation_randomness_matters(tmp_path: Path) -> None:
    """Guard for the resume test: a different seed changes the weights (so equality above is not
    vacuous)."""
    val = ToyData(8, augment=False)
    train(toy_config(), fresh_model(), ToyData(), val, tmp_path / "a", tmp_path / "a.pt",
          device="cpu", tensorboard=False)  # fmt: skip
    train(toy_config(seed=8), fresh_model(), ToyData(), val, tmp_path / "b", tmp_path / "b.pt",
          device="cpu", tensorboard=False)  # fmt: skip
    a = torch.load(tmp_path / "a.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["model"]
    assert not states_equal(a, b)


def _assert_plain(obj: Any, where: str = "meta") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str), where
            _assert_plain(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _assert_plain(v, f"{where}[{i}]")
    else:
        assert obj is None or isinstance(obj, bool | int | float | str), (where, type(obj))


def test_checkpoints_weights_only_and_meta(tmp_path: Path) -> None:
    cfg = toy_config(**{"schedule.epochs": 2, "schedule.repeat": 1})
    model = fresh_model(two_stream=True)
    result = train(cfg, model, ToyData(two_stream=True), ToyData(8, False, two_stream=True),
                   tmp_path / "w", tmp_path / "out" / "best.pt", device="cpu",
                   model_name="rgbpose_conv3d", num_classes=4)  # fmt: skip
    assert result.status == "finished"
    out = torch.load(tmp_path / "out" / "best.pt", weights_only=True)
    assert set(out) == {"model", "meta"}
    meta = out["meta"]
    _assert_plain(meta)
    assert meta["model_name"] == "rgbpose_conv3d" and meta["num_classes"] == 4
    assert meta["overrides"] == {} and meta["config"] == cfg.to_dict()
    rows = read_csv(tmp_path / "w" / "train_log.csv")
    best_row = max(rows, key=lambda r: float(r["val_top1"]))  # first maximum = earliest epoch
    assert meta["selected"] == "best_val" and meta["epoch"] == int(best_row["epoch"])
    assert meta["val_top1"] == pytest.approx(float(best_row["val_top1"]))
    assert set(rows[0]) == set(train_mod.CSV_FIELDS)
    assert float(rows[0]["lr"]) == pytest.approx(
        lr_at(2, 0.1, cfg.schedule, 3)  # lr of the last iteration of epoch 1 (0-based it 2)
    )
    last = torch.load(tmp_path / "w" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["global_iter"] == 6
    assert last["rng"]["torch"].dtype == torch.uint8
    assert last["rng"]["numpy_keys"].dtype == torch.uint8
    assert yaml.safe_load((tmp_path / "out" / "best.yaml").read_text()) == cfg.to_dict()
    assert any((tmp_path / "w" / "tb").iterdir())
    # the saved weights reproduce the logged validation accuracy
    model.load_state_dict(out["model"])
    assert meta["val_top1"] == pytest.approx(_val_top1(model, ToyData(8, False, two_stream=True)))


def _val_top1(model: nn.Module, data: ToyData) -> float:
    model.eval()
    hits = 0
    with torch.no_grad():
        for i in range(len(data)):
            it = data[i]
            out = model(it["imgs"], it["heatmap_imgs"])
            p = (out.rgb.softmax(-1) + out.pose.softmax(-1)) / 2
            hits += int(p.argmax(-1).item() == it["label"])
    return hits / len(data)


def test_no_val_writes_last_epoch(tmp_path: Path) -> None:
    cfg = toy_config(**{"schedule.epochs": 1})
    model = fresh_model()
    train(cfg, model, ToyData(), None, tmp_path / "w", tmp_path / "final.pt", device="cpu",
          tensorboard=False)  # fmt: skip
    out = torch.load(tmp_path / "final.pt", weights_only=True)
    assert out["meta"]["selected"] == "last" and out["meta"]["val_top1"] is None
    assert states_equal(out["model"], {k: v for k, v in model.state_dict().items()})


class EpochAwareNet(ToyNet):
    """Records the epochs ``set_epoch`` was called with and the epoch each batch's loss saw."""

    def __init__(self) -> None:
        super().__init__()
        self.set_calls: list[int] = []
        self.loss_epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.set_calls.append(epoch)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.loss_epochs.append(self.set_calls[-1])
        return super().loss(outputs, labels)


def test_set_epoch_called_before_each_epochs_batches(tmp_path: Path) -> None:
    # 12 clips x repeat 2 / batch 4 = 6 iterations per epoch, 3 epochs
    torch.manual_seed(0)
    model = EpochAwareNet()
    train(toy_config(), model, ToyData(), None, tmp_path / "w", tmp_path / "o.pt", device="cpu",
          tensorboard=False)  # fmt: skip
    assert model.set_calls == [0, 1, 2]
    assert model.loss_epochs == [0] * 6 + [1] * 6 + [2] * 6


def test_tensorboard_gets_the_loss_every_log_every_iterations(tmp_path: Path) -> None:
    """No host sync per iteration: the loss reaches TensorBoard at the progress cadence (every
    log_every iterations and at each epoch's end), not every step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    cfg = toy_config(**{"schedule.epochs": 2})  # 6 iterations per epoch
    train(cfg, ToyNet(), ToyData(), None, tmp_path / "w", tmp_path / "o.pt", device="cpu",
          log_every=4)  # fmt: skip
    acc = EventAccumulator(str(tmp_path / "w" / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == [4, 6, 10, 12]  # iterations 4 and 6 of each epoch (global 1-based)
    assert [e.step for e in acc.Scalars("train/lr")] == steps


def test_sgd_is_fused_only_on_cuda_and_compile_modes_are_checked(tmp_path: Path) -> None:
    from rgbpose.engine.schedule import sgd

    opt = sgd(ToyNet(), toy_config().optim, 0.1)
    assert opt.defaults["fused"] is None and opt.defaults["nesterov"] is False
    assert toy_config(**{"compile_mode": "reduce-overhead"}).compile_mode == "reduce-overhead"
    with pytest.raises(ConfigError, match="compile_mode"):
        toy_config(**{"compile_mode": "fastest"})
    with pytest.raises(ConfigError, match="prefetch_factor must be >= 1"):
        toy_config(**{"prefetch_factor": 0})


def test_time_budget_stops_and_resumes(tmp_path: Path) -> None:
    cfg = toy_config()
    val = ToyData(8, augment=False)
    r = train(cfg, fresh_model(), ToyData(), val, tmp_path / "w", tmp_path / "o.pt",
              device="cpu", time_budget_s=1e-3, tensorboard=False)  # fmt: skip
    assert r.status == "time_budget" and r.epoch == 1 and r.out_ckpt is None
    last = torch.load(tmp_path / "w" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and not (tmp_path / "o.pt").exists()
    # each rerun makes progress (at least one epoch), then the run completes
    r = train(cfg, fresh_model(), ToyData(), val, tmp_path / "w", tmp_path / "o.pt",
              device="cpu", time_budget_s=1e-3, tensorboard=False)  # fmt: skip
    assert (r.status, r.epoch) == ("time_budget", 2)
    r = train(cfg, fresh_model(), ToyData(), val, tmp_path / "w", tmp_path / "o.pt",
              device="cpu", tensorboard=False)  # fmt: skip
    assert r.status == "finished" and (tmp_path / "o.pt").exists()


def test_changed_config_starts_afresh(tmp_path: Path) -> None:
    val = ToyData(8, augment=False)
    train(toy_config(), fresh_model(), ToyData(), val, tmp_path / "w", tmp_path / "o.pt",
          device="cpu", stop_after_epoch=1, tensorboard=False)  # fmt: skip
    r = train(toy_config(**{"optim.lr": 0.1}), fresh_model(), ToyData(), val, tmp_path / "w",
              tmp_path / "o.pt", device="cpu", stop_after_epoch=1, tensorboard=False)  # fmt: skip
    (stale,) = (tmp_path / "w").glob("stale-*")
    assert r.epoch == 1 and (stale / "last.pt").exists() and (stale / "best.pt").exists()
    assert torch.load(stale / "last.pt", weights_only=True)["fingerprint"]["config"]["optim"][
        "lr"] == 0.2  # fmt: skip


# ----------------------------------------------------------------------------- CLI glue
def _fake_packages(monkeypatch: pytest.MonkeyPatch, calls: dict[str, Any]) -> None:
    """Stand-ins for rgbpose.data.datasets.build_dataset / rgbpose.models.build_model with
    their signatures."""

    def build_dataset(cfg: Any, ann: str, split: str, mode: str, video_dir: Any = None,
                      num_classes: int | None = None, views: Any = None,
                      frame_store: Any = None) -> Any:  # fmt: skip
        calls.setdefault("datasets", []).append((split, mode, views, num_classes))
        calls.setdefault("frame_store", []).append(frame_store)
        return ToyData(12 if mode == "train" else 8, augment=mode == "train")

    def build_model(name: str, num_classes: int, **overrides: Any) -> nn.Module:
        calls.setdefault("models", []).append((name, num_classes, overrides))
        return ToyNet(num_classes=num_classes, **overrides)

    ds = types.ModuleType("rgbpose.data.datasets")
    ds.build_dataset = build_dataset
    models = types.ModuleType("rgbpose.models")
    models.build_model = build_model
    monkeypatch.setitem(sys.modules, "rgbpose.data.datasets", ds)
    monkeypatch.setitem(sys.modules, "rgbpose.models", models)


def test_train_and_test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rgbpose.engine import evaluate
    from rgbpose.io import dump_pickle, load_pickle

    calls: dict[str, Any] = {}
    _fake_packages(monkeypatch, calls)
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(toy_config(**{"model.overrides": {"in_channels": 3}})
                                       .to_dict()))  # fmt: skip
    ann = tmp_path / "ann.pkl"
    dump_pickle({"split": {}, "annotations": [
        {"frame_dir": "S001C001P001R001A004", "label": 3}]}, ann)  # fmt: skip
    args = ["--config", str(cfg_path), "--ann", str(ann), "--split", "xsub",
            "--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "best.pt")]  # fmt: skip
    assert train_mod.cli(args + ["--time-budget", "0.001", "--device", "cpu"]) == EXIT_TIME_BUDGET
    assert train_mod.cli(args + ["--device", "cpu", "--set", "num_workers=0",
                                 "--frame-store", str(tmp_path / "frames")]) == 0  # fmt: skip
    assert calls["frame_store"][-2:] == [str(tmp_path / "frames")] * 2  # train and val sets
    assert calls["models"][0] == ("pose_only", 60, {"in_channels": 3})  # NTU names -> 60
    assert [(s, m, n) for s, m, _, n in calls["datasets"][:2]] == [
        ("xsub_train", "train", 60), ("xsub_val", "val", 60)]  # fmt: skip
    meta = torch.load(tmp_path / "best.pt", weights_only=True)["meta"]
    assert meta["num_classes"] == 60

    out = tmp_path / "scores.pkl"
    rc = evaluate.cli(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "best.pt"),
                       "--ann", str(ann), "--split", "xsub_val", "--out", str(out),
                       "--metrics-out", str(tmp_path / "m.json"), "--num-clips", "3", "--flip",
                       "--per-class-csv", str(tmp_path / "pc.csv"), "--device", "cpu",
                       "--frame-store", "fs"])  # fmt: skip
    assert rc == 0 and calls["frame_store"][-1] == "fs"
    split, mode, views, n = calls["datasets"][-1]
    assert (split, mode, views.num_clips, views.flip, n) == ("xsub_val", "test", 3, True, 60)
    scores = load_pickle(out)
    assert list(scores["probs"]) == ["pose_only"] and scores["probs"]["pose_only"].shape == (8, 60)
    assert scores["names"] == [f"video{i:03d}" for i in range(8)]
    assert np.allclose(scores["probs"]["pose_only"].sum(1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------- DDP
DDP_SCRIPT = """
import os, sys
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
import test_engine as t
from rgbpose.engine import train as tm

tmp = Path({tmp!r})
rank = int(os.environ["RANK"])
orig = tm._write_csv
def spy(rows, dst):
    (tmp / f"csv_by_rank{{rank}}").write_text("x")
    orig(rows, dst)
tm._write_csv = spy
torch.set_num_threads(1)
model = t.fresh_model()
res = tm.train(t.toy_config(), model, t.ToyData(10), t.ToyData(7, augment=False), tmp / "w",
               tmp / "best.pt", device="cpu", tensorboard=False)
torch.save({{"model": model.state_dict(), "iters": res.global_iter}}, tmp / f"rank{{rank}}.pt")
"""


def test_ddp_two_processes_gloo(tmp_path: Path) -> None:
    script = tmp_path / "ddp_toy.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=str(Path(__file__).parent),
                                                        tmp=str(tmp_path))))  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert states_equal(r0["model"], r1["model"])
    # 10 samples x repeat 2 = 20 -> 10 per rank -> 3 batches of 4 per epoch, 3 epochs
    assert r0["iters"] == r1["iters"] == 9
    assert (tmp_path / "csv_by_rank0").exists() and not (tmp_path / "csv_by_rank1").exists()
    rows = read_csv(tmp_path / "w" / "train_log.csv")
    assert [r["iters"] for r in rows] == ["3", "6", "9"]
    out = torch.load(tmp_path / "best.pt", weights_only=True)
    assert out["meta"]["config"]["batch_size"] == 4
    # validation covered all 7 videos exactly once: top-1 is a multiple of 1/7
    assert all(abs(float(r["val_top1"]) * 7 - round(float(r["val_top1"]) * 7)) < 1e-9 for r in rows)
