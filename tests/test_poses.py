"""extract-poses: kinect (hand-written file), ONNX (exported model), mediapipe (real clip)."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from rgbpose.io import BadSampleError, load_pickle, read_skip_tsv
from rgbpose.preprocess.compress import compress_video
from rgbpose.preprocess.poses import (
    OnnxConfig,
    OnnxPoseEstimator,
    cli,
    decode_onnx_output,
    extract_kinect,
    extract_mediapipe,
    extract_onnx,
    letterbox,
    nms,
)

REAL_CLIP = Path("/work/shared/data/real/ntu_sample.avi")
NAME = "S001C001P001R001A050"


def joint_line(body: int, t: int, v: int) -> str:
    """x y z depthX depthY colorX colorY oW oX oY oZ trackingState, values easy to predict."""
    x, y, z = body + v / 100, t + v / 50, 3 + body
    cx, cy = 100 * body + v + 0.5, 10 * t + v
    return f"{x} {y} {z} 250.1 200.2 {cx} {cy} 0.5 0 0.5 0 {v % 3}"


def body_block(body_id: str, body: int, t: int) -> list[str]:
    return [f"{body_id} 0 1 1 1 1 0 0.1 -0.2 2", "25"] + [joint_line(body, t, v) for v in range(25)]


# 4 frames: body A (72057594037931101) in frames 0-2, body B only in frame 1, frame 3 empty.
A_ID, B_ID = "72057594037931101", "72057594037931102"
SKELETON_TEXT = (
    "\n".join(
        ["4"]
        + ["1", *body_block(A_ID, 1, 0)]
        + ["2", *body_block(B_ID, 2, 1), *body_block(A_ID, 1, 1)]
        + ["1", *body_block(A_ID, 1, 2)]
        + ["0"]
    )
    + "\n"
)


def test_kinect_two_bodies_parsed_exactly(tmp_path):
    f = tmp_path / f"{NAME}.skeleton"
    f.write_text(SKELETON_TEXT)
    d = extract_kinect(f)
    assert d["frame_dir"] == NAME and d["layout"] == "ntu25"
    assert d["img_shape"] == d["original_shape"] == (1080, 1920)
    assert d["total_frames"] == 4 and d["body_ids"] == [A_ID, B_ID]
    np.testing.assert_array_equal(d["present"], [[1, 1, 1, 0], [0, 1, 0, 0]])
    assert d["keypoint"].shape == (2, 4, 25, 2) and d["keypoint"].dtype == np.float32
    v = np.arange(25)
    for m, body, frames in ((0, 1, (0, 1, 2)), (1, 2, (1,))):
        for t in frames:
            np.testing.assert_allclose(d["keypoint"][m, t, :, 0], 100 * body + v + 0.5)
            np.testing.assert_allclose(d["keypoint"][m, t, :, 1], 10 * t + v)
            np.testing.assert_allclose(d["keypoint3d"][m, t, :, 0], body + v / 100, rtol=1e-6)
            np.testing.assert_allclose(d["keypoint3d"][m, t, :, 1], t + v / 50, rtol=1e-6)
            np.testing.assert_allclose(d["keypoint3d"][m, t, :, 2], 3 + body)
            np.testing.assert_array_equal(d["keypoint_score"][m, t], [0.0, 0.5, 1.0] * 8 + [0.0])
    absent = ~d["present"]
    assert not d["keypoint"][absent].any() and not d["keypoint_score"][absent].any()
    assert not d["keypoint3d"][absent].any()


def test_kinect_img_shape_override(tmp_path):
    f = tmp_path / f"{NAME}.skeleton"
    f.write_text(SKELETON_TEXT)
    assert extract_kinect(f, img_shape=(240, 320))["img_shape"] == (240, 320)


def _malformed(kind: str) -> str:
    lines = SKELETON_TEXT.splitlines()
    if kind == "joint_count":
        lines[3] = "24"  # file line 4: joint count of body A in frame 0
        return "\n".join(lines)
    if kind == "non_numeric":
        lines[5] = lines[5].replace("250.1", "abc")  # file line 6: joint 1 of body A, frame 0
        return "\n".join(lines)
    return "\n".join(lines[:40])  # truncated inside frame 1


@pytest.mark.parametrize(
    "kind, message",
    [
        ("joint_count", "line 4: expected 25 joints"),
        ("non_numeric", "line 6: non-numeric"),
        ("truncated", "truncated"),
    ],
)
def test_kinect_malformed_names_file_and_line(tmp_path, kind, message):
    f = tmp_path / f"{NAME}.skeleton"
    f.write_text(_malformed(kind))
    with pytest.raises(BadSampleError) as ei:
        extract_kinect(f)
    assert ei.value.path == str(f) and message in ei.value.problem


@pytest.mark.parametrize("text", ["0\n", "3\n0\n0\n0\n"])
def test_kinect_no_person(tmp_path, text):
    f = tmp_path / f"{NAME}.skeleton"
    f.write_text(text)
    with pytest.raises(BadSampleError, match="no person"):
        extract_kinect(f)


def test_cli_kinect_skip_policy(tmp_path, capsys):
    d = tmp_path / "raw"
    d.mkdir()
    good, bad = "S001C001P001R001A001", "S001C001P001R001A002"
    (d / f"{good}.skeleton").write_text(SKELETON_TEXT)
    (d / f"{bad}.skeleton").write_text(_malformed("non_numeric"))
    (d / "ignored.txt").write_text("x")
    names = tmp_path / "names.txt"
    names.write_text(f"{good}\n{bad}\nS001C001P001R001A003\n")  # the last one has no file
    out = tmp_path / "poses.pkl"
    rc = cli(["--backend", "kinect", str(d), "-o", str(out), "--names-file", str(names),
              "--img-shape", "240", "320", "--on-bad-sample", "skip",
              "--skipped", str(tmp_path / "s.tsv")])  # fmt: skip
    assert rc == 0
    poses = load_pickle(out)
    assert [p["frame_dir"] for p in poses] == [good] and poses[0]["img_shape"] == (240, 320)
    rows = read_skip_tsv(tmp_path / "s.tsv")
    assert [(r[0], r[1]) for r in rows] == [
        (bad, "extract_poses"),
        ("S001C001P001R001A003", "extract_poses"),
    ]
    assert "line 6" in rows[0][3]
    assert "extracted poses of 1 video(s)" in capsys.readouterr().out
    rc = cli(["--backend", "kinect", str(d / f"{bad}.skeleton"), "-o", str(tmp_path / "x.pkl")])
    assert rc == 1 and f"{bad}.skeleton: line 6" in capsys.readouterr().err
    assert not (tmp_path / "x.pkl").exists()


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------

S = 64  # model input size


def _detection(x1, y1, x2, y2, score, base):
    """One output row: box, score, 17 keypoints (base + j, base + 2j, 0.9 - j/100)."""
    j = np.arange(17)
    kps = np.stack([base + j, base + 2 * j, 0.9 - j / 100], axis=1)
    return np.concatenate([[x1, y1, x2, y2, score], kps.ravel()]).astype(np.float32)


ROWS = np.stack(
    [
        _detection(4, 20, 20, 40, 0.8, 10.0),  # second by score
        _detection(30, 18, 60, 46, 0.95, 30.0),  # best
        _detection(0, 16, 10, 30, 0.3, 5.0),  # below the 0.5 threshold
    ]
)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    import torch

    class FixedPose(torch.nn.Module):
        """Returns the same three detections for any image (the image only enters as 0 * x)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("rows", torch.from_numpy(ROWS)[None])

        def forward(self, x):
            return self.rows + 0.0 * x[:, :1, :1, :1].sum()

    path = tmp_path_factory.mktemp("onnx") / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            FixedPose(), torch.zeros(1, 3, S, S), str(path), opset_version=17, dynamo=False,
            input_names=["images"], output_names=["poses"],
        )  # fmt: skip
    return path


def _make_mp4(path: Path, w: int, h: int, frames: int) -> Path:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc=size={w}x{h}:rate=30", "-frames:v", str(frames), "-c:v", "libx264",
         "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def test_letterbox_geometry():
    frame = np.full((48, 96, 3), 200, np.uint8)
    x, lb = letterbox(frame, (S, S))
    # r = min(64/48, 64/96) = 2/3 -> 64 x 32 image, 16 rows of padding above and below
    assert lb == (pytest.approx(2 / 3), 0, 16) and x.shape == (1, 3, S, S)
    assert x[0, 0, 15, 0] == pytest.approx(114 / 255) and x[0, 0, 16, 0] == pytest.approx(200 / 255)
    assert x[0, 0, 48, 0] == pytest.approx(114 / 255) and x[0, 0, 47, 0] == pytest.approx(200 / 255)


def test_onnx_backend_undoes_letterbox(onnx_model, tmp_path):
    video = _make_mp4(tmp_path / f"{NAME}.mp4", 96, 48, 3)
    d = extract_onnx(video, OnnxPoseEstimator(onnx_model))
    assert d["frame_dir"] == NAME and d["layout"] == "coco17" and d["img_shape"] == (48, 96)
    assert d["keypoint"].shape == (2, 3, 17, 2) and d["present"].all()
    j = np.arange(17)
    # slot 0 = best detection (base 30), slot 1 = base 10; x = x_in * 1.5, y = (y_in - 16) * 1.5
    for slot, base in ((0, 30.0), (1, 10.0)):
        for t in range(3):
            np.testing.assert_allclose(d["keypoint"][slot, t, :, 0], (base + j) * 1.5, rtol=1e-6)
            np.testing.assert_allclose(
                d["keypoint"][slot, t, :, 1], (base + 2 * j - 16) * 1.5, rtol=1e-6
            )
            np.testing.assert_allclose(d["keypoint_score"][slot, t], 0.9 - j / 100, rtol=1e-6)


def test_onnx_no_detection_above_threshold_is_bad_sample(onnx_model, tmp_path):
    video = _make_mp4(tmp_path / f"{NAME}.mp4", 96, 48, 2)
    with pytest.raises(BadSampleError, match="no person detected in any of the 2 frames"):
        extract_onnx(video, OnnxPoseEstimator(onnx_model, OnnxConfig(det_thr=0.99)))


def test_mediapipe_no_person_is_bad_sample(tmp_path):
    video = _make_mp4(tmp_path / f"{NAME}.mp4", 64, 64, 2)  # a test pattern, nobody in it
    with pytest.raises(BadSampleError, match="no person detected") as ei:
        extract_mediapipe(video)
    assert ei.value.path == str(video)


def test_onnx_cli(onnx_model, tmp_path):
    video = _make_mp4(tmp_path / f"{NAME}.mp4", 96, 48, 2)
    out = tmp_path / "p.pkl"
    assert cli(["--backend", "onnx", str(video), "-o", str(out), "--model", str(onnx_model),
                "--det-thr", "0.9"]) == 0  # fmt: skip
    (d,) = load_pickle(out)
    assert d["keypoint"].shape == (1, 2, 17, 2)  # only the 0.95 detection passes 0.9
    np.testing.assert_allclose(d["keypoint"][0, 0, 0], [45.0, (30 - 16) * 1.5])


def test_decode_yolov8_transposed_centre_boxes_and_nms():
    row = _detection(0, 0, 0, 0, 0.9, 1.0)
    row[:4] = [50, 40, 20, 10]  # cx cy w h
    raw = np.stack([row, row * 0 + row], axis=1)[None]  # [1, 56, 2]
    boxes, scores, kps = decode_onnx_output(raw)
    np.testing.assert_allclose(boxes, [[40, 35, 60, 45]] * 2)
    assert kps.shape == (2, 17, 3) and kps[0, 3, 1] == pytest.approx(7.0)
    assert list(nms(boxes, np.array([0.5, 0.9]), 0.65)) == [1]  # duplicates collapse
    far = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    # IoU of the first two = 81 / 119 = 0.68 >= 0.65 -> suppressed
    assert list(nms(far, np.array([0.9, 0.8, 0.7]), 0.65)) == [0, 2]
    with pytest.raises(ValueError, match="must be"):
        decode_onnx_output(np.zeros((1, 10, 7)))


# ---------------------------------------------------------------------------------------------
# mediapipe on the real NTU clip
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_CLIP.exists(), reason="real NTU clip not available")
def test_mediapipe_on_real_clip(tmp_path):
    video = tmp_path / "S001C001P001R001A001.mp4"
    assert compress_video(REAL_CLIP, video).frames == 72
    d = extract_mediapipe(video)
    assert d["img_shape"] == (540, 960) and d["keypoint"].shape == (1, 72, 17, 2)
    present = d["present"][0]
    assert present.mean() >= 0.9
    kp, sc = d["keypoint"][0][present], d["keypoint_score"][0][present]
    conf = sc > 0.5
    assert conf.mean() > 0.5
    x, y = kp[..., 0][conf], kp[..., 1][conf]
    assert (x >= 0).all() and (x < 960).all() and (y >= 0).all() and (y < 540).all()
    shoulders_y = kp[:, [5, 6], 1].mean(axis=1)
    hips_y = kp[:, [11, 12], 1].mean(axis=1)
    assert (shoulders_y < hips_y).mean() >= 0.95
    # the person's left shoulder is on the image right when they face the camera (NTU C001)
    assert (kp[:, 5, 0] > kp[:, 6, 0]).mean() >= 0.9
