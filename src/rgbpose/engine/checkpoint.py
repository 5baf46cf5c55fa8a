"""Checkpoint I/O: reading (``weights_only``, errors naming the file), rebuilding the model a
checkpoint holds, strict ``--init`` loading, atomic saving, the tensors a checkpoint stores (CPU
state dicts, global RNG states as uint8 tensors), and ``rgbpose train``'s checkpoints: the
``meta`` of ``best.pt`` and the final checkpoint, and ``last.pt``, the training state a rerun
resumes from.

When a run resumes (``resume_state``):

* Resume state is reused only when everything that defines the run is unchanged. ``last.pt`` stores
  a fingerprint (``rgbpose.engine.runstate``): the config (minus ``num_workers`` and
  ``time_budget_s``), the training and validation sets' sizes and content hashes
  (``dataset.content_hash()``: sha256 of every sample's name, label, keypoints, scores,
  total_frames, frame_inds...; datasets without that method count by size only; video bytes are not
  hashed), the sha256 of the ``init`` checkpoint's bytes, the model spec (name, num_classes,
  overrides, hash of the state-dict keys and shapes) and the world size. On any difference training
  starts fresh, the old state goes to ``stale-<time>/`` and the log says what differs, e.g.
  ``work/last.pt does not match this run (annotations changed; config changed: optim.lr): starting
  fresh, old state kept in work/stale-20250101T120000``. A ``last.pt`` of an older version (no full
  fingerprint) is not resumed either.
* Forced rerun: ``finished.json`` present but ``out_ckpt`` gone means the output was deleted
  on purpose (``snakemake --forcerun``), so the run starts fresh (``previous run finished and
  its output <out> is gone (forced rerun): starting fresh, old state kept in ...``) instead of
  resuming the finished state. A killed run has no ``finished.json`` and resumes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rgbpose.io import BadSampleError, atomic_path

if TYPE_CHECKING:
    from rgbpose.engine.config import RunConfig


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` on CPU; any failure is a ``BadSampleError`` naming
    the file (``x.pt: No such file or directory``; ``x.pt: not a plain-tensor checkpoint: ...``
    for a file holding other Python objects -- never advice to disable the check)."""
    from rgbpose.io import checkpoint_load_problem  # noqa: PLC0415

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:  # missing, unreadable, a folder
        raise BadSampleError(path, exc.strerror or str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise BadSampleError(path, checkpoint_load_problem(exc)) from exc


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A ``{'model', 'meta'}`` checkpoint (``weights_only``), errors naming the file."""
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise BadSampleError(path, "checkpoint has no 'model' state dict")
    return ckpt


def model_from_checkpoint(
    path: str | os.PathLike,
    cfg: Any = None,
    cfg_src: str = "the run config",
    ckpt: dict[str, Any] | None = None,
) -> tuple[nn.Module, Any]:
    """Rebuild the model a ``rgbpose train`` checkpoint holds and load its weights strictly.

    The architecture comes from the checkpoint's meta (name, classes, overrides), falling back
    to ``cfg`` (a ``RunConfig``).  Without ``cfg`` the run config stored in the meta is used.
    Returns ``(model, cfg)``; a checkpoint of another model than ``cfg`` configures is refused.
    ``ckpt``: the checkpoint ``load_checkpoint(path)`` already read (``path`` then only names it).
    """
    from rgbpose.engine.config import run_config_from_dict  # noqa: PLC0415
    from rgbpose.models import build_model  # noqa: PLC0415

    if ckpt is None:
        ckpt = load_checkpoint(path)
    meta = ckpt.get("meta") or {}
    if cfg is None:
        if "config" not in meta:
            raise BadSampleError(path, "checkpoint meta lacks the run config (train with rgbpose)")
        cfg = run_config_from_dict(meta["config"], f"{path} meta")
    model_name = meta.get("model_name", cfg.model.name)
    if model_name != cfg.model.name:
        raise BadSampleError(
            path,
            f"checkpoint holds a {model_name!r} model but {cfg_src} configures {cfg.model.name!r}",
        )
    num_classes = int(meta.get("num_classes") or cfg.num_classes or 0)
    if num_classes < 2:
        raise BadSampleError(path, "checkpoint meta has no num_classes")
    overrides = dict(meta.get("overrides", cfg.model.overrides))
    model = build_model(model_name, num_classes, **overrides)
    model.load_state_dict(ckpt["model"], strict=True)
    return model, cfg


def model_num_classes(model: nn.Module) -> int | None:
    """Classes a model predicts: its ``spec`` (``rgbpose.models.build_model``), else its
    ``num_classes`` attribute; None when neither says (labels are then only checked >= 0)."""
    spec = getattr(model, "spec", None)
    n = spec.get("num_classes") if isinstance(spec, dict) else getattr(model, "num_classes", None)
    return None if n is None else int(n)


def save_checkpoint(obj: dict[str, Any], dst: str | os.PathLike) -> None:
    """``torch.save`` to a temp file, renamed onto ``dst`` only when complete."""
    with atomic_path(dst) as tmp:
        torch.save(obj, tmp)


def load_init(model: nn.Module, path: str | os.PathLike) -> None:
    """Load ``path`` (``{'model': state_dict}`` or a bare state dict) into ``model`` strictly."""
    ckpt = read_checkpoint_file(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise BadSampleError(path, "no model state dict in the checkpoint")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BadSampleError(path, f"does not fit the model: {exc}") from exc


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict as contiguous CPU tensors (what a checkpoint stores)."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _u8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.uint8).copy())


def rng_state() -> dict[str, Any]:
    """All global RNG states as uint8 tensors and plain numbers (``weights_only``-loadable)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": _u8(np.asarray(keys, np.uint32)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached),
        "python_version": int(version),
        "python_internal": _u8(np.asarray(py_internal, np.uint32)),
        "python_gauss": py_gauss,
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().view(np.uint32)
    np.random.set_state(
        ("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"],
         state["numpy_cached_gaussian"])
    )  # fmt: skip
    internal = tuple(int(v) for v in state["python_internal"].numpy().view(np.uint32))
    random.setstate((state["python_version"], internal, state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- train checkpoints
def checkpoint_meta(
    cfg: RunConfig,
    model_name: str,
    num_classes: int | None,
    epoch: int,
    val_top1: float | None,
    selected: str,
    trained_labels: list[int] | None = None,
) -> dict[str, Any]:
    """The ``meta`` of ``best.pt`` and of the final checkpoint (read by ``model_from_checkpoint``):
    the model (name, classes, overrides), which epoch was selected and why, the run config."""
    meta = {
        "model_name": model_name,
        "num_classes": None if num_classes is None else int(num_classes),
        "overrides": dict(cfg.model.overrides),
        "epoch": int(epoch),
        "val_top1": None if val_top1 is None else float(val_top1),
        "selected": selected,
        "config": cfg.to_dict(),
    }
    if trained_labels is not None:
        meta["trained_labels"] = list(trained_labels)  # rgbpose.predict.TRAINED_LABELS_KEY
    return meta


def training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    global_iter: int,
    base_lr: float,
    ipe: int,
    best_top1: float | None,
    best_epoch: int | None,
    history: list[dict[str, Any]],
    fingerprint: dict[str, Any],
) -> dict[str, Any]:
    """``last.pt``: the full state after ``epoch`` epochs (model, optimizer, schedule position,
    best epoch so far, history, RNG states, the run's fingerprint) that a rerun resumes from."""
    from rgbpose.engine.runstate import fingerprint_hash  # noqa: PLC0415

    return {
        "model": cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"global_iter": global_iter, "base_lr": base_lr, "iters_per_epoch": ipe},
        "epoch": epoch,
        "global_iter": global_iter,
        "best_top1": best_top1,
        "best_epoch": best_epoch,
        "history": history,
        "rng": rng_state(),
        "fingerprint": fingerprint,
        "fingerprint_hash": fingerprint_hash(fingerprint),
    }


def resume_state(
    last_path: Path,
    fingerprint: dict[str, Any],
    out_ckpt: Path,
    finished_path: Path,
    leftovers: Sequence[Path],
) -> tuple[dict[str, Any] | None, str | None]:
    """``(state, why_fresh)``: the ``training_state`` in ``last_path`` when its fingerprint
    matches this run's, else None and why the run starts fresh over the state in its work dir
    (a forced rerun: ``finished_path`` present but ``out_ckpt`` gone; a ``last.pt`` of another
    run; ``leftovers`` without ``last.pt``), or ``(None, None)`` when there is nothing to resume.
    """
    from rgbpose.engine.runstate import fingerprint_changes  # noqa: PLC0415

    if finished_path.exists() and not out_ckpt.exists():
        return None, f"previous run finished and its output {out_ckpt} is gone (forced rerun)"
    if last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        changes = fingerprint_changes(state.get("fingerprint"), fingerprint)
        if changes:
            return None, f"{last_path} does not match this run ({'; '.join(changes)})"
        return state, None
    if any(p.exists() for p in leftovers):
        return None, f"no resumable {last_path}"
    return None, None


def restore_training_state(
    state: dict[str, Any], optimizer: torch.optim.Optimizer
) -> tuple[int, int, float | None, int | None, list[dict[str, Any]]]:
    """Load a ``training_state``'s optimizer and global RNG states (the model's weights are
    loaded before the optimizer exists); returns its (epoch, global_iter, best_top1, best_epoch,
    history)."""
    optimizer.load_state_dict(state["optimizer"])
    epoch, global_iter = int(state["epoch"]), int(state["global_iter"])
    best_top1, best_epoch = state.get("best_top1"), state.get("best_epoch")
    history = list(state.get("history", []))
    set_rng_state(state["rng"])
    return epoch, global_iter, best_top1, best_epoch, history
