"""Tests against a REAL CARLA 0.9.16 server. Marked ``carla``: they run only when CARLA_HOST is set
(tests/conftest.py skips them otherwise), e.g.::

    CARLA_HOST=127.0.0.1 CARLA_PORT=2000 .venv/bin/pytest tests/sim/backends/carla/test_server.py -q

Optional CARLA_PORT2: a second server for the multi-server test.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.carla

carla = pytest.importorskip("carla")

from scenarios.scenario import Scenario  # noqa: E402
from sim.backends.carla import CARLA_VERSION  # noqa: E402
from sim.backends.carla.backend import CarlaBackend, CarlaConfig  # noqa: E402
from sim.backends.carla.convert import box_centre  # noqa: E402
from sim.backends.carla.opendrive import scenario_to_xodr  # noqa: E402
from sim.backends.carla.session import CarlaSession, Endpoint, SessionConfig, connect  # noqa: E402
from sim.batch import make_batch  # noqa: E402
from sim.evaluation.carla_pool import evaluate_carla  # noqa: E402
from sim.expert import expert_waypoints  # noqa: E402
from sim.rollout import rollout  # noqa: E402
from tests.sim.backends.carla.test_backend_logic import _scene  # noqa: E402


@pytest.fixture(scope="module")
def endpoint() -> Endpoint:
    return Endpoint(os.environ.get("CARLA_HOST", "localhost"), int(os.environ.get("CARLA_PORT", "2000")))


@pytest.fixture(scope="module")
def server(endpoint):
    client, world = connect(endpoint, SessionConfig(rpc_timeout=20.0))
    return client, world


def _actor_ids(world) -> set[int]:
    return {a.id for a in world.get_actors()}


def test_server_version(server):
    client, _ = server
    assert client.get_server_version().startswith(CARLA_VERSION)


def test_session_sets_and_restores_settings(server):
    client, world = server
    before = world.get_settings()
    actors = _actor_ids(world)
    with CarlaSession(client, world, dt=0.1) as sess:
        s = world.get_settings()
        assert s.synchronous_mode and s.no_rendering_mode and s.fixed_delta_seconds == pytest.approx(0.1)
        bp = world.get_blueprint_library().filter("vehicle.*")[0]
        spawn = world.get_map().get_spawn_points()
        tf = spawn[0] if spawn else carla.Transform(carla.Location(0, 0, 0.5))
        assert sess.spawn(bp, tf) is not None
        f0 = sess.tick()
        assert sess.tick() == f0 + 1
    after = world.get_settings()
    assert after.synchronous_mode == before.synchronous_mode
    assert after.fixed_delta_seconds == before.fixed_delta_seconds
    assert _actor_ids(world) == actors


def test_generated_map_lane_centres_match(endpoint, server):
    client, _ = server
    scene = _scene("srv-map", 0.03)
    client.set_timeout(60.0)
    world = client.generate_opendrive_world(
        scenario_to_xodr(scene), carla.OpendriveGenerationParameters(wall_height=0.0, additional_width=0.6)
    )
    client.set_timeout(20.0)
    m = world.get_map()
    for lane in scene.map.lanes:
        for x, y in lane:
            wp = m.get_waypoint(carla.Location(x, -y, 0.0), True)
            assert math.hypot(wp.transform.location.x - x, -wp.transform.location.y - y) < 0.1


def test_log_replay_is_exact_and_replayed_agents_sit_on_their_log(endpoint, server):
    _, world = server
    scene = _scene("srv-replay", 0.02)
    batch = make_batch([scene], max_agents=4)
    be = CarlaBackend(endpoint, [scene], CarlaConfig())
    err = []
    orig = be._other_commands

    def check(sc, t):  # called before step t's placement: the server shows step t - 1's
        p = t - 1
        for a, actor in sc.others.items():
            if p >= batch.init_step and sc.valid[a, p]:
                x, y, _ = box_centre(actor.get_transform(), actor.bounding_box)
                err.append(math.hypot(x - sc.offset[0] - sc.log[a, p, 0], y - sc.offset[1] - sc.log[a, p, 1]))
        return orig(sc, t)

    be._other_commands = check
    try:
        ro = rollout(batch, None, backend=be)
    finally:
        be.close()
    v = ro.valid[:, :, batch.init_step :]
    assert torch.equal(ro.traj[:, :, batch.init_step :][v], batch.log[:, :, batch.init_step :][v])
    assert err and max(err) < 0.1


@pytest.mark.parametrize("k", [0.0, 0.02])
def test_closed_loop_expert_follows_its_lane(endpoint, server, k):
    """The project's controller through VehicleControl on a real vehicle: signs, frames and limits right."""
    scene = _scene(f"srv-cl-{k}", k)
    batch = make_batch([scene], max_agents=4)
    be = CarlaBackend(endpoint, [scene], CarlaConfig())

    def policy(obs, t):
        st = be.last_state
        return expert_waypoints(batch, t, origin=st.agents[:, 0, :2], yaw=st.agents[:, 0, 2]), {}

    try:
        ro = rollout(batch, policy, backend=be)
    finally:
        be.close()
    err = (ro.traj[0, 0, batch.init_step :, :2] - batch.log[0, 0, batch.init_step :, :2]).norm(dim=-1)
    assert float(err.mean()) < 1.5 and float(err.max()) < 3.0, err


def test_collision_sensor_reports_a_crash(endpoint, server):
    """A replayed car parked on the ego's lane ahead: driving the log into it fires the sensor."""
    scene = _scene("srv-crash", 0.0)
    agents = scene.agents.copy()
    agents[1, :, :] = agents[0, 40]  # parked where the ego will be at step 40
    agents[1, :, 3:5] = 0.0
    valid = scene.valid.copy()
    valid[1] = True
    crash = Scenario(**{**scene.__dict__, "agents": agents, "valid": valid})
    batch = make_batch([crash], max_agents=4)
    be = CarlaBackend(endpoint, [crash], CarlaConfig())

    def policy(obs, t):
        st = be.last_state
        return expert_waypoints(batch, t, origin=st.agents[:, 0, :2], yaw=st.agents[:, 0, 2]), {}

    try:
        rollout(batch, policy, backend=be)
    finally:
        be.close()
    assert be.sensor_collision[0].any()


def test_no_actor_left_after_a_failing_policy(endpoint, server):
    _, world = server
    scene = _scene("srv-fail", 0.0)
    batch = make_batch([scene], max_agents=4)
    be = CarlaBackend(endpoint, [scene], CarlaConfig())

    def policy(obs, t):
        if t >= batch.init_step + 3:
            raise RuntimeError("policy crashed")
        return torch.zeros(1, 8, 2), {}

    with pytest.raises(RuntimeError, match="policy crashed"):
        try:
            rollout(batch, policy, backend=be)
        finally:
            be.close()
    _, world = connect(endpoint)
    assert not any(a.attributes.get("role_name") in ("hero", "replay") for a in world.get_actors())
    assert not world.get_settings().synchronous_mode


@pytest.mark.skipif(not os.environ.get("CARLA_PORT2"), reason="set CARLA_PORT2 for a second server")
def test_two_servers_share_a_sweep(endpoint):
    eps = [endpoint, Endpoint(endpoint.host, int(os.environ["CARLA_PORT2"]))]
    scenes = [_scene(f"srv-pool-{i}", 0.01 * i) for i in range(4)]
    runs = evaluate_carla(scenes, None, eps)
    assert [r.scene_id for r in runs] == [s.id for s in scenes]
    assert {r.endpoint for r in runs} == {str(e) for e in eps}
    for r, s in zip(runs, scenes):
        assert np.allclose(r.rollout.traj[0, 0, :, :2].numpy(), s.agents[0, :, :2], atol=1e-5)
