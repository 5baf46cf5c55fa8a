"""Late fusion of the streams' score files and the results table (``fusion.txt`` / ``fusion.json``).

Rows, in this order:

* every stream, from its scores file (``rgbpose test``): one row named after the stream, or, for
  a model with several heads, one row per head named ``<stream>_<head>`` (RGBPoseConv3D stream
  ``rgbpose``: ``rgbpose_rgb``, ``rgbpose_pose``);
* every declared fusion: a weighted sum over streams (a stream stands for its prediction: its
  only head, or the mean of its heads) and stream heads (``stream.head``), of softmax
  probabilities (``scores: softmax``, PYSKL's late fusion, DESIGN.md 3.8: 1:1 for RGB:Pose) or
  of raw logits (``scores: logits``, InfoGCN's ensemble), both averaged over the test views.

The demo's six rows keep PYSKL's names and titles (``rgb_only`` ... ``rgbpose_fusion``) and are
shown beside PYSKL's NTU 60 X-Sub numbers.  All files must score the same videos (same names,
any order; rows are aligned by name) with the same labels.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rgbpose.engine.metrics import metrics
from rgbpose.io import BadSampleError, load_pickle, write_text_atomic

#: titles of the rows of the default RGBPoseConv3D setup (a declared ``title`` wins)
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
SCORE_TYPES = ("softmax", "logits")


def load_scores(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a scores pickle written by ``rgbpose test`` (``logits`` optional)."""
    s = load_pickle(path)
    if not isinstance(s, dict) or not {"names", "labels", "probs"} <= set(s):
        raise BadSampleError(path, "not a scores file (needs keys names, labels, probs)")
    names = [str(n) for n in s["names"]]
    labels = np.asarray(s["labels"], np.int64).reshape(-1)
    out: dict[str, Any] = {"names": names, "labels": labels}
    for kind in ("probs", "logits"):
        if kind not in s:
            continue
        if not isinstance(s[kind], dict) or not s[kind]:
            raise BadSampleError(path, f"{kind!r} must be a non-empty {{head: [N, K]}} mapping")
        table = {str(h): np.asarray(p, np.float64) for h, p in s[kind].items()}
        for h, p in table.items():
            if p.ndim != 2 or p.shape[0] != len(names) or labels.shape[0] != len(names):
                raise BadSampleError(
                    path, f"head {h!r}: {kind} {p.shape}, labels {labels.shape}, {len(names)} names"
                )
        out[kind] = table
    if len(set(names)) != len(names):
        raise BadSampleError(path, "duplicate video names")
    return out


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
                **{
                    kind: {h: p[idx] for h, p in s[kind].items()}
                    for kind in ("probs", "logits")
                    if kind in s
                },
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


def stream_rows(stream: str, scores: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The rows of one stream: its only head as ``stream``, else ``stream_<head>`` per head."""
    heads = scores["probs"]
    if len(heads) == 1:
        return {stream: next(iter(heads.values()))}
    return {f"{stream}_{h}": p for h, p in heads.items()}


def resolve(ref: str, scores: Mapping[str, Any], kind: str, path: str) -> np.ndarray:
    """The scores ``ref`` stands for: ``stream.head`` that head, ``stream`` its only head or
    the mean of its heads; ``kind`` 'softmax' (probabilities) or 'logits'."""
    stream, _, head = ref.partition(".")
    key = "probs" if kind == "softmax" else "logits"
    if key not in scores:
        raise BadSampleError(path, "has no logits (written by an older rgbpose test; re-test)")
    table = scores[key]
    if head:
        if head not in table:
            raise BadSampleError(path, f"no head {head!r} for {ref!r} (heads: {list(table)})")
        return table[head]
    return np.mean(list(table.values()), axis=0)


def fusion_report(
    paths: Mapping[str, str | os.PathLike],
    fusions: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Metrics of every stream row and every fusion (see the module docstring).

    ``paths``: stream -> scores file; ``fusions``: name -> ``{'weights': {ref: w}, 'scores':
    'softmax' | 'logits'}``.  Returns ``{row: {'top1', 'top5', 'mean_class'}, ...,
    'num_val_samples': N}`` (fractions), streams first, then fusions in declared order.
    """
    if not paths:
        raise ValueError("no score files given")
    str_paths = {k: str(v) for k, v in paths.items()}
    scores = align({k: load_scores(p) for k, p in str_paths.items()}, str_paths)
    labels = next(iter(scores.values()))["labels"]
    rows: dict[str, np.ndarray] = {}
    pending = dict(fusions or {})
    done: set[str] = set()
    for stream, s in scores.items():  # a fusion follows the last of the streams it fuses
        rows.update(stream_rows(stream, s))
        done.add(stream)
        for name in [n for n, f in pending.items() if _uses(f) <= done]:
            rows[name] = _fuse(name, pending.pop(name), rows, scores, str_paths)
    for name, spec in pending.items():  # fusions naming streams without a score file: errors
        rows[name] = _fuse(name, spec, rows, scores, str_paths)
    report: dict[str, Any] = {r: metrics(p, labels) for r, p in rows.items()}
    report["num_val_samples"] = int(len(labels))
    return report


def _uses(spec: Mapping[str, Any]) -> set[str]:
    return {ref.partition(".")[0] for ref in spec.get("weights") or {}}


def _fuse(
    name: str,
    spec: Mapping[str, Any],
    rows: Mapping[str, np.ndarray],
    scores: Mapping[str, Any],
    str_paths: Mapping[str, str],
) -> np.ndarray:
    """One fusion row: the weighted sum its spec declares (errors name the fusion)."""
    kind = spec.get("scores", "softmax")
    if kind not in SCORE_TYPES:
        raise ValueError(f"fusion {name!r}: scores must be one of {SCORE_TYPES}, got {kind!r}")
    if name in rows:
        raise ValueError(f"fusion {name!r}: a stream row has this name")
    weights = spec.get("weights") or {}
    if not weights:
        raise ValueError(f"fusion {name!r} has no weights")
    parts = []
    for ref in weights:
        stream = ref.partition(".")[0]
        if stream not in scores:
            raise ValueError(
                f"fusion {name!r}: unknown stream {stream!r} in {ref!r} "
                f"(score files given: {', '.join(scores)})"
            )
        parts.append(resolve(ref, scores[stream], kind, str_paths[stream]))
    return weighted_sum(parts, [float(w) for w in weights.values()])


def format_table(
    report: Mapping[str, Any], title: str = "", titles: Mapping[str, str] | None = None
) -> str:
    """Readable aligned table (percent), plus PYSKL's NTU 60 X-Sub numbers of the rows that
    have one.  Row titles: ``titles`` (stream titles also name their head rows), the default
    titles of the six RGBPoseConv3D rows, else the row name."""
    rows = [r for r in report if r != "num_val_samples"]
    named = {**ROW_TITLES, **(titles or {})}
    for r in rows:  # a multi-head stream's title names its head rows: "<title>, <head> head"
        stream, _, head = r.rpartition("_")
        if r not in named and stream in (titles or {}):
            named[r] = f"{titles[stream]}, {head} head"
    label = {r: named.get(r, r) for r in rows}
    width = max([len(t) for t in label.values()] + [5])
    lines = [title, ""] if title else []
    lines.append(f"Results on {report.get('num_val_samples', '?')} test videos (%)")
    lines.append(f"{'model':<{width}}  {'top-1':>7}  {'top-5':>7}  {'mean-class':>10}")
    lines.append("-" * (width + 32))
    for r in rows:
        m = report[r]
        lines.append(
            f"{label[r]:<{width}}  {m['top1'] * 100:7.2f}  {m['top5'] * 100:7.2f}  "
            f"{m['mean_class'] * 100:10.2f}"
        )
    refs = [r for r in rows if r in REFERENCE_NTU60_XSUB]
    if refs:
        lines += [
            "",
            "Reference: PYSKL RGBPoseConv3D paper numbers, NTU RGB+D 60 X-Sub top-1 (%)",
            "(8 GPUs, full data; not comparable to a demo/synthetic run)",
            f"{'model':<{width}}  {'1-clip':>7}  {'10-clip':>7}",
            "-" * (width + 20),
        ]
        for r in refs:
            one, ten = REFERENCE_NTU60_XSUB[r]
            lines.append(f"{label[r]:<{width}}  {one:7.1f}  {ten:7.1f}")
    return "\n".join(lines) + "\n"


def _key_values(items: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{what} expects key=value, got {item!r}")
        out[key] = value
    return out


def parse_fusion(text: str) -> dict[str, Any]:
    """``--fusion`` value ``[logits:]ref:w,ref:w`` -> ``{'weights', 'scores'}``."""
    kind, body = "softmax", text
    for t in SCORE_TYPES:
        if text.startswith(t + ":"):
            kind, body = t, text[len(t) + 1 :]
    weights = {}
    for part in body.split(","):
        ref, sep, w = part.rpartition(":")
        try:
            weights[ref] = float(w)
        except ValueError:
            sep = ""
        if not sep or not ref:
            raise ValueError(f"--fusion expects [logits:]stream[.head]:weight,..., got {text!r}")
    return {"weights": weights, "scores": kind}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgbpose fuse",
        description="Report every stream's score file and late-fuse them (weighted sums of "
        "per-video softmax probabilities or logits) into the results table.",
    )
    p.add_argument(
        "--scores", nargs="+", required=True, metavar="STREAM=PKL",
        help="score files of the streams: rgb_only=A.pkl pose_only=B.pkl rgbpose=C.pkl",
    )  # fmt: skip
    p.add_argument("-o", "--out", required=True, help="fusion.txt (readable table)")
    p.add_argument("--json", default=None, help="fusion.json (metrics as fractions)")
    p.add_argument(
        "--fusion", nargs="*", default=[], metavar="NAME=SPEC",
        help="a fusion: late_fusion=rgb_only:1,pose_only:1 or x=logits:a.rgb:1.5,b:1",
    )  # fmt: skip
    p.add_argument(
        "--spec", default=None,
        help='JSON {"fusions": {name: {"weights": {ref: w}, "scores": "softmax"}}, '
        '"titles": {row: title}} (the workflow passes the dataset\'s fusions this way)',
    )  # fmt: skip
    p.add_argument("--title", default="", help="first line of fusion.txt")
    return p


def cli(argv: list[str] | None = None) -> int:
    """``rgbpose fuse``: write fusion.txt (and fusion.json)."""
    args = build_parser().parse_args(argv)
    paths = _key_values(args.scores, "--scores")
    spec = json.loads(args.spec) if args.spec else {}
    if not isinstance(spec, dict):
        raise ValueError("--spec must be a JSON object")
    fusions = dict(spec.get("fusions") or {})
    fusions.update({k: parse_fusion(v) for k, v in _key_values(args.fusion, "--fusion").items()})
    report = fusion_report(paths, fusions)
    text = format_table(report, args.title, spec.get("titles"))
    write_text_atomic(args.out, text)
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    print(text, end="")
    return 0
