"""The PYSKL-compatible annotation pickle: build it from denoised shards, validate it, load it.

DESIGN.md section 3.4.  Format::

    {'split': {'xsub_train': [names...], 'xsub_val': [...], ...},
     'annotations': [{'frame_dir', 'label' (A - 1), 'img_shape', 'original_shape' ((h, w)
                      tuples), 'total_frames', 'keypoint' float16 [M, T, V, 2],
                      'keypoint_score' float16 [M, T, V],
                      'layout' ('coco17' | 'ntu25', our extra key),
                      'keypoint3d' float16 [M, T, V, 3] (kinect only, our extra key)}, ...]}

PYSKL reads the extra keys without complaint, and PYSKL's published pickles (no ``layout``; the
layout follows from V: 17 -> coco17, 25 -> ntu25; 3D pickles with ``keypoint`` [M, T, 25, 3] and
no scores) load here through the restricted unpickler.

Only samples that belong to at least one split are written: ``make_splits`` drops samples of
other datasets (A > 60 for ntu60) and, for the real datasets, the 535 missing-skeleton samples;
``demo`` keeps everything.  Samples listed in any ``--skipped-in`` TSV never reach the splits (any
TSV with the skip columns ``sample stage file reason`` works, e.g. a scan of the raw directories).

Bad samples at this stage (policed by ``--on-bad-sample``; under ``skip`` they are listed in the
merged skip TSV with stage ``build_annotations``):

* invalid arrays, a name that is not an NTU name, a sample in two shards (every copy is dropped);
* ``no valid joints``: not one joint with a non-zero position and a non-zero score in any person
  or frame (e.g. a body whose joints are all untracked): it would train as an all-zero heatmap;
* with ``--video-manifests`` (the compress stage's ``name frames width height fps`` TSVs), a pose
  sequence that does not fit its video.  Kinect skeletons and RGB are recorded together (and
  compress keeps every frame), so their frame counts agree up to a few frames; a larger difference
  *in either direction* means the pair does not belong together.  Without ``frame_inds``:
  ``|total_frames - video frames| <= tolerance``; with ``frame_inds`` (pose frame t is video frame
  ``frame_inds[t]``; the denoiser trimmed empty frames, so the pose may legitimately cover less of
  the video) only the upper bound: ``max(frame_inds) < video frames + tolerance``, which is exactly
  what ``rgbpose.data.video.read_frames`` accepts.  The tolerance is that module's
  ``DEFAULT_TOLERANCE`` (5).  A sample without a manifest row (compress skipped its video, which its
  skip TSV already lists) is not checked.

A benchmark whose ``_train`` split ends up empty is an error (nothing to train); an empty ``_val``
split is a warning on stderr.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rgbpose.data.video import DEFAULT_TOLERANCE
from rgbpose.io import BadSampleError, SkipLog, dump_pickle, load_pickle, read_skip_tsv
from rgbpose.layouts import LAYOUTS, convert_layout, get_layout
from rgbpose.ntu import BENCHMARKS, make_splits, parse_name

from .posedict import check_pose_arrays, is_int
from .stage import MANIFEST_HEADER, add_on_bad_sample_arg, finish_skips, progress

DATASETS = ("ntu60", "ntu120", "demo")


def validate_annotation(
    ann: Any, source: str | os.PathLike = "<annotation>", *, ntu_names: bool = True
) -> None:
    """Check one annotation (ours or PYSKL's); raise ``BadSampleError`` naming it and the problem.

    On top of ``check_pose_arrays``: an int ``label`` (= A - 1 of the NTU name unless
    ``ntu_names=False``), and ``img_shape`` / ``original_shape`` for 2D keypoints.
    """
    check_pose_arrays(ann, source, ntu_name=ntu_names)
    name = ann["frame_dir"]
    label = ann.get("label")
    if not is_int(label) or label < 0:
        raise BadSampleError(source, f"{name}: label must be a non-negative int, got {label!r}")
    if ntu_names and label != parse_name(name).label:
        raise BadSampleError(
            source,
            f"{name}: label {label} does not match the name (A - 1 = {parse_name(name).label})",
        )
    if ann["keypoint"].shape[-1] == 2:
        for key in ("img_shape", "original_shape"):
            if key not in ann:
                raise BadSampleError(source, f"{name}: {key} is missing")


def to_annotation(
    pose: dict[str, Any], source: str | os.PathLike, pose_layout: str | None = None
) -> dict[str, Any]:
    """Convert a denoised pose dict into a validated PYSKL annotation (float16 arrays).

    ``pose_layout`` (e.g. ``coco17``) converts the 2D keypoints to that layout, so Kinect data
    feeds the 17-channel PoseC3D input like an estimator's; 3D joints stay in the sensor layout
    (recorded as ``layout3d``).
    """
    layout = check_pose_arrays(pose, source)
    name = pose["frame_dir"]
    if pose["keypoint"].shape[-1] != 2 or "img_shape" not in pose:
        raise BadSampleError(source, f"{name}: denoised poses need 2D keypoint and img_shape")
    img_shape = tuple(int(s) for s in pose["img_shape"])
    ann = {
        "frame_dir": name,
        "label": parse_name(name).label,
        "img_shape": img_shape,
        "original_shape": tuple(int(s) for s in pose.get("original_shape", img_shape)),
        "total_frames": int(pose["total_frames"]),
        "layout": pose_layout or layout.name,
    }
    kp, score = convert_layout(pose["keypoint"], pose["keypoint_score"], layout.name, ann["layout"])
    ann["keypoint"] = kp.astype(np.float16)
    ann["keypoint_score"] = score.astype(np.float16)
    if "frame_inds" in pose:
        ann["frame_inds"] = np.asarray(pose["frame_inds"], np.int32)
    if "keypoint3d" in pose:
        ann["keypoint3d"] = pose["keypoint3d"].astype(np.float16)
        if ann["layout"] != layout.name:
            ann["layout3d"] = layout.name
    validate_annotation(ann, source)  # float16 can overflow: check what is actually written
    return ann


def read_video_manifests(paths: Sequence[str | os.PathLike]) -> dict[str, tuple[int, str]]:
    """``{name: (video frames, manifest path)}`` from compress manifests (``compress.py``).

    Raises ``BadSampleError`` naming the manifest on a wrong header, a malformed row, or a video
    listed twice with different frame counts.
    """
    videos: dict[str, tuple[int, str]] = {}
    for path in paths:
        with open(path, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows or tuple(rows[0]) != MANIFEST_HEADER:
            raise BadSampleError(
                path, f"not a compress manifest (expected header {MANIFEST_HEADER})"
            )
        for lineno, row in enumerate(rows[1:], start=2):
            if len(row) != len(MANIFEST_HEADER) or not row[1].isdigit():
                raise BadSampleError(path, f"line {lineno}: malformed manifest row {row!r}")
            name, frames = row[0], int(row[1])
            if name in videos and videos[name][0] != frames:
                raise BadSampleError(
                    path,
                    f"line {lineno}: {name} has {frames} frames here but {videos[name][0]} in "
                    f"{videos[name][1]}",
                )
            videos.setdefault(name, (frames, str(path)))
    return videos


def check_video_fit(
    ann: dict[str, Any],
    video_frames: int,
    source: str | os.PathLike,
    manifest: str = "manifest",
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Raise ``BadSampleError`` when ``ann``'s pose frames do not fit a video of ``video_frames``.

    Without ``frame_inds``: ``|total_frames - video_frames| <= tolerance`` (a video much longer
    than its skeleton is a mismatch too: they were recorded together).  With ``frame_inds``: its
    last (largest) index must be ``< video_frames + tolerance`` (what ``read_frames`` accepts).
    """
    name, T = ann["frame_dir"], int(ann["total_frames"])
    video = f"video {name}.mp4 has {video_frames} frames ({manifest}; tolerance {tolerance})"
    if "frame_inds" in ann:
        last = int(np.max(ann["frame_inds"]))
        if last >= video_frames + tolerance:
            raise BadSampleError(
                source,
                f"{name}: frame count mismatch: skeleton {name} has {T} frames mapped up to video "
                f"frame index {last}, {video}",
            )
    elif abs(T - video_frames) > tolerance:
        raise BadSampleError(
            source, f"{name}: frame count mismatch: skeleton {name} has {T} frames, {video}"
        )


def has_valid_joints(ann: dict[str, Any]) -> bool:
    """True when some joint of some person and frame has a non-zero position and score."""
    valid = (np.asarray(ann["keypoint"]) != 0).any(axis=-1)
    if "keypoint_score" in ann:
        valid &= np.asarray(ann["keypoint_score"]) > 0
    return bool(valid.any())


def build_annotations(
    shards: Sequence[str | os.PathLike],
    dataset: str,
    benchmarks: Sequence[str],
    skip: SkipLog,
    skipped_before: Collection[str] = frozenset(),
    pose_layout: str | None = None,
    videos: dict[str, tuple[int, str]] | None = None,
) -> dict[str, Any]:
    """Merge denoised shard pickles into ``{'split': ..., 'annotations': [...]}``.

    Bad samples (invalid arrays, non-NTU names, a sample in two shards, no valid joints, and with
    ``videos`` (``read_video_manifests``) a pose sequence that does not fit its video) go through
    ``skip``; a duplicated sample is removed entirely under ``skip``, whichever copy came first.
    Samples in ``skipped_before`` are left out.  A shard that is not a readable list of dicts is
    always an error.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} (expected one of {DATASETS})")
    anns: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}  # first shard of every named sample, valid or not
    for shard in progress(shards, total=len(shards), desc="annotations"):
        poses = load_pickle(shard)
        if not isinstance(poses, list):
            raise BadSampleError(
                shard, f"expected a list of pose dicts, got {type(poses).__name__}"
            )
        for pose in poses:
            named = isinstance(pose, dict) and isinstance(pose.get("frame_dir"), str)
            name = pose["frame_dir"] if named else "?"
            first = origin.get(name) if named else None
            if named:
                origin.setdefault(name, str(shard))
            try:
                ann = to_annotation(pose, shard, pose_layout)
                if first is not None:
                    raise BadSampleError(shard, f"{name}: duplicate sample (also in {first})")
                if name not in skipped_before:
                    if not has_valid_joints(ann):
                        raise BadSampleError(
                            shard,
                            f"{name}: no valid joints (every joint of all {ann['keypoint'].shape[0]}"
                            f" person(s) in all {ann['total_frames']} frames has position 0 or "
                            "score 0)",
                        )
                    if videos is not None and name in videos:
                        frames, manifest = videos[name]
                        check_video_fit(ann, frames, shard, manifest)
            except BadSampleError as exc:
                skip.handle(name, exc)
                anns.pop(name, None)
                continue
            if name not in skipped_before:
                anns[name] = ann
    names = sorted(anns)
    splits = make_splits(names, dataset, benchmarks, exclude_missing=dataset != "demo")
    in_split = set().union(*splits.values()) if splits else set()
    return {"split": splits, "annotations": [anns[n] for n in names if n in in_split]}


def check_splits(splits: dict[str, list[str]]) -> list[str]:
    """Warnings for empty ``*_val`` splits; ``ValueError`` for an empty ``*_train`` split."""
    empty = [s for s, names in splits.items() if not names]
    for split in empty:
        if split.endswith("_train"):
            raise ValueError(f"split {split} is empty: nothing to train")
    return [f"split {s} is empty: nothing to validate or test on" for s in empty]


def load_annotations(path: str | os.PathLike, *, ntu_names: bool = True) -> dict[str, Any]:
    """Load and validate an annotation pickle (ours or PYSKL's) with the restricted unpickler.

    Fills in ``layout`` (from V) where it is missing.  Raises ``BadSampleError`` naming the file
    (and the sample) on a forbidden object, a bad structure, an invalid or duplicated annotation,
    or a split that names a sample without annotation.
    """
    data = load_pickle(path)
    if not isinstance(data, dict) or not {"split", "annotations"} <= set(data):
        raise BadSampleError(path, "expected a dict with 'split' and 'annotations'")
    anns, splits = data["annotations"], data["split"]
    if not isinstance(anns, list) or not isinstance(splits, dict):
        raise BadSampleError(path, "'annotations' must be a list and 'split' a dict")
    seen: set[str] = set()
    for ann in anns:
        validate_annotation(ann, path, ntu_names=ntu_names)
        if ann["frame_dir"] in seen:
            raise BadSampleError(path, f"{ann['frame_dir']}: duplicate annotation")
        seen.add(ann["frame_dir"])
        ann.setdefault("layout", get_layout(ann["keypoint"].shape[2]).name)
    for split, names in splits.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadSampleError(path, f"split {split!r} must be a list of sample names")
        missing = [n for n in names if n not in seen]
        if missing:
            raise BadSampleError(
                path,
                f"split {split!r} names {len(missing)} sample(s) without annotation, "
                f"e.g. {missing[0]}",
            )
    return data


def cli(argv: Sequence[str] | None = None) -> int:
    """``rgbpose build-annotations POSES.pkl... -o OUT.pkl --dataset D --benchmarks B...``."""
    p = argparse.ArgumentParser(
        prog="rgbpose build-annotations",
        description="Merge denoised pose shards into a PYSKL annotation pickle with splits.",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="denoised pose shards (.pkl)")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument(
        "--benchmarks",
        nargs="+",
        required=True,
        choices=sorted({b for bs in BENCHMARKS.values() for b in bs}),
    )
    p.add_argument(
        "--skipped-in",
        nargs="*",
        type=Path,
        default=[],
        help="skip TSVs (sample stage file reason) of earlier stages or of a raw-directory scan: "
        "their samples are left out and their rows merged into --skipped-out",
    )
    p.add_argument(
        "--video-manifests",
        nargs="*",
        type=Path,
        default=None,
        help="compress manifests (name frames width height fps): each sample's pose frames must "
        f"fit its video (frame counts within {DEFAULT_TOLERANCE} of each other; with frame_inds, "
        f"every index < video frames + {DEFAULT_TOLERANCE}), else it is a bad sample",
    )
    p.add_argument("--skipped-out", type=Path, help="merged skip TSV (always written when given)")
    add_on_bad_sample_arg(p)
    p.add_argument(
        "--pose-layout",
        choices=("native", *LAYOUTS),
        default="native",
        help="convert 2D keypoints to this layout (ntu25 -> coco17 for PoseC3D's 17 channels)",
    )
    args = p.parse_args(argv)
    prog = "rgbpose build-annotations"

    skip = SkipLog(args.on_bad_sample, stage="build_annotations")
    try:
        earlier = [row for tsv in args.skipped_in for row in read_skip_tsv(tsv)]
        data = build_annotations(
            args.inputs,
            args.dataset,
            args.benchmarks,
            skip,
            {r[0] for r in earlier},
            None if args.pose_layout == "native" else args.pose_layout,
            read_video_manifests(args.video_manifests) if args.video_manifests else None,
        )
    except (OSError, ValueError, BadSampleError) as exc:
        from rgbpose.cli import report_error  # noqa: PLC0415

        return report_error(prog, exc)
    try:
        warnings = check_splits(data["split"])
    except ValueError as exc:
        from rgbpose.cli import report_error  # noqa: PLC0415

        finish_skips(skip, None)  # the samples this stage skipped, on stderr
        counts = (
            f"{len(data['annotations'])} sample(s) annotated, {len(earlier)} skipped by earlier "
            f"stages, {len(skip.rows)} at this stage"
        )
        return report_error(prog, ValueError(f"{exc} ({counts})"))
    for warning in warnings:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    dump_pickle(data, args.output)
    if args.skipped_out is not None:
        merged = SkipLog("skip", stage="build_annotations")
        merged.extend(earlier + skip.rows)
        merged.write(args.skipped_out)
    sizes = ", ".join(f"{k}={len(v)}" for k, v in data["split"].items())
    print(
        f"wrote {len(data['annotations'])} annotations to {args.output} ({args.dataset}; {sizes}); "
        f"skipped {len(earlier) + len(skip.rows)} sample(s) ({len(skip.rows)} at this stage)"
    )
    return 0
