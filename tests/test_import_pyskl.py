"""rgbpose import-pyskl: mmengine checkpoints read without mmengine (and without running it),
refused payloads, the published file names and layouts, and imported checkpoints that rgbpose
test and rgbpose predict use directly."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from test_convert import SMALL, _perturb, to_pyskl

import rgbpose.predict as predict_mod
from rgbpose.cli import main
from rgbpose.engine.checkpoint import model_from_checkpoint
from rgbpose.io import BadSampleError, dump_pickle, load_pickle
from rgbpose.models import build_model
from rgbpose.models.pyskl_import import published_model
from rgbpose.ntu import class_names
from rgbpose.safe_unpickle import Placeholder, load_checkpoint_restricted, plain_metadata

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared/data/real/ntu_sample.avi"
K = 60
MM = "mmengine.logging.history_buffer"


# --- a stand-in for mmengine: the same pickle structure, code that leaves a trace if run ----------


class HistoryBuffer:
    """Pickles like mmengine's HistoryBuffer: numpy histories, its statistics methods (pickled
    by reference: ``getattr(HistoryBuffer, 'mean')`` under torch's protocol 2), ``__getstate__``
    / ``__setstate__``.  Its ``__setstate__`` writes ``MARKER``: a loader that ran it would."""

    MARKER: Path | None = None

    def __init__(self, values: list[float]) -> None:
        self._log_history = np.array(values)
        self._count_history = np.ones(len(values), np.int64)
        self.max_length = 1000000
        self._statistics_methods = {"mean": HistoryBuffer.mean, "current": HistoryBuffer.current}

    def mean(self) -> float:
        return float(self._log_history.mean())

    def current(self) -> float:
        return float(self._log_history[-1])

    def __getstate__(self) -> dict:
        self.__dict__.update(statistics_methods=self._statistics_methods)
        return self.__dict__

    def __setstate__(self, state: dict) -> None:
        Path(self.MARKER).write_text("mmengine code ran")


def _touch(path: str) -> None:
    Path(path).write_text("mmengine code ran")


for _obj in (HistoryBuffer, HistoryBuffer.mean, HistoryBuffer.current):
    _obj.__module__ = MM
_touch.__module__ = "mmengine.hooks"


class _Call:
    """Pickles as ``reduce`` says: ``(func, args[, state])``, i.e. a call of ``func(*args)``
    (and a ``BUILD`` with ``state``): what a hostile or merely active pickle holds."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


@pytest.fixture()
def mmengine_stub(monkeypatch, tmp_path):
    """Register the stand-in modules (for saving); return the marker their code would write."""
    marker = tmp_path / "MARKER"
    hooks = types.ModuleType("mmengine.hooks")
    hooks._touch = _touch
    buffers = types.ModuleType(MM)
    buffers.HistoryBuffer = HistoryBuffer
    for name, module in (
        ("mmengine", types.ModuleType("mmengine")),
        ("mmengine.hooks", hooks),
        ("mmengine.logging", types.ModuleType("mmengine.logging")),
        (MM, buffers),
    ):
        monkeypatch.setitem(sys.modules, name, module)  # fmt: skip
    monkeypatch.setattr(HistoryBuffer, "MARKER", marker)
    return marker


def save_reference(path: Path, model: torch.nn.Module, layout: str, marker: Path | None = None):
    """Save ``model`` as the reference would: PYSKL/mmaction2 key names (``to_pyskl``, the
    inverse mapping written in test_convert) in a PYSKL (mmcv), mmaction2 1.x (mmengine, with or
    without the message hub that tools/deployment/publish_model.py drops) or bare layout."""
    state = OrderedDict((to_pyskl(k), v) for k, v in model.state_dict().items())
    if layout == "bare":
        torch.save(state, path)
        return
    if layout == "mmcv":
        meta = {
            "mmcv_version": "1.5.0",
            "time": "Sat Jun 4 2022",
            "epoch": 24,
            "iter": 9360,
            "config": "model = dict(type='Recognizer3D', ...)",
            "hook_msgs": {"best_score": 0.9},
        }
        ckpt = {
            "meta": meta,
            "state_dict": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
        }
        torch.save(ckpt, path)  # fmt: skip
        return
    meta = {
        "cfg": "model = dict(type='MMRecognizer3D', ...)",
        "seed": np.int64(0),
        "experiment_name": "rgbpose_conv3d_20230301",
        "mmengine_version": "0.7.0",
        "dataset_meta": None,
        "epoch": 20,
        "iter": 15660,
        "best_acc": np.float64(0.966),
    }
    ckpt = {"meta": meta, "state_dict": state}  # fmt: skip
    if layout == "mmengine":
        ckpt["message_hub"] = {
            "log_scalars": OrderedDict(
                [("train/loss", HistoryBuffer([2.1, 1.7])), ("train/lr", HistoryBuffer([0.0075]))]
            ),
            "runtime_info": OrderedDict(epoch=20, iter=15660, hook=_Call(_touch, (str(marker),))),
            "resumed_keys": OrderedDict([("train/loss", True), ("train/lr", True)]),
        }
        ckpt["param_schedulers"] = [{"milestones": {12: 1, 16: 1}, "gamma": 0.1}]
    torch.save(ckpt, path)


def _small(name: str, seed: int = 7) -> torch.nn.Module:
    torch.manual_seed(0)
    return _perturb(build_model(name, K, **SMALL[name]), seed)


def _overrides(name: str) -> str:
    return json.dumps(SMALL[name])


# --- the restricted loader -----------------------------------------------------------------------


def test_mmengine_checkpoint_loads_without_running_mmengine_code(tmp_path, mmengine_stub):
    model = _small("pose_only")
    path = tmp_path / "pose_only_20230228-fa40054e.pth"
    save_reference(path, model, "mmengine", mmengine_stub)
    with pytest.raises(pickle.UnpicklingError, match="Unsupported global"):  # torch alone
        torch.load(path, weights_only=True)

    ckpt = load_checkpoint_restricted(path)  # the stand-in modules are still importable here
    assert not mmengine_stub.exists()  # ... and none of their code ran
    for key, value in model.state_dict().items():
        assert torch.equal(ckpt["state_dict"][to_pyskl(key)], value), key
    loss = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(loss, Placeholder) and type(loss).origin == f"{MM}.HistoryBuffer"
    np.testing.assert_array_equal(loss.pickle_state["_log_history"], [2.1, 1.7])
    stats = loss.pickle_state["statistics_methods"]
    assert {k: v.origin for k, v in stats.items()} == {
        "mean": f"{MM}.HistoryBuffer.mean", "current": f"{MM}.HistoryBuffer.current"
    }  # fmt: skip
    hook = ckpt["message_hub"]["runtime_info"]["hook"]  # a call of mmengine code: recorded only
    assert type(hook).origin == "mmengine.hooks._touch"
    assert hook.pickle_args == ((str(mmengine_stub),), {})
    assert plain_metadata(ckpt["meta"]) == {
        "cfg": "model = dict(type='MMRecognizer3D', ...)", "seed": 0,
        "experiment_name": "rgbpose_conv3d_20230301", "mmengine_version": "0.7.0",
        "dataset_meta": None, "epoch": 20, "iter": 15660, "best_acc": 0.966,
    }  # fmt: skip
    assert plain_metadata(ckpt["message_hub"]) == {
        "log_scalars": {}, "runtime_info": {"epoch": 20, "iter": 15660},
        "resumed_keys": {"train/loss": True, "train/lr": True},
    }  # fmt: skip
    assert not mmengine_stub.exists()


PAYLOADS = {  # name -> (reduce value given the marker path, the refusal)
    "os.system": (lambda m: (os.system, (f"touch {m}",)),
                  r"forbidden global (posix|nt|os)\.system"),
    "builtins.eval": (lambda m: (eval, (f"open({str(m)!r}, 'w')",)),
                      "forbidden global builtins.eval"),
    "subprocess.Popen": (lambda m: (subprocess.Popen, (["touch", str(m)],)),
                         "forbidden global subprocess.Popen"),
    "getattr on a real class": (lambda m: (getattr, (OrderedDict, "fromkeys")),
                                "forbidden getattr on type"),
    "BUILD on a real object": (lambda m: (torch.Size, ((1,),), {"x": str(m)}),
                               "forbidden BUILD of a Size object"),
}  # fmt: skip


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_malicious_payloads_are_refused_and_nothing_runs(tmp_path, payload, capsys):
    make, refusal = PAYLOADS[payload]
    marker = tmp_path / "PWNED"
    path = tmp_path / "rgbpose_conv3d.pth"
    torch.save({"state_dict": {"cls_head.fc_cls.weight": torch.zeros(K, 4)},
                "meta": {"hook": _Call(*make(marker))}}, path)  # fmt: skip
    with pytest.raises(BadSampleError, match=f"refused to load: {refusal}") as info:
        load_checkpoint_restricted(path)
    assert info.value.path == str(path)
    out = tmp_path / "imported.pt"
    assert main(["import-pyskl", str(path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"rgbpose import-pyskl: error: {path}: refused to load: forbidden ")
    assert not marker.exists() and not out.exists()


def test_garbage_and_missing_files_name_the_file(tmp_path, capsys):
    garbage = tmp_path / "joint.pth"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["import-pyskl", str(garbage), "-o", str(tmp_path / "o.pt")]) == 1
    assert f"{garbage}: not a readable torch checkpoint" in capsys.readouterr().err
    assert main(["import-pyskl", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "o.pt")]) == 1
    assert f"{tmp_path / 'nope.pth'}: No such file or directory" in capsys.readouterr().err


# --- published names and layouts -----------------------------------------------------------------

PUBLISHED = [  # (file name, model, recipe): mmaction2 1.x, then PYSKL
    ("rgbpose_conv3d_20230301-ac7b0e77.pth", "rgbpose_conv3d", "ntu_rgbpose_conv3d.yaml"),
    ("rgbpose_conv3d_init_20230228-09b7684b.pth", "rgbpose_conv3d", "ntu_rgbpose_conv3d.yaml"),
    ("rgb_only_20230228-576b9f86.pth", "rgb_only", "ntu_rgb_only.yaml"),
    ("pose_only_20230228-fa40054e.pth", "pose_only", "ntu_pose_only.yaml"),
    ("slowonly_r50_8xb16-u48-240e_ntu60-xsub-keypoint_20220815-38db104b.pth", "posec3d",
     "ntu_posec3d.yaml"),
    ("slowonly_r50_8xb16-u48-240e_ntu60-xsub-limb_20220815-af2f119a.pth", "posec3d",
     "ntu_posec3d_limb.yaml"),
    ("rgbpose_conv3d.pth", "rgbpose_conv3d", "ntu_rgbpose_conv3d.yaml"),
    ("rgbpose_conv3d_init.pth", "rgbpose_conv3d", "ntu_rgbpose_conv3d.yaml"),
    ("rgb_only.pth", "rgb_only", "ntu_rgb_only.yaml"),
    ("pose_only.pth", "pose_only", "ntu_pose_only.yaml"),
    ("joint.pth", "posec3d", "ntu_posec3d.yaml"),
    ("limb.pth", "posec3d", "ntu_posec3d_limb.yaml"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "model", "recipe"), PUBLISHED)
def test_published_file_names(name, model, recipe):
    assert published_model(Path("downloads") / name) == (model, recipe)


def test_unknown_names_are_not_guessed():
    for name in ("best.pth", "epoch_24.pth", "jointly.pth", "my_rgb_only.pth"):
        assert published_model(name) is None, name


LAYOUTS = [  # (path below tmp, model, recipe, layout)
    ("rgbpose_conv3d_20230301-ac7b0e77.pth", "rgbpose_conv3d", "ntu_rgbpose_conv3d.yaml",
     "mmengine"),
    ("rgb_only_20230228-576b9f86.pth", "rgb_only", "ntu_rgb_only.yaml", "mmengine"),
    ("pose_only_20230228-fa40054e.pth", "pose_only", "ntu_pose_only.yaml", "mmengine_published"),
    ("slowonly_r50_8xb16-u48-240e_ntu60-xsub-limb_20220815-af2f119a.pth", "posec3d",
     "ntu_posec3d_limb.yaml", "mmengine"),
    ("slowonly_r50_ntu60_xsub/joint.pth", "posec3d", "ntu_posec3d.yaml", "mmcv"),
    ("rgbpose_conv3d.pth", "rgbpose_conv3d", "ntu_rgbpose_conv3d.yaml", "mmcv"),
    ("rgb_only.pth", "rgb_only", "ntu_rgb_only.yaml", "bare"),
]  # fmt: skip


@pytest.mark.parametrize(("rel", "name", "recipe", "layout"), LAYOUTS)
def test_published_layouts_import_into_usable_checkpoints(
    tmp_path, mmengine_stub, capsys, rel, name, recipe, layout
):
    from rgbpose.engine.config import load_run_config

    source = _small(name)
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    save_reference(path, source, layout, mmengine_stub)
    out = tmp_path / "imported.pt"
    # No --model, --num-classes or --config: the file name and the head say them.
    assert (
        main(["import-pyskl", str(path), "--overrides-json", _overrides(name), "-o", str(out)]) == 0
    )
    assert not mmengine_stub.exists()
    ignored = {"mmengine": "; ignored message_hub, param_schedulers", "mmcv": "; ignored optimizer"}
    assert capsys.readouterr().out == (
        f"rgbpose import-pyskl: {out}: {name}, 60 classes (ntu60), run config "
        f"{REPO / 'config/models' / recipe}{ignored.get(layout, '')}\n"
    )
    # What rgbpose predict does with it: the model and run config from the checkpoint alone.
    model, cfg = model_from_checkpoint(out)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    recipe_cfg = load_run_config(REPO / "config/models" / recipe)
    assert cfg.data == recipe_cfg.data and cfg.test == recipe_cfg.test
    assert (cfg.model.name, cfg.num_classes) == (name, K)
    assert cfg.data.with_limb == recipe.endswith("limb.yaml")
    meta = torch.load(out, weights_only=True)["meta"]
    assert (meta["dataset"], meta["num_classes"], meta["imported_from"]) == ("ntu60", K, str(path))
    assert meta.get("benchmark") == ("xsub" if "xsub" in rel else None)
    assert meta["class_names"] == list(class_names()[:60])
    assert meta["class_names"][:2] == ["drink water", "eat meal/snack"]
    assert meta["trained_labels"] == list(range(60))
    assert meta["source_meta"].get("epoch") == {"bare": None, "mmcv": 24}.get(layout, 20)


def test_mmaction2_normalisation_buffers_are_checked_and_dropped(tmp_path, capsys):
    state = {to_pyskl(k): v for k, v in _small("rgb_only").state_dict().items()}
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1, 1)
    path, out = tmp_path / "rgb_only.pth", tmp_path / "o.pt"
    argv = ["import-pyskl", str(path), "--overrides-json", _overrides("rgb_only"), "-o", str(out)]
    buffers = {"data_preprocessor.mean": mean, "data_preprocessor.std": std}
    torch.save({"meta": {}, "state_dict": {**state, **buffers}}, path)
    assert main(argv) == 0
    assert capsys.readouterr().out.endswith(
        "; ignored state_dict[data_preprocessor.mean], state_dict[data_preprocessor.std]\n"
    )
    torch.save({"meta": {}, "state_dict": {**state, **buffers, "data_preprocessor.mean": 0 * mean}},
               path)  # fmt: skip
    assert main(argv) == 1
    assert (
        f"{path}: data_preprocessor.mean [0.0, 0.0, 0.0] is not the RGB normalisation rgbpose "
        "applies (mean [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375])"
    ) in capsys.readouterr().err


def test_config_model_and_dataset_must_agree(tmp_path, capsys):
    path = tmp_path / "weights.pth"  # a name that says nothing
    save_reference(path, _small("pose_only"), "mmcv")
    out = str(tmp_path / "o.pt")
    small = ["--overrides-json", _overrides("pose_only"), "-o", out]
    assert main(["import-pyskl", str(path), *small]) == 1
    assert "pass --model or --config" in capsys.readouterr().err
    cfg = str(REPO / "config/models/ntu_posec3d_limb.yaml")
    assert main(["import-pyskl", str(path), "--model", "pose_only", "--config", cfg, *small]) == 1
    assert f"--model pose_only but {cfg} configures 'posec3d'" in capsys.readouterr().err
    assert main(["import-pyskl", str(path), "--dataset", "ntu120", *small]) == 1
    assert "--dataset ntu120 has 120 classes, the checkpoint 60" in capsys.readouterr().err
    # --config picks the recipe (the limb model is posec3d, same weights as pose_only's shapes)
    assert main(["import-pyskl", str(path), "--config", cfg, "--set", "test.num_clips=2",
                 *small]) == 0  # fmt: skip
    _, run = model_from_checkpoint(out)
    assert (run.model.name, run.data.with_limb, run.test.num_clips) == ("posec3d", True, 2)


# --- rgbpose test and rgbpose predict with imported checkpoints -----------------------------------


def test_imported_posec3d_runs_rgbpose_test(tmp_path, mmengine_stub):
    path = tmp_path / "slowonly_r50_8xb16-u48-240e_ntu60-xsub-limb_20220815-af2f119a.pth"
    save_reference(path, _small("posec3d"), "mmengine", mmengine_stub)
    ckpt = tmp_path / "limb.pt"
    assert main(["import-pyskl", str(path), "--overrides-json", _overrides("posec3d"),
                 "-o", str(ckpt)]) == 0  # fmt: skip
    rng = np.random.default_rng(0)
    annos = [
        {"frame_dir": name, "label": label, "img_shape": (96, 160), "original_shape": (96, 160),
         "total_frames": 30, "keypoint": rng.uniform(20, 80, (1, 30, 17, 2)).astype(np.float32),
         "keypoint_score": np.full((1, 30, 17), 0.9, np.float32)}
        for name, label in (("S001C001P001R001A008", 7), ("S001C001P001R001A010", 9))
    ]  # fmt: skip
    ann = tmp_path / "ann.pkl"
    dump_pickle({"split": {"xsub_val": [a["frame_dir"] for a in annos]}, "annotations": annos}, ann)
    scores = tmp_path / "scores.pkl"
    argv = ["test", "--config", str(REPO / "config/models/ntu_posec3d_limb.yaml"),
            "--checkpoint", str(ckpt), "--ann", str(ann), "--split", "xsub_val",
            "--num-clips", "1", "--no-flip", "--num-workers", "0", "--device", "cpu",
            "--out", str(scores)]  # fmt: skip
    assert main(argv) == 0
    probs = load_pickle(scores)["probs"]["posec3d"]
    assert probs.shape == (2, K) and np.allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.skipif(not REAL.exists(), reason="shared real clip not available")
def test_imported_rgbpose_conv3d_predicts_and_tests_the_real_clip(
    tmp_path, mmengine_stub, monkeypatch, capsys
):
    """mmaction2 1.x's published RGBPoseConv3D file (name and mmengine layout, small weights):
    imported with defaults, then rgbpose predict and rgbpose test use it directly."""
    path = tmp_path / "rgbpose_conv3d_20230301-ac7b0e77.pth"
    save_reference(path, _small("rgbpose_conv3d"), "mmengine", mmengine_stub)
    ckpt = tmp_path / "ntu60_rgbpose.pt"
    assert main(["import-pyskl", str(path), "--overrides-json", _overrides("rgbpose_conv3d"),
                 "-o", str(ckpt)]) == 0  # fmt: skip
    capsys.readouterr()

    poses = []
    estimate = predict_mod.estimate_poses
    monkeypatch.setattr(predict_mod, "estimate_poses", lambda *a, **k: poses.append(
        estimate(*a, **k)) or poses[-1])  # fmt: skip
    top = tmp_path / "top.json"
    assert main(["predict", str(REAL), "--checkpoint", str(ckpt), "--num-clips", "1",
                 "--device", "cpu", "--json", str(top)]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "checkpoint: model rgbpose_conv3d, 60-class head (NTU RGB+D 60 label space), "
        "trained on all 60 classes"
    )
    assert out[1] == "ntu_sample.avi: top-5 (rgb + pose)"
    names = class_names()
    rows = json.loads(top.read_text())["top"]
    assert len(out) == 7 and len(rows) == 5
    for rank, (line, row) in enumerate(zip(out[2:], rows), 1):
        assert row["name"] == names[row["label"]] and row["trained"] is True
        assert line.startswith(f"  {rank}. {row['action']} {row['name']}")
    with capsys.disabled():  # the NTU class names, for the record (pytest -s)
        print("\n" + "\n".join(out))

    # rgbpose test on a small annotation file of the same clip (its poses, two NTU names).
    videos = tmp_path / "videos"
    videos.mkdir()
    annos = []
    for name, label in (("S001C001P001R001A008", 7), ("S002C002P003R002A009", 8)):
        (videos / f"{name}.avi").symlink_to(REAL)
        annos.append(dict(predict_mod.to_annotation(poses[0], name), label=label))
    ann = tmp_path / "ann.pkl"
    dump_pickle({"split": {"xsub_val": [a["frame_dir"] for a in annos]}, "annotations": annos}, ann)
    scores = tmp_path / "scores.pkl"
    argv = ["test", "--config", str(REPO / "config/models/ntu_rgbpose_conv3d.yaml"),
            "--set", "data.video_ext=.avi", "--checkpoint", str(ckpt), "--ann", str(ann),
            "--split", "xsub_val", "--video-dir", str(videos), "--num-clips", "1",
            "--num-workers", "0", "--device", "cpu", "--out", str(scores)]  # fmt: skip
    assert main(argv) == 0
    assert "rgbpose test: 2 videos x 1 views; " in capsys.readouterr().out
    tested = load_pickle(scores)["probs"]
    assert tested["rgb"].shape == tested["pose"].shape == (2, K)
    fused = (tested["rgb"][0] + tested["pose"][0]) / 2  # the same clip as predict's
    for row in rows:
        assert fused[row["label"]] == pytest.approx(row["prob"], abs=1e-5)
