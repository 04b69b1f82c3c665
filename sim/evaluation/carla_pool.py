"""Closed-loop evaluation on one or several CARLA servers (one world each), scenes spread across them.

:func:`evaluate_carla` is what ``python -m sim.evaluate --backend carla`` calls. Each server gets a
worker thread with its own :class:`~sim.backends.carla.backend.CarlaBackend`; workers take scenes from one
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

from sim.backends.carla import CarlaError
from sim.backends.carla.backend import CarlaBackend, CarlaConfig
from sim.backends.carla.session import Endpoint, probe
from sim.config import DEFAULT_MAX_AGENTS


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
    max_agents: int = DEFAULT_MAX_AGENTS,
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
