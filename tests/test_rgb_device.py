"""RGB decoded and resampled in the batch transform (``rgb_decode_on_device``) against the CPU
pipeline, and the geometry it composes."""

import dataclasses

import numpy as np
import pytest
import torch
from test_framestore import CFG, data  # noqa: F401 - the module's videos and stores fixture

from rgbpose.data.batch import batch_transform, collate
from rgbpose.data.config import TestViews
from rgbpose.data.datasets import build_dataset
from rgbpose.data.rgb_device import RGBSource, compose

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_compose_hand_computed() -> None:
    # frames cropped from the video frame at origin (4, 6); compaction crop at (10, 20), resize
    # 100 -> 50, flip of the 50-wide image
    steps = [("crop", 10, 20, 110, 120), ("resize", 100, 100, 50, 50), ("flip", 50)]
    ax, bx, ay, by = compose(steps, (4, 6))
    # x: output u -> 49 - u (flip) -> (49 - u + 0.5) * 2 - 0.5 (resize) -> + 10 (crop) - 4
    assert (ax, bx) == (-2.0, 104.5) and (ay, by) == (2.0, 14.5)
    u = 7
    assert ax * u + bx == (49 - u + 0.5) * 2 - 0.5 + 10 - 4
    with pytest.raises(ValueError, match="unknown geometry step"):
        compose([("rotate", 3)], (0, 0))


def _batches(root, videos, store, modality, mode, **over):
    out = []
    for device_path in (False, True):
        cfg = dataclasses.replace(CFG, modality=modality, rgb_decode_on_device=device_path, **over)
        ds = build_dataset(cfg, root / "ann.pkl", "xsub_train", mode, videos,
                           views=TestViews(num_clips=2, flip=True), frame_store=store)  # fmt: skip
        torch.manual_seed(0)
        items = [ds[i] for i in range(len(ds))]
        assert ("rgb_source" in items[0]) == device_path
        batch = collate(items)
        transform = batch_transform(cfg)
        out.append(transform(batch, torch.device("cpu")) if transform else batch)
    return out


def _levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs() * 57.12  # normalised units back to 0..255 levels (G's std)


@pytest.mark.parametrize("modality", ["rgb", "rgbpose"])
def test_test_clips_equal_the_cpu_pipeline_up_to_rounding(data, modality) -> None:  # noqa: F811
    """One resize after the compaction: the CPU path rounds it to uint8 (OpenCV's fixed-point
    bilinear), the device path keeps floats and samples the one-pixel border against zero.
    Rounding alone gives |error| <= 0.5 (mean 0.25), OpenCV's 11-bit weights up to 0.25 more:
    interior pixels within 1 level, the clip's mean within 0.3 levels."""
    root, videos, stores = data
    cpu, dev = _batches(root, videos, stores["png"], modality, "test")
    assert dev["imgs"].shape == cpu["imgs"].shape and dev["imgs"].dtype == torch.float32
    diff = _levels(dev["imgs"], cpu["imgs"])
    assert float(diff[..., 1:-1, 1:-1].max()) <= 1.0
    assert float(diff.mean()) < 0.3
    if modality == "rgbpose":  # the pose side is untouched
        assert torch.equal(dev["heatmap_imgs"], cpu["heatmap_imgs"])


def test_train_clips_follow_the_same_random_geometry(data) -> None:  # noqa: F811
    """Training resamples once along the composed geometry where the CPU path resizes twice
    (pre-crop size, then the train size).  Against OpenCV remapping the same frames once along
    the same geometry: within 1 level (remap's 1/32-pixel fixed point and the rounding to
    uint8).  Against the CPU pipeline: the same random crop and flip (the clip of the other
    flip is 10x further away), a different blur (mean under 4 levels on these noisy frames)."""
    import cv2

    from rgbpose.data import framestore as fs
    from rgbpose.data.rgb_device import sample

    root, videos, stores = data
    cpu, dev = _batches(root, videos, stores["png"], "rgbpose", "train")
    diff = _levels(dev["imgs"], cpu["imgs"])
    mirrored = _levels(dev["imgs"], cpu["imgs"].flip(-1))
    assert float(diff.mean()) < 4.0 and float(mirrored.mean()) > 10 * float(diff.mean())

    cfg = dataclasses.replace(CFG, rgb_decode_on_device=True)
    ds = build_dataset(cfg, root / "ann.pkl", "xsub_train", "train", videos,
                       frame_store=stores["png"])  # fmt: skip
    torch.manual_seed(0)
    for i in range(len(ds)):
        src = ds[i]["rgb_source"]
        got = sample(src, torch.device("cpu"))[0].permute(1, 2, 3, 0).numpy()  # [L, H, W, 3]
        frames = [cv2.cvtColor(cv2.imdecode(f, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                  for f in src.frames]  # fmt: skip
        assert src.codec == "png" and frames[0].shape[:2] != (0, 0)
        ax, bx, ay, by = compose(src.geometry, src.origin)
        h, w = src.out_hw
        map_x = np.broadcast_to(np.arange(w) * ax + bx, (h, w)).astype(np.float32)
        map_y = np.broadcast_to((np.arange(h) * ay + by)[:, None], (h, w)).astype(np.float32)
        want = np.stack([cv2.remap(f, map_x, map_y, cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT) for f in frames])  # fmt: skip
        err = np.abs(got - want)
        assert err.mean() < 0.3 and err.max() <= 5.0
        assert any(op[0] == "resize" for op in src.geometry)
        assert fs.FrameStore(fs.store_path(stores["png"], ds.names[i])).region[:2] == src.origin


def test_jpeg_store_and_uncovered_clips_in_one_batch(data, tmp_path) -> None:  # noqa: F811
    """JPEG frames (decoded by OpenCV off CUDA) and a clip served as decoded video frames (no
    store file) batch together; values as the CPU pipeline within the JPEG error."""
    root, videos, stores = data
    partial = tmp_path / "partial"
    partial.mkdir()
    first = sorted(stores["jpeg"].iterdir())[0]
    (partial / first.name).write_bytes(first.read_bytes())
    ds = build_dataset(dataclasses.replace(CFG, rgb_decode_on_device=True), root / "ann.pkl",
                       "xsub_train", "test", videos, views=TestViews(num_clips=2, flip=True),
                       frame_store=partial)  # fmt: skip
    items = [ds[i] for i in range(len(ds))]
    sources = [it["rgb_source"] for it in items]
    assert [s.codec for s in sources] == ["jpeg", "raw"] and isinstance(sources[0], RGBSource)
    assert sources[0].origin != (0, 0) and sources[1].origin == (0, 0)
    batch = batch_transform(ds.cfg)(collate(items), torch.device("cpu"))
    cpu, _ = _batches(root, videos, None, "rgbpose", "test")
    diff = _levels(batch["imgs"], cpu["imgs"])
    assert batch["imgs"].shape == cpu["imgs"].shape and float(diff.mean()) < 1.5
