"""What identifies an experiment, and so a results file: one home for the identity and the results-file
names of a run folder.

A results file is one experiment (docs/run_files.md): one run (or one set of plug-in checkpoints),
one scenario set, one settings digest, one metric version. :class:`Experiment` holds them; the store writes
it as root attributes (:meth:`Experiment.to_attrs`), the reader reads it back
(:func:`sim.results.reader.read_experiment`), and :func:`difference` is the one comparison: ``sim.evaluate``
refuses a call of another experiment with :func:`refusal`'s line (the ``--out`` to use), ``sim.across``
refuses runs judged otherwise. Files written before the identity was recorded are read with
:meth:`Experiment.from_attrs`'s fallbacks and flagged by :func:`mix_notes` when they already mix runs or
scenario sets. The run-folder file names (``results.h5`` and one file per other scenario set) come from
:func:`results_name` and :func:`run_results_path`.

The rows' identity in detail:

Everything that changes a closed-loop number belongs to a results file's identity: the other agents'
model, the simulator backend, the simulator/controller/metric/observation constants, the metric
definitions' version (:data:`sim.metrics.catalogue.METRICS_VERSION`) and each scene's content. A results
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.commands import quote
from sim.results.errors import EvaluationError
from sim.results.run_folder import RESULTS_NAME
from sim.results.schema import SceneRecord, scene_record, to_json

SETTINGS_ATTR = "settings"
SETTINGS_DIGEST_ATTR = "settings_digest"
SCENE_DIGESTS_ATTR = "scene_digests"
COMPARISON_SET_ATTR = "comparison_set"  # the run's distinct checkpoints: key, name, roles, episode, files
SOURCE_ATTR = "experiment_source"  # the run (or plug-in checkpoint folder) a file's rows belong to
SCENARIO_SET_ATTR = "scenario_set"  # canonical_scenario_set of --scenarios
SCENARIO_SET_DIGEST_ATTR = "scenario_set_digest"  # scene_set_digest of the stored scenes
METRICS_VERSION_ATTR = "metrics_version"  # sim.metrics.catalogue.METRICS_VERSION of the rows
LEGACY_SUITE_ATTR, LEGACY_RUN_ATTR = "suite", "run_dir"  # what older tools wrote (the last call's)


DEFAULT_AGENTS = "log"  # the other agents' model of a run's results.h5 unless it holds another (EvalConfig.agents)


def settings_digest(settings: Mapping[str, Any]) -> str:
    """16 hex digits identifying ``settings``."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()[:16]


def scene_digest(scene: Any) -> str:
    """16 hex digits over what the simulator reads of a scene (agents, validity, types, route, map, timing).

    Args:
        scene: a :class:`scenarios.scenario.Scenario`, or its :class:`sim.results.schema.SceneRecord` (already built).
    """
    r = scene if isinstance(scene, SceneRecord) else scene_record(scene)
    h = hashlib.sha256()
    h.update(f"{r.id}|{r.dt}|{r.init_step}|{r.num_steps}".encode())
    for a in (r.agents, r.valid, r.agent_type, r.route):
        h.update(np.ascontiguousarray(a).tobytes())
    for kind in sorted(r.map):
        pts, off = r.map[kind]
        h.update(kind.encode() + np.ascontiguousarray(pts).tobytes() + np.ascontiguousarray(off).tobytes())
    return h.hexdigest()[:16]


def canonical_scenario_set(spec: str) -> str:
    """The ``--scenarios`` value as an experiment names it.

    A bundled suite as ``name:split`` (``procedural`` -> ``procedural:test``, ``scenarios.suites.parse_spec``),
    a scenario file or folder by its resolved path; anything else (a path that is gone) as given; "" stays "".
    """
    spec = str(spec or "").strip()
    if not spec:
        return ""
    try:
        p = Path(spec).expanduser()
        if p.exists():
            return str(p.resolve())
    except (OSError, RuntimeError):
        return spec
    if ":" in spec:  # already name:split (the dashboard reads this at first paint: no suite import needed)
        return spec
    from scenarios.suites import SuiteError, parse_spec

    try:
        parsed = parse_spec(spec)
    except SuiteError:
        return spec
    return f"{parsed[0]}:{parsed[1]}" if parsed else spec


def set_slug(scenario_set: str) -> str:
    """A file-name part naming a scenario set: ``procedural:val`` -> ``procedural-val``, a file or folder by its
    name without suffix (``/data/waymo_logs`` -> ``waymo_logs``, ``scenes.npz`` -> ``scenes``)."""
    s = str(scenario_set).rstrip("/")
    if "/" in s or "\\" in s or Path(s).suffix:
        s = Path(s).stem if Path(s).suffix else Path(s).name
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in s).strip("-")
    return slug or "scenarios"


def results_name(scenario_set: str = "") -> str:
    """The file name of a run's results: ``results.h5`` ("" : the run's first scenario set, normally the default
    ``procedural:test``) or ``results.<set slug>.h5`` for another set (:func:`set_slug`)."""
    if not scenario_set:
        return RESULTS_NAME
    stem, suffix = Path(RESULTS_NAME).stem, Path(RESULTS_NAME).suffix
    return f"{stem}.{set_slug(scenario_set)}{suffix}"


def _held(path: Path) -> Experiment | None:
    """The experiment a results file holds (None: no file, or not recorded / unreadable)."""
    if not path.exists():
        return None
    from sim.results.reader import read_root_attrs

    try:
        return Experiment.from_attrs(read_root_attrs(path)[0])
    except EvaluationError:
        return None  # the writer's preflight names what is wrong with it


def _held_agents(e: Experiment) -> tuple[str, int]:
    """(agents, rollouts) of a held experiment, unrecorded settings read as the defaults."""
    d = dict(e.settings)
    return str(d.get("agents") or DEFAULT_AGENTS), int(d.get("rollouts") or 0)


def run_results_path(folder: Path, scenarios: str, agents: str = DEFAULT_AGENTS, rollouts: int = 0) -> Path:
    """Where an evaluation of ``scenarios`` writes in ``folder`` (a run, or a folder of plug-in checkpoints).

    ``results.h5`` when it is absent or holds this experiment (this set, other agents model and ``--rollouts``,
    or one it did not record); else this experiment's own file beside it, named after what differs from
    ``results.h5``'s: ``results.<set slug>.h5`` for another scenario set (:func:`results_name`), ``.agents-idm``
    for another agents model, ``.rollouts-4`` for another K (``results.agents-idm.h5``,
    ``results.logs.agents-idm.h5``), with 8 hex digits added when that name already holds another experiment.
    A run's experiments are never pooled into one file.
    """
    want = canonical_scenario_set(scenarios)
    tag = hashlib.sha256(f"{want}|{agents}|{int(rollouts)}".encode()).hexdigest()[:8]

    def fits(held: Experiment | None) -> bool:
        return held is None or (held.scenario_set in ("", want) and
                                (not held.settings or _held_agents(held) == (agents, int(rollouts))))

    first = folder / RESULTS_NAME
    held = _held(first)
    if fits(held):
        return first
    assert held is not None
    h_agents, h_k = _held_agents(held) if held.settings else (agents, int(rollouts))
    parts = [set_slug(want)] if held.scenario_set not in ("", want) else []
    parts += [f"agents-{agents}"] if h_agents != agents else []
    parts += [f"rollouts-{int(rollouts)}"] if h_k != int(rollouts) else []
    stem, suffix = Path(RESULTS_NAME).stem, Path(RESULTS_NAME).suffix
    own = f"{stem}.{'.'.join(parts)}"
    for path in (folder / f"{own}{suffix}", folder / f"{own}-{tag}{suffix}"):
        if fits(_held(path)):
            return path
    return folder / f"{own}-{tag}{suffix}"


def results_files(folder: Path) -> list[Path]:
    """The results files of a run folder: ``results.h5`` first, then every other scenario set's and settings'
    file (``results.<set>.h5``, ``results-<label>.h5``) by name. Commit folders and temporary files excluded."""
    stem, suffix = Path(RESULTS_NAME).stem, Path(RESULTS_NAME).suffix
    first = folder / RESULTS_NAME
    try:
        others = sorted(p for p in folder.glob(f"{stem}[.-]*{suffix}") if p.is_file())
    except OSError:
        others = []
    return ([first] if first.is_file() else []) + others


def scene_set_digest(scene_digests: Mapping[str, str]) -> str:
    """16 hex digits over the (scenario id, content digest) pairs of a file's scenes ("" when none)."""
    if not scene_digests:
        return ""
    return hashlib.sha256(json.dumps(sorted(scene_digests.items())).encode()).hexdigest()[:16]


def _json_attr(v: Any, default: Any) -> Any:
    if v is None:
        return default
    if isinstance(v, Mapping):
        return dict(v)
    try:
        out = json.loads(v)
    except (TypeError, ValueError):
        return default
    return out if isinstance(out, type(default)) else default


@dataclass(frozen=True)
class Experiment:
    """What one results file holds: one experiment (docs/run_files.md).

    Attributes:
        source: the resolved folder of the run whose checkpoints are evaluated, or of a set of plug-in or loose
            checkpoints; "" when only baselines are evaluated (they belong to any experiment).
        scenario_set: :func:`canonical_scenario_set` of ``--scenarios`` ("" : not recorded).
        settings: :func:`sim.evaluation.settings.eval_settings` as sorted (name, value) pairs (empty: not recorded).
        metrics_version: :data:`sim.metrics.catalogue.METRICS_VERSION` of the rows, as text ("" : not recorded).
        scenario_digest: :func:`scene_set_digest` of the scenes stored so far (grows with the set; not compared:
            each stored scene's content is, by :func:`check_experiment`).
        recorded: False for a file of an older tool, read from its ``run_dir``, ``suite`` and ``settings``.
    """

    source: str
    scenario_set: str
    settings: tuple[tuple[str, Any], ...] = ()
    metrics_version: str = ""
    scenario_digest: str = ""
    recorded: bool = True

    @property
    def settings_digest(self) -> str:
        """16 hex digits of the settings (:func:`settings_digest`; "" when not recorded)."""
        return settings_digest(dict(self.settings)) if self.settings else ""

    def to_attrs(self) -> dict[str, str]:
        """The root attributes the store writes (``docs/results_schema.md``)."""
        return {SOURCE_ATTR: self.source, SCENARIO_SET_ATTR: self.scenario_set,
                SCENARIO_SET_DIGEST_ATTR: self.scenario_digest, SETTINGS_ATTR: to_json(dict(self.settings)),
                SETTINGS_DIGEST_ATTR: self.settings_digest, METRICS_VERSION_ATTR: self.metrics_version}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Experiment:
        """The experiment recorded in a file's root attributes (plain values, JSON as strings or parsed).

        Files of older tools have no ``experiment_source``: their ``run_dir`` (the last call's), ``suite`` and
        ``settings`` stand in, with ``recorded=False`` (:func:`mix_notes` tells whether they mix).
        """
        settings = _json_attr(attrs.get(SETTINGS_ATTR), {})
        recorded = SOURCE_ATTR in attrs
        source = attrs.get(SOURCE_ATTR) if recorded else attrs.get(LEGACY_RUN_ATTR)
        sset = attrs.get(SCENARIO_SET_ATTR) if SCENARIO_SET_ATTR in attrs else \
            canonical_scenario_set(str(attrs.get(LEGACY_SUITE_ATTR) or ""))
        mv = attrs.get(METRICS_VERSION_ATTR, settings.get("metrics_version", ""))
        return cls(source=str(source or ""), scenario_set=str(sset or ""),
                   settings=tuple(sorted(settings.items())), metrics_version="" if mv is None else str(mv),
                   scenario_digest=scene_set_digest(_json_attr(attrs.get(SCENE_DIGESTS_ATTR), {})),
                   recorded=recorded)


@dataclass(frozen=True)
class Difference:
    """The first way two experiments differ (:func:`difference`).

    Attributes:
        field: ``metrics_version``, ``settings``, ``scenario_set`` or ``source``. key: the setting's name.
        what: words for it (``metric version``, ``scenario set``, ``run``, ``setting agents``).
        stored, given: the first experiment's value and the second's.
    """

    field: str
    what: str
    stored: str
    given: str
    key: str = ""


COMPARED: tuple[str, ...] = ("metrics_version", "settings", "scenario_set", "source")
_WHAT = {"metrics_version": "metric version", "scenario_set": "scenario set", "source": "run"}


def difference(a: Experiment, b: Experiment, fields: Sequence[str] = COMPARED) -> Difference | None:
    """The first of ``fields`` in which ``b`` is another experiment than ``a``; None when none is.

    A value that one side did not record ("" or no settings) differs from nothing.
    """
    for f in fields:
        if f == "settings":
            sa, sb = dict(a.settings), dict(b.settings)
            for k in sorted(set(sa) | set(sb)) if sa and sb else ():
                if sa.get(k) != sb.get(k):
                    return Difference(f, f"setting {k}", str(sa.get(k)), str(sb.get(k)), key=k)
            continue
        va, vb = str(getattr(a, f)), str(getattr(b, f))
        if va and vb and va != vb:
            return Difference(f, _WHAT[f], va, vb)
    return None


def alternative_out(out: Path, label: str) -> Path:
    """Where results of other settings go: ``results.h5`` -> ``results-idm.h5``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
    return out.with_name(f"{out.stem}-{safe}{out.suffix}")


def suggested_out(out: Path, call: Experiment, d: Difference) -> Path:
    """The ``--out`` to use for ``call`` when ``out`` holds another experiment (never ``out`` itself)."""
    if d.field == "source" and Path(d.given).is_dir():
        p = run_results_path(Path(d.given), call.scenario_set)
    elif d.field == "source":
        p = alternative_out(out, Path(d.given).name or "run")
    elif d.field == "scenario_set":
        p = out.with_name(f"{out.stem}.{set_slug(call.scenario_set)}{out.suffix}")
    elif d.field == "metrics_version":
        p = alternative_out(out, f"metrics-v{d.given}")
    elif d.key == "rollouts":
        p = alternative_out(out, f"rollouts-{shown_setting(d.key, d.given)}")
    else:
        p = alternative_out(out, d.given if d.key in ("agents", "backend", "agent_plugin") else f"{d.key}-new")
    if p.resolve() == out.resolve():
        p = alternative_out(out, hashlib.sha256(repr(call).encode()).hexdigest()[:8])
    return p


def shown_setting(key: str, value: str) -> str:
    """A stored setting as the command line spells it: ``--rollouts`` unset (None, files before it existed) is 0."""
    return "0" if key == "rollouts" and value == "None" else value


def refusal(out: Path, call: Experiment, d: Difference) -> str:
    """The one line refusing to add ``call``'s rows to ``out``, whose experiment differs by ``d``."""
    to = suggested_out(out, call, d)
    if d.field == "settings":
        was, now = shown_setting(d.key, d.stored), shown_setting(d.key, d.given)
        return (f"{out}: holds results with {d.key}={was}, this call has {d.key}={now}; results of other "
                f"settings are never mixed: give --out {quote(to)}")
    return (f"{out}: holds the results of {d.what} {d.stored}, this call evaluates {d.what} {d.given}; a results "
            f"file is one experiment (never pooled): give --out {quote(to)}")


def check_experiment(out: Path, stored_attrs: Mapping[str, Any], has_rows: bool, call: Experiment,
                     scene_digests: Mapping[str, str], notes: Sequence[str] = ()) -> None:
    """Refuse to add ``call``'s rows to ``out`` unless it holds the same experiment (or nothing yet).

    Args:
        out: the results file. stored_attrs: its root attributes (JSON as strings). has_rows: it holds rows.
        call: this call's experiment. scene_digests: scene id -> :func:`scene_digest` of this call's scenes.
        notes: :func:`mix_notes` of the file (an older file that already mixes experiments gets no more rows).

    Raises:
        EvaluationError: one line naming the file, what differs and the ``--out`` to use; the file is untouched.
    """
    if notes:
        raise EvaluationError(f"{out}: {notes[0]}; nothing is added to it: give --out "
                              f"{quote(alternative_out(out, set_slug(call.scenario_set)))}")
    if stored_attrs.get(SETTINGS_ATTR) is None:
        if has_rows:
            raise EvaluationError(
                f"{out}: holds results written without their settings (older tool), so they cannot be told apart "
                f"from this call's; evaluate into a new file: --out "
                f"{quote(alternative_out(out, str(dict(call.settings).get('agents', 'new'))))}")
        return
    d = difference(Experiment.from_attrs(stored_attrs), call)
    if d is not None:
        raise EvaluationError(refusal(out, call, d))
    prev = _json_attr(stored_attrs.get(SCENE_DIGESTS_ATTR), {})
    for sid, dig in scene_digests.items():
        if sid in prev and prev[sid] != dig:
            raise EvaluationError(
                f"{out}: scene {sid!r} has other content than the scene of that id stored there; results on "
                f"changed scenes are never mixed: give --out {quote(alternative_out(out, 'scenes-new'))}")


def _run_folder(ckpt_path: str) -> str:
    """The run folder a stored checkpoint path belongs to (``<run>/checkpoints/x.pt`` or ``<run>/x.pt``)."""
    p = Path(ckpt_path)
    return str(p.parent.parent if p.parent.name == "checkpoints" else p.parent)


def mix_notes(attrs: Mapping[str, Any], checkpoints: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Why a file written before the experiment was recorded already pools several experiments (none: ``()``).

    Two signs, both from what older tools did write: the first call's ``config.scenarios`` against the last
    call's ``suite`` (two scenario sets), and the run folders of the stored checkpoints' paths (two runs of this
    project's trainer). A file that records its experiment (``experiment_source``) was checked at every call.

    Args:
        attrs: root attributes (``config`` as JSON text or parsed). checkpoints: (kind, path) of each group.
    """
    if SOURCE_ATTR in attrs:
        return ()
    notes = []
    config = _json_attr(attrs.get("config"), {})
    first, last = config.get("scenarios"), str(attrs.get(LEGACY_SUITE_ATTR) or "")
    if isinstance(first, str) and first and last and first != last and \
            canonical_scenario_set(first) != canonical_scenario_set(last):
        notes.append(f"written by an older tool on two scenario sets ({first} and {last}): its rows pool them")
    plugin = _json_attr(attrs.get(SETTINGS_ATTR), {}).get("agent_plugin") or config.get("agent", "own") != "own"
    runs = sorted({_run_folder(p) for kind, p in checkpoints if kind == "checkpoint" and p})
    if not plugin and len(runs) > 1:
        notes.append(f"written by an older tool with the checkpoints of {len(runs)} runs ({', '.join(runs)}): "
                     "its rows pool them")
    return tuple(notes)


def merged_scene_digests(stored: Mapping[str, Any], scene_digests: Mapping[str, str]) -> dict[str, str]:
    """The file's scene digests plus this call's new ones."""
    return {**_json_attr(stored.get(SCENE_DIGESTS_ATTR), {}), **scene_digests}
