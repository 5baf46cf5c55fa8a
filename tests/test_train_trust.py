"""Trusting resume state: the run fingerprint, forced reruns, annotation validation, failed.json,
progress lines (DESIGN.md section 8)."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from test_engine import ToyData, ToyNet, fresh_model, states_equal, toy_config

import rgbpose.data.datasets as ds_mod
import rgbpose.models as models_mod
from rgbpose.data.config import PipelineConfig
from rgbpose.data.datasets import ActionDataset, build_dataset
from rgbpose.data.records import annotations_hash
from rgbpose.engine import evaluate
from rgbpose.engine import train as train_mod
from rgbpose.engine.config import apply_overrides, run_config_from_dict
from rgbpose.engine.progress import default_log_every, eta_seconds, format_duration, progress_line
from rgbpose.engine.runstate import FailureGuard, data_error, fingerprint_changes
from rgbpose.engine.schedule import lr_at, scaled_lr
from rgbpose.engine.train import train
from rgbpose.io import BadSampleError, dump_pickle

T = 6  # frames per sample
NAMES = [f"S001C001P{p:03d}R001A{a:03d}" for p, a in [(1, 1), (1, 2), (2, 3), (2, 4),
                                                        (3, 1), (3, 2), (4, 3), (4, 4)]]  # fmt: skip
HINT = "(same inputs failed before; not retrying: fix the input or delete {})"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_ann(seed: int = 0) -> dict[str, Any]:
    """8 one-person coco17 samples of T frames on a 32x32 image, labels 0..3, all in xsub_train
    and the first 4 also in xsub_val."""
    rng = np.random.default_rng(seed)
    annos = []
    for name in NAMES:
        annos.append(
            {
                "frame_dir": name,
                "label": int(name[-3:]) - 1,
                "img_shape": (32, 32),
                "original_shape": (32, 32),
                "total_frames": T,
                "keypoint": rng.uniform(4, 28, (1, T, 17, 2)).astype(np.float32),
                "keypoint_score": np.full((1, T, 17), 0.9, np.float32),
                "layout": "coco17",
            }
        )
    return {"split": {"xsub_train": NAMES, "xsub_val": NAMES[:4]}, "annotations": annos}


def pose_config(**over: Any) -> Any:
    raw = toy_config().to_dict()
    raw["data"] = {"modality": "pose", "pose_clip_len": 4, "pose_train_size": 8,
                   "pose_test_size": 8, "max_persons": 1}  # fmt: skip
    raw["schedule"] = {"kind": "cosine", "epochs": 2, "repeat": 1}
    return run_config_from_dict(apply_overrides(raw, over, "<test>"), "<test>")


def pose_sets(ann: Any, num_classes: int = 4) -> tuple[ActionDataset, ActionDataset]:
    pcfg = pose_config().data
    return (
        build_dataset(pcfg, ann, "xsub_train", "train", num_classes=num_classes),
        build_dataset(pcfg, ann, "xsub_val", "val", num_classes=num_classes),
    )


def pose_model(seed: int = 0) -> ToyNet:
    torch.manual_seed(seed)
    return ToyNet(in_channels=17, num_classes=4)


def run(ann: Any, work: Path, out: Path, **kw: Any) -> train_mod.TrainResult:
    tr, va = pose_sets(ann)
    return train(pose_config(), kw.pop("model", None) or pose_model(), tr, va, work, out,
                 device="cpu", tensorboard=False, log_every=0, **kw)  # fmt: skip


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def stale_dir(work: Path) -> Path:
    (stale,) = work.glob("stale-*")
    assert re.fullmatch(r"stale-\d{8}T\d{6}", stale.name)
    return stale


# ----------------------------------------------------------------------------- fingerprint
def test_changed_keypoints_start_fresh_and_keep_old_state(tmp_path: Path, capsys) -> None:
    work, out = tmp_path / "w", tmp_path / "best.pt"
    ann = make_ann()
    assert run(ann, work, out).status == "finished"
    old_last, old_out = load(work / "last.pt"), load(out)

    changed = make_ann()
    changed["annotations"][6]["keypoint"][0, 2, 5] += 3.0  # same count, one joint moved
    capsys.readouterr()
    assert run(changed, work, out).status == "finished"
    log = capsys.readouterr().out
    assert f"{work / 'last.pt'} does not match this run (annotations changed): starting fresh, " \
           f"old state kept in {stale_dir(work)}" in log  # fmt: skip
    assert "resumed from" not in log
    stale = stale_dir(work)
    assert {p.name for p in stale.iterdir()} == {
        "last.pt", "best.pt", "train_log.csv", "config.yaml", "finished.json"}  # fmt: skip
    assert states_equal(load(stale / "last.pt")["model"], old_last["model"])
    new_out = load(out)
    assert not states_equal(new_out["model"], old_out["model"])
    # fresh means fresh: the same as a run on the changed annotations in an empty folder
    run(changed, tmp_path / "ref", tmp_path / "ref.pt")
    assert states_equal(new_out["model"], load(tmp_path / "ref.pt")["model"])


def test_content_hash_order_and_fields() -> None:
    ann = make_ann()
    base = annotations_hash(ann["annotations"])
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    reordered_keys = [dict(reversed(list(a.items()))) for a in ann["annotations"]]
    assert annotations_hash(reordered_keys) == base  # dict order does not matter
    assert annotations_hash(ann["annotations"][::-1]) != base  # sample order does
    extra = [dict(a, original_shape=(64, 64)) for a in ann["annotations"]]
    assert annotations_hash(extra) == base  # a key the pipeline does not read
    for key, value in [("label", 3), ("total_frames", T + 1), ("frame_inds", np.arange(T)),
                       ("keypoint_score", np.full((1, T, 17), 0.8, np.float32))]:  # fmt: skip
        annos = [dict(a) for a in ann["annotations"]]
        annos[0][key] = value
        assert annotations_hash(annos) != base, key
    tr, _ = pose_sets(ann)
    assert tr.content_hash() == base  # the split holds every sample, in pickle order


def test_changed_init_starts_fresh_unchanged_init_resumes_exactly(tmp_path: Path, capsys,
                                                                   monkeypatch) -> None:  # fmt: skip
    init = tmp_path / "init.pt"
    torch.save({"model": pose_model(seed=1).state_dict()}, init)
    ann = make_ann()
    # uninterrupted reference
    run(ann, tmp_path / "a", tmp_path / "a.pt", init=init)
    ref = load(tmp_path / "a.pt")["model"]

    # stopped after epoch 1, killed 3 items into epoch 2, rerun: resumes, same weights
    work, out = tmp_path / "b", tmp_path / "b.pt"
    run(ann, work, out, init=init, stop_after_epoch=1)
    real_getitem, calls = ActionDataset.__getitem__, []

    def dying(self: ActionDataset, i: int) -> dict[str, Any]:
        calls.append(i)
        if len(calls) > 3:
            raise KeyboardInterrupt("simulated kill")
        return real_getitem(self, i)

    monkeypatch.setattr(ActionDataset, "__getitem__", dying)
    with pytest.raises(KeyboardInterrupt):
        run(ann, work, out, init=init)
    monkeypatch.setattr(ActionDataset, "__getitem__", real_getitem)
    capsys.readouterr()
    run(ann, work, out, init=init, model=pose_model(seed=99))
    log = capsys.readouterr().out
    assert f"resumed from {work / 'last.pt'} at epoch 1/2" in log
    assert not list(work.glob("stale-*"))
    assert states_equal(load(out)["model"], ref)

    # same init path, other content: a fresh start from the new init
    torch.save({"model": pose_model(seed=2).state_dict()}, init)
    run(ann, work, out, init=init)
    log = capsys.readouterr().out
    assert "does not match this run (init checkpoint changed): starting fresh" in log
    assert states_equal(load(stale_dir(work) / "last.pt")["model"], load(tmp_path / "a" /
                                                                         "last.pt")["model"])  # fmt: skip
    new = load(out)["model"]
    assert not states_equal(new, ref)
    run(ann, tmp_path / "c", tmp_path / "c.pt", init=init)
    assert states_equal(new, load(tmp_path / "c.pt")["model"])


def test_old_last_pt_without_fingerprint_keys_is_not_resumed(tmp_path: Path, capsys) -> None:
    work, out = tmp_path / "w", tmp_path / "o.pt"
    ann = make_ann()
    run(ann, work, out, stop_after_epoch=1)
    last = load(work / "last.pt")
    # what the previous version stored
    last["fingerprint"] = {"config": last["fingerprint"]["config"], "train_len": 8,
                           "world_size": 1}  # fmt: skip
    torch.save(last, work / "last.pt")
    capsys.readouterr()
    r = run(ann, work, out, stop_after_epoch=1)
    log = capsys.readouterr().out
    assert r.epoch == 1 and "resumed" not in log
    assert "predates annotation/init/model fingerprints): starting fresh" in log
    assert load(stale_dir(work) / "last.pt")["fingerprint"]["train_len"] == 8


def test_fingerprint_changes_names_components() -> None:
    tr, va = pose_sets(make_ann())
    fp = train_mod._fingerprint(pose_config(), tr, va, None, pose_model(), "pose_only", 4, 1)
    assert fingerprint_changes(fp, fp) == []
    fp2 = train_mod._fingerprint(pose_config(**{"optim.lr": 0.1, "schedule.epochs": 3}), tr, va,
                                 None, ToyNet(17, 5), "pose_only", 5, 2)  # fmt: skip
    assert fingerprint_changes(fp, fp2) == [
        "config changed: optim.lr, schedule.epochs",
        "model changed: num_classes, state_shapes",
        "world size changed: 1 -> 2",
    ]
    short, _ = pose_sets({**make_ann(), "split": {"xsub_train": NAMES[:6], "xsub_val": NAMES[:4]}})
    fp3 = train_mod._fingerprint(pose_config(), short, va, None, pose_model(), "pose_only", 4, 1)
    assert fingerprint_changes(fp, fp3) == ["annotations changed (8 -> 6 samples)"]
    # the resume-free keys may change
    fp4 = train_mod._fingerprint(pose_config(num_workers=3, time_budget_s=5.0), tr, va, None,
                                 pose_model(), "pose_only", 4, 1)  # fmt: skip
    assert fingerprint_changes(fp, fp4) == []


# ----------------------------------------------------------------------------- forced rerun
def test_forced_rerun_starts_fresh(tmp_path: Path, capsys) -> None:
    work, out = tmp_path / "w", tmp_path / "best.pt"
    ann = make_ann()
    run(ann, work, out)
    finished = json.loads((work / "finished.json").read_text())
    assert finished["out"] == str(out)
    assert finished["fingerprint_hash"] == load(work / "last.pt")["fingerprint_hash"]
    old_last = load(work / "last.pt")

    # a plain rerun with the output present resumes (nothing left to train), no stale folder
    capsys.readouterr()
    run(ann, work, out)
    assert "resumed from" in capsys.readouterr().out and not list(work.glob("stale-*"))

    out.unlink()  # what snakemake --forcerun does
    r = train(pose_config(), pose_model(), *pose_sets(ann), work, out, device="cpu",
              tensorboard=False, log_every=1)  # fmt: skip
    log = capsys.readouterr().out
    stale = stale_dir(work)
    assert (f"previous run finished and its output {out} is gone (forced rerun): starting fresh, "
            f"old state kept in {stale}") in log  # fmt: skip
    assert "resumed" not in log and "epoch 1/2 iter 1/2" in log  # trained from epoch 0
    assert r.status == "finished" and out.exists()
    assert states_equal(load(stale / "last.pt")["model"], old_last["model"])
    # the classes the model saw, for rgbpose predict (hand count: labels of the 8 names)
    assert load(out)["meta"]["trained_labels"] == sorted({int(n[-3:]) - 1 for n in NAMES})
    assert len(load(out)["meta"]["trained_labels"]) == 4
    stale_finished = json.loads((stale / "finished.json").read_text())
    assert {k: stale_finished[k] for k in ("fingerprint_hash", "out")} == {
        k: finished[k] for k in ("fingerprint_hash", "out")}  # fmt: skip
    assert re.fullmatch(r"\d{8}T\d{6}", finished["time"])
    # same inputs, trained again from scratch: the same weights
    assert states_equal(load(work / "last.pt")["model"], old_last["model"])


# ----------------------------------------------------------------------------- validation
def test_label_out_of_range_names_file_and_sample(tmp_path: Path) -> None:
    ann = make_ann()
    ann["annotations"][6]["label"] = 200
    path = tmp_path / "ann.pkl"
    dump_pickle(ann, path)
    pcfg = pose_config().data
    with pytest.raises(BadSampleError) as exc:
        build_dataset(pcfg, path, "xsub_train", "train", num_classes=60)
    assert str(exc.value) == f"{path}: sample {NAMES[6]}: label 200 is out of range for 60 classes"
    assert exc.value.path == str(path)
    # not in the split: not checked
    build_dataset(pcfg, path, "xsub_val", "val", num_classes=60)
    ann["annotations"][0]["label"] = -1
    with pytest.raises(BadSampleError, match=rf"sample {NAMES[0]}: label -1 is out of range for "
                                             r"60 classes \(and 1 more bad samples\)$"):  # fmt: skip
        build_dataset(pcfg, ann, "xsub_train", "train", num_classes=60)


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"keypoint": np.zeros((1, T, 17), np.float32)},
         "keypoint shape (1, 6, 17) is not [M, T, V, C] with C 2 or 3"),
        ({"keypoint": np.zeros((1, T, 17, 4), np.float32)},
         "keypoint shape (1, 6, 17, 4) is not [M, T, V, C] with C 2 or 3"),
        ({"keypoint": np.zeros((1, T, 17, 3), np.float32)},
         "keypoint shape (1, 6, 17, 3) holds 3D joints; the 2D pipeline needs [M, T, V, 2]"),
        ({"keypoint": np.zeros((1, T, 15, 2), np.float32)},
         "keypoint has 15 joints, layout coco17 has 17"),
        ({"total_frames": T + 1}, "keypoint has 6 frames, total_frames is 7"),
        ({"keypoint_score": np.ones((1, T, 16), np.float32)},
         "keypoint_score shape (1, 6, 16) does not match (1, 6, 17)"),
        ({"frame_inds": np.arange(T - 1)}, "frame_inds shape (5,) is not (6,)"),
        ({"label": 1.0}, "label 1.0 is not an integer"),
        ({"frame_dir": "../S001C001P001R001A001"}, "invalid sample name '../S001C001P001R001A001'"),
    ],
)  # fmt: skip
def test_bad_sample_shapes_name_the_sample(change: dict[str, Any], problem: str) -> None:
    ann = make_ann()
    ann["annotations"][5].update(change)
    ann["split"]["xsub_train"] = [a["frame_dir"] for a in ann["annotations"]]
    pcfg = pose_config().data
    with pytest.raises(BadSampleError) as exc:
        build_dataset(pcfg, ann, "xsub_train", "train", num_classes=4)
    name = ann["annotations"][5]["frame_dir"]
    assert str(exc.value) == f"<annotations>: sample {name}: {problem}"


def test_rgb_only_needs_no_keypoints(tmp_path: Path) -> None:
    ann = make_ann()
    for a in ann["annotations"]:
        del a["keypoint"], a["keypoint_score"]
    rgb = PipelineConfig(modality="rgb")
    assert len(build_dataset(rgb, ann, "xsub_train", "train", tmp_path, num_classes=4)) == 8
    with pytest.raises(BadSampleError, match=rf"sample {NAMES[0]}: annotation has no 'keypoint' "
                                             r"\(and 7 more bad samples\)"):  # fmt: skip
        build_dataset(PipelineConfig(modality="pose"), ann, "xsub_train", "train")


def write_inputs(tmp_path: Path, ann: Any, **over: Any) -> tuple[Path, Path]:
    cfg_path, ann_path = tmp_path / "run.yaml", tmp_path / "ann.pkl"
    cfg_path.write_text(yaml.safe_dump(pose_config(**over).to_dict()))
    dump_pickle(ann, ann_path)
    return cfg_path, ann_path


def spy_models(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    built: list[tuple[str, int]] = []

    def build_model(name: str, num_classes: int, **overrides: Any) -> ToyNet:
        built.append((name, num_classes))
        return ToyNet(17, num_classes)

    monkeypatch.setattr(models_mod, "build_model", build_model)
    return built


def test_test_path_rejects_label_out_of_range(tmp_path: Path, monkeypatch) -> None:
    ann = make_ann()
    ann["annotations"][1]["label"] = 75
    cfg_path, ann_path = write_inputs(tmp_path, ann)
    spy_models(monkeypatch)
    ckpt = tmp_path / "best.pt"
    meta = {"model_name": "pose_only", "num_classes": 60, "overrides": {},
            "config": pose_config().to_dict()}  # fmt: skip
    torch.save({"model": ToyNet(17, 60).state_dict(), "meta": meta}, ckpt)
    out = tmp_path / "scores.pkl"
    with pytest.raises(BadSampleError) as exc:
        evaluate.cli(["--config", str(cfg_path), "--checkpoint", str(ckpt), "--ann",
                      str(ann_path), "--split", "xsub_val", "--out", str(out),
                      "--device", "cpu"])  # fmt: skip
    assert str(exc.value) == f"{ann_path}: sample {NAMES[1]}: label 75 is out of range for 60 " \
                             "classes"  # fmt: skip
    assert not out.exists()


# ----------------------------------------------------------------------------- failed.json
def cli_args(tmp_path: Path, cfg_path: Path, ann_path: Path, *extra: str) -> list[str]:
    return ["--config", str(cfg_path), "--ann", str(ann_path), "--split", "xsub",
            "--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "best.pt"),
            "--num-classes", "4", "--device", "cpu", *extra]  # fmt: skip


def test_failed_json_fast_fail_then_retry_on_fixed_input(tmp_path: Path, monkeypatch) -> None:
    ann = make_ann()
    ann["annotations"][6]["label"] = 200
    cfg_path, ann_path = write_inputs(tmp_path, ann)
    built = spy_models(monkeypatch)
    read: list[str] = []
    real_build_dataset = ds_mod.build_dataset

    def spy_build_dataset(*a: Any, **k: Any) -> Any:
        read.append(a[2])
        return real_build_dataset(*a, **k)

    monkeypatch.setattr(ds_mod, "build_dataset", spy_build_dataset)
    args = cli_args(tmp_path, cfg_path, ann_path)
    failed = tmp_path / "w" / "failed.json"

    with pytest.raises(BadSampleError) as first:
        train_mod.cli(args)
    assert str(first.value) == f"{ann_path}: sample {NAMES[6]}: label 200 is out of range for 4 " \
                               "classes"  # fmt: skip
    assert built == [] and read == ["xsub_train"] and not (tmp_path / "w" / "last.pt").exists()
    rec = json.loads(failed.read_text())
    assert rec["error"] == str(first.value) and rec["type"] == "BadSampleError"
    assert re.fullmatch(r"[0-9a-f]{64}", rec["fingerprint_hash"]) and "bad_file" not in rec

    # the retry snakemake makes: fails at once, builds nothing, reads no dataset
    t0 = time.perf_counter()
    with pytest.raises(BadSampleError) as again:
        train_mod.cli(args)
    assert time.perf_counter() - t0 < 1.0
    assert str(again.value) == f"{first.value} {HINT.format(failed)}"
    assert built == [] and read == ["xsub_train"]
    # time budget / device are not inputs: still the same failure
    with pytest.raises(BadSampleError, match="same inputs failed before"):
        train_mod.cli(args + ["--time-budget", "100"])

    # the input fixed: failed.json goes, the run trains
    ann["annotations"][6]["label"] = 2
    dump_pickle(ann, ann_path)
    assert train_mod.cli(args + ["--set", "schedule.epochs=1"]) == 0
    assert not failed.exists() and (tmp_path / "best.pt").exists()
    assert built == [("pose_only", 4)] and read == ["xsub_train", "xsub_train", "xsub_val"]


def test_failed_json_for_value_error_and_changed_args(tmp_path: Path, monkeypatch) -> None:
    cfg_path, ann_path = write_inputs(tmp_path, make_ann())
    built = spy_models(monkeypatch)
    args = cli_args(tmp_path, cfg_path, ann_path)
    args[args.index("xsub")] = "xview"  # no such split
    failed = tmp_path / "w" / "failed.json"
    with pytest.raises(ValueError) as first:
        train_mod.cli(args)
    assert "no split 'xview_train'" in str(first.value)
    assert json.loads(failed.read_text())["type"] == "ValueError"
    with pytest.raises(ValueError) as again:
        train_mod.cli(args)
    assert str(again.value) == f"{first.value} {HINT.format(failed)}"
    # another split is another command: failed.json is removed, this one runs
    assert train_mod.cli(cli_args(tmp_path, cfg_path, ann_path, "--set", "schedule.epochs=1")) == 0
    assert not failed.exists() and built == [("pose_only", 4)]


def test_mid_epoch_bad_sample_recorded_with_its_file(tmp_path: Path, monkeypatch) -> None:
    cfg_path, ann_path = write_inputs(tmp_path, make_ann())
    spy_models(monkeypatch)
    video = tmp_path / "S001C001P001R001A001.mp4"

    def broken(self: ActionDataset, i: int) -> dict[str, Any]:
        raise BadSampleError(video, "video file not found")

    monkeypatch.setattr(ActionDataset, "__getitem__", broken)
    args = cli_args(tmp_path, cfg_path, ann_path, "--set", "schedule.epochs=1")
    with pytest.raises(BadSampleError):
        train_mod.cli(args)
    rec = json.loads((tmp_path / "w" / "failed.json").read_text())
    assert (rec["bad_file"], rec["bad_file_sha256"]) == (str(video), None)
    with pytest.raises(BadSampleError, match="not retrying"):
        train_mod.cli(args)
    # the video appears (the bad file changed): the run goes ahead and fails afresh
    video.write_bytes(b"now a file")
    with pytest.raises(BadSampleError) as exc:
        train_mod.cli(args)
    assert "not retrying" not in str(exc.value)
    rec = json.loads((tmp_path / "w" / "failed.json").read_text())
    assert len(rec["bad_file_sha256"]) == 64


def test_data_error_classification(tmp_path: Path) -> None:
    from torch._utils import ExceptionWrapper

    try:
        raise BadSampleError("/data/v 1.mp4", "unreadable or corrupt video")
    except BadSampleError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(RuntimeError) as exc:
        wrapped.reraise()  # what a DataLoader worker's BadSampleError becomes
    err = data_error(exc.value)
    assert isinstance(err, BadSampleError)
    assert str(err) == "/data/v 1.mp4: unreadable or corrupt video"
    assert data_error(ValueError("no split 'x'")) is not None
    assert data_error(RuntimeError("CUDA out of memory")) is None
    assert data_error(KeyboardInterrupt()) is None

    class Broken(ToyData):
        def __getitem__(self, i: int) -> dict[str, Any]:
            raise ValueError("a bug in the loop, not an input problem")

    with pytest.raises(ValueError) as exc:
        train(toy_config(), fresh_model(), Broken(), None, tmp_path / "w", tmp_path / "o.pt",
              device="cpu", tensorboard=False)  # fmt: skip
    assert data_error(exc.value) is None  # raised inside the training loop: may be retried
    guard = FailureGuard(tmp_path / "g", "h" * 64)
    with pytest.raises(ValueError), guard:
        raise exc.value
    assert not (tmp_path / "g" / "failed.json").exists()


# ----------------------------------------------------------------------------- progress
def test_progress_line_and_eta_hand_computed() -> None:
    line = progress_line(2, 4, 30, 120, 1.23454, 0.01, 8.34, 0.0123, 192.4)
    assert line == ("epoch 2/4 iter 30/120 loss 1.2345 lr 0.01 8.3 clips/s data 0.012 s/iter "
                    "eta 0:03:12")  # fmt: skip
    # 30 iterations in 12 s = 0.4 s each; 4 epochs x 120 - 150 done = 330 left -> 132 s
    assert eta_seconds(12.0, 30, 4 * 120 - 150) == pytest.approx(132.0)
    assert format_duration(132.0) == "0:02:12"
    assert format_duration(26 * 3600 + 61.6) == "26:01:02"
    assert format_duration(0) == "0:00:00"
    assert math.isnan(eta_seconds(0.0, 0, 10)) and format_duration(math.nan) == "?"
    assert (default_log_every(120), default_log_every(6), default_log_every(1)) == (12, 1, 1)


LINE = re.compile(
    r"^\[rgbpose train\] epoch (\d+)/3 iter (\d+)/6 loss (\d+\.\d{4}) lr (\S+) "
    r"(\d+\.\d) clips/s data (\d+\.\d{3}) s/iter eta (\d+:\d\d:\d\d)$"
)


def progress_lines(text: str) -> list[re.Match]:
    return [m for m in map(LINE.match, text.splitlines()) if m]


def test_training_prints_progress_lines(tmp_path: Path, capsys) -> None:
    cfg = toy_config()  # 12 clips x repeat 2 / batch 4 = 6 iterations per epoch, 3 epochs
    train(cfg, fresh_model(), ToyData(), None, tmp_path / "a", tmp_path / "a.pt", device="cpu",
          tensorboard=False, log_every=2)  # fmt: skip
    lines = progress_lines(capsys.readouterr().out)
    assert [(int(m[1]), int(m[2])) for m in lines] == [
        (e, i) for e in (1, 2, 3) for i in (2, 4, 6)]  # fmt: skip
    base_lr = scaled_lr(cfg.optim, cfg.batch_size)
    for k, m in enumerate(lines):  # lr of the line's iteration (global 2k+1, 0-based)
        assert m[4] == f"{lr_at(2 * k + 1, base_lr, cfg.schedule, 6):.4g}"
        assert float(m[5]) > 0
    assert lines[-1][7] == "0:00:00"  # nothing left after the last iteration
    # each line's loss is the mean over its 2 batches (8 clips): 3 lines average to the epoch's
    rows = (tmp_path / "a" / "train_log.csv").read_text().splitlines()[1:]
    for epoch, row in enumerate(rows):
        mean = np.mean([float(m[3]) for m in lines[3 * epoch : 3 * epoch + 3]])
        assert mean == pytest.approx(float(row.split(",")[3]), abs=2e-4)

    train(cfg, fresh_model(), ToyData(), None, tmp_path / "b", tmp_path / "b.pt", device="cpu",
          tensorboard=False)  # fmt: skip
    assert len(progress_lines(capsys.readouterr().out)) == 18  # default: 10% of 6 -> every 1
    train(cfg, fresh_model(), ToyData(), None, tmp_path / "c", tmp_path / "c.pt", device="cpu",
          tensorboard=False, log_every=0)  # fmt: skip
    assert progress_lines(capsys.readouterr().out) == []
