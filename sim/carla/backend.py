"""The CARLA backend: one scene at a time on one CARLA server, behind the :class:`sim.backends.Backend` protocol.

Per scene (:meth:`CarlaBackend.reset`):

1. the map: a scene tagged ``carla_town:<Town>`` loads that CARLA town (the scene's coordinates
   are then CARLA's with y flipped); any other scene exports its lane centrelines to OpenDRIVE
   (:mod:`sim.carla.opendrive`) and loads them with ``client.generate_opendrive_world`` (no walls,
   so roads may overlap at crossings). An identical map is not reloaded.
2. a :class:`~sim.carla.session.CarlaSession`: synchronous mode, ``fixed_delta_seconds = dt``,
   rendering off; cleanup (actors destroyed, settings restored) in :meth:`close` / the next reset.
3. the ego (physics on) at its logged box pose at ``init_step`` (``spawn_z`` above the road) with
   its logged velocity, a ``sensor.other.collision`` attached; every other agent with physics off,
   parked below the map and moved each tick with ``ApplyTransform`` in the same
   ``apply_batch_sync`` as the ego's ``VehicleControl``.

Per step (:meth:`CarlaBackend.step`): the controller's (accel, curvature) become throttle, brake and
steer (:mod:`sim.carla.control`); the world ticks under a watchdog; the ego's state is read back
(box centre, yaw, velocity, converted to the project frame, logged length and width). Other agents
are reported at their logged states, logged velocities included (CARLA reports zero velocity for
teleported actors). Observations, the controller and metrics are the project's own
(:func:`sim.rollout.rollout`), so only the world differs from the kinematic backend.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from scenarios.scenario import AgentType
from sim.batch import ScenarioBatch
from sim.carla import CarlaError, require_carla
from sim.carla import convert as cv
from sim.carla.control import ControlConfig, ControlMapper
from sim.carla.opendrive import scenario_to_xodr
from sim.carla.session import CarlaSession, Endpoint, SessionConfig, connect
from sim.config import CURVATURE_MAX
from sim.state import SimState

TOWN_TAG = "carla_town:"


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
    vertex_distance: float = 2.0
    additional_width: float = 0.6


def scene_town(scene) -> str | None:
    """The CARLA town a scene was written for (tag ``carla_town:<Town>``), else None."""
    for tag in getattr(scene, "tags", ()):
        if tag.startswith(TOWN_TAG):
            return tag[len(TOWN_TAG) :]
    return None


class CarlaBackend:
    """:class:`sim.backends.Backend` on a CARLA server, for batches of ONE scene (B = 1).

    Args:
        endpoint: the server.
        scenes: the scenes that will be reset, by id (the batch carries no lane geometry).
        cfg: settings.
        cancel: optional ``threading.Event``; once set, :meth:`step` raises :class:`CarlaError`.

    Attributes after each step: ``sensor_collision`` (bool numpy ``[T]``, the collision sensor
    fired during the step ending at t) and ``collision_actors`` (CARLA type ids of what was hit).
    """

    name = "carla"
    agent_model = "log"

    def __init__(self, endpoint: Endpoint, scenes, cfg: CarlaConfig | None = None, cancel=None) -> None:
        self.endpoint = endpoint
        self.cancel = cancel  # a threading.Event: when set, the next step raises CarlaError (clean stop)
        self.cfg = cfg or CarlaConfig()
        self.scenes = {s.id: s for s in scenes}
        self.client = None
        self.world = None
        self.session: CarlaSession | None = None
        self._map_key: str | None = None
        self._batch: ScenarioBatch | None = None
        self.sensor_collision = np.zeros(0, dtype=bool)
        self.collision_actors: list[str] = []

    # -- connection and map ----------------------------------------------------------------
    def connect(self) -> None:
        """Connect once (fast failure when the server is missing; see :func:`sim.carla.session.connect`)."""
        if self.client is None:
            self.client, self.world = connect(self.endpoint, self.cfg.session)

    def _load_map(self, scene) -> None:
        carla = require_carla()
        town = scene_town(scene)
        if town is not None:
            key = "town:" + town
        else:
            xodr = scenario_to_xodr(scene)
            key = "xodr:" + hashlib.sha1(xodr.encode()).hexdigest()
        if key == self._map_key:
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
                )
                self.world = self.client.generate_opendrive_world(xodr, params)
        except RuntimeError as exc:
            what = f"town {town}" if town else "the generated OpenDRIVE map"
            raise CarlaError(f"{self.endpoint}: loading {what} for scene {scene.id!r} failed: {exc}") from None
        finally:
            self.client.set_timeout(self.cfg.session.rpc_timeout)
        self._map_key = key

    # -- Backend protocol ------------------------------------------------------------------
    def reset(self, batch: ScenarioBatch) -> SimState:
        """Load the scene's map, start a synchronous session, spawn the ego and the replayed agents.

        Returns:
            The state at ``batch.init_step``: the log there (B = 1).
        """
        if batch.num_scenes != 1:
            raise CarlaError(f"the CARLA backend runs one scene per world, got a batch of {batch.num_scenes}")
        sid = batch.ids[0]
        if sid not in self.scenes:
            raise CarlaError(f"scene {sid!r} was not given to CarlaBackend (it needs the scene's lanes)")
        self.close_scene()
        self.connect()
        self._load_map(self.scenes[sid])
        self._batch = batch
        n_t = batch.log.shape[2]
        self.sensor_collision = np.zeros(n_t, dtype=bool)
        self.collision_actors = []
        self._events: list[tuple[int, str]] = []
        self.session = CarlaSession(self.client, self.world, batch.dt, self.cfg.session, name=str(self.endpoint))
        self.session.__enter__()
        try:
            self._spawn_all(batch)
        except BaseException:
            self.close_scene()
            raise
        t0 = batch.init_step
        agents = batch.log[:, :, t0].clone()
        self._frame = None
        return SimState(
            agents=agents,
            speed=torch.hypot(agents[..., 3], agents[..., 4]),
            valid=batch.valid[:, :, t0].clone(),
            t=t0,
            last_action=torch.zeros(1, 2, dtype=agents.dtype),
        )

    def _ground_z(self, x: float, y: float) -> float:
        wp = self._map.get_waypoint(cv.to_location(x, y, 0.0), True)
        if wp is None:
            return 0.0
        loc = wp.transform.location
        return float(loc.z) if math.hypot(loc.x - x, -loc.y - y) < 5.0 else 0.0

    def _blueprint(self, name: str):
        lib = self._library
        found = lib.filter(name)
        if len(found) == 0:
            found = lib.filter("vehicle.*" if not name.startswith("walker") else "walker.pedestrian.*")
        if len(found) == 0:
            raise CarlaError(f"{self.endpoint}: no blueprint {name!r} on this server")
        bp = found[0]
        if bp.has_attribute("role_name"):
            bp.set_attribute("role_name", "hero" if name == self.cfg.ego_blueprint else "replay")
        return bp

    def _origin(self, actor, x: float, y: float, yaw: float, z: float):
        """Transform placing ``actor``'s bounding-box centre at the project pose (x, y, yaw)."""
        off = actor.bounding_box.location  # CARLA local frame: x forward, y right
        fx, fy = off.x, -off.y
        c, s = math.cos(yaw), math.sin(yaw)
        return cv.to_transform(x - (c * fx - s * fy), y - (s * fx + c * fy), yaw, z)

    def _spawn_all(self, batch: ScenarioBatch) -> None:
        carla = require_carla()
        sess = self.session
        self._map = self.world.get_map()
        self._library = self.world.get_blueprint_library()
        t0 = batch.init_step
        log = batch.log[0].detach().cpu().double().numpy()  # [A, T, 7]
        valid = batch.valid[0].detach().cpu().numpy()
        self._log, self._valid = log, valid
        ex, ey, eyaw, evx, evy = log[0, t0, :5]
        self._ego_z = self._ground_z(ex, ey) + self.cfg.spawn_z
        ego = sess.spawn(self._blueprint(self.cfg.ego_blueprint), cv.to_transform(ex, ey, eyaw, self._ego_z))
        if ego is None:
            raise CarlaError(
                f"{self.endpoint}: CARLA refused to spawn the ego of {batch.ids[0]!r} at ({ex:.1f}, {ey:.1f})"
            )
        self.ego = ego
        ego.set_transform(self._origin(ego, ex, ey, eyaw, self._ego_z))
        ego.set_target_velocity(cv.to_vector(evx, evy))
        wheels = ego.get_physics_control().wheels
        max_deg = max((w.max_steer_angle for w in wheels), default=0.0)
        ccfg = self.cfg.control if max_deg <= 0 else replace(self.cfg.control, max_steer_angle=math.radians(max_deg))
        self.mapper = ControlMapper(ccfg, batch.dt)
        self.mapper.reset(float(np.hypot(evx, evy)))
        sensor = sess.spawn(self._library.find("sensor.other.collision"), carla.Transform(), attach_to=ego, sensor=True)
        if sensor is None:
            raise CarlaError(f"{self.endpoint}: could not attach a collision sensor to the ego")
        events = self._events
        sensor.listen(lambda ev: events.append((int(ev.frame), str(ev.other_actor.type_id))))
        # replayed agents: spawned parked below the map, physics off, then moved every tick
        self.others: dict[int, object] = {}
        kinds = batch.agent_type[0].tolist()
        for a in range(1, log.shape[0]):
            if not valid[a, t0:].any():
                continue
            kind = kinds[a]
            name = {
                int(AgentType.PEDESTRIAN): self.cfg.pedestrian_blueprint,
                int(AgentType.CYCLIST): self.cfg.cyclist_blueprint,
            }.get(kind, self.cfg.vehicle_blueprint)
            park = cv.to_transform(ex + 10.0 * a, ey, 0.0, self.cfg.park_z)
            actor = sess.spawn(self._blueprint(name), park, physics=False)
            if actor is None:
                raise CarlaError(f"{self.endpoint}: CARLA refused to spawn agent {a} of {batch.ids[0]!r}")
            self.others[a] = actor
        self._park = {a: cv.to_transform(ex + 10.0 * a, ey, 0.0, self.cfg.park_z) for a in self.others}
        self._other_z = {a: self._ground_z(*log[a, valid[a]][0, :2]) + 0.05 for a in self.others}
        sess.apply(self._other_commands(t0))

    def _other_commands(self, t: int) -> list:
        carla = require_carla()
        cmds = []
        for a, actor in self.others.items():
            if self._valid[a, t]:
                x, y, yaw = self._log[a, t, :3]
                tf = self._origin(actor, x, y, yaw, self._other_z[a])
            else:
                tf = self._park[a]
            cmds.append(carla.command.ApplyTransform(actor.id, tf))
        return cmds

    def step(self, state: SimState, accel, curvature, t: int) -> SimState:
        """Advance the world from step ``t`` to ``t + 1`` (see the module docstring)."""
        carla = require_carla()
        if self.session is None or self._batch is None:
            raise CarlaError("CarlaBackend.step called before reset")
        if self.cancel is not None and self.cancel.is_set():
            raise CarlaError(f"{self.endpoint}: cancelled")
        batch = self._batch
        cmds = self._other_commands(t + 1)
        replay = accel is None or curvature is None
        if replay:
            x, y, yaw = self._log[0, t + 1, :3]
            cmds.append(carla.command.SetSimulatePhysics(self.ego.id, False))
            cmds.append(carla.command.ApplyTransform(self.ego.id, self._origin(self.ego, x, y, yaw, self._ego_z)))
            a_cmd, k_cmd = 0.0, 0.0
        else:
            a_cmd, k_cmd = float(accel[0]), float(curvature[0])
            command = self.mapper(a_cmd, k_cmd, float(state.speed[0, 0]))
            cmds.append(carla.command.ApplyVehicleControl(self.ego.id, command.to_vehicle_control()))
        self.session.apply(cmds)
        frame = self.session.tick()
        hits = [name for f, name in list(self._events) if self._frame is None or f > self._frame]
        self._frame = frame
        if hits:
            self.sensor_collision[t + 1] = True
            self.collision_actors.extend(hits)

        agents = batch.log[:, :, t + 1].clone()
        if replay:
            speed0 = float(torch.hypot(agents[0, 0, 3], agents[0, 0, 4]))
            action = self._log_action(state, agents, speed0)
        else:
            snap = self.world.get_snapshot().find(self.ego.id)
            tf = snap.get_transform() if snap is not None else self.ego.get_transform()
            vel = snap.get_velocity() if snap is not None else self.ego.get_velocity()
            x, y, yaw = cv.box_centre(tf, self.ego.bounding_box)
            vx, vy = cv.from_vector(vel)
            speed0 = max(0.0, vx * math.cos(yaw) + vy * math.sin(yaw))
            agents[0, 0, :5] = torch.tensor([x, y, yaw, vx, vy], dtype=agents.dtype)
            agents[0, 0, 5:7] = batch.log[0, 0, batch.init_step, 5:7]
            eff_acc = (speed0 - float(state.speed[0, 0])) / batch.dt
            action = torch.tensor([[eff_acc, max(-CURVATURE_MAX, min(CURVATURE_MAX, k_cmd))]], dtype=agents.dtype)
        speed = torch.hypot(agents[..., 3], agents[..., 4])
        speed[0, 0] = speed0
        return SimState(
            agents=agents,
            speed=speed,
            valid=batch.valid[:, :, t + 1].clone(),
            t=t + 1,
            last_action=action,
        )

    def _log_action(self, state: SimState, agents, speed1: float):
        dt = self._batch.dt
        acc = (speed1 - float(state.speed[0, 0])) / dt
        dist = float(torch.hypot(agents[0, 0, 0] - state.agents[0, 0, 0], agents[0, 0, 1] - state.agents[0, 0, 1]))
        dyaw = math.remainder(float(agents[0, 0, 2] - state.agents[0, 0, 2]), 2 * math.pi)
        k = dyaw / dist if dist > 0.06 else 0.0
        return torch.tensor([[acc, max(-CURVATURE_MAX, min(CURVATURE_MAX, k))]], dtype=agents.dtype)

    def close_scene(self) -> None:
        """End the current scene's session (destroy its actors, restore settings); keep the connection."""
        if self.session is not None:
            sess, self.session = self.session, None
            sess.close()
        self._batch = None

    def close(self) -> None:
        """End the session and drop the connection (idempotent)."""
        self.close_scene()
        self.client = None
        self.world = None
        self._map_key = None
