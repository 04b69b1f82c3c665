"""Loading runs for the verdict across seeds: one :class:`~sim.selection.across.SeedResult` per run's results file.

Torch-free (h5py, numpy, scipy): ``python -m sim.across`` and the dashboard both call :func:`load_seed`.
The run's verdict is the stored one when it was judged by the asked metric, else it is recomputed from the
stored per-scenario rows (:func:`sim.selection.report.build_verdict`, restricted to the run's comparison set).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scenarios.commands import command
from sim.results.errors import ResultsError
from sim.results.identity import results_name
from sim.results.run_folder import CONFIG_FILE, select_after
from sim.selection.across import AcrossError, RulePick, SeedResult


def _eval_cmd(run: Path) -> str:
    """The command that evaluates ``run`` into its results file (shell-quoted, ready to paste)."""
    return command("python -m sim.evaluate", "--run", run)


def results_path(run: str | Path) -> Path:
    """The results file of ``run``: a run folder's ``results.h5`` (its first scenario set; another set's file,
    ``results.<set>.h5``, is given directly), or a results file.

    Raises:
        AcrossError: one line naming the path and the command that makes the file.
    """
    p = Path(run)
    if p.is_file():
        return p
    if not p.exists():
        raise AcrossError(f"{p}: no such run folder")
    f = p / results_name()
    if not f.is_file():
        raise AcrossError(f"{f}: no results file; evaluate the run first: {_eval_cmd(p)}")
    return f


def _picks(verdict: dict[str, Any]) -> dict[str, RulePick]:
    out: dict[str, RulePick] = {}
    for rule, e in (verdict.get("rules") or {}).items():
        if e is None:
            continue
        if rule == "random":
            out[rule] = RulePick(name="", rank=0, regret=float(e["expected_regret"]))
        elif e.get("regret") is not None:
            out[rule] = RulePick(name=str(e["name"]), rank=int(e["rank"]), regret=float(e["regret"]))
    return out


def seed_verdict(path: Path, metric: str) -> tuple[dict[str, Any], tuple[str, ...], dict[str, tuple[float, ...]]]:
    """The run's verdict judged by ``metric`` (stored, or recomputed from the rows), its scenario ids and each
    rule's pick's per-scene values (sign-adjusted: higher is better; :attr:`SeedResult.pick_scores`)."""
    from sim.metrics.catalogue import higher_is_better
    from sim.results.reader import read_checkpoints, read_root_attrs, read_verdict
    from sim.selection.report import build_verdict

    attrs, _ = read_root_attrs(path)
    stored = read_checkpoints(path)
    cps = [s for s in stored if s.record.kind == "checkpoint"]
    if not cps:
        raise AcrossError(f"{path}: no checkpoint results")
    ids = tuple(sorted(set.intersection(*(set(s.rows.scenario_ids) for s in cps))))
    expected = json.loads(attrs["comparison_set"]) if "comparison_set" in attrs else None
    v = read_verdict(path)
    if v is None or v.get("metric") != metric or ("completeness" not in v and expected is not None):
        run_dir = Path(str(attrs.get("run_dir") or path.parent))
        v = build_verdict(stored, list(ids), metric, 0, 0, expected=expected, after_episode=select_after(run_dir))
    rows = {s.key: s.rows for s in cps}
    sign = 1.0 if higher_is_better(metric) else -1.0
    scores = {r: tuple(sign * float(x) for x in rows[e["key"]].select(ids).metrics[metric])
              for r, e in (v.get("rules") or {}).items()
              if r != "random" and e and e.get("key") in rows and metric in rows[e["key"]].metrics}
    return v, ids, scores


def pick_variance(path: Path, verdict: dict[str, Any], ids: Sequence[str], metric: str) -> dict[str, Any]:
    """Rule -> :class:`sim.selection.variance.VarianceParts` of its pick's sampled rollouts (``--rollouts K``) on
    ``ids``, for the rules whose pick has them (empty for a file evaluated without ``--rollouts``)."""
    from sim.results.reader import read_sampled
    from sim.selection.variance import decompose_rows

    sampled = read_sampled(path)
    return {r: decompose_rows(sampled[e["key"]], metric, ids) for r, e in (verdict.get("rules") or {}).items()
            if r != "random" and e and e.get("key") in sampled and metric in sampled[e["key"]].metrics}


def load_seed(run: str | Path, metric: str = "score", label: str | None = None) -> SeedResult:
    """One run as a :class:`SeedResult` for :func:`sim.selection.across.compare_runs`.

    Raises:
        AcrossError: no results, no checkpoint rows, or a partial comparison set (one line, naming the file).
    """
    path = results_path(run)
    try:
        from sim.results.reader import read_experiment, read_root_attrs

        experiment, notes = read_experiment(path)
        if notes:  # a file of an older tool that pools runs or scenario sets: never one seed's verdict
            raise AcrossError(f"{path}: {notes[0]}; re-create it, one run and one scenario set per file: "
                              f"{command('rm -r', path, f'{path}.parts')} && {_eval_cmd(path.parent)}")
        attrs, _ = read_root_attrs(path)
        v, ids, scores = seed_verdict(path, metric)
        variance = pick_variance(path, v, ids, metric)
    except ResultsError as e:
        raise AcrossError(str(e)) from None
    comp = v.get("completeness") or {}
    if comp.get("line"):
        raise AcrossError(f"{path}: {comp['line']} Finish it first: {_eval_cmd(path.parent)}")
    if metric not in (v.get("correlations") or {}):
        raise AcrossError(f"{path}: no metric {metric!r} in the stored rows")
    digests = json.loads(attrs["scene_digests"]) if "scene_digests" in attrs else {}
    scen = hashlib.sha256(json.dumps([[i, digests.get(i, "")] for i in ids]).encode()).hexdigest()[:16]
    settings = str(attrs.get("settings_digest") or "unrecorded")
    return SeedResult(run=label or Path(run).name or str(run), metric=metric, n_checkpoints=int(v["n_checkpoints"]),
                      scenario_digest=f"{len(ids)} scenes {scen}", settings_digest=settings, picks=_picks(v),
                      spearman=v["correlations"][metric].get("spearman"), train_seed=_train_seed(path.parent),
                      pick_scores=scores, experiment=experiment, pick_variance=variance)


def _train_seed(run_dir: Path) -> int | None:
    """The run's training seed from its ``config.json`` (None: not a run of this trainer, or unreadable)."""
    try:
        seed = json.loads((run_dir / CONFIG_FILE).read_text()).get("seed")
    except (OSError, ValueError, AttributeError):
        return None
    return int(seed) if isinstance(seed, int) else None


def labels(runs: Sequence[str | Path]) -> list[str]:
    """Short unique labels: folder names, or whole paths where two folders share a name."""
    names = [Path(r).name or str(r) for r in runs]
    return [n if names.count(n) == 1 else str(r) for n, r in zip(names, runs, strict=True)]
