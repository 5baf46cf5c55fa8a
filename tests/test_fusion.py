"""Late fusion: weighted sums, name alignment, report keys, CLI output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rgbpose.engine.fusion import cli, fusion_report, parse_fusion, weighted_sum
from rgbpose.io import BadSampleError, dump_pickle

NAMES = ["v0", "v1", "v2", "v3"]
LABELS = np.array([0, 1, 2, 1])
# rgb: v0 ok, v1 wrong (0), v2 ok, v3 ok -> top-1 3/4; class recalls 1, 1/2, 1 -> 5/6
RGB = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5], [0.3, 0.6, 0.1]])
# pose: v0 wrong (1), v1 ok, v2 wrong (0), v3 ok -> 2/4; recalls 0, 1, 0 -> 1/3
POSE = np.array([[0.3, 0.4, 0.3], [0.1, 0.8, 0.1], [0.5, 0.2, 0.3], [0.2, 0.7, 0.1]])
# 1:1 sums: [.9 .7 .4] [.6 1.2 .2] [.7 .5 .8] [.5 1.3 .2] -> all correct


def scores(names: list[str], labels: np.ndarray, **probs: np.ndarray) -> dict:
    return {
        "names": names,
        "labels": labels.astype(np.int64),
        "probs": {h: p.astype(np.float32) for h, p in probs.items()},
    }


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    dump_pickle(scores(NAMES, LABELS, rgb_only=RGB), tmp_path / "rgb.pkl")
    dump_pickle(scores(NAMES, LABELS, pose_only=POSE), tmp_path / "pose.pkl")
    order = [3, 2, 1, 0]  # a different video order: rows are aligned by name
    rgbpose = scores([NAMES[i] for i in order], LABELS[order], rgb=RGB[order], pose=POSE[order])
    rgbpose["logits"] = {"rgb": np.log(RGB[order]) + 5.0, "pose": np.log(POSE[order]) - 1.0}
    dump_pickle(rgbpose, tmp_path / "rgbpose.pkl")
    return {
        "rgb_only": str(tmp_path / "rgb.pkl"),
        "pose_only": str(tmp_path / "pose.pkl"),
        "rgbpose": str(tmp_path / "rgbpose.pkl"),
    }


def test_weighted_sum_hand_computed() -> None:
    got = weighted_sum([np.array([[0.2, 0.8]]), np.array([[0.6, 0.4]])], [1.0, 2.0])
    assert np.allclose(got, [[1.4, 1.6]])


DEMO_FUSIONS = {
    "late_fusion": {"weights": {"rgb_only": 1, "pose_only": 1}},
    "rgbpose_fusion": {"weights": {"rgbpose.rgb": 1, "rgbpose.pose": 1}},
}


def test_fusion_report_values_and_keys(files: dict[str, str]) -> None:
    r = fusion_report(files, DEMO_FUSIONS)
    assert set(r) == {"rgb_only", "pose_only", "late_fusion", "rgbpose_rgb", "rgbpose_pose",
                      "rgbpose_fusion", "num_val_samples"}  # fmt: skip
    assert r["num_val_samples"] == 4
    for row in ("rgb_only", "rgbpose_rgb"):
        assert r[row]["top1"] == pytest.approx(0.75)
        assert r[row]["mean_class"] == pytest.approx(5 / 6)
    for row in ("pose_only", "rgbpose_pose"):
        assert r[row]["top1"] == pytest.approx(0.5)
        assert r[row]["mean_class"] == pytest.approx(1 / 3)
    assert r["late_fusion"]["top1"] == 1.0 and r["rgbpose_fusion"]["top1"] == 1.0
    assert r["late_fusion"]["top5"] == 1.0  # K = 3 < 5
    assert set(r["late_fusion"]) == {"top1", "top5", "mean_class"}


def test_fusion_weights(files: dict[str, str]) -> None:
    # rgb 1 : pose 2 -> v2 becomes [1.2, .7, 1.1]: wrong; the others stay right
    fusions = {**DEMO_FUSIONS, "late_fusion": {"weights": {"rgb_only": 1.0, "pose_only": 2.0}}}
    r = fusion_report(files, fusions)
    assert r["late_fusion"]["top1"] == pytest.approx(0.75)
    assert r["rgbpose_fusion"]["top1"] == 1.0  # its heads keep 1:1


def test_streams_without_fusions_and_a_stream_as_its_mean(files: dict[str, str]) -> None:
    r = fusion_report({"pose_only": files["pose_only"]})
    assert set(r) == {"pose_only", "num_val_samples"}
    # a multi-head stream without a head stands for the mean of its heads (= 1:1 fusion / 2)
    r = fusion_report({"rgbpose": files["rgbpose"]}, {"whole": {"weights": {"rgbpose": 1}}})
    assert list(r) == ["rgbpose_rgb", "rgbpose_pose", "whole", "num_val_samples"]
    assert r["whole"]["top1"] == 1.0


def test_logit_fusion_sums_logits_not_probabilities(tmp_path: Path) -> None:
    # one video of class 1; heads a [.7 .25 .05] and b [.05 .4 .55], logits = log p + c
    # probabilities 1:1: [.75 .65 .60] -> class 0 (wrong);
    # logits 1:1 rank like p_a * p_b: [.035 .100 .0275] -> class 1 (right)
    pa, pb = np.array([[0.7, 0.25, 0.05]]), np.array([[0.05, 0.4, 0.55]])
    s = scores(["v"], np.array([1]), a=pa, b=pb)
    s["logits"] = {"a": np.log(pa) + 3.0, "b": np.log(pb) - 2.0}
    dump_pickle(s, tmp_path / "s.pkl")
    weights = {"m.a": 1, "m.b": 1}
    r = fusion_report(
        {"m": tmp_path / "s.pkl"},
        {"soft": {"weights": weights}, "logit": {"weights": weights, "scores": "logits"}},
    )
    assert (r["soft"]["top1"], r["logit"]["top1"]) == (0.0, 1.0)
    dump_pickle(scores(["v"], np.array([1]), a=pa), tmp_path / "old.pkl")
    with pytest.raises(BadSampleError, match="old.pkl: has no logits"):
        fusion_report({"m": tmp_path / "old.pkl"}, {"x": {"weights": {"m": 1}, "scores": "logits"}})


def test_unknown_stream_or_head_in_a_fusion_is_named(files: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="unknown stream 'rgb' in 'rgb.x'"):
        fusion_report(files, {"f": {"weights": {"rgb.x": 1}}})
    with pytest.raises(Exception, match="no head 'depth'"):
        fusion_report(files, {"f": {"weights": {"rgbpose.depth": 1}}})


def test_parse_fusion() -> None:
    assert parse_fusion("a:1,b.rgb:2.5") == {
        "weights": {"a": 1.0, "b.rgb": 2.5},
        "scores": "softmax",
    }
    assert parse_fusion("logits:a:1.5") == {"weights": {"a": 1.5}, "scores": "logits"}
    with pytest.raises(ValueError, match="--fusion expects"):
        parse_fusion("a=1")


def test_name_mismatch_names_files_and_videos(tmp_path: Path, files: dict[str, str]) -> None:
    other = NAMES[:3] + ["v9"]
    dump_pickle(scores(other, LABELS, pose_only=POSE), tmp_path / "bad.pkl")
    with pytest.raises(ValueError) as exc:
        fusion_report({"rgb_only": files["rgb_only"], "pose_only": str(tmp_path / "bad.pkl")})
    msg = str(exc.value)
    assert files["rgb_only"] in msg and str(tmp_path / "bad.pkl") in msg
    assert "'v3'" in msg and "'v9'" in msg

    dump_pickle(scores(NAMES, np.array([0, 1, 2, 2]), pose_only=POSE), tmp_path / "lab.pkl")
    with pytest.raises(ValueError, match="disagree on the label of v3"):
        fusion_report({"rgb_only": files["rgb_only"], "pose_only": str(tmp_path / "lab.pkl")})


def test_cli_writes_table_and_json(tmp_path: Path, files: dict[str, str]) -> None:
    txt, js = tmp_path / "fusion.txt", tmp_path / "fusion.json"
    rc = cli(["--scores", *(f"{k}={v}" for k, v in files.items()), "-o", str(txt),
              "--json", str(js), "--fusion", "late_fusion=rgb_only:1,pose_only:1",
              "rgbpose_fusion=rgbpose.rgb:1,rgbpose.pose:1"])  # fmt: skip
    assert rc == 0
    report = json.loads(js.read_text())
    assert list(report) == ["rgb_only", "pose_only", "late_fusion", "rgbpose_rgb",
                            "rgbpose_pose", "rgbpose_fusion", "num_val_samples"]  # fmt: skip
    text = txt.read_text()
    lines = text.splitlines()
    rgb_line = next(line for line in lines if line.startswith("RGB only"))
    assert rgb_line.split()[-3:] == ["75.00", "100.00", "83.33"]
    assert "NTU RGB+D 60 X-Sub" in text
    ref_fusion = [line for line in lines if line.startswith("RGBPoseConv3D, fusion")][-1]
    assert ref_fusion.split()[-2:] == ["96.6", "96.9"]
