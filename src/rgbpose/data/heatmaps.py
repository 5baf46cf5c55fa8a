"""Pseudo heatmaps from 2D keypoints: the PoseC3D input (DESIGN.md 3.6).

For frame t, channel c and person m with amplitude ``s`` (the keypoint score with
``use_score``, else 1; entries with ``s < 1e-3`` are skipped, as PYSKL's ``EPS``), each
integer pixel centre ``(x, y)`` in the window gets

    ``exp(-d2 / 2 / sigma**2) * s``

and persons merge by **max**.  Joint maps: ``d2 = (x - mu_x)**2 + (y - mu_y)**2`` in the window
``[int(mu - 3 sigma), int(mu + 3 sigma) + 1)`` per axis, clipped to the canvas, where ``int``
truncates toward zero like Python's (so a point at x = -2.0 with sigma 0.6 still lights column 0:
``int(-0.2) + 1 = 1``, while floor would give an empty window).  Limb maps for limb ``(a, b)``: amplitude ``min(s_a, s_b)``, ``d2`` the
squared distance from the pixel to the segment a-b (PYSKL's projection formula), window the
bounding box of a and b grown by 3 sigma with the same ``int`` rule; when ``|a - b|**2 < 1``
the limb is drawn as PYSKL does, as the joint map of ``a`` (amplitude ``s_a``, a's window).

Implementation: instead of PYSKL's Python loops over persons, frames and joints, every
(person, frame, channel) is one *entry*; the entries' windows are evaluated together on a padded
``Ky x Kx`` grid (the largest window of a group of similar sizes: 5 x 5 pixels for joints at
sigma 0.6), and the in-window pixels are scattered into the output with a max.  Flip-test doubling scatters the same values a second
time at mirrored columns and swapped channels, so it costs no dense copy.
``batch_heatmaps_torch`` does the same on a torch device for a whole batch (``scatter_reduce``
with ``amax``).  All windows are computed in float64 from the float32 coordinates (as PYSKL's
numpy scalar arithmetic does) so both paths agree on every window edge; values are float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rgbpose.layouts import Layout, get_layout

EPS = 1e-3
# Entries x window pixels evaluated at once for limbs (bounds the temporaries to a few MB).
_CHUNK_PIXELS = 1 << 20


# ----------------------------------------------------------------------------- numpy helpers
def _prepare(
    kp: np.ndarray, score: np.ndarray | None, use_score: bool
) -> tuple[np.ndarray, np.ndarray]:
    """float32 keypoints ``[M, T, V, 2]`` and amplitudes ``[M, T, V]`` (0 where unusable)."""
    kp = np.asarray(kp, dtype=np.float32)
    if kp.ndim != 4 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints must be [M, T, V, 2], got shape {kp.shape}")
    if score is None or not use_score:
        amp = np.ones(kp.shape[:-1], dtype=np.float32)
    else:
        amp = np.asarray(score, dtype=np.float32)
        if amp.shape != kp.shape[:-1]:
            raise ValueError(f"scores {amp.shape} do not match keypoints {kp.shape}")
    finite = np.isfinite(kp).all(-1)
    amp = np.where(finite & (amp >= EPS), amp, np.float32(0))
    kp = np.where(finite[..., None], kp, np.float32(0))
    return kp, amp


def _bounds(lo: np.ndarray, hi: np.ndarray, sigma: float, size: int) -> tuple[np.ndarray, ...]:
    """Window ``[int(lo - 3s), int(hi + 3s) + 1)`` clipped to ``[0, size)``, int truncation."""
    st = np.trunc(lo.astype(np.float64) - 3 * sigma)
    ed = np.trunc(hi.astype(np.float64) + 3 * sigma) + 1
    st = np.clip(st, 0, size).astype(np.int64)
    ed = np.clip(ed, 0, size).astype(np.int64)
    return st, np.maximum(ed, st)


class _Scatter:
    """Max-merges entry windows into a dense float32 output, optionally with its flip copy.

    The output is ``[T, C, H, W]`` (no ``clip_len``: frames of all clips in a row) or
    ``[V, C, L, H, W]`` with ``V = T // L`` clips of ``clip_len`` L (the model's layout, so the
    data loader needs no transpose copy).  With ``flip_perm`` the mirrored maps follow as
    extra frames (``[2T, ...]``) or extra views (``[2V, ...]``).  Pixels outside an entry's
    window go to a scratch element past the end of the buffer.  One person's pixels are unique
    per (frame, channel), so a gather-max-store per person is exact and persons merge by max
    one after another (2-4x faster than ``np.maximum.at``).
    """

    def __init__(
        self,
        num_frames: int,
        num_channels: int,
        shape: tuple[int, int],
        *,
        clip_len: int | None = None,
        flip_perm: np.ndarray | None = None,
    ):
        self.n_t, self.n_c = num_frames, num_channels
        self.h, self.w = shape
        self.clip_len = clip_len
        self.flip_perm = flip_perm  # entry channel c goes to channel flip_perm[c] when mirrored
        copies = 2 if flip_perm is not None else 1
        if clip_len is None:
            self.shape = (copies * num_frames, num_channels, self.h, self.w)
        else:
            if clip_len < 1 or num_frames % clip_len:
                raise ValueError(f"{num_frames} frames are not whole clips of {clip_len}")
            views = copies * (num_frames // clip_len)
            self.shape = (views, num_channels, clip_len, self.h, self.w)
        size = int(np.prod(self.shape))
        self.buf = np.zeros(size + 1, dtype=np.float32)
        self.scratch = size

    @property
    def out(self) -> np.ndarray:
        return self.buf[: self.scratch].reshape(self.shape)

    def _base(self, t: np.ndarray, c: np.ndarray, flipped: bool) -> np.ndarray:
        if flipped:
            c = self.flip_perm[c]
        if self.clip_len is None:
            frame = t + self.n_t if flipped else t
            return (frame * self.n_c + c) * (self.h * self.w)
        view, tt = np.divmod(t, self.clip_len)
        if flipped:
            view = view + self.n_t // self.clip_len
        return ((view * self.n_c + c) * self.clip_len + tt) * (self.h * self.w)

    def add(self, e, t, c, px, py, valid, val, per_person: int) -> None:
        """Scatter ``val [E, Ky, Kx]`` at pixels ``px [E, Kx]``, ``py [E, Ky]``.

        ``e`` are the (ascending) entry numbers; entry e belongs to person ``e // per_person``.
        """
        cuts = [0, *(np.flatnonzero(np.diff(e // per_person)) + 1).tolist(), e.size]
        # Offsets fit int32 for any realistic clip; halving the index traffic matters here.
        itype = np.int32 if self.scratch < 2**31 else np.int64
        scratch = itype(self.scratch)
        rows = (py * self.w).astype(itype)[:, :, None]
        idx = (
            self._base(t, c, False).astype(itype)[:, None, None]
            + rows
            + px.astype(itype)[:, None, :]
        )
        idx = np.where(valid, idx, scratch)
        idx_flip = None
        if self.flip_perm is not None:
            cols = (self.w - 1 - px).astype(itype)[:, None, :]
            idx_flip = self._base(t, c, True).astype(itype)[:, None, None] + rows + cols
            idx_flip = np.where(valid, idx_flip, scratch)
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            i = idx[lo:hi].reshape(-1)
            new = np.maximum(self.buf[i], val[lo:hi].reshape(-1))
            self.buf[i] = new
            if idx_flip is not None:
                # The mirrored half is always an exact mirror of the original half, so its new
                # values are the same maxima: store them without a second gather.
                self.buf[idx_flip[lo:hi].reshape(-1)] = new


def _render(
    scatter: _Scatter,
    t: np.ndarray,
    c: np.ndarray,
    amp: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    d2_fn,
    sigma: float,
    per_person: int,
) -> None:
    """Evaluate the entries on padded windows and scatter them.

    Entries are grouped by window size (powers of two of the longer side, sides <= 8 together)
    so that one long limb does not pad every short one to its size; each group is cut into
    chunks of bounded size.
    """
    st_x, ed_x, st_y, ed_y = bounds
    wx, wy = ed_x - st_x, ed_y - st_y
    live = np.nonzero((amp > 0) & (wx > 0) & (wy > 0))[0]
    if live.size == 0:
        return
    side = np.maximum(wx[live], wy[live])
    # Windows up to 8 px (all joints for sigma < 1) form one group: fewer, larger numpy calls.
    group = np.maximum(np.ceil(np.log2(side)), 3).astype(np.int64)
    # exp(-d2 / 2 / sigma^2) as exp(d2 * k): one multiply instead of three divisions/negations
    # over the padded grid (the values differ from PYSKL's order of operations by ~1 ulp).
    k = np.float32(-0.5 / sigma**2)
    for g in np.unique(group):
        sel = live[group == g]
        kx, ky = int(wx[sel].max()), int(wy[sel].max())
        step = max(1, _CHUNK_PIXELS // (kx * ky))
        for lo in range(0, sel.size, step):
            e = sel[lo : lo + step]
            px = st_x[e, None] + np.arange(kx)  # [E, Kx] int64
            py = st_y[e, None] + np.arange(ky)  # [E, Ky]
            valid = (py < ed_y[e, None])[:, :, None] & (px < ed_x[e, None])[:, None, :]
            d2 = d2_fn(e, px.astype(np.float32), py.astype(np.float32))  # [E, Ky, Kx] float32
            d2 *= k
            val = np.exp(d2, out=d2)
            val *= amp[e, None, None]
            scatter.add(e, t[e], c[e], px, py, valid, val, per_person)


def _joint_entries(scatter, kp, amp, sigma, c_offset=0):
    m_n, t_n, v_n = amp.shape
    flat_kp = kp.reshape(-1, 2)
    flat_amp = amp.reshape(-1)
    idx = np.arange(flat_amp.size)
    t, v = (idx // v_n) % t_n, idx % v_n
    mux, muy = flat_kp[:, 0], flat_kp[:, 1]
    st_x, ed_x = _bounds(mux, mux, sigma, scatter.w)
    st_y, ed_y = _bounds(muy, muy, sigma, scatter.h)

    def d2_fn(e, x, y):
        dx = x - mux[e, None]
        dy = y - muy[e, None]
        return dy[:, :, None] ** 2 + dx[:, None, :] ** 2

    bounds = (st_x, ed_x, st_y, ed_y)
    _render(scatter, t, v + c_offset, flat_amp, bounds, d2_fn, sigma, t_n * v_n)


def _limb_entries(scatter, kp, amp, limbs, sigma, c_offset=0):
    if len(limbs) == 0:
        return
    m_n, t_n, _ = amp.shape
    la = np.array([a for a, _ in limbs], dtype=np.int64)
    lb = np.array([b for _, b in limbs], dtype=np.int64)
    n_l = la.size
    start = kp[:, :, la].reshape(-1, 2)  # [M*T*L, 2]
    end = kp[:, :, lb].reshape(-1, 2)
    amp_a = amp[:, :, la].reshape(-1)
    amp_b = amp[:, :, lb].reshape(-1)
    idx = np.arange(amp_a.size)
    t, ch = (idx // n_l) % t_n, idx % n_l
    sx, sy, ex, ey = start[:, 0], start[:, 1], end[:, 0], end[:, 1]
    d2_ab = (sx - ex) ** 2 + (sy - ey) ** 2
    degenerate = d2_ab < 1
    value = np.minimum(amp_a, amp_b)
    # PYSKL skips on min(s_a, s_b) < eps, then draws a degenerate limb as joint a with s_a.
    value = np.where(degenerate & (value > 0), amp_a, value)
    st_x, ed_x = _bounds(np.minimum(sx, ex), np.maximum(sx, ex), sigma, scatter.w)
    st_y, ed_y = _bounds(np.minimum(sy, ey), np.maximum(sy, ey), sigma, scatter.h)
    pst_x, ped_x = _bounds(sx, sx, sigma, scatter.w)
    pst_y, ped_y = _bounds(sy, sy, sigma, scatter.h)
    st_x, ed_x = np.where(degenerate, pst_x, st_x), np.where(degenerate, ped_x, ed_x)
    st_y, ed_y = np.where(degenerate, pst_y, st_y), np.where(degenerate, ped_y, ed_y)
    safe_ab = np.where(degenerate, np.float32(1), d2_ab)

    def d2_fn(e, x, y):
        x = x[:, None, :]
        y = y[:, :, None]
        ax, ay, bx, by = (v[e, None, None] for v in (sx, sy, ex, ey))
        d2_start = (x - ax) ** 2 + (y - ay) ** 2
        d2_end = (x - bx) ** 2 + (y - by) ** 2
        ab = safe_ab[e, None, None]
        coeff = (d2_start - d2_end + ab) / 2.0 / ab
        d2_line = (x - (ax + coeff * (bx - ax))) ** 2 + (y - (ay + coeff * (by - ay))) ** 2
        d2 = np.where(coeff <= 0, d2_start, np.where(coeff >= 1, d2_end, d2_line))
        return np.where(degenerate[e, None, None], d2_start, d2).astype(np.float32)

    bounds = (st_x, ed_x, st_y, ed_y)
    _render(scatter, t, ch + c_offset, value, bounds, d2_fn, sigma, t_n * n_l)


# ----------------------------------------------------------------------------- numpy API
def keypoint_heatmaps(
    kp: np.ndarray,
    score: np.ndarray | None,
    shape: tuple[int, int],
    sigma: float = 0.6,
    use_score: bool = True,
) -> np.ndarray:
    """Joint heatmaps ``[T, V, H, W]`` float32 from ``kp [M, T, V, 2]`` canvas pixels.

    ``score [M, T, V]`` gives the amplitudes (ignored, amplitude 1, without ``use_score``);
    ``shape`` is the canvas ``(H, W)``.  Formula and window: module docstring.
    """
    kp, amp = _prepare(kp, score, use_score)
    scatter = _Scatter(kp.shape[1], kp.shape[2], shape)
    _joint_entries(scatter, kp, amp, sigma)
    return scatter.out


def limb_heatmaps(
    kp: np.ndarray,
    score: np.ndarray | None,
    shape: tuple[int, int],
    limbs: Sequence[tuple[int, int]],
    sigma: float = 0.6,
    use_score: bool = True,
) -> np.ndarray:
    """Limb heatmaps ``[T, len(limbs), H, W]`` float32 (segment distance; module docstring)."""
    kp, amp = _prepare(kp, score, use_score)
    scatter = _Scatter(kp.shape[1], len(limbs), shape)
    _limb_entries(scatter, kp, amp, limbs, sigma)
    return scatter.out


def channel_flip_perm(layout: Layout, with_kp: bool = True, with_limb: bool = False) -> np.ndarray:
    """``perm`` with flipped map channel ``j`` = original channel ``perm[j]`` (joints, then limbs)."""
    parts = []
    if with_kp:
        parts.append(np.asarray(layout.flip_index, dtype=np.int64))
    if with_limb:
        offset = layout.num_joints if with_kp else 0
        parts.append(np.asarray(layout.limb_flip_index, dtype=np.int64) + offset)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def flip_test_heatmaps(heatmaps: np.ndarray, flip_perm: Sequence[int]) -> np.ndarray:
    """Append the mirrored maps: ``[T, C, H, W]`` -> ``[2T, C, H, W]``.

    The second half is ``heatmaps[:, flip_perm, :, ::-1]`` (columns reversed, left/right channels
    swapped), PYSKL's ``double=True``.
    """
    perm = np.asarray(flip_perm, dtype=np.int64)
    return np.concatenate([heatmaps, heatmaps[:, perm, :, ::-1]], axis=0)


def heatmap_canvas(img_shape: tuple[int, int], scaling: float = 1.0) -> tuple[int, int]:
    """Canvas ``(int(h * s + 0.5), int(w * s + 0.5))`` for coordinates scaled by ``s``."""
    h, w = img_shape
    return int(h * scaling + 0.5), int(w * scaling + 0.5)


def generate_pose_target(
    kp: np.ndarray,
    score: np.ndarray | None,
    img_shape: tuple[int, int],
    *,
    sigma: float = 0.6,
    use_score: bool = True,
    with_kp: bool = True,
    with_limb: bool = False,
    layout: Layout | None = None,
    scaling: float = 1.0,
    double: bool = False,
    clip_len: int | None = None,
) -> np.ndarray:
    """PYSKL ``GeneratePoseTarget``: heatmaps ``[T, C, H, W]`` (``[2T, ...]`` with ``double``).

    Keypoints ``kp [M, T, V, 2]`` in ``img_shape`` pixels are multiplied by ``scaling`` and
    drawn on the canvas :func:`heatmap_canvas`; channels are the joints (``with_kp``) then the
    layout's limbs (``with_limb``).  ``double`` appends the flip-test copy (equal to
    :func:`flip_test_heatmaps`), built by scattering the values at mirrored positions rather
    than copying.  ``layout`` defaults to the one with V joints.

    With ``clip_len`` L the T frames are taken as ``T // L`` clips and the result is laid out
    for the model, ``[views, C, L, H, W]`` (the flipped views after all original ones); it
    equals ``out.reshape(-1, L, C, H, W).transpose(0, 2, 1, 3, 4)`` without the copy.
    """
    if not (with_kp or with_limb):
        raise ValueError("at least one of with_kp and with_limb must be true")
    kp, amp = _prepare(kp, score, use_score)
    if scaling != 1.0:
        kp = kp * np.float32(scaling)
    layout = layout if layout is not None else get_layout(int(kp.shape[2]))
    if with_limb and layout.num_joints != kp.shape[2]:
        raise ValueError(f"layout {layout.name} has {layout.num_joints} joints, got {kp.shape[2]}")
    canvas = heatmap_canvas(img_shape, scaling)
    n_c = (kp.shape[2] if with_kp else 0) + (len(layout.limbs) if with_limb else 0)
    perm = channel_flip_perm(layout, with_kp, with_limb) if double else None
    # Entry channel c lands on flipped channel j with perm[j] == c.
    inv = np.argsort(perm) if perm is not None else None
    scatter = _Scatter(kp.shape[1], n_c, canvas, clip_len=clip_len, flip_perm=inv)
    if with_kp:
        _joint_entries(scatter, kp, amp, sigma)
    if with_limb:
        _limb_entries(scatter, kp, amp, layout.limbs, sigma, kp.shape[2] if with_kp else 0)
    return scatter.out


# ----------------------------------------------------------------------------- torch path
def _bounds_t(lo: torch.Tensor, hi: torch.Tensor, sigma: float, size: int):
    st = torch.trunc(lo.double() - 3 * sigma).clamp(0, size).long()
    ed = (torch.trunc(hi.double() + 3 * sigma) + 1).clamp(0, size).long()
    return st, torch.maximum(ed, st)


def _render_t(
    flat: torch.Tensor,
    bases: list[tuple[torch.Tensor, bool]],
    amp: torch.Tensor,
    bounds,
    d2_fn,
    sigma: float,
    width: int,
    k: tuple[int, int] | None,
) -> None:
    """Evaluate entries on padded windows; scatter-max into ``flat`` at ``base + y*W + x``.

    ``bases`` holds one flat offset per entry and whether that copy is mirrored (x -> W-1-x).
    """
    st_x, ed_x, st_y, ed_y = bounds
    if amp.numel() == 0:
        return
    if k is None:  # limbs: window size depends on the data (one device sync per batch)
        kx = int((ed_x - st_x).max().item())
        ky = int((ed_y - st_y).max().item())
    else:
        kx, ky = k
    if kx <= 0 or ky <= 0:
        return
    step = max(1, (_CHUNK_PIXELS * 4) // (kx * ky))
    dev = amp.device
    ar_x = torch.arange(kx, device=dev)
    ar_y = torch.arange(ky, device=dev)
    var = torch.tensor(sigma**2, dtype=torch.float32, device=dev)
    for lo in range(0, amp.numel(), step):
        e = slice(lo, lo + step)
        px = st_x[e, None] + ar_x
        py = st_y[e, None] + ar_y
        valid = (py < ed_y[e, None])[:, :, None] & (px < ed_x[e, None])[:, None, :]
        d2 = d2_fn(e, px.float(), py.float())
        val = torch.exp(-d2 / 2 / var) * amp[e, None, None]
        val = torch.where(valid, val, torch.zeros((), device=dev)).reshape(-1)
        rows = py[:, :, None] * width
        for base, mirrored in bases:
            cols = (width - 1 - px) if mirrored else px
            # Padding pixels (outside the window) point at the entry's base with value 0,
            # which max() ignores; no boolean compaction, so no device sync.
            idx = base[e, None, None] + rows + cols[:, None, :]
            idx = torch.where(valid, idx, base[e, None, None])
            flat.scatter_reduce_(0, idx.reshape(-1), val, reduce="amax")


def batch_heatmaps_torch(
    kp: torch.Tensor,
    score: torch.Tensor | None,
    shape: tuple[int, int],
    sigma: float = 0.6,
    limbs: Sequence[tuple[int, int]] | None = None,
    use_score: bool = True,
    with_kp: bool = True,
    flip_perm: Sequence[int] | None = None,
    views: int = 1,
) -> torch.Tensor:
    """Heatmaps for a batch on ``kp``'s device: ``[N, C, T, H, W]`` float32.

    ``kp [N, M, T, V, 2]`` canvas pixels, ``score [N, M, T, V]`` (None or ``use_score=False``:
    amplitude 1); channels are the V joints (``with_kp``) followed by one per limb in ``limbs``
    (if given).  Same formula, windows and max-merge as :func:`keypoint_heatmaps` /
    :func:`limb_heatmaps` (equal within float32 rounding).

    With ``flip_perm`` (see :func:`channel_flip_perm`) the flip-test copies are scattered too
    and the result is ``[2N, C, T, H, W]``: the clips are taken in groups of ``views`` (one
    sample's views) and each group is followed by its mirrored copies, so
    ``out.view(N // views, 2 * views, ...)`` is the data pipeline's view order.  Each copy
    equals :func:`flip_heatmaps_torch` of its original, without a dense copy.
    """
    if kp.ndim != 5 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints must be [N, M, T, V, 2], got {tuple(kp.shape)}")
    n, m, t, v, _ = kp.shape
    if views < 1 or n % views:
        raise ValueError(f"{n} clips are not whole groups of {views} views")
    h, w = shape
    dev = kp.device
    kp = kp.float()
    finite = torch.isfinite(kp).all(-1)
    if score is None or not use_score:
        amp = torch.ones(kp.shape[:-1], dtype=torch.float32, device=dev)
    else:
        amp = score.to(device=dev, dtype=torch.float32)
    amp = torch.where(finite & (amp >= EPS), amp, torch.zeros((), device=dev))
    kp = torch.where(finite[..., None], kp, torch.zeros((), device=dev))
    limbs = list(limbs) if limbs is not None else []
    n_kp = v if with_kp else 0
    n_c = n_kp + len(limbs)
    copies = 1 if flip_perm is None else 2
    out = torch.zeros((copies * n, n_c, t, h, w), dtype=torch.float32, device=dev)
    if n_c == 0 or h == 0 or w == 0:
        return out
    if flip_perm is not None and len(flip_perm) != n_c:
        raise ValueError(f"flip_perm has {len(flip_perm)} entries for {n_c} channels")
    flat = out.view(-1)
    clip = torch.arange(n, device=dev)
    slot = (clip // views) * (copies * views) + clip % views  # output clip of each input clip
    t_idx = torch.arange(t, device=dev).view(1, 1, t, 1)
    inv = None
    if flip_perm is not None:
        inv = torch.argsort(torch.as_tensor(list(flip_perm), dtype=torch.long, device=dev))

    def bases(chans: torch.Tensor) -> list[tuple[torch.Tensor, bool]]:
        """Flat offsets of entries ordered (clip, person, frame, channel)."""

        def one(slots, ch):
            b = ((slots.view(-1, 1, 1, 1) * n_c + ch.view(1, 1, 1, -1)) * t + t_idx) * (h * w)
            return b.expand(n, m, t, ch.numel()).reshape(-1)

        out_bases = [(one(slot, chans), False)]
        if inv is not None:
            out_bases.append((one(slot + views, inv[chans]), True))
        return out_bases

    if with_kp:
        mu = kp.reshape(-1, 2)
        mux, muy = mu[:, 0], mu[:, 1]
        bx = _bounds_t(mux, mux, sigma, w)
        by = _bounds_t(muy, muy, sigma, h)
        k = min(int(6 * sigma) + 2, w), min(int(6 * sigma) + 2, h)

        def d2_joint(e, x, y):
            dx = x - mux[e, None]
            dy = y - muy[e, None]
            return dy[:, :, None] ** 2 + dx[:, None, :] ** 2

        chans = torch.arange(v, device=dev)
        _render_t(flat, bases(chans), amp.reshape(-1), (*bx, *by), d2_joint, sigma, w, k)

    if limbs:
        n_l = len(limbs)
        la = torch.tensor([a for a, _ in limbs], device=dev)
        lb = torch.tensor([b for _, b in limbs], device=dev)
        start = kp[:, :, :, la].reshape(-1, 2)
        end = kp[:, :, :, lb].reshape(-1, 2)
        amp_a = amp[:, :, :, la].reshape(-1)
        amp_b = amp[:, :, :, lb].reshape(-1)
        sx, sy, ex, ey = start[:, 0], start[:, 1], end[:, 0], end[:, 1]
        d2_ab = (sx - ex) ** 2 + (sy - ey) ** 2
        degenerate = d2_ab < 1
        value = torch.minimum(amp_a, amp_b)
        value = torch.where(degenerate & (value > 0), amp_a, value)
        st_x, ed_x = _bounds_t(torch.minimum(sx, ex), torch.maximum(sx, ex), sigma, w)
        st_y, ed_y = _bounds_t(torch.minimum(sy, ey), torch.maximum(sy, ey), sigma, h)
        pst_x, ped_x = _bounds_t(sx, sx, sigma, w)
        pst_y, ped_y = _bounds_t(sy, sy, sigma, h)
        st_x, ed_x = torch.where(degenerate, pst_x, st_x), torch.where(degenerate, ped_x, ed_x)
        st_y, ed_y = torch.where(degenerate, pst_y, st_y), torch.where(degenerate, ped_y, ed_y)
        # Entries with nothing to draw get an empty window so they do not widen the padding.
        empty = value <= 0
        ed_x = torch.where(empty, st_x, ed_x)
        ed_y = torch.where(empty, st_y, ed_y)
        safe_ab = torch.where(degenerate, torch.ones((), device=dev), d2_ab)

        def d2_limb(e, x, y):
            x = x[:, None, :]
            y = y[:, :, None]
            ax, ay, bx_, by_ = (q[e, None, None] for q in (sx, sy, ex, ey))
            d2_start = (x - ax) ** 2 + (y - ay) ** 2
            d2_end = (x - bx_) ** 2 + (y - by_) ** 2
            ab = safe_ab[e, None, None]
            coeff = (d2_start - d2_end + ab) / 2.0 / ab
            d2_line = (x - (ax + coeff * (bx_ - ax))) ** 2 + (y - (ay + coeff * (by_ - ay))) ** 2
            d2 = torch.where(coeff <= 0, d2_start, torch.where(coeff >= 1, d2_end, d2_line))
            return torch.where(degenerate[e, None, None], d2_start, d2)

        chans = n_kp + torch.arange(n_l, device=dev)
        _render_t(flat, bases(chans), value, (st_x, ed_x, st_y, ed_y), d2_limb, sigma, w, None)
    return out


def flip_heatmaps_torch(heatmaps: torch.Tensor, flip_perm: Sequence[int]) -> torch.Tensor:
    """Mirror ``[N, C, T, H, W]`` maps: columns reversed, channel j takes ``flip_perm[j]``."""
    perm = torch.as_tensor(list(flip_perm), dtype=torch.long, device=heatmaps.device)
    return heatmaps.flip(-1).index_select(1, perm)
