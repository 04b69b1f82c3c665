"""The plan of an evaluation call: its simulation settings, scene shards, scene windows and work units.

A work unit is one checkpoint (or baseline) on one shard of scenes (:func:`sim.evaluation.unit_eval.evaluate_unit`
runs one; :mod:`sim.evaluation.executors` run many). Shards group scenes of equal ``init_step`` and ``dt`` (a batch
shares them) in order, ``batch_size`` at most.

Memory is bounded by a *scene window* (``--scene-window``): consecutive shards of at most that many scenes. Units
run window by window, every checkpoint on the window's shards before the next window (:func:`make_units`), so a
process builds each scene batch once, keeps only its window's batches (plus the next one, being built:
:attr:`SimSettings.batches_held`) and drops them after the window; a checkpoint's rows are committed once per window
(:func:`sim.evaluation.executors.run_units`). Peak memory grows with the window, not with the scene set.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scenarios.scenario import Scenario
from sim.config import DEFAULT_MAX_AGENTS
from sim.results.errors import EvaluationError
from sim.results.schema import CheckpointRows


@dataclass(frozen=True)
class SimSettings:
    """How units are simulated (identical for every unit of a call).

    Attributes:
        backend: ``kinematic`` or ``carla``.
        device: torch device for the batch and the policy (``cpu``, ``cuda``).
        agents: other agents' model, ``log`` or ``idm``.
        max_agents: agent cap per scene, ego included (the one rule: ``sim.batch.select_agents``).
        seed: torch seed set before each unit.
        threads: torch CPU threads per process (1: the policy and simulator tensors are small, and
            intra-op threads only contend; it also makes every executor compute the same way).
        carla_host: CARLA server host(s), comma-separated. carla_ports: their RPC port(s) (one server each).
        agent: the agent plug-in checkpoints are loaded with (:func:`sim.evaluation.plugins.resolve_factory`).
        compile: ``torch.compile`` the hot parts (:class:`sim.compiled.StepCompile`; continuous metrics differ from
            eager's at float32 round-off, a borderline boolean one can flip).
        rollouts: K rollouts with sampled actions per (checkpoint, scene) besides the mean-action one (0: none;
            baselines are deterministic and get none); seeded by :func:`sim.evaluation.unit_eval.rollout_seed`.
        scene_cache: folder of prepared scenes shared by the call's processes (:class:`sim.scene_cache.SceneCache`;
            "": prepare in memory only).
        batches_held: scene batches a process keeps built (least recently used dropped first): a scene window's
            shards plus the next one (:func:`batches_held`).
    """

    backend: str = "kinematic"
    device: str = "cpu"
    agents: str = "log"
    max_agents: int = DEFAULT_MAX_AGENTS
    seed: int = 0
    threads: int = 1
    carla_host: str = "localhost"
    carla_ports: tuple[int, ...] = (2000,)
    agent: str = "own"
    compile: bool = False
    rollouts: int = 0
    scene_cache: str = ""
    batches_held: int = 2


@dataclass(frozen=True)
class WorkUnit:
    """One checkpoint on one shard.

    Attributes:
        key: candidate key. kind: ``checkpoint`` or ``baseline``.
        source: checkpoint path, or the baseline name.
        shard: shard number. scenes: indices into the call's scene list.
        window: the scene window the shard belongs to (:func:`scene_windows`); a checkpoint's rows are committed
            once per window.
    """

    key: str
    kind: str
    source: str
    shard: int
    scenes: tuple[int, ...]
    window: int = 0


@dataclass(frozen=True, eq=False)
class UnitResult:
    """Results of one unit: ``rows`` for the shard's scenes, in shard order (``rows.sampled``: its sampled-action
    rollouts, scene-major within each rollout index); or, when the checkpoint cannot be scored (its agent returned
    a NaN or an infinity: ``sim.evaluation.plugins.non_finite_reason``), no rows and ``failed``, the reason."""

    key: str
    shard: int
    rows: CheckpointRows | None
    failed: str = ""


def make_shards(scenes: Sequence[Scenario], batch_size: int) -> list[tuple[int, ...]]:
    """Split scene indices into batches of equal (init_step, dt), keeping order within a group.

    Returns:
        Tuples of indices into ``scenes``; every index appears once.
    """
    if batch_size < 1:
        raise EvaluationError(f"--batch-size must be >= 1, got {batch_size}")
    from scenarios.scene_file import scene_keys

    groups: OrderedDict[tuple[int, float], list[int]] = OrderedDict()
    for i, (init_step, dt) in enumerate(scene_keys(scenes)):  # a streamed file's without decoding its scenes
        groups.setdefault((init_step, round(dt, 9)), []).append(i)
    shards = []
    for idx in groups.values():
        for j in range(0, len(idx), batch_size):
            shards.append(tuple(idx[j : j + batch_size]))
    return shards


def scene_windows(shards: Sequence[tuple[int, ...]], window: int) -> list[list[int]]:
    """Consecutive shard numbers grouped into windows of at most ``window`` scenes (a shard larger than the window
    is a window of its own; ``window`` 0: one window).

    Returns:
        Lists of shard numbers; every shard appears once, in order.
    """
    out: list[list[int]] = []
    n = 0
    for k, sh in enumerate(shards):
        if not out or (window > 0 and n + len(sh) > window):
            out.append([])
            n = 0
        out[-1].append(k)
        n += len(sh)
    return out


def batches_held(shards: Sequence[tuple[int, ...]], window: int) -> int:
    """:attr:`SimSettings.batches_held` for a call: the most shards of one window, plus the next batch."""
    return max((len(w) for w in scene_windows(shards, window)), default=0) + 1


def worker_batches_held(plan: Sequence[WorkUnit], cap: int) -> int:
    """:attr:`SimSettings.batches_held` of a worker process that runs ``plan``: it builds only its own shards, so it
    keeps its most shards of one window plus the next batch (at most ``cap``, the call's)."""
    per_window: dict[int, set[int]] = {}
    for u in plan:
        per_window.setdefault(u.window, set()).add(u.shard)
    return min(cap, max((len(v) for v in per_window.values()), default=0) + 1)


def make_units(cands: Sequence[Any], shards: Sequence[tuple[int, ...]], todo: dict[str, set[int]],
               window: int = 0) -> list[WorkUnit]:
    """Work units for the scene indices each candidate still needs (``todo[key]``): window by window
    (:func:`scene_windows`), within a window candidate by candidate, shard by shard."""
    units = []
    for w, members in enumerate(scene_windows(shards, window)):
        for c in cands:
            need = todo.get(c.key, set())
            for k in members:
                sel = tuple(i for i in shards[k] if i in need)
                if sel:
                    units.append(WorkUnit(c.key, c.kind, c.name if c.kind == "baseline" else c.path, k, sel, w))
    return units


MAX_ROLLOUTS = 64  # --rollouts: at most this many sampled rollouts per (checkpoint, scene)


def check_rollouts(k: int) -> int:
    """``--rollouts K``'s range: an integer in [0, :data:`MAX_ROLLOUTS`].

    Raises:
        ValueError: outside the range (one line naming the flag).
    """
    if isinstance(k, bool) or int(k) != k or not 0 <= int(k) <= MAX_ROLLOUTS:
        raise ValueError(f"--rollouts must be an integer in [0, {MAX_ROLLOUTS}] (sampled rollouts per checkpoint "
                         f"and scene; 0: the mean action only), got {k}")
    return int(k)
