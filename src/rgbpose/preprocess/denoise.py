"""Denoise raw poses and pick the actors: NTU Kinect rules, or tracking for 2D estimators.

DESIGN.md section 3.3.  Input and output are pose dicts (``posedict.py``); the output has at
most ``max_persons`` (2) actor slots and no ``body_ids``.

Kinect (layout ``ntu25`` with ``keypoint3d``), the thresholds SGN / InfoGCN / PYSKL share, applied
while a sample has more than one bodyID (``--compat infogcn|pyskl`` reproduces either reference
exactly instead: ``denoise_compat.py``, whose table lists the differences):

1. drop bodies present in <= 11 frames;
2. spread test on the 3D joints: frame f of a body is *valid* iff
   ``max(x) - min(x) <= 0.8 * (max(y) - min(y))`` over its 25 joints; a body with an invalid
   fraction >= 0.69754 is dropped, otherwise its motion becomes
   ``min(motion, motion over the valid frames only)``.  As in SGN, bodies are tested in order of
   first appearance and the test stops once a single body is left, so a lone (e.g. lying)
   person is never removed by it (PYSKL tests every body and crashes when all are wide);
3. ``motion`` = ``sum over x, y, z of var(coordinate)``, the population variance (ddof 0) of the
   pooled ``[F * 25]`` samples of each coordinate over the body's present frames, i.e.
   ``np.var(xyz.reshape(-1, 3), axis=0).sum()`` as SGN and PYSKL compute it.  Bodies are sorted by
   motion (descending; ties keep first-appearance order) and assigned greedily: the first opens
   slot 1; a body goes to slot 1 if its frame span ``[first, last]`` (inclusive) shares no frame
   with the spans already in slot 1, else to slot 2 under the same test, else it is discarded.
   (SGN and PYSKL compare against the hull of a slot's spans, SGN lets spans that touch at one
   frame share it; we use the exact union of spans and never write a frame twice.)
4. empty frames (no slot present): ``trim`` (default, ours; not PYSKL's) cuts only leading and
   trailing ones, keeping the video's timeline; ``drop`` removes them all (as the references drop
   frames listing no body).  Rule 4 applies to single-body samples too.

If every body is dropped (possible only when several bodies are all present in <= 11 frames) the
sample is a bad sample, "no valid body after denoising": SGN and PYSKL crash on it; we report it
(skip TSV or failure) instead of guessing a body.

Estimator layouts (``coco17``): detections are linked frame to frame into tracks by Hungarian
matching (``scipy.optimize.linear_sum_assignment``) against each live track's last pose, with the
PYSKL demo cost ``sum over joints of max(2 * d_j, |score_a - score_b|)`` where ``d_j`` is the L2
distance between the two positions of joint j *divided by the image diagonal* (so the cost does
not depend on resolution and the score term is not swamped by pixel distances).  A match is only
accepted when the mean per-joint cost is <= ``max_cost`` (0.5); a track can still be matched up to
``max_age`` (30) frames after its last match.  Tracks shorter than ``min_length`` (3) frames are
dropped; the expected number of persons is kept (2 for two-person NTU actions, else 1; at most
``max_persons``): the longest tracks, ties broken by centrality (mean distance of the pose centre
to the image centre); gaps of <= ``max_gap`` (5) frames inside a kept track are filled by linear
interpolation of positions and scores.  Estimator outputs keep every video frame (no trimming), so
pose frame t stays video frame t.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rgbpose.io import BadSampleError, SkipLog, dump_pickle, load_pickle
from rgbpose.ntu import parse_name

from .posedict import check_pose_arrays
from .stage import add_bad_sample_args, finish_skips, run_samples

EmptyFrames = Literal["trim", "drop"]
#: ``none`` = our rules; the others reproduce a reference exactly (``denoise_compat.py``).
Compat = Literal["none", "infogcn", "pyskl"]
COMPAT_MODES: tuple[Compat, ...] = ("none", "infogcn", "pyskl")


# --------------------------------------------------------------------------------------------
# Kinect
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KinectDenoiseConfig:
    """NTU Kinect denoising thresholds (SGN / InfoGCN / PYSKL values)."""

    max_short_frames: int = 11  # bodies present in <= this many frames are noise
    spread_ratio: float = 0.8  # valid frame: x extent <= ratio * y extent
    noise_ratio: float = 0.69754  # invalid-frame fraction at which a body is noise
    max_persons: int = 2
    empty_frames: EmptyFrames = "trim"


@dataclass
class KinectSelection:
    """Outcome of rules 1-3: body indices per actor slot, and why the other bodies went."""

    slots: list[list[int]]
    motion: dict[int, float] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)


def body_motion(xyz: np.ndarray) -> float:
    """Sum over x, y, z of the population variance of all joints pooled over frames.

    ``xyz`` is ``[F, V, 3]`` (present frames only): ``np.var(xyz.reshape(-1, 3), axis=0).sum()``.
    """
    return float(np.var(xyz.reshape(-1, 3).astype(np.float64), axis=0).sum())


def spread_valid(xyz: np.ndarray, ratio: float = 0.8) -> np.ndarray:
    """Per frame of ``xyz`` [F, V, 3]: x extent <= ratio * y extent (a plausible upright body)."""
    x, y = xyz[..., 0], xyz[..., 1]
    return (x.max(axis=1) - x.min(axis=1)) <= ratio * (y.max(axis=1) - y.min(axis=1))


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(span[0] <= e and s <= span[1] for s, e in spans)


def assign_slots(
    order: Sequence[int], spans: dict[int, tuple[int, int]], num_slots: int = 2
) -> list[list[int]]:
    """Greedy slot assignment of bodies in ``order`` by non-overlap of inclusive frame spans.

    A body goes to the first slot none of whose spans shares a frame with its own; bodies that
    fit nowhere are discarded.  Empty slots are not returned.
    """
    slots: list[list[int]] = [[] for _ in range(num_slots)]
    occupied: list[list[tuple[int, int]]] = [[] for _ in range(num_slots)]
    for b in order:
        for k in range(num_slots):
            if not _overlaps(spans[b], occupied[k]):
                slots[k].append(b)
                occupied[k].append(spans[b])
                break
    return [s for s in slots if s]


def select_kinect_bodies(
    present: np.ndarray, xyz: np.ndarray, cfg: KinectDenoiseConfig = KinectDenoiseConfig()
) -> KinectSelection:
    """Rules 1-3 on ``present`` [M, T] and ``xyz`` [M, T, V, 3]; see the module docstring."""
    bodies = [m for m in range(present.shape[0]) if present[m].any()]
    frames = {m: np.flatnonzero(present[m]) for m in bodies}
    motion = {m: body_motion(xyz[m, frames[m]]) for m in bodies}
    dropped: dict[int, str] = {}
    if len(bodies) > 1:  # rule 1
        for m in bodies:
            if len(frames[m]) <= cfg.max_short_frames:
                dropped[m] = f"present in only {len(frames[m])} frames"
        bodies = [m for m in bodies if m not in dropped]
    for m in list(bodies):  # rule 2, in order of first appearance, while > 1 body is left
        if len(bodies) <= 1:
            break
        valid = spread_valid(xyz[m, frames[m]], cfg.spread_ratio)
        invalid = 1.0 - valid.mean()
        if invalid >= cfg.noise_ratio:
            dropped[m] = f"too wide in {invalid:.1%} of its frames"
            bodies.remove(m)
        elif invalid > 0:
            motion[m] = min(motion[m], body_motion(xyz[m, frames[m][valid]]))
    order = sorted(bodies, key=lambda m: -motion[m])  # stable: ties keep first appearance
    spans = {m: (int(frames[m][0]), int(frames[m][-1])) for m in bodies}
    slots = assign_slots(order, spans, cfg.max_persons)
    for m in bodies:
        if not any(m in s for s in slots):
            dropped[m] = "overlaps bodies with more motion in every actor slot"
    return KinectSelection(slots, {m: motion[m] for m in bodies}, dropped)


def _keep_frames(present: np.ndarray, mode: EmptyFrames) -> np.ndarray:
    """Indices of frames kept by rule 4 given the output ``present`` [M, T]."""
    any_present = present.any(axis=0)
    idx = np.flatnonzero(any_present)
    if mode == "drop":
        return idx
    if mode == "trim":
        return np.arange(idx[0], idx[-1] + 1) if idx.size else idx
    raise ValueError(f"empty_frames must be 'trim' or 'drop', got {mode!r}")


def denoise_kinect(
    pose: dict[str, Any], cfg: KinectDenoiseConfig = KinectDenoiseConfig(), source: str = ""
) -> dict[str, Any]:
    """Apply the NTU rules to a kinect pose dict; return the denoised dict (M <= max_persons)."""
    present, xyz = np.asarray(pose["present"], bool), np.asarray(pose["keypoint3d"])
    sel = select_kinect_bodies(present, xyz, cfg)
    if not sel.slots:
        ids = pose.get("body_ids") or [str(m) for m in range(present.shape[0])]
        why = "; ".join(f"body {ids[m]}: {reason}" for m, reason in sel.dropped.items())
        raise BadSampleError(source, f"{pose['frame_dir']}: no valid body after denoising ({why})")
    M, (_, T, V, _) = len(sel.slots), xyz.shape
    out = {
        "keypoint": np.zeros((M, T, V, 2), np.float32),
        "keypoint_score": np.zeros((M, T, V), np.float32),
        "keypoint3d": np.zeros((M, T, V, 3), np.float32),
        "present": np.zeros((M, T), bool),
    }
    for k, members in enumerate(sel.slots):
        for m in members:
            f = present[m]
            for key in out:
                out[key][k, f] = np.asarray(pose[key])[m, f]
    keep = _keep_frames(out["present"], cfg.empty_frames)
    return with_arrays(pose, {key: arr[:, keep] for key, arr in out.items()}, keep)


def with_arrays(
    pose: dict[str, Any], arrays: dict[str, np.ndarray], keep: np.ndarray | None = None
) -> dict[str, Any]:
    """A copy of ``pose``'s metadata with new arrays (and total_frames), without body_ids.

    ``keep``: the input frames the arrays hold, when not all (recorded in ``frame_inds``).
    """
    meta = {k: v for k, v in pose.items() if k not in arrays and k != "body_ids"}
    meta["total_frames"] = int(arrays["keypoint"].shape[1])
    T = pose["keypoint"].shape[1]
    if keep is not None and keep.size != T:
        # Pose frame t is now video frame frame_inds[t]: the RGB pipeline decodes through it so
        # both modalities stay aligned after trimming or dropping empty frames.
        before = np.asarray(pose.get("frame_inds", np.arange(T)), np.int64)
        meta["frame_inds"] = before[keep].astype(np.int32)
    return {**meta, **arrays}


# --------------------------------------------------------------------------------------------
# Estimators: tracking
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackerConfig:
    """Tracking and person selection for 2D estimator outputs."""

    max_age: int = 30  # frames a track may go unmatched and still be continued
    max_cost: float = 0.5  # max mean per-joint cost of an accepted match
    max_gap: int = 5  # gaps of <= this many frames inside a track are interpolated
    min_length: int = 3  # tracks present in fewer frames are dropped
    max_persons: int = 2


@dataclass
class Track:
    """Frames and poses of one tracked person."""

    frames: list[int] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)  # [V, 2] each
    scores: list[np.ndarray] = field(default_factory=list)  # [V] each

    def add(self, t: int, kp: np.ndarray, sc: np.ndarray) -> None:
        self.frames.append(t)
        self.keypoints.append(kp)
        self.scores.append(sc)


def pose_cost(
    kp_a: np.ndarray, sc_a: np.ndarray, kp_b: np.ndarray, sc_b: np.ndarray, diag: float
) -> np.ndarray:
    """``sum_j max(2 * |p_a,j - p_b,j| / diag, |s_a,j - s_b,j|)`` (PYSKL demo, normalised).

    ``kp_*`` are ``[..., V, 2]`` and ``sc_*`` ``[..., V]``; leading axes broadcast, so
    ``pose_cost(tracks[:, None], ..., dets[None], ...)`` is the whole cost matrix.
    """
    dist = 2.0 * np.linalg.norm(kp_a - kp_b, axis=-1) / diag
    return np.maximum(dist, np.abs(sc_a - sc_b)).sum(axis=-1)


def track_poses(
    keypoint: np.ndarray,
    score: np.ndarray,
    present: np.ndarray,
    img_shape: tuple[int, int],
    cfg: TrackerConfig = TrackerConfig(),
) -> list[Track]:
    """Link per-frame detections (``present[j, t]``) into tracks, in order of creation."""
    from scipy.optimize import linear_sum_assignment

    diag = float(np.hypot(*img_shape))
    V = keypoint.shape[2]
    tracks: list[Track] = []
    for t in range(keypoint.shape[1]):
        dets = np.flatnonzero(present[:, t])
        live = [tr for tr in tracks if t - tr.frames[-1] <= cfg.max_age]
        matched: set[int] = set()
        if live and dets.size:
            last_kp = np.stack([tr.keypoints[-1] for tr in live])[:, None]
            last_sc = np.stack([tr.scores[-1] for tr in live])[:, None]
            cost = pose_cost(last_kp, last_sc, keypoint[dets, t][None], score[dets, t][None], diag)
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] <= cfg.max_cost * V:
                    live[r].add(t, keypoint[dets[c], t], score[dets[c], t])
                    matched.add(int(c))
        for c, j in enumerate(dets):
            if c not in matched:
                tracks.append(Track())
                tracks[-1].add(t, keypoint[j, t], score[j, t])
    return tracks


def _centre_distance(track: Track, img_shape: tuple[int, int]) -> float:
    """Mean distance of the track's pose centres (mean of scored joints) to the image centre."""
    h, w = img_shape
    dists = []
    for kp, sc in zip(track.keypoints, track.scores):
        pts = kp[sc > 0] if (sc > 0).any() else kp
        dists.append(np.hypot(*(pts.mean(axis=0) - (w / 2, h / 2))))
    return float(np.mean(dists))


def select_tracks(
    tracks: list[Track], num_persons: int, img_shape: tuple[int, int], cfg: TrackerConfig
) -> list[Track]:
    """The ``num_persons`` longest tracks of >= ``min_length`` frames (ties: most central)."""
    long_enough = [tr for tr in tracks if len(tr.frames) >= cfg.min_length]
    ranked = sorted(long_enough, key=lambda tr: (-len(tr.frames), _centre_distance(tr, img_shape)))
    return ranked[: min(num_persons, cfg.max_persons)]


def fill_gaps(
    kp: np.ndarray, sc: np.ndarray, present: np.ndarray, max_gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linearly interpolate gaps of <= ``max_gap`` frames in one person's [T, ...] arrays."""
    kp, sc, present = kp.copy(), sc.copy(), present.copy()
    idx = np.flatnonzero(present)
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= max_gap + 1:
            w = ((np.arange(a + 1, b) - a) / (b - a))[:, None]
            kp[a + 1 : b] = (1 - w)[..., None] * kp[a] + w[..., None] * kp[b]
            sc[a + 1 : b] = (1 - w) * sc[a] + w * sc[b]
            present[a + 1 : b] = True
    return kp, sc, present


def denoise_estimator(
    pose: dict[str, Any],
    cfg: TrackerConfig = TrackerConfig(),
    num_persons: int | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Track, select and gap-fill the persons of an estimator pose dict (frames unchanged).

    ``num_persons`` defaults to 2 for two-person NTU actions (from ``frame_dir``), else 1.
    """
    if num_persons is None:
        num_persons = 2 if parse_name(pose["frame_dir"]).two_person else 1
    img_shape = tuple(pose["img_shape"])
    kp, sc = np.asarray(pose["keypoint"]), np.asarray(pose["keypoint_score"])
    present = np.asarray(pose["present"], bool)
    tracks = track_poses(kp, sc, present, img_shape, cfg)
    chosen = select_tracks(tracks, num_persons, img_shape, cfg)
    if not chosen:
        raise BadSampleError(
            source, f"{pose['frame_dir']}: no person tracked for >= {cfg.min_length} frames"
        )
    M, T, V = len(chosen), kp.shape[1], kp.shape[2]
    out_kp = np.zeros((M, T, V, 2), np.float32)
    out_sc = np.zeros((M, T, V), np.float32)
    out_present = np.zeros((M, T), bool)
    for k, tr in enumerate(chosen):
        out_kp[k, tr.frames] = tr.keypoints
        out_sc[k, tr.frames] = tr.scores
        out_present[k, tr.frames] = True
        out_kp[k], out_sc[k], out_present[k] = fill_gaps(
            out_kp[k], out_sc[k], out_present[k], cfg.max_gap
        )
    arrays = {"keypoint": out_kp, "keypoint_score": out_sc, "present": out_present}
    return with_arrays(pose, arrays)


# --------------------------------------------------------------------------------------------
# Dispatch and CLI
# --------------------------------------------------------------------------------------------


def denoise_pose(
    pose: dict[str, Any],
    kinect: KinectDenoiseConfig = KinectDenoiseConfig(),
    tracker: TrackerConfig = TrackerConfig(),
    source: str = "",
    compat: Compat = "none",
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Validate one pose dict and denoise it: Kinect rules (ours, or ``compat``'s, which also
    adds its warnings to ``notes``) or the tracker."""
    layout = check_pose_arrays(pose, source)
    name = pose["frame_dir"]
    if "present" not in pose:
        raise BadSampleError(source, f"{name}: pose dict has no 'present' mask")
    if "keypoint3d" in pose:
        if layout.name != "ntu25":
            raise BadSampleError(source, f"{name}: keypoint3d with {layout.name}")
        if compat == "none":
            return denoise_kinect(pose, kinect, source)
        from .denoise_compat import denoise_kinect_compat  # noqa: PLC0415 (it imports this)

        return denoise_kinect_compat(pose, compat, source, notes)
    if compat != "none":
        raise BadSampleError(source, f"{name}: --compat {compat} needs Kinect poses (keypoint3d)")
    return denoise_estimator(pose, tracker, source=source)


def cli(argv: Sequence[str] | None = None) -> int:
    """``rgbpose denoise IN.pkl -o OUT.pkl [options]``."""
    p = argparse.ArgumentParser(
        prog="rgbpose denoise",
        description="Denoise Kinect bodies (NTU rules) or track 2D detections; keep the actors.",
    )
    p.add_argument("input", type=Path, help="pickled list of pose dicts (extract-poses output)")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--max-persons", type=int, default=2)
    p.add_argument(
        "--empty-frames",
        choices=("trim", "drop"),
        default="trim",
        help="kinect: trim leading/trailing empty frames (keeps the video timeline) or drop all",
    )
    p.add_argument(
        "--compat",
        choices=COMPAT_MODES,
        default="none",
        help="kinect: our rules (none) or a reference's NTU preprocessing exactly: infogcn (SGN's "
        "get_raw_skes_data + get_raw_denoised_data) or pyskl (tools/data/ntu_preproc.py; where "
        "it crashes, every body too wide, InfoGCN's survivor is kept with a warning)",
    )
    p.add_argument("--max-gap", type=int, default=5, help="estimators: longest gap interpolated")
    p.add_argument("--min-track", type=int, default=3, help="estimators: shortest track kept")
    add_bad_sample_args(p)
    args = p.parse_args(argv)
    if args.compat != "none" and (args.empty_frames != "trim" or args.max_persons != 2):
        p.error(f"--compat {args.compat} fixes the frames and 2 persons as the reference does")
    prog = "rgbpose denoise"
    from rgbpose.cli import report_error  # noqa: PLC0415

    kcfg = KinectDenoiseConfig(max_persons=args.max_persons, empty_frames=args.empty_frames)
    tcfg = TrackerConfig(
        max_gap=args.max_gap, min_length=args.min_track, max_persons=args.max_persons
    )
    skip = SkipLog(args.on_bad_sample, stage="denoise")
    src = str(args.input)
    try:
        poses = load_pickle(args.input)
        if not isinstance(poses, list):
            raise BadSampleError(src, f"expected a list of pose dicts, got {type(poses).__name__}")
    except (OSError, BadSampleError) as exc:
        return report_error(prog, exc)
    if args.compat != "none" and any(isinstance(d, dict) and "keypoint3d" not in d for d in poses):
        p.error(f"--compat {args.compat} applies to Kinect poses only; {src} has others")
    notes: list[str] = []

    def work(pose: Any) -> dict[str, Any]:
        return denoise_pose(pose, kcfg, tcfg, src, args.compat, notes)

    def name_of(pose: Any) -> str:
        return str(pose.get("frame_dir", "?")) if isinstance(pose, dict) else "?"

    try:
        done = run_samples(work, poses, skip, name_of, desc="denoise")
    except BadSampleError as exc:
        return report_error(prog, exc)
    out = [res for _, res in done]
    dump_pickle(out, args.output)
    finish_skips(skip, args.skipped)
    for note in notes:
        print(f"{prog}: warning: {note}", file=sys.stderr)
    two = sum(d["keypoint"].shape[0] == 2 for d in out)
    print(
        f"denoised {len(out)} sample(s) ({two} with two persons) to {args.output}; "
        f"skipped {len(skip.rows)}"
    )
    return 0
