"""Executors: run (checkpoint x scenario shard) work units locally, in worker processes, or on Ray actors.

A work unit is one checkpoint (or baseline) on one shard of scenes; :func:`evaluate_unit`
is the pure function every executor calls, so the process and Ray executors give the same numbers
as the local one (same shards, same batches, deterministic policy). Shards group scenes of
equal ``init_step`` and ``dt`` (a batch shares them) in order, ``batch_size`` at most.

Memory is bounded by a *scene window* (``--scene-window``): consecutive shards of at most that many scenes. Units
run window by window, every checkpoint on the window's shards before the next window (:func:`make_units`), so a
process builds each scene batch once, keeps only its window's batches (plus the next one, being built:
:data:`SimSettings.batches_held`) and drops them after the window; a checkpoint's rows are committed once per window
(:func:`run_units`). Peak memory grows with the window, not with the scene set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from scenarios.scenario import Scenario, content_digest
from scenarios.scene_file import SceneFile
from sim.compiled import StepCompile
from sim.config import DEFAULT_MAX_AGENTS
from sim.metrics.catalogue import epdms, nuplan_score, score_terms
from sim.results.errors import EvaluationError
from sim.results.schema import CheckpointRows, SampledRows


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
            baselines are deterministic and get none); seeded by :func:`rollout_seed`.
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
    rollouts, scene-major within each rollout index)."""

    key: str
    shard: int
    rows: CheckpointRows


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


# --- the unit function ----------------------------------------------------------------------------

class _LRU:
    """A least-recently-used cache shared by the local executor's two threads (policies; batches)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, build: Callable[[], Any], capacity: int | None = None) -> Any:
        """The value under ``key``, built (outside the lock: a batch takes a while) when absent; keeps at most
        ``capacity`` (default: the cache's) values."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        val = build()
        with self._lock:
            self._items[key] = val
            while len(self._items) > max(1, capacity or self.capacity):
                self._items.popitem(last=False)
        return val

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every value."""
        with self._lock:
            self._items.clear()


_AGENTS = _LRU(128)  # loaded policies, by file identity (each window cycles through every checkpoint)
_BATCHES = _LRU(2)  # built scene batches, by content; capacity per call: SimSettings.batches_held


def carla_endpoints(host: str, ports: Sequence[int]) -> list:
    """``--carla-host H[,H2] --carla-port P [P ...]`` -> one :class:`sim.backends.carla.session.Endpoint` per server.

    :mod:`sim.evaluation.carla_pool` is imported here, lazily: ``carla`` is needed only with ``--backend carla``.
    """
    from sim.evaluation.carla_pool import parse_endpoints

    return parse_endpoints(host, list(ports))


def _rows(ids: Sequence[str], ro, batch, compile: StepCompile | None = None) -> CheckpointRows:
    from sim.metrics.registry import compute_metrics

    metrics = compute_metrics(ro, batch, compile)
    ego = ro.ego  # [B, T, 7]
    speed = torch.hypot(ego[..., 3], ego[..., 4])
    traj = torch.stack([ego[..., 0], ego[..., 1], ego[..., 2], speed], dim=-1).float()
    traj = torch.where(batch.step_valid[..., None], traj, torch.full_like(traj, float("nan")))
    return CheckpointRows(
        scenario_ids=tuple(ids),
        metrics={k: v.detach().double().cpu().numpy().reshape(len(ids)) for k, v in metrics.items()},
        ego_traj=traj.cpu().numpy().astype(np.float32),
    )


def _evaluate_unit_carla(unit: WorkUnit, scenes: Sequence[Scenario], settings: SimSettings) -> UnitResult:
    """The unit on CARLA server(s): one scene per rollout (``sim.evaluation.carla_pool.evaluate_carla``)."""
    from sim.evaluation.carla_pool import evaluate_carla

    endpoints = carla_endpoints(settings.carla_host, settings.carla_ports)
    with torch.inference_mode():
        fn = _policy_fn(unit, None, settings, dt=float(scenes[0].dt))
        runs = evaluate_carla(list(scenes), fn, endpoints, max_agents=settings.max_agents)
        parts = [_with_sensor_collision(_rows([r.scene_id], r.rollout, r.batch), r) for r in runs]
    return UnitResult(unit.key, unit.shard, CheckpointRows.concat(parts))


def _with_sensor_collision(rows: CheckpointRows, run) -> CheckpointRows:
    """OR CARLA's collision sensor into the box-overlap collision (the sensor misses contacts, boxes are primary).

    A contact only the sensor saw counts as a collision at its first step and, lacking the geometry to judge
    fault, as at fault; both scores are recomputed from the catalogue's formulas with that flag (the EPDMS without
    NAVSIM's human filter: the recorded driver's terms are not in the rows).
    """
    fired = np.flatnonzero(np.asarray(run.sensor_collision, dtype=bool)[run.rollout.init_step + 1 :])
    m = rows.metrics
    if fired.size == 0 or m["collision"][0] > 0:
        return rows
    m = dict(m)
    m["collision"] = np.ones(1)
    m["collision_at_fault"] = np.ones(1)
    m["no_at_fault_collisions"] = np.zeros(1)  # what was hit is unknown: counted as a road user
    m["collision_time"] = np.array([(fired[0] + 1) * run.rollout.dt])
    terms = score_terms(m)
    m["score"] = np.asarray(epdms(terms), dtype=np.float64)
    m["nuplan_score"] = np.asarray(nuplan_score(terms), dtype=np.float64)
    return dataclasses.replace(rows, metrics=m)


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


def rollout_seed(seed: int, key: str, k: int, scene_ids: Sequence[str]) -> int:
    """Seed of sampled rollout ``k`` of checkpoint ``key`` on a batch of scenes (63 bits).

    A function of the call's ``--seed``, the checkpoint, the rollout index and the batch's scene ids only: the
    same call draws the same samples on every executor and on resume, and rollout k of two checkpoints or two
    batches uses independent streams. (A batch draws one ``[B, D]`` normal per step, so samples of a scene
    depend on the shard it is simulated in, i.e. on ``--batch-size``.)
    """
    h = hashlib.blake2b(f"{int(seed)}|{key}|{int(k)}|".encode() + "\x1f".join(scene_ids).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 1


def _policy_fn(unit: WorkUnit, batch, settings: SimSettings, dt: float | None = None,
               generator: torch.Generator | None = None):
    if unit.kind == "baseline":
        if unit.source == "log-replay":
            return None
        if unit.source == "constant-velocity":
            from sim.baselines import constant_velocity_policy

            return constant_velocity_policy(batch.dt if batch is not None else dt)
        raise EvaluationError(f"unknown baseline {unit.source!r}")
    from sim.evaluation.plugins import load_agent, policy_fn

    st = os.stat(unit.source)
    agent = _AGENTS.get((settings.agent, unit.source, st.st_mtime_ns, st.st_size, settings.device),
                        lambda: load_agent(settings.agent, unit.source, settings.device))
    return policy_fn(agent, generator)


def load_policy(path: str, device: str = "cpu"):
    """Load a checkpoint's policy and check it fits this simulator (observation and waypoints).

    Raises:
        policy.checkpoint.CheckpointError: missing, corrupt, or another architecture.
    """
    from policy.checkpoint import CheckpointError, load_checkpoint
    from sim.config import NUM_WAYPOINTS
    from sim.observation import OBS_DIM, OBS_VERSION

    loaded = load_checkpoint(path, device=device, expect_obs=(OBS_DIM, OBS_VERSION))
    k = loaded.policy.config.num_waypoints
    if k != NUM_WAYPOINTS:
        raise CheckpointError(f"{path}: policy outputs {k} waypoints, the simulator expects {NUM_WAYPOINTS}")
    return loaded.policy


def evaluate_unit(unit: WorkUnit, scenes: Sequence[Scenario], settings: SimSettings) -> UnitResult:
    """Closed-loop rollout of one checkpoint on one shard, metrics and ego trajectories.

    Args:
        unit: the work unit.
        scenes: the shard's scenes (``len(unit.scenes)``), in unit order.
        settings: simulation settings.

    Returns:
        Rows for the shard's scenes: metrics float64 ``[n]``, ego_traj float32 ``[n, T, 4]``
        (x m, y m, yaw rad, speed m/s; NaN at steps the scene does not have); with ``settings.rollouts`` K > 0
        and a checkpoint, ``rows.sampled`` holds K more rollouts with sampled actions (``[K * n]`` metrics,
        rollout-major), after and independent of the mean-action one, whose rows are those of K = 0.
    """
    done = simulate_unit(unit, scenes, settings)
    return done if isinstance(done, UnitResult) else score_unit(done)


@dataclass(frozen=True, eq=False)
class Simulated:
    """A unit's mean-action rollout, before its metrics (:func:`simulate_unit` -> :func:`score_unit`)."""

    unit: WorkUnit
    ids: tuple[str, ...]
    batch: Any
    rollout: Any
    settings: SimSettings


def unit_batch(scenes: Sequence[Scenario], settings: SimSettings):
    """The batch of a shard's scenes: built (through the prepared-scene cache) once per process and reused by every
    checkpoint while it stays among the :attr:`SimSettings.batches_held` most recent."""
    from sim.batch import make_batch
    from sim.scene_cache import SceneCache

    return _BATCHES.get(
        (tuple(content_digest(s) for s in scenes), settings.device, settings.max_agents),
        lambda: make_batch(scenes, device=settings.device, max_agents=settings.max_agents,
                           cache=SceneCache(settings.scene_cache) if settings.scene_cache else None),
        capacity=settings.batches_held,
    )


def simulate_unit(unit: WorkUnit, scenes: Sequence[Scenario], settings: SimSettings,
                  batch: Any = None) -> Simulated | UnitResult:
    """The first half of :func:`evaluate_unit`: the batch (:func:`unit_batch`, unless given) and the mean-action
    rollout; a CARLA unit is done here (its metrics come with the server's run)."""
    from sim.rollout import rollout

    if settings.threads > 0 and torch.get_num_threads() != settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    if settings.backend == "carla":
        return _evaluate_unit_carla(unit, scenes, settings)
    if batch is None:
        batch = unit_batch(scenes, settings)
    with torch.inference_mode():
        ro = rollout(batch, _policy_fn(unit, batch, settings), agents=settings.agents,
                     compile=StepCompile(enabled=settings.compile))
    return Simulated(unit, tuple(s.id for s in scenes), batch, ro, settings)


def score_unit(sim: Simulated) -> UnitResult:
    """The second half of :func:`evaluate_unit`: metrics and trajectories of the rollout, then the sampled-action
    rollouts (``settings.rollouts``). Thread-safe: :class:`LocalExecutor` runs it beside the next rollout."""
    settings, unit = sim.settings, sim.unit
    step_compile = StepCompile(enabled=settings.compile)
    with torch.inference_mode():
        rows = _rows(sim.ids, sim.rollout, sim.batch, step_compile)
        if settings.rollouts > 0 and unit.kind == "checkpoint":
            rows = dataclasses.replace(rows, sampled=_sampled_rows(unit, sim.ids, sim.batch, settings, step_compile))
    return UnitResult(unit.key, unit.shard, rows)


def _sampled_rows(unit: WorkUnit, ids: tuple[str, ...], batch, settings: SimSettings,
                  step_compile: StepCompile) -> SampledRows:
    """``settings.rollouts`` rollouts of the unit's checkpoint with sampled actions (:func:`rollout_seed`)."""
    from sim.rollout import rollout

    parts = []
    for k in range(settings.rollouts):
        gen = torch.Generator(device=settings.device).manual_seed(rollout_seed(settings.seed, unit.key, k, ids))
        ro = rollout(batch, _policy_fn(unit, batch, settings, generator=gen), agents=settings.agents,
                     compile=step_compile)
        r = _rows(ids, ro, batch, step_compile)
        parts.append(SampledRows(ids, np.full(len(ids), k, dtype=np.int32), r.metrics))
    return SampledRows.concat(parts)


# --- executors ----------------------------------------------------------------------------------------


class LocalExecutor:
    """Runs units one after another in this process (a scene window's batches kept across checkpoints).

    On the CPU, eager, a unit's metrics and the next unit's batch run on a second thread while the next unit's
    rollout runs (and while the caller commits): torch releases the interpreter lock inside its operations, so the
    two overlap on two cores (``benchmarks.eval_sweep``: docs/performance.md). Only the second thread builds
    batches. Results are those of :func:`evaluate_unit`, in unit order. A ``MODULE:FACTORY`` agent plug-in runs on
    one thread (it may keep state between calls).

    Args:
        overlap: score each unit beside the next rollout (False: one after the other).
    """

    name = "local"

    def __init__(self, overlap: bool = True) -> None:
        self.overlap = overlap
        self._pool = None

    def run(self, units: Sequence[WorkUnit], scenes: Sequence[Scenario], settings: SimSettings) -> Iterator[UnitResult]:
        """Results of ``units``, in unit order. The first batch starts building on the second thread when this is
        called, before the first result is asked for (the caller's own setup overlaps it)."""
        from sim.evaluation.plugins import BUILTINS

        own_code = settings.agent in BUILTINS  # a user's plug-in may keep state between calls: one thread for it
        if not (self.overlap and own_code and settings.device == "cpu" and not settings.compile
                and settings.backend != "carla"):
            return (evaluate_unit(u, [scenes[i] for i in u.scenes], settings) for u in units)
        from concurrent.futures import ThreadPoolExecutor

        self.close_pool()
        self._pool = pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")
        first = pool.submit(unit_batch, [scenes[i] for i in units[0].scenes], settings) if units else None
        return self._overlapped(pool, first, units, scenes, settings)

    @staticmethod
    def _overlapped(pool, next_batch, units: Sequence[WorkUnit], scenes: Sequence[Scenario],
                    settings: SimSettings) -> Iterator[UnitResult]:
        def shard(u: WorkUnit) -> list[Scenario]:
            return [scenes[i] for i in u.scenes]

        try:
            pending = None
            for j, u in enumerate(units):
                batch = next_batch.result()
                if j + 1 < len(units):  # the next unit's batch is built (or found) on the second thread
                    next_batch = pool.submit(unit_batch, shard(units[j + 1]), settings)
                sim = simulate_unit(u, shard(u), settings, batch=batch)
                nxt = pool.submit(score_unit, sim)
                if pending is not None:
                    yield pending.result()
                pending = nxt
            if pending is not None:
                yield pending.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close_pool(self) -> None:
        """Stop the second thread (after the work it holds)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        """Stop the second thread and drop the batches kept for the last scene window (the verdict runs after; a
        later call builds its own)."""
        self.close_pool()
        _BATCHES.clear()


def deal(units: Sequence[WorkUnit], workers: int) -> list[list[WorkUnit]]:
    """Units dealt to at most ``workers`` workers by shard (shard k of the sorted shards to worker k mod W), each
    worker's in the given order (window by window, checkpoint by checkpoint: :func:`make_units`): a shard's batch is
    built by one worker only and reused for every checkpoint. No worker gets nothing."""
    shards = sorted({u.shard for u in units})
    n_w = max(1, min(workers, len(shards)))
    owner = {sh: k % n_w for k, sh in enumerate(shards)}
    plans: list[list[WorkUnit]] = [[] for _ in range(n_w)]
    for u in units:
        plans[owner[u.shard]].append(u)
    return [p for p in plans if p]


class _RayWorker:
    """One Ray actor of :class:`RayExecutor`: its shards' scenes and the call's settings, kept across its units (so
    its batches are too, as a worker process keeps them)."""

    def __init__(self, scenes: Any, settings: SimSettings) -> None:
        self.scenes, self.settings = scenes, settings

    def run(self, unit: WorkUnit) -> UnitResult:
        return evaluate_unit(unit, [self.scenes[i] for i in unit.scenes], self.settings)


RAY_CONNECT_TIMEOUT_S = 30.0  # --ray-address: how long to wait for a cluster before a one-line error


def wait_for_ray(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Wait (bounded) until something listens at a ``--ray-address`` ``host:port`` or ``ray://host:port``.

    ``auto`` and addresses without a port are left to Ray (it fails fast when no local cluster is recorded).

    Raises:
        EvaluationError: nothing listens there within ``timeout_s`` (one line, naming the address).
    """
    import socket
    import time

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(2.0, max(0.1, timeout_s))):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise EvaluationError(
                    f"--ray-address {address}: no Ray cluster answers there after {timeout_s:.0f} s "
                    f"({e.strerror or e}); start one (ray start --head) or drop --ray-address to run locally"
                ) from None
            time.sleep(0.5)


class RayExecutor:
    """Runs units on Ray actors, on a local ``ray.init()`` or a cluster address.

    One actor per CPU of the cluster (at most one per shard); shards are dealt to the actors as
    :class:`ProcessExecutor` deals them to its workers (:func:`deal`), and each actor runs its units in order, so a
    shard's batch is built once, by one actor, and reused for every checkpoint. An actor gets its shards' scenes;
    on a local instance a streamed :class:`~scenarios.scene_file.SceneFile` goes as its path and index instead.

    Args:
        address: Ray cluster address (``auto``, ``ray://host:10001``); None starts a local instance.
        num_cpus: CPUs of a local instance (None: all).
        threads: torch threads per task (1 keeps tasks from oversubscribing cores).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 connect_timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
        try:
            import ray
        except ImportError:
            raise EvaluationError("--executor ray needs Ray: pip install 'driveselect[ray]'") from None
        self._ray = ray
        self._started = False
        self._actors: list = []
        if not ray.is_initialized():
            if address:
                wait_for_ray(address, connect_timeout_s)
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            except Exception as e:  # noqa: BLE001 - ray raises many types for unreachable clusters
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise EvaluationError(f"--executor ray: cannot start or reach Ray ({first[:200]})") from None
            self._started = True

    def run(self, units: Sequence[WorkUnit], scenes: Sequence[Scenario], settings: SimSettings) -> Iterator[UnitResult]:
        """Start the actors and submit every unit now; yield results as they complete (any order)."""
        ray = self._ray
        actor = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker)
        self._kill_actors()
        pending = []
        local_file = self._started and isinstance(scenes, SceneFile)  # this machine's file: the actors read it
        for plan in deal(units, int(ray.cluster_resources().get("CPU", 1))):
            mine = scenes if local_file else {i: scenes[i] for u in plan for i in u.scenes}
            a = actor.remote(mine, dataclasses.replace(settings,
                                                       batches_held=worker_batches_held(plan, settings.batches_held)))
            self._actors.append(a)
            pending += [a.run.remote(u) for u in plan]  # an actor runs one caller's calls in submission order
        return self._collect(pending)

    def _collect(self, pending: list) -> Iterator[UnitResult]:
        ray = self._ray
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    res = ray.get(done[0])
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                        raise cause from None
                    raise EvaluationError(f"--executor ray: a task failed ({str(e).splitlines()[0][:200]})") from None
                yield res
        finally:
            self._kill_actors()

    def _kill_actors(self) -> None:
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []

    def close(self) -> None:
        """Stop the actors; shut down the local Ray instance this executor started."""
        if self._ray.is_initialized():
            self._kill_actors()
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


def _process_worker(units: list[WorkUnit], scenes: dict[int, Scenario] | SceneFile, settings: SimSettings,
                    results) -> None:
    """A :class:`ProcessExecutor` worker: its units in order, each result (or the first error) onto ``results``."""
    for u in units:
        try:
            res = evaluate_unit(u, [scenes[i] for i in u.scenes], settings)
        except BaseException as e:  # noqa: BLE001 - handed to the parent, which raises it
            try:
                results.put(("error", e))
            except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
                results.put(("error", EvaluationError(f"{type(e).__name__}: {e}")))
            return
        results.put(("ok", res))


class ProcessExecutor:
    """Runs units in ``workers`` processes on this machine (``spawn``; no Ray needed), results as they complete.

    Shards are dealt to the workers (shard k to worker k mod W), and each worker runs its units in the given order
    (scene window by window, checkpoint by checkpoint within one: :func:`make_units`): a shard's batch is built
    once, in one worker, and reused for every checkpoint, and a checkpoint's window is complete (committed) once
    each worker has done its shards of it. With
    ``SimSettings.threads`` = 1, W workers keep W cores busy (one process keeps about one core busy
    whatever its thread count: a step is hundreds of small tensor operations).

    Args:
        workers: worker processes (None or 0: ``os.cpu_count()``).
    """

    name = "processes"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._procs: list = []
        self._starts: list[threading.Thread] = []
        self._queue = None

    def run(self, units: Sequence[WorkUnit], scenes: Sequence[Scenario], settings: SimSettings) -> Iterator[UnitResult]:
        """Start the workers now, each from a thread of its own, and return at once: a spawned worker reads its
        arguments only once it has imported torch, so starting them one after the other would hold the caller (and
        every later worker) for that long. The iterator yields results as they complete (any order) and raises a
        unit's error, or the error that kept a worker from starting."""
        import multiprocessing as mp

        plans = deal(units, self.workers)
        self.close()
        ctx = mp.get_context("spawn")
        self._queue = results = ctx.Queue()
        procs, starts, errors = self._procs, self._starts, []

        def start(p) -> None:
            try:
                p.start()
            except BaseException as e:  # noqa: BLE001 - raised by the results iterator
                errors.append(e)

        for plan in plans:
            held = worker_batches_held(plan, settings.batches_held)
            # a worker gets only its shards' scenes; a streamed file goes as its path and index, read there
            mine = scenes if isinstance(scenes, SceneFile) else {i: scenes[i] for u in plan for i in u.scenes}
            procs.append(ctx.Process(target=_process_worker, daemon=True,
                                     args=(plan, mine, dataclasses.replace(settings, batches_held=held), results)))
            starts.append(threading.Thread(target=start, args=(procs[-1],), name="worker-start", daemon=True))
            starts[-1].start()
        return self._collect(len(units), procs, results, starts, errors)

    def _collect(self, n_units: int, procs: list, results, starts: list[threading.Thread],
                 errors: list[BaseException]) -> Iterator[UnitResult]:
        import queue

        try:
            for t in starts:
                t.join()
            if errors:
                raise errors[0]
            for _ in range(n_units):
                while True:
                    try:
                        kind, payload = results.get(timeout=1.0)
                        break
                    except queue.Empty:
                        if not all(p.is_alive() or p.exitcode == 0 for p in procs):
                            raise EvaluationError("--executor processes: a worker process died (out of memory "
                                                  "or killed?)") from None
                if kind == "error":
                    raise payload
                yield payload
        finally:
            _stop_workers(procs, results, starts)

    def close(self) -> None:
        """Stop the workers of the last :meth:`run` (killed if still running: called after its results, or on an
        error)."""
        _stop_workers(self._procs, self._queue, self._starts)
        self._procs, self._starts, self._queue = [], [], None


def _stop_workers(procs: list, results, starts: list[threading.Thread]) -> None:
    """Once their starts are over, kill the worker processes still running, join those that started and close their
    queue (each once)."""
    for t in starts:
        t.join()
    starts.clear()
    for p in procs:
        if p.pid is None:  # its start failed
            continue
        if p.is_alive():
            p.kill()
        p.join()
    procs.clear()
    if results is not None:
        with contextlib.suppress(OSError, ValueError):
            results.close()


def run_units(
    executor,
    units: Sequence[WorkUnit],
    scenes: Sequence[Scenario],
    settings: SimSettings,
    on_complete: Callable[[str, CheckpointRows], None],
    progress: bool = True,
    results: Iterator[UnitResult] | None = None,
) -> None:
    """Run ``units``; as soon as every unit of a key in a scene window is back, call ``on_complete(key, rows)`` with
    that window's rows (shards in order): once per (key, window), so once per key when the scenes fit one window.

    A tqdm bar (stderr) counts scenes. ``results``: ``executor.run(units, scenes, settings)`` when the caller
    started it already (its first batch or its workers then start up beside the caller's own setup).
    """
    from tqdm import tqdm

    left: dict[tuple[str, int], int] = {}
    for u in units:
        left[u.key, u.window] = left.get((u.key, u.window), 0) + 1
    parts: dict[tuple[str, int], list[UnitResult]] = {}
    window_of = {(u.key, u.shard): u.window for u in units}
    bar = tqdm(total=sum(len(u.scenes) for u in units), unit="scene", disable=not progress, desc="closed loop",
               file=sys.stderr)
    try:
        for res in executor.run(units, scenes, settings) if results is None else results:
            bar.update(len(res.rows.scenario_ids))
            slot = (res.key, window_of[res.key, res.shard])
            parts.setdefault(slot, []).append(res)
            left[slot] -= 1
            if left[slot] == 0:
                done = sorted(parts.pop(slot), key=lambda r: r.shard)
                on_complete(res.key, CheckpointRows.concat([r.rows for r in done]))
    finally:
        bar.close()


EXECUTORS = ("auto", "local", "processes", "ray")
AUTO_PROCESSES_MIN_ROLLOUTS = 5_000
"""``--executor auto``: the (checkpoint, scene) rollouts of a call from which worker processes pay for their start
(a spawned interpreter importing torch, each worker's scenes pickled to it). ``benchmarks.eval_sweep`` on 2 cores:
the README's 10 x 200 sweep took 20.3 s with worker processes and 20.4 s in this process; 20 x 500 took 37.7 s
against 41.7-49.2 s (docs/performance.md)."""


def pick_executor(name: str, rollouts: int, shards: int, settings: SimSettings, cpus: int | None = None
                  ) -> tuple[str, str]:
    """The executor ``--executor name`` runs on, and why (``""`` when it was named).

    ``auto``: worker processes (:class:`ProcessExecutor`) on a machine of several CPUs for a sweep of at least
    :data:`AUTO_PROCESSES_MIN_ROLLOUTS` rollouts in two batches or more, eager, on the CPU, with the kinematic
    backend and a built-in agent plug-in (a user's plug-in may keep state between calls); else this process
    (:class:`LocalExecutor`). Every executor gives the same rows.

    Args:
        name: one of :data:`EXECUTORS`. rollouts: (checkpoint, scene) rollouts to run. shards: batches of scenes.
        settings: the call's :class:`SimSettings`. cpus: CPUs of this machine (None: ``os.cpu_count()``).
    """
    if name != "auto":
        return name, ""
    from sim.evaluation.plugins import BUILTINS

    cpus = cpus or os.cpu_count() or 1
    if cpus < 2:
        return "local", "auto: one CPU"
    if settings.device != "cpu" or settings.compile or settings.backend != "kinematic" or \
            settings.agent not in BUILTINS:
        return "local", "auto: worker processes only for eager CPU runs of the kinematic backend and built-in agents"
    if shards < 2 or rollouts < AUTO_PROCESSES_MIN_ROLLOUTS:
        return "local", f"auto: {rollouts} rollouts in {shards} batch(es), under the {AUTO_PROCESSES_MIN_ROLLOUTS} " \
                        "at which worker processes pay"
    return "processes", f"auto: {rollouts} rollouts on {cpus} CPUs"


def make_executor(name: str, address: str | None = None, num_cpus: int | None = None):
    """One of :data:`EXECUTORS`; ``num_cpus``: worker processes (``processes``) or a local Ray instance's CPUs."""
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(num_cpus)
    if name == "ray":
        return RayExecutor(address, num_cpus)
    raise EvaluationError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
