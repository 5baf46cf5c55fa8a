"""Late fusion of score files and the final results table (``fusion.txt`` / ``fusion.json``).

Late fusion is a weighted sum of per-video probabilities (DESIGN.md 3.8: 1:1 for RGB:Pose).
Rows of the report:

    rgb_only        the RGB model alone            (scores file given as rgb_only=...)
    pose_only       the pose model alone           (pose_only=...)
    late_fusion     w_rgb * rgb_only + w_pose * pose_only          (needs both)
    rgbpose_rgb     RGBPoseConv3D, RGB head        (rgbpose=...)
    rgbpose_pose    RGBPoseConv3D, pose head
    rgbpose_fusion  w_rgb * rgb head + w_pose * pose head

Missing inputs are allowed: the rows that can be computed from the files given are reported and
the others left out (of the JSON; the table marks them "n/a"). All files must score the same
videos (same names, any order; rows are aligned by name) with the same labels.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rgbpose.engine.evaluate import metrics
from rgbpose.io import BadSampleError, load_pickle, write_text_atomic

ROWS = ("rgb_only", "pose_only", "late_fusion", "rgbpose_rgb", "rgbpose_pose", "rgbpose_fusion")
INPUTS = ("rgb_only", "pose_only", "rgbpose")
ROW_TITLES = {
    "rgb_only": "RGB only",
    "pose_only": "Pose only",
    "late_fusion": "Late fusion (RGB + Pose)",
    "rgbpose_rgb": "RGBPoseConv3D, RGB head",
    "rgbpose_pose": "RGBPoseConv3D, Pose head",
    "rgbpose_fusion": "RGBPoseConv3D, fusion",
}
#: PYSKL's reported NTU 60 X-Sub top-1 (%), 1-clip / 10-clip (DESIGN.md 3.8)
REFERENCE_NTU60_XSUB = {
    "rgb_only": (94.4, 95.1),
    "pose_only": (92.9, 93.2),
    "late_fusion": (95.8, 96.1),
    "rgbpose_rgb": (96.2, 96.4),
    "rgbpose_pose": (95.9, 96.1),
    "rgbpose_fusion": (96.6, 96.9),
}


def load_scores(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a scores pickle written by ``rgbpose test``."""
    s = load_pickle(path)
    if not isinstance(s, dict) or not {"names", "labels", "probs"} <= set(s):
        raise BadSampleError(path, "not a scores file (needs keys names, labels, probs)")
    names = [str(n) for n in s["names"]]
    labels = np.asarray(s["labels"], np.int64).reshape(-1)
    if not isinstance(s["probs"], dict) or not s["probs"]:
        raise BadSampleError(path, "'probs' must be a non-empty {head: [N, K]} mapping")
    probs = {str(h): np.asarray(p, np.float64) for h, p in s["probs"].items()}
    for h, p in probs.items():
        if p.ndim != 2 or p.shape[0] != len(names) or labels.shape[0] != len(names):
            raise BadSampleError(
                path, f"head {h!r}: probs {p.shape}, labels {labels.shape}, {len(names)} names"
            )
    if len(set(names)) != len(names):
        raise BadSampleError(path, "duplicate video names")
    return {"names": names, "labels": labels, "probs": probs}


def align(scores: Mapping[str, dict[str, Any]], paths: Mapping[str, str]) -> dict[str, Any]:
    """Reorder every scores dict to the first one's video order.

    Raises ``ValueError`` naming the two files and the first names found in one but not the
    other, or the first video whose labels disagree.
    """
    keys = list(scores)
    ref_key = keys[0]
    ref = scores[ref_key]
    out = {ref_key: ref}
    for key in keys[1:]:
        s = scores[key]
        if s["names"] != ref["names"]:
            only_ref = [n for n in ref["names"] if n not in set(s["names"])]
            only_s = [n for n in s["names"] if n not in set(ref["names"])]
            if only_ref or only_s:
                raise ValueError(
                    f"score files {paths[ref_key]} and {paths[key]} do not cover the same videos: "
                    f"first only in {paths[ref_key]}: {only_ref[:3]}; "
                    f"first only in {paths[key]}: {only_s[:3]}"
                )
            pos = {n: i for i, n in enumerate(s["names"])}
            idx = np.array([pos[n] for n in ref["names"]])
            s = {
                "names": list(ref["names"]),
                "labels": s["labels"][idx],
                "probs": {h: p[idx] for h, p in s["probs"].items()},
            }
        bad = np.nonzero(s["labels"] != ref["labels"])[0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"score files {paths[ref_key]} and {paths[key]} disagree on the label of "
                f"{ref['names'][i]}: {ref['labels'][i]} vs {s['labels'][i]}"
            )
        out[key] = s
    return out


def weighted_sum(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum_i w_i * probs_i`` (same shapes required)."""
    if len(probs) != len(weights) or not probs:
        raise ValueError("need one weight per probability array")
    shapes = {p.shape for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"probability arrays differ in shape: {sorted(shapes)}")
    return sum(float(w) * np.asarray(p, np.float64) for p, w in zip(probs, weights))


def _single_head(s: dict[str, Any], preferred: Sequence[str], path: str) -> np.ndarray:
    for h in preferred:
        if h in s["probs"]:
            return s["probs"][h]
    if len(s["probs"]) == 1:
        return next(iter(s["probs"].values()))
    raise BadSampleError(
        path, f"expected one of the heads {list(preferred)}, has {list(s['probs'])}"
    )


def fusion_report(
    paths: Mapping[str, str | os.PathLike], weights: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Metrics of every computable row of ``ROWS`` from score files keyed by ``INPUTS``.

    ``weights``: ``rgb_only``/``pose_only`` weight the late fusion, ``rgb``/``pose`` the two
    heads of RGBPoseConv3D; all default to 1 (DESIGN.md: 1:1). Returns
    ``{row: {'top1', 'top5', 'mean_class'}, ..., 'num_val_samples': N}`` (fractions).
    """
    unknown = sorted(set(paths) - set(INPUTS))
    if unknown:
        raise ValueError(f"unknown score inputs {unknown}; expected some of {list(INPUTS)}")
    if not paths:
        raise ValueError("no score files given")
    w = {"rgb_only": 1.0, "pose_only": 1.0, "rgb": 1.0, "pose": 1.0, **(weights or {})}
    bad_w = sorted(set(w) - {"rgb_only", "pose_only", "rgb", "pose"})
    if bad_w:
        raise ValueError(f"unknown weight keys {bad_w}; expected rgb_only, pose_only, rgb, pose")
    str_paths = {k: str(v) for k, v in paths.items()}
    ordered = [k for k in INPUTS if k in paths]
    scores = align({k: load_scores(str_paths[k]) for k in ordered}, str_paths)
    labels = scores[ordered[0]]["labels"]
    rows: dict[str, np.ndarray] = {}
    if "rgb_only" in scores:
        rows["rgb_only"] = _single_head(scores["rgb_only"], ("rgb_only",), str_paths["rgb_only"])
    if "pose_only" in scores:
        rows["pose_only"] = _single_head(
            scores["pose_only"], ("pose_only", "posec3d"), str_paths["pose_only"]
        )
    if "rgb_only" in rows and "pose_only" in rows:
        rows["late_fusion"] = weighted_sum(
            [rows["rgb_only"], rows["pose_only"]], [w["rgb_only"], w["pose_only"]]
        )
    if "rgbpose" in scores:
        heads = scores["rgbpose"]["probs"]
        missing = [h for h in ("rgb", "pose") if h not in heads]
        if missing:
            raise BadSampleError(
                str_paths["rgbpose"], f"RGBPoseConv3D scores lack head(s) {missing}"
            )
        rows["rgbpose_rgb"], rows["rgbpose_pose"] = heads["rgb"], heads["pose"]
        rows["rgbpose_fusion"] = weighted_sum([heads["rgb"], heads["pose"]], [w["rgb"], w["pose"]])
    report: dict[str, Any] = {r: metrics(rows[r], labels) for r in ROWS if r in rows}
    report["num_val_samples"] = int(len(labels))
    return report


def format_table(report: Mapping[str, Any], title: str = "") -> str:
    """Readable aligned table (percent) plus the reference NTU 60 X-Sub numbers."""
    width = max(len(t) for t in ROW_TITLES.values())
    lines = []
    if title:
        lines += [title, ""]
    lines.append(f"Results on {report.get('num_val_samples', '?')} test videos (%)")
    lines.append(f"{'model':<{width}}  {'top-1':>7}  {'top-5':>7}  {'mean-class':>10}")
    lines.append("-" * (width + 32))
    for r in ROWS:
        m = report.get(r)
        if m is None:
            lines.append(f"{ROW_TITLES[r]:<{width}}  {'n/a':>7}  {'n/a':>7}  {'n/a':>10}")
        else:
            lines.append(
                f"{ROW_TITLES[r]:<{width}}  {m['top1'] * 100:7.2f}  {m['top5'] * 100:7.2f}  "
                f"{m['mean_class'] * 100:10.2f}"
            )
    lines += [
        "",
        "Reference: PYSKL RGBPoseConv3D paper numbers, NTU RGB+D 60 X-Sub top-1 (%)",
        "(8 GPUs, full data; not comparable to a demo/synthetic run)",
        f"{'model':<{width}}  {'1-clip':>7}  {'10-clip':>7}",
        "-" * (width + 20),
    ]
    for r in ROWS:
        one, ten = REFERENCE_NTU60_XSUB[r]
        lines.append(f"{ROW_TITLES[r]:<{width}}  {one:7.1f}  {ten:7.1f}")
    return "\n".join(lines) + "\n"


def _key_values(items: Sequence[str], what: str, as_float: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{what} expects key=value, got {item!r}")
        out[key] = float(value) if as_float else value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgbpose fuse",
        description="Late-fuse score files (weighted sum of per-video probabilities) and write "
        "the results table. Inputs may be partial (e.g. only pose_only=...).",
    )
    p.add_argument(
        "--scores", nargs="+", required=True, metavar="NAME=PKL",
        help="score files: rgb_only=A.pkl pose_only=B.pkl rgbpose=C.pkl (any subset)",
    )  # fmt: skip
    p.add_argument("-o", "--out", required=True, help="fusion.txt (readable table)")
    p.add_argument("--json", default=None, help="fusion.json (metrics as fractions)")
    p.add_argument(
        "--weights", nargs="*", default=[], metavar="NAME=W",
        help="rgb_only=1 pose_only=1 (late fusion), rgb=1 pose=1 (RGBPoseConv3D heads)",
    )  # fmt: skip
    p.add_argument("--title", default="", help="first line of fusion.txt")
    return p


def cli(argv: list[str] | None = None) -> int:
    """``rgbpose fuse``: write fusion.txt (and fusion.json)."""
    args = build_parser().parse_args(argv)
    paths = _key_values(args.scores, "--scores", as_float=False)
    weights = _key_values(args.weights, "--weights", as_float=True)
    report = fusion_report(paths, weights)
    text = format_table(report, args.title)
    write_text_atomic(args.out, text)
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    print(text, end="")
    return 0
