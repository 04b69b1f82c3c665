"""Scene shards in worker processes: one closed loop over B scenes on several CPU cores.

A batched step is a few hundred small tensor operations; at B ~ 1,000 most of them are too small for
torch's intra-op threads, so one process keeps about one core busy however many threads it is given
(measured on 2 cores at B=1024: user time ~= wall time). A :class:`ShardPool` instead starts W worker
processes (``spawn``: no forked OpenMP state), gives each a contiguous slice of the scenes (made into a
:class:`~sim.batch.ScenarioBatch` once, in the worker), and runs the closed loop (:func:`sim.rollout.rollout`
and :func:`sim.metrics.registry.compute_metrics`) in all of them at once, each with ``threads`` torch threads.

Each scene's rollout does not depend on the other scenes of its batch, so the metrics equal those of
one process running the same slices; against one batch of all B scenes they agree to float32
round-off (different batch sizes may sum in a different order).
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing as mp
import pickle
import resource
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from scenarios.scenario import Scenario
from sim.compiled import StepCompile
from sim.config import DEFAULT_MAX_AGENTS, SimError

PolicyFactory = Callable[[torch.device], Any]
"""A picklable ``(device) -> policy_fn | None`` (module-level function or ``functools.partial`` of one);
``policy_fn`` as :func:`sim.rollout.rollout` takes it, None for log replay."""


@dataclass(frozen=True)
class ShardSettings:
    """How each worker simulates (the same for every worker).

    Attributes:
        workers: number of worker processes (>= 1).
        threads: torch intra-op threads per worker (>= 1).
        max_agents: agent cap per scene, ego included (:func:`sim.batch.select_agents`).
        agents: other agents' model, ``log`` or ``idm``.
        seed: torch seed set in each worker before each run.
        compile: :class:`~sim.compiled.StepCompile` for the rollout and metrics (default eager).
    """

    workers: int = 2
    threads: int = 1
    max_agents: int = DEFAULT_MAX_AGENTS
    agents: str = "log"
    seed: int = 0
    compile: StepCompile = StepCompile()


@dataclass(frozen=True)
class WorkerStats:
    """What one worker reports with each run.

    Attributes:
        seconds: wall time of its rollout and metrics (s).
        peak_rss_mb: its own peak resident memory so far (MB; ``VmHWM`` on Linux).
    """

    seconds: float
    peak_rss_mb: float


def split_evenly(n: int, parts: int) -> list[range]:
    """``n`` indices in ``min(parts, n)`` contiguous ranges whose sizes differ by at most one."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    out, start = [], 0
    for k in range(parts):
        size = base + (k < extra)
        out.append(range(start, start + size))
        start += size
    return out


def _own_peak_rss_mb() -> float:
    """This process's own peak resident memory (MB): ``VmHWM`` where ``/proc`` has it. ``ru_maxrss`` is the
    fallback; on Linux it also counts the parent's peak before the worker was started, so it can over-report."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: " + " ".join(str(e).split())


def _worker(conn, scenes: list[Scenario], settings: ShardSettings) -> None:
    """Worker loop: build the batch once, then answer ``("run", key, policy_factory)`` with the metrics."""
    try:
        torch.set_num_threads(settings.threads)
        from sim.batch import make_batch
        from sim.metrics.registry import compute_metrics
        from sim.rollout import rollout

        batch = make_batch(scenes, device="cpu", max_agents=settings.max_agents)
        conn.send(("ready", batch.num_scenes))
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("error", _one_line(e)))
        return
    cached: tuple[bytes, Any] | None = None
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "close":
            return
        try:
            key, factory = msg[1], msg[2]
            if cached is None or cached[0] != key:  # the same factory as last time: its policy is reused
                cached = (key, factory(torch.device("cpu")))
            torch.manual_seed(settings.seed)
            start = time.perf_counter()
            with torch.no_grad():
                ro = rollout(batch, cached[1], agents=settings.agents, compile=settings.compile)
                metrics = compute_metrics(ro, batch, settings.compile)
            del ro  # freed before the next run allocates its own
            stats = WorkerStats(time.perf_counter() - start, _own_peak_rss_mb())
            conn.send(("ok", ({k: v.numpy() for k, v in metrics.items()}, stats)))
        except Exception as e:  # noqa: BLE001 - reported to the parent as one line
            last = traceback.extract_tb(e.__traceback__)[-1]
            conn.send(("error", f"{_one_line(e)} ({last.filename}:{last.lineno})"))


class ShardPool:
    """W worker processes, each owning a contiguous slice of ``scenes``, that run the closed loop together.

    Args:
        scenes: the scenes (one batch: equal ``init_step`` and ``dt``).
        settings: workers, threads per worker, agent cap and model, seed, compile.

    Raises:
        SimError: no scenes, bad settings, or a worker failed to start (the message names the worker).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, scenes: Sequence[Scenario], settings: ShardSettings = ShardSettings()) -> None:
        if not scenes:
            raise SimError("ShardPool: no scenes")
        if settings.workers < 1 or settings.threads < 1:
            raise SimError(f"ShardPool: workers and threads must be >= 1, got {settings.workers}, {settings.threads}")
        self.settings = settings
        self.last_stats: tuple[WorkerStats, ...] = ()  # per worker, from the latest run
        self.slices = split_evenly(len(scenes), settings.workers)
        ctx = mp.get_context("spawn")
        self._procs, self._conns = [], []
        try:
            for sl in self.slices:
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker, args=(child, [scenes[i] for i in sl], settings), daemon=True)
                p.start()
                child.close()
                self._procs.append(p)
                self._conns.append(parent)
            for k in range(len(self._conns)):
                self._receive(k, "ready")
        except BaseException:
            self.close()
            raise

    @property
    def num_scenes(self) -> int:
        """B, the number of scenes over all workers."""
        return self.slices[-1].stop

    def _receive(self, k: int, want: str) -> Any:
        return self._check(k, want, self._recv(k))

    def _recv(self, k: int) -> tuple[str, Any]:
        try:
            return self._conns[k].recv()
        except (EOFError, OSError):
            return "error", f"exited (code {self._procs[k].exitcode})"

    def _check(self, k: int, want: str, msg: tuple[str, Any]) -> Any:
        kind, payload = msg
        if kind == "error":
            raise SimError(f"ShardPool: worker {k} (scenes {self.slices[k].start}..{self.slices[k].stop - 1}): "
                           f"{payload}")
        if kind != want:
            raise SimError(f"ShardPool: worker {k} answered {kind!r}, expected {want!r}")
        return payload

    def run(self, policy: PolicyFactory | None) -> dict[str, torch.Tensor]:
        """Closed loop of every scene under ``policy``, all workers at once.

        Args:
            policy: a picklable ``(device) -> policy_fn``; None: the ego replays its log.

        Returns:
            ``{metric: float32 [B]}`` in scene order (:func:`sim.metrics.registry.compute_metrics`); each worker's
            :class:`WorkerStats` are in :attr:`last_stats`.

        Raises:
            SimError: the policy cannot be pickled, or a worker failed (its error, in one line).
        """
        if not self._conns:
            raise SimError("ShardPool: closed")
        factory = policy if policy is not None else _log_replay
        try:  # the factory's content digest names it: a worker rebuilds its policy only when it changes
            key = hashlib.sha256(pickle.dumps(factory)).hexdigest()
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise SimError(f"ShardPool: the policy factory cannot be pickled ({e})") from None
        for c in self._conns:
            c.send(("run", key, factory))
        answers = [self._recv(k) for k in range(len(self._conns))]  # every answer read: no stale replies
        parts = [self._check(k, "ok", a) for k, a in enumerate(answers)]
        self.last_stats = tuple(p[1] for p in parts)
        return {name: torch.from_numpy(np.concatenate([p[0][name] for p in parts])) for name in parts[0][0]}

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for c in self._conns:
            with contextlib.suppress(OSError):  # a worker that already exited
                c.send(("close",))
            c.close()
        for p in self._procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        self._conns, self._procs = [], []

    def __enter__(self) -> ShardPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class CheckpointPolicy:
    """A picklable policy factory: each worker loads the checkpoint itself (no weights travel by pipe).

    Attributes:
        path: checkpoint file. agent: the agent plug-in it is loaded with (``own``: this project's
            checkpoints, ``torch.load(..., weights_only=True)``; see :mod:`sim.evaluation.plugins`).
    """

    path: str
    agent: str = "own"

    def __call__(self, device: torch.device):
        from sim.evaluation.plugins import load_agent, policy_fn

        return policy_fn(load_agent(self.agent, self.path, str(device)))


def _log_replay(device: torch.device) -> None:
    """The log-replay 'policy' (no policy: the ego follows its log)."""
    return None
