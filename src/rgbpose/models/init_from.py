"""``init_from``: a stream's initialisation from the best checkpoints of other streams.

``merge_sources({stream: checkpoint}, model_name, overrides)`` builds the target model (fresh
init, seeded), then fills it from the sources with the merge its model registered
(``register_model(..., merge=...)``; RGBPoseConv3D: one RGB and one pose pathway, see
``rgbpose.models.rgbpose``).  A model without a registered merge takes one source and keeps
every weight whose name and shape match (a progressive stage initialised from the previous
one); the rest keeps its fresh init.  The result is the ``--init`` file of ``rgbpose train``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from rgbpose.models import build_model, model_spec
from rgbpose.models.registry import get_entry


def matching_weights(source: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """The model's state with every entry of ``source`` of the same name and shape copied in."""
    state = model.state_dict()
    shared = [k for k, v in source.items() if k in state and state[k].shape == v.shape]
    if not shared:
        raise ValueError("no weight of the source checkpoint fits the model (names or shapes)")
    state.update({k: source[k] for k in shared})
    return state


def merge_sources(
    sources: Mapping[str, Mapping[str, Any]],
    model_name: str,
    overrides: Mapping[str, Any],
    num_classes: int | None = None,
    seed: int = 0,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Merge ``{stream: {'state', 'meta', 'path'}}`` into an init of ``model_name``.

    ``num_classes`` defaults to the sources' (which must agree).  Returns (state, meta) with
    ``meta`` the model spec plus ``merged_from`` ({stream: path}) and ``seed``.
    """
    if not sources:
        raise ValueError("init_from names no checkpoint")
    entry = get_entry(model_name)
    classes = {name: src["meta"].get("num_classes") or _head_classes(src["state"])
               for name, src in sources.items()}  # fmt: skip
    if num_classes is None:
        found = set(classes.values())
        if len(found) != 1 or None in found:
            listed = ", ".join(f"{n} {c} ({sources[n]['path']})" for n, c in classes.items())
            raise ValueError(f"the checkpoints disagree on num_classes or lack it: {listed}")
        num_classes = found.pop()
    torch.manual_seed(seed)  # the fresh parts of the init are reproducible
    model = build_model(model_name, int(num_classes), **dict(overrides))
    if entry.merge is not None:
        state = entry.merge(sources, model)
    elif len(sources) == 1:
        src = next(iter(sources.values()))
        try:
            state = matching_weights(src["state"], model)
        except ValueError as exc:
            raise ValueError(f"{src['path']}: {exc} {model_name!r}") from None
    else:
        raise ValueError(
            f"model {model_name!r} registers no merge, so init_from must name one stream "
            f"(got {len(sources)}: {', '.join(sources)})"
        )
    meta = model_spec(model)
    meta.update(merged_from={n: str(s["path"]) for n, s in sources.items()}, seed=seed)
    return state, meta


def _head_classes(state: Mapping[str, Tensor]) -> int | None:
    weight = state.get("head.fc.weight")
    return int(weight.shape[0]) if weight is not None else None
