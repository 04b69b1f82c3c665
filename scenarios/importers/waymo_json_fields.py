"""Fields of the Waymo Open Motion JSON layout as its writers spell them (GPUDrive, Nocturne, ScenarioMax).

What the writers put in a scene (read from their sources):

- GPUDrive ``data_utils/process_waymo_files.py`` (current): headings in radians wrapped to [-pi, pi), the
  sentinel -10000 at invalid steps, ``metadata.sdc_track_index``, object ``id``, road ``map_element_id``.
- Nocturne ``scripts/json_generation/waymo_scenario_construction.py`` and GPUDrive's first converter: headings in
  **degrees** (``math.degrees(state.heading)``, not wrapped: -310.4 occurs), no ``metadata`` and no object ``id``;
  Nocturne's reader takes the ego from an object's ``is_av``. ScenarioMax's GPUDrive export flags it ``is_sdc``.
- Object ``type``: ``vehicle``, ``pedestrian``, ``cyclist``, ``other``, ``unset`` (Waymo's ``Track.ObjectType``
  names, lower case); road ``type``: the name of the Waymo map feature (``lane``, ``road_line``, ``road_edge``,
  ``stop_sign``, ``crosswalk``, ``speed_bump``, ``driveway``). Read here in any case, with or without Waymo's
  ``TYPE_`` prefix; object types also as Waymo's enum values.
- Points: ``{"x", "y"[, "z"]}`` dicts; ``[x, y(, z)]`` lists are read too; a null point is an invalid step.
"""

from __future__ import annotations

import re

import numpy as np

from scenarios.importers.resample import longest_farthest_vehicle
from scenarios.scenario import AgentType, ScenarioError, wrap_angle

OBJECT_TYPES = {
    "vehicle": AgentType.VEHICLE, "car": AgentType.VEHICLE, "truck": AgentType.VEHICLE, "bus": AgentType.VEHICLE,
    "pedestrian": AgentType.PEDESTRIAN,
    "cyclist": AgentType.CYCLIST, "bicycle": AgentType.CYCLIST, "bicyclist": AgentType.CYCLIST,
    "motorcyclist": AgentType.CYCLIST,
}
WAYMO_OBJECT_CODES = {1: AgentType.VEHICLE, 2: AgentType.PEDESTRIAN, 3: AgentType.CYCLIST}  # Track.ObjectType
ROAD_TYPES = ("lane", "road_edge", "road_line", "crosswalk", "driveway", "stop_sign", "speed_bump")
EGO_FLAGS = ("is_sdc", "is_av")  # per-object ego flags (ScenarioMax, Nocturne's reader)
HEADING_SPEED = 2.0  # m/s: steps at least this fast compare the heading with the direction of the velocity
FULL_TURN = 2 * np.pi + 1e-6  # rad: a heading beyond this in magnitude is not a wrapped angle in radians
# A heading this large in magnitude (rad or deg) reads 0.098 rad or more apart in the two units: far beyond the
# noise, and any steady offset, between a heading and the direction of the velocity. Smaller ones do not tell.
UNIT_APART = 0.1


def points(seq: object, what: str) -> np.ndarray:
    """``[n, 2]`` float64 from a list of ``{x, y}`` dicts or ``[x, y(, z)]`` lists; a null point is NaN.

    Raises:
        ScenarioError: not a non-empty list, or a point without x and y.
    """
    if not isinstance(seq, list) or not seq:
        raise ScenarioError(f"{what} must be a non-empty list of {{x, y}} points")
    out = np.full((len(seq), 2), np.nan)
    for k, p in enumerate(seq):
        if isinstance(p, dict):
            out[k] = p["x"], p["y"]
        elif isinstance(p, (list, tuple)) and len(p) >= 2:
            out[k] = p[0], p[1]
        elif p is not None:
            raise ScenarioError(f"{what}[{k}] is not an {{x, y}} point ({type(p).__name__})")
    return out


def road_points(seq: object) -> np.ndarray:
    """``[n, 2]`` points of a road element's geometry (``[0, 2]`` when absent, empty or not a list; all NaN when a
    point cannot be read, so that the element is skipped with a note rather than refusing the scene)."""
    if not isinstance(seq, list) or not seq:
        return np.zeros((0, 2))
    try:
        return points(seq, "road geometry")
    except (ScenarioError, KeyError, TypeError, ValueError):
        return np.full((len(seq), 2), np.nan)


def _name(value: object) -> str:
    """``"RoadEdge"``, ``"ROAD_EDGE"``, ``"road-edge"``, ``"TYPE_ROAD_EDGE"`` -> ``"road_edge"``."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(value).strip())
    s = re.sub(r"[\s\-]+", "_", s).lower()
    return s[len("type_"):] if s.startswith("type_") else s


def object_type(value: object) -> AgentType:
    """An object's ``type`` (name in any case, ``TYPE_`` prefix or not, or Waymo's enum value) -> AgentType."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return WAYMO_OBJECT_CODES.get(int(value), AgentType.OTHER)
    return OBJECT_TYPES.get(_name(value), AgentType.OTHER)


def road_type(value: object) -> str:
    """A road element's ``type`` in the writers' spelling (:data:`ROAD_TYPES`), or the normalised unknown name."""
    return _name(value if value is not None else "")


def headings_in_degrees(head: np.ndarray, vel: np.ndarray, valid: np.ndarray) -> bool:
    """Whether a scene's headings are in degrees (Nocturne) rather than radians (GPUDrive).

    Where objects move (at least :data:`HEADING_SPEED`) with a heading of at least :data:`UNIT_APART` in
    magnitude, the unit that puts the heading closer to the direction of the recorded velocity wins (median angle;
    a heading near 0 reads alike in both units, so that there a steady offset of a few thousandths of a radian
    between heading and velocity would decide). Without such samples, the scene is in degrees when some heading
    exceeds a full turn in magnitude (a degree heading within +-6.3 degrees of such a scene stays ambiguous).

    Args:
        head: float ``[A, T]`` recorded headings; vel: ``[A, T, 2]`` velocities, m/s; valid: bool ``[A, T]``.
    """
    ok = valid & np.isfinite(head)
    speed = np.hypot(vel[..., 0], vel[..., 1])
    moving = ok & np.isfinite(speed) & (speed >= HEADING_SPEED) & (np.abs(head) >= UNIT_APART)
    if moving.any():
        course = np.arctan2(vel[..., 1], vel[..., 0])[moving]
        h = head[moving]
        as_rad = np.median(np.abs(wrap_angle(h - course)))
        as_deg = np.median(np.abs(wrap_angle(np.radians(h) - course)))
        return bool(as_deg < as_rad)
    return bool(np.any(np.abs(head[ok]) > FULL_TURN))


def choose_ego(d: dict, objs: list, xy: np.ndarray, valid: np.ndarray, types: np.ndarray) -> tuple[int, str]:
    """The ego's object index, and a note when the file names none.

    ``metadata.sdc_track_index`` (GPUDrive) when present; else the one object flagged ``is_sdc`` / ``is_av``; else,
    as Waymax does with the SDC, the vehicle recorded for the longest run of steps, the farthest-travelling one
    among equals (the note names it; ``--ego-agent K`` picks another).

    Args:
        d: the scene; objs: its objects; xy: float ``[A, T, 2]`` positions; valid: bool ``[A, T]``;
            types: int8 ``[A]`` AgentType.

    Raises:
        ScenarioError: an index out of range, several flagged objects, or no vehicle to choose.
    """
    meta = d.get("metadata")
    if isinstance(meta, dict) and meta.get("sdc_track_index") is not None:
        ego = int(meta["sdc_track_index"])
        if not 0 <= ego < len(objs):
            raise ScenarioError(f"sdc_track_index {ego} out of range for {len(objs)} objects")
        return ego, ""
    flagged = [i for i, o in enumerate(objs) if isinstance(o, dict) and any(o.get(k) is True for k in EGO_FLAGS)]
    if len(flagged) == 1:
        return flagged[0], ""
    if flagged:
        raise ScenarioError(f"no metadata.sdc_track_index and {len(flagged)} objects flagged as the ego: {flagged}")
    ego, steps = longest_farthest_vehicle(xy, valid, types)
    if ego < 0:
        raise ScenarioError("no metadata.sdc_track_index, no object flagged is_sdc / is_av, and no vehicle valid "
                            "for 2 consecutive steps to serve as the ego")
    oid = objs[ego].get("id", "none") if isinstance(objs[ego], dict) else "none"
    return ego, (f"no metadata.sdc_track_index (nor an object flagged is_sdc / is_av): the ego is object {ego} "
                 f"(id {oid}), the vehicle recorded longest ({steps} steps) that travels farthest; "
                 "--ego-agent K picks another")
