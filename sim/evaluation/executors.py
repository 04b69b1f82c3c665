"""Executors: run work units (:mod:`sim.evaluation.units`) locally, in worker processes, or on Ray actors.

Every executor calls the same unit function (:func:`sim.evaluation.unit_eval.evaluate_unit`) and gives the same
rows; :func:`run_units` commits a checkpoint's rows once per scene window, :func:`pick_executor` resolves
``--executor auto``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from scenarios.scenario import Scenario
from scenarios.scene_file import SceneFile
from sim.evaluation.unit_eval import clear_batches, evaluate_unit, score_unit, simulate_unit, unit_batch
from sim.evaluation.units import SimSettings, UnitResult, WorkUnit, worker_batches_held
from sim.results.errors import EvaluationError
from sim.results.schema import CheckpointRows


class LocalExecutor:
    """Runs units one after another in this process (a scene window's batches kept across checkpoints).

    On the CPU, eager, a unit's metrics and the next unit's batch run on a second thread while the next unit's
    rollout runs (and while the caller commits): torch releases the interpreter lock inside its operations, so the
    two overlap on two cores (``benchmarks.eval_sweep``: docs/performance.md). Only the second thread builds
    batches. Results are those of :func:`.unit_eval.evaluate_unit`, in unit order. A ``MODULE:FACTORY`` agent
    plug-in runs on one thread (it may keep state between calls).

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
        clear_batches()


def deal(units: Sequence[WorkUnit], workers: int) -> list[list[WorkUnit]]:
    """Units dealt to at most ``workers`` workers by shard (shard k of the sorted shards to worker k mod W), each
    worker's in the given order (window by window, checkpoint by checkpoint: :func:`.units.make_units`): a shard's
    batch is built by one worker only and reused for every checkpoint. No worker gets nothing."""
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
    (scene window by window, checkpoint by checkpoint within one: :func:`.units.make_units`): a shard's batch is built
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
    on_failed: Callable[[str, str], None] | None = None,
) -> None:
    """Run ``units``; as soon as every unit of a key in a scene window is back, call ``on_complete(key, rows)`` with
    that window's rows (shards in order): once per (key, window), so once per key when the scenes fit one window.

    A tqdm bar (stderr) counts scenes. ``results``: ``executor.run(units, scenes, settings)`` when the caller
    started it already (its first batch or its workers then start up beside the caller's own setup).

    A unit that comes back ``failed`` (its agent returned a NaN or an infinity) fails its key: ``on_failed(key,
    reason)`` once, and none of that key's rows still to come are passed on (the other keys go on).

    Raises:
        EvaluationError: a unit failed and there is no ``on_failed`` (the reason, naming the file).
    """
    from tqdm import tqdm

    left: dict[tuple[str, int], int] = {}
    for u in units:
        left[u.key, u.window] = left.get((u.key, u.window), 0) + 1
    parts: dict[tuple[str, int], list[UnitResult]] = {}
    window_of = {(u.key, u.shard): u.window for u in units}
    size = {(u.key, u.shard): len(u.scenes) for u in units}
    source = {u.key: u.source for u in units}
    failed: set[str] = set()
    bar = tqdm(total=sum(len(u.scenes) for u in units), unit="scene", disable=not progress, desc="closed loop",
               file=sys.stderr)
    try:
        for res in executor.run(units, scenes, settings) if results is None else results:
            bar.update(size[res.key, res.shard])
            if res.key in failed:
                continue
            if res.failed or res.rows is None:
                failed.add(res.key)
                for slot in [s for s in parts if s[0] == res.key]:
                    del parts[slot]
                if on_failed is None:
                    raise EvaluationError(f"{source[res.key]}: {res.failed}")
                on_failed(res.key, res.failed)
                continue
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
