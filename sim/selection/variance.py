"""Where a closed-loop score varies: within a scene, between scenes, between training seeds (``--rollouts K``).

Torch-free (numpy only): ``sim.evaluate`` (summary and the verdict's ``rollouts`` section), ``sim.across`` and the
dashboard use it. Data: the K rollouts with *sampled* actions of one checkpoint on S scenes
(:class:`sim.results.schema.SampledRows`, ``y[s, k]``); the mean-action rollout is a different, deterministic
policy and is not part of the decomposition.

Estimator (one-way random-effects ANOVA, method of moments; e.g. Searle, Casella & McCulloch, *Variance
Components*, 1992, ch. 3), scenes as the groups:

- ``within_scene``: mean over scenes of the sample variance (ddof 1) of the K rollouts of a scene,
  ``MSW = 1/S sum_s 1/(K-1) sum_k (y_sk - ybar_s)^2``: the spread that sampled actions alone produce;
- ``between_scene_means``: the sample variance (ddof 1) of the S scene means ``ybar_s``; its expectation is
  ``sigma_b^2 + sigma_w^2 / K``;
- ``between_scene``: the between-scene component ``sigma_b^2 = between_scene_means - within_scene / K``,
  truncated at 0 (the usual truncation of the moment estimator);
- ``total``: the sample variance (ddof 1) of all S K values.

Across seeds (one decomposition per run, of the pick of one selection rule): ``between_seed_means`` is the sample
variance (ddof 1) of the run means ``ybar_r``, ``between_seed`` the seed component ``between_seed_means - mean_r
(between_scene_means_r / S_r)`` truncated at 0 (a run mean's own sampling variance over its scenes and rollouts
removed), and ``within_scene`` / ``between_scene`` the runs' means. Scenes with a NaN among their K values, or
fewer than K, are left out (``n_scenes`` counts the ones used); a term needs K >= 2, S >= 2, R >= 2, else NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ESTIMATOR = ("one-way random-effects ANOVA, method of moments (scenes as groups): within_scene = mean of per-scene "
             "sample variances over the K sampled rollouts; between_scene_means = sample variance of scene means; "
             "between_scene = between_scene_means - within_scene / K, truncated at 0; total = sample variance of "
             "all values; ddof 1 throughout (sim/selection/variance.py)")


@dataclass(frozen=True)
class VarianceParts:
    """The decomposition of one checkpoint's sampled-rollout metric (units: the metric's, squared).

    Attributes:
        n_scenes: S scenes used. n_rollouts: K rollouts per scene. mean: mean of the S K values.
        within_scene, between_scene_means, between_scene, total: see the module docstring (NaN: undefined).
    """

    n_scenes: int
    n_rollouts: int
    mean: float
    within_scene: float
    between_scene_means: float
    between_scene: float
    total: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes null through :func:`sim.results.schema.to_json`)."""
        return asdict(self)


def _var(x: np.ndarray) -> float:
    return float(np.var(x, ddof=1)) if x.size >= 2 else math.nan


def decompose(values: np.ndarray) -> VarianceParts:
    """Decompose ``values`` float ``[S, K]`` (scene s, sampled rollout k); rows with a NaN are dropped.

    Raises:
        ValueError: ``values`` is not two-dimensional.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"values must be [S, K], got {list(y.shape)}")
    y = y[~np.isnan(y).any(axis=1)]
    s, k = y.shape
    if s == 0 or k == 0:
        return VarianceParts(s, k, math.nan, math.nan, math.nan, math.nan, math.nan)
    within = float(np.mean(np.var(y, axis=1, ddof=1))) if k >= 2 else math.nan
    means = _var(y.mean(axis=1))
    comp = max(means - within / k, 0.0) if math.isfinite(means) and math.isfinite(within) else math.nan
    return VarianceParts(s, k, float(y.mean()), within, means, comp, _var(y.reshape(-1)))


def scene_matrix(scenario_ids: Sequence[str], rollout: np.ndarray, values: np.ndarray,
                 scenes: Sequence[str] | None = None) -> np.ndarray:
    """Sampled rows (``scenario_ids`` [M], ``rollout`` int [M], ``values`` [M]) as ``[S, K]`` (K = max index + 1).

    Args:
        scenes: the scenes to use, in order (None: every scene, in first-seen order); a missing
            (scene, rollout) pair is NaN.
    """
    r = np.asarray(rollout, dtype=np.int64)
    order = list(dict.fromkeys(scenario_ids)) if scenes is None else list(scenes)
    pos = {sid: i for i, sid in enumerate(order)}
    out = np.full((len(order), int(r.max()) + 1 if r.size else 0), np.nan)
    for sid, k, v in zip(scenario_ids, r, np.asarray(values, dtype=np.float64), strict=True):
        if sid in pos:
            out[pos[sid], k] = v
    return out


def decompose_rows(sampled: Any, metric: str, scenes: Sequence[str] | None = None) -> VarianceParts:
    """:func:`decompose` of one metric of :class:`sim.results.schema.SampledRows` on ``scenes`` (None: all)."""
    return decompose(scene_matrix(sampled.scenario_ids, sampled.rollout, sampled.metrics[metric], scenes))


@dataclass(frozen=True)
class SeedVariance:
    """The decomposition across runs (seeds) of one selection rule's pick (module docstring).

    Attributes:
        n_runs: runs with sampled rollouts of the pick. run_means: each run's mean.
        between_seed_means, between_seed: variance of the run means, and the seed component.
        within_scene, between_scene: the runs' mean within-scene and between-scene components.
    """

    n_runs: int
    run_means: tuple[float, ...]
    between_seed_means: float
    between_seed: float
    within_scene: float
    between_scene: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def across_seeds(parts: Sequence[VarianceParts]) -> SeedVariance:
    """Combine one :class:`VarianceParts` per run (the same rule's pick in each) into :class:`SeedVariance`."""
    ok = [p for p in parts if p.n_scenes > 0 and math.isfinite(p.mean)]
    means = np.array([p.mean for p in ok])
    raw = _var(means)
    own = [p.between_scene_means / p.n_scenes for p in ok]
    comp = max(raw - float(np.mean(own)), 0.0) if math.isfinite(raw) and all(map(math.isfinite, own)) else math.nan

    def avg(xs: list[float]) -> float:
        return float(np.mean(xs)) if xs and all(map(math.isfinite, xs)) else math.nan

    return SeedVariance(len(ok), tuple(float(m) for m in means), raw, comp, avg([p.within_scene for p in ok]),
                        avg([p.between_scene for p in ok]))


def rollouts_section(sampled: Mapping[str, Any], names: Mapping[str, str], scenes: Sequence[str], metric: str,
                     k: int) -> dict[str, Any]:
    """The verdict's ``rollouts`` section (docs/results_schema.md): per checkpoint key with sampled rows (in the
    order of ``names``), its name and the decomposition of ``metric`` on ``scenes``."""
    order = [k for k in names if k in sampled] + [k for k in sampled if k not in names]
    cks = {key: {"name": names.get(key, key), **decompose_rows(sampled[key], metric, scenes).to_dict()}
           for key in order if metric in sampled[key].metrics}
    return {"metric": metric, "k": int(k), "estimator": ESTIMATOR, "checkpoints": cks}


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else format(float(x), fmt)


def rollouts_lines(section: Mapping[str, Any]) -> list[str]:
    """The summary lines of a ``rollouts`` section: one per checkpoint."""
    m = section["metric"]
    out = [f"Variance of {m} over {section['k']} sampled rollouts per scene (within a scene | between scene means | "
           f"between-scene component | total; ANOVA moments, sim/selection/variance.py):"]
    for e in section["checkpoints"].values():
        out.append(f"  {e['name']}: mean {_num(e['mean'], '.3f')} on {e['n_scenes']} scenes; within "
                   f"{_num(e['within_scene'])} | between means {_num(e['between_scene_means'])} | between "
                   f"{_num(e['between_scene'])} | total {_num(e['total'])}")
    return out
