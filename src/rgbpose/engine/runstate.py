"""What makes a training run resumable, and what makes a failure final.

* **Resume fingerprint** (``_fingerprint``): everything that defines a run -- the config (minus
  keys that may change between a run and its resumption), content hashes of the training and
  validation samples, the ``--init`` checkpoint's sha256, the model spec (name, classes,
  overrides, state-dict shapes) and the world size. ``rgbpose.engine.train`` resumes
  ``work/last.pt`` only when it matches; otherwise it moves the old state aside with
  ``stash_state`` (``work/stale-<UTC time>/``) and says which parts changed
  (``fingerprint_changes``).
* **Failed runs** (``FailureGuard``): a deterministic data error is recorded in
  ``work/failed.json`` with a hash of what the command reads; the same command with the same
  inputs then fails at once instead of repeating the work (Snakemake's ``retries:``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from rgbpose.engine.config import RunConfig
from rgbpose.io import BadSampleError, write_text_atomic

# Config keys that may change between a run and its resumption without invalidating it.
_RESUME_FREE_KEYS = ("num_workers", "time_budget_s")
FINGERPRINT_VERSION = 2
FINISHED_JSON, FAILED_JSON = "finished.json", "failed.json"
#: a run's state in work_dir; moved into stale-<time>/ when a run starts fresh over it
STATE_FILES = ("last.pt", "best.pt", "train_log.csv", "tb", "config.yaml", FINISHED_JSON)


def _log_main(msg: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[rgbpose train] {msg}", flush=True)


# ----------------------------------------------------------------------------- fingerprint
def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex of a file's bytes (read in 16 MiB blocks); ``BadSampleError`` naming the file
    when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                h.update(block)
    except OSError as exc:
        raise BadSampleError(path, f"cannot read: {exc}") from exc
    return h.hexdigest()


def state_shapes_hash(model: nn.Module) -> str:
    """sha256 hex of the model's ``sorted((key, shape))`` state-dict entries: the architecture."""
    shapes = sorted((k, list(v.shape)) for k, v in model.state_dict().items())
    return hashlib.sha256(json.dumps(shapes).encode()).hexdigest()


def _dataset_hash(dataset: Dataset | None) -> str | None:
    """``dataset.content_hash()`` when the dataset has one (the data package's datasets do)."""
    fn = getattr(dataset, "content_hash", None)
    return str(fn()) if callable(fn) else None


def _fingerprint(
    cfg: RunConfig,
    train_set: Dataset,
    val_set: Dataset | None,
    init: str | os.PathLike | None,
    model: nn.Module,
    model_name: str,
    num_classes: int | None,
    world_size: int,
) -> dict[str, Any]:
    """Everything that defines a run (see the module docstring); plain types only."""
    d = cfg.to_dict()
    for key in _RESUME_FREE_KEYS:
        d.pop(key, None)
    return {
        "version": FINGERPRINT_VERSION,
        "config": d,
        "train_len": len(train_set),  # type: ignore[arg-type]
        "train_annotations": _dataset_hash(train_set),
        "val_len": None if val_set is None else len(val_set),  # type: ignore[arg-type]
        "val_annotations": _dataset_hash(val_set),
        "init": None if init is None else file_sha256(init),
        "model": {
            "name": model_name,
            "num_classes": None if num_classes is None else int(num_classes),
            "overrides": d["model"]["overrides"],
            "state_shapes": state_shapes_hash(model),
        },
        "world_size": int(world_size),
    }


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """sha256 hex of a fingerprint's canonical JSON."""
    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix or "<root>"]
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in old or key not in new:
            out.append(dotted)
        else:
            out += _changed_keys(old[key], new[key], dotted)
    return out


def fingerprint_changes(old: Any, new: dict[str, Any]) -> list[str]:
    """Why a saved fingerprint does not match the current one: e.g. ``annotations changed``,
    ``init checkpoint changed``, ``config changed: optim.lr``; empty when they match."""
    if not isinstance(old, dict) or old.get("version") != new["version"]:
        return ["it predates annotation/init/model fingerprints"]
    reasons = []
    if old.get("config") != new["config"]:
        reasons.append(
            "config changed: " + ", ".join(_changed_keys(old.get("config"), new["config"]))
        )
    for kind, what in (("train", "annotations"), ("val", "validation annotations")):
        before, after = old.get(f"{kind}_len"), new[f"{kind}_len"]
        if before != after:
            reasons.append(f"{what} changed ({before or 'no'} -> {after or 'no'} samples)")
        elif old.get(f"{kind}_annotations") != new[f"{kind}_annotations"]:
            reasons.append(f"{what} changed")
    if old.get("init") != new["init"]:
        reasons.append("init checkpoint changed")
    if old.get("model") != new["model"]:
        reasons.append("model changed: " + ", ".join(_changed_keys(old.get("model"), new["model"])))
    if old.get("world_size") != new["world_size"]:
        reasons.append(f"world size changed: {old.get('world_size')} -> {new['world_size']}")
    if not reasons and old != new:  # pragma: no cover - a key added without a reason above
        reasons.append("fingerprint changed")
    return reasons


def utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())


def stash_state(work_dir: Path) -> Path | None:
    """Move the previous run's state (:data:`STATE_FILES` present) into a new
    ``work_dir/stale-<UTC YYYYmmddTHHMMSS>/`` (``-1``, ``-2``... when taken); return it, or None
    when there was nothing to move. Nothing is deleted."""
    present = [n for n in STATE_FILES if (work_dir / n).exists()]
    if not present:
        return None
    base = work_dir / f"stale-{utc_stamp()}"
    dst, i = base, 0
    while True:
        try:
            dst.mkdir(parents=True)
            break
        except FileExistsError:
            i += 1
            dst = base.with_name(f"{base.name}-{i}")
    for name in present:
        os.replace(work_dir / name, dst / name)
    return dst


# ----------------------------------------------------------------------------- failed runs
_REPEAT_HINT = "(same inputs failed before; not retrying: fix the input or delete {path})"


def input_fingerprint(files: dict[str, Any], values: dict[str, Any]) -> str:
    """sha256 hex over the contents of ``files`` (name -> path or None; a missing file counts
    as missing) and the JSON of ``values``: what a command reads before it builds a model."""
    from rgbpose import __version__  # noqa: PLC0415

    parts: dict[str, Any] = {"rgbpose": __version__, "values": values}
    for name, path in sorted(files.items()):
        parts[name] = None if path is None else _maybe_sha256(path)
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _maybe_sha256(path: str | os.PathLike) -> str | None:
    return file_sha256(path) if Path(path).is_file() else None


#: the training loop's functions (module, name): an error raised inside them is not final
_LOOP_FUNCTIONS = {("rgbpose.engine.train", "_train_epoch"), ("rgbpose.engine.train", "_validate")}


def _raised_in_training_loop(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if (frame.f_globals.get("__name__"), frame.f_code.co_name) in _LOOP_FUNCTIONS:
            return True
        tb = tb.tb_next
    return False


def data_error(exc: BaseException) -> BadSampleError | ValueError | None:
    """``exc`` as a deterministic data error, or None: a ``BadSampleError`` (also one re-raised
    by a DataLoader worker, which arrives as a ``RuntimeError``), or a ``ValueError`` raised
    before the training loop (config, split, dataset building)."""
    if isinstance(exc, BadSampleError):
        return exc
    if isinstance(exc, RuntimeError) and str(exc).startswith("Caught BadSampleError"):
        marker = "BadSampleError: "
        last = [ln for ln in str(exc).splitlines() if marker in ln][-1:]
        if last:
            # str(BadSampleError(path, problem)) == f"{path}: {problem}": any split restores it
            path, _, problem = last[0].split(marker, 1)[1].partition(": ")
            return BadSampleError(path, problem)
    if isinstance(exc, ValueError) and not _raised_in_training_loop(exc):
        return exc
    return None


class FailureGuard:
    """Deterministic data errors are not retried (DESIGN.md section 8).

    ``with FailureGuard(work_dir, input_hash):`` first looks at ``work_dir/failed.json``: when
    it records the same ``input_hash`` (and the file its error named is unchanged) it raises
    that error again at once, with :data:`_REPEAT_HINT` appended; when the inputs changed it
    removes the file and lets the run go on.  A deterministic data error (:func:`data_error`)
    leaving the block is recorded in ``failed.json`` and re-raised.
    """

    def __init__(
        self, work_dir: str | os.PathLike, input_hash: str, hashed_files: Sequence[Any] = ()
    ):
        self.work_dir, self.input_hash = Path(work_dir), input_hash
        self.path = self.work_dir / FAILED_JSON
        self._hashed = {os.path.abspath(p) for p in hashed_files if p is not None}

    def check(self) -> None:
        """Raise the recorded error when the same inputs failed before."""
        if not self.path.exists():
            return
        try:
            rec = json.loads(self.path.read_text())
        except (OSError, ValueError):
            rec = {}
        bad_file = rec.get("bad_file") if isinstance(rec, dict) else None
        same = (
            isinstance(rec, dict)
            and rec.get("fingerprint_hash") == self.input_hash
            and (not bad_file or _maybe_sha256(bad_file) == rec.get("bad_file_sha256"))
        )
        if not same:
            _log_main(f"inputs changed since the failure recorded in {self.path}: removed it, "
                      "running again")  # fmt: skip
            self.path.unlink(missing_ok=True)
            return
        hint = _REPEAT_HINT.format(path=self.path)
        if rec.get("type") == "BadSampleError" and rec.get("path") is not None:
            raise BadSampleError(rec["path"], f"{rec.get('problem')} {hint}")
        if rec.get("type") == "ValueError":
            raise ValueError(f"{rec.get('error')} {hint}")
        raise RuntimeError(f"{rec.get('error')} {hint}")

    def record(self, err: BadSampleError | ValueError) -> None:
        """Write ``failed.json`` for ``err`` (atomically)."""
        rec: dict[str, Any] = {
            "fingerprint_hash": self.input_hash,
            "error": str(err),
            "type": type(err).__name__ if isinstance(err, BadSampleError) else "ValueError",
            "time": utc_stamp(),
        }
        if isinstance(err, BadSampleError):
            rec.update(path=err.path, problem=err.problem)
            if os.path.abspath(err.path) not in self._hashed:  # e.g. a video: fixing it retries
                rec.update(bad_file=err.path, bad_file_sha256=_maybe_sha256(err.path))
        write_text_atomic(self.path, json.dumps(rec, indent=2) + "\n")

    def __enter__(self) -> FailureGuard:
        self.check()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        err = data_error(exc) if exc is not None else None
        if err is not None:
            self.record(err)
            if err is not exc:
                raise err from exc


def failure_guard(args: argparse.Namespace) -> FailureGuard:
    """The :class:`FailureGuard` of a ``rgbpose train`` command: its input hash covers the
    run config and annotation files, the init checkpoint, every other argument that selects
    data or the model, and the world size (not ``--work-dir``, ``--out``, ``--device``,
    ``--time-budget``)."""
    values = {
        k: v for k, v in sorted(vars(args).items())
        if k not in ("config", "ann", "init", "work_dir", "out", "device", "time_budget")
    }  # fmt: skip
    values["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))  # as torchrun sets it
    files = {"config": args.config, "ann": args.ann, "init": args.init}
    return FailureGuard(args.work_dir, input_fingerprint(files, values), list(files.values()))
