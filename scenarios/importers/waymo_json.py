"""Waymo Open Motion scenes as JSON (GPUDrive / Nocturne layout) -> :class:`~scenarios.scenario.Scenario`.

Layout: ``objects[i]`` with ``position``/``velocity`` lists of ``{x, y[, z]}`` (m, m/s),
``heading`` list (rad), ``valid`` list, scalar ``length``/``width`` (m), ``type``
(``vehicle``, ``pedestrian``, ``cyclist``), ``id``; ``roads[j]`` with ``type`` (``lane``,
``road_edge``, ``road_line``, ``crosswalk``, ``driveway``, ``stop_sign``, ``speed_bump``),
``map_element_id`` (Waymo's map type code; 3 = bike lane) and ``geometry`` (list of
``{x, y[, z]}``); ``metadata.sdc_track_index`` (the ego). Steps are 0.1 s apart; a step is
invalid when its ``valid`` flag is false or its position holds the exact sentinel
:data:`INVALID_SENTINEL` (-10000); real coordinates may be anywhere (never judged by their
distance from the origin). A road element without usable points is skipped with a
:class:`~scenarios.importers.repair.MapElementSkipped` warning.

Map semantics: road edges and stop signs (``stop_sign`` point elements; the layout names no
controlled lane) are imported. Traffic lights come from ``tl_states`` when it holds them
(Nocturne's layout: ``{lane id: {"state": [...], "x": [...], "y": [...], "time_index": [...]}}``,
states as Waymo names such as ``"stop"``/``"arrow_go"`` or enum values); Nocturne writes it empty
("filtered out"), so an empty ``tl_states`` means unknown, not "no lights". The layout has no lane
widths, polygons, speed limits, successors or intersection flags: those are unknown.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from scenarios.import_options import ImportOptions
from scenarios.importers.common import Recording, content_errors, recording_to_scenes
from scenarios.importers.repair import usable_lines, warn_skipped
from scenarios.importers.resample import DT
from scenarios.importers.semantics import light_state
from scenarios.scenario import NUM_FIELDS, AgentType, LightState, Polylines, Scenario, ScenarioError

TYPES = {"vehicle": AgentType.VEHICLE, "pedestrian": AgentType.PEDESTRIAN, "cyclist": AgentType.CYCLIST}
BIKE_LANE = 3
INVALID_SENTINEL = -10000.0  # the value the GPUDrive/Nocturne layout writes at invalid steps
UNKNOWN_HERE = ("lane_polygons", "speed_limits", "lane_graph", "intersections")  # the layout never holds these


def _lights(tl: object, lane_ids: list[str], n_t: int) -> dict:
    """Traffic lights from ``tl_states`` (Nocturne's layout; see the module docstring); {} when it holds none."""
    if not isinstance(tl, dict) or not tl:
        return {}
    index = {lid: i for i, lid in enumerate(lane_ids)}
    lanes, points, states = [], [], []
    for lane_id, rec in tl.items():
        raw = list(rec.get("state", []))
        xs, ys = np.asarray(rec.get("x", []), float).reshape(-1), np.asarray(rec.get("y", []), float).reshape(-1)
        steps = np.asarray(rec.get("time_index", range(len(raw))), dtype=np.int64).reshape(-1)
        if not (len(raw) == len(steps) == len(xs) == len(ys)) or not len(raw):
            raise ScenarioError(f"tl_states[{lane_id!r}]: state, x, y and time_index differ in length")
        st = np.full(n_t, LightState.UNKNOWN, dtype=np.int8)
        ok = (steps >= 0) & (steps < n_t)
        st[steps[ok]] = [light_state(v) for v, k in zip(raw, ok) if k]
        lanes.append(index.get(str(lane_id), -1))
        points.append((float(np.median(xs)), float(np.median(ys))))
        states.append(st)
    return {"light_lanes": np.asarray(lanes, np.int64), "light_stop_points": np.asarray(points, float).reshape(-1, 2),
            "light_states": np.asarray(states, np.int8).reshape(len(lanes), n_t)}


def _points(seq, what: str) -> np.ndarray:
    if not isinstance(seq, list) or not seq:
        raise ScenarioError(f"{what} must be a non-empty list of {{x, y}} points")
    return np.array([(p["x"], p["y"]) for p in seq], dtype=np.float64)


def _road_points(seq) -> np.ndarray:
    """``[n, 2]`` points of a road element's geometry (``[0, 2]`` when absent or not a list)."""
    if not isinstance(seq, list):
        return np.zeros((0, 2))
    return np.array([(p["x"], p["y"]) for p in seq], dtype=np.float64).reshape(-1, 2)


def waymo_json_recording(d: object, name: str = "scene") -> Recording:
    """Build a :class:`Recording` from a parsed GPUDrive/Nocturne JSON scene.

    Raises:
        ScenarioError: missing keys or inconsistent lengths (message without file name).
    """
    if not isinstance(d, dict):
        raise ScenarioError(f"not a Waymo JSON scene (top level is {type(d).__name__})")
    with content_errors("Waymo JSON scene"):
        objs = d["objects"]
        if not isinstance(objs, list) or not objs:
            raise ScenarioError("no objects")
        ego = int(d["metadata"]["sdc_track_index"])
        if not 0 <= ego < len(objs):
            raise ScenarioError(f"sdc_track_index {ego} out of range for {len(objs)} objects")
        n_t = len(objs[ego]["position"])
        states = np.zeros((len(objs), n_t, NUM_FIELDS), dtype=np.float64)
        valid = np.zeros((len(objs), n_t), dtype=bool)
        types = np.zeros(len(objs), dtype=np.int8)
        for i, o in enumerate(objs):
            pos = _points(o["position"], f"object {i} position")
            vel = _points(o["velocity"], f"object {i} velocity")
            head = np.asarray(o["heading"], dtype=np.float64)
            val = np.asarray(o["valid"], dtype=bool)
            if not (len(pos) == len(vel) == len(head) == len(val) == n_t):
                raise ScenarioError(
                    f"object {i}: position/velocity/heading/valid lengths {len(pos)}/{len(vel)}/{len(head)}/"
                    f"{len(val)} differ from {n_t} steps"
                )
            states[i, :, 0:2] = pos
            states[i, :, 2] = head
            states[i, :, 3:5] = vel
            states[i, :, 5] = float(o["length"])
            states[i, :, 6] = float(o["width"])
            valid[i] = val & ~np.any(pos == INVALID_SENTINEL, axis=1)
            types[i] = TYPES.get(str(o.get("type", "")).lower(), AgentType.OTHER)
        valid &= np.all(np.isfinite(states), axis=2)
        lanes, edges, lines, cross, extra, notes, lane_ids = [], [], [], [], [], [], []
        signs = [_road_points(r.get("geometry"))[:1] for r in d.get("roads", []) if str(r.get("type")) == "stop_sign"]
        signs = [p for p in signs if len(p) and np.all(np.isfinite(p))]
        todo = [(j, str(r.get("type", "")), r) for j, r in enumerate(d.get("roads", []))]
        todo = [(j, kind, r, _road_points(r.get("geometry"))) for j, kind, r in todo
                if kind in ("lane", "road_edge", "road_line", "crosswalk", "driveway")]
        ok = np.ones(len(todo), dtype=bool)
        for area in (False, True):
            sel = [i for i, t in enumerate(todo) if (t[1] in ("crosswalk", "driveway")) == area]
            if sel:
                ok[sel] = usable_lines([todo[i][3] for i in sel], [f"road {todo[i][0]} ({todo[i][1]})" for i in sel],
                                       3 if area else 2, notes)
        for (_j, kind, r, pts), good in zip(todo, ok):
            if not good:
                continue
            if kind == "lane" and int(r.get("map_element_id", 2)) != BIKE_LANE:
                lanes.append(pts)
                lane_ids.append(str(r.get("id", "")))
            elif kind == "road_edge":
                edges.append(pts)
            elif kind == "road_line":
                lines.append(pts)
            elif kind == "crosswalk" and len(pts) >= 3:
                cross.append(pts)
            elif kind == "driveway" and len(pts) >= 3:
                extra.append(pts)
        warn_skipped(notes)
        lights = _lights(d.get("tl_states"), lane_ids, n_t)
        unknown = UNKNOWN_HERE + (() if lights else ("traffic_lights",)) + (() if edges else ("road_edges",))
        return Recording(
            id=str(d.get("scenario_id") or name),
            source="waymo_json",
            t=np.arange(n_t) * DT,
            states=states,
            valid=valid,
            agent_type=types,
            ego=ego,
            lanes=Polylines.from_list(lanes),
            lane_widths=np.full(len(lanes), np.nan),
            road_edges=Polylines.from_list(edges),
            road_lines=Polylines.from_list(lines),
            crosswalks=Polylines.from_list(cross),
            drivable_extra=Polylines.from_list(extra),
            tags=("real", "waymo"),
            stop_signs=np.concatenate(signs + [np.zeros((0, 2))]),
            stop_sign_lanes=np.full(len(signs), -1, dtype=np.int64),
            unknown=unknown,
            **lights,
        )


def load_waymo_json(
    path: str | os.PathLike, options: ImportOptions | None = None, skipped: list[tuple[str, str]] | None = None
) -> list[Scenario]:
    """Import one Waymo Open Motion JSON scene.

    Args:
        path: a ``.json`` file in the GPUDrive/Nocturne layout.
        options: windowing and init step.
        skipped: see :func:`~scenarios.importers.common.recording_to_scenes`.

    Returns:
        Validated scenarios (one per window), ego at agent 0.

    Raises:
        ScenarioError: one line naming the file (unreadable, malformed JSON, bad content).
    """
    path = Path(path)
    try:
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except OSError as e:
            raise ScenarioError(f"cannot read ({e.strerror or e})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ScenarioError(f"malformed JSON ({e})") from None
        rec = waymo_json_recording(d, name=path.stem)
        return recording_to_scenes(rec, options or ImportOptions(), skipped)
    except ScenarioError as e:
        msg = str(e)
        raise ScenarioError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
