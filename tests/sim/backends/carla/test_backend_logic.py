"""CarlaBackend's plumbing (frames, offsets, command batching, replay, cleanup) against a RECORDER WORLD.

Not a CARLA test: ``RecorderClient`` / ``RecorderWorld`` stand in for a server. They execute the
real ``carla.command`` objects the backend sends, build a real offline ``carla.Map`` from the
OpenDRIVE it generates, and move vehicles with a kinematic bicycle that follows CARLA's
conventions (left-handed frame, degrees, positive steer turns right, bounding box offset from
the actor origin). A sign or frame error in the backend makes the ego leave its lane here.
Behaviour of the real simulator is covered by ``test_server.py`` (needs CARLA_HOST).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

carla = pytest.importorskip("carla")

from scenarios.scenario import AgentType, Polylines, RoadMap, Scenario  # noqa: E402
from sim.backends.carla import CarlaError  # noqa: E402
from sim.backends.carla.backend import CarlaBackend, CarlaConfig, make_backend  # noqa: E402
from sim.backends.carla.session import Endpoint  # noqa: E402
from sim.batch import make_batch  # noqa: E402
from sim.expert import expert_waypoints  # noqa: E402
from sim.rollout import rollout  # noqa: E402
from tests.sim.backends.carla.test_opendrive import _integrate  # noqa: E402

BBOX = carla.BoundingBox(carla.Location(0.4, 0.1, 0.7), carla.Vector3D(2.4, 1.0, 0.8))  # offset from origin
MAX_STEER_DEG = 70.0
WB = 2.8


def _centre(tf):
    """World position of the bounding-box centre (a copy: ``Transform.transform`` works in place)."""
    off = BBOX.location
    return tf.transform(carla.Location(off.x, off.y, off.z))


class _Wheel:
    max_steer_angle = MAX_STEER_DEG


class _Physics:
    wheels = [_Wheel(), _Wheel(), _Wheel(), _Wheel()]


class RecorderActor:
    def __init__(self, world, actor_id, type_id, tf):
        self.world, self.id, self.type_id = world, actor_id, type_id
        self.bounding_box = BBOX
        self.tf = carla.Transform(carla.Location(tf.location.x, tf.location.y, tf.location.z), tf.rotation)
        self.vel = carla.Vector3D(0, 0, 0)
        self.physics = True
        self.control = carla.VehicleControl()
        self.callback = None
        self.parent = None

    def set_transform(self, tf):
        self.tf = tf

    def set_target_velocity(self, v):
        self.vel = v

    def get_physics_control(self):
        return _Physics()

    def set_simulate_physics(self, on):
        self.physics = bool(on)

    def listen(self, cb):
        self.callback = cb

    def stop(self):
        self.callback = None

    def get_transform(self):
        return self.tf

    def get_velocity(self):
        return self.vel


class _Library:
    def filter(self, name):
        return [_Blueprint(name)]

    def find(self, name):
        return _Blueprint(name)


class _Blueprint:
    def __init__(self, name):
        self.id = name

    def has_attribute(self, k):
        return k == "role_name"

    def set_attribute(self, k, v):
        self.role = v


class _Snapshot:
    def __init__(self, states):
        self.states = states

    def find(self, actor_id):
        return self.states.get(actor_id)


class _ActorSnap:
    def __init__(self, tf, vel):
        self.tf, self.vel = tf, vel

    def get_transform(self):
        return self.tf

    def get_velocity(self):
        return self.vel


class _Event:
    def __init__(self, frame, other):
        self.frame, self.other_actor = frame, other


class RecorderWorld:
    def __init__(self, xodr: str):
        self.map = carla.Map("recorder", xodr)
        self.settings = carla.WorldSettings(synchronous_mode=False, no_rendering_mode=False, fixed_delta_seconds=0.0)
        self.original = self.settings
        self.actors: dict[int, RecorderActor] = {}
        self.destroyed: list[int] = []
        self.frame = 0
        self.ticks = 0
        self.next_id = 100

    def get_settings(self):
        return self.settings

    def apply_settings(self, s):
        self.settings = s

    def get_map(self):
        return self.map

    def get_blueprint_library(self):
        return _Library()

    def try_spawn_actor(self, bp, tf, parent=None):
        self.next_id += 1
        a = RecorderActor(self, self.next_id, bp.id, tf)
        a.parent = parent
        self.actors[a.id] = a
        return a

    def tick(self, seconds=0.0):
        assert self.settings.synchronous_mode, "tick outside synchronous mode"
        dt = self.settings.fixed_delta_seconds
        for a in self.actors.values():
            if a.parent is not None or not a.physics or not a.type_id.startswith("vehicle"):
                continue
            yaw = -math.radians(a.tf.rotation.yaw)  # project frame from here on
            v = math.hypot(a.vel.x, a.vel.y)
            c = a.control
            acc = 4.0 * c.throttle - 8.0 * c.brake
            k = math.tan(-c.steer * math.radians(MAX_STEER_DEG)) / WB  # positive steer turns right
            x, y = a.tf.location.x, -a.tf.location.y
            x, y = x + v * math.cos(yaw) * dt, y + v * math.sin(yaw) * dt
            yaw += k * v * dt
            v = max(0.0, v + acc * dt)
            a.tf = carla.Transform(carla.Location(x, -y, a.tf.location.z), carla.Rotation(yaw=-math.degrees(yaw)))
            a.vel = carla.Vector3D(v * math.cos(yaw), -v * math.sin(yaw), 0.0)
        self.frame += 1
        self.ticks += 1
        for s in self.actors.values():  # collision sensor: ego box centre within 3 m of another actor's
            if s.callback is None or s.parent is None:
                continue
            e = _centre(s.parent.tf)
            for o in self.actors.values():
                if o is s.parent or o.parent is not None or o.tf.location.z < -50:
                    continue
                oc = _centre(o.tf)
                if math.hypot(e.x - oc.x, e.y - oc.y) < 3.0:
                    s.callback(_Event(self.frame, o))
        return self.frame

    def get_snapshot(self):
        return _Snapshot({i: _ActorSnap(a.tf, a.vel) for i, a in self.actors.items()})


class RecorderClient:
    def __init__(self):
        self.world = None
        self.generated: list[str] = []
        self.batches = 0

    def set_timeout(self, t):
        self.timeout = t

    def generate_opendrive_world(self, xodr, params):
        assert params.wall_height == 0.0
        self.generated.append(xodr)
        self.world = RecorderWorld(xodr)
        return self.world

    def load_world(self, town):
        raise AssertionError("no towns in these tests")

    def apply_batch_sync(self, cmds, due_tick_cue=False):
        self.batches += 1
        w = self.world
        for c in cmds:
            a = w.actors.get(c.actor_id)
            if isinstance(c, carla.command.DestroyActor):
                w.destroyed.append(c.actor_id)
                w.actors.pop(c.actor_id, None)
            elif isinstance(c, carla.command.ApplyTransform):
                a.tf = c.transform
                a.vel = carla.Vector3D(0, 0, 0)  # teleported actors report zero velocity
            elif isinstance(c, carla.command.ApplyVehicleControl):
                a.control = c.control
            elif isinstance(c, carla.command.SetSimulatePhysics):
                a.physics = c.enabled
        return [type("R", (), {"error": ""})() for _ in cmds]


def _arc(x0, y0, yaw0, k, n, step=1.0):
    return _integrate(x0, y0, yaw0, [k] * n, step)


def _scene(sid: str, k: float, shift=(0.0, 0.0), n_t: int = 60, speed: float = 8.0) -> Scenario:
    """Ego at constant speed along a lane of curvature k (1/m); a second car on a parallel lane for steps 20-45."""
    lane = _arc(0.0, 0.0, 0.3, k, 90) + shift
    dense = _arc(0.0, 0.0, 0.3, k, 900, step=0.1) + shift
    agents = np.zeros((2, n_t, 7), np.float32)
    valid = np.zeros((2, n_t), bool)
    for t in range(n_t):
        i = int(round(t * speed * 0.1 / 0.1))
        p, q = dense[i], dense[i + 1]
        yaw = math.atan2(q[1] - p[1], q[0] - p[0])
        agents[0, t] = (p[0], p[1], yaw, speed * math.cos(yaw), speed * math.sin(yaw), 4.8, 2.0)
        n = np.array([-math.sin(yaw), math.cos(yaw)]) * 4.0
        agents[1, t] = (p[0] + n[0], p[1] + n[1], yaw, speed * math.cos(yaw), speed * math.sin(yaw), 4.5, 1.9)
    valid[0] = True
    valid[1, 20:46] = True
    lanes = [lane, lane + (np.stack([-np.sin(0.3 + k * np.arange(91)), np.cos(0.3 + k * np.arange(91))], 1) * 4.0)]
    return Scenario(
        id=sid,
        source="test",
        agents=agents,
        valid=valid,
        agent_type=np.array([AgentType.VEHICLE, AgentType.VEHICLE], np.int8),
        ego=0,
        map=RoadMap(lanes=Polylines.from_list(lanes), lane_widths=np.array([3.5, 3.5])),
        route=lane,
        init_step=10,
    ).validate()


_PORTS = iter(range(1, 60000))


def _backend(scenes):
    be = CarlaBackend(Endpoint("recorder", next(_PORTS)), scenes, CarlaConfig())  # a fresh "server" each
    be.client = RecorderClient()  # bypass the network connection
    be.world = None
    return be


def test_log_replay_is_exact_and_agents_are_placed_at_their_logged_boxes():
    scenes = [_scene("a", 0.02), _scene("b", -0.03, shift=(5000.0, -3000.0))]  # far-away coordinates
    batch = make_batch(scenes, max_agents=4)
    be = _backend(scenes)
    placed = []
    orig_tick = RecorderWorld.tick

    def tick(self, seconds=0.0):  # check every replayed box after the commands, before the tick
        for sc in be._scenes:
            for a, actor in sc.others.items():
                c = _centre(actor.tf)
                x, y = c.x, -c.y
                placed.append((sc, a, x - sc.offset[0], y - sc.offset[1], actor.tf.location.z))
        return orig_tick(self, seconds)

    RecorderWorld.tick = tick
    try:
        ro = rollout(batch, None, backend=be)
        client = be.client
        world = client.world
        n_ctrl = batch.log.shape[2] - 1 - batch.init_step
        assert world.ticks == n_ctrl and world.settings.synchronous_mode
        assert world.settings.fixed_delta_seconds == pytest.approx(0.1)
        be.close()
    finally:
        RecorderWorld.tick = orig_tick
    t0 = batch.init_step
    v = ro.valid[:, :, t0:]
    assert torch.equal(ro.traj[:, :, t0:][v], batch.log[:, :, t0:][v])
    assert world.ticks == n_ctrl + 1  # one per step + one in cleanup
    assert client.batches == 1 + n_ctrl + 1  # spawn placement, one per step, cleanup
    # every placement of a valid agent matches its log; invalid ones are parked below the map
    on_map = [(x, y) for _, _, x, y, z in placed if z > -50]
    assert len(on_map) > 0 and any(z < -50 for *_, z in placed)
    logged = batch.log[:, 1, :, :2][batch.valid[:, 1]].double().numpy()
    for x, y in on_map:
        assert np.min(np.hypot(logged[:, 0] - x, logged[:, 1] - y)) < 1e-3
    # the two scenes sat in different cells, away from their source coordinates
    xs = [world.map.get_waypoint_xodr(r, -1, 0.0).transform.location.x for r in (1, 3)]
    assert abs(xs[0] - xs[1]) > 100 and max(abs(v) for v in xs) < 1000
    # cleanup: every actor destroyed once, settings restored
    assert not world.actors and len(world.destroyed) == len(set(world.destroyed)) == 2 * (1 + 1 + 1)
    assert world.settings is world.original


@pytest.mark.parametrize("k", [0.0, 0.03, -0.05])
def test_closed_loop_ego_stays_on_its_lane(k):
    """Expert waypoints through the project's controller, mapped to VehicleControl: the ego tracks its log."""
    scenes = [_scene("c", k)]
    batch = make_batch(scenes, max_agents=4)
    be = _backend(scenes)

    def policy(obs, t):
        st = be.last_state
        return expert_waypoints(batch, t, origin=st.agents[:, 0, :2], yaw=st.agents[:, 0, 2]), {}

    ro = rollout(batch, policy, backend=be)
    be.close()
    err = (ro.traj[0, 0, :, :2] - batch.log[0, 0, :, :2]).norm(dim=-1)
    assert float(err.max()) < 1.0, err
    ego_speed = ro.traj[0, 0, -1, 3:5].norm()
    assert abs(float(ego_speed) - 8.0) < 0.5
    assert ro.ego_action[0, batch.init_step : -1, 1].abs().max() <= 0.3


def test_collision_sensor_events_land_on_their_step():
    scene = _scene("d", 0.0)
    agents = scene.agents.copy()
    agents[1, :, :2] = agents[0, :, :2] + np.array([1.0, 0.0], np.float32)  # overlapping the ego 20..45
    bumped = Scenario(**{**scene.__dict__, "agents": agents})
    batch = make_batch([bumped], max_agents=4)
    be = _backend([bumped])
    rollout(batch, None, backend=be)
    be.close()
    hit = np.flatnonzero(be.sensor_collision[0])
    assert hit.min() == 20 and hit.max() == 45
    assert set(be.collision_actors[0]) == {"vehicle.lincoln.mkz_2020"}


def test_batch_errors_are_clear():
    scene = _scene("e", 0.0)
    be = make_backend("recorder", 1)
    with pytest.raises(CarlaError, match="make_backend\\(host=..., port=..., scenes=scenes\\) or call register_scenes"):
        be.reset(make_batch([scene], max_agents=2))
    town = Scenario(**{**scene.__dict__, "id": "t1", "tags": ("carla_town:Town03",)})
    town2 = Scenario(**{**scene.__dict__, "id": "t2", "tags": ("carla_town:Town03",)})
    be = _backend([town, town2])
    with pytest.raises(CarlaError, match="one per batch"):
        be.reset(make_batch([town, town2], max_agents=2))


def test_sessions_left_open_are_closed_at_exit():
    """``close_all`` (registered with atexit, and as a finaliser in pool workers) cleans up open sessions."""
    from sim.backends.carla.backend import close_all

    scene = _scene("f", 0.0)
    batch = make_batch([scene], max_agents=4)
    be = _backend([scene])
    state = be.reset(batch)
    be.step(state, None, None, batch.init_step)
    world = be.client.world
    assert world.settings.synchronous_mode and world.actors
    close_all()  # e.g. the process exits after an exception or Ctrl-C inside a rollout
    assert not world.actors and world.settings is world.original
    close_all()  # idempotent
    assert len(world.destroyed) == len(set(world.destroyed)) == 3


def _recorder_factory(stall_on: set[str]):
    """Backends on recorder "servers"; a server whose name is in ``stall_on`` stalls on its 3rd tick."""

    def make(ep, scenes, cfg, cancel=None):
        be = CarlaBackend(ep, scenes, cfg, cancel=cancel)
        be.client = RecorderClient()
        if ep.host in stall_on:
            gen = be.client.generate_opendrive_world

            def generate(xodr, params):
                world = gen(xodr, params)
                plain = world.tick

                def tick(seconds=0.0):
                    if world.ticks >= 2:
                        raise RuntimeError("time-out of 10000ms while waiting for the simulator")
                    return plain(seconds)

                world.tick = tick
                return world

            be.client.generate_opendrive_world = generate
        return be

    return make


def test_evaluate_carla_spreads_scenes_and_survives_a_stalled_server(capsys):
    from sim.evaluation.carla_pool import evaluate_carla

    scenes = [_scene(f"pool{i}", 0.01 * (i - 2), n_t=30) for i in range(5)]
    eps = [Endpoint("srvA", 1), Endpoint("srvB", 1), Endpoint("srvC", 1)]
    done = []
    runs = evaluate_carla(
        scenes, None, eps, max_agents=4, progress=done.append, backend_factory=_recorder_factory({"srvB"})
    )
    assert [r.scene_id for r in runs] == [s.id for s in scenes]  # input order
    assert len(done) == 5 and {r.endpoint for r in runs} <= {"srvA:1", "srvC:1"}  # srvB's scene went elsewhere
    for r, s in zip(runs, scenes):
        assert np.allclose(r.rollout.traj[0, 0, :, :2].numpy(), s.agents[0, :, :2], atol=1e-5)  # log replay
        assert r.sensor_collision.shape == (30,)
    out = capsys.readouterr().out
    assert "warning: CARLA server srvB:1 on scene" in out and "stalled: tick 3" in out


def test_evaluate_carla_fails_when_every_server_stalls():
    from sim.evaluation.carla_pool import evaluate_carla

    scenes = [_scene(f"dead{i}", 0.0, n_t=30) for i in range(2)]
    with pytest.raises(CarlaError, match=r"not run in CARLA .*stalled: tick 3"):
        evaluate_carla(scenes, None, [Endpoint("x", 1)], max_agents=4, backend_factory=_recorder_factory({"x"}))


def test_map_reused_on_the_same_server_only_while_it_is_still_loaded():
    scene = _scene("g", 0.02)
    batch = make_batch([scene], max_agents=4)
    first = _backend([scene])
    first.reset(batch)
    first_xodr = first.client.generated[0]
    first.close()
    assert first_xodr == _xodr_for(scene)
    client = RecorderClient()  # same endpoint, a new connection to the "server"
    client.world = RecorderWorld(first_xodr)
    second = CarlaBackend(first.endpoint, [scene], CarlaConfig())
    second.client, second.world = client, client.world
    second.reset(batch)
    second.close()
    assert client.generated == []  # the server still had this map: not generated again
    other = _scene("h", -0.04)
    client.world = RecorderWorld(_xodr_for(other))  # someone loaded another map meanwhile
    third = CarlaBackend(first.endpoint, [scene], CarlaConfig())
    third.client, third.world = client, client.world
    third.reset(batch)
    third.close()
    assert client.generated == [first_xodr]


def _xodr_for(scene):
    from sim.backends.carla.backend import scene_offsets
    from sim.backends.carla.opendrive import lanes_to_xodr, usable_lanes

    lanes, widths = usable_lanes(scene)
    off = scene_offsets([scene])[0]
    return lanes_to_xodr([p + off for p in lanes], widths, name="batch")
