"""Running a model: device placement and bf16 autocast, input preparation (the model's named
inputs, from its registered contract, with views flattened), naming the model's heads, and
multi-view inference into a scores dict.  Batches come from the data package's one ``collate``
and pass its batch transform (on-device heatmaps) first.

Scores follow PYSKL's test protocol (DESIGN.md 3.8): a video is seen as ``V`` views (temporal
clips x optional horizontal flip); each view gets a softmax and the video's probability vector is
the mean over its views.

Scores dict (``predict_scores``; the file ``rgbpose test --out`` writes as a pickle of plain
types, read by ``rgbpose fuse``)::

    {'names': [str, ...], 'labels': int64 [N], 'probs': {head: float32 [N, K]},
     'logits': {head: float32 [N, K]}}

with ``head`` = the model's heads (its contract): the model name for a one-head model
('rgb_only', 'pose_only', 'posec3d'), 'rgb' and 'pose' for RGBPoseConv3D.  ``logits`` are the
raw logits averaged over the views (for logit-level fusions, as InfoGCN's ensemble).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rgbpose.data.batch import BatchTransform, batch_transform, collate

if TYPE_CHECKING:
    from rgbpose.engine.config import RunConfig


# ----------------------------------------------------------------------------- forward helpers
def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``precision == 'bf16'``; a no-op otherwise (CPU runs fp32)."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def input_keys(model: nn.Module) -> tuple[str, ...]:
    """The batch keys ``model`` is called with: its registered contract (a model made by
    ``rgbpose.models.build_model``; DDP-wrapped too), else its ``input_keys`` attribute."""
    inner = getattr(model, "module", model)
    spec = getattr(inner, "spec", None)
    if isinstance(spec, dict):
        from rgbpose.models.registry import get_entry  # noqa: PLC0415

        return get_entry(spec["model_name"]).contract(spec.get("overrides")).input_keys
    keys = getattr(inner, "input_keys", None)
    if keys:
        return tuple(keys)
    raise ValueError(
        f"{type(inner).__name__} declares no inputs: build it with rgbpose.models.build_model "
        "(a registered model) or give it an input_keys attribute"
    )


def prepare_inputs(
    batch: dict[str, Any], device: torch.device, keys: Sequence[str], channels_last: bool = False
) -> tuple[dict[str, torch.Tensor], int]:
    """The model inputs ``keys`` of ``batch`` on ``device`` with views flattened
    ([B, V, ...] -> [B*V, ...]), by name, and V."""
    inputs, views = {}, None
    for key in keys:
        if key not in batch:
            raise ValueError(
                f"the batch lacks the model input {key!r} (it has {sorted(batch)}): the data "
                "pipeline does not produce what the model takes"
            )
        x = batch[key]
        if views is None:
            views = int(x.shape[1])
        elif int(x.shape[1]) != views:
            raise ValueError(f"batch inputs disagree on the number of views: {key} {x.shape}")
        x = x.to(device, non_blocking=True).flatten(0, 1)
        if channels_last and x.dim() == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        inputs[key] = x
    if views is None:
        raise ValueError("the model declares no inputs")
    return inputs, views


def head_outputs(outputs: Any, head_name: str) -> dict[str, torch.Tensor]:
    """Name the logits a model returned.

    * a tensor: the one head, named ``head_name``;
    * a NamedTuple or dict with a ``logits`` entry: that entry is the one head, named
      ``head_name``; the other entries are for the model's loss only (e.g. InfoGCN's latent z);
    * any other NamedTuple or dict: one head per entry (RGBPoseConv3D: 'rgb', 'pose').
    """
    if isinstance(outputs, torch.Tensor):
        return {head_name: outputs}
    if hasattr(outputs, "_fields"):
        outputs = outputs._asdict()
    if isinstance(outputs, dict):
        return {head_name: outputs["logits"]} if "logits" in outputs else dict(outputs)
    raise TypeError(f"unsupported model output type {type(outputs).__name__}")


def fused_probs(heads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Softmax of every head, averaged (1:1 fusion for the two-stream model), in fp32."""
    probs = [torch.softmax(v.float(), dim=-1) for v in heads.values()]
    return torch.stack(probs).mean(0)


# ----------------------------------------------------------------------------- inference
@torch.no_grad()
def infer(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    device: torch.device,
    *,
    head_name: str = "logits",
    precision: str = "fp32",
    channels_last: bool = False,
    batch_transform: BatchTransform | None = None,
) -> dict[str, Any]:
    """Run ``model`` (in eval mode) over collated batches: the scores dict (module docstring),
    per video the mean over views of the softmax (``probs``) and of the logits (``logits``)."""
    keys = input_keys(model)
    was_training = model.training
    model.eval()
    names: list[str] = []
    labels: list[np.ndarray] = []
    out: dict[str, dict[str, list[np.ndarray]]] = {"probs": {}, "logits": {}}
    try:
        for batch in batches:
            if batch_transform is not None:
                batch = batch_transform(batch, device)
            inputs, views = prepare_inputs(batch, device, keys, channels_last)
            with autocast(device, precision):
                outputs = model(**inputs)
            for head, logits in head_outputs(outputs, head_name).items():
                z = logits.float()
                for kind, v in (("probs", torch.softmax(z, dim=-1)), ("logits", z)):
                    v = v.view(-1, views, v.shape[-1]).mean(1)
                    out[kind].setdefault(head, []).append(v.cpu().numpy().astype(np.float32))
            labels.append(np.asarray(batch["label"], dtype=np.int64).reshape(-1))
            names.extend(str(n) for n in batch.get("frame_dir", [""] * len(labels[-1])))
    finally:
        model.train(was_training)
    joined = {k: {h: np.concatenate(v) for h, v in t.items()} for k, t in out.items()}
    label_arr = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return {"names": names, "labels": label_arr, **joined}


def predict_scores(
    model: nn.Module,
    dataset: Dataset,
    *,
    head_name: str = "logits",
    batch_size: int = 1,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
    batch_transform: BatchTransform | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Scores dict for every item of ``dataset`` (in dataset order): ``{'names', 'labels' int64
    [N], 'probs': {head: float32 [N, K]}, 'logits': {head: float32 [N, K]}}``.

    Views ([B, V, ...] inputs: clips x flips) are flattened for the forward pass and the softmax
    probabilities averaged per video. ``head_name`` names the single output of a unimodal model.
    """
    device = torch.device(device) if device is not None else default_device()
    place_model(model, device, channels_last)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn or collate,
        pin_memory=device.type == "cuda",
    )
    if progress is None:
        progress = sys.stderr.isatty()
    batches: Iterable[dict[str, Any]] = loader
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        batches = tqdm(loader, desc="test", unit="batch")
    return infer(
        model,
        batches,
        device,
        head_name=head_name,
        precision=precision,
        channels_last=channels_last,
        batch_transform=batch_transform,
    )


def place_model(model: nn.Module, device: torch.device, channels_last: bool = False) -> None:
    """Move ``model`` to ``device``, in channels_last_3d memory format when asked."""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)


def device_transform(cfg: RunConfig) -> BatchTransform | None:
    """The data side's batch transform of the run config's pipeline (on-device heatmaps with
    ``data.heatmaps_on_device``; None when there is nothing to do)."""
    return batch_transform(cfg.data)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
