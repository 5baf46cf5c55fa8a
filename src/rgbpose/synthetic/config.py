"""What to synthesize: ``SynthConfig`` (the sample grid, sizes, the seed) and its sample names.

Snakemake builds a ``SynthConfig`` and calls ``sample_names`` while it plans the workflow, so
both are cheap: nothing here draws, renders or imports more than the standard library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: action id -> (group, what distinguishes it); the group is "appearance", "motion" or "two-person"
SUPPORTED_ACTIONS: dict[int, tuple[str, str]] = {
    1: ("appearance", "hand to mouth holding a tall blue cup"),
    2: ("appearance", "hand to mouth holding a round orange snack"),
    3: ("appearance", "hand to mouth holding a thin white/green toothbrush"),
    8: ("motion", "sit down onto a stool"),
    9: ("motion", "stand up from a stool"),
    10: ("motion", "clap hands in front of the chest"),
    23: ("motion", "wave the raised right forearm"),
    24: ("motion", "kick a ball with the right leg"),
    27: ("motion", "crouch and jump up"),
    50: ("two-person", "punch the partner, who recoils"),
    58: ("two-person", "shake right hands"),
}
DEFAULT_ACTIONS = (1, 2, 3, 8, 9, 10, 23, 24, 27, 58)


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesize: the sample grid (names), sizes and the seed.

    NTU X-Sub train performers among the defaults are 1, 2, 4, 5 (val: 3, 6); X-View trains on
    cameras 2 and 3.  ``noise_share`` of the samples get one noise body in their skeleton file.
    """

    seed: int = 0
    setup: int = 1
    performers: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    cameras: tuple[int, ...] = (1, 2, 3)
    replications: tuple[int, ...] = (1, 2)
    actions: tuple[int, ...] = DEFAULT_ACTIONS
    frames: int = 40
    width: int = 640
    height: int = 360
    fps: float = 30.0
    noise_share: float = 0.3

    def __post_init__(self) -> None:
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"SynthConfig: {msg}")

        for key in ("performers", "cameras", "replications", "actions"):
            values = getattr(self, key)
            check(isinstance(values, tuple) and len(values) > 0, f"{key} must be a non-empty tuple")
            check(all(isinstance(v, int) for v in values), f"{key} must hold integers")
            check(len(set(values)) == len(values), f"{key} has duplicates: {values}")
        check(1 <= self.setup <= 999, f"setup out of range 1..999: {self.setup}")
        check(all(1 <= p <= 999 for p in self.performers), "performers must be in 1..999")
        check(all(c in (1, 2, 3) for c in self.cameras), "cameras must be in 1..3")
        check(all(r in (1, 2) for r in self.replications), "replications must be in 1..2")
        unknown = [a for a in self.actions if a not in SUPPORTED_ACTIONS]
        check(
            not unknown, f"unsupported actions {unknown} (supported: {sorted(SUPPORTED_ACTIONS)})"
        )
        check(self.frames >= 2, f"frames must be >= 2, got {self.frames}")
        check(self.width >= 32 and self.height >= 32, "width and height must be >= 32")
        check(
            self.width % 2 == 0 and self.height % 2 == 0, "width and height must be even (yuv420p)"
        )
        check(self.fps > 0, f"fps must be > 0, got {self.fps}")
        check(0.0 <= self.noise_share <= 1.0, f"noise_share must be in [0, 1]: {self.noise_share}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthConfig:
        """Build from a plain dict (e.g. YAML): lists become tuples; an unknown key is an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key not in known:
                raise ValueError(f"unknown synthetic config key {key!r} (known: {sorted(known)})")
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


def sample_names(cfg: SynthConfig) -> list[str]:
    """All sample names of ``cfg`` (performer x camera x replication x action), sorted.

    Cheap and import-light: Snakemake calls it while planning.
    """
    return sorted(
        f"S{cfg.setup:03d}C{c:03d}P{p:03d}R{r:03d}A{a:03d}"
        for p in cfg.performers
        for c in cfg.cameras
        for r in cfg.replications
        for a in cfg.actions
    )
