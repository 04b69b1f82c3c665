"""The unit function: one checkpoint (or baseline) in closed loop on one shard of scenes, then its metrics.

:func:`evaluate_unit` is the pure function every executor calls (:mod:`sim.evaluation.executors`), so the process
and Ray executors give the same numbers as the local one (same shards, same batches, deterministic policy). Its two
halves, :func:`simulate_unit` (the batch and the mean-action rollout) and :func:`score_unit` (metrics, trajectories,
sampled-action rollouts), let the local executor score one unit beside the next one's rollout. A process keeps the
policies it loaded and its scene window's batches (least recently used dropped first).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from scenarios.scenario import Scenario, content_digest
from sim.compiled import StepCompile
from sim.evaluation.units import SimSettings, UnitResult, WorkUnit
from sim.metrics.catalogue import epdms, nuplan_score, score_terms
from sim.results.errors import EvaluationError
from sim.results.schema import CheckpointRows, SampledRows


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


def clear_batches() -> None:
    """Drop the scene batches this process keeps (after a call: a later call builds its own)."""
    _BATCHES.clear()


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
    from sim.evaluation.plugins import non_finite_reason

    endpoints = carla_endpoints(settings.carla_host, settings.carla_ports)
    with torch.inference_mode():
        fn = _policy_fn(unit, None, settings, dt=float(scenes[0].dt))
        runs = evaluate_carla(list(scenes), fn, endpoints, max_agents=settings.max_agents)
        failed = non_finite_reason(fn)
        if failed:
            return UnitResult(unit.key, unit.shard, None, failed)
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
        rollout-major), after and independent of the mean-action one, whose rows are those of K = 0. No rows
        and ``failed`` set when the agent returned a NaN or an infinity (nothing of it is scored).
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
    from sim.evaluation.plugins import non_finite_reason

    if batch is None:
        batch = unit_batch(scenes, settings)
    ids = tuple(s.id for s in scenes)
    with torch.inference_mode():
        fn = _policy_fn(unit, batch, settings)
        ro = rollout(batch, fn, agents=settings.agents, compile=StepCompile(enabled=settings.compile))
    failed = non_finite_reason(fn, ids)
    if failed:
        return UnitResult(unit.key, unit.shard, None, failed)
    return Simulated(unit, ids, batch, ro, settings)


def score_unit(sim: Simulated | UnitResult) -> UnitResult:
    """The second half of :func:`evaluate_unit`: metrics and trajectories of the rollout, then the sampled-action
    rollouts (``settings.rollouts``); a unit :func:`simulate_unit` finished already is returned as it is.
    Thread-safe: :class:`LocalExecutor` runs it beside the next rollout."""
    if isinstance(sim, UnitResult):
        return sim
    settings, unit = sim.settings, sim.unit
    step_compile = StepCompile(enabled=settings.compile)
    with torch.inference_mode():
        rows = _rows(sim.ids, sim.rollout, sim.batch, step_compile)
        if settings.rollouts > 0 and unit.kind == "checkpoint":
            sampled = _sampled_rows(unit, sim.ids, sim.batch, settings, step_compile)
            if isinstance(sampled, str):
                return UnitResult(unit.key, unit.shard, None, sampled)
            rows = dataclasses.replace(rows, sampled=sampled)
    return UnitResult(unit.key, unit.shard, rows)


def _sampled_rows(unit: WorkUnit, ids: tuple[str, ...], batch, settings: SimSettings,
                  step_compile: StepCompile) -> SampledRows | str:
    """``settings.rollouts`` rollouts of the unit's checkpoint with sampled actions (:func:`rollout_seed`), or why
    they are not scored (a sampled action was not finite)."""
    from sim.evaluation.plugins import non_finite_reason
    from sim.rollout import rollout

    parts = []
    for k in range(settings.rollouts):
        gen = torch.Generator(device=settings.device).manual_seed(rollout_seed(settings.seed, unit.key, k, ids))
        fn = _policy_fn(unit, batch, settings, generator=gen)
        ro = rollout(batch, fn, agents=settings.agents, compile=step_compile)
        failed = non_finite_reason(fn, ids)
        if failed:
            return f"{failed} (sampled rollout {k})"
        r = _rows(ids, ro, batch, step_compile)
        parts.append(SampledRows(ids, np.full(len(ids), k, dtype=np.int32), r.metrics))
    return SampledRows.concat(parts)
