"""Per-video pose extraction: Kinect ``.skeleton`` files, mediapipe, or a user ONNX model.

DESIGN.md section 3.2.  Every backend returns one *pose dict* per video (the contract's format,
``posedict.py``): layout ``ntu25`` with ``keypoint3d`` and ``body_ids`` for kinect, ``coco17``
for the estimators.  Nothing here tracks or denoises (that is ``denoise.py``): kinect gives one
slot per bodyID, estimators give slot j of frame t = the j-th detection of frame t by score.

ONNX model format (``--backend onnx``; a YOLO-pose style export, weights supplied by the user and
never downloaded):

* input: the model's first input, float32 ``[1, 3, H, W]``, RGB scaled to 0-1.  H and W are read
  from the model (640 x 640 when the model leaves them dynamic).  Frames are *letterboxed*: resized
  by ``r = min(H / h, W / w)`` to ``(round(h r), round(w r))``, centred on a canvas of grey 114
  (left = (W - new_w) // 2, top = (H - new_h) // 2);
* output: the model's first output, either

  - ``[1, N, 56]`` rows ``x1, y1, x2, y2, box_score, (x, y, kp_score) * 17`` (corner boxes), or
  - ``[1, 56, N]``, the raw YOLOv8-pose head, columns ``cx, cy, w, h, box_score, (x, y,
    kp_score) * 17`` (centre boxes);

  both in model-input pixels, COCO-17 keypoint order.  With N == 56 the output is read as rows.
  Detections with ``box_score >= det_thr`` (0.5) are kept, greedy NMS at IoU 0.65 removes
  duplicates (a no-op for models that already ran NMS), and coordinates are mapped back through
  the letterbox: ``x = (x_in - left) / r``, ``y = (y_in - top) / r``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rgbpose.data.video import open_video
from rgbpose.io import BadSampleError, SkipLog, dump_pickle
from rgbpose.skeleton_file import NUM_JOINTS, read_skeleton

from .posedict import make_pose_dict
from .stage import (
    add_bad_sample_args,
    add_names_file_arg,
    collect_inputs,
    finish_skips,
    raw_stem,
    run_samples,
    sample_name_from_path,
)

NTU_IMG_SHAPE = (1080, 1920)
#: Kinect joint trackingState -> score (tracked, inferred, not tracked).
TRACKING_SCORE = {2: 1.0, 1: 0.5, 0: 0.0}
#: mediapipe's 33 landmarks -> COCO 17 (both use the person's own left/right).
MEDIAPIPE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
COCO_JOINTS = 17
ONNX_ROW = 5 + 3 * COCO_JOINTS  # 56
DEFAULT_ONNX_SIZE = 640
LETTERBOX_PAD = 114

SUFFIX = {"kinect": ".skeleton", "mediapipe": ".mp4", "onnx": ".mp4"}


# --------------------------------------------------------------------------------------------
# Kinect
# --------------------------------------------------------------------------------------------


def extract_kinect(
    path: str | os.PathLike,
    img_shape: tuple[int, int] = NTU_IMG_SHAPE,
    name: str | None = None,
) -> dict[str, Any]:
    """Pose dict of a ``.skeleton`` file: one slot per bodyID, in order of first appearance.

    ``keypoint`` holds the colour-frame pixels (colorX, colorY), ``keypoint3d`` the camera-space
    metres, ``keypoint_score`` maps trackingState 2/1/0 to 1.0/0.5/0.0.  A file with no frames or
    no body at all raises ``BadSampleError`` ("no person"), as does a bodyID twice in one frame
    or a trackingState other than 0/1/2.
    """
    seq = read_skeleton(path)
    if seq.num_frames == 0:
        raise BadSampleError(path, "no person: the file has 0 frames")
    ids = seq.body_ids()
    if not ids:
        raise BadSampleError(path, f"no person: no body in any of the {seq.num_frames} frames")
    slot = {bid: m for m, bid in enumerate(ids)}
    shape = (len(ids), seq.num_frames, NUM_JOINTS)
    kp = np.zeros((*shape, 2), np.float32)
    kp3 = np.zeros((*shape, 3), np.float32)
    score = np.zeros(shape, np.float32)
    present = np.zeros(shape[:2], bool)
    lut = np.array([TRACKING_SCORE[s] for s in sorted(TRACKING_SCORE)], np.float32)
    for t, bodies in enumerate(seq.frames):
        for b in bodies:
            m = slot[b.body_id]
            if present[m, t]:
                raise BadSampleError(path, f"frame {t}: bodyID {b.body_id} appears twice")
            state = b.tracking
            if not np.isin(state, list(TRACKING_SCORE)).all():
                raise BadSampleError(
                    path, f"frame {t}, body {b.body_id}: joint trackingState must be 0, 1 or 2"
                )
            present[m, t] = True
            kp[m, t] = b.color_xy
            kp3[m, t] = b.xyz
            score[m, t] = lut[state.astype(int)]
    return make_pose_dict(
        name or Path(path).name.removesuffix(".skeleton"),
        "ntu25",
        img_shape,
        kp,
        score,
        present,
        keypoint3d=kp3,
        body_ids=list(ids),
    )


# --------------------------------------------------------------------------------------------
# mediapipe
# --------------------------------------------------------------------------------------------


def extract_mediapipe(path: str | os.PathLike, name: str | None = None) -> dict[str, Any]:
    """Single-person COCO-17 poses from mediapipe's legacy Pose solution (model_complexity=1).

    Coordinates are pixels of the decoded frame (``img_shape`` = decoded size); score = landmark
    visibility.  ``BadSampleError`` "no person detected" when no frame has a person.
    """
    import mediapipe as mp

    video = open_video(path)
    T, H, W = video.info.frames, video.info.height, video.info.width
    kp = np.zeros((1, T, COCO_JOINTS, 2), np.float32)
    score = np.zeros((1, T, COCO_JOINTS), np.float32)
    present = np.zeros((1, T), bool)
    idx = np.array(MEDIAPIPE_TO_COCO17)
    # One Pose object per video: in video mode it tracks the person from frame to frame, so it
    # must not carry state across videos.
    with mp.solutions.pose.Pose(
        static_image_mode=False, model_complexity=1, min_detection_confidence=0.5
    ) as pose:
        for t, frame in enumerate(video.iterator):
            res = pose.process(frame)
            if res.pose_landmarks is None:
                continue
            lm = np.array([(p.x, p.y, p.visibility) for p in res.pose_landmarks.landmark])[idx]
            kp[0, t] = lm[:, :2] * (W, H)
            score[0, t] = lm[:, 2]
            present[0, t] = True
    if not present.any():
        raise BadSampleError(path, f"no person detected in any of the {T} frames")
    return make_pose_dict(name or Path(path).stem, "coco17", (H, W), kp, score, present)


# --------------------------------------------------------------------------------------------
# ONNX (YOLO-pose style)
# --------------------------------------------------------------------------------------------


class Detections(NamedTuple):
    """Per-frame detections sorted by score, in frame pixels."""

    boxes: np.ndarray  # [N, 4] x1 y1 x2 y2
    scores: np.ndarray  # [N]
    keypoints: np.ndarray  # [N, 17, 2]
    keypoint_scores: np.ndarray  # [N, 17]


class Letterbox(NamedTuple):
    """How a frame was placed on the model canvas: scale and left/top padding."""

    scale: float
    left: int
    top: int


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize ``frame`` [h, w, 3] keeping its aspect and centre it on a grey ``size`` canvas.

    Returns the model input float32 [1, 3, H, W] in 0-1 and the transform to undo.
    """
    import cv2

    H, W = size
    h, w = frame.shape[:2]
    r = min(H / h, W / w)
    nh, nw = round(h * r), round(w * r)
    left, top = (W - nw) // 2, (H - nh) // 2
    canvas = np.full((H, W, 3), LETTERBOX_PAD, np.uint8)
    canvas[top : top + nh, left : left + nw] = cv2.resize(
        frame, (nw, nh), interpolation=cv2.INTER_LINEAR
    )
    x = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(x), Letterbox(r, left, top)


def decode_onnx_output(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a model output into (boxes xyxy [N, 4], box scores [N], keypoints [N, 17, 3]).

    Accepts ``[1, N, 56]`` (corner boxes) or ``[1, 56, N]`` (YOLOv8 raw head, centre boxes); see
    the module docstring.  Raises ``ValueError`` for anything else.
    """
    a = np.asarray(out, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or ONNX_ROW not in a.shape:
        raise ValueError(
            f"ONNX pose output must be [1, N, {ONNX_ROW}] or [1, {ONNX_ROW}, N], got {out.shape}"
        )
    if a.shape[1] == ONNX_ROW:
        rows = a
        boxes = rows[:, :4].copy()
    else:
        rows = a.T
        cx, cy, bw, bh = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return boxes, rows[:, 4].copy(), rows[:, 5:].reshape(-1, COCO_JOINTS, 3).copy()


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of kept boxes by descending score."""
    order = np.argsort(-scores, kind="stable")
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        iw, ih = np.clip(hi - lo, 0, None).T
        inter = iw * ih
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[iou < iou_thr]
    return np.array(keep, dtype=np.int64)


@dataclass(frozen=True)
class OnnxConfig:
    """Post-processing of the ONNX backend."""

    det_thr: float = 0.5
    nms_iou: float = 0.65


class OnnxPoseEstimator:
    """A user-supplied multi-person pose model (format in the module docstring), CPU only."""

    def __init__(self, model: str | os.PathLike, cfg: OnnxConfig = OnnxConfig()):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(model), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ValueError(f"{model}: cannot load ONNX model ({exc})") from exc
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4:
            raise ValueError(f"{model}: input must be [1, 3, H, W], got {inp.shape}")
        h, w = inp.shape[2], inp.shape[3]
        self.input_name = inp.name
        self.size = (
            h if isinstance(h, int) else DEFAULT_ONNX_SIZE,
            w if isinstance(w, int) else DEFAULT_ONNX_SIZE,
        )
        self.cfg = cfg

    def __call__(self, frame: np.ndarray) -> Detections:
        """Detections in ``frame`` (RGB uint8 [h, w, 3]), sorted by box score, in frame pixels."""
        x, lb = letterbox(frame, self.size)
        out = self.session.run(None, {self.input_name: x})[0]
        boxes, scores, kps = decode_onnx_output(out)
        sel = scores >= self.cfg.det_thr
        boxes, scores, kps = boxes[sel], scores[sel], kps[sel]
        keep = nms(boxes, scores, self.cfg.nms_iou)
        boxes, scores, kps = boxes[keep], scores[keep], kps[keep]
        offset = np.array([lb.left, lb.top], np.float32)
        boxes = (boxes.reshape(-1, 2, 2) - offset) / lb.scale
        xy = (kps[..., :2] - offset) / lb.scale
        return Detections(boxes.reshape(-1, 4), scores, xy, kps[..., 2])


def extract_onnx(
    path: str | os.PathLike, estimator: OnnxPoseEstimator, name: str | None = None
) -> dict[str, Any]:
    """Multi-person COCO-17 poses; slot j of frame t is frame t's j-th detection by score."""
    video = open_video(path)
    per_frame = [estimator(frame) for frame in video.iterator]
    T, M = video.info.frames, max(len(d.scores) for d in per_frame)
    if M == 0:
        raise BadSampleError(path, f"no person detected in any of the {T} frames")
    kp = np.zeros((M, T, COCO_JOINTS, 2), np.float32)
    score = np.zeros((M, T, COCO_JOINTS), np.float32)
    present = np.zeros((M, T), bool)
    for t, d in enumerate(per_frame):
        n = len(d.scores)
        kp[:n, t] = d.keypoints
        score[:n, t] = d.keypoint_scores
        present[:n, t] = True
    return make_pose_dict(
        name or Path(path).stem, "coco17", (video.info.height, video.info.width), kp, score, present
    )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def cli(argv: Sequence[str] | None = None) -> int:
    """``rgbpose extract-poses --backend B INPUT... -o OUT.pkl [options]``."""
    p = argparse.ArgumentParser(
        prog="rgbpose extract-poses",
        description="Extract per-video poses into a pickled list of pose dicts.",
    )
    p.add_argument("--backend", choices=tuple(SUFFIX), required=True)
    p.add_argument(
        "inputs", nargs="+", help="<name>.skeleton (kinect) or <name>.mp4 files, or directories"
    )
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--model", type=Path, help="ONNX pose model (backend onnx)")
    p.add_argument("--det-thr", type=float, default=0.5, help="onnx: minimum box score")
    p.add_argument(
        "--img-shape",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=NTU_IMG_SHAPE,
        help="kinect: size of the raw video the colour coordinates refer to (default 1080 1920)",
    )
    add_names_file_arg(p)
    add_bad_sample_args(p)
    args = p.parse_args(argv)
    prog = "rgbpose extract-poses"
    from rgbpose.cli import report_error  # noqa: PLC0415

    if args.backend == "onnx" and args.model is None:
        p.error("--backend onnx needs --model M.onnx")

    suffix = SUFFIX[args.backend]
    try:
        paths = collect_inputs(args.inputs, suffix, args.names_file)
        estimator = (
            OnnxPoseEstimator(args.model, OnnxConfig(det_thr=args.det_thr))
            if args.backend == "onnx"
            else None
        )
    except (OSError, ValueError) as exc:
        return report_error(prog, exc)

    def work(path: Path) -> dict[str, Any]:
        name = sample_name_from_path(path, suffix)
        if args.backend == "kinect":
            return extract_kinect(path, tuple(args.img_shape), name)
        if args.backend == "mediapipe":
            return extract_mediapipe(path, name)
        return extract_onnx(path, estimator, name)

    skip = SkipLog(args.on_bad_sample, stage="extract_poses")
    try:
        done = run_samples(work, paths, skip, lambda q: raw_stem(q, suffix), desc="extract-poses")
    except (BadSampleError, ValueError) as exc:  # ValueError: a model output of the wrong format
        return report_error(prog, exc)
    poses = [res for _, res in done]
    dump_pickle(poses, args.output)
    finish_skips(skip, args.skipped)
    persons = sum(int(d["present"].any(axis=1).sum()) for d in poses)
    print(
        f"extracted poses of {len(poses)} video(s) ({args.backend}, {persons} person slot(s)) "
        f"to {args.output}; skipped {len(skip.rows)}"
    )
    return 0
