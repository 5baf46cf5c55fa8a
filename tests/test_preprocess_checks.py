"""Checks across the preprocessing stages: video/skeleton frame counts, all-zero skeletons,
empty splits, per-sample progress lines and the compress stage's stale temp files."""

from __future__ import annotations

import io
import os
import re
import time

import numpy as np
import pytest
from test_annotations import coco_pose, kinect_pose
from test_compress import make_video
from test_poses import SKELETON_TEXT

from rgbpose.data.video import DEFAULT_TOLERANCE, VideoInfo
from rgbpose.io import BadSampleError, atomic_path, dump_pickle, load_pickle, read_skip_tsv
from rgbpose.preprocess.annotations import (
    check_video_fit,
    cli,
    has_valid_joints,
    read_video_manifests,
)
from rgbpose.preprocess.compress import cli as compress_cli
from rgbpose.preprocess.compress import remove_stale_shard_temps, write_manifest
from rgbpose.preprocess.denoise import cli as denoise_cli
from rgbpose.preprocess.poses import cli as poses_cli
from rgbpose.preprocess.stage import StageProgress, format_seconds

A = "S001C001P001R001A001"  # xsub train (P1)
B = "S001C002P002R001A002"  # xsub train (P2)
V = "S001C001P003R001A003"  # xsub val (P3)
PROGRESS_LINE = r"\((\d+\.\d|\d+) s\)"


def manifest(path, **frames) -> str:
    write_manifest([(n, VideoInfo(f, 960, 540, 30.0)) for n, f in frames.items()], path)
    return str(path)


def build(tmp_path, poses, *extra, benchmarks=("xsub",)) -> int:
    dump_pickle(poses, tmp_path / "shard.pkl")
    return cli([str(tmp_path / "shard.pkl"), "-o", str(tmp_path / "ann.pkl"), "--dataset",
                "ntu60", "--benchmarks", *benchmarks, *extra])  # fmt: skip


# --------------------------------------------------------------------------------------------
# video / skeleton frame counts
# --------------------------------------------------------------------------------------------


def test_tolerance_is_the_video_readers():
    assert DEFAULT_TOLERANCE == 5


@pytest.mark.parametrize(
    "video, ok",
    [(16, True), (21, True), (22, False), (32, False), (11, True), (10, False), (8, False)],
)
def test_frame_count_within_tolerance_either_direction(video, ok):
    ann = coco_pose(A, T=16)
    if ok:
        check_video_fit(ann, video, "s.pkl", "m.tsv")
        return
    with pytest.raises(BadSampleError) as ei:
        check_video_fit(ann, video, "s.pkl", "m.tsv")
    assert str(ei.value) == (
        f"s.pkl: {A}: frame count mismatch: skeleton {A} has 16 frames, video {A}.mp4 has "
        f"{video} frames (m.tsv; tolerance 5)"
    )


@pytest.mark.parametrize("video, ok", [(36, True), (35, False), (32, False), (100, True)])
def test_frame_inds_must_index_into_the_video(video, ok):
    # pose frame t is video frame frame_inds[t]: the reader accepts indices < video + 5
    ann = dict(coco_pose(A, T=3), frame_inds=np.array([10, 20, 40], np.int32))
    if ok:
        check_video_fit(ann, video, "s.pkl", "m.tsv")
        return
    with pytest.raises(BadSampleError, match="mapped up to video frame index 40") as ei:
        check_video_fit(ann, video, "s.pkl", "m.tsv")
    assert f"video {A}.mp4 has {video} frames (m.tsv; tolerance 5)" in str(ei.value)


def test_cli_mismatch_fail_names_video_skeleton_and_counts(tmp_path, capsys):
    m = manifest(tmp_path / "0000.tsv", **{A: 8, B: 16})
    rc = build(tmp_path, [coco_pose(A, T=16), coco_pose(B, T=16)], "--video-manifests", m)
    assert rc == 1
    err = capsys.readouterr().err
    assert (
        f"error: {tmp_path / 'shard.pkl'}: {A}: frame count mismatch: skeleton {A} has 16 "
        f"frames, video {A}.mp4 has 8 frames ({m}; tolerance 5)"
    ) in err
    assert not (tmp_path / "ann.pkl").exists()
    # without --video-manifests nothing is checked (the previous behaviour)
    assert build(tmp_path, [coco_pose(A, T=16), coco_pose(B, T=16)]) == 0


def test_cli_mismatch_skip_lists_sample_and_keeps_unlisted_videos(tmp_path):
    m1 = manifest(tmp_path / "0000.tsv", **{A: 32, B: 15})
    m2 = manifest(tmp_path / "0001.tsv", **{V: 16})
    C = "S001C002P004R001A004"  # no manifest row: compress skipped its video (listed there)
    poses = [coco_pose(A, T=16), coco_pose(B, T=16), coco_pose(C, T=16), coco_pose(V, T=16)]
    rc = build(tmp_path, poses, "--video-manifests", m1, m2, "--on-bad-sample", "skip",
               "--skipped-out", str(tmp_path / "skipped.tsv"))  # fmt: skip
    assert rc == 0
    data = load_pickle(tmp_path / "ann.pkl")
    assert data["split"] == {"xsub_train": [B, C], "xsub_val": [V]}
    rows = read_skip_tsv(tmp_path / "skipped.tsv")
    assert rows == [
        (A, "build_annotations", str(tmp_path / "shard.pkl"),
         f"{A}: frame count mismatch: skeleton {A} has 16 frames, video {A}.mp4 has 32 frames "
         f"({m1}; tolerance 5)"),
    ]  # fmt: skip


def test_manifests_read_and_malformed_ones_refused(tmp_path, capsys):
    m = manifest(tmp_path / "a.tsv", **{A: 8, B: 16})
    assert read_video_manifests([m]) == {A: (8, m), B: (16, m)}
    (tmp_path / "bad.tsv").write_text("sample\tstage\tfile\treason\n")
    assert build(tmp_path, [coco_pose(A)], "--video-manifests", str(tmp_path / "bad.tsv")) == 1
    assert f"{tmp_path / 'bad.tsv'}: not a compress manifest" in capsys.readouterr().err
    other = manifest(tmp_path / "b.tsv", **{A: 9})
    with pytest.raises(BadSampleError, match=f"{A} has 9 frames here but 8 in {m}"):
        read_video_manifests([m, other])


# --------------------------------------------------------------------------------------------
# skeletons without a single valid joint
# --------------------------------------------------------------------------------------------


def test_has_valid_joints():
    pose = coco_pose(A)
    assert has_valid_joints(pose)
    assert not has_valid_joints(dict(pose, keypoint_score=np.zeros((1, 4, 17), np.float32)))
    assert not has_valid_joints(dict(pose, keypoint=np.zeros((1, 4, 17, 2), np.float32)))
    one = np.zeros((1, 4, 17, 2), np.float32)
    one[0, 3, 16] = (0.0, 7.0)  # a single joint with one non-zero coordinate and a score
    assert has_valid_joints(dict(pose, keypoint=one))


def test_all_zero_skeleton_is_a_bad_sample(tmp_path, capsys):
    zero_scores = kinect_pose(A, M=2, T=3)
    zero_scores["keypoint_score"][:] = 0  # every joint untracked
    zero_kp = dict(coco_pose(B), keypoint=np.zeros((1, 4, 17, 2), np.float32))
    rc = build(tmp_path, [zero_scores, zero_kp, coco_pose(V), coco_pose("S001C001P004R001A004")])
    assert rc == 1
    assert (
        f"{tmp_path / 'shard.pkl'}: {A}: no valid joints (every joint of all 2 person(s) in all "
        "3 frames has position 0 or score 0)"
    ) in capsys.readouterr().err
    rc = build(tmp_path, [zero_scores, zero_kp, coco_pose(V), coco_pose("S001C001P004R001A004")],
               "--on-bad-sample", "skip", "--skipped-out", str(tmp_path / "s.tsv"))  # fmt: skip
    assert rc == 0
    names = [a["frame_dir"] for a in load_pickle(tmp_path / "ann.pkl")["annotations"]]
    assert names == [V, "S001C001P004R001A004"]  # sorted by name
    rows = read_skip_tsv(tmp_path / "s.tsv")
    assert [(r[0], r[1]) for r in rows] == [(A, "build_annotations"), (B, "build_annotations")]
    assert all("no valid joints" in r[3] for r in rows)


def test_duplicate_whose_first_copy_is_bad_leaves_no_copy(tmp_path):
    bad = dict(coco_pose(A), total_frames=9)
    rc = build(tmp_path, [bad, coco_pose(A), coco_pose(B), coco_pose(V)], "--on-bad-sample",
               "skip", "--skipped-out", str(tmp_path / "s.tsv"))  # fmt: skip
    assert rc == 0
    assert load_pickle(tmp_path / "ann.pkl")["split"] == {"xsub_train": [B], "xsub_val": [V]}
    rows = read_skip_tsv(tmp_path / "s.tsv")
    assert [r[0] for r in rows] == [A, A]
    assert "total_frames 9" in rows[0][3]
    assert f"duplicate sample (also in {tmp_path / 'shard.pkl'})" in rows[1][3]


# --------------------------------------------------------------------------------------------
# empty splits
# --------------------------------------------------------------------------------------------


def test_empty_val_split_warns(tmp_path, capsys):
    assert build(tmp_path, [coco_pose(A), coco_pose(B)]) == 0
    err = capsys.readouterr().err
    assert "rgbpose build-annotations: warning: split xsub_val is empty" in err
    assert load_pickle(tmp_path / "ann.pkl")["split"] == {"xsub_train": [A, B], "xsub_val": []}


def test_empty_train_split_is_an_error(tmp_path, capsys):
    bad = dict(coco_pose(A), keypoint_score=np.zeros((1, 4, 17), np.float32))
    rc = build(tmp_path, [bad, coco_pose(V)], "--on-bad-sample", "skip")
    assert rc == 1
    err = capsys.readouterr().err
    assert (
        "rgbpose build-annotations: error: split xsub_train is empty: nothing to train "
        "(1 sample(s) annotated, 0 skipped by earlier stages, 1 at this stage)"
    ) in err
    assert f"skipped {A} (build_annotations)" in err  # why it is empty
    assert not (tmp_path / "ann.pkl").exists()


# --------------------------------------------------------------------------------------------
# progress lines
# --------------------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stage_progress_lines_and_summary():
    out = io.StringIO()
    with StageProgress("compress", 3, out) as prog:
        prog.update(A, "ok", 1.23)
        prog.update(B, "skipped", 0.04)
        prog.update(V, "ok", 12.6)
    lines = out.getvalue().splitlines()
    assert lines[:3] == [
        f"compress 1/3 {A} ok (1.2 s)",
        f"compress 2/3 {B} skipped (0.0 s)",
        f"compress 3/3 {V} ok (13 s)",
    ]
    assert re.fullmatch(r"compress: 2 ok, 1 skipped in 0\.\d s", lines[3])
    assert len(lines) == 4
    with pytest.raises(ValueError, match="status must be"):
        prog.update(A, "done", 1.0)


def test_stage_progress_failed_count_and_tty_bar():
    out = _Tty()
    prog = StageProgress("denoise", 2, out)
    prog.update(A, "ok", 0.1)
    prog.update(B, "failed", 0.1)
    assert prog.close().startswith("denoise: 1 ok, 0 skipped, 1 failed in ")
    # on a terminal the tqdm bar replaces the per-sample lines; the summary is still printed
    assert f"denoise 1/2 {A}" not in out.getvalue()
    assert "denoise: 1 ok, 0 skipped, 1 failed in " in out.getvalue()
    assert format_seconds(312.4) == "312 s" and format_seconds(9.94) == "9.9 s"


def test_denoise_cli_progress(tmp_path, capsys):
    good = coco_pose(A, T=4)
    bad = dict(coco_pose(B), total_frames=9)
    dump_pickle([good, bad], tmp_path / "in.pkl")
    rc = denoise_cli([str(tmp_path / "in.pkl"), "-o", str(tmp_path / "out.pkl"),
                      "--on-bad-sample", "skip"])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"denoise 1/2 {A} ok {PROGRESS_LINE}", err[0])
    assert re.fullmatch(rf"denoise 2/2 {B} skipped {PROGRESS_LINE}", err[1])
    assert re.fullmatch(r"denoise: 1 ok, 1 skipped in \d+(\.\d)? s", err[2])
    assert denoise_cli([str(tmp_path / "in.pkl"), "-o", str(tmp_path / "o2.pkl")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"denoise 2/2 {B} failed {PROGRESS_LINE}", err[1])
    assert err[2].startswith("denoise: 1 ok, 0 skipped, 1 failed in ")
    assert err[3].startswith(f"rgbpose denoise: error: {tmp_path / 'in.pkl'}: {B}: total_frames 9")


def test_extract_poses_cli_progress_and_fail_summary(tmp_path, capsys):
    (tmp_path / f"{A}.skeleton").write_text(SKELETON_TEXT)
    (tmp_path / f"{B}.skeleton").write_text("2\n")  # truncated
    args = ["--backend", "kinect", str(tmp_path / f"{A}.skeleton"), str(tmp_path / f"{B}.skeleton")]
    assert poses_cli([*args, "-o", str(tmp_path / "p.pkl")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"extract-poses 1/2 {A} ok {PROGRESS_LINE}", err[0])
    assert re.fullmatch(rf"extract-poses 2/2 {B} failed {PROGRESS_LINE}", err[1])
    assert err[2].startswith("extract-poses: 1 ok, 0 skipped, 1 failed in ")
    assert err[3].startswith(f"rgbpose extract-poses: error: {tmp_path / B}.skeleton: ")


# --------------------------------------------------------------------------------------------
# compress: progress lines and stale temp files of this shard's outputs
# --------------------------------------------------------------------------------------------


def test_compress_removes_stale_temps_of_its_shard_only(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    make_video(raw / f"{A}_rgb.avi", 64, 48, frames=3)
    (raw / f"{V}_rgb.avi").write_bytes(b"")  # bad: skipped, but still this shard's output name
    out = tmp_path / "videos"
    out.mkdir()
    ours = [out / f".{A}.mp4.k2x_9q0z.mp4", out / f".{V}.mp4.abcdefgh.mp4"]
    theirs = out / f".{B}.mp4.abcdefgh.mp4"  # another shard's video, maybe being written now
    keep = [theirs, out / f".{A}.mp4.backup.mp4", out / f"{A}.mp4.abcdefgh.mp4", out / ".hidden"]
    for f in ours + keep:
        f.write_bytes(b"partial")
    rc = compress_cli([str(raw / f"{A}_rgb.avi"), str(raw / f"{V}_rgb.avi"), "--out-dir",
                       str(out), "--manifest", str(tmp_path / "m.tsv"), "--on-bad-sample",
                       "skip"])  # fmt: skip
    assert rc == 0
    assert not any(f.exists() for f in ours)
    assert all(f.exists() for f in keep)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{A}.mp4"] + [f.name for f in keep])
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [f"compress: removed {f} (temp file of an interrupted run)" for f in ours]
    assert re.fullmatch(rf"compress 1/2 {A} ok {PROGRESS_LINE}", err[2])
    assert re.fullmatch(rf"compress 2/2 {V} skipped {PROGRESS_LINE}", err[3])
    assert re.fullmatch(r"compress: 1 ok, 1 skipped in \d+(\.\d)? s", err[4])


def test_remove_stale_shard_temps_age_and_links(tmp_path):
    name = f"{A}.mp4"
    old, new = tmp_path / f".{name}.aaaaaaaa.mp4", tmp_path / f".{name}.bbbbbbbb.mp4"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    link = tmp_path / f".{name}.cccccccc.mp4"
    link.symlink_to(old)
    assert remove_stale_shard_temps(tmp_path, [name], max_age_s=3600) == [old]
    assert new.exists() and link.is_symlink()
    assert remove_stale_shard_temps(tmp_path, [tmp_path / name]) == [new]
    assert remove_stale_shard_temps(tmp_path / "missing", [name]) == []


def test_remove_stale_shard_temps_matches_atomic_path_naming(tmp_path):
    # writers "killed" inside atomic_path: their temp files stay until the block exits
    ours, theirs = atomic_path(tmp_path / f"{A}.mp4"), atomic_path(tmp_path / f"{B}.mp4")
    tmp_a, tmp_b = ours.__enter__(), theirs.__enter__()
    assert tmp_a.exists() and tmp_b.exists()
    assert remove_stale_shard_temps(tmp_path, [f"{A}.mp4"]) == [tmp_a]
    assert tmp_b.exists()
    for cm in (ours, theirs):
        assert cm.__exit__(ValueError, ValueError("killed"), None) is False
    assert list(tmp_path.iterdir()) == []
