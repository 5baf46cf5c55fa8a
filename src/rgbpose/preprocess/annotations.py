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
``demo`` keeps everything.  Samples listed in any ``--skipped-in`` TSV never reach the splits.
"""

from __future__ import annotations

import argparse
import numbers
import os
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rgbpose.io import BadSampleError, SkipLog, dump_pickle, load_pickle, read_skip_tsv
from rgbpose.layouts import LAYOUTS, Layout, convert_layout, get_layout
from rgbpose.ntu import BENCHMARKS, is_valid_name, make_splits, parse_name

from .compress import progress

DATASETS = ("ntu60", "ntu120", "demo")


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_pose_arrays(d: Any, source: str | os.PathLike, *, ntu_name: bool = True) -> Layout:
    """Check one pose dict / annotation's arrays and return its layout.

    Checks: a string ``frame_dir`` (an NTU name unless ``ntu_name=False``); ``keypoint`` a float
    array ``[M >= 1, T >= 1, V, C in (2, 3)]``; a known layout agreeing with V (inferred from V when
    there is no ``layout`` key); ``total_frames == T``; ``keypoint_score`` [M, T, V] (required
    when C == 2), ``keypoint3d`` [M, T, V, 3] and ``present`` [M, T] bool when present; finite
    values; ``img_shape`` / ``original_shape`` two positive ints when present.  Raises
    ``BadSampleError(source, "<frame_dir>: <problem>")``.
    """
    if not isinstance(d, dict):
        raise BadSampleError(source, f"expected a dict per sample, got {type(d).__name__}")
    name = d.get("frame_dir")
    if not isinstance(name, str):
        raise BadSampleError(source, f"sample without a string 'frame_dir' ({name!r})")

    def bad(problem: str) -> BadSampleError:
        return BadSampleError(source, f"{name}: {problem}")

    if ntu_name and not is_valid_name(name):
        raise bad("frame_dir is not an NTU sample name (SsssCcccPpppRrrrAaaa)")
    kp = d.get("keypoint")
    if not isinstance(kp, np.ndarray) or kp.ndim != 4 or kp.dtype.kind != "f":
        got = f"{kp.dtype} {kp.shape}" if isinstance(kp, np.ndarray) else type(kp).__name__
        raise bad(f"keypoint must be a float array [M, T, V, C], got {got}")
    M, T, V, C = kp.shape
    if M < 1 or T < 1:
        raise bad(f"keypoint {kp.shape} has no person or no frame")
    if C not in (2, 3):
        raise bad(f"keypoint has {C} coordinates per joint (expected 2 or 3)")
    try:
        layout = get_layout(d["layout"] if "layout" in d else V)
    except (ValueError, TypeError) as exc:
        raise bad(str(exc)) from None
    if layout.num_joints != V:
        raise bad(f"layout {layout.name} has {layout.num_joints} joints, keypoint has {V}")
    tf = d.get("total_frames")
    if not _is_int(tf) or tf != T:
        raise bad(f"total_frames {tf!r} does not match keypoint's T = {T}")
    if C == 2 and "keypoint_score" not in d:
        raise bad("keypoint_score is missing")
    # 3D joints keep the sensor's layout when the 2D keypoints were converted (``layout3d``).
    V3 = get_layout(d["layout3d"]).num_joints if "layout3d" in d else V
    expected = {"keypoint_score": (M, T, V), "keypoint3d": (M, T, V3, 3), "present": (M, T)}
    for key, shape in expected.items():
        if key not in d:
            continue
        arr = d[key]
        kind = "b" if key == "present" else "f"
        if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype.kind != kind:
            got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise bad(
                f"{key} must be {'bool' if kind == 'b' else 'float'} {list(shape)}, got {got}"
            )
    if "frame_inds" in d:
        fi = d["frame_inds"]
        if (
            not isinstance(fi, np.ndarray)
            or fi.shape != (T,)
            or fi.dtype.kind not in "iu"
            or (fi.size and (fi[0] < 0 or (np.diff(fi) <= 0).any()))
        ):
            raise bad(f"frame_inds must be {T} increasing non-negative video frame indices")
    for key in ("keypoint", "keypoint_score", "keypoint3d"):
        if key in d and not np.isfinite(d[key]).all():
            raise bad(f"{key} has non-finite values")
    for key in ("img_shape", "original_shape"):
        if key in d:
            shp = d[key]
            if not (
                isinstance(shp, tuple | list)
                and len(shp) == 2
                and all(_is_int(s) and s > 0 for s in shp)
            ):
                raise bad(f"{key} must be (height, width), got {shp!r}")
    return layout


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
    if not _is_int(label) or label < 0:
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


def build_annotations(
    shards: Sequence[str | os.PathLike],
    dataset: str,
    benchmarks: Sequence[str],
    skip: SkipLog,
    skipped_before: Collection[str] = frozenset(),
    pose_layout: str | None = None,
) -> dict[str, Any]:
    """Merge denoised shard pickles into ``{'split': ..., 'annotations': [...]}``.

    Bad samples (invalid arrays, non-NTU names, a sample in two shards) go through ``skip``;
    a duplicated sample is removed entirely under ``skip``.  Samples in ``skipped_before`` are
    left out.  A shard that is not a readable list of dicts is always an error.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} (expected one of {DATASETS})")
    anns: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    duplicated: set[str] = set()
    for shard in progress(shards, total=len(shards), desc="annotations"):
        poses = load_pickle(shard)
        if not isinstance(poses, list):
            raise BadSampleError(
                shard, f"expected a list of pose dicts, got {type(poses).__name__}"
            )
        for pose in poses:
            name = str(pose.get("frame_dir", "?")) if isinstance(pose, dict) else "?"
            try:
                ann = to_annotation(pose, shard, pose_layout)
                if name in anns or name in duplicated:
                    first = origin.get(name, "an earlier shard")
                    raise BadSampleError(shard, f"{name}: duplicate sample (also in {first})")
            except BadSampleError as exc:
                skip.handle(name, exc)
                if name in anns:
                    del anns[name]
                    duplicated.add(name)
                continue
            if name not in skipped_before:
                anns[name] = ann
                origin[name] = str(shard)
    names = sorted(anns)
    splits = make_splits(names, dataset, benchmarks, exclude_missing=dataset != "demo")
    in_split = set().union(*splits.values()) if splits else set()
    return {"split": splits, "annotations": [anns[n] for n in names if n in in_split]}


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
        help="skip TSVs of earlier stages (merged into --skipped-out)",
    )
    p.add_argument("--skipped-out", type=Path, help="merged skip TSV (always written when given)")
    p.add_argument("--on-bad-sample", choices=("fail", "skip"), default="fail")
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
        )
    except (OSError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except BadSampleError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
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
