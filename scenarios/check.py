"""Data report for a user's own logs: what imports, what is skipped, and whether log replay is sane.

Usage::

    python -m scenarios.check PATH [--json OUT] [--every-vehicle] [--window STEPS --stride STEPS --init-step N --ego ID]

PATH is a scenario file or a folder (any supported format). Per scene: what was imported
(agents, static obstacles, map elements kept and dropped, steps, recentring offset
``world_origin``; the map's semantics: lanes with polygons, intersection lanes, lanes with a speed
limit, lane-graph rows, stop signs, traffic lights, and what the source does not provide), the ego's
steps off the mapped area, and the log-replay sanity figures (ADE, off-road, at-fault collision,
comfort, route completion, peak |longitudinal acceleration|). Recorded human driving should be
exact (ADE 0), on the road, free of at-fault collisions, comfortable and complete its route;
scenes that are not are listed, per source. The recorded drivers are also judged on the traffic rules, unfiltered
(red light, wrong way, speeding: :data:`HUMAN_RULES`), and each source's rates are reported over the scenes whose
map lets the rule be judged. Files or scenes that cannot be used are listed
with a one-line reason. Ends with a summary table per source; ``--json OUT`` writes everything
for machines. Exit status 0 when at least one scene is usable, 1 otherwise.

Steps at which the ego's box leaves the area the source mapped at all (ScenarioNet crops maps around the recorded
ego) are *off the map*: counted as such, never as off-road. ``--every-vehicle`` adds the log replay of every moving
vehicle of each recorded scene, each in turn as the ego (``ImportOptions.ego_agent``), with the same figures and
rule rates per source: recorded human drivers, all of them, should stay on the road.

This entry module is the documented exception to "``scenarios`` imports nothing of ``sim``": it
runs the simulator's log replay (imported lazily, inside :func:`replay_sanity`); the library
modules of ``scenarios`` stay free of ``sim``.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("scenarios.check", "python -m scenarios.check")

import argparse
import json
import math
import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from scenarios.formats import ImportOptions, add_import_arguments, import_options_from_args, load_file, scenario_files
from scenarios.importers.drivable import off_map_steps
from scenarios.importers.repair import REPAIR_KINDS, MapElementSkipped, TracksRepaired
from scenarios.loading import SkippedScene, duplicate_ids, duplicate_line
from scenarios.scenario import RoadMap, Scenario, ScenarioError

ADE_TOL = 0.01  # m: log replay must reproduce the log
ROUTE_DONE = 0.99  # route_completion counted as complete
ACCEL_PLAUSIBLE = 8.0  # m/s^2: a recorded human beyond this is an import artefact
BATCH = 16  # scenes per log-replay batch
SANITY = ("ade", "offroad", "collision_at_fault", "comfortable", "route_completion", "max_abs_accel")
MOVING = 2.0  # m: a vehicle whose valid positions span less than this is parked, not driving (--every-vehicle)
# The traffic rules the recorded driver is judged on, unfiltered (NAVSIM's human filter needs these very values):
# (metric, report key, what a violation is called). NaN where the map lacks the semantic: not judged.
HUMAN_RULES = (("traffic_light_compliance", "red_light", "ran a red light"),
               ("driving_direction_compliance", "wrong_way", "drove against the lane direction"),
               ("speed_limit_compliance", "speeding", "exceeded the speed limit"))


@dataclass
class SceneReport:
    """One imported scene: what it holds and how its log replay scores (``sanity``)."""

    file: str
    id: str
    source: str
    agents: int
    static_obstacles: int
    map_elements: int
    map_dropped: int
    steps: int
    world_origin: tuple[float, float]
    agents_dropped: int = 0
    sanity: dict[str, float] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)  # recorded glitches repaired on import, per kind
    semantics: dict[str, object] = field(default_factory=dict)
    off_map_steps: int = 0

    def failures(self) -> list[str]:
        """Names of the sanity checks this scene's log replay fails."""
        s, out = self.sanity, []
        if s.get("ade", 0.0) > ADE_TOL:
            out.append("ade")
        if s.get("offroad_on_map", s.get("offroad", 0.0)) > 0.5:
            out.append("offroad")
        if s.get("collision_at_fault", 0.0) > 0.5:
            out.append("at_fault")
        if s.get("comfortable", 1.0) < 0.5:
            out.append("comfort")
        if s.get("route_completion", 1.0) < ROUTE_DONE:
            out.append("route")
        if s.get("max_abs_accel", 0.0) > ACCEL_PLAUSIBLE:
            out.append("accel")
        return out

    def rule_violations(self) -> list[str]:
        """Report keys of :data:`HUMAN_RULES` the recorded driver breaks (the metric below 1; NaN: not judged).

        Real logs hold some of each: these are rates to know, not import failures."""
        return [key for metric, key, _ in HUMAN_RULES if self.sanity.get(metric, math.nan) < 1.0]


def _map_elements(road: RoadMap) -> int:
    return sum(len(getattr(road, name)) for name in RoadMap.POLYLINE_FIELDS)


def map_semantics(road: RoadMap) -> dict[str, object]:
    """What a scene's map holds of the field's semantics (counts), and the names its source does not provide."""
    return {
        "lanes": len(road.lanes),
        "lanes_with_polygon": int(sum(len(p) > 0 for p in road.lane_polygons)),
        "intersection_lanes": int((road.lane_intersection == 1).sum()),
        "lanes_with_speed_limit": int(np.isfinite(road.lane_speed_limits).sum()),
        "lane_successors": len(road.lane_successors),
        "lane_neighbours": len(road.lane_neighbours),
        "stop_signs": len(road.stop_signs),
        "traffic_lights": road.num_lights,
        "unknown": list(road.unknown),
    }


def _semantics_line(m: dict[str, object]) -> str:
    def n(key: str, sem: str) -> str:
        return "?" if sem in m["unknown"] else str(m[key])

    unknown = ", ".join(m["unknown"]) or "-"
    return (f"lanes {m['lanes']} (polygons {n('lanes_with_polygon', 'lane_polygons')}, "
            f"intersection {n('intersection_lanes', 'intersections')}, "
            f"speed limit {n('lanes_with_speed_limit', 'speed_limits')}), "
            f"successors {n('lane_successors', 'lane_graph')}, stop signs {n('stop_signs', 'stop_signs')}, "
            f"traffic lights {n('traffic_lights', 'traffic_lights')}; unknown: {unknown}")


def import_file(path: Path, options: ImportOptions) -> tuple[list[Scenario], list[SceneReport], list[SkippedScene]]:
    """Import one file, recording per-scene facts and what was skipped (never raises ScenarioError)."""
    inner: list[tuple[str, str]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MapElementSkipped)
        warnings.simplefilter("always", TracksRepaired)
        try:
            scenes = load_file(path, options, skipped=inner)
        except ScenarioError as e:
            msg = str(e)
            reason = msg[len(f"{path}: "):] if msg.startswith(f"{path}: ") else msg
            return [], [], [SkippedScene(str(path), "", reason)]
    dropped = sum(getattr(w.message, "count", 1) for w in caught if issubclass(w.category, MapElementSkipped))
    repairs: dict[str, int] = {}
    for w in caught:
        if issubclass(w.category, TracksRepaired):
            for kind, n in w.message.counts.items():
                repairs[kind] = repairs.get(kind, 0) + int(n)
    reports = [
        SceneReport(str(path), s.id, s.source, s.num_agents, int(s.static_agents().sum()), _map_elements(s.map),
                    dropped, s.num_steps, tuple(float(v) for v in s.world_origin), repairs=dict(repairs),
                    semantics=map_semantics(s.map))
        for s in scenes
    ]
    return scenes, reports, [SkippedScene(str(path), sid, reason) for sid, reason in inner]


def moving_vehicles(scene: Scenario, init_step: int) -> list[int]:
    """Agent indices (0 = the ego) of the vehicles that drive in ``scene``: valid for at least ``init_step + 2``
    steps and spanning at least :data:`MOVING` m."""
    from scenarios.scenario import AgentType

    out = []
    for k in np.flatnonzero(np.asarray(scene.agent_type) == int(AgentType.VEHICLE)):
        v = scene.valid[k]
        xy = scene.agents[k, v, :2]
        if v.sum() >= init_step + 2 and np.hypot(*(xy.max(0) - xy.min(0))) >= MOVING:
            out.append(int(k))
    return out


def every_vehicle(path: Path, first: Scenario, reports: Sequence[SceneReport], options: ImportOptions
                  ) -> tuple[list[Scenario], list[SceneReport]]:
    """Log replay scenes of every moving vehicle of ``path``'s recording, each in turn as the ego: the default import
    (``first`` and its ``reports``) for the recorded ego, a re-import with ``ego_agent=k`` for each other one. A vehicle
    that cannot be the ego (not valid at ``init_step``) is left out."""
    scenes, out = [], []
    for k in moving_vehicles(first, options.init_step):
        if k == 0:
            scenes.append(first)
            out.append(reports[0])
            continue
        s, r, _ = import_file(path, replace(options, ego_agent=k))
        scenes += s[:1]
        out += r[:1]
    return scenes, out


def replay_sanity(scenes: Sequence[Scenario], reports: Sequence[SceneReport]) -> None:
    """Fill ``reports[i].sanity``, ``agents_dropped`` and ``off_map_steps`` from the log replay of ``scenes[i]`` (in
    place; the off-map mask is computed once, for the count and for the on-road check)."""
    import torch

    from sim.batch import make_batch
    from sim.metrics.drivable import OFFROAD_THRESHOLD
    from sim.metrics.registry import MetricContext, compute_metrics
    from sim.rollout import rollout

    groups: dict[tuple[int, float], list[int]] = defaultdict(list)
    for i, s in enumerate(scenes):
        groups[(s.init_step, round(float(s.dt), 9))].append(i)
    for idx in groups.values():
        for k in range(0, len(idx), BATCH):
            part = idx[k:k + BATCH]
            batch = make_batch([scenes[i] for i in part])
            ro = rollout(batch, None)
            m = compute_metrics(ro, batch)
            c = MetricContext(ro, batch)
            accel = c.accel.abs().masked_fill(~c.controlled, 0.0).amax(1)
            off_map = np.zeros(tuple(c.controlled.shape), bool)  # [B, T]: the ego's box leaves the mapped area
            for j, i in enumerate(part):
                om = off_map_steps(scenes[i].map, scenes[i].ego_log)
                off_map[j, : len(om)] = om
                reports[i].off_map_steps = int(om[scenes[i].init_step:].sum())
            on_map_offroad = ((c.offroad_dist > OFFROAD_THRESHOLD) & c.controlled & ~torch.from_numpy(off_map)).any(1)
            for j, i in enumerate(part):
                reports[i].sanity = {name: float(m[name][j]) for name in SANITY + tuple(r[0] for r in HUMAN_RULES)
                                     if name in m}
                reports[i].sanity["max_abs_accel"] = float(accel[j])
                reports[i].sanity["offroad_on_map"] = float(on_map_offroad[j])
                reports[i].agents_dropped = int(batch.agents_dropped[j])


def _repairs_text(repairs: dict[str, int]) -> str:
    """``"2 position jumps, 4 velocities"``: the non-zero repair counts of a scene."""
    return ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in repairs.items() if n)


def summarise(reports: Sequence[SceneReport], skipped: Sequence[SkippedScene]) -> dict[str, dict[str, float]]:
    """Per source: scenes, skipped files/scenes, and the share of log replays passing each check (%)."""
    out: dict[str, dict[str, float]] = {}
    by: dict[str, list[SceneReport]] = defaultdict(list)
    for r in reports:
        by[r.source].append(r)
    for source, rs in sorted(by.items()):
        n = len(rs)
        fails = [r.failures() for r in rs]
        out[source] = {
            "scenes": n,
            "on_road_pct": 100.0 * sum("offroad" not in f for f in fails) / n,
            "comfortable_pct": 100.0 * sum("comfort" not in f for f in fails) / n,
            "at_fault_pct": 100.0 * sum("at_fault" in f for f in fails) / n,
            "route_completed_pct": 100.0 * sum("route" not in f for f in fails) / n,
            "exact_pct": 100.0 * sum("ade" not in f for f in fails) / n,
            "max_abs_accel": max(r.sanity.get("max_abs_accel", math.nan) for r in rs),
            "static_obstacles": sum(r.static_obstacles for r in rs),
            "map_dropped": sum(r.map_dropped for r in rs),
            "agents_dropped": sum(r.agents_dropped for r in rs),
            **{f"repaired_{kind}": sum(r.repairs.get(kind, 0) for r in rs) for kind in REPAIR_KINDS},
            "off_map_steps": sum(r.off_map_steps for r in rs),
            "traffic_lights": sum(int(r.semantics.get("traffic_lights", 0)) for r in rs),
            "stop_signs": sum(int(r.semantics.get("stop_signs", 0)) for r in rs),
            "lanes_with_speed_limit": sum(int(r.semantics.get("lanes_with_speed_limit", 0)) for r in rs),
        }
        for metric, key, _ in HUMAN_RULES:  # the human drivers' rule rates, over the scenes the rule applies to
            judged = [r for r in rs if math.isfinite(r.sanity.get(metric, math.nan))]
            out[source][f"{key}_judged"] = len(judged)
            out[source][f"{key}_scenes"] = sum(key in r.rule_violations() for r in judged)
            out[source][f"{key}_pct"] = (100.0 * out[source][f"{key}_scenes"] / len(judged)) if judged else math.nan
    if skipped:
        out.setdefault("(skipped)", {})["skipped"] = len(skipped)
    return out


def render(reports: Sequence[SceneReport], skipped: Sequence[SkippedScene], summary: dict) -> str:
    """The human-readable report: failing scenes, skipped ones, then the summary table."""
    lines = [f"{len(reports)} scenes imported, {len(skipped)} skipped"]
    failing = [(r, r.failures()) for r in reports if r.failures()]
    if failing:
        lines.append("\nlog replay fails a sanity check (recorded human driving should pass all):")
        for r, f in failing:
            s = r.sanity
            lines.append(f"  {r.source:24s} {r.id:32s} {','.join(f):28s} ade={s.get('ade', math.nan):.3f} "
                         f"comfortable={s.get('comfortable', math.nan):.0f} "
                         f"route={s.get('route_completion', math.nan):.2f} "
                         f"|accel|max={s.get('max_abs_accel', math.nan):.1f} m/s^2")
    breaking = [(r, r.rule_violations()) for r in reports if r.rule_violations()]
    if breaking:
        lines.append("\nrecorded drivers breaking a traffic rule (judged unfiltered; real logs hold some):")
        said = {key: text for _, key, text in HUMAN_RULES}
        for r, keys in breaking:
            lines.append(f"  {r.source:24s} {r.id:32s} " + "; ".join(said[k] for k in keys))
    if skipped:
        lines.append("\nskipped:")
        lines += [f"  {item.detail()}" for item in skipped]
    dups = duplicate_ids([r.id for r in reports], [r.file for r in reports])
    if dups:
        lines.append("\nrepeated scene ids (sim.evaluate refuses them: results are keyed by scene id):")
        lines += [f"  {duplicate_line(d)}" for d in dups]
    lines.append("\nper scene: agents (static), map elements kept/dropped, steps, world_origin, samples repaired on "
                 "import")
    for r in reports:
        lines.append(f"  {r.id:32s} {r.agents:4d} ({r.static_obstacles}) {r.map_elements:5d}/{r.map_dropped:<3d} "
                     f"{r.steps:4d}  ({r.world_origin[0]:.1f}, {r.world_origin[1]:.1f})"
                     + (f"  agents dropped by the cap: {r.agents_dropped}" if r.agents_dropped else "")
                     + (f"  repaired: {_repairs_text(r.repairs)}" if any(r.repairs.values()) else "")
                     + (f"  ego off the map: {r.off_map_steps} steps" if r.off_map_steps else ""))
        if r.semantics:
            lines.append(f"  {'':32s} map: {_semantics_line(r.semantics)}")
    head = (f"\n{'source':24s} {'scenes':>6s} {'on-road%':>8s} {'comfort%':>8s} {'at-fault%':>9s} "
            f"{'route%':>7s} {'exact%':>7s} {'|a|max':>7s} {'static':>6s} {'map-':>5s}")
    lines.append(head)
    for source, s in summary.items():
        if "scenes" not in s:
            continue
        lines.append(f"{source:24s} {int(s['scenes']):6d} {s['on_road_pct']:8.1f} {s['comfortable_pct']:8.1f} "
                     f"{s['at_fault_pct']:9.1f} {s['route_completed_pct']:7.1f} {s['exact_pct']:7.1f} "
                     f"{s['max_abs_accel']:7.1f} {int(s['static_obstacles']):6d} {int(s['map_dropped']):5d}")
    rates = [(source, s) for source, s in summary.items() if "scenes" in s]
    if rates:
        lines.append(f"\n{'human drivers':24s} " + " ".join(f"{k.replace('_', '-'):>14s}" for _, k, _ in HUMAN_RULES))
        for source, s in rates:
            lines.append(f"{source:24s} " + " ".join(
                f"{int(s[k + '_scenes']):>5d} of {int(s[k + '_judged']):<5d}" if s[k + "_judged"] else f"{'n/a':>14s}"
                for _, k, _ in HUMAN_RULES))
    return "\n".join(lines)


def check(path: str | Path, options: ImportOptions, progress: bool = True, every: bool = False) -> dict:
    """Import everything under ``path``, replay every log, and return the report as a JSON-ready dict.

    Raises:
        ScenarioError: the path does not exist or holds no scenario files.
    """
    files = scenario_files(path)
    scenes: list[Scenario] = []
    reports: list[SceneReport] = []
    skipped: list[SkippedScene] = []
    v_scenes: list[Scenario] = []  # re-imported with another ego (the recorded ego's replay is in ``reports``)
    v_new: list[SceneReport] = []
    v_reports: list[SceneReport] = []  # every moving vehicle, the recorded ego included
    for f in tqdm(files, desc="importing", unit="file", disable=not progress, file=sys.stderr):
        s, r, k = import_file(f, options)
        scenes += s
        reports += r
        skipped += k
        if every and s and f.suffix.lower() != ".npz":  # a .npz holds scenes, not recordings: no other ego
            for scene, rep in zip(*every_vehicle(f, s[0], r, options), strict=True):
                v_reports.append(rep)
                if rep is not r[0]:
                    v_scenes.append(scene)
                    v_new.append(rep)
    if scenes:
        replay_sanity(scenes, reports)
    if v_scenes:
        replay_sanity(v_scenes, v_new)
    summary = summarise(reports, skipped)
    dups = duplicate_ids([r.id for r in reports], [r.file for r in reports])
    out = {"scenes": [asdict(r) | {"failures": r.failures()} for r in reports],
           "duplicates": [{"id": i, "files": [a, b]} for i, a, b in dups],
           "skipped": [asdict(k) for k in skipped], "sources": summary,
           "text": render(reports, skipped, summary)}
    if every:
        vsum = summarise(v_reports, [])
        out["every_vehicle"] = {"vehicles": [asdict(r) | {"failures": r.failures()} for r in v_reports],
                                "sources": vsum}
        out["text"] += "\n" + render_every_vehicle(vsum)
    return out


def render_every_vehicle(summary: dict) -> str:
    """The ``--every-vehicle`` table: per source, log replay of every moving vehicle as the ego."""
    lines = [f"\n{'every moving vehicle':24s} {'vehicles':>8s} {'on-road%':>8s} {'off-map':>7s} {'comfort%':>8s} "
             f"{'at-fault%':>9s} " + " ".join(f"{k.replace('_', '-') + '%':>11s}" for _, k, _ in HUMAN_RULES)]
    for source, s in summary.items():
        if "scenes" not in s:
            continue
        lines.append(f"{source:24s} {int(s['scenes']):8d} {s['on_road_pct']:8.1f} {int(s['off_map_steps']):7d} "
                     f"{s['comfortable_pct']:8.1f} {s['at_fault_pct']:9.1f} " + " ".join(
                         f"{s[k + '_pct']:11.1f}" if s[k + "_judged"] else f"{'n/a':>11s}" for _, k, _ in HUMAN_RULES))
    if len(lines) == 1:
        lines.append("  (no recorded source: a .npz holds scenes, not recordings)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scenarios.check", description=__doc__.split("\n")[0])
    p.add_argument("path", help="a scenario file or a folder of them (any supported format)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON to OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--every-vehicle", action="store_true",
                   help="also replay every moving vehicle of each recorded scene, each in turn as the ego")
    add_import_arguments(p)
    a = p.parse_args(argv)
    try:
        report = check(a.path, import_options_from_args(a), progress=not a.no_progress, every=a.every_vehicle)
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = report.pop("text")
    doc = json.dumps(report, indent=1, default=float) if a.json else ""
    print(text)
    if a.json:
        try:
            Path(a.json).write_text(doc)
        except OSError as e:
            print(f"error: --json {a.json}: cannot write ({e.strerror or e})", file=sys.stderr)
            return 1
    return 0 if report["scenes"] else 1
