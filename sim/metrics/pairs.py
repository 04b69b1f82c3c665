"""Which (ego, agent, step) pairs the box-overlap and TTC tests look at: conservative filters and a broad phase.

:func:`pair_filters` is the one elementwise filter: two bounding circles that meet now (overlap) or at the relative
motion's closest approach within :data:`~sim.geometry.TTC_HORIZON` (TTC). :func:`pair_candidates` applies it to
every (scene, agent, step) of a rollout. :func:`broad_phase_candidates` finds the same pairs (as flat indices of the
tables' ``True`` entries) without reading every pair: each agent's track is cut into chunks of :data:`BROAD_CHUNK`
steps, and a chunk whose bounding box cannot come within reach of the ego's, even closing at the chunk's largest
relative speed for the whole horizon, is skipped. With log-replay agents the other agents' chunk bounds do not
depend on the policy: they are computed once per shared record (:attr:`sim.rollout.Rollout.ego_row`) and reused by
every later rollout of the batch, so an agent far from the ego costs a few comparisons per chunk instead of a pass
over its states.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from scenarios.scenario import LENGTH, VX, VY, WIDTH, X, Y
from sim.geometry import TTC_HORIZON

BROAD_CHUNK = 8  # steps per chunk of the broad phase
BROAD_SLACK = 0.05  # m added to the chunk test's reach against float32 rounding (the exact filters keep 1 mm)
FILTER_CHUNK = 1 << 18  # (scene, agent, step) pairs per chunk of the one-pass filters (1 MB temporaries)
FINE_BLOCK = 1 << 13  # chunks per block of the exact filters (about 4 MB of gathered states)
_SHARED_BOUNDS: WeakIdKeyDictionary = WeakIdKeyDictionary()
"""Per shared (read-only) rollout record, the chunk bounds of its rows (:func:`broad_phase_candidates`)."""


def pair_filters(ego: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """Whether two boxes' bounding circles meet now, and at their closest approach within the TTC horizon.

    Constant velocities; the closest approach is taken over ``[0, TTC_HORIZON]`` s; both tests have 1 mm of slack
    against rounding. Pure elementwise work (the same values whatever the layout).

    Args:
        ego: float32 ``[..., 7]`` states (x, y, yaw, vx, vy, length, width). other: float32 ``[..., 7]``,
            broadcastable against ``ego``.

    Returns:
        ``(now, within_horizon)`` bool, the broadcast shape without the last axis.
    """
    dx, dy = other[..., X] - ego[..., X], other[..., Y] - ego[..., Y]
    ego_diag = torch.hypot(ego[..., LENGTH], ego[..., WIDTH])
    reach = (ego_diag + torch.hypot(other[..., LENGTH], other[..., WIDTH])) / 2 + 1e-3
    reach2 = reach * reach
    now = dx * dx + dy * dy <= reach2
    wx, wy = other[..., VX] - ego[..., VX], other[..., VY] - ego[..., VY]
    tau = (-(dx * wx + dy * wy) / (wx * wx + wy * wy).clamp_min(1e-12)).clamp(0.0, TTC_HORIZON)
    cx, cy = dx + wx * tau, dy + wy * tau
    return now, cx * cx + cy * cy <= reach2


def pair_candidates(ego: Tensor, record: Tensor, valid: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Conservative (ego, agent, step) filters of the box-overlap and TTC tests, in one pass over every pair.

    A pair can overlap only if both are valid and their bounding circles meet; it can collide within the TTC
    horizon only if the agent is valid, the step is a TTC row and :func:`pair_filters` says the circles meet within
    the horizon. Pure elementwise work on the whole rollout, so it can be compiled (:class:`~sim.compiled.StepCompile`
    part ``"metric_filters"``) without changing any metric: the exact box and TTC tests run eager on the candidates.

    Args:
        ego: float32 ``[B, T, 7]`` the ego's states. record: float32 ``[B, A, T, 7]`` the rollout's record
            (:attr:`sim.rollout.Rollout.record`: rows ``1:`` are the other agents; its row 0 is not read).
        valid: bool ``[B, A, T]``. rows: bool ``[B, T]`` steps at which TTC is measured.

    Returns:
        ``(overlap, ttc)`` bool ``[B, A-1, T]`` candidates for :func:`~sim.geometry.boxes_overlap` and
        :func:`~sim.geometry.time_to_collision`.
    """
    now, within = pair_filters(ego[:, None], record[:, 1:])
    return valid[:, 1:] & valid[:, :1] & now, valid[:, 1:] & rows[:, None] & within


def pair_candidate_indices(ego: Tensor, record: Tensor, valid: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`pair_candidates` as ascending flat indices ``b * (A-1) * T + a * T + t`` of its ``True`` entries, in
    chunks of scenes whose ``[b, A-1, T]`` temporaries stay about :data:`FILTER_CHUNK` elements (a record read
    once: faster than the broad phase, whose bounds pay off when they are kept)."""
    n_b, n_a, n_t = valid.shape
    chunk = max(1, FILTER_CHUNK // max(1, (n_a - 1) * n_t))
    parts = [pair_candidates(*(x[i : i + chunk] for x in (ego, record, valid, rows))) for i in range(0, n_b, chunk)]
    return tuple(torch.cat([p[j].reshape(-1) for p in parts]).nonzero().squeeze(1) for j in (0, 1))


def pair_rows(idx: Tensor, n_a: int, n_t: int) -> tuple[Tensor, Tensor]:
    """Flat pair indices ``b * (A-1) * T + a * T + t`` into a ``[B, A-1, T]`` table -> ``(ego rows, other rows)``:
    row ``b * T + t`` of the ego's ``[B * T, 7]`` states and row ``(b * A + a + 1) * T + t`` of the record's
    ``[B * A * T, 7]`` (agent ``a + 1`` of scene ``b`` at step ``t``)."""
    b = idx // ((n_a - 1) * n_t)
    return b * n_t + idx % n_t, idx + (b + 1) * n_t


def chunk_starts(n_t: int, chunk: int) -> list[int]:
    """First step of each chunk of ``min(chunk, n_t)`` steps covering ``0 .. n_t - 1``: every ``chunk`` steps, the
    last chunk ending at the last step (it may overlap the one before)."""
    k = min(chunk, n_t)
    starts = list(range(0, n_t - k + 1, k))
    if starts[-1] + k < n_t:
        starts.append(n_t - k)
    return starts


class ChunkBounds(NamedTuple):
    """Per (track, chunk), the range of the states the pair filters read, over every step of the chunk.

    Attributes:
        lo, hi: float32 ``[4, N, C]`` smallest and largest x, y (m), vx, vy (m/s), in that order.
        half_diag: float32 ``[N, C]`` m, the largest half diagonal ``hypot(length, width) / 2``.
        any_valid: bool ``[N, C]`` the track is valid at some step of the chunk.
    """

    lo: Tensor
    hi: Tensor
    half_diag: Tensor
    any_valid: Tensor


def chunk_bounds(x: Tensor, valid: Tensor, chunk: int) -> ChunkBounds:
    """:class:`ChunkBounds` of tracks ``x`` float32 ``[N, T, 7]`` (valid bool ``[N, T]``), chunks at
    :func:`chunk_starts`. Invalid steps count too (their states only widen a range); NaN gives NaN bounds."""
    n_t = x.shape[1]
    k = min(chunk, n_t)
    full = n_t // k
    tail = full * k < n_t  # one more chunk: the last k steps

    def chunked(y: Tensor, reduce) -> Tensor:  # [n, T, ...] -> [n, C, ...] (reduce over each chunk's steps)
        parts = [reduce(y[:, : full * k].unflatten(1, (full, k)), 2)]
        if tail:
            parts.append(reduce(y[:, None, n_t - k :], 2))
        return torch.cat(parts, 1) if tail else parts[0]

    lo, hi = chunked(x, torch.amin), chunked(x, torch.amax)  # [N, C, 7] (two passes: faster than aminmax)
    cols = (X, Y, VX, VY)
    length = torch.maximum(hi[..., LENGTH], -lo[..., LENGTH])
    width = torch.maximum(hi[..., WIDTH], -lo[..., WIDTH])
    return ChunkBounds(
        torch.stack([lo[..., c] for c in cols]), torch.stack([hi[..., c] for c in cols]),
        torch.hypot(length, width) / 2, chunked(valid, torch.any),
    )


def _record_bounds(record: Tensor, valid: Tensor, shared: bool, chunk: int) -> ChunkBounds:
    """:func:`chunk_bounds` of every row of the record (``N = B * A``; the ego's rows are not read later); kept for
    a shared record (its other agents' rows never change), computed afresh otherwise."""
    got = _SHARED_BOUNDS.get(record) if shared else None
    if got is not None and got[1] is valid and got[2] == chunk:
        return got[0]
    n_t, f = record.shape[2:]
    out = chunk_bounds(record.reshape(-1, n_t, f), valid.reshape(-1, n_t), chunk)  # views: no copy of the record
    if shared:
        _SHARED_BOUNDS[record] = (out, valid, chunk)
    return out


def _chunks_within_reach(ego: ChunkBounds, record: ChunkBounds, n_b: int) -> Tensor:
    """bool ``[B, A-1, C]``: chunks in which an agent may come within reach of the ego within the TTC horizon.

    Within a chunk every state lies in its bounds. Along x, where the agent's range lies ahead of the ego's
    (``gap = lo_x - ego_hi_x > 0``), the gap can shrink at most at ``closing = ego_hi_vx - lo_vx`` m/s, so
    ``dx + wx * tau >= gap - max(closing, 0) * tau`` for every step of the chunk and every ``tau`` in
    ``[0, TTC_HORIZON]``: a pair that :func:`pair_filters` keeps has ``gap <= reach + max(closing, 0) *
    TTC_HORIZON``. The same holds behind, and along y; ``reach`` is the sum of the largest half diagonals
    (+ :data:`BROAD_SLACK`). A NaN bound keeps the chunk.
    """
    n_c = ego.any_valid.shape[1]

    def per_scene(x: Tensor) -> Tensor:  # [..., B * A, C] -> [..., B, A-1, C] (the other agents)
        return x.unflatten(-2, (n_b, -1))[..., 1:, :]

    lo, hi = per_scene(record.lo), per_scene(record.hi)  # [4, B, A-1, C]
    e_lo, e_hi = ego.lo.view(4, n_b, 1, n_c), ego.hi.view(4, n_b, 1, n_c)
    reach = per_scene(record.half_diag) + (ego.half_diag.view(n_b, 1, n_c) + (1e-3 + BROAD_SLACK))
    keep = per_scene(record.any_valid).clone()  # the ego's validity is left to the exact filters (TTC ignores it)
    for pos, vel in ((0, 2), (1, 3)):  # x with vx, y with vy
        ahead = (lo[pos] - e_hi[pos]) - (e_hi[vel] - lo[vel]).clamp_min(0.0) * TTC_HORIZON
        behind = (e_lo[pos] - hi[pos]) - (hi[vel] - e_lo[vel]).clamp_min(0.0) * TTC_HORIZON
        keep &= ~(ahead > reach) & ~(behind > reach)
    return keep


def _windows(x: Tensor, k: int) -> Tensor:
    """Every run of ``k`` consecutive rows of ``x`` ``[N, ...]`` (a view, ``[N - k + 1, k, ...]``)."""
    return x.unfold(0, k, 1).movedim(-1, 1)


def broad_phase_candidates(
    ego: Tensor, record: Tensor, valid: Tensor, rows: Tensor, shared: bool = False
) -> tuple[Tensor, Tensor]:
    """:func:`pair_candidates` as flat pair indices, reading only the chunks that may come within reach.

    The candidates are exactly the ``True`` entries of :func:`pair_candidates`' tables (each step of a track
    belongs to one chunk; the last chunk, which may overlap the one before it, owns only the steps after it).

    Args:
        ego, record, valid, rows: as :func:`pair_candidates`.
        shared: ``record``'s other agents never change (a shared log-replay record): their chunk bounds are
            computed once and kept while the record lives.

    Returns:
        ``(overlap, ttc)`` int64 ascending flat indices ``b * (A-1) * T + a * T + t`` into ``[B, A-1, T]``.
    """
    n_b, n_a, n_t, f = record.shape
    none = torch.zeros(0, dtype=torch.long, device=record.device)
    if n_a < 2 or n_t == 0:
        return none, none
    k = min(BROAD_CHUNK, n_t)
    keep = _chunks_within_reach(chunk_bounds(ego, valid[:, 0], k), _record_bounds(record, valid, shared, k), n_b)
    b, a, c = keep.nonzero().unbind(1)  # [S] each, in (scene, agent, chunk) order
    starts = chunk_starts(n_t, k)
    t0 = torch.tensor(starts, device=b.device).index_select(0, c)  # first step of each chunk
    steps = torch.arange(k, device=b.device)
    # the steps each chunk owns: all of them, but the last chunk's that the chunk before it covers
    owned = steps >= (c * k - t0)[:, None]  # [S, k]
    pair = (b * (n_a - 1) + a) * n_t + t0  # first pair of each chunk in the [B, A-1, T] tables
    ego_row, other_row, ego_valid_row = b * n_t + t0, (b * n_a + a + 1) * n_t + t0, b * n_a * n_t + t0
    ego_w, record_w = _windows(ego.reshape(-1, f), k), _windows(record.reshape(-1, f), k)
    valid_w, rows_w = _windows(valid.reshape(-1), k), _windows(rows.reshape(-1), k)
    overlap, ttc = [none], [none]
    for i in range(0, b.numel(), FINE_BLOCK):  # blocks whose gathered states stay in cache
        sl = slice(i, i + FINE_BLOCK)
        now, within = pair_filters(ego_w.index_select(0, ego_row[sl]), record_w.index_select(0, other_row[sl]))
        other_ok = valid_w.index_select(0, other_row[sl]) & owned[sl]
        at = pair[sl, None] + steps
        overlap.append(at[other_ok & valid_w.index_select(0, ego_valid_row[sl]) & now])
        ttc.append(at[other_ok & rows_w.index_select(0, ego_row[sl]) & within])
    return torch.cat(overlap), torch.cat(ttc)
