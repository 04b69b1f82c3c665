"""The settings an evaluation is identified by, from the simulator's own constants, and the root attributes of
its results file (the torch side of :mod:`sim.results.identity`, which is torch-free and owns the comparison).

Everything that changes a closed-loop number belongs to a results file's identity: the other agents' model, the
simulator backend, the simulator/controller/metric/observation constants, the metric definitions' version and
each scene's content (``docs/results_schema.md``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.results.identity import (
    COMPARISON_SET_ATTR,
    SCENE_DIGESTS_ATTR,
    Experiment,
    canonical_scenario_set,
    check_experiment,
    merged_scene_digests,
    scene_set_digest,
)
from sim.results.schema import to_json

# The modules whose constants enter the settings digest, each group under a fixed label (the module's name when the
# digest was introduced), so moving code between modules does not change the digest of the files written before.
_METRIC_FAMILIES = ("base", "imitation", "collisions", "drivable", "progress", "ttc", "comfort", "registry")
CONSTANT_MODULES: dict[str, tuple[str, ...]] = {
    "sim.config": ("sim.config",),
    "sim.controller": ("sim.controller",),
    "sim.dynamics": ("sim.dynamics",),
    "sim.agents": ("sim.traffic",),
    "sim.metrics": tuple(f"sim.metrics.{m}" for m in _METRIC_FAMILIES),
    "sim.observation": ("sim.observation",),
}


def _constants(*modules: str) -> dict[str, Any]:
    import importlib

    out = {}
    for module in modules:
        for k, v in vars(importlib.import_module(module)).items():
            if k.isupper() and not k.startswith("_") and isinstance(v, int | float | str | tuple | bool):
                out[k] = v
    out.pop("TYPE_CHECKING", None)  # typing's flag, not a constant
    return dict(sorted(out.items()))


def model_constants_digest() -> str:
    """16 hex digits over the simulator, controller, agent, metric and observation constants."""
    doc = {label: _constants(*mods) for label, mods in CONSTANT_MODULES.items()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def eval_settings(agents: str, backend: str, agent_plugin: str = "", rollouts: int = 0) -> dict[str, Any]:
    """The settings that identify a results file's rows (all strings/ints; JSON-ready).

    Args:
        agents: other agents' model (``log`` / ``idm``). backend: ``kinematic`` / ``carla``.
        agent_plugin: an ego agent plug-in's identity, when one is used ("" for checkpoints).
        rollouts: ``--rollouts K``, sampled-action rollouts per (checkpoint, scene); recorded only when K > 0, so
            files of K = 0 keep the settings (and digest) they always had, and files of different K are not mixed.
    """
    from sim.metrics.catalogue import METRICS_VERSION
    from sim.observation import OBS_VERSION

    s = {"agents": agents, "backend": backend, "metrics_version": METRICS_VERSION, "obs_version": OBS_VERSION,
         "sim_constants": model_constants_digest()}
    if agent_plugin:
        s["agent_plugin"] = agent_plugin
    if rollouts:
        s["rollouts"] = int(rollouts)
    return s


def experiment_source(run_dir: Path | None, cands: Sequence[Any]) -> str:
    """The ``source`` of an evaluation: its run folder, else the common folder of its checkpoints ("" : none)."""
    import os

    if run_dir is not None:
        return str(Path(run_dir).resolve())
    paths = [str(Path(c.path).resolve().parent) for c in cands if not c.is_baseline and c.path]
    return os.path.commonpath(paths) if paths else ""


def identity_root(out: Path, agents: str, backend: str, digests: Mapping[str, str], cands: Sequence[Any],
                  config: Mapping[str, Any], agent_plugin: str = "", run_dir: Path | None = None) -> dict[str, Any]:
    """Check this call's :class:`Experiment` against ``out`` (:func:`check_experiment`) and return the root
    attributes to write: the experiment (:meth:`Experiment.to_attrs`), the scene digests, the run's comparison
    set, and ``config`` only when the file has none yet (a later call never rewrites it).

    Args:
        digests: scenario id -> :func:`sim.results.identity.scene_digest` of each scene of the call.
        config: the call's settings (``asdict(EvalConfig)``; ``scenarios`` names the scenario set, ``rollouts`` the
            sampled rollouts per pair, part of the settings when > 0).
        run_dir: the run (or plug-in checkpoint folder) evaluated; None: the checkpoints' common folder.

    Raises:
        EvaluationError: another experiment than the file's, changed scenes, or an older file that mixes.
    """
    from sim.evaluation.candidates import comparison_set
    from sim.results.reader import read_experiment, read_root_attrs

    stored, has_rows = read_root_attrs(out)
    _, notes = read_experiment(out)
    settings = eval_settings(agents, backend, agent_plugin, int(config.get("rollouts") or 0))
    call = Experiment(source=experiment_source(run_dir, cands),
                      scenario_set=canonical_scenario_set(str(config.get("scenarios") or "")),
                      settings=tuple(sorted(settings.items())), metrics_version=str(settings["metrics_version"]))
    check_experiment(out, stored, has_rows, call, digests, notes)
    held = Experiment.from_attrs(stored) if stored else call
    merged = merged_scene_digests(stored, digests)
    kept = Experiment(source=call.source or held.source, scenario_set=call.scenario_set or held.scenario_set,
                      settings=call.settings, metrics_version=call.metrics_version,
                      scenario_digest=scene_set_digest(merged))
    root: dict[str, Any] = {**kept.to_attrs(), SCENE_DIGESTS_ATTR: to_json(merged),
                            COMPARISON_SET_ATTR: to_json(comparison_set(cands))}
    if "config" not in stored:
        root["config"] = to_json(dict(config))
    return root
