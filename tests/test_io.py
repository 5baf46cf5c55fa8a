"""Atomic writes, restricted unpickling, bad-sample policy, layouts and .skeleton round trips."""

import os
import pickle

import numpy as np
import pytest

from rgbpose.io import (
    BadSampleError,
    SkipLog,
    atomic_path,
    dump_pickle,
    load_pickle,
    read_skip_tsv,
)
from rgbpose.layouts import COCO17, NTU25, get_layout
from rgbpose.skeleton_file import Body, SkeletonSequence, read_skeleton, write_skeleton


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    dst = tmp_path / "out.pkl"
    with pytest.raises(RuntimeError):
        with atomic_path(dst) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(dst) as tmp:
        assert tmp.suffix == ".pkl" and tmp.parent == tmp_path
        tmp.write_text("done")
    assert dst.read_text() == "done" and len(list(tmp_path.iterdir())) == 1


def test_restricted_unpickler_roundtrip_and_refusal(tmp_path):
    obj = {"a": np.arange(6, dtype=np.float16).reshape(2, 3), "b": [1, "x", (2.5, None)]}
    dump_pickle(obj, tmp_path / "ok.pkl")
    back = load_pickle(tmp_path / "ok.pkl")
    assert back["b"] == [1, "x", (2.5, None)]
    assert back["a"].dtype == np.float16 and back["a"].tolist() == [[0, 1, 2], [3, 4, 5]]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(BadSampleError, match=r"evil\.pkl: refused to unpickle: forbidden global"):
        load_pickle(tmp_path / "evil.pkl")
    (tmp_path / "trunc.pkl").write_bytes(pickle.dumps(obj)[:20])
    with pytest.raises(BadSampleError, match="trunc.pkl"):
        load_pickle(tmp_path / "trunc.pkl")


def test_skip_log_policies(tmp_path):
    err = BadSampleError("/data/x_rgb.avi", "truncated video")
    with pytest.raises(BadSampleError, match="x_rgb.avi: truncated video"):
        SkipLog("fail", "compress").handle("S001C001P001R001A001", err)
    log = SkipLog("skip", "compress")
    log.handle("S001C001P001R001A001", err)
    log.write(tmp_path / "skipped.tsv")
    assert read_skip_tsv(tmp_path / "skipped.tsv") == [
        ("S001C001P001R001A001", "compress", "/data/x_rgb.avi", "truncated video")
    ]
    SkipLog("skip").write(tmp_path / "empty.tsv")
    assert (tmp_path / "empty.tsv").read_text() == "sample\tstage\tfile\treason\n"


def test_layout_flip_indices():
    assert COCO17.flip_index[:7] == (0, 2, 1, 4, 3, 6, 5)
    # limb (5, 7) left upper arm <-> (6, 8) right upper arm
    i, j = COCO17.limbs.index((5, 7)), COCO17.limbs.index((6, 8))
    assert COCO17.limb_flip_index[i] == j and COCO17.limb_flip_index[j] == i
    # the hip-to-hip limb maps onto itself
    k = COCO17.limbs.index((11, 12))
    assert COCO17.limb_flip_index[k] == k
    assert NTU25.flip_index[4] == 8 and NTU25.flip_index[21] == 23 and NTU25.flip_index[20] == 20
    assert get_layout(25) is NTU25 and get_layout("coco17") is COCO17
    with pytest.raises(ValueError, match="18 joints"):
        get_layout(18)


SKELETON_TEXT = """2
1
72057594037931101 0 1 1 1 1 0 0.1 -0.2 2
25
{joints}
0
"""


def test_skeleton_text_parsed_exactly(tmp_path):
    rows = [
        f"{v * 0.1:.1f} {-v * 0.05:.2f} {3 + v * 0.01:.2f} 10 20 {100 + v} {200 + 2 * v} 1 0 0 0 {2 if v else 1}"
        for v in range(25)
    ]
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text(SKELETON_TEXT.format(joints="\n".join(rows)))
    seq = read_skeleton(path)
    assert seq.num_frames == 2 and seq.frames[1] == []
    body = seq.frames[0][0]
    assert body.body_id == "72057594037931101"
    assert body.info == (0, 1, 1, 1, 1, 0, 0.1, -0.2, 2)
    np.testing.assert_array_equal(body.color_xy[3], [103, 206])
    np.testing.assert_allclose(body.xyz[24], [2.4, -1.2, 3.24])
    assert body.tracking[0] == 1 and body.tracking[1] == 2
    write_skeleton(seq, tmp_path / "copy.skeleton")
    again = read_skeleton(tmp_path / "copy.skeleton")
    np.testing.assert_array_equal(again.frames[0][0].joints, body.joints)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace("\n25\n", "\n24\n", 1), "expected 25 joints"),
        (lambda t: t.replace("1 0 0 0 2", "1 0 0 zero 2", 1), "non-numeric"),
        (lambda t: "\n".join(t.splitlines()[:12]), "truncated"),
        (lambda t: t[: len(t) // 2], "expected 12 values"),
        (lambda t: "", "empty skeleton file"),
        (lambda t: t + "garbage\n", "unexpected data"),
    ],
)
def test_malformed_skeleton_names_file_and_problem(tmp_path, mutate, message):
    rows = ["0 0 3 0 0 10 10 1 0 0 0 2"] * 25
    path = tmp_path / "S001C001P001R001A002.skeleton"
    path.write_text(mutate(SKELETON_TEXT.format(joints="\n".join(rows))))
    with pytest.raises(BadSampleError, match=message) as info:
        read_skeleton(path)
    assert info.value.path == str(path)


def test_skeleton_writer_roundtrip_random(tmp_path):
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(25, 12))
    joints[:, 11] = 2
    seq = SkeletonSequence([[Body("1", joints)], [Body("1", joints), Body("2", joints * 2)]])
    write_skeleton(seq, tmp_path / "a.skeleton")
    back = read_skeleton(tmp_path / "a.skeleton")
    assert back.body_ids() == ["1", "2"]
    np.testing.assert_allclose(back.frames[1][1].joints, joints * 2, rtol=1e-6, atol=1e-6)


def test_ntu25_to_coco17_conversion():
    from rgbpose.layouts import convert_layout

    kp = np.arange(2 * 3 * 25 * 2, dtype=np.float32).reshape(2, 3, 25, 2)
    sc = np.arange(2 * 3 * 25, dtype=np.float32).reshape(2, 3, 25)
    out, out_s = convert_layout(kp, sc, "ntu25", "coco17")
    assert out.shape == (2, 3, 17, 2) and out_s.shape == (2, 3, 17)
    # left shoulder (coco 5) <- Kinect ShoulderLeft (4); right ankle (coco 16) <- AnkleRight (18)
    np.testing.assert_array_equal(out[1, 2, 5], kp[1, 2, 4])
    np.testing.assert_array_equal(out_s[..., 16], sc[..., 18])
    np.testing.assert_array_equal(out[..., 0, :], kp[..., 3, :])  # nose <- Head
    # the mapping commutes with flipping: flip(convert(x)) == convert(flip(x))
    flipped_then = convert_layout(kp[..., list(NTU25.flip_index), :], sc, "ntu25", "coco17")[0]
    np.testing.assert_array_equal(flipped_then, out[..., list(COCO17.flip_index), :])
    with pytest.raises(ValueError, match="no conversion"):
        convert_layout(kp, sc, "coco17", "ntu25")


def test_atomic_files_get_umask_mode_not_mkstemp_0600(tmp_path):
    from rgbpose.io import _UMASK, write_text_atomic

    write_text_atomic(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~_UMASK
