"""Budgeted selection against full sweeps: regret of the budgeted pick vs rollouts spent, and uniform allocation.

``python -m benchmarks.budgeted_selection --results out/bench/s0/results.h5 out/bench/s1/results.h5 ...`` reads
each results file's full sweep (every distinct policy of a run on every scene: the ground truth), replays
:func:`sim.selection.budget.race` (the function ``sim.evaluate --budget`` runs) on the stored per-scene metric, and
prints one JSON line per budget:

- ``budget``: the ``--budget`` fraction; per run (results file) and over ``--repeats`` scene orders (seeds
  0..R-1): ``rollouts_fraction`` (mean share of the full sweep the race used), ``regret`` (mean, max: full-sweep
  mean of the best checkpoint minus the pick's, in the metric's units, oriented so that lower regret is better),
  ``stop`` (how often each stop reason), and the same regret for **uniform allocation at equal rollouts** (every
  checkpoint the same first ``rollouts // K`` scenes of the same order, highest mean wins);
- ``worst_regret`` / ``worst_uniform_regret`` over every run and order, ``never_worse_than_uniform``
  (per run and order: budgeted regret <= uniform regret), ``max_rollouts_fraction``. A run whose budget is below
  one scene per checkpoint is listed with ``skipped`` and left out of these; a ``note`` says so, and when no run is
  judged they are null.

``--budgets`` are fractions in (0, 1]; bad flags or results files end with one line on stderr, exit status 2.

The full sweeps are made with ``python -m training.train`` (small runs) and ``python -m sim.evaluate --run RUN``
(``--scenarios /work/shared/data --out RUN/results-real.h5`` for the real samples); ``docs/selection.md`` gives
the commands and the figures.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.budgeted_selection", "python -m benchmarks.budgeted_selection")

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks import cli
from scenarios.cli_config import Range
from sim.metrics.catalogue import JUDGED_METRICS, higher_is_better
from sim.results.reader import ResultsError, read_checkpoints, read_summary
from sim.selection.budget import BudgetPlan, budget_rollouts, race, regret, uniform_pick

BUDGETS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def full_sweep(path: Path, metric: str) -> tuple[np.ndarray, list[str], str]:
    """Scores [K, N] (oriented: higher is better) of the checkpoints that cover every scene, their names, and the
    scenario set.

    Raises:
        ValueError: fewer than two checkpoints with a full sweep, or the metric undefined on a scene.
    """
    cps = [s for s in read_checkpoints(path) if s.attrs.get("kind") == "checkpoint"]
    if not cps:
        raise ValueError(f"{path}: no checkpoint results")
    ids = sorted(set.intersection(*(set(s.rows.scenario_ids) for s in cps)))
    full = [s for s in cps if len(s.rows.scenario_ids) == len(ids)]
    if len(full) < 2 or not ids:
        raise ValueError(f"{path}: fewer than two checkpoints with a full sweep")
    sign = 1.0 if higher_is_better(metric) else -1.0
    x = sign * np.stack([np.asarray(s.rows.select(ids).metrics[metric], dtype=np.float64) for s in full])
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: --metric {metric} is undefined on some scenes")
    suite = str(read_summary(path, with_scenarios=False).attrs.get("suite", ""))
    return x, [str(s.attrs.get("name", s.key)) for s in full], suite


def replay(scores: np.ndarray, budget: float, confidence: float, seed: int) -> dict:
    """One budgeted race and uniform allocation at the rollouts it used, on a full sweep's scores."""
    k, n = scores.shape
    plan = BudgetPlan(total=budget_rollouts(budget, k, n), confidence=confidence, seed=seed)
    if plan.total < k:  # not one scene per checkpoint: no pick (the CLI refuses such a budget)
        return {}
    r = race(k, n, plan, lambda ask: {c: scores[c, v] for c, v in ask.items()})
    u = uniform_pick(scores, r.rollouts, seed)
    return {"rollouts": r.rollouts, "regret": regret(scores, r.pick), "uniform_regret": regret(scores, u),
            "stop": r.stop, "pick": r.pick}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line (bad input: one line on stderr, exit status 2)."""
    p = cli.parser("python -m benchmarks.budgeted_selection", __doc__.split("\n")[0])
    cli.flag(p, "--results", "full-sweep results files (one per run and scenario set)", nargs="+", required=True,
             metavar="H5")
    cli.flag(p, "--budgets", "fractions of the full sweep, one JSON line each", default=list(BUDGETS), nargs="+",
             type=float, range=Range(0.0, 1.0, lo_open=True))
    cli.flag(p, "--metric", f"metric the race and the regret are on (sim.metrics.catalogue: "
             f"{', '.join(JUDGED_METRICS)})", default="score", choices=JUDGED_METRICS, metavar="NAME")
    cli.flag(p, "--confidence", "P(best) that ends the race", default=0.95, type=float, range=cli.above(0, 1))
    cli.flag(p, "--repeats", "scene orders (seeds 0..R-1) per run (one order moves a 20-order mean by ~0.002)",
             default=50, type=int, range=cli.at_least(1))
    return p.parse_args(argv)


@cli.one_line_errors
def main(argv: Sequence[str] | None = None) -> int:
    """CLI: one JSON line per budget (module docstring); exit 2 with a one-line error on a bad results file or flag."""
    a = parse_args(argv)
    sweeps = {}
    for path in a.results:
        try:
            sweeps[path] = full_sweep(Path(path), a.metric)
        except (OSError, ValueError, KeyError, ResultsError) as e:
            text = " ".join(str(e).split())
            text = text[len(path) + 2:] if text.startswith(f"{path}: ") else text  # the path once
            print(f"error: --results {path}: {text}", file=sys.stderr)
            return 2
    for b in a.budgets:
        runs, worst, worst_u, never_worse, max_frac, judged = [], 0.0, 0.0, True, 0.0, 0
        for path, (x, names, suite) in sweeps.items():
            reps = [replay(x, b, a.confidence, seed) for seed in range(a.repeats)]
            if not reps[0]:
                runs.append({"results": path, "suite": suite, "checkpoints": len(names), "scenes": x.shape[1],
                             "skipped": "budget below one scene per checkpoint"})
                continue
            judged += 1
            reg = np.array([r["regret"] for r in reps])
            ureg = np.array([r["uniform_regret"] for r in reps])
            frac = np.array([r["rollouts"] for r in reps]) / x.size
            runs.append({"results": path, "suite": suite, "checkpoints": len(names), "scenes": x.shape[1],
                         "spread": float(x.mean(axis=1).max() - x.mean(axis=1).min()),
                         "rollouts_fraction": float(frac.mean()), "regret_mean": float(reg.mean()),
                         "regret_max": float(reg.max()), "uniform_regret_mean": float(ureg.mean()),
                         "uniform_regret_max": float(ureg.max()),
                         "budgeted_worse_than_uniform": int((reg > ureg + 1e-12).sum()),
                         "stop": dict(Counter(r["stop"] for r in reps))})
            worst, worst_u = max(worst, float(reg.max())), max(worst_u, float(ureg.max()))
            never_worse &= bool(reg.mean() <= ureg.mean() + 1e-12)
            max_frac = max(max_frac, float(frac.max()))
        line = {"budget": b, "metric": a.metric, "confidence": a.confidence, "repeats": a.repeats,
                "max_rollouts_fraction": max_frac, "worst_regret": worst, "worst_uniform_regret": worst_u,
                "never_worse_than_uniform_on_average": never_worse, "runs": runs}
        if judged == 0:  # nothing was raced: no figure may read as a success
            line.update(max_rollouts_fraction=None, worst_regret=None, worst_uniform_regret=None,
                        never_worse_than_uniform_on_average=None,
                        note="no run judged: the budget is below one scene per checkpoint in every run")
        elif judged < len(runs):
            line["note"] = (f"{len(runs) - judged} of {len(runs)} runs skipped (budget below one scene per "
                            "checkpoint): the summary is over the others")
        print(json.dumps(line), flush=True)
    return 0
