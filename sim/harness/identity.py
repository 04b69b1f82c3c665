"""What identifies stored rows: the evaluation settings and the content of each scene.

Everything that changes a closed-loop number belongs to a results file's identity: the other agents'
model, the simulator backend, the simulator/controller/metric/observation constants, the metric
definitions' version (:data:`sim.metric_catalogue.METRICS_VERSION`) and each scene's content. A results
file records them as root attributes (``settings`` JSON, ``settings_digest``, ``scene_digests`` JSON;
``docs/results_schema.md``). A call whose settings differ from the file's is refused with one line naming
the file, the differing setting and the file to write instead: rows of other settings are never mixed,
and the file's ``config`` is never rewritten.

The torch device is not part of the identity (the same policy on CPU or GPU differs only in rounding).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sim.harness.errors import EvaluationError
from sim.harness.schema import scene_record

SETTINGS_ATTR = "settings"
SETTINGS_DIGEST_ATTR = "settings_digest"
SCENE_DIGESTS_ATTR = "scene_digests"
COMPARISON_SET_ATTR = "comparison_set"  # the run's distinct checkpoints: key, name, roles, episode, files
CONSTANT_MODULES = ("sim.config", "sim.controller", "sim.dynamics", "sim.agents", "sim.metrics", "sim.observation")


def _constants(module: str) -> dict[str, Any]:
    import importlib

    mod = importlib.import_module(module)
    out = {}
    for k, v in sorted(vars(mod).items()):
        if k.isupper() and not k.startswith("_") and isinstance(v, int | float | str | tuple | bool):
            out[k] = v
    return out


def model_constants_digest() -> str:
    """16 hex digits over the simulator, controller, agent, metric and observation constants."""
    doc = {m: _constants(m) for m in CONSTANT_MODULES}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def eval_settings(agents: str, backend: str, agent_plugin: str = "") -> dict[str, Any]:
    """The settings that identify a results file's rows (all strings/ints; JSON-ready).

    Args:
        agents: other agents' model (``log`` / ``idm``). backend: ``kinematic`` / ``carla``.
        agent_plugin: an ego agent plug-in's identity, when one is used ("" for checkpoints).
    """
    from sim.metric_catalogue import METRICS_VERSION
    from sim.observation import OBS_VERSION

    s = {"agents": agents, "backend": backend, "metrics_version": METRICS_VERSION, "obs_version": OBS_VERSION,
         "sim_constants": model_constants_digest()}
    if agent_plugin:
        s["agent_plugin"] = agent_plugin
    return s


def settings_digest(settings: Mapping[str, Any]) -> str:
    """16 hex digits identifying ``settings``."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()[:16]


def scene_digest(scene: Any) -> str:
    """16 hex digits over what the simulator reads of a scene (agents, validity, types, route, map, timing)."""
    r = scene_record(scene)
    h = hashlib.sha256()
    h.update(f"{r.id}|{r.dt}|{r.init_step}|{r.num_steps}".encode())
    for a in (r.agents, r.valid, r.agent_type, r.route):
        h.update(np.ascontiguousarray(a).tobytes())
    for kind in sorted(r.map):
        pts, off = r.map[kind]
        h.update(kind.encode() + np.ascontiguousarray(pts).tobytes() + np.ascontiguousarray(off).tobytes())
    return h.hexdigest()[:16]


def alternative_out(out: Path, label: str) -> Path:
    """Where results of other settings go: ``results.h5`` -> ``results-idm.h5``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
    return out.with_name(f"{out.stem}-{safe}{out.suffix}")


def check_identity(out: Path, stored: Mapping[str, Any], settings: Mapping[str, Any],
                   scene_digests: Mapping[str, str], has_rows: bool) -> None:
    """Refuse to add rows of other settings (or changed scenes) to an existing results file.

    Args:
        out: the results file. stored: its root attributes (``settings``/``scene_digests`` as JSON strings).
        settings: this call's :func:`eval_settings`. scene_digests: scene id -> :func:`scene_digest`.
        has_rows: the file already holds checkpoint rows.

    Raises:
        EvaluationError: one line naming the file, the differing setting and what to do.
    """
    raw = stored.get(SETTINGS_ATTR)
    if raw is None:
        if has_rows:
            raise EvaluationError(
                f"{out}: holds results written without their settings (older tool), so they cannot be told apart "
                f"from this call's; evaluate into a new file: --out {alternative_out(out, settings['agents'])}")
        return
    old = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw)
    for k in sorted(set(old) | set(settings)):
        if old.get(k) != settings.get(k):
            label = str(settings.get(k, "new")) if k in ("agents", "backend", "agent_plugin") else f"{k}-new"
            raise EvaluationError(
                f"{out}: holds results with {k}={old.get(k)}, this call has {k}={settings.get(k)}; results of "
                f"other settings are never mixed: give --out {alternative_out(out, label)}")
    old_scenes = stored.get(SCENE_DIGESTS_ATTR)
    if old_scenes is not None:
        prev = json.loads(old_scenes) if isinstance(old_scenes, str | bytes) else dict(old_scenes)
        for sid, d in scene_digests.items():
            if sid in prev and prev[sid] != d:
                raise EvaluationError(
                    f"{out}: scene {sid!r} has other content than the scene of that id stored there; results on "
                    f"changed scenes are never mixed: give --out {alternative_out(out, 'scenes-new')}")


def merged_scene_digests(stored: Mapping[str, Any], scene_digests: Mapping[str, str]) -> dict[str, str]:
    """The file's scene digests plus this call's new ones."""
    raw = stored.get(SCENE_DIGESTS_ATTR)
    prev = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw or {})
    return {**prev, **scene_digests}


def describe(settings: Mapping[str, Any]) -> str:
    """Short label of the settings for tables (``agents log, backend kinematic``)."""
    parts: Sequence[str] = [f"agents {settings.get('agents')}", f"backend {settings.get('backend')}"]
    if settings.get("agent_plugin"):
        parts = [*parts, f"agent {settings['agent_plugin']}"]
    return ", ".join(parts)


def identity_root(out: Path, agents: str, backend: str, scenes: Sequence[Any], cands: Sequence[Any],
                  config: Mapping[str, Any], agent_plugin: str = "") -> dict[str, Any]:
    """Check this call against ``out`` (:func:`check_identity`) and return the root attributes to write:
    settings, their digest, the scene digests, the run's comparison set, and ``config`` only when the file
    has none yet (a later call never rewrites it).

    Raises:
        EvaluationError: other settings or changed scenes than the file's.
    """
    from sim.harness.candidates import comparison_set
    from sim.harness.reader import read_root_attrs
    from sim.harness.schema import to_json

    stored, has_rows = read_root_attrs(out)
    settings = eval_settings(agents, backend, agent_plugin)
    digests = {s.id: scene_digest(s) for s in scenes}
    check_identity(out, stored, settings, digests, has_rows)
    root: dict[str, Any] = {SETTINGS_ATTR: to_json(settings), SETTINGS_DIGEST_ATTR: settings_digest(settings),
                            SCENE_DIGESTS_ATTR: to_json(merged_scene_digests(stored, digests)),
                            COMPARISON_SET_ATTR: to_json(comparison_set(cands))}
    if "config" not in stored:
        root["config"] = to_json(dict(config))
    return root
