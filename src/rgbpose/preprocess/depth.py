"""The DRSR data preparation (REFERENCE_SEEDS 3.1): NTU masked depth + the 540p RGB video of a
sample -> one training store ``<out_dir>/<name>.npz`` with the RGB region of interest and the
depth crop of every frame, both pre-resized to 320x240 (what DRSR's loader resizes to).

Input per sample: ``<depth_dir>/<name>/MDepth-%08d.png`` (16-bit, 512x424, millimetres,
background 0, frames 1..n) and ``<video_dir>/<name>.mp4`` (the compress stage's video).

Per frame (MotionRGBD ``data/data_preprose.py::video2image`` and ``Datasets.depthProposess``):

* **centre** (:func:`roi_centre`): on the person mask (depth > 0): erode 3x3, dilate 10x10,
  external contours with area > 500 px, the centres of their ``minAreaRect``s truncated to
  integers; the centre is ``(min x, min y)`` over those centres (the minimum, not the mean,
  as the reference).  A frame with no such contour takes the previous frame's centre (the
  first frames, before any contour, take the first found centre); a sample where no frame has
  one is a bad sample (no person in the depth).  The reference crashes on such a frame.
* **depth box** (:func:`depth_box`): 320x240 around the centre, ``left = max(cx - 160, 0)``,
  ``top = max(cy - 120, 0)``, right/bottom clipped to 512/424 (not shifted back: a box at the
  right or bottom edge is narrower, as the reference's).
* **RGB box** (:func:`rgb_box`): the centre scaled from 512x424 to the video's W x H by
  ``int(W / 512 * cx)``, ``int(H / 424 * cy)`` (the reference's plain rescale, no camera
  model), and a (W // 2) x (H // 2) window around it, clipped the same way.  The reference
  works on the 1920x1080 raw video (960x540 window); on our 960x540 videos the window is
  480x270, the same part of the scene.
* **store**: the RGB window resized to 320x240 (``cv2.INTER_LINEAR``, as the reference's
  ``ResizeImage``; its NTU loader resizes the full-size crops with PIL's bicubic), JPEG; the depth box of the *wrapped* depth (:func:`wrap_depth`: uint8
  ``(-D) mod 256``, the reference's ``np.uint8(255 * D)``) resized to 320x240 with
  ``INTER_NEAREST`` when the box is smaller (edge boxes; the reference stretches the JET image
  bilinearly later, we never blend across the wrap's jumps), PNG.  The JET colour map is
  applied by the loader (``rgbpose.data.drsr``), so the store keeps one channel.

One mask for both crops: the reference's RGB path thresholds ``cv2.imread``'s 8-bit view of
the PNG (``D >= 256``) and its depth path the wrapped image (``D mod 256 != 0``); we use
``D > 0`` for both, so a frame's RGB and depth crops share one centre.  On real NTU depth
the three differ only at pixels the 10x10 dilation fills anyway.

Store file ``<name>.npz`` (a zip of ``.npy`` members; ``np.load(allow_pickle=False)`` reads it)::

    rgb_jpeg     uint8 [B]      per-frame JPEG (quality 90, 4:4:4), concatenated
    rgb_offsets  int64 [T + 1]  byte offsets of frame t: rgb_jpeg[off[t]:off[t + 1]]
    depth_png    uint8 [B']     per-frame 8-bit PNG of the wrapped depth crop
    depth_offsets int64 [T + 1]
    rgb_boxes    int32 [T, 4]   x1, y1, x2, y2 of the RGB window in video pixels
    depth_boxes  int32 [T, 4]   x1, y1, x2, y2 of the depth box in the 512x424 depth image
    centres      int32 [T, 2]   the depth-image centre used for frame t
    found        bool  [T]      False: frame t had no contour (its centre is a fallback)
    meta         str            JSON: version, name, video_size [W, H], size [w, h], frames,
                                depth_frames, quality, digest (sha256 of the other members)

``rgb_*`` members are absent in a depth-only store (no ``--video-dir``).  Why this format
(``benchmarks/depth_store.py``, 100-frame clip): 21-30 KB a frame against 300 KB of raw uint8
and 60-190 KB of zlib-compressed arrays; reading the 64 frames of a clip (both modalities)
is faster than from a zlib ``.npz`` and ~3x slower than raw arrays (~80 vs ~25 ms), small next
to the rest of a DRSR item (the guidance map); per-frame codecs decode only the sampled
frames; PNG keeps the wrapped depth lossless (JPEG would blur its mod-256 jumps).

Bad samples (``BadSampleError`` naming the file): a missing depth folder, no ``MDepth`` frames,
a gap in the frame numbers, an empty / non-PNG / truncated / undecodable PNG, a frame that is
not 512x424 or not 16-bit single-channel, a depth frame count that differs from the video's by
more than ``frame_tolerance`` (default 0; within it, the store keeps the common frames), and
any video problem (``rgbpose.data.video``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rgbpose.io import BadSampleError, SkipLog, atomic_path, remove_stale_temps, write_text_atomic
from rgbpose.ntu import DEPTH_SIZE, depth_frame_name, is_valid_name

from . import stage

DEPTH_CROP = (320, 240)  # (width, height) of the reference's depth box
STORE_SIZE = (320, 240)  # (width, height) of the stored frames
MIN_CONTOUR_AREA = 500
STORE_SUFFIX = ".npz"
STORE_VERSION = 1
DEPTH_FRAME_RE = re.compile(r"MDepth-(\d{8})\.png")
MANIFEST_HEADER = ("name", "frames", "depth_frames", "no_contour_frames", "bytes")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def store_path(store_dir: str | os.PathLike, name: str) -> Path:
    return Path(store_dir) / f"{name}{STORE_SUFFIX}"


# --------------------------------------------------------------------------------------------
# Reading and validating the depth frames
# --------------------------------------------------------------------------------------------


def depth_frame_files(folder: str | os.PathLike) -> list[Path]:
    """The ``MDepth-%08d.png`` files of one sample folder in frame order (1..n, no gaps).

    ``BadSampleError`` naming the folder when it is missing or holds no frames, and naming
    the first missing frame file when the numbers have a gap.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadSampleError(folder, "depth folder not found")
    numbers = sorted(
        int(m[1]) for e in os.scandir(folder) if (m := DEPTH_FRAME_RE.fullmatch(e.name))
    )
    if not numbers:
        raise BadSampleError(folder, "no depth frames (MDepth-%08d.png) in the folder")
    for expected, got in enumerate(numbers, start=1):
        if got != expected:
            raise BadSampleError(
                folder / depth_frame_name(expected),
                f"depth frame {expected} is missing (the folder has {len(numbers)} frames "
                f"numbered {numbers[0]}..{numbers[-1]})",
            )
    return [folder / depth_frame_name(i) for i in numbers]


def read_depth_png(path: str | os.PathLike) -> np.ndarray:
    """One NTU masked depth frame: uint16 ``[424, 512]`` millimetres.

    ``BadSampleError`` naming the file when it is unreadable, empty, not a PNG, truncated,
    undecodable, not 16-bit single-channel, or not 512x424.
    """
    import cv2

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadSampleError(path, f"cannot read depth frame ({exc.strerror or exc})") from exc
    if not data:
        raise BadSampleError(path, "depth frame is empty (0 bytes)")
    if not data.startswith(_PNG_SIGNATURE):
        raise BadSampleError(path, "depth frame is not a PNG file")
    if data.rfind(_PNG_IEND) < 0:
        raise BadSampleError(path, "depth frame is truncated (no PNG end chunk)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadSampleError(path, "depth frame does not decode (corrupt PNG data)")
    if img.ndim != 2:
        raise BadSampleError(path, f"depth frame has {img.shape[2]} channels, expected 1")
    if img.dtype != np.uint16:
        bits = img.dtype.itemsize * 8
        raise BadSampleError(path, f"depth frame is {bits}-bit, expected 16-bit millimetres")
    h, w = img.shape
    if (w, h) != DEPTH_SIZE:
        raise BadSampleError(path, f"depth frame is {w}x{h}, expected 512x424")
    return img


def read_depth_folder(
    folder: str | os.PathLike, expected_frames: int | None = None, frame_tolerance: int = 0
) -> np.ndarray:
    """All frames of one sample's depth folder: uint16 ``[T, 424, 512]``.

    With ``expected_frames`` (the RGB video's frame count) the folder must hold that many
    frames, give or take ``frame_tolerance`` (else ``BadSampleError`` naming the folder).
    Every frame is read and checked (:func:`read_depth_png`).
    """
    files = depth_frame_files(folder)
    if expected_frames is not None and abs(len(files) - expected_frames) > frame_tolerance:
        raise BadSampleError(
            folder,
            f"{len(files)} depth frames, the RGB video has {expected_frames}"
            + (f" (tolerance {frame_tolerance})" if frame_tolerance else ""),
        )
    return np.stack([read_depth_png(f) for f in files])


def wrap_depth(depth: np.ndarray) -> np.ndarray:
    """The reference's ``np.uint8(255 * D)`` of 16-bit depth: ``(-D) mod 256`` as uint8
    (1 -> 255, 256 -> 0, 300 -> 212; background 0 stays 0)."""
    d = np.asarray(depth)
    if d.dtype != np.uint16:
        d = d.astype(np.int64) % 65536
    return ((d.astype(np.uint32) * 255) & 0xFF).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# The ROI rule
# --------------------------------------------------------------------------------------------


def roi_centre(mask: np.ndarray, min_area: float = MIN_CONTOUR_AREA) -> tuple[int, int] | None:
    """The reference's crop centre ``(x, y)`` of one frame's person ``mask`` (non-zero = person),
    or None when no external contour of the eroded (3x3) and dilated (10x10) mask has an area
    above ``min_area``: ``(min x, min y)`` over the integer ``minAreaRect`` centres."""
    import cv2

    m = (np.asarray(mask) > 0).astype(np.uint8) * 255
    m = cv2.erode(m, np.ones((3, 3), np.uint8))
    m = cv2.dilate(m, np.ones((10, 10), np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    centres = [cv2.minAreaRect(c)[0] for c in contours if cv2.contourArea(c) > min_area]
    if not centres:
        return None
    c = np.array(centres).astype(np.int64)  # np.int0: truncation (the centres are >= 0)
    return int(c[:, 0].min()), int(c[:, 1].min())


def roi_centres(depth: np.ndarray, source: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of ``depth`` ``[T, H, W]``: the centre (int32 ``[T, 2]``) and whether the
    frame had a contour (bool ``[T]``), with the fallback of the module docstring.
    ``BadSampleError(source)`` when no frame has a contour."""
    found_c = [roi_centre(frame > 0) for frame in depth]
    found = np.array([c is not None for c in found_c], bool)
    if not found.any():
        raise BadSampleError(
            source,
            f"no person in the depth: no frame has a contour of area > {MIN_CONTOUR_AREA} px",
        )
    centres = np.zeros((len(found_c), 2), np.int32)
    last = found_c[int(np.argmax(found))]
    for t, c in enumerate(found_c):
        last = c if c is not None else last
        centres[t] = last
    return centres, found


def _window(
    cx: int, cy: int, cw: int, ch: int, width: int, height: int
) -> tuple[int, int, int, int]:
    left = cx - cw // 2 if cx - cw // 2 > 0 else 0
    top = cy - ch // 2 if cy - ch // 2 > 0 else 0
    return left, top, min(left + cw, width), min(top + ch, height)


def depth_box(centre: Sequence[int], crop: tuple[int, int] = DEPTH_CROP) -> tuple[int, ...]:
    """``(x1, y1, x2, y2)`` of the reference's ``crop`` (320x240) box in the 512x424 depth."""
    return _window(int(centre[0]), int(centre[1]), *crop, *DEPTH_SIZE)


def rgb_box(centre: Sequence[int], video_size: tuple[int, int]) -> tuple[int, ...]:
    """``(x1, y1, x2, y2)`` of the RGB window for a depth-image ``centre`` in a video of
    ``video_size`` (W, H): the centre rescaled by W/512, H/424 (truncated), a (W // 2) x
    (H // 2) window around it, clipped (1920x1080: the reference's 960x540)."""
    w, h = video_size
    cx = int((w / DEPTH_SIZE[0]) * centre[0])
    cy = int((h / DEPTH_SIZE[1]) * centre[1])
    return _window(cx, cy, w // 2, h // 2, w, h)


def crop_resize(
    img: np.ndarray, box: Sequence[int], size: tuple[int, int], interpolation: int
) -> np.ndarray:
    """``img[y1:y2, x1:x2]`` resized to ``size`` (w, h) (no resize when it already fits)."""
    import cv2

    x1, y1, x2, y2 = (int(v) for v in box)
    crop = img[y1:y2, x1:x2]
    if crop.shape[1] == size[0] and crop.shape[0] == size[1]:
        return np.ascontiguousarray(crop)
    return cv2.resize(crop, size, interpolation=interpolation)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def _encode(frames: Sequence[np.ndarray], codec: str, quality: int) -> tuple[np.ndarray, ...]:
    import cv2

    bufs = []
    for f in frames:
        if codec == "jpeg":
            params = [
                cv2.IMWRITE_JPEG_QUALITY, int(quality),
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
            ]  # fmt: skip
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), params)
        else:
            ok, buf = cv2.imencode(".png", f, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise RuntimeError(f"cv2.imencode failed ({codec})")
        bufs.append(buf.reshape(-1))
    offsets = np.zeros(len(bufs) + 1, np.int64)
    offsets[1:] = np.cumsum([b.size for b in bufs])
    data = np.concatenate(bufs) if bufs else np.zeros(0, np.uint8)
    return data, offsets


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def write_store(
    path: str | os.PathLike,
    *,
    name: str,
    depth: np.ndarray,
    depth_boxes: np.ndarray,
    centres: np.ndarray,
    found: np.ndarray,
    rgb: np.ndarray | None = None,
    rgb_boxes: np.ndarray | None = None,
    video_size: tuple[int, int] | None = None,
    depth_frames: int | None = None,
    quality: int = 90,
) -> int:
    """Write a store (module docstring) atomically from uint8 wrapped depth crops ``[T, h, w]``
    and RGB crops ``[T, h, w, 3]`` (RGB order; None: depth-only); returns its size in bytes."""
    t = len(depth)
    members: dict[str, np.ndarray] = {}
    if rgb is not None:
        if len(rgb) != t or rgb_boxes is None:
            raise ValueError("rgb needs rgb_boxes and as many frames as depth")
        members["rgb_jpeg"], members["rgb_offsets"] = _encode(rgb, "jpeg", quality)
        members["rgb_boxes"] = np.asarray(rgb_boxes, np.int32).reshape(t, 4)
    members["depth_png"], members["depth_offsets"] = _encode(depth, "png", 0)
    members["depth_boxes"] = np.asarray(depth_boxes, np.int32).reshape(t, 4)
    members["centres"] = np.asarray(centres, np.int32).reshape(t, 2)
    members["found"] = np.asarray(found, bool).reshape(t)
    digest = hashlib.sha256()
    for key in sorted(members):
        arr = np.ascontiguousarray(members[key])
        digest.update(f"{key}{arr.dtype.str}{arr.shape}".encode() + arr.tobytes())
    h, w = depth.shape[1:3]
    meta = {
        "version": STORE_VERSION,
        "name": name,
        "video_size": None if video_size is None else [int(v) for v in video_size],
        "size": [int(w), int(h)],
        "frames": t,
        "depth_frames": int(depth_frames if depth_frames is not None else t),
        "quality": int(quality),
        "digest": digest.hexdigest(),
    }
    members["meta"] = np.array(json.dumps(meta, sort_keys=True))
    with atomic_path(path) as tmp:
        # JPEG/PNG members are stored as they are; the small arrays too (no zlib on read)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for key, arr in members.items():
                zf.writestr(f"{key}.npy", _npy_bytes(arr))
    return Path(path).stat().st_size


class DepthStore:
    """A store file opened for reading (the module docstring's format).

    ``meta``, ``num_frames``, ``has_rgb`` and the per-frame ``rgb_boxes``, ``depth_boxes``,
    ``centres``, ``found``; ``rgb(indices)`` -> uint8 RGB ``[n, 240, 320, 3]`` and
    ``depth(indices)`` -> uint8 wrapped depth ``[n, 240, 320]``, each distinct frame decoded
    once.  Any problem is a ``BadSampleError`` naming the file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise BadSampleError(self.path, "DRSR store file not found (run the depth stage)")
        try:
            with np.load(self.path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            self.meta: dict[str, Any] = json.loads(str(arrays.pop("meta")))
        except BadSampleError:
            raise
        except Exception as exc:  # zipfile/numpy/json raise many kinds for a broken file
            raise BadSampleError(self.path, f"unreadable DRSR store ({exc})") from exc
        self._arrays = arrays
        need = {"depth_png", "depth_offsets", "depth_boxes", "centres", "found"}
        if self.meta.get("version") != STORE_VERSION or not need <= set(arrays):
            raise BadSampleError(
                self.path,
                f"not a DRSR store of version {STORE_VERSION} (rebuild it with the depth stage)",
            )
        self.num_frames = int(len(arrays["depth_offsets"]) - 1)
        self.has_rgb = "rgb_jpeg" in arrays

    @property
    def digest(self) -> str:
        """sha256 of the frames and boxes, recorded when the store was written."""
        return str(self.meta.get("digest", ""))

    @property
    def rgb_boxes(self) -> np.ndarray | None:
        return self._arrays.get("rgb_boxes")

    @property
    def depth_boxes(self) -> np.ndarray:
        return self._arrays["depth_boxes"]

    @property
    def centres(self) -> np.ndarray:
        return self._arrays["centres"]

    @property
    def found(self) -> np.ndarray:
        return self._arrays["found"]

    def _decode(self, kind: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        import cv2

        if kind == "rgb" and not self.has_rgb:
            raise BadSampleError(self.path, "the store holds no RGB frames (depth-only)")
        data = self._arrays["rgb_jpeg" if kind == "rgb" else "depth_png"]
        offsets = self._arrays[f"{kind}_offsets"]
        inds = np.asarray(indices, np.int64).reshape(-1)
        if inds.size and (inds.min() < 0 or inds.max() >= self.num_frames):
            raise BadSampleError(
                self.path,
                f"frame index out of range: {inds.min()}..{inds.max()} of {self.num_frames}",
            )
        uniq, inverse = np.unique(inds, return_inverse=True)
        flag = cv2.IMREAD_COLOR if kind == "rgb" else cv2.IMREAD_UNCHANGED
        out = []
        for i in uniq:
            img = cv2.imdecode(data[offsets[i] : offsets[i + 1]], flag)
            if img is None:
                raise BadSampleError(self.path, f"{kind} frame {i} does not decode")
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if kind == "rgb" else img)
        if not out:
            w, h = self.meta.get("size", STORE_SIZE)
            return np.zeros((0, h, w, 3) if kind == "rgb" else (0, h, w), np.uint8)
        return np.stack(out)[inverse]

    def rgb(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return self._decode("rgb", indices)

    def depth(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return self._decode("depth", indices)


# --------------------------------------------------------------------------------------------
# One sample
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreInfo:
    """What :func:`build_store` wrote for one sample."""

    name: str
    frames: int
    depth_frames: int
    no_contour_frames: int
    bytes: int


def build_store(
    name: str,
    depth_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    video_dir: str | os.PathLike | None = None,
    *,
    video_ext: str = ".mp4",
    frame_tolerance: int = 0,
    quality: int = 90,
    expected_frames: int | None = None,
) -> StoreInfo:
    """Validate one sample's depth (against its video's frame count) and write its store
    ``<out_dir>/<name>.npz`` (module docstring).  ``video_dir`` None: a depth-only store,
    checked against ``expected_frames`` when given (else any frame count is accepted).

    ``BadSampleError`` naming the file and the problem on bad input; a failed sample leaves
    no store (a stale one from an earlier run is removed).
    """
    import cv2

    from rgbpose.data.video import open_video

    dst = store_path(out_dir, name)
    try:
        if not is_valid_name(name):
            raise BadSampleError(Path(depth_dir) / name, "not an NTU sample name")
        folder = Path(depth_dir) / name
        video = None
        if video_dir is not None:
            video = open_video(Path(video_dir) / f"{name}{video_ext}")
        expected = expected_frames if video is None else video.info.frames
        depth16 = read_depth_folder(folder, expected, frame_tolerance)
        n = len(depth16) if expected is None else min(len(depth16), expected)
        centres, found = roi_centres(depth16[:n], folder)
        wrapped = wrap_depth(depth16[:n])
        dboxes = np.array([depth_box(c) for c in centres], np.int32)
        depth = np.stack(
            [crop_resize(d, b, STORE_SIZE, cv2.INTER_NEAREST) for d, b in zip(wrapped, dboxes)]
        )
        rgb = rboxes = size = None
        if video is not None:
            size = (video.info.width, video.info.height)
            rboxes = np.array([rgb_box(c, size) for c in centres], np.int32)
            crops = []
            for t, frame in enumerate(video.iterator):
                if t >= n:
                    break
                crops.append(crop_resize(frame, rboxes[t], STORE_SIZE, cv2.INTER_LINEAR))
            if len(crops) != n:
                raise BadSampleError(
                    Path(video_dir) / f"{name}{video_ext}",
                    f"decoded {len(crops)} frames, expected {n}",
                )
            rgb = np.stack(crops)
        size_bytes = write_store(
            dst,
            name=name,
            depth=depth,
            depth_boxes=dboxes,
            centres=centres,
            found=found,
            rgb=rgb,
            rgb_boxes=rboxes,
            video_size=size,
            depth_frames=len(depth16),
            quality=quality,
        )
    except BadSampleError:
        dst.unlink(missing_ok=True)
        raise
    return StoreInfo(name, n, len(depth16), int((~found).sum()), size_bytes)


def write_manifest(rows: Sequence[StoreInfo], path: str | os.PathLike) -> None:
    """``name frames depth_frames no_contour_frames bytes`` rows (TSV with header), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(MANIFEST_HEADER)
    for r in rows:
        w.writerow([r.name, r.frames, r.depth_frames, r.no_contour_frames, r.bytes])
    write_text_atomic(path, buf.getvalue())


def cli(argv: Sequence[str] | None = None) -> int:
    """``rgbpose <command> [NAME...] --depth-dir D [--video-dir V] --out-dir O --manifest M``."""
    p = argparse.ArgumentParser(
        prog="rgbpose depth-store",
        description="DRSR data preparation: NTU masked depth (+ the 540p video) -> "
        "<out-dir>/<name>.npz with the 320x240 RGB ROI and depth crops of every frame.",
    )
    p.add_argument("names", nargs="*", help="sample names (default: every folder in --depth-dir)")
    p.add_argument("--depth-dir", type=Path, required=True, help="holds <name>/MDepth-%%08d.png")
    p.add_argument("--video-dir", type=Path, help="holds <name>.mp4 (omit: depth-only stores)")
    p.add_argument("--video-ext", default=".mp4")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True, help="TSV: " + " ".join(MANIFEST_HEADER))
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the RGB crops")
    p.add_argument(
        "--frame-tolerance", type=int, default=0,
        help="allowed |depth frames - video frames| (the store keeps the common frames)",
    )  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="samples processed in parallel (threads)")
    stage.add_names_file_arg(p)
    stage.add_bad_sample_args(p)
    args = p.parse_args(argv)
    from rgbpose.cli import report_error  # noqa: PLC0415

    try:
        names = list(args.names)
        if args.names_file is not None:
            names += stage.read_names_file(args.names_file)
        if not names:
            if not args.depth_dir.is_dir():
                raise FileNotFoundError(2, "No such directory", str(args.depth_dir))
            names = sorted(e.name for e in os.scandir(args.depth_dir) if e.is_dir())
            names = [n for n in names if not n.startswith(".")]
    except (OSError, ValueError) as exc:
        return report_error("rgbpose depth-store", exc)
    names = list(dict.fromkeys(names))
    ours = [f"{n}{STORE_SUFFIX}" for n in names if is_valid_name(n)]
    for stale in remove_stale_temps(args.out_dir, max_age_s=0, destinations=ours):
        print(f"depth-store: removed {stale} (temp file of an interrupted run)", file=sys.stderr)
    skip = SkipLog(args.on_bad_sample, stage="depth-store")

    def work(name: str) -> StoreInfo:
        return build_store(
            name, args.depth_dir, args.out_dir, args.video_dir, video_ext=args.video_ext,
            frame_tolerance=args.frame_tolerance, quality=args.quality,
        )  # fmt: skip

    try:
        done = stage.run_samples(work, names, skip, str, args.jobs, "depth-store")
    except BadSampleError as exc:
        return report_error("rgbpose depth-store", exc)
    write_manifest([res for _, res in done], args.manifest)
    stage.finish_skips(skip, args.skipped)
    print(f"wrote {len(done)} DRSR store(s) to {args.out_dir}; skipped {len(skip.rows)}")
    return 0
