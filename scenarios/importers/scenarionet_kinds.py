"""What each kind of ScenarioNet map feature and each converter's constant means to the importer (one table).

ScenarioNet's converters (``scenarionet/converter/{waymo,nuscenes,nuplan,argoverse2,pg}/utils.py``) write
MetaDrive's type strings (``metadrive/type.py``) into ``map_features[id]['type']``:

- driving lanes: ``LANE_SURFACE_STREET``, ``LANE_FREEWAY``, ``LANE_UNKNOWN`` (Waymo), and
  ``LANE_SURFACE_UNSTRUCTURE``: the lane connectors through intersections of nuScenes (since ScenarioNet's
  2023-09 converter; earlier ones wrote them as ``LANE_SURFACE_STREET`` without a polygon), nuPlan (roadblock
  connectors, with a polygon) and PG (intersection blocks). ``LANE_BIKE_LANE`` (Waymo, Argoverse 2) is not a
  driving lane.
- road edges, polylines with the road on one side: ``ROAD_EDGE_BOUNDARY``, ``ROAD_EDGE_MEDIAN``.
- road lines: ``ROAD_LINE_*``, and ``UNKNOWN`` (:data:`AMBIGUOUS_LINE`): Waymo's converter writes it both for a road
  edge of unknown type and for a painted line of unknown type, so it is kept as a line (drawn) and never bounds the
  road: as an edge, a painted line would stop the kerb fill short of the real kerb (a parking lane read off-road).
  nuScenes' and nuPlan's closed ``boundary_*`` rings (typed as a road line) outline the drivable area, and
  Argoverse 2 cuts the same rings into pieces of 20 points.
- polygons: ``CROSSWALK``; ``DRIVEWAY`` (Waymo, drivable).
- read apart: ``STOP_SIGN`` (semantics).
- left out on purpose (:data:`IGNORED`): ``ROAD_EDGE_SIDEWALK`` (a walkway *polygon*, nuScenes and nuPlan: neither
  road nor a kerb line, so its ring is never an edge), ``SPEED_BUMP`` (a polygon on the road the lanes already
  cover), ``UNKNOWN_LINE`` (Argoverse 2 writes it for lane boundaries without paint), ``LANE_BIKE_LANE``.

Any other kind is left out with one :class:`~scenarios.importers.repair.MapElementSkipped` note per file.

Tracks: ``VEHICLE``, ``PEDESTRIAN``, ``CYCLIST`` (:data:`TRACK_TYPES`); every other ``tracks[id]['type']``
(``TRAFFIC_CONE``, ``TRAFFIC_BARRIER``, ``TRAFFIC_OBJECT``, ``OTHER``, ``UNSET``...) is :attr:`AgentType.OTHER`.
Signals: ``dynamic_map_states[id]['type']`` ``TRAFFIC_LIGHT`` (:data:`TRAFFIC_LIGHT`).
"""

from __future__ import annotations

from scenarios.scenario import AgentType

TRACK_TYPES = {"VEHICLE": AgentType.VEHICLE, "PEDESTRIAN": AgentType.PEDESTRIAN, "CYCLIST": AgentType.CYCLIST}
TRAFFIC_LIGHT = "TRAFFIC_LIGHT"  # the type of a signal in ``dynamic_map_states``
LANE_CONNECTOR = "LANE_SURFACE_UNSTRUCTURE"
DRIVING_LANES = ("LANE_SURFACE_STREET", "LANE_FREEWAY", "LANE_UNKNOWN", LANE_CONNECTOR)
ROAD_EDGES = ("ROAD_EDGE_BOUNDARY", "ROAD_EDGE_MEDIAN")
ROAD_LINE_PREFIX = "ROAD_LINE_"
AMBIGUOUS_LINE = "UNKNOWN"  # an edge or a painted line of unknown type (Waymo): a line
CROSSWALK = "CROSSWALK"
DRIVEWAY = "DRIVEWAY"
STOP_SIGN = "STOP_SIGN"
OUTLINE_PREFIX = "boundary_"  # feature ids of the drivable-area outline (nuScenes, nuPlan, Argoverse 2)
IGNORED = ("LANE_BIKE_LANE", "ROAD_EDGE_SIDEWALK", "SPEED_BUMP", "UNKNOWN_LINE")  # left out on purpose (above)

MPH = 0.44704  # m/s per mile per hour
KMH = 1.0 / 3.6  # m/s per km/h
# A lane's speed limit, the first key present: Waymo and Argoverse 2 write mph (and km/h derived from it), PG
# (MetaDrive) km/h, nuPlan m/s (None: unknown).
SPEED_KEYS = (("speed_limit_mph", MPH), ("speed_limit_kmh", KMH), ("speed_limit_mps", 1.0))
# Per ``metadata.dataset``: lane keys that a converter fills with one constant, not with the map's value; read as
# absent. nuScenes: ``speed_limit_kmh`` 100 on every lane connector. Argoverse 2: ``speed_limit_mph`` 85 (and its km/h)
# and ``interpolating`` True on every lane.
CONVERTER_CONSTANTS = {
    "nuscenes": ("speed_limit_kmh",),
    "av2": ("speed_limit_mph", "speed_limit_kmh", "interpolating"),
}
# ``LANE_SURFACE_UNSTRUCTURE`` lanes run through intersections wherever they are written (nuScenes, nuPlan, PG's
# intersection blocks). Datasets whose every lane through an intersection is such a lane connector, so that their
# other lanes are known not to be in one:
CONNECTOR_DATASETS = ("nuscenes", "nuplan")
# Datasets whose lanes without a polygon are lane connectors (nuScenes before ``LANE_SURFACE_UNSTRUCTURE``).
POLYGONLESS_CONNECTORS = ("nuscenes",)
# Datasets whose signal ``stop_point`` is not a stop line: nuPlan's converter (``set_light_position``) writes the
# point 8 m along the controlled lane connector (its end when shorter), where MetaDrive draws the light; traffic
# stops at the connector's start, which is the stop point read for a signal whose lane is imported.
LIGHTS_AT_LANE_START = ("nuplan",)
# Datasets that record every signal and stop sign of the mapped area (none recorded: there are none).
LIGHTS_ALWAYS_RECORDED = ("waymo", "nuplan")
STOP_SIGNS_ALWAYS_RECORDED = ("waymo",)
# ``version`` prefixes of converters that name their dataset there too (older files may lack ``metadata.dataset``).
VERSION_PREFIXES = ("nuscenes", "nuplan")


def role(kind: str) -> str:
    """What a map feature of type ``kind`` becomes.

    Returns:
        ``"lane"``, ``"edge"``, ``"line"``, ``"crosswalk"``, ``"driveway"``, ``"sign"`` (stop sign), ``"ignored"``
        (:data:`IGNORED`) or ``"other"`` (a kind no converter writes: left out with a note).
    """
    if kind in DRIVING_LANES:
        return "lane"
    if kind in ROAD_EDGES:
        return "edge"
    if kind.startswith(ROAD_LINE_PREFIX) or kind == AMBIGUOUS_LINE:
        return "line"
    return {CROSSWALK: "crosswalk", DRIVEWAY: "driveway", STOP_SIGN: "sign"}.get(
        kind, "ignored" if kind in IGNORED else "other")


def dataset_of(d: dict) -> str:
    """``metadata.dataset`` of a scenario dict (``"waymo"``, ``"nuscenes"``, ``"nuplan"``, ``"av2"``, ``"metadrive"``),
    else the dataset its ``version`` starts with, else ``"unknown"``."""
    meta = d.get("metadata") or {}
    name = meta.get("dataset") if isinstance(meta, dict) else None
    if name:
        return str(name)
    version = str(d.get("version", ""))
    return next((p for p in VERSION_PREFIXES if version.startswith(p)), "unknown")
