"""Benchmark: data-loading clips/s per CPU core for the training pipelines (DESIGN.md 6).

Builds a tiny NTU-like dataset in a temp dir -- a few 960x540 H.264 videos (made with the
ffmpeg binary bundled in imageio-ffmpeg, GOP 32 like the compress stage) and hand-made
annotations in 1080p coordinates with two moving skeletons -- then times
``dataset[i]`` in-process (``num_workers=0``, one torch thread), i.e. the work one DataLoader
worker does per clip, at the real sizes: RGB 8 frames 224^2, pose 32 frames 56^2.

Rows: ``decode_8`` (decord alone: 8 sparse frames), ``pose_train``, ``pose_train_kp`` (pose
pipeline with heatmaps_on_device: keypoints only), ``rgb_train``, ``rgbpose_train`` and
``rgbpose_train_kp``, ``rgbpose_train_dev`` (keypoints and uint8 RGB: heatmaps and
normalisation on the GPU, as the NTU recipes do); ``rgbpose_train_gpudecode_store`` (the
worker's share when the frames are decoded on the GPU, ``rgb_decode_on_device``: encoded bytes
and geometry only; the decoding happens in the batch transform, not timed here); then the same RGB rows read from the training frame store
(``rgbpose frame-store``: JPEG q90 4:4:4 crops) as ``<row>_store`` (``decode_8_store``: the
store's reader alone), with ``vs_video`` = their clips/s over the 540p-video row measured in the
same run.  Usage: ``python benchmarks/loader.py [--out benchmarks/loader_results.tsv]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch

from rgbpose.data import framestore as fs
from rgbpose.data.config import PipelineConfig
from rgbpose.data.datasets import build_dataset
from rgbpose.data.sampling import uniform_sample
from rgbpose.data.video import read_frames
from rgbpose.io import write_text_atomic
from rgbpose.preprocess.framestore import build_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heatmaps import realistic_clip  # noqa: E402  (same skeleton generator)

FRAMES, VH, VW = 72, 540, 960


def make_video(path: Path, seed: int) -> None:
    """A textured 960x540 clip with moving blobs, encoded like the compress stage."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:VH, 0:VW].astype(np.float32)
    texture = rng.integers(0, 40, (VH // 4, VW // 4, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((4, 4, 1), np.uint8))
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
        "-pix_fmt", "rgb24", "-s", f"{VW}x{VH}", "-r", "30", "-i", "-", "-c:v", "libx264",
        "-preset", "veryfast", "-crf", "23", "-g", "32", "-pix_fmt", "yuv420p", str(path),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for k in range(FRAMES):
        frame = np.empty((VH, VW, 3), np.float32)
        frame[..., 0] = 80 + 60 * np.sin(xx / 90 + k / 10)
        frame[..., 1] = 90 + 50 * np.cos(yy / 70 - k / 15)
        frame[..., 2] = 120
        for cx in (VW * 0.35 + 3 * k, VW * 0.65 - 2 * k):
            blob = ((xx - cx) / 60) ** 2 + ((yy - VH / 2) / 170) ** 2 < 1
            frame[blob] = (200, 60 + k, 40)
        proc.stdin.write((np.clip(frame, 0, 215).astype(np.uint8) + texture).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"ffmpeg failed for {path}")


REAL_CLIP = Path(__file__).resolve().parents[2] / "shared/data/real/ntu_sample.avi"


def make_dataset(root: Path, n: int, real: bool = True) -> dict:
    """``n`` samples; videos are the real NTU clip run through our compress stage (960x540,
    72 frames, GOP 32) with its mediapipe poses when it is available, else synthetic clips with
    two synthetic skeletons.  Real footage matters: the
    synthetic texture is much more expensive to decode than camera video."""
    names = [f"S001C00{1 + i % 3}P00{1 + i}R001A0{50 + i:02d}" for i in range(n)]
    annos = []
    real = real and REAL_CLIP.exists()
    if real:
        from rgbpose.preprocess.compress import compress_video

        compress_video(REAL_CLIP, root / "real.mp4", height=VH, gop=32)
    if real:  # the clip's own poses (one person), as the pose stage finds them
        from rgbpose.preprocess.poses import extract_mediapipe

        found = extract_mediapipe(root / "real.mp4")
        real_kp, real_score = found["keypoint"], found["keypoint_score"]
    for i, name in enumerate(names):
        if real:
            shutil.copyfile(root / "real.mp4", root / f"{name}.mp4")
            kp, score, shape = real_kp, real_score, (VH, VW)
        else:
            make_video(root / f"{name}.mp4", i)
            kp, score = realistic_clip(i, persons=2, frames=FRAMES, canvas=(1080, 1920),
                                       height=0.6)  # fmt: skip
            shape = (1080, 1920)
        annos.append(
            {
                "frame_dir": name,
                "label": 49 + i,
                "img_shape": shape,
                "original_shape": shape,
                "total_frames": FRAMES,
                "keypoint": kp.astype(np.float16),
                "keypoint_score": score.astype(np.float16),
                "layout": "coco17",
            }
        )
    return {"split": {"train": names}, "annotations": annos}


def clips_per_s(fn, n_items: int, min_time: float) -> float:
    fn(0)  # warm-up (imports, first decode)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        fn(count % n_items)
        count += 1
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/loader_results.tsv")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument(
        "--synthetic-video", action="store_true", help="synthetic clips instead of the real one"
    )
    parser.add_argument("--min-time", type=float, default=5.0, help="seconds per row")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    rows = []
    with tempfile.TemporaryDirectory(prefix="rgbpose-loader-") as tmp:
        root = Path(tmp)
        ann = make_dataset(root, args.videos, real=not args.synthetic_video)
        names = ann["split"]["train"]
        rgb_inds = uniform_sample(FRAMES, 8, rng=np.random.default_rng(0))
        rows.append(
            (
                "decode_8",
                clips_per_s(
                    lambda i: read_frames(root / f"{names[i]}.mp4", rgb_inds),
                    len(names),
                    args.min_time,
                ),
            )
        )
        pose = PipelineConfig(modality="pose")
        rgbpose = PipelineConfig(modality="rgbpose", sigma=0.7)
        configs = {
            "pose_train": pose,
            "pose_train_kp": dataclasses.replace(pose, heatmaps_on_device=True),
            "rgb_train": PipelineConfig(modality="rgb"),
            "rgbpose_train": rgbpose,
            "rgbpose_train_kp": dataclasses.replace(rgbpose, heatmaps_on_device=True),
            "rgbpose_train_dev": dataclasses.replace(
                rgbpose, heatmaps_on_device=True, rgb_normalize_on_device=True
            ),
            "rgbpose_train_gpudecode": dataclasses.replace(
                rgbpose, heatmaps_on_device=True, rgb_decode_on_device=True
            ),
        }
        for name, cfg in configs.items():
            if cfg.rgb_decode_on_device:
                continue  # a store row only
            ds = build_dataset(cfg, ann, "train", "train", video_dir=root)
            rows.append((name, clips_per_s(ds.__getitem__, len(ds), args.min_time)))

        store = root / "frames"
        sizes = []
        for a in ann["annotations"]:
            name = a["frame_dir"]
            sizes.append(build_store(a, root / f"{name}.mp4", fs.store_path(store, name))[1:3])
        readers = [fs.FrameStore(fs.store_path(store, n)) for n in names]
        rows.append(
            ("decode_8_store", clips_per_s(lambda i: readers[i].read(rgb_inds), len(names),
                                           args.min_time))
        )  # fmt: skip
        for name in ("rgb_train", "rgbpose_train", "rgbpose_train_kp", "rgbpose_train_dev",
                     "rgbpose_train_gpudecode"):  # fmt: skip
            ds = build_dataset(configs[name], ann, "train", "train", video_dir=root,
                               frame_store=store)  # fmt: skip
            rows.append((f"{name}_store", clips_per_s(ds.__getitem__, len(ds), args.min_time)))
        (x1, y1, x2, y2), nbytes = sizes[0]
        video_bytes = (root / f"{names[0]}.mp4").stat().st_size

    header = (
        f"# in-process (num_workers=0), 1 torch thread; {args.videos} "
        f"{'synthetic' if args.synthetic_video or not REAL_CLIP.exists() else 'real NTU'} videos {VW}x{VH} "
        f"{FRAMES} frames; RGB 8x224^2, pose 32x56^2; torch {torch.__version__}, numpy "
        f"{np.__version__}, {platform.machine()}\n# frame store: region {x2 - x1}x{y2 - y1} of "
        f"{VW}x{VH}, {nbytes / FRAMES / 1e3:.1f} KB/frame (the mp4: "
        f"{video_bytes / FRAMES / 1e3:.1f} KB/frame)"
    )
    rate_of = dict(rows)
    lines = [header, "pipeline\tclips_per_s_per_core\tms_per_clip\tvs_video"]
    for name, rate in rows:
        stem = name.removesuffix("_store").replace("_gpudecode", "")
        base = rate_of.get(stem) if name.endswith("_store") else None
        ratio = f"{rate / base:.2f}" if base else ""
        lines.append(f"{name}\t{rate:.4g}\t{1e3 / rate:.4g}\t{ratio}")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
