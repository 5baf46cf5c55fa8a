"""The DRSR data pipeline (rgbpose.data.drsr): sampling, FRP guidance, augmentation, items."""

import cv2
import numpy as np
import pytest
import torch

from rgbpose import synthetic as syn
from rgbpose.data import drsr
from rgbpose.data.batch import collate
from rgbpose.data.config import TestViews, pipeline_entry
from rgbpose.data.datasets import build_dataset
from rgbpose.io import BadSampleError
from rgbpose.preprocess import depth as dp

CFG = syn.SynthConfig(
    performers=(1,), cameras=(1,), replications=(1,), actions=(1, 58), frames=12, width=160,
    height=90,
)  # fmt: skip
NAMES = syn.sample_names(CFG)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """DRSR stores of CFG's two samples (RGB + depth) and a depth-only one of the first."""
    root = tmp_path_factory.mktemp("drsr")
    syn.synthesize(CFG, root / "raw", depth_dir=root / "depth")
    for name in NAMES:
        dp.build_store(name, root / "depth", root / "store", root / "raw", video_ext="_rgb.avi")
    dp.build_store(NAMES[0], root / "depth", root / "depth_only")
    return root


def _anns():
    return {
        "split": {"s": list(NAMES)},
        "annotations": [
            {"frame_dir": n, "label": i, "total_frames": 12, "img_shape": (90, 160)}
            for i, n in enumerate(NAMES)
        ],
    }


def _cfg(stores, **kw):
    return drsr.DRSRConfig(store_dir=str(stores / "store"), clip_len=8, frp_window=3, **kw)


# ---------------------------------------------------------------------------- sampling


def test_get_sl_short_video_repeats_indices():
    # segment i = [int(40 i / 64), max(int(40 i / 64) + 1, int(40 (i + 1) / 64)))
    sl = drsr.get_sl(40, 64)
    assert len(sl) == 64
    assert sl[:8] == [0, 0, 1, 1, 2, 3, 3, 4]
    assert sl[-1] == 39 and sl == sorted(sl) and set(sl) == set(range(40))


def test_get_sl_test_takes_segment_means():
    sl = drsr.get_sl(100, 64)
    # [0,1) [1,3) [3,4) [4,6) [6,7) [7,9) ... [98,100): int(mean)
    assert sl[:6] == [0, 1, 3, 4, 6, 7]
    assert sl[-1] == 98
    assert drsr.get_sl(64, 64) == list(range(64))
    assert drsr.get_sl(1, 4) == [0, 0, 0, 0]


def test_get_sl_train_draws_within_segments():
    rng = np.random.default_rng(0)
    draws = np.array([drsr.get_sl(100, 64, train=True, rng=rng) for _ in range(200)])
    lo = np.array([int(100 * i / 64) for i in range(64)])
    hi = np.maximum(lo + 1, [int(100 * (i + 1) / 64) for i in range(64)])
    assert (draws >= lo).all() and (draws < hi).all()
    assert set(draws[:, 1]) == {1, 2}  # a two-frame segment: both frames get drawn
    assert (draws[:, 0] == 0).all()
    short = np.array([drsr.get_sl(40, 64, train=True, rng=rng) for _ in range(20)])
    assert (short == drsr.get_sl(40, 64)).all()  # one-frame segments only
    with pytest.raises(ValueError, match="rng"):
        drsr.get_sl(10, 4, train=True)


# ---------------------------------------------------------------------------- values


def test_rank_pool_weights():
    np.testing.assert_array_equal(drsr.rank_pool_weights(10), [-9, -7, -5, -3, -1, 1, 3, 5, 7, 9])
    np.testing.assert_array_equal(drsr.rank_pool_weights(2), [-1, 1])
    assert drsr.rank_pool_weights(3).tolist() == [-2, 0, 2]
    assert drsr.rank_pool_weights(1).tolist() == [0] and drsr.rank_pool_weights(7).sum() == 0
    with pytest.raises(ValueError, match="n >= 1"):
        drsr.rank_pool_weights(0)


def test_normalise():
    x = np.array([0, 128, 255], np.uint8)
    np.testing.assert_allclose(drsr.normalize(x), [-0.99609375, 0.00390625, 0.99609375])
    assert drsr.normalize(x).dtype == np.float32


def test_jet_is_opencv_bgr():
    # JET at 0 is dark blue, at 255 dark red: OpenCV's BGR order, not converted
    np.testing.assert_array_equal(drsr.jet(np.array([[0, 255]], np.uint8)), [[[128, 0, 0],
                                                                             [0, 0, 128]]])  # fmt: skip
    d = np.random.default_rng(0).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    out = drsr.jet(d)
    assert out.shape == (3, 5, 7, 3)
    np.testing.assert_array_equal(out[1], cv2.applyColorMap(d[1], cv2.COLORMAP_JET))


def test_frp_guidance_on_hand_made_frames():
    # w = 2 (weights -1, +1): frame 1 adds a 4x4 block of 1 to an empty frame 0; frame 2 = 1
    clip = np.zeros((3, 3, 6, 6), np.float32)
    clip[:, 1:, 1:5, 1:5] = 1.0
    garr = drsr.frp_guidance(clip, window=2)
    assert garr.shape == (1, 3, 6, 6) and garr.dtype == np.float32
    g = 0.2989 + 0.587 + 0.114  # grey of a min-max normalised all-ones block
    # window 0 (frames 0-1) lands at index w - 1 = 1: D = g on the block; S: the block,
    # eroded 2x2 (rows/cols 2..4), dilated 3x3 (1..5), normalised to 1; garr = (D + S) * S
    want = np.zeros((6, 6), np.float32)
    want[1:6, 1:6] = 1.0
    want[1:5, 1:5] = g + 1.0
    np.testing.assert_allclose(garr[0, 1], want, rtol=1e-6)
    assert not garr[0, 0].any()  # the w - 1 shifted-in zero frames
    assert not garr[0, 2].any()  # window 1 (frames 1-2) does not change: D = S = 0


def test_frp_guidance_window_ten_matches_the_formula():
    rng = np.random.default_rng(1)
    clip = rng.normal(size=(3, 12, 8, 8)).astype(np.float32)
    garr = drsr.frp_guidance(clip, window=10)
    assert not garr[0, :9].any()
    for i in range(3):  # windows 0..2 at 9..11
        re = np.maximum(
            np.einsum("j,cjhw->chw", drsr.rank_pool_weights(10), clip[:, i : i + 10]), 0
        )
        re = (re - re.min()) / (re - re.min()).max()
        d = 0.2989 * re[0] + 0.587 * re[1] + 0.114 * re[2]
        s = np.where(d > d.mean(), d, 0).astype(np.float32)
        s = cv2.dilate(cv2.erode(s, np.ones((2, 2))), np.ones((3, 3)))
        s = (s - s.min()) / (s.max() - s.min())
        np.testing.assert_allclose(garr[0, 9 + i], (d + s) * s, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- augmentation


def test_crop_and_flip_geometry():
    cfg = drsr.DRSRConfig()
    frames = np.zeros((2, 240, 320, 3), np.uint8)
    frames[:, 100, 150] = 255  # a marker at x 150, y 100
    assert drsr.draw_aug(cfg, None) == drsr.ClipAug(48, 8)  # test: the centre crop
    out = drsr.apply_aug(frames, drsr.ClipAug(48, 8), cfg)
    assert out.shape == (2, 224, 224, 3)
    assert list(zip(*np.nonzero(out[0, ..., 0]))) == [(92, 102)]
    out = drsr.apply_aug(frames, drsr.ClipAug(10, 5, flip=True), cfg)
    assert list(zip(*np.nonzero(out[1, ..., 0]))) == [(95, 223 - 140)]  # x -> crop - 1 - x
    # another resize: frames are resized before the crop
    small = drsr.DRSRConfig(resize=(160, 120), crop=100)
    assert drsr.apply_aug(frames, drsr.ClipAug(30, 10), small).shape == (2, 100, 100, 3)


def test_rotation_shares_the_frame_and_crop():
    cfg = drsr.DRSRConfig()
    frames = np.random.default_rng(0).integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    aug = drsr.ClipAug(20, 7, angle=-9)
    out = drsr.apply_aug(frames, aug, cfg)
    m = cv2.getRotationMatrix2D((160, 120), -9, 1.0)
    full = cv2.warpAffine(frames[1], m, (320, 240))  # the reference: rotate, then crop
    np.testing.assert_array_equal(out[1], full[7 : 7 + 224, 20 : 20 + 224])


def test_train_draws():
    rng = np.random.default_rng(0)
    augs = [drsr.draw_aug(drsr.DRSRConfig(), rng) for _ in range(400)]
    assert {a.left for a in augs} <= set(range(96)) and max(a.left for a in augs) == 95
    assert {a.top for a in augs} == set(range(16))
    angles = [a.angle for a in augs]
    assert set(angles) <= set(range(-10, 10)) and min(angles) == -10 and max(angles) == 9
    assert 0.4 < np.mean([a != 0 for a in angles]) < 0.6  # p 0.5 (angle 0 is rarely drawn)
    assert 0.4 < np.mean([a.flip for a in augs]) < 0.6
    off = drsr.DRSRConfig(rotation=False, flip=False)
    assert all(not a.flip and a.angle == 0 for a in (drsr.draw_aug(off, rng) for _ in range(50)))


# ---------------------------------------------------------------------------- config, items


def test_config_and_registry():
    assert pipeline_entry("drsr").config_cls is drsr.DRSRConfig
    assert pipeline_entry("drsr").dataset_cls() is drsr.DRSRDataset
    cfg = drsr.DRSRConfig.from_dict({"source": "rgbd", "resize": [320, 240]})
    assert cfg.resize == (320, 240) and cfg.clip_len == 64 and cfg.crop == 224
    keys = [(o.key, o.channels, o.clip_len) for o in cfg.outputs()]
    assert keys == [("clip_rgb", 3, 64), ("guidance_rgb", 1, 64), ("clip_depth", 3, 64),
                    ("guidance_depth", 1, 64)]  # fmt: skip
    assert [o.key for o in drsr.DRSRConfig(source="depth").outputs()] == ["clip", "guidance"]
    for bad in ({"source": "flow"}, {"crop": 400}, {"clip_len": 0}, {"test_sampling": "x"}):
        with pytest.raises(ValueError, match="invalid DRSRConfig"):
            drsr.DRSRConfig(**bad)
    with pytest.raises(ValueError, match="unknown DRSRConfig key"):
        drsr.DRSRConfig.from_dict({"clip_length": 3})


def test_items_rgb_depth_rgbd(stores, one_torch_thread):
    rgb = build_dataset(_cfg(stores), _anns(), "s", "test")
    item = rgb[1]
    assert set(item) == {"clip", "guidance", "label", "frame_dir"}
    assert item["clip"].shape == (1, 3, 8, 224, 224) and item["clip"].dtype == torch.float32
    assert item["guidance"].shape == (1, 1, 8, 224, 224)
    assert item["label"] == 1 and item["frame_dir"] == NAMES[1]
    assert torch.equal(item["clip"], rgb[1]["clip"])  # test items are deterministic
    # the depth clip is JET of the stored depth at the test indices, centre-cropped, normalised
    depth = build_dataset(_cfg(stores, source="depth"), _anns(), "s", "val")
    store = dp.DepthStore(dp.store_path(stores / "store", NAMES[0]))
    inds = drsr.get_sl(12, 8)
    want = drsr.normalize(drsr.jet(store.depth(inds))[:, 8:232, 48:272]).transpose(3, 0, 1, 2)
    np.testing.assert_array_equal(depth[0]["clip"][0].numpy(), want)
    np.testing.assert_allclose(
        depth[0]["guidance"][0].numpy(), drsr.frp_guidance(want, 3), rtol=1e-6
    )
    both = build_dataset(_cfg(stores, source="rgbd"), _anns(), "s", "test")[0]
    assert set(both) == {"clip_rgb", "guidance_rgb", "clip_depth", "guidance_depth", "label",
                         "frame_dir"}  # fmt: skip
    assert torch.equal(both["clip_rgb"], rgb[0]["clip"])
    assert torch.equal(both["clip_depth"], depth[0]["clip"])
    batch = collate([rgb[0], rgb[1]])
    assert batch["clip"].shape == (2, 1, 3, 8, 224, 224) and batch["label"].tolist() == [0, 1]


def test_train_items_are_augmented_independently(stores, one_torch_thread):
    torch.manual_seed(0)
    ds = build_dataset(_cfg(stores, source="rgbd"), _anns(), "s", "train")
    item = ds[0]
    assert item["clip_rgb"].shape == item["clip_depth"].shape == (1, 3, 8, 224, 224)
    assert item["guidance_rgb"].abs().sum() > 0
    assert not torch.equal(ds[0]["clip_rgb"], item["clip_rgb"])  # a new draw each time
    # "ours" test sampling: deterministic, one frame per segment
    ours = build_dataset(_cfg(stores, test_sampling="ours"), _anns(), "s", "test")
    assert torch.equal(ours[0]["clip"], ours[0]["clip"])


def test_missing_or_bad_stores(stores):
    with pytest.raises(BadSampleError, match="DRSR store file not found") as err:
        build_dataset(drsr.DRSRConfig(store_dir=str(stores / "raw")), _anns(), "s", "train")
    assert err.value.path == str(stores / "raw" / f"{NAMES[0]}.npz")
    only = {"split": {"s": [NAMES[0]]}, "annotations": _anns()["annotations"][:1]}
    ds = build_dataset(drsr.DRSRConfig(store_dir=str(stores / "depth_only")), only, "s", "val")
    with pytest.raises(BadSampleError, match="no RGB frames") as err:
        ds[0]
    assert err.value.path == str(stores / "depth_only" / f"{NAMES[0]}.npz")
    with pytest.raises(ValueError, match="one test view"):
        build_dataset(_cfg(stores), _anns(), "s", "test", views=TestViews(num_clips=10))
    # the store directory may come from the command's video_dir
    ds = build_dataset(drsr.DRSRConfig(clip_len=4), _anns(), "s", "val", stores / "store")
    assert len(ds) == 2 and ds.labels.tolist() == [0, 1]


def test_content_hash_follows_the_stores(stores, tmp_path):
    import shutil

    for n in NAMES:
        shutil.copy(dp.store_path(stores / "store", n), tmp_path)
    a = build_dataset(_cfg(stores), _anns(), "s", "train").content_hash()
    b = build_dataset(drsr.DRSRConfig(store_dir=str(tmp_path)), _anns(), "s", "train")
    assert b.content_hash() == a  # a copied store is the same data
    dp.build_store(NAMES[0], stores / "depth", tmp_path)  # rebuilt depth-only: different
    assert b.content_hash() != a
