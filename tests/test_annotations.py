"""build-annotations: PYSKL format, exact splits, validation, PYSKL/unsafe pickles, skips."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from rgbpose.io import BadSampleError, SkipLog, dump_pickle, load_pickle, read_skip_tsv
from rgbpose.preprocess.annotations import cli, load_annotations, validate_annotation

A = "S001C001P001R001A001"  # xsub train (P1), xview val (C1)
B = "S001C002P003R001A002"  # xsub val (P3), xview train (C2)
C = "S002C001P004R001A050"  # kinect, two persons; xsub train (P4), xview val
D = "S001C003P002R002A061"  # A61: not in NTU 60
E = "S001C002P005R002A008"  # on the missing-skeleton list


def coco_pose(name: str, M: int = 1, T: int = 4) -> dict:
    kp = np.arange(M * T * 17 * 2, dtype=np.float32).reshape(M, T, 17, 2) + 0.25
    return {
        "frame_dir": name, "layout": "coco17", "img_shape": (540, 960),
        "original_shape": (540, 960), "total_frames": T, "keypoint": kp,
        "keypoint_score": np.full((M, T, 17), 0.5, np.float32), "present": np.ones((M, T), bool),
    }  # fmt: skip


def kinect_pose(name: str, M: int = 2, T: int = 3) -> dict:
    return {
        "frame_dir": name, "layout": "ntu25", "img_shape": (1080, 1920),
        "original_shape": (1080, 1920), "total_frames": T,
        "keypoint": np.full((M, T, 25, 2), 1000.5, np.float32),
        "keypoint_score": np.ones((M, T, 25), np.float32),
        "keypoint3d": np.full((M, T, 25, 3), 2.5, np.float32), "present": np.ones((M, T), bool),
    }  # fmt: skip


@pytest.fixture()
def shards(tmp_path):
    s1, s2 = tmp_path / "s1.pkl", tmp_path / "s2.pkl"
    dump_pickle([coco_pose(B), coco_pose(A, M=2), coco_pose(D)], s1)
    dump_pickle([kinect_pose(C), coco_pose(E)], s2)
    return s1, s2


def build(tmp_path, inputs, *extra, dataset="ntu60", benchmarks=("xsub", "xview")) -> int:
    return cli([*map(str, inputs), "-o", str(tmp_path / "ann.pkl"), "--dataset", dataset,
                "--benchmarks", *benchmarks, *extra])  # fmt: skip


def test_exact_splits_and_pyskl_dtypes(tmp_path, shards, capsys):
    assert build(tmp_path, shards) == 0
    data = load_pickle(tmp_path / "ann.pkl")
    assert data["split"] == {
        "xsub_train": [A, C],
        "xsub_val": [B],
        "xview_train": [B],
        "xview_val": [A, C],
    }
    anns = {a["frame_dir"]: a for a in data["annotations"]}
    assert list(anns) == [A, B, C]  # D (A61) and E (missing skeleton) are not in NTU 60 splits
    a, c = anns[A], anns[C]
    assert a["label"] == 0 and c["label"] == 49
    assert a["img_shape"] == (540, 960) and isinstance(a["original_shape"], tuple)
    assert a["keypoint"].dtype == np.float16 and a["keypoint"].shape == (2, 4, 17, 2)
    assert a["keypoint_score"].dtype == np.float16 and a["keypoint_score"][0, 0, 0] == 0.5
    assert a["keypoint"][1, 3, 16, 1] == np.float16(271.25)  # last element of arange(272) + 0.25
    assert a["layout"] == "coco17" and "present" not in a and "keypoint3d" not in a
    assert c["layout"] == "ntu25" and c["keypoint3d"].dtype == np.float16
    assert c["keypoint3d"].shape == (2, 3, 25, 3) and c["keypoint"][0, 0, 0, 0] == 1000.5
    assert set(a) == {"frame_dir", "label", "img_shape", "original_shape", "total_frames",
                      "keypoint", "keypoint_score", "layout"}  # fmt: skip
    out = capsys.readouterr().out
    assert "wrote 3 annotations" in out and "xsub_train=2, xsub_val=1" in out
    assert load_annotations(tmp_path / "ann.pkl")["split"] == data["split"]


def test_demo_and_ntu120_keep_other_samples(tmp_path, shards):
    assert build(tmp_path, shards, dataset="demo", benchmarks=("xsub",)) == 0
    split = load_pickle(tmp_path / "ann.pkl")["split"]
    # demo: no action filter, no missing-skeleton exclusion; xsub uses the NTU 60 performers
    assert split == {"xsub_train": [A, E, D, C], "xsub_val": [B]}  # sorted by name
    assert build(tmp_path, shards, dataset="ntu120", benchmarks=("xset",)) == 0
    split = load_pickle(tmp_path / "ann.pkl")["split"]
    assert split == {"xset_train": [C], "xset_val": [A, B, D]}  # E is a missing skeleton


def pyskl_pickle(path):
    """A pickle as PYSKL publishes it (ntu60_hrnet.pkl layout): no 'layout', float16 arrays."""
    ann = {
        "frame_dir": A, "label": 0, "img_shape": (1080, 1920), "original_shape": (1080, 1920),
        "total_frames": 3, "keypoint": np.zeros((1, 3, 17, 2), np.float16),
        "keypoint_score": np.ones((1, 3, 17), np.float16),
    }  # fmt: skip
    with open(path, "wb") as f:
        pickle.dump({"split": {"xsub_train": [A], "xsub_val": []}, "annotations": [ann]}, f)


def test_pyskl_layout_pickle_loads(tmp_path):
    pyskl_pickle(tmp_path / "ntu60_hrnet.pkl")
    data = load_annotations(tmp_path / "ntu60_hrnet.pkl")
    (ann,) = data["annotations"]
    assert ann["layout"] == "coco17" and ann["keypoint"].dtype == np.float16
    assert data["split"]["xsub_train"] == [A]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"split": {}, "annotations": [_Exploit(marker)]}, f)
    with pytest.raises(BadSampleError, match="refused to unpickle") as ei:
        load_annotations(path)
    assert ei.value.path == str(path) and not marker.exists()
    assert build(tmp_path, [path]) == 1 and not marker.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(keypoint_score=np.ones((1, 3, 16), np.float16)), "keypoint_score must"),
        (lambda a: a.update(total_frames=4), "total_frames 4"),
        (lambda a: a.update(label=5), "label 5 does not match"),
        (lambda a: a.update(layout="ntu25"), "ntu25 has 25 joints"),
        (lambda a: a["keypoint"].__setitem__((0, 1, 2, 0), np.inf), "non-finite"),
        (lambda a: a.update(frame_dir="../S001"), "not an NTU sample name"),
        (lambda a: a.update(img_shape=(540,)), "img_shape must be"),
    ],
)
def test_validate_annotation_rejects_naming_sample(change, message):
    ann = {
        "frame_dir": A, "label": 0, "img_shape": (540, 960), "original_shape": (540, 960),
        "total_frames": 3, "keypoint": np.zeros((1, 3, 17, 2), np.float16),
        "keypoint_score": np.ones((1, 3, 17), np.float16),
    }  # fmt: skip
    validate_annotation(ann, "x.pkl")
    change(ann)
    with pytest.raises(BadSampleError, match=message) as ei:
        validate_annotation(ann, "x.pkl")
    assert str(ei.value).startswith(f"x.pkl: {ann['frame_dir']}: ")


def test_split_naming_missing_annotation_refused(tmp_path):
    pyskl_pickle(tmp_path / "p.pkl")
    data = load_pickle(tmp_path / "p.pkl")
    data["split"]["xsub_val"] = [B]
    dump_pickle(data, tmp_path / "p.pkl")
    with pytest.raises(BadSampleError, match="without annotation, e.g. " + B):
        load_annotations(tmp_path / "p.pkl")


def test_wrong_shape_in_shard_fail_and_skip(tmp_path, shards, capsys):
    bad = coco_pose(B)
    bad["keypoint_score"] = np.ones((1, 4, 16), np.float32)
    dup = coco_pose(C)  # C is also in shard s2 (as kinect)
    s3 = tmp_path / "s3.pkl"
    dump_pickle([bad, dup], s3)
    assert build(tmp_path, [*shards, s3]) == 1
    assert f"{s3}: {B}: keypoint_score must be float [1, 4, 17]" in capsys.readouterr().err

    # earlier stages' skip TSVs are merged with this stage's skips
    earlier1, earlier2 = SkipLog("skip", "compress"), SkipLog("skip", "denoise")
    earlier1.handle("S009C001P001R001A001", BadSampleError("x_rgb.avi", "empty file (0 bytes)"))
    earlier2.handle(A, BadSampleError("s1.pkl", f"{A}: no valid body"))  # A must leave the splits
    earlier1.write(tmp_path / "k1.tsv")
    earlier2.write(tmp_path / "k2.tsv")
    F = "S001C002P001R001A003"  # xsub train (P1), xview train (C2): no split is empty of train
    dump_pickle([coco_pose(F)], tmp_path / "s4.pkl")
    rc = build(tmp_path, [*shards, s3, tmp_path / "s4.pkl"], "--on-bad-sample", "skip",
               "--skipped-in", str(tmp_path / "k1.tsv"), str(tmp_path / "k2.tsv"),
               "--skipped-out", str(tmp_path / "skipped.tsv"))  # fmt: skip
    assert rc == 0
    data = load_pickle(tmp_path / "ann.pkl")
    # B (bad copy in s3) and C (duplicated) are skipped; A was skipped earlier
    names = [a["frame_dir"] for a in data["annotations"]]
    assert names == [F]
    assert data["split"] == {"xsub_train": [F], "xsub_val": [], "xview_train": [F], "xview_val": []}
    rows = read_skip_tsv(tmp_path / "skipped.tsv")
    assert [(r[0], r[1]) for r in rows] == [
        ("S009C001P001R001A001", "compress"), (A, "denoise"),
        (B, "build_annotations"), (C, "build_annotations"),
    ]  # fmt: skip
    assert "duplicate sample (also in " + str(shards[1]) in rows[3][3]
    out, err = capsys.readouterr()
    assert "skipped 4 sample(s) (2 at this stage)" in out
    assert "warning: split xsub_val is empty" in err and "warning: split xview_val is empty" in err


def test_pose_layout_coco17_converts_kinect_2d_and_keeps_3d(tmp_path):
    pose = kinect_pose(C, M=1, T=2)
    pose["keypoint"] = np.arange(2 * 25 * 2, dtype=np.float32).reshape(1, 2, 25, 2)
    pose["keypoint_score"][0, :, 18] = 0.5  # right ankle inferred
    dump_pickle([pose], tmp_path / "k.pkl")
    # xsub only: C is in xsub_train (an empty train split is an error)
    rc = build(tmp_path, [tmp_path / "k.pkl"], "--pose-layout", "coco17", benchmarks=["xsub"])
    assert rc == 0
    (ann,) = load_pickle(tmp_path / "ann.pkl")["annotations"]
    assert ann["layout"] == "coco17" and ann["layout3d"] == "ntu25"
    assert ann["keypoint"].shape == (1, 2, 17, 2) and ann["keypoint3d"].shape == (1, 2, 25, 3)
    # coco 5 (left shoulder) <- Kinect 4; coco 16 (right ankle) <- Kinect 18; nose <- head (3)
    np.testing.assert_array_equal(ann["keypoint"][0, 1, 5], pose["keypoint"][0, 1, 4])
    np.testing.assert_array_equal(ann["keypoint"][0, 0, 0], [6, 7])
    assert ann["keypoint_score"][0, 0, 16] == np.float16(0.5)
    validate_annotation(ann)
    assert load_annotations(tmp_path / "ann.pkl")["annotations"][0]["layout"] == "coco17"


def test_frame_inds_carried_and_validated(tmp_path):
    pose = kinect_pose(C, M=1, T=3)
    pose["frame_inds"] = np.array([2, 3, 5], np.int32)
    dump_pickle([pose], tmp_path / "k.pkl")
    assert build(tmp_path, [tmp_path / "k.pkl"], benchmarks=["xsub"]) == 0
    (ann,) = load_pickle(tmp_path / "ann.pkl")["annotations"]
    np.testing.assert_array_equal(ann["frame_inds"], [2, 3, 5])
    ann["frame_inds"] = np.array([2, 2, 5], np.int32)
    with pytest.raises(BadSampleError, match="frame_inds must be 3 increasing"):
        validate_annotation(ann)
