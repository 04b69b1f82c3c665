"""Scene shards simulated in parallel threads of one process.

A batch of B scenes is split into ``workers`` contiguous shards (:meth:`ScenarioBatch.shard`, views:
padding as in the whole batch); each shard runs a function (a rollout and its metrics) in its own
thread, with one torch intra-op thread per worker while they run. Torch releases the GIL inside its
kernels, so the shards' many small per-step kernels, which are below torch's own intra-op
parallelism threshold, run side by side on the cores instead of one after another.

Every scene's computation reads only its own rows, so the results are those of the whole batch
(``tests/test_sharded.py`` checks them bit for bit against one thread for 1 to 3 workers).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from sim.batch import ScenarioBatch
from sim.config import SimError

R = TypeVar("R")
MIN_SHARD = 16  # scenes; smaller shards are not worth a thread


def shard_bounds(n: int, workers: int, min_shard: int = MIN_SHARD) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: ``n`` scenes in at most ``workers`` contiguous shards of near-equal size.

    Shards hold at least ``min_shard`` scenes (fewer shards otherwise; one when ``n < 2 * min_shard``).
    """
    if workers < 1:
        raise SimError(f"workers must be >= 1, got {workers}")
    k = max(1, min(workers, n // max(1, min_shard)))
    edges = [round(i * n / k) for i in range(k + 1)]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo] or [(0, n)]


def run_sharded(
    batch: ScenarioBatch, fn: Callable[[ScenarioBatch], R], workers: int, min_shard: int = MIN_SHARD
) -> list[R]:
    """``[fn(shard) for shard in batch's shards]``, the shards run in parallel threads.

    Args:
        batch: the scenes.
        fn: called once per shard (a :class:`ScenarioBatch` of views); must not share mutable state
            between calls. The caller's grad and inference modes hold inside it.
        workers: threads (1: ``[fn(batch)]`` in this thread).
        min_shard: fewest scenes per shard (:func:`shard_bounds`).

    Returns:
        The results in shard order (scenes ``0..``); concatenating them gives the batch's.
    """
    bounds = shard_bounds(batch.num_scenes, workers, min_shard)
    if len(bounds) == 1:
        return [fn(batch)]
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def run(lohi: tuple[int, int]) -> R:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(batch.shard(*lohi))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one intra-op thread per worker: the workers are the parallelism
    try:
        with ThreadPoolExecutor(len(bounds), thread_name_prefix="shard") as ex:
            return list(ex.map(run, bounds))
    finally:
        torch.set_num_threads(threads)
