"""Closed-loop evaluation on one or several CARLA servers (one world each), scenes spread across them.

:func:`evaluate_carla` is what ``python -m sim.evaluate --backend carla`` calls. Each server gets a
worker thread with its own :class:`~sim.carla.backend.CarlaBackend`; workers take scenes from one
shared queue (so a slow server simply does fewer), run :func:`sim.rollout.rollout` with B = 1, and
results come back in the order of the input scenes. CARLA's client releases the GIL while it
waits for the server, so threads are enough; the policy is called from several threads under
``torch.no_grad()``.

When a server fails (stalls, disappears), its current scene is retried once on another server
and the failed server takes no more work; the run fails when no server is left.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from sim.carla import CarlaError
from sim.carla.backend import CarlaBackend, CarlaConfig
from sim.carla.session import Endpoint, probe


@dataclass(frozen=True, eq=False)
class CarlaRun:
    """One scene driven in CARLA.

    Attributes:
        scene_id: the scene.
        rollout: :class:`sim.rollout.Rollout` with B = 1 (``traj [1, A, T, 7]``...).
        batch: the one-scene :class:`sim.batch.ScenarioBatch` it ran on (for metrics).
        sensor_collision: bool ``[T]``: CARLA's collision sensor fired in the step ending at t.
            The box-overlap metric on ``rollout.traj`` is the primary check (the sensor misses
            contacts); OR the two to report a collision.
        collision_actors: CARLA type ids of what the sensor reported.
        endpoint: ``host:port`` of the server that ran it.
        wall_s: seconds of wall time for the scene (map load included).
    """

    scene_id: str
    rollout: object
    batch: object
    sensor_collision: np.ndarray
    collision_actors: tuple[str, ...]
    endpoint: str
    wall_s: float


def parse_endpoints(host: str, ports: Sequence[int] | int) -> list[Endpoint]:
    """``--carla-host H --carla-port P [P ...]`` (or ``H1,H2``: one server per host and port) -> endpoints."""
    hosts = [h.strip() for h in host.split(",") if h.strip()]
    ports = [ports] if isinstance(ports, int) else list(ports)
    if not hosts or not ports:
        raise CarlaError("need at least one CARLA host and one port")
    return [Endpoint(h, int(p)) for h in hosts for p in ports]


def check_servers(endpoints: Sequence[Endpoint], timeout: float = 2.0) -> None:
    """Probe every server in parallel (about ``timeout`` s at worst); raise one :class:`CarlaError` listing failures."""
    with ThreadPoolExecutor(max_workers=max(1, len(endpoints))) as ex:
        futures = [ex.submit(probe, ep, timeout) for ep in endpoints]
    errors = []
    for fut in futures:
        try:
            fut.result()
        except CarlaError as exc:
            errors.append(str(exc))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CarlaError(errors[0] + more)


def evaluate_carla(
    scenes: Sequence,
    policy_fn: Callable | None,
    endpoints: Sequence[Endpoint] | Endpoint,
    *,
    cfg: CarlaConfig | None = None,
    record_obs: bool = False,
    max_agents: int = 32,
    progress: Callable[[CarlaRun], None] | None = None,
    backend_factory: Callable[..., CarlaBackend] | None = None,
) -> list[CarlaRun]:
    """Drive every scene in closed loop on CARLA.

    Args:
        scenes: :class:`scenarios.scenario.Scenario` objects (any mix of generated-map and town scenes).
        policy_fn: ``(obs [1, OBS_DIM], t) -> (waypoints [1, K, 2], aux)``; None = the ego replays its log.
        endpoints: one server, or several (scenes are spread across them).
        cfg: backend settings.
        record_obs: keep observations in each rollout.
        max_agents: agents per scene passed to :func:`sim.batch.make_batch`.
        progress: called with each finished run (from worker threads), e.g. to advance a progress bar.
        backend_factory: ``(endpoint, scenes, cfg, cancel) -> CarlaBackend``; given, servers are not probed
            first (the factory connects its own way). Default :class:`CarlaBackend`.

    Returns:
        One :class:`CarlaRun` per scene, in input order.

    Raises:
        CarlaError: a server is unreachable at the start (within a few seconds), or every server failed.
    """
    from sim.batch import make_batch
    from sim.rollout import rollout

    eps = [endpoints] if isinstance(endpoints, Endpoint) else list(endpoints)
    if not eps:
        raise CarlaError("no CARLA server given")
    cfg = cfg or CarlaConfig()
    if backend_factory is None:
        check_servers(eps, cfg.session.probe_timeout)
    factory = backend_factory or CarlaBackend
    todo: queue.Queue = queue.Queue()
    for i in range(len(scenes)):
        todo.put((i, 0))
    results: list[CarlaRun | None] = [None] * len(scenes)
    failures: list[str] = []
    alive = [len(eps)]
    lock = threading.Lock()
    stop = threading.Event()

    def worker(ep: Endpoint) -> None:
        backend = factory(ep, scenes, cfg, cancel=stop)
        try:
            while not stop.is_set():
                try:
                    i, tries = todo.get_nowait()
                except queue.Empty:
                    return
                scene = scenes[i]
                t0 = time.monotonic()
                try:
                    batch = make_batch([scene], max_agents=max_agents)
                    ro = rollout(batch, policy_fn, record_obs=record_obs, backend=backend)
                    backend.close_scene()
                except CarlaError as exc:
                    if stop.is_set():
                        return
                    with lock:
                        failures.append(f"{ep} on scene {scene.id!r}: {exc}")
                        alive[0] -= 1
                        if tries == 0 and alive[0] > 0:
                            todo.put((i, 1))
                            print(
                                f"warning: CARLA server {failures[-1]}; it takes no more work, scene retried elsewhere"
                            )
                        else:
                            stop.set()
                    return
                run = CarlaRun(
                    scene.id,
                    ro,
                    batch,
                    backend.sensor_collision[0].copy(),
                    tuple(backend.collision_actors[0]),
                    str(ep),
                    time.monotonic() - t0,
                )
                results[i] = run
                if progress is not None:
                    progress(run)
        except BaseException:
            stop.set()
            raise
        finally:
            backend.close()

    if len(eps) == 1:
        worker(eps[0])
    else:
        with ThreadPoolExecutor(max_workers=len(eps), thread_name_prefix="carla") as ex:
            futures = [ex.submit(worker, ep) for ep in eps]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                stop.set()
                raise
    missing = [scenes[i].id for i, r in enumerate(results) if r is None]
    if missing:
        first = failures[0] if failures else "stopped"
        raise CarlaError(f"{len(missing)} scene(s) not run in CARLA (first: {missing[0]!r}); {first}")
    return results  # type: ignore[return-value]


# --- several servers behind the executor interface of sim.executors (run(units, scenes, settings), close()) ---

_WORKER_ENDPOINT: Endpoint | None = None
_WORKER_SCENES: list = []


def _init_worker(endpoints, scenes) -> None:
    """Process initialiser: claim one server for this worker process and register the scenes."""
    global _WORKER_ENDPOINT, _WORKER_SCENES
    from multiprocessing.util import Finalize

    from sim.carla.backend import close_all, register_scenes

    Finalize(None, close_all, exitpriority=100)  # worker processes skip atexit: close sessions here
    _WORKER_ENDPOINT = endpoints.get()
    _WORKER_SCENES = list(scenes)
    register_scenes(_WORKER_SCENES)


def _run_unit(unit, settings):
    """One work unit on this worker's server (``sim.executors.evaluate_unit`` with the host and port replaced)."""
    from dataclasses import replace

    from sim.executors import evaluate_unit

    ep = _WORKER_ENDPOINT
    local = replace(settings, backend="carla", carla_host=ep.host, carla_port=ep.port)
    return evaluate_unit(unit, [_WORKER_SCENES[i] for i in unit.scenes], local)


class CarlaPoolExecutor:
    """Runs ``sim.executors`` work units on several CARLA servers at once, one worker process per server.

    Same interface as ``sim.executors.LocalExecutor`` / ``RayExecutor``: ``run(units, scenes, settings)``
    yields each unit's result as it completes (any order); ``close()``. Each worker process owns one
    server for its lifetime, so a server never has two clients driving it.

    Args:
        endpoints: the servers (e.g. from :func:`parse_endpoints`); all are probed at construction.
        probe_timeout: s per probe.
    """

    name = "carla-pool"

    def __init__(self, endpoints: Sequence[Endpoint], probe_timeout: float = 2.0) -> None:
        if not endpoints:
            raise CarlaError("no CARLA server given")
        check_servers(endpoints, probe_timeout)
        self.endpoints = list(endpoints)
        self._pool = None
        self._manager = None

    def run(self, units, scenes, settings):
        """Yield ``sim.executors.UnitResult`` per unit as the servers finish them."""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("spawn")
        self._manager = ctx.Manager()
        q = self._manager.Queue()
        for ep in self.endpoints:
            q.put(ep)
        self._pool = ProcessPoolExecutor(
            max_workers=len(self.endpoints), mp_context=ctx, initializer=_init_worker, initargs=(q, list(scenes))
        )
        futures = [self._pool.submit(_run_unit, u, settings) for u in units]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        """Stop the worker processes (each closes its CARLA session on the way out)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._manager is not None:
            self._manager.shutdown()
            self._manager = None
