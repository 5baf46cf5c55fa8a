"""Pose/RGB transforms: compaction box, padded crop, resize, random resized crop, flip, normalise."""

import numpy as np
import pytest

from rgbpose.data import transforms as tf
from rgbpose.layouts import COCO17


def _kp(points):
    """[1, 1, len(points), 2] keypoints."""
    return np.array(points, dtype=np.float32)[None, None]


def test_compact_box_hand_computed():
    # Tight box x 20..60, y 30..50 (the (0, 0) joint is absent); centre (40, 40); half sides
    # 25 and 12.5 after 25% padding; hw_ratio 1 grows the height to 25 -> (15, 15, 65, 65).
    kp = _kp([[20, 30], [60, 50], [0, 0], [40, 45]])
    assert tf.compact_box(kp, (100, 100)) == (15, 15, 65, 65)
    res = {"keypoint": kp.copy(), "img_shape": (100, 100)}
    tf.pose_compact(res)
    assert res["img_shape"] == (50, 50)
    np.testing.assert_array_equal(res["keypoint"][0, 0], [[5, 15], [45, 35], [0, 0], [25, 30]])


def test_compact_box_truncates_toward_zero_and_may_leave_image():
    # x 2..22, y 2..22: centre 12, half 12.5 -> corners -0.5 and 24.5 -> int() gives 0 and 24.
    assert tf.compact_box(_kp([[2, 2], [22, 22]]), (30, 30)) == (0, 0, 24, 24)
    # x 1..41: centre 21, half 25 -> x from -4 to 46; y 10..30 squared to the same size.
    assert tf.compact_box(_kp([[1, 10], [41, 30]]), (40, 60)) == (-4, -5, 46, 45)
    # Without allow_imgpad the box is clipped to the image.
    box = tf.compact_box(_kp([[1, 10], [41, 30]]), (40, 60), allow_imgpad=False)
    assert box == (0, 0, 46, 40)


def test_compact_skips_small_boxes():
    kp = _kp([[20, 30], [29, 60]])  # 9 px wide < threshold 10
    assert tf.compact_box(kp, (100, 100)) is None
    res = {"keypoint": kp.copy(), "img_shape": (100, 100)}
    tf.pose_compact(res)
    assert res["img_shape"] == (100, 100)
    np.testing.assert_array_equal(res["keypoint"], kp)


def test_mm_compact_crops_frames_with_zero_padding():
    img = np.arange(40 * 60 * 3, dtype=np.int64).reshape(1, 40, 60, 3) % 251 + 1  # no zeros
    res = {
        "keypoint": _kp([[1, 10], [41, 30]]),
        "img_shape": (40, 60),
        "imgs": img.astype(np.uint8),
    }
    tf.pose_compact(res)  # box (-4, -5, 46, 45)
    out = res["imgs"]
    assert out.shape == (1, 50, 50, 3) and res["img_shape"] == (50, 50)
    np.testing.assert_array_equal(out[0, 5:45, 4:50], img[0, 0:40, 0:46])
    assert not out[0, :5].any() and not out[0, 45:].any() and not out[0, :, :4].any()
    np.testing.assert_array_equal(res["keypoint"][0, 0], [[5, 15], [45, 35]])


def test_scale_to_frames_and_resize_scale_keypoints():
    res = {
        "keypoint": _kp([[960, 540], [0, 0]]),
        "img_shape": (1080, 1920),
        "imgs": np.zeros((2, 540, 960, 3), np.uint8),
    }
    tf.scale_to_frames(res)
    assert res["img_shape"] == (540, 960)
    np.testing.assert_allclose(res["keypoint"][0, 0], [[480, 270], [0, 0]])
    tf.resize(res, (135, 480))  # x * 0.5, y * 0.25
    assert res["imgs"].shape == (2, 135, 480, 3) and res["img_shape"] == (135, 480)
    np.testing.assert_allclose(res["keypoint"][0, 0], [[240, 67.5], [0, 0]])


def test_resize_images_is_bilinear():
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[0, :, 1] = 200
    out = tf.resize_imgs(img, (2, 4))
    # cv2 bilinear with half-pixel centres: columns 0, 1/4*200... -> 0, 50, 150, 200.
    np.testing.assert_array_equal(out[0, 0, :, 0], [0, 50, 150, 200])
    assert tf.short_side_size((540, 960), 256) == (256, 455)


def test_random_resized_crop_box_ranges_and_fallback():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x1, y1, x2, y2 = tf.random_resized_crop_box((64, 64), rng)
        w, h = x2 - x1, y2 - y1
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
        # Area 0.56..1 of the image, aspect 3/4..4/3 (up to the rounding of w and h).
        assert 0.56 * 4096 - 2 * 64 <= w * h <= 4096
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    # A 10x100 strip cannot hold >= 90% of its area at aspect <= 4/3: centred square.
    box = tf.random_resized_crop_box((10, 100), rng, area_range=(0.9, 1.0))
    assert box == (45, 0, 55, 10)


def test_crop_moves_all_keypoints_and_images_together():
    img = np.arange(10 * 10, dtype=np.uint8).reshape(1, 10, 10, 1)
    res = {"keypoint": _kp([[5, 6], [0, 0]]), "imgs": img, "img_shape": (10, 10)}
    tf.crop(res, (2, 3, 8, 7))
    assert res["img_shape"] == (4, 6)
    np.testing.assert_array_equal(res["imgs"][0, :, :, 0], img[0, 3:7, 2:8, 0])
    np.testing.assert_array_equal(res["keypoint"][0, 0], [[3, 3], [-2, -3]])


def test_flip_mirrors_x_and_swaps_left_right():
    kp = np.zeros((1, 1, 17, 2), np.float32)
    score = np.zeros((1, 1, 17), np.float32)
    kp[0, 0, 0] = [10, 5]  # nose
    kp[0, 0, 5] = [12, 20]  # left shoulder
    kp[0, 0, 6] = [30, 21]  # right shoulder
    score[0, 0, [0, 5, 6]] = [0.9, 0.8, 0.7]
    img = np.zeros((1, 4, 64, 3), np.uint8)
    img[0, :, 0] = 255
    res = {"keypoint": kp, "keypoint_score": score, "img_shape": (64, 64), "imgs": img}

    class AlwaysFlip:
        def random(self):
            return 0.0

    tf.flip(res, AlwaysFlip(), flip_index=COCO17.flip_index)
    out, sc = res["keypoint"][0, 0], res["keypoint_score"][0, 0]
    np.testing.assert_array_equal(out[0], [54, 5])  # x -> 64 - x
    np.testing.assert_array_equal(out[5], [34, 21])  # old right shoulder, mirrored
    np.testing.assert_array_equal(out[6], [52, 20])  # old left shoulder, mirrored
    np.testing.assert_array_equal(out[1], [0, 0])  # absent joints stay at 0
    np.testing.assert_allclose(sc[[0, 5, 6]], [0.9, 0.7, 0.8])
    assert res["imgs"][0, :, 63].min() == 255 and res["imgs"][0, :, 0].max() == 0
    assert res["flip"] is True


def test_flip_probability_uses_generator():
    rng = np.random.default_rng(0)
    flips = [
        tf.flip({"img_shape": (4, 4)}, rng, flip_index=COCO17.flip_index)["flip"]
        for _ in range(400)
    ]
    assert 150 < sum(flips) < 250
    assert not tf.flip({"img_shape": (4, 4)}, rng, flip_index=(), flip_ratio=0.0)["flip"]


def test_normalize_values():
    imgs = np.array([[[[123.675 + 58.395, 116.28, 103.53 - 2 * 57.375]]]])
    np.testing.assert_allclose(tf.normalize(imgs)[0, 0, 0], [1.0, 0.0, -2.0], atol=1e-5)
    assert tf.normalize(imgs).dtype == np.float32


def test_rrc_rejects_bad_area():
    with pytest.raises(ValueError, match="area_range"):
        tf.random_resized_crop_box((10, 10), np.random.default_rng(0), area_range=(0.0, 1.0))


def test_normalize_channels_first_equals_normalize_then_moving_channels() -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (2, 3, 5, 7, 3), dtype=np.uint8)
    want = np.moveaxis(tf.normalize(imgs), -1, -4)
    got = tf.normalize_channels_first(imgs)
    assert got.shape == (2, 3, 3, 5, 7) and got.dtype == np.float32
    assert np.array_equal(got, want)  # the table lookup is bit-exact
    assert np.array_equal(tf.normalize_channels_first(imgs.astype(np.float32)), want)
    # hand-computed: level 0 of R is -123.675 / 58.395
    zero = tf.normalize_channels_first(np.zeros((1, 1, 1, 3), np.uint8))
    assert zero[0, 0, 0, 0] == np.float32(-123.675) * (np.float32(1) / np.float32(58.395))
