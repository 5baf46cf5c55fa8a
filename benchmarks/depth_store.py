"""Benchmark: the DRSR training store -- file size and decode time of one 100-frame clip.

Makes one synthetic sample (``rgbpose synthesize --depth-dir``: 960x540 RGB encoded with the
compress stage's H.264 settings, NTU masked depth), computes its ROI crops as the depth stage
does (``rgbpose.preprocess.depth``), and stores the 320x240 RGB crops and wrapped-depth crops in
several candidate formats.  ``read_ms`` is what the DRSR loader does per clip: open the file and
get the frames of DRSR's test sampling (64 segment means of 100 frames, 64 distinct frames) of
both modalities, one thread.  ``noise`` rows add Gaussian noise (sigma 4) to the RGB crops, a
stand-in for real camera texture (the synthetic renders are smoother than real video, so their
JPEGs are smaller).  Candidates:

* ``npy_raw``: ``np.savez`` of uint8 arrays (no compression);
* ``npz_zlib``: ``np.savez_compressed`` of the same arrays;
* ``jpeg444_png``: per-frame JPEG q90 4:4:4 RGB + per-frame PNG depth in one zip (the store
  ``rgbpose.preprocess.depth.write_store`` writes);
* ``jpeg420_png``: as above with 4:2:0 chroma;
* ``jpeg444_zdepth``: per-frame JPEG RGB + the whole depth clip as one zlib member.

``loader`` rows: ``read_ms`` is one whole DRSR training item (``rgbpose.data.drsr``: 64 frames,
rotation/crop/flip, normalisation and the FRP guidance map at 224x224) from the store, per
source, one thread: what one DataLoader worker spends per clip.

Usage: ``python benchmarks/depth_store.py [--out benchmarks/depth_store_results.tsv]``.
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np

from rgbpose import synthetic as syn
from rgbpose.data.drsr import get_sl
from rgbpose.data.video import open_video
from rgbpose.io import write_text_atomic
from rgbpose.preprocess import depth as dp

FRAMES = 100
REPEATS = 5


def make_clip(tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    """RGB crops uint8 [T, 240, 320, 3] and wrapped depth crops [T, 240, 320] of one sample."""
    import subprocess

    import imageio_ffmpeg

    cfg = syn.SynthConfig(
        performers=(1,), cameras=(1,), replications=(1,), actions=(1,), frames=FRAMES,
        width=960, height=540,
    )  # fmt: skip
    name = syn.sample_names(cfg)[0]
    syn.synthesize(cfg, tmp / "raw", depth_dir=tmp / "depth")
    mp4 = tmp / f"{name}.mp4"
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i",
        str(tmp / "raw" / f"{name}_rgb.avi"), "-c:v", "libx264", "-preset", "veryfast",
        "-crf", "23", "-g", "32", "-pix_fmt", "yuv420p", str(mp4),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    depth16 = dp.read_depth_folder(tmp / "depth" / name, FRAMES)
    rng = np.random.default_rng(0)
    # Kinect-like noise on the body (a few mm): the wrapped depth shows the low 8 bits
    noisy = np.where(depth16 > 0, depth16 + np.round(rng.normal(0, 4, depth16.shape)), 0)
    depth16 = np.clip(noisy, 0, 65535).astype(np.uint16)
    centres, _ = dp.roi_centres(depth16, "bench")
    wrapped = dp.wrap_depth(depth16)
    depth = np.stack(
        [
            dp.crop_resize(d, dp.depth_box(c), dp.STORE_SIZE, cv2.INTER_NEAREST)
            for d, c in zip(wrapped, centres)
        ]
    )
    video = open_video(mp4)
    size = (video.info.width, video.info.height)
    rgb = np.stack(
        [
            dp.crop_resize(f, dp.rgb_box(c, size), dp.STORE_SIZE, cv2.INTER_LINEAR)
            for f, c in zip(video.iterator, centres)
        ]
    )
    return rgb, depth


def loader_rows(tmp: Path) -> list[tuple]:
    """ms per DRSR training item of the sample's store, per source (median of REPEATS)."""
    import torch

    from rgbpose.data.datasets import build_dataset
    from rgbpose.data.drsr import DRSRConfig

    torch.set_num_threads(1)
    name = next((tmp / "depth").iterdir()).name
    dp.build_store(name, tmp / "depth", tmp / "store", tmp, video_ext=".mp4")
    ann = {"frame_dir": name, "label": 0, "total_frames": FRAMES, "img_shape": (540, 960)}
    rows = []
    for source in ("rgb", "depth", "rgbd"):
        cfg = DRSRConfig(source=source, store_dir=str(tmp / "store"))
        ds = build_dataset(cfg, [ann], None, "train")
        ds[0]
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            ds[0]
            times.append(time.perf_counter() - t0)
        rows.append(("loader", f"item_{source}_train", 0, 0, 0, 1e3 * float(np.median(times)), 0))
        print(rows[-1], flush=True)
    return rows


def _jpeg(frames: np.ndarray, sampling: int) -> list[bytes]:
    params = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    return [cv2.imencode(".jpg", f[..., ::-1], params)[1].tobytes() for f in frames]


def _zip(path: Path, members: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, arr in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            zf.writestr(f"{key}.npy", buf.getvalue())


def _blob(bufs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in bufs])]).astype(np.int64)
    return np.frombuffer(b"".join(bufs), np.uint8), offsets


def _decode(data: np.ndarray, offsets: np.ndarray, inds: np.ndarray, flag: int) -> np.ndarray:
    return np.stack([cv2.imdecode(data[offsets[i] : offsets[i + 1]], flag) for i in inds])


def write(kind: str, path: Path, rgb: np.ndarray, depth: np.ndarray) -> None:
    if kind == "npy_raw":
        np.savez(path, rgb=rgb, depth=depth)
    elif kind == "npz_zlib":
        np.savez_compressed(path, rgb=rgb, depth=depth)
    elif kind == "jpeg444_png":
        dp.write_store(
            path, name="bench", depth=depth, depth_boxes=np.zeros((len(depth), 4)),
            centres=np.zeros((len(depth), 2)), found=np.ones(len(depth), bool), rgb=rgb,
            rgb_boxes=np.zeros((len(rgb), 4)), video_size=(960, 540),
        )  # fmt: skip
    elif kind == "jpeg420_png":
        r, ro = _blob(_jpeg(rgb, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420))
        d, do = _blob([cv2.imencode(".png", f, [cv2.IMWRITE_PNG_COMPRESSION, 3])[1].tobytes()
                       for f in depth])  # fmt: skip
        _zip(path, {"rgb_jpeg": r, "rgb_offsets": ro, "depth_png": d, "depth_offsets": do})
    elif kind == "jpeg444_zdepth":
        r, ro = _blob(_jpeg(rgb, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444))
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            for key, arr in {"rgb_jpeg": r, "rgb_offsets": ro}.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr)
                zf.writestr(f"{key}.npy", buf.getvalue())
            buf = io.BytesIO()
            np.lib.format.write_array(buf, depth)
            zf.writestr("depth.npy", buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    else:
        raise ValueError(kind)


def read(kind: str, path: Path, inds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clip's frames ``inds`` of both modalities (what one loader item reads)."""
    uniq, inv = np.unique(inds, return_inverse=True)
    if kind == "jpeg444_png":
        st = dp.DepthStore(path)
        return st.rgb(inds), st.depth(inds)
    with np.load(path, allow_pickle=False) as z:
        if kind in ("npy_raw", "npz_zlib"):
            return z["rgb"][inds], z["depth"][inds]
        rgb = _decode(z["rgb_jpeg"], z["rgb_offsets"], uniq, cv2.IMREAD_COLOR)[..., ::-1][inv]
        if kind == "jpeg420_png":
            depth = _decode(z["depth_png"], z["depth_offsets"], uniq, cv2.IMREAD_UNCHANGED)
            return rgb, depth[inv]
        return rgb, z["depth"][inds]


KINDS = ("npy_raw", "npz_zlib", "jpeg444_png", "jpeg420_png", "jpeg444_zdepth")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("depth_store_results.tsv"))
    args = ap.parse_args()
    cv2.setNumThreads(1)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rgb, depth = make_clip(tmp)
        noisy = np.clip(rgb + np.random.default_rng(1).normal(0, 4, rgb.shape), 0, 255)
        inds = np.asarray(get_sl(FRAMES, 64, train=False))
        for content, frames in (("synthetic", rgb), ("noise", noisy.astype(np.uint8))):
            for kind in KINDS:
                path = tmp / f"{kind}.npz"
                t0 = time.perf_counter()
                write(kind, path, frames, depth)
                write_ms = (time.perf_counter() - t0) * 1e3
                size = path.stat().st_size
                times = []
                for _ in range(REPEATS):
                    t0 = time.perf_counter()
                    r, dd = read(kind, path, inds)
                    times.append(time.perf_counter() - t0)
                assert r.shape == (64, 240, 320, 3) and dd.shape == (64, 240, 320)
                err = float(np.abs(r.astype(int) - frames[inds]).mean())
                assert np.array_equal(dd, depth[inds])  # depth is always lossless
                rows.append(
                    (content, kind, size / 1024, size / 1024 / FRAMES, write_ms,
                     1e3 * float(np.median(times)), err)
                )  # fmt: skip
                print(rows[-1], flush=True)
        rows += loader_rows(tmp)
    head = (
        f"# one {FRAMES}-frame clip, RGB 320x240x3 + wrapped depth 320x240 uint8; read = 64 "
        f"frames (DRSR test sampling) of both, 1 thread, median of {REPEATS}; numpy "
        f"{np.__version__}, cv2 {cv2.__version__}, {platform.machine()}\n"
        "content\tformat\tkb_per_clip\tkb_per_frame\twrite_ms\tread_ms\trgb_mean_abs_err\n"
    )
    body = "".join(
        f"{c}\t{k}\t{s:.0f}\t{f:.1f}\t{w:.1f}\t{r:.1f}\t{e:.2f}\n"
        if c != "loader"
        else f"{c}\t{k}\t-\t-\t-\t{r:.1f}\t-\n"
        for c, k, s, f, w, r, e in rows
    )
    write_text_atomic(args.out, head + body)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
