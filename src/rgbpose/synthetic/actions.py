"""One performance of a class: its random draws and its joint-angle trajectories.

Each performance draws start, duration, amplitude, cycle count, standing spot and facing jitter
from ``(seed, setup, performer, replication, action)`` -- *not* the camera: like NTU, the three
cameras film one performance.

Classes (label = A - 1; names from ``rgbpose.ntu.class_names()``)
----------------------------------------------------------------
Appearance-mainly (the *same* right-hand-to-mouth motion distribution; only the held object
differs, so the skeleton cannot tell them apart but RGB can; the objects are deliberately
oversized -- a 32 cm cup, a 26 cm fruit, a 40 cm brush -- so that the cue survives the demo's
small input size):

* A001 drink water -- a tall blue cup (upright, tilted towards the mouth when raised);
* A002 eat meal/snack -- a round orange piece of food;
* A003 brushing teeth -- a long thin white toothbrush with a green head, held across the mouth.

Motion-mainly (no object, or an object that does not identify the class on its own):

* A008 sitting down -- stand, lean forward, lower onto a stool (hips and knees flex ~90 deg);
* A009 standing up -- the reverse, from the same stool (the stool is in both: order matters);
* A010 clapping -- both forearms in front of the chest, hands meet 3-5 times;
* A023 hand waving -- right upper arm raised sideways, forearm up, swinging 2-4 times;
* A024 kicking something -- right leg back-swing then kick (left foot planted); a ball flies off;
* A027 jump up -- crouch, arm swing back then up, a ~0.2 m jump, landing crouch;

Two-person (2 real bodies: the named performer plus a fixed partner per performer, facing each
other sideways to the "front" camera):

* A058 handshaking -- both right hands meet in the middle and pump up and down;
* A050 punching/slapping other person (optional, not in the default 10) -- a right punch from a
  guard, the partner recoils.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rgbpose.ntu import parse_name

from .body import Motion
from .config import SynthConfig


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _ramp(p: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 before ``a``, 1 after ``b``, smoothstep between."""
    return _smooth((p - a) / max(b - a, 1e-6))


def bump(p: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """Rise over [a, b], hold, fall over [c, d]."""
    return _ramp(p, a, b) * (1.0 - _ramp(p, c, d))


@dataclass
class Performance:
    """The per-performance random draws (shared by the three cameras)."""

    phase: np.ndarray  # action progress per frame, 0..1
    amp: float  # amplitude factor ~1
    cycles: int  # repetitions for cyclic actions
    sway: np.ndarray  # [T, 3] idle sway
    offset: np.ndarray  # standing spot offset (world x, z)
    yaw_jitter: float  # degrees
    extra: np.random.Generator


def draw_performance(cfg: SynthConfig, name: str) -> Performance:
    s = parse_name(name)
    rng = np.random.default_rng([cfg.seed, s.setup, s.performer, s.replication, s.action, 0xAC7])
    t = cfg.frames
    u = np.linspace(0.0, 1.0, t)
    start = rng.uniform(0.0, 0.12)
    dur = rng.uniform(0.78, 0.96) * (1.0 - start)
    phase = np.clip((u - start) / dur, 0.0, 1.0)
    ph = rng.uniform(0, 2 * np.pi, 3)
    secs = np.arange(t) / cfg.fps
    sway = 0.008 * np.stack([np.sin(1.3 * secs + ph[0]), 0 * secs, np.sin(0.9 * secs + ph[1])], -1)
    return Performance(
        phase=phase,
        amp=float(rng.uniform(0.9, 1.1)),
        cycles=int(rng.integers(3, 6)),
        sway=sway,
        offset=rng.uniform(-0.15, 0.15, 2),
        yaw_jitter=float(rng.uniform(-8, 8)),
        extra=rng,
    )


# Key arm poses solved once (offline, Nelder-Mead on the scale-1 body) for hand targets:
_MOUTH = (50.1, -13.3, 27.8, 131.4)  # right hand just in front of and right of the mouth
_MOUTH2 = (52.7, -11.0, 22.6, 130.7)  # the same, a little further right (brushing stroke)
_CLAP_IN = (26.2, -1.1, 26.4, 96.3)  # hands meet at the midline in front of the chest
_CLAP_OUT = (23.0, 13.0, 4.6, 104.6)  # hands 0.4 m apart
_WAVE = (40.0, 87.7, -37.2, 99.5)  # upper arm raised sideways, forearm up
_SHAKE = (23.3, -4.9, 8.4, 42.7)  # hand 0.42 m forward at hip-belt height
_GUARD = (18.0, 3.5, 22.2, 140.1)  # fist near the chin
_PUNCH = (87.8, -10.2, 0.4, 1.0)  # arm stretched forward at shoulder height
_THIGH_REST = (-2.5, -6.0, 5.0, 70.6)  # seated: hand resting on the thigh


def _hand_to_mouth(m: Motion, pf: Performance) -> None:
    """A001/A002/A003: identical motion (raise right hand to the mouth, small strokes, lower)."""
    p, rng = pf.phase, pf.extra
    up_end, down_start = rng.uniform(0.22, 0.34), rng.uniform(0.66, 0.8)
    w = bump(p, 0.0, up_end, down_start, 1.0)
    strokes = 0.5 - 0.5 * np.cos(
        2 * np.pi * pf.cycles * np.clip((p - up_end) / (down_start - up_end), 0, 1)
    )
    key = (
        np.asarray(_MOUTH)[:, None] + (np.asarray(_MOUTH2) - np.asarray(_MOUTH))[:, None] * strokes
    )
    m.arms[1] += (key - m.arms[1]) * w[None]
    m.head_pitch += 6.0 * w * pf.amp
    m.arms[0] += np.array([4.0, 2.0, 0.0, 10.0])[:, None] * w[None]


def sit(m: Motion, w: np.ndarray, lean: np.ndarray) -> None:
    """Blend from standing (w=0) to seated (w=1); ``lean`` adds trunk pitch (degrees)."""
    for side in (0, 1):
        m.blend_leg(side, (88.0, 7.0, 92.0), w)
        m.blend_arm(side, _THIGH_REST, _smooth(w * 1.3 - 0.3))
    m.pitch += 8.0 * w + lean
    m.head_pitch -= 0.3 * lean


def _sit_down(m: Motion, pf: Performance) -> None:
    p = pf.phase
    w = _ramp(p, 0.15, 0.8)
    lean = 28.0 * pf.amp * np.sin(np.pi * np.clip((p - 0.12) / 0.7, 0, 1))
    sit(m, w, lean)
    reach = np.sin(np.pi * np.clip((p - 0.15) / 0.55, 0, 1))
    for side in (0, 1):
        m.blend_arm(side, (45.0, 2.0, 0.0, 35.0), 0.7 * reach)


def _stand_up(m: Motion, pf: Performance) -> None:
    p = pf.phase
    w = 1.0 - _ramp(p, 0.3, 0.85)
    lean = 32.0 * pf.amp * np.sin(np.pi * np.clip((p - 0.1) / 0.65, 0, 1))
    sit(m, w, lean)
    push = np.sin(np.pi * np.clip((p - 0.2) / 0.5, 0, 1))
    for side in (0, 1):
        m.blend_arm(side, (30.0, 4.0, 0.0, 25.0), 0.6 * push)


def _clap(m: Motion, pf: Performance) -> None:
    p = pf.phase
    w = bump(p, 0.0, 0.18, 0.85, 1.0)
    cyc = 0.5 + 0.5 * np.cos(2 * np.pi * pf.cycles * np.clip((p - 0.18) / 0.67, 0, 1))
    key = np.asarray(_CLAP_IN)[:, None] + (np.asarray(_CLAP_OUT) - np.asarray(_CLAP_IN))[
        :, None
    ] * (1 - cyc)
    key = key.copy()
    key[1] *= pf.amp
    for side in (0, 1):
        m.arms[side] += (key - m.arms[side]) * w[None]


def _wave(m: Motion, pf: Performance) -> None:
    p = pf.phase
    w = bump(p, 0.0, 0.2, 0.82, 1.0)
    swing = np.sin(2 * np.pi * max(2, pf.cycles - 1) * np.clip((p - 0.2) / 0.62, 0, 1))
    key = np.asarray(_WAVE)[:, None] + np.array([0.0, 0.0, 0.0, 28.0 * pf.amp])[:, None] * swing
    m.arms[1] += (key - m.arms[1]) * w[None]
    m.roll += 3.0 * w


def _kick(m: Motion, pf: Performance) -> None:
    p = pf.phase
    m.plant = "left"
    back = bump(p, 0.15, 0.35, 0.35, 0.5)
    fwd = bump(p, 0.38, 0.55, 0.6, 0.85)
    m.blend_leg(1, (-15.0, 4.0, 70.0), back)
    m.blend_leg(1, (58.0 * pf.amp, 2.0, 10.0), fwd)
    m.pitch += -10.0 * fwd + 4.0 * back
    m.blend_arm(0, (20.0, 22.0, 0.0, 40.0), np.maximum(back, fwd))
    m.blend_arm(1, (-15.0, 12.0, 0.0, 25.0), fwd)
    m.blend_arm(1, (30.0, 15.0, 0.0, 30.0), back)
    m.roll += 4.0 * np.maximum(back, fwd)


def _jump(m: Motion, pf: Performance) -> None:
    p = pf.phase
    crouch = bump(p, 0.08, 0.32, 0.34, 0.44)
    land = bump(p, 0.6, 0.68, 0.72, 0.92)
    air = np.clip((p - 0.42) / 0.2, 0, 1)
    height = (0.2 + 0.15 * pf.amp - 0.15) * np.sin(np.pi * air) * (air > 0) * (air < 1)
    for side in (0, 1):
        m.blend_leg(side, (55.0, 5.0, 85.0), crouch)
        m.blend_leg(side, (35.0, 5.0, 55.0), land)
        m.blend_arm(side, (-40.0, 12.0, 0.0, 20.0), crouch)
        m.blend_arm(side, (132.0, 15.0, 0.0, 10.0), bump(p, 0.36, 0.46, 0.5, 0.66))
    m.pitch += 30.0 * crouch + 18.0 * land
    m.root[:, 1] += height


def handshake(m: Motion, pf: Performance) -> None:
    p = pf.phase
    w = bump(p, 0.05, 0.3, 0.78, 0.98)
    pump = np.sin(2 * np.pi * 3 * np.clip((p - 0.3) / 0.48, 0, 1))
    key = np.asarray(_SHAKE)[:, None] + np.array([9.0, 0, 0, 4.0])[:, None] * pump
    m.arms[1] += (key - m.arms[1]) * w[None]
    m.pitch += 5.0 * w


def _punch(m: Motion, pf: Performance) -> None:
    p = pf.phase
    guard = bump(p, 0.0, 0.2, 0.8, 1.0)
    hit = bump(p, 0.42, 0.5, 0.55, 0.65)
    for side in (0, 1):
        m.blend_arm(side, _GUARD, guard)
    m.blend_arm(1, _PUNCH, hit)
    m.yaw += 18.0 * hit - 6.0 * guard
    m.pitch += 6.0 * guard + 6.0 * hit
    m.legs[0, 0] += 8 * guard  # left leg a little forward: fighting stance


def recoil(m: Motion, pf: Performance, hit_at: float = 0.5) -> None:
    """The partner of A050: flinches back when the punch lands."""
    p = pf.phase
    r = bump(p, hit_at - 0.02, hit_at + 0.08, hit_at + 0.15, hit_at + 0.4)
    m.pitch -= 16.0 * r
    m.head_pitch -= 18.0 * r
    m.root[:, 2] -= 0.12 * r
    for side in (0, 1):
        m.blend_arm(side, (45.0, 10.0, 30.0, 120.0), r)


ACTION_FUNCS = {
    1: _hand_to_mouth,
    2: _hand_to_mouth,
    3: _hand_to_mouth,
    8: _sit_down,
    9: _stand_up,
    10: _clap,
    23: _wave,
    24: _kick,
    27: _jump,
    50: _punch,
    58: handshake,
}
