"""Waymo Open Motion scenes as JSON (GPUDrive / Nocturne layout) -> :class:`~scenarios.scenario.Scenario`.

Layout: ``objects[i]`` with ``position``/``velocity`` lists of ``{x, y[, z]}`` (m, m/s), ``heading`` list,
``valid`` list, ``length``/``width`` (m, scalars or one per step), ``type``, ``id``; ``roads[j]`` with ``type``
(``lane``, ``road_edge``, ``road_line``, ``crosswalk``, ``driveway``, ``stop_sign``, ``speed_bump``),
``map_element_id`` (Waymo's map type code; 3 = bike lane) and ``geometry`` (list of ``{x, y[, z]}``);
``metadata.sdc_track_index`` (the ego). How each writer spells these (degrees or radians, type names, points as
lists, the ego without ``metadata``) is read by :mod:`scenarios.importers.waymo_json_fields`. Steps are 0.1 s
apart, as many as the ego's ``position`` list holds (91 in WOMD training scenes); a step is invalid when its
``valid`` flag is false or its position or heading holds the exact sentinel :data:`INVALID_SENTINEL` (-10000);
real coordinates may be anywhere (never judged by their distance from the origin). A road element without usable
points, or of a type none of the writers uses, is skipped with one
:class:`~scenarios.importers.repair.MapElementSkipped` warning per file.

Map semantics: road edges and stop signs (``stop_sign`` point elements; the layout names no controlled lane) are
imported. Traffic lights come from ``tl_states`` when it holds them
(:mod:`scenarios.importers.waymo_json_lights`); Nocturne writes it empty ("filtered out"), so an empty
``tl_states`` means unknown, not "no lights". The layout has no lane widths, polygons, speed limits, successors
or intersection flags: those are unknown.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from scenarios.import_options import ImportOptions
from scenarios.importers.common import Recording, content_errors, recording_to_scenes
from scenarios.importers.repair import EgoChosen, usable_lines, warn_skipped
from scenarios.importers.resample import DT
from scenarios.importers.waymo_json_fields import (
    ROAD_TYPES,
    choose_ego,
    headings_in_degrees,
    object_type,
    points,
    road_points,
    road_type,
)
from scenarios.importers.waymo_json_lights import lights_of
from scenarios.scenario import NUM_FIELDS, Polylines, Scenario, ScenarioError

BIKE_LANE = 3
INVALID_SENTINEL = -10000.0  # the value the GPUDrive/Nocturne layout writes at invalid steps
UNKNOWN_HERE = ("lane_polygons", "speed_limits", "lane_graph", "intersections")  # the layout never holds these
MAP_KINDS = ("lane", "road_edge", "road_line", "crosswalk", "driveway")  # road types imported as map polylines
AREA_KINDS = ("crosswalk", "driveway")  # polygons (3 points or more)


def _size(value: object, n_t: int, what: str) -> np.ndarray:
    """``[n_t]`` a length or width given as one number or one per step."""
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if len(arr) not in (1, n_t):
        raise ScenarioError(f"{what} has {len(arr)} values for {n_t} steps")
    return np.broadcast_to(arr, (n_t,))


def _tracks(objs: list, n_t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(states [A, T, 7], valid [A, T], types [A])`` with headings in radians; ``n_t`` steps per object."""
    states = np.zeros((len(objs), n_t, NUM_FIELDS), dtype=np.float64)
    valid = np.zeros((len(objs), n_t), dtype=bool)
    types = np.zeros(len(objs), dtype=np.int8)
    for i, o in enumerate(objs):
        pos = points(o["position"], f"object {i} position")
        vel = points(o["velocity"], f"object {i} velocity")
        head = np.asarray(o["heading"], dtype=np.float64).reshape(-1)
        val = np.asarray(o["valid"], dtype=bool).reshape(-1)
        if not (len(pos) == len(vel) == len(head) == len(val) == n_t):
            raise ScenarioError(
                f"object {i}: position/velocity/heading/valid lengths {len(pos)}/{len(vel)}/{len(head)}/"
                f"{len(val)} differ from {n_t} steps"
            )
        states[i, :, 0:2] = pos
        states[i, :, 2] = head
        states[i, :, 3:5] = vel
        states[i, :, 5] = _size(o["length"], n_t, f"object {i} length")
        states[i, :, 6] = _size(o["width"], n_t, f"object {i} width")
        valid[i] = val & ~np.any(pos == INVALID_SENTINEL, axis=1) & (head != INVALID_SENTINEL)
        types[i] = object_type(o.get("type", ""))
    if headings_in_degrees(states[..., 2], states[..., 3:5], valid):
        states[..., 2] = np.radians(states[..., 2])
    valid &= np.all(np.isfinite(states), axis=2)
    return states, valid, types


def _bike_lane(r: dict) -> bool:
    try:
        return int(r.get("map_element_id", -1)) == BIKE_LANE
    except (TypeError, ValueError):
        return False


def _road_map(roads: list, notes: list[str]) -> tuple[dict, list[str], list[np.ndarray]]:
    """``(Recording map fields, lane ids, stop-sign points)`` of ``roads``; skipped elements go to ``notes``."""
    roads = [r for r in roads if isinstance(r, dict)]
    kinds = [road_type(r.get("type")) for r in roads]
    unknown = Counter(k for k in kinds if k not in ROAD_TYPES)
    if unknown:
        notes.append("road elements of a type no writer uses: " + ", ".join(f"{k!r} x{n}" for k, n in unknown.items()))
    signs = [road_points(r.get("geometry"))[:1] for r, k in zip(roads, kinds) if k == "stop_sign"]
    signs = [p for p in signs if len(p) and np.all(np.isfinite(p))]
    todo = [(j, k, r, road_points(r.get("geometry"))) for j, (k, r) in enumerate(zip(kinds, roads)) if k in MAP_KINDS]
    ok = np.ones(len(todo), dtype=bool)
    for area in (False, True):
        sel = [i for i, t in enumerate(todo) if (t[1] in AREA_KINDS) == area]
        if sel:
            ok[sel] = usable_lines([todo[i][3] for i in sel], [f"road {todo[i][0]} ({todo[i][1]})" for i in sel],
                                   3 if area else 2, notes)
    out: dict[str, list] = {"lanes": [], "road_edges": [], "road_lines": [], "crosswalks": [], "drivable_extra": []}
    lane_ids = []
    for (_j, kind, r, pts), good in zip(todo, ok):
        if not good:
            continue
        if kind == "lane" and not _bike_lane(r):
            out["lanes"].append(pts)
            lane_ids.append(str(r.get("id", "")))
        elif kind in ("road_edge", "road_line"):
            out[kind + "s"].append(pts)
        elif kind in AREA_KINDS:
            out["crosswalks" if kind == "crosswalk" else "drivable_extra"].append(pts)
    return {k: Polylines.from_list(v) for k, v in out.items()}, lane_ids, signs


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
        n_t = Counter(len(o["position"]) for o in objs).most_common(1)[0][0]  # the objects' common length
        states, valid, types = _tracks(objs, n_t)
        ego, why = choose_ego(d, objs, states[..., :2], valid, types)
        tags: tuple[str, ...] = ("real", "waymo")
        if why:
            warnings.warn(EgoChosen(f"scene {d.get('scenario_id') or name}: {why}"), stacklevel=2)
            tags += (f"ego={objs[ego].get('id', ego)}",)
        notes: list[str] = []
        road, lane_ids, signs = _road_map(d.get("roads") or [], notes)
        lights = lights_of(d.get("tl_states"), lane_ids, n_t, notes)
        warn_skipped(notes)
        unknown = UNKNOWN_HERE + (() if lights else ("traffic_lights",)) + (() if len(road["road_edges"])
                                                                            else ("road_edges",))
        return Recording(
            id=str(d.get("scenario_id") or name),
            source="waymo_json",
            t=np.arange(n_t) * DT,
            states=states,
            valid=valid,
            agent_type=types,
            ego=ego,
            lane_widths=np.full(len(road["lanes"]), np.nan),
            tags=tags,
            stop_signs=np.concatenate(signs + [np.zeros((0, 2))]),
            stop_sign_lanes=np.full(len(signs), -1, dtype=np.int64),
            unknown=unknown,
            **road,
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
