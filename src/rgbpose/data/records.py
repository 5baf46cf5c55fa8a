"""Annotation records: load a split from the annotation pickle, check every record before any
item is loaded, and hash the records a run trains on (the resume fingerprint).

``validate_annotations`` is the data side's contract of an annotation record (DESIGN.md 2.3);
``rgbpose.preprocess.annotations`` writes records that satisfy it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rgbpose.io import BadSampleError, load_pickle
from rgbpose.layouts import Layout, get_layout

log = logging.getLogger(__name__)


def load_split(
    ann_file: str | os.PathLike | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    split: str | None,
) -> tuple[list[dict[str, Any]], str]:
    """Annotations of ``split`` (all without a split) and a name for error messages."""
    if isinstance(ann_file, Mapping | list | tuple):
        data, source = ann_file, "<annotations>"
    else:
        source = str(ann_file)
        data = load_pickle(ann_file)
    if isinstance(data, Mapping):
        if "annotations" not in data:
            raise BadSampleError(source, "annotation pickle has no 'annotations' key")
        annos, splits = list(data["annotations"]), data.get("split", {})
    elif isinstance(data, list | tuple):
        annos, splits = list(data), {}
    else:
        raise BadSampleError(source, f"expected a dict or list, got {type(data).__name__}")
    if split is None:
        return annos, source
    if split not in splits:
        raise ValueError(f"{source}: no split {split!r} (available: {sorted(splits)})")
    wanted = set(splits[split])
    selected = [a for a in annos if a.get("frame_dir") in wanted]
    if len(selected) < len(wanted):
        log.warning(
            "%s: %d of %d names in split %r have no annotation (excluded upstream)",
            source,
            len(wanted) - len(selected),
            len(wanted),
            split,
        )
    return selected, source


def resolve_layout(cfg: Any, annos: list[dict[str, Any]], source: str) -> Layout:
    if getattr(cfg, "layout", None) is not None:
        return get_layout(cfg.layout)
    for ann in annos:
        if ann.get("layout"):
            return get_layout(str(ann["layout"]))
        kp = ann.get("keypoint")
        if kp is not None and np.ndim(kp) == 4:
            try:
                return get_layout(int(np.shape(kp)[2]))
            except ValueError as exc:
                raise BadSampleError(source, str(exc)) from exc
    return get_layout("coco17")


def _sample_problems(ann: Any, cfg: Any, layout: Layout, num_classes: int | None) -> str | None:
    """The first problem of one annotation record (None when it is usable)."""
    if not isinstance(ann, Mapping):
        return f"expected a dict per sample, got {type(ann).__name__}"
    name = ann.get("frame_dir")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        return f"invalid sample name {name!r}"
    label = ann.get("label")
    if not isinstance(label, numbers.Integral) or isinstance(label, bool):
        return f"label {label!r} is not an integer"
    if label < 0 or (num_classes is not None and label >= num_classes):
        classes = "" if num_classes is None else f" for {num_classes} classes"
        return f"label {label} is out of range{classes}"
    total = ann.get("total_frames")
    if not isinstance(total, numbers.Integral) or isinstance(total, bool) or total < 1:
        return f"total_frames {total!r} is not a positive integer"
    shp = ann.get("img_shape")
    if not (
        isinstance(shp, tuple | list)
        and len(shp) == 2
        and all(isinstance(v, numbers.Integral) and v > 0 for v in shp)
    ):
        return f"img_shape {shp!r} is not (height, width)"
    if "keypoint" not in ann:
        return "annotation has no 'keypoint'" if getattr(cfg, "uses_pose", True) else None
    kp_shape = np.shape(ann["keypoint"])
    if len(kp_shape) != 4 or kp_shape[3] not in (2, 3):
        return f"keypoint shape {kp_shape} is not [M, T, V, C] with C 2 or 3"
    _, t, v, c = kp_shape
    if c != 2:
        return f"keypoint shape {kp_shape} holds 3D joints; the 2D pipeline needs [M, T, V, 2]"
    if v != layout.num_joints:
        return f"keypoint has {v} joints, layout {layout.name} has {layout.num_joints}"
    if t != total:
        return f"keypoint has {t} frames, total_frames is {total}"
    if "keypoint_score" in ann and np.shape(ann["keypoint_score"]) != kp_shape[:3]:
        return (
            f"keypoint_score shape {np.shape(ann['keypoint_score'])} does not match {kp_shape[:3]}"
        )
    if "frame_inds" in ann and np.shape(ann["frame_inds"]) != (total,):
        return f"frame_inds shape {np.shape(ann['frame_inds'])} is not ({total},)"
    return None


def validate_annotations(
    annos: Sequence[Any],
    source: str,
    cfg: Any,
    layout: Layout,
    num_classes: int | None = None,
) -> None:
    """Check every record before any item is loaded: a usable name, an integer label in
    ``[0, num_classes)`` (``>= 0`` without ``num_classes``), positive ``total_frames``,
    ``img_shape`` (h, w), and when there are keypoints (required for pose modalities)
    ``keypoint`` ``[M, T, V, 2]`` with ``T == total_frames`` and V of ``layout``,
    ``keypoint_score`` ``[M, T, V]`` and ``frame_inds`` ``[T]`` when present.

    Raises ``BadSampleError(source, "sample <name>: <problem> (and N more bad samples)")`` on
    the first bad record, so a broken annotation file stops a job before it trains or tests.
    """
    bad: list[tuple[str, str]] = []
    for ann in annos:
        problem = _sample_problems(ann, cfg, layout, num_classes)
        if problem is not None:
            name = ann.get("frame_dir", "?") if isinstance(ann, Mapping) else "?"
            bad.append((str(name), problem))
    if bad:
        name, problem = bad[0]
        more = f" (and {len(bad) - 1} more bad samples)" if len(bad) > 1 else ""
        raise BadSampleError(source, f"sample {name}: {problem}{more}")


def _hash_value(h: Any, value: Any) -> None:
    """Feed one value to ``h`` in a canonical, length-prefixed form (arrays by dtype, shape and
    bytes; scalars, strings and sequences as JSON with numpy scalars made plain)."""
    if isinstance(value, np.ndarray) and value.dtype != object:
        arr = np.ascontiguousarray(value)
        head = f"A{arr.dtype.str}{arr.shape}".encode()
        h.update(len(head).to_bytes(8, "little") + head + arr.nbytes.to_bytes(8, "little"))
        h.update(arr.data)
        return
    text = json.dumps(_plain_value(value), sort_keys=True).encode()
    h.update(b"J" + len(text).to_bytes(8, "little") + text)


def _plain_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_plain_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


#: annotation fields that define what a sample feeds to a model (hashed in this order)
HASHED_FIELDS = (
    "frame_dir", "label", "total_frames", "img_shape", "layout", "keypoint", "keypoint_score",
    "frame_inds",
)  # fmt: skip


def annotations_hash(annos: Sequence[Mapping[str, Any]]) -> str:
    """sha256 hex of the samples' :data:`HASHED_FIELDS`, in sample order; independent of the
    records' key order and of any other key."""
    h = hashlib.sha256(b"rgbpose-annotations-v1\0")
    h.update(len(annos).to_bytes(8, "little"))
    for ann in annos:
        for key in HASHED_FIELDS:
            if key in ann:
                h.update(b"+" + key.encode())
                _hash_value(h, ann[key])
            else:
                h.update(b"-" + key.encode())
    return h.hexdigest()
