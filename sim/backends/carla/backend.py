"""The CARLA backend: B scenes side by side in one CARLA world, behind :class:`sim.backends.kinematic.Backend`.

Per batch (:meth:`CarlaBackend.reset`):

1. the map: scenes with generated maps are moved apart on a grid (each scene's centre to its
   own cell, so far-away source coordinates stay small), their lane centrelines exported to one
   OpenDRIVE document (:mod:`sim.backends.carla.opendrive`) and loaded with
   ``client.generate_opendrive_world`` (no walls, so roads may overlap at crossings). A scene
   tagged ``carla_town:<Town>`` loads that CARLA town instead (its coordinates are CARLA's with y
   flipped, no offset; such scenes run one per batch). An identical map is not reloaded.
2. a :class:`~sim.backends.carla.session.CarlaSession`: synchronous mode, ``fixed_delta_seconds = dt``,
   rendering off; cleanup (actors destroyed, settings restored) in :meth:`close` / the next reset.
3. per scene, the ego (physics on) at its logged box pose at ``init_step`` (``spawn_z`` above the
   road) with its logged velocity and a ``sensor.other.collision``; every other agent with physics
   off, parked below the map and moved each tick by ``ApplyTransform``.

Per step (:meth:`CarlaBackend.step`): each ego's (accel, curvature) becomes throttle, brake and steer
(:mod:`sim.backends.carla.control`); every command of every scene goes in ONE ``apply_batch_sync``; the world
ticks under a watchdog; each ego's state is read back from one snapshot (box centre, yaw, velocity
in the project frame; logged length and width). Other agents are reported at their logged
states, logged velocities included (CARLA reports zero velocity for teleported actors).
Observations, controller and metrics are the project's own (:func:`sim.rollout.rollout`).
"""

from __future__ import annotations

import atexit
import hashlib
import math
import weakref
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from scenarios.scenario import AgentType
from sim.backends.carla import CarlaError, require_carla
from sim.backends.carla import convert as cv
from sim.backends.carla.control import ControlConfig, ControlMapper
from sim.backends.carla.opendrive import lanes_to_xodr, usable_lanes
from sim.backends.carla.session import CarlaSession, Endpoint, SessionConfig, connect
from sim.batch import ScenarioBatch
from sim.config import CURVATURE_MAX
from sim.state import SimState

TOWN_TAG = "carla_town:"

_KNOWN_SCENES: dict[str, object] = {}  # scenes registered for backends built without them (this process)
_LOADED_MAPS: dict[str, str] = {}  # endpoint -> key of the map this process last loaded there


_LIVE: weakref.WeakSet = weakref.WeakSet()  # backends with a session that may still hold actors


def close_all() -> None:
    """Close every live backend of this process (actors destroyed, settings restored). Runs at exit."""
    for be in list(_LIVE):
        try:
            be.close()
        except Exception as exc:  # noqa: BLE001 - best effort at exit; report and go on
            print(f"warning: CARLA cleanup at exit failed for {be.endpoint}: {exc}")


atexit.register(close_all)


def register_scenes(scenes) -> None:
    """Make scenes (by id) known to every :class:`CarlaBackend` of this process, also ones built without them.

    For callers that build backends through a factory that cannot pass scenes
    (``make_backend(host, port)``): register once, before the rollouts.
    """
    _KNOWN_SCENES.update({s.id: s for s in scenes})


@dataclass(frozen=True)
class CarlaConfig:
    """Settings of the CARLA backend.

    Attributes:
        session: timeouts (probe, RPC, tick watchdog, map loading).
        control: accel/curvature -> VehicleControl mapping (``max_steer_angle`` is read from the ego).
        ego_blueprint: blueprint id of the ego vehicle.
        vehicle_blueprint, cyclist_blueprint, pedestrian_blueprint: replayed agents by type.
        spawn_z: m above the road surface for spawning (CARLA drops the vehicle onto the road).
        park_z: m, z of parked (currently invalid) replayed agents, below the map.
        scene_margin: m of empty space between scenes laid side by side.
        vertex_distance: m, mesh resolution of generated OpenDRIVE worlds.
        additional_width: m of extra road mesh beside each lane of generated worlds.
    """

    session: SessionConfig = field(default_factory=SessionConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    ego_blueprint: str = "vehicle.lincoln.mkz_2020"
    vehicle_blueprint: str = "vehicle.lincoln.mkz_2020"
    cyclist_blueprint: str = "vehicle.bh.crossbike"
    pedestrian_blueprint: str = "walker.pedestrian.0001"
    spawn_z: float = 0.5
    park_z: float = -200.0
    scene_margin: float = 200.0
    vertex_distance: float = 2.0
    additional_width: float = 0.6


def scene_town(scene) -> str | None:
    """The CARLA town a scene was written for (tag ``carla_town:<Town>``), else None."""
    for tag in getattr(scene, "tags", ()):
        if tag.startswith(TOWN_TAG):
            return tag[len(TOWN_TAG) :]
    return None


def scene_offsets(scenes, margin: float = 200.0) -> np.ndarray:
    """Translations that put each scene's centre in its own cell of a square grid.

    Args:
        scenes: scenes with generated maps.
        margin: m between the bounding boxes of neighbouring scenes.

    Returns:
        float64 ``[B, 2]`` m, added to a scene's coordinates to get its CARLA-world position.
    """
    lo, hi = [], []
    for s in scenes:
        pts = [s.agents[..., :2][s.valid], s.route] + [p for p in s.map.lanes]
        p = np.concatenate([np.asarray(q, dtype=np.float64).reshape(-1, 2) for q in pts if len(q)])
        lo.append(p.min(axis=0))
        hi.append(p.max(axis=0))
    lo, hi = np.array(lo), np.array(hi)
    cell = float((hi - lo).max()) + margin
    n = int(math.ceil(math.sqrt(len(scenes))))
    idx = np.arange(len(scenes))
    grid = np.stack([idx % n, idx // n], axis=1) * cell
    return grid - (lo + hi) / 2


def _state(agents, speed, valid, t: int, last_action) -> SimState:
    """Build a :class:`SimState` from ``agents [B, A, 7]`` and ``speed [B, A]`` (either field layout of SimState)."""
    names = {f.name for f in fields(SimState)}
    if "kin" in names:
        kin = torch.cat([agents, speed.unsqueeze(-1)], dim=-1)
        return SimState(kin=kin, valid=valid, t=t, last_action=last_action)
    return SimState(agents=agents, speed=speed, valid=valid, t=t, last_action=last_action)


@dataclass
class _Scene:
    """CARLA actors and per-scene state of one batch entry."""

    offset: np.ndarray  # [2] m
    log: np.ndarray  # [A, T, 7] float64, scene frame
    valid: np.ndarray  # [A, T] bool
    ego: object = None
    mapper: ControlMapper | None = None
    ego_z: float = 0.0
    others: dict = field(default_factory=dict)
    park: dict = field(default_factory=dict)
    other_z: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    ended: bool = False


class CarlaBackend:
    """:class:`sim.backends.kinematic.Backend` on one CARLA server for batches of B scenes (one world).

    Args:
        endpoint: the server.
        scenes: the scenes that may be reset, matched by id (the batch carries no lane geometry).
        cfg: settings.
        cancel: optional ``threading.Event``; once set, :meth:`step` raises :class:`CarlaError`.

    ``last_state`` is the :class:`SimState` last returned. After each step, ``sensor_collision``
    (bool numpy ``[B, T]``: CARLA's collision sensor fired on the ego in the step ending at t)
    and ``collision_actors`` (per scene, the type ids hit).
    """

    name = "carla"
    agent_model = "log"

    def __init__(self, endpoint: Endpoint, scenes=(), cfg: CarlaConfig | None = None, cancel=None) -> None:
        self.endpoint = endpoint
        self.cfg = cfg or CarlaConfig()
        self.cancel = cancel
        self.scenes = {s.id: s for s in scenes}
        self.client = None
        self.world = None
        self.session: CarlaSession | None = None
        self._map_key: str | None = None
        self._batch: ScenarioBatch | None = None
        self._scenes: list[_Scene] = []
        self._frame: int | None = None
        self._follow_ground = False
        self.last_state: SimState | None = None
        self.sensor_collision = np.zeros((0, 0), dtype=bool)
        self.collision_actors: list[list[str]] = []

    # -- connection and map ----------------------------------------------------------------
    def connect(self) -> None:
        """Connect once (fast failure when the server is missing; see :func:`sim.backends.carla.session.connect`)."""
        if self.client is None:
            self.client, self.world = connect(self.endpoint, self.cfg.session)

    def _load_map(self, scenes, offsets: np.ndarray) -> None:
        carla = require_carla()
        town = scene_town(scenes[0])
        if town is not None:
            key = "town:" + town
        else:
            lanes, widths = [], []
            for s, off in zip(scenes, offsets):
                ls, ws = usable_lanes(s)
                lanes += [p + off for p in ls]
                widths += list(ws)
            xodr = lanes_to_xodr(lanes, widths, name="batch")
            key = "xodr:" + hashlib.sha1(xodr.encode()).hexdigest()
        if key == self._map_key:
            return
        if self._map_key is None and _LOADED_MAPS.get(str(self.endpoint)) == key and self._server_has(town, key):
            self._map_key = key
            return
        self.client.set_timeout(self.cfg.session.load_timeout)
        try:
            if town is not None:
                self.world = self.client.load_world(town)
            else:
                params = carla.OpendriveGenerationParameters(
                    vertex_distance=self.cfg.vertex_distance,
                    max_road_length=500.0,
                    wall_height=0.0,
                    additional_width=self.cfg.additional_width,
                    smooth_junctions=True,
                    enable_mesh_visibility=True,
                    enable_pedestrian_navigation=False,  # walkers are moved by transform: no nav mesh
                )
                self.world = self.client.generate_opendrive_world(xodr, params)
        except RuntimeError as exc:
            what = f"town {town}" if town else "the generated OpenDRIVE map"
            raise CarlaError(f"{self.endpoint}: loading {what} for scene {scenes[0].id!r} failed: {exc}") from None
        finally:
            self.client.set_timeout(self.cfg.session.rpc_timeout)
        self._map_key = key
        _LOADED_MAPS[str(self.endpoint)] = key

    def _server_has(self, town: str | None, key: str) -> bool:
        """Whether the server's current world is still the map ``key`` (another client may have changed it)."""
        try:
            m = self.world.get_map()
            if town is not None:
                return m.name.split("/")[-1] == town
            return "xodr:" + hashlib.sha1(m.to_opendrive().encode()).hexdigest() == key
        except RuntimeError:
            return False

    # -- Backend protocol ------------------------------------------------------------------
    def reset(self, batch: ScenarioBatch) -> SimState:
        """Load the map, start a synchronous session, spawn every scene's ego and replayed agents.

        Returns:
            The state at ``batch.init_step``: the log there.

        Raises:
            CarlaError: unknown scene, town scenes batched together, spawn refused, server trouble.
        """
        for i in batch.ids:
            if i not in self.scenes and i in _KNOWN_SCENES:
                self.scenes[i] = _KNOWN_SCENES[i]
        missing = [i for i in batch.ids if i not in self.scenes]
        if missing:
            raise CarlaError(
                f"the CARLA backend needs the scenes' lanes but was not given scene {missing[0]!r}: "
                "build it with make_backend(host=..., port=..., scenes=scenes) or call register_scenes(scenes)"
            )
        scenes = [self.scenes[i] for i in batch.ids]
        towns = [scene_town(s) for s in scenes]
        if any(towns) and len(scenes) > 1:
            raise CarlaError(
                f"scene {scenes[0].id!r}...: scenes written for CARLA towns run one per batch (use --batch-size 1)"
            )
        offsets = np.zeros((len(scenes), 2)) if towns[0] else scene_offsets(scenes, self.cfg.scene_margin)
        self._follow_ground = towns[0] is not None  # towns have hills: replayed agents follow the road height
        self.close_scene()
        self.connect()
        self._load_map(scenes, offsets)
        self._batch = batch
        n_b, _, n_t, _ = batch.log.shape
        self.sensor_collision = np.zeros((n_b, n_t), dtype=bool)
        self.collision_actors = [[] for _ in range(n_b)]
        log = batch.log.detach().cpu().double().numpy()
        valid = batch.valid.detach().cpu().numpy()
        self._scenes = [_Scene(offsets[b], log[b], valid[b]) for b in range(n_b)]
        self._frame = None
        self.session = CarlaSession(self.client, self.world, batch.dt, self.cfg.session, name=str(self.endpoint))
        _LIVE.add(self)
        self.session.__enter__()
        try:
            self._map = self.world.get_map()
            self._library = self.world.get_blueprint_library()
            cmds = []
            for b, sc in enumerate(self._scenes):
                cmds += self._spawn_scene(b, sc, batch)
            self.session.apply(cmds)
        except BaseException:
            self.close_scene()
            raise
        t0 = batch.init_step
        agents = batch.log[:, :, t0].clone()
        last = torch.zeros(n_b, 2, dtype=agents.dtype, device=agents.device)
        self.last_state = _state(
            agents, torch.hypot(agents[..., 3], agents[..., 4]), batch.valid[:, :, t0].clone(), t0, last
        )
        return self.last_state

    def _ground_z(self, x: float, y: float) -> float:
        """Road height (m) at CARLA-world point (x, y) in the project frame; 0 away from roads."""
        wp = self._map.get_waypoint(cv.to_location(x, y, 0.0), True)
        if wp is None:
            return 0.0
        loc = wp.transform.location
        return float(loc.z) if math.hypot(loc.x - x, -loc.y - y) < 5.0 else 0.0

    def _blueprint(self, name: str, role: str):
        lib = self._library
        found = lib.filter(name)
        if len(found) == 0:
            found = lib.filter("walker.pedestrian.*" if name.startswith("walker") else "vehicle.*")
        if len(found) == 0:
            raise CarlaError(f"{self.endpoint}: no blueprint {name!r} on this server")
        bp = found[0]
        if bp.has_attribute("role_name"):
            bp.set_attribute("role_name", role)
        return bp

    @staticmethod
    def _origin(actor, x: float, y: float, yaw: float, z: float):
        """Transform placing ``actor``'s bounding-box centre at the CARLA-world pose (x, y, yaw) (project frame)."""
        off = actor.bounding_box.location  # CARLA local frame: x forward, y right
        fx, fy = off.x, -off.y
        c, s = math.cos(yaw), math.sin(yaw)
        return cv.to_transform(x - (c * fx - s * fy), y - (s * fx + c * fy), yaw, z)

    def _spawn_scene(self, b: int, sc: _Scene, batch: ScenarioBatch) -> list:
        carla = require_carla()
        sess = self.session
        t0 = batch.init_step
        ex, ey, eyaw, evx, evy = sc.log[0, t0, :5]
        wx, wy = ex + sc.offset[0], ey + sc.offset[1]
        sc.ego_z = self._ground_z(wx, wy) + self.cfg.spawn_z
        ego = sess.spawn(self._blueprint(self.cfg.ego_blueprint, "hero"), cv.to_transform(wx, wy, eyaw, sc.ego_z))
        if ego is None:
            raise CarlaError(
                f"{self.endpoint}: CARLA refused to spawn the ego of {batch.ids[b]!r} at ({ex:.1f}, {ey:.1f})"
            )
        sc.ego = ego
        ego.set_transform(self._origin(ego, wx, wy, eyaw, sc.ego_z))
        ego.set_target_velocity(cv.to_vector(evx, evy))
        wheels = ego.get_physics_control().wheels
        max_deg = max((w.max_steer_angle for w in wheels), default=0.0)
        ccfg = self.cfg.control if max_deg <= 0 else replace(self.cfg.control, max_steer_angle=math.radians(max_deg))
        sc.mapper = ControlMapper(ccfg, batch.dt)
        sc.mapper.reset(float(np.hypot(evx, evy)))
        sensor = sess.spawn(self._library.find("sensor.other.collision"), carla.Transform(), attach_to=ego, sensor=True)
        if sensor is None:
            raise CarlaError(f"{self.endpoint}: could not attach a collision sensor to the ego of {batch.ids[b]!r}")
        events = sc.events
        sensor.listen(lambda ev: events.append((int(ev.frame), str(ev.other_actor.type_id))))
        kinds = batch.agent_type[b].tolist()
        by_type = {
            int(AgentType.PEDESTRIAN): self.cfg.pedestrian_blueprint,
            int(AgentType.CYCLIST): self.cfg.cyclist_blueprint,
        }
        for a in range(1, sc.log.shape[0]):
            if not sc.valid[a, t0:].any():
                continue
            park = cv.to_transform(wx + 10.0 * a, wy, 0.0, self.cfg.park_z)
            actor = sess.spawn(
                self._blueprint(by_type.get(kinds[a], self.cfg.vehicle_blueprint), "replay"), park, physics=False
            )
            if actor is None:
                raise CarlaError(f"{self.endpoint}: CARLA refused to spawn agent {a} of {batch.ids[b]!r}")
            sc.others[a] = actor
            sc.park[a] = park
            first = sc.log[a, sc.valid[a]][0, :2] + sc.offset
            sc.other_z[a] = self._ground_z(*first) + 0.05
        return self._other_commands(sc, t0)

    def _other_commands(self, sc: _Scene, t: int) -> list:
        carla = require_carla()
        cmds = []
        for a, actor in sc.others.items():
            if t < sc.valid.shape[1] and sc.valid[a, t]:
                x, y, yaw = sc.log[a, t, :3]
                wx, wy = x + sc.offset[0], y + sc.offset[1]
                z = self._ground_z(wx, wy) + 0.05 if self._follow_ground else sc.other_z[a]
                tf = self._origin(actor, wx, wy, yaw, z)
            else:
                tf = sc.park[a]
            cmds.append(carla.command.ApplyTransform(actor.id, tf))
        return cmds

    def step(self, state: SimState, accel, curvature, t: int) -> SimState:
        """Advance every scene from step ``t`` to ``t + 1`` (see the module docstring)."""
        carla = require_carla()
        if self.session is None or self._batch is None:
            raise CarlaError("CarlaBackend.step called before reset")
        if self.cancel is not None and self.cancel.is_set():
            raise CarlaError(f"{self.endpoint}: cancelled")
        batch = self._batch
        step_valid = batch.step_valid[:, t + 1].tolist()
        replay = accel is None or curvature is None
        acc = [0.0] * len(self._scenes) if replay else accel.detach().cpu().double().tolist()
        curv = [0.0] * len(self._scenes) if replay else curvature.detach().cpu().double().tolist()
        cmds = []
        for b, sc in enumerate(self._scenes):
            if not step_valid[b]:  # the scene has ended: freeze its ego
                if not sc.ended:
                    cmds.append(carla.command.SetSimulatePhysics(sc.ego.id, False))
                    sc.ended = True
                continue
            cmds += self._other_commands(sc, t + 1)
            if replay:
                x, y, yaw = sc.log[0, t + 1, :3]
                cmds.append(carla.command.SetSimulatePhysics(sc.ego.id, False))
                pose = self._origin(sc.ego, x + sc.offset[0], y + sc.offset[1], yaw, sc.ego_z)
                cmds.append(carla.command.ApplyTransform(sc.ego.id, pose))
            else:
                command = sc.mapper(acc[b], curv[b], float(state.speed[b, 0]))
                cmds.append(carla.command.ApplyVehicleControl(sc.ego.id, command.to_vehicle_control()))
        self.session.apply(cmds)
        frame = self.session.tick()
        snapshot = None if replay else self.world.get_snapshot()

        agents = batch.log[:, :, t + 1].clone()
        speed = torch.hypot(agents[..., 3], agents[..., 4])
        action = torch.zeros(len(self._scenes), 2, dtype=agents.dtype, device=agents.device)
        for b, sc in enumerate(self._scenes):
            hits = [name for f, name in list(sc.events) if self._frame is None or f > self._frame]
            if hits and step_valid[b]:
                self.sensor_collision[b, t + 1] = True
                self.collision_actors[b].extend(hits)
            if not step_valid[b]:
                agents[b] = state.agents[b]
                speed[b] = state.speed[b]
                continue
            if replay:
                action[b] = self._log_action(state, agents, b)
                continue
            snap = snapshot.find(sc.ego.id) if snapshot is not None else None
            tf = snap.get_transform() if snap is not None else sc.ego.get_transform()
            vel = snap.get_velocity() if snap is not None else sc.ego.get_velocity()
            x, y, yaw = cv.box_centre(tf, sc.ego.bounding_box)
            vx, vy = cv.from_vector(vel)
            fwd = max(0.0, vx * math.cos(yaw) + vy * math.sin(yaw))
            agents[b, 0, :5] = torch.tensor([x - sc.offset[0], y - sc.offset[1], yaw, vx, vy], dtype=agents.dtype)
            agents[b, 0, 5:7] = batch.log[b, 0, batch.init_step, 5:7]
            speed[b, 0] = fwd
            eff_acc = (fwd - float(state.speed[b, 0])) / batch.dt
            action[b] = torch.tensor([eff_acc, max(-CURVATURE_MAX, min(CURVATURE_MAX, curv[b]))])
        self._frame = frame
        valid = torch.where(batch.step_valid[:, t + 1].view(-1, 1), batch.valid[:, :, t + 1], state.valid)
        self.last_state = _state(agents, speed, valid, t + 1, action)
        return self.last_state

    def _log_action(self, state: SimState, agents, b: int):
        """(accel, curvature) of the ego's logged move from ``state`` to ``agents`` (log replay)."""
        dt = self._batch.dt
        v1 = float(torch.hypot(agents[b, 0, 3], agents[b, 0, 4]))
        acc = (v1 - float(state.speed[b, 0])) / dt
        dist = float(torch.hypot(agents[b, 0, 0] - state.agents[b, 0, 0], agents[b, 0, 1] - state.agents[b, 0, 1]))
        dyaw = math.remainder(float(agents[b, 0, 2] - state.agents[b, 0, 2]), 2 * math.pi)
        k = dyaw / dist if dist > 0.06 else 0.0
        return torch.tensor([acc, max(-CURVATURE_MAX, min(CURVATURE_MAX, k))], dtype=agents.dtype)

    def close_scene(self) -> None:
        """End the current batch's session (destroy its actors, restore settings); keep the connection."""
        if self.session is not None:
            sess, self.session = self.session, None
            sess.close()
        _LIVE.discard(self)
        self._batch = None
        self._scenes = []

    def close(self) -> None:
        """End the session and drop the connection (idempotent)."""
        self.close_scene()
        self.client = None
        self.world = None
        self._map_key = None


def make_backend(host: str = "localhost", port: int = 2000, scenes=(), cfg: CarlaConfig | None = None) -> CarlaBackend:
    """Factory used by ``sim.evaluation.executors`` for ``--backend carla``.

    Args:
        host: CARLA server host name or address.
        port: its RPC port.
        scenes: the scenes the batches will hold (their lane geometry builds the map).
        cfg: backend settings.
    """
    return CarlaBackend(Endpoint(host, int(port)), scenes, cfg)
