"""Datasets: item contract shapes, hand-computed pipeline outputs, collate, on-device heatmaps."""

import dataclasses
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from rgbpose.data import datasets
from rgbpose.data import transforms as tf
from rgbpose.data.batch import collate, heatmaps_to_device
from rgbpose.data.config import PipelineConfig, TestViews
from rgbpose.data.sampling import uniform_sample
from rgbpose.data.video import read_frames
from rgbpose.io import BadSampleError, dump_pickle

T = 20  # frames per video
VH, VW = 48, 64  # video size; annotations refer to twice that (96 x 128)
NAMES = ["S001C001P001R001A001", "S001C001P002R001A002", "S001C002P001R001A026"]

BASE = PipelineConfig(
    modality="pose",
    pose_clip_len=8,
    rgb_clip_len=4,
    rgb_train_size=32,
    rgb_test_size=40,
    pose_train_size=16,
    pose_test_size=20,
)
#: test views of these tests: 2 clips, doubled by flip unless a test says flip=False
VIEWS = TestViews(num_clips=2, flip=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_video(path, frames):
    """H.264 (GOP 8) of uint8 RGB ``frames`` [T, H, W, 3]."""
    h, w = frames.shape[1:3]
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
        "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "30", "-i", "-", "-c:v", "libx264",
        "-pix_fmt", "yuv420p", "-g", "8", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, input=frames.tobytes(), check=True)


def _pose(points, m=1):
    """Static keypoints [m, T, 17, 2] in annotation pixels; given joints get score 0.9."""
    kp = np.zeros((m, T, 17, 2), np.float16)
    sc = np.zeros((m, T, 17), np.float16)
    for p in range(m):
        for j, xy in points.items():
            kp[p, :, j] = np.asarray(xy) + 4 * p
            sc[p, :, j] = 0.9
    return kp, sc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    yy, xx = np.mgrid[0:VH, 0:VW]
    annos = []
    poses = [
        _pose({0: (32, 16), 5: (96, 80)}),  # box inside the frame (hand-computed below)
        _pose({0: (4, 4), 5: (60, 60), 11: (30, 50)}, m=2),  # box leaves the frame
        _pose({0: (40, 30), 6: (100, 90), 12: (70, 60)}),
    ]
    for i, (name, (kp, sc)) in enumerate(zip(NAMES, poses)):
        frames = np.stack(
            [
                np.stack([(xx * 3 + 10 * k) % 256, (yy * 5 + 40 * i) % 256, 128 + 0 * xx], -1)
                for k in range(T)
            ]
        ).astype(np.uint8)
        _write_video(root / f"{name}.mp4", frames)
        annos.append(
            {
                "frame_dir": name,
                "label": int(name[-3:]) - 1,
                "img_shape": (2 * VH, 2 * VW),
                "original_shape": (2 * VH, 2 * VW),
                "total_frames": T,
                "keypoint": kp,
                "keypoint_score": sc,
                "layout": "coco17",
            }
        )
    ann = {"split": {"xsub_train": NAMES, "xsub_val": NAMES[:2]}, "annotations": annos}
    return ann, root


def _cfg(**kw):
    return dataclasses.replace(BASE, **kw)


def build_dataset(cfg, *args, flip=True, **kwargs):
    return datasets.build_dataset(cfg, *args, views=dataclasses.replace(VIEWS, flip=flip), **kwargs)


# ------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize(
    "modality, mode, shapes",
    [
        ("pose", "train", {"heatmap_imgs": (1, 17, 8, 16, 16)}),
        ("pose", "val", {"heatmap_imgs": (1, 17, 8, 20, 20)}),
        ("pose", "test", {"heatmap_imgs": (4, 17, 8, 20, 20)}),
        ("rgb", "train", {"imgs": (1, 3, 4, 32, 32)}),
        ("rgb", "test", {"imgs": (4, 3, 4, 40, 40)}),
        ("rgbpose", "train", {"imgs": (1, 3, 4, 32, 32), "heatmap_imgs": (1, 17, 8, 8, 8)}),
        ("rgbpose", "val", {"imgs": (1, 3, 4, 40, 40), "heatmap_imgs": (1, 17, 8, 10, 10)}),
        ("rgbpose", "test", {"imgs": (4, 3, 4, 40, 40), "heatmap_imgs": (4, 17, 8, 10, 10)}),
    ],
)
def test_item_contract_shapes(data, modality, mode, shapes):
    ann, root = data
    ds = build_dataset(_cfg(modality=modality), ann, "xsub_train", mode, video_dir=root)
    assert len(ds) == 3
    item = ds[1]
    assert item["label"] == 1 and item["frame_dir"] == NAMES[1]
    assert set(item) == {"label", "frame_dir", *shapes}
    for key, shape in shapes.items():
        assert tuple(item[key].shape) == shape and item[key].dtype == torch.float32
    batch = collate([ds[0], ds[2]])
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [0, 25]
    assert batch["frame_dir"] == [NAMES[0], NAMES[2]]
    for key, shape in shapes.items():
        assert tuple(batch[key].shape) == (2, *shape)


def test_limb_channels_and_split_selection(data):
    ann, root = data
    ds = build_dataset(_cfg(with_limb=True), ann, "xsub_val", "val")
    assert len(ds) == 2 and ds.names == NAMES[:2]
    assert tuple(ds[0]["heatmap_imgs"].shape) == (1, 34, 8, 20, 20)
    with pytest.raises(ValueError, match="xsub_val"):
        build_dataset(BASE, ann, "xview_train", "val")


# ------------------------------------------------------------------------------ values
def test_pose_test_pipeline_hand_computed(data):
    # Joints 0 at (32, 16) and 5 at (96, 80): box x 24..104, y 8..88 (80 px, see transforms
    # tests), shifted (8, 8) and (72, 72), resized 80 -> 20: (2, 2) and (18, 18).
    ann, _ = data
    hm = build_dataset(BASE, ann, None, "test")[0]["heatmap_imgs"].numpy()
    assert hm.shape == (4, 17, 8, 20, 20)
    for view in range(2):
        assert hm[view, 0, :, 2, 2] == pytest.approx(np.full(8, 0.9), rel=1e-3)
        assert hm[view, 5, :, 18, 18] == pytest.approx(np.full(8, 0.9), rel=1e-3)
        assert hm[view, 0, :, 2, 3] == pytest.approx(np.full(8, 0.9 * np.exp(-1 / 0.72)), rel=1e-3)
        # Flipped views: column 19 - x, left shoulder (5) shown as the right one (6).
        assert hm[view + 2, 0, :, 2, 17] == pytest.approx(np.full(8, 0.9), rel=1e-3)
        assert hm[view + 2, 6, :, 18, 1] == pytest.approx(np.full(8, 0.9), rel=1e-3)
        assert hm[view + 2, 5].max() == 0
    assert hm[:, [1, 2, 3, 4, 7]].max() == 0


def test_rgbpose_test_pipeline_hand_computed(data):
    # Keypoints scaled to the 48x64 frames: (16, 8) and (48, 40); box (12, 4, 52, 44), 40 px,
    # so resizing to 40 is the identity and the frames are plain crops.
    ann, root = data
    cfg = _cfg(modality="rgbpose")
    ds = build_dataset(cfg, ann, None, "test", video_dir=root, flip=False)
    item = ds[0]
    imgs, hm = item["imgs"].numpy(), item["heatmap_imgs"].numpy()
    inds = uniform_sample(T, 4, 2, test_mode=True)  # the RGB clips of the two views
    frames = read_frames(root / f"{NAMES[0]}.mp4", inds)[:, 4:44, 12:52]
    expected = tf.normalize(frames).reshape(2, 4, 40, 40, 3).transpose(0, 4, 1, 2, 3)
    np.testing.assert_allclose(imgs, expected, atol=1e-6)
    # Heatmaps at 1/4: canvas 10, joints at (1, 1) and (9, 9).
    assert hm.shape == (2, 17, 8, 10, 10)
    assert hm[:, 0, :, 1, 1] == pytest.approx(np.full((2, 8), 0.9), rel=1e-3)
    assert hm[:, 5, :, 9, 9] == pytest.approx(np.full((2, 8), 0.9), rel=1e-3)


def test_rgbpose_box_outside_frame_is_zero_padded(data):
    # Sample 1: frame coords x, y in 2..32 (person 2 shifted by +2); centre 17, half side
    # 15 * 1.25 = 18.75 -> box (-1, -1, 35, 35): row/column -1 is zero padding, and the top row
    # and left column stay exactly black through the 36 -> 40 bilinear resize.
    ann, root = data
    ds = build_dataset(_cfg(modality="rgb"), ann, None, "test", video_dir=root, flip=False)
    imgs = ds[1]["imgs"].numpy()
    black = (0 - np.array(tf.RGB_MEAN)) / np.array(tf.RGB_STD)
    np.testing.assert_allclose(imgs[:, :, :, 0, :], np.broadcast_to(black[:, None, None], (2, 3, 4, 40)), atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(imgs[:, :, :, :, 0], np.broadcast_to(black[:, None, None], (2, 3, 4, 40)), atol=1e-5)  # fmt: skip
    assert np.abs(imgs[:, :, :, 20, 20] - black[None, :, None]).min() > 0.1


def test_rgb_flip_views_mirror_the_originals(data):
    ann, root = data
    imgs = build_dataset(_cfg(modality="rgb"), ann, None, "test", video_dir=root)[2]["imgs"]
    assert imgs.shape[0] == 4
    torch.testing.assert_close(imgs[2:], imgs[:2].flip(-1))


def test_test_items_deterministic_train_items_follow_torch_seed(data):
    ann, root = data
    cfg = _cfg(modality="rgbpose")
    test_ds = build_dataset(cfg, ann, None, "test", video_dir=root)
    torch.testing.assert_close(test_ds[2]["imgs"], test_ds[2]["imgs"])

    def draw(seed):
        torch.manual_seed(seed)
        ds = build_dataset(cfg, ann, None, "train", video_dir=root)
        return [ds[i]["heatmap_imgs"] for i in (0, 2, 0)]

    a, b, c = draw(0), draw(0), draw(1)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert not torch.equal(a[0], a[2])  # the stream moves on between items


# ------------------------------------------------------------------------------ on device
@pytest.mark.parametrize("modality", ["pose", "rgbpose"])
def test_heatmaps_to_device_equals_cpu_pipeline(data, modality):
    ann, root = data
    cfg = _cfg(modality=modality, with_limb=True)
    cpu = build_dataset(cfg, ann, None, "test", video_dir=root)
    dev = build_dataset(
        dataclasses.replace(cfg, heatmaps_on_device=True), ann, None, "test", video_dir=root
    )
    item = dev[1]
    assert tuple(item["hm_keypoint"].shape) == (2, 2, 8, 17, 2)  # flips are added on device
    assert tuple(item["hm_keypoint_score"].shape) == (2, 2, 8, 17)
    batch = collate([dev[1], dev[0]])
    out = heatmaps_to_device(batch, dataclasses.replace(cfg, heatmaps_on_device=True), "cpu")
    expected = collate([cpu[1], cpu[0]])["heatmap_imgs"]
    assert out["heatmap_imgs"].shape == expected.shape
    torch.testing.assert_close(out["heatmap_imgs"], expected, atol=1e-5, rtol=0)


def test_keypoints_padded_to_max_persons(data):
    ann, _ = data
    cfg = _cfg(heatmaps_on_device=True, max_persons=3)
    item = build_dataset(cfg, ann, None, "val", flip=False)[0]
    assert tuple(item["hm_keypoint"].shape) == (1, 3, 8, 17, 2)
    assert item["hm_keypoint_score"][0, 1:].abs().max() == 0  # one real person, two padded
    assert item["canvas_hw"] == (20, 20) and item["flip_views"] is False


# ------------------------------------------------------------------------------ errors
def test_missing_video_names_the_file(data, tmp_path):
    ann, _ = data
    ds = build_dataset(_cfg(modality="rgb"), ann, None, "train", video_dir=tmp_path)
    with pytest.raises(BadSampleError, match=rf"{NAMES[0]}\.mp4: video file not found"):
        ds[0]


def test_bad_annotation_shapes_name_sample_and_file(data, tmp_path):
    ann, _ = data
    bad = dict(ann["annotations"][0], keypoint=np.zeros((1, T, 17, 3), np.float16))
    path = tmp_path / "ann.pkl"
    dump_pickle({"split": {}, "annotations": [bad]}, path)
    # checked when the annotations are loaded, before any item
    with pytest.raises(BadSampleError, match=rf"ann\.pkl: sample {NAMES[0]}: keypoint shape"):
        build_dataset(BASE, path, None, "train")


def test_config_from_dict():
    cfg = PipelineConfig.from_dict({"modality": "pose", "crop_area": [0.5, 1.0]})
    assert cfg.crop_area == (0.5, 1.0) and cfg.pre_crop_size("pose") == 64
    assert cfg.pre_crop_size("rgb") == 256
    with pytest.raises(ValueError, match="unknown PipelineConfig key.*pose_clip_length"):
        PipelineConfig.from_dict({"pose_clip_length": 32})
    with pytest.raises(ValueError, match="modality"):
        PipelineConfig(modality="depth")


# ------------------------------------------------------------------------------ video
def test_read_frames_values_clamping_and_errors(data, tmp_path):
    _, root = data
    path = root / f"{NAMES[0]}.mp4"
    frames = read_frames(path, [3, 0, 3, 19, 22])
    assert frames.shape == (5, VH, VW, 3) and frames.dtype == np.uint8
    # Red at column 0 is 10 * frame index (up to H.264 loss); 22 is clamped to the last frame.
    np.testing.assert_allclose(frames[:, VH // 2, 0, 0], [30, 0, 30, 190, 190], atol=6)
    np.testing.assert_array_equal(frames[0], frames[2])
    np.testing.assert_array_equal(frames[3], frames[4])
    with pytest.raises(BadSampleError, match=r"out of range.*20 frames"):
        read_frames(path, [0, 25])  # beyond the 5-frame tolerance
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(BadSampleError, match=r"bad\.mp4: unreadable or corrupt video"):
        read_frames(bad, [0])
    bad.write_bytes(b"")
    with pytest.raises(BadSampleError, match=r"bad\.mp4: video file is empty"):
        read_frames(bad, [0])


def test_rgb_frames_decoded_through_frame_inds(data, monkeypatch):
    """Trimmed Kinect poses: pose frame t is video frame frame_inds[t]."""
    import rgbpose.data.datasets as dsm

    ann, root = data
    requested = []

    def spy(path, indices, **kw):
        requested.append(np.asarray(indices).copy())
        return read_frames(path, indices, **kw)

    monkeypatch.setattr(dsm, "read_frames", spy)
    base = {k: v for k, v in ann["annotations"][0].items()}
    short = dict(base, total_frames=10, keypoint=base["keypoint"][:, :10],
                 keypoint_score=base["keypoint_score"][:, :10])  # fmt: skip
    shifted = dict(short, frame_inds=np.arange(10, dtype=np.int32) + 7)
    cfg = _cfg(modality="rgbpose")
    for a in (short, shifted):
        build_dataset(cfg, {"split": {"s": [a["frame_dir"]]}, "annotations": [a]}, "s", "test",
                      root)[0]  # fmt: skip
    plain, mapped = requested
    np.testing.assert_array_equal(mapped, plain + 7)
