"""``sim.evaluate --budget``: the loop that runs the race of :mod:`sim.selection.budget` on the simulator.

The allocation, the stop decision and P(best) are :func:`sim.selection.budget.race` (torch-free); this module
only answers its requests ("these candidates on these scenes") with the executors, commits every answer to the
results file as a full sweep would (so a budgeted run resumes, and a later full sweep reuses it), and builds the
verdict's ``budget`` section (:func:`sim.selection.budget.budget_section`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.scenario import Scenario
from scenarios.scene_file import scene_ids
from sim.evaluation.executors import make_executor, run_units
from sim.evaluation.units import SimSettings, make_shards, make_units
from sim.metrics.catalogue import higher_is_better
from sim.results.errors import EvaluationError
from sim.results.reader import read_checkpoints
from sim.results.schema import CheckpointRows
from sim.selection.budget import BudgetPlan, RaceResult, budget_rollouts, budget_section, race


def _known(out: Path, keys: Sequence[str], ids: Sequence[str], metric: str) -> np.ndarray:
    """Stored scores [K, N] of ``metric`` (NaN where a pair is not stored)."""
    known = np.full((len(keys), len(ids)), np.nan)
    if not out.exists():
        return known
    col = {s: j for j, s in enumerate(ids)}
    row = {k: i for i, k in enumerate(keys)}
    for st in read_checkpoints(out):
        if st.key in row and metric in st.rows.metrics:
            for s, v in zip(st.rows.scenario_ids, st.rows.metrics[metric], strict=True):
                if s in col:
                    known[row[st.key], col[s]] = v
    return known


def check_budget(cands: Sequence[Any], scenes: Sequence[Scenario], budget: float) -> int:
    """The rollouts ``--budget`` allows for these checkpoint candidates and scenes; checked before anything is
    written (``sim.evaluation.orchestration``).

    Raises:
        EvaluationError: a bad ``--budget``, or fewer rollouts than checkpoints (each needs one scene at least).
    """
    racers = [c for c in cands if not c.is_baseline]
    try:
        total = budget_rollouts(budget, len(racers), len(scene_ids(scenes)))
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    if racers and total < len(racers):
        raise EvaluationError(f"--budget {budget}: {total} rollouts, fewer than the {len(racers)} checkpoints "
                              "(at least one scene each)")
    return total


def run_budget(cands: Sequence[Any], scenes: Sequence[Scenario], *, budget: float, confidence: float, metric: str,
               seed: int, batch_size: int, settings: SimSettings, executor: str, ray_address: str | None,
               num_cpus: int | None, out: Path, commit: Callable[[str, CheckpointRows], None],
               progress: bool = True, scene_window: int = 0) -> tuple[RaceResult, list[str]]:
    """Race the checkpoint candidates (baselines run afterwards on the race's scenes); commit every result.

    Args:
        cands: the run's candidates (``Candidate``: ``key``, ``kind``, ``name``, ``path``), baselines included.
        scenes: the sweep's scenes. budget: ``--budget`` (:func:`sim.selection.budget.budget_rollouts`).
        confidence: ``--confidence``. metric: ``--metric`` (its direction from ``sim.metrics.catalogue``).
        commit: ``commit(key, rows)`` stores rows in the results file. out: the results file (stored pairs
            are reused, not simulated). scene_window: ``--scene-window`` (:func:`sim.evaluation.units.make_units`).

    Returns:
        The race and the scenario ids every checkpoint received (the verdict's common scenes).

    Raises:
        EvaluationError: a bad ``--budget``, or ``metric`` undefined on a scene.
    """
    racers = [c for c in cands if not c.is_baseline]
    ids = scene_ids(scenes)
    plan = BudgetPlan(total=check_budget(cands, scenes, budget), confidence=confidence, seed=seed)
    sign = 1.0 if higher_is_better(metric) else -1.0
    shards = make_shards(scenes, batch_size)
    pool = make_executor(executor, ray_address, num_cpus)

    def simulate(todo: dict[str, set[int]], sub: Sequence[Any]) -> dict[str, CheckpointRows]:
        got: dict[str, CheckpointRows] = {}

        def keep(key: str, rows: CheckpointRows) -> None:  # once per scene window
            commit(key, rows)
            got[key] = CheckpointRows.concat([got[key], rows]) if key in got else rows

        run_units(pool, make_units(sub, shards, todo, scene_window), scenes, settings, keep, progress=progress)
        return got

    def evaluate(ask: dict[int, list[int]]) -> dict[int, np.ndarray]:
        got = simulate({racers[k].key: set(v) for k, v in ask.items()}, [racers[k] for k in ask])
        res = {}
        for k, v in ask.items():
            rows = got[racers[k].key].select([ids[j] for j in v])
            vals = np.asarray(rows.metrics[metric], dtype=np.float64)
            if not np.isfinite(vals).all():
                raise EvaluationError(f"--metric {metric}: undefined on some scenes; --budget needs a metric "
                                      "defined on every scene (score is)")
            res[k] = sign * vals
        return res

    try:
        result = race(len(racers), len(ids), plan, evaluate, sign * _known(out, [c.key for c in racers], ids, metric))
        common = [ids[j] for j in result.order[: int(result.n_scenes.min())]] if racers else ids
        bases = [c for c in cands if c.is_baseline]
        if bases:
            reach = {int(j) for j in result.order[: int(result.n_scenes.max())]} if racers else set(range(len(ids)))
            stored = {c.key: set(_stored_ids(out, c.key)) for c in bases}
            simulate({c.key: {j for j in reach if ids[j] not in stored[c.key]} for c in bases}, bases)
    finally:
        pool.close()
    return result, common


def _stored_ids(out: Path, key: str) -> list[str]:
    if not out.exists():
        return []
    return next((list(s.rows.scenario_ids) for s in read_checkpoints(out) if s.key == key), [])


def run_budget_cfg(cfg: Any, cands: Sequence[Any], scenes: Sequence[Scenario], settings: SimSettings, out: Path,
                   commit: Callable[[str, CheckpointRows], None]) -> tuple[dict[str, Any], list[str]]:
    """:func:`run_budget` with the settings of an ``EvalConfig``; returns the verdict's ``budget`` section
    (:func:`sim.selection.budget.budget_section`) and the scenario ids every checkpoint received."""
    result, common = run_budget(cands, scenes, budget=cfg.budget, confidence=cfg.confidence, metric=cfg.metric,
                                seed=cfg.seed, batch_size=cfg.batch_size, settings=settings, executor=cfg.executor,
                                ray_address=cfg.ray_address, num_cpus=cfg.num_cpus or None, out=out, commit=commit,
                                progress=cfg.progress, scene_window=cfg.scene_window)
    racers = [c for c in cands if not c.is_baseline]
    doc = budget_section(result, [c.key for c in racers], [c.name for c in racers], cfg.metric, cfg.confidence,
                         cfg.seed)
    return doc, common
