"""make_batch packing, rollout() (log replay, closed loop, early-ending scenes), IDM agents, backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.sim_throughput import scene_from_tracks, track
from sim.backends.kinematic import Backend, KinematicBackend
from sim.baselines import constant_velocity_policy
from sim.batch import agents_dropped, make_batch, select_agents
from sim.config import NUM_WAYPOINTS, SimError
from sim.dynamics import inverse_bicycle
from sim.observation import OBS_DIM
from sim.rollout import rollout

DT = 0.1


def straight(x0: float, y0: float, v: float, n_t: int = 41, yaw: float = 0.0) -> np.ndarray:
    t = np.arange(n_t) * DT
    return track(x0 + v * t * np.cos(yaw), y0 + v * t * np.sin(yaw), yaw, v)


def test_make_batch_keeps_every_agent_within_reach_over_the_horizon():
    far, near, ego, mid = straight(80, 0, 5), straight(5, 3, 5), straight(0, 0, 5), straight(20, -3, 5)
    valid = np.ones((4, 41), bool)
    valid[1, :30] = False  # "near" appears late: still simulated
    s = scene_from_tracks([far, near, ego, mid], valid=valid, ego=2)
    b = make_batch([s], max_agents=6)
    assert b.log.shape == (1, 4, 41, 7)  # padded to what the scene keeps
    assert torch.equal(b.log[0, 0], torch.from_numpy(ego))  # ego at agent 0
    assert torch.equal(b.log[0, 1, 30:], torch.from_numpy(near[30:]))  # closest approach first
    assert torch.equal(b.log[0, 2], torch.from_numpy(mid))
    assert torch.equal(b.log[0, 3], torch.from_numpy(far))  # never within reach: fills what is left
    assert b.agents_dropped.tolist() == [0]
    assert make_batch([s], max_agents=3).agents_dropped.tolist() == [0]  # "far" cannot touch the ego
    small = make_batch([s], max_agents=2)  # max_agents never drops an agent within reach: only "far" goes
    assert small.log.shape[1] == 3 and small.agents_dropped.tolist() == [0]
    assert torch.equal(small.log[0, 1, 30:], torch.from_numpy(near[30:]))
    assert torch.equal(small.log[0, 2], torch.from_numpy(mid))
    two = make_batch([s, scene_from_tracks([ego], scene_id="alone")], max_agents=6)
    assert two.valid[1, 1:].sum() == 0 and two.agent_type[1, 1:].tolist() == [3, 3, 3]  # padding: invalid, OTHER


def test_make_batch_pads_steps_and_resamples_routes():
    a = scene_from_tracks([straight(0, 0, 10, n_t=41)], scene_id="a")
    b_ = scene_from_tracks([straight(0, 0, 5, n_t=31)], scene_id="b")
    b = make_batch([a, b_])
    assert b.step_valid.sum(1).tolist() == [41, 31]
    assert not b.valid[1, :, 31:].any()
    assert b.ids == ("a", "b") and b.init_step == 10 and b.dt == pytest.approx(DT)
    for i, length in enumerate((40.0, 15.0)):
        r = b.route[i][b.route_valid[i]]
        gaps = (r[1:] - r[:-1]).norm(dim=-1)
        assert gaps[:-1].tolist() == pytest.approx([1.0] * (len(gaps) - 1), abs=1e-4)
        assert gaps.sum().item() == pytest.approx(length, abs=1e-3)


def test_make_batch_rejects_mixed_timing():
    a = scene_from_tracks([straight(0, 0, 10)])
    with pytest.raises(SimError, match="init_step"):
        make_batch([a, scene_from_tracks([straight(0, 0, 10)], init_step=5)])
    with pytest.raises(SimError, match="dt"):
        make_batch([a, scene_from_tracks([straight(0, 0, 10)], dt=0.2)])
    with pytest.raises(SimError, match="no scenes"):
        make_batch([])


def _scenes():
    ego = straight(0, 0, 8)
    lead = straight(30, 0, 4)
    side = straight(10, 3.5, 9)
    valid = np.ones((3, 41), bool)
    valid[2, 25:] = False
    road = [np.array([[-50.0, -5], [200, -5], [200, 8], [-50, 8]])]
    short = scene_from_tracks([straight(0, 0, 6, n_t=31), straight(15, 3.5, 6, n_t=31)], drivable=road,
                              scene_id="short")
    return [scene_from_tracks([ego, lead, side], valid=valid, drivable=road, scene_id="long"), short]


def test_log_replay_reproduces_the_log_exactly():
    b = make_batch(_scenes(), max_agents=4)
    ro = rollout(b, None)
    assert torch.equal(ro.valid, b.valid)
    assert torch.equal(ro.traj[b.valid], b.log[b.valid])
    acc, cur, _ = inverse_bicycle(b.log[:, 0], b.dt)
    t0 = b.init_step
    assert torch.allclose(ro.ego_action[0, t0:-1], torch.stack([acc, cur], -1)[0, t0:])
    assert torch.all(ro.ego_action[:, :t0] == 0) and torch.all(ro.ego_action[1, 30:] == 0)
    assert ro.obs is None and ro.agent_model == "log" and ro.init_step == t0


def test_closed_loop_rollout_records_everything():
    b = make_batch(_scenes(), max_agents=4)
    calls = []

    def policy(obs, t):
        calls.append(t)
        assert obs.shape == (2, OBS_DIM) and obs.dtype == torch.float32
        speed = obs[:, 0] * 10.0
        x = speed[:, None] * torch.arange(1, NUM_WAYPOINTS + 1) * 0.5
        wps = torch.stack([x, torch.full_like(x, 0.5)], -1)  # drift left
        return wps, {"logp": -speed, "pair": torch.stack([speed, speed], -1)}

    ro = rollout(b, policy, record_obs=True)
    t0, n_t = b.init_step, b.num_steps
    s = n_t - 1 - t0
    assert calls == list(range(t0, n_t - 1))
    assert ro.traj.shape == (2, 3, n_t, 7) and ro.obs.shape == (2, s, OBS_DIM)
    assert ro.aux["logp"].shape == (2, s) and ro.aux["pair"].shape == (2, s, 2)
    assert torch.equal(ro.traj[:, :, : t0 + 1], b.log[:, :, : t0 + 1])  # history is the log
    assert torch.equal(ro.traj[:, 1:][ro.valid[:, 1:]], b.log[:, 1:][b.valid[:, 1:]])  # others replay
    assert (ro.traj[0, 0, -1, 1] > 0.3).item()  # the ego followed the policy, not the log
    ego = ro.traj[:, 0]
    speed = torch.hypot(ego[..., 3], ego[..., 4])[0, t0:]
    assert speed.min() >= 8.0 - 1e-4 and speed.max() < 8.0 * 1.1  # |first waypoint| / 0.5 s = 8.03 m/s
    # the short scene ends at step 30: frozen and invalid afterwards, no action
    assert not ro.valid[1, :, 31:].any()
    assert torch.equal(ro.traj[1, :, 31:], ro.traj[1, :, 30:31].expand(-1, n_t - 31, -1))
    assert torch.all(ro.ego_action[1, 30:] == 0) and ro.ego_action[1, t0:30, 1].abs().max() > 0
    again = rollout(b, policy, record_obs=True)
    assert torch.equal(again.traj, ro.traj) and torch.equal(again.obs, ro.obs)  # deterministic


def test_constant_velocity_baseline_keeps_straight_at_speed():
    b = make_batch(_scenes()[:1])
    ro = rollout(b, constant_velocity_policy(b.dt))
    err = (ro.traj[0, 0, b.init_step :, :2] - b.log[0, 0, b.init_step :, :2]).norm(dim=-1)
    assert err.max().item() < 1e-3


def test_bad_policy_output_is_a_clear_error():
    b = make_batch(_scenes()[:1])
    with pytest.raises(SimError, match=r"waypoints \[1, 8, 2\]"):
        rollout(b, lambda obs, t: (torch.zeros(1, 3, 2), {}))
    with pytest.raises(SimError, match="aux 'v'"):
        rollout(b, lambda obs, t: (torch.zeros(1, NUM_WAYPOINTS, 2), {"v": torch.zeros(2)}))


def test_idm_follower_stops_behind_a_stopped_car_and_free_car_keeps_its_pace():
    n_t = 101
    ego = straight(-100, 20, 0, n_t=n_t)  # parked far away
    stopped = straight(60, 0, 0, n_t=n_t)
    t = np.arange(n_t) * DT
    follower = straight(0, 0, 12, n_t=n_t)  # its log drives through the stopped car
    free = track(-40 + 10 * t, 7, 0.0, np.full(n_t, 10.0))
    s = scene_from_tracks([ego, stopped, follower, free], init_step=0)
    b = make_batch([s])
    row = {round(b.log[0, i, 0, 0].item()): i for i in range(1, 4)}  # make_batch orders by distance
    i_stopped, i_follower, i_free = row[60], row[0], row[-40]
    ro = rollout(b, None, agents="idm")
    assert ro.agent_model == "idm"
    x = ro.traj[0, i_follower, :, 0]
    gap = 60 - x - 4.5  # bumper to bumper
    assert gap.min().item() > 1.0  # never hits it (the log would)
    assert gap[-1].item() < 6.0  # but closes up near the IDM minimum gap s0 = 2 m
    speed = torch.hypot(ro.traj[0, i_follower, :, 3], ro.traj[0, i_follower, :, 4])
    assert speed[-1].item() < 0.3 and torch.all(speed >= 0)
    assert torch.all(torch.diff(x) >= -1e-5)  # never reverses
    assert torch.equal(ro.traj[0, i_stopped], b.log[0, i_stopped])  # parked agents stay on their log
    free_speed = torch.hypot(ro.traj[0, i_free, :, 3], ro.traj[0, i_free, :, 4])
    assert torch.allclose(free_speed, torch.full_like(free_speed, 10.0), atol=0.05)  # v0 = its logged speed
    assert torch.allclose(ro.traj[0, i_free, :, 1], torch.full((n_t,), 7.0), atol=1e-4)  # stays on its path


def test_idm_agents_follow_curved_paths():
    n_t = 61
    t = np.arange(n_t) * DT
    r, v = 20.0, 8.0
    th = v * t / r
    curved = track(r * np.sin(th), r * (1 - np.cos(th)) + 10, th, v)
    s = scene_from_tracks([straight(-200, -50, 0, n_t=n_t), curved], init_step=0)
    ro = rollout(make_batch([s]), None, agents="idm")
    xy = ro.traj[0, 1, :, :2] - torch.tensor([0.0, 30.0])
    assert torch.allclose(xy.norm(dim=-1), torch.full((n_t,), r), atol=0.05)  # on the logged circle


def test_kinematic_backend_is_a_backend_and_unknown_agents_fail():
    assert isinstance(KinematicBackend(), Backend)
    b = make_batch(_scenes()[:1])
    with pytest.raises(SimError, match="unknown agent model 'bogus'"):
        rollout(b, None, agents="bogus")


class CountingBackend(KinematicBackend):
    """A user backend (as a CARLA one would be) that records what rollout() asks of it."""

    def __init__(self):
        super().__init__(agents="log")
        self.calls = []
        self.closed = False

    def step(self, state, accel, curvature, t):
        self.calls.append((t, accel is None))
        return super().step(state, accel, curvature, t)

    def close(self):
        self.closed = True
        super().close()


def test_rollout_drives_any_backend_and_leaves_closing_to_its_owner():
    b = make_batch(_scenes()[:1])
    be = CountingBackend()
    ro = rollout(b, None, backend=be)
    assert be.calls == [(t, True) for t in range(b.init_step, b.num_steps - 1)]  # None = ego replays its log
    assert not be.closed and torch.equal(ro.traj[b.valid], b.log[b.valid])
    be.calls.clear()
    rollout(b, constant_velocity_policy(b.dt), backend=be)
    assert {c[1] for c in be.calls} == {False}


@pytest.mark.data
def test_real_logs_replay_exactly_and_expert_waypoints_track_them(shared_data):
    from scenarios.formats import load_any

    scenes = load_any(shared_data / "scenarionet") + load_any(shared_data / "waymo_json")
    b = make_batch(scenes)
    assert b.step_valid.sum(1).tolist() == [s.num_steps for s in scenes]
    ro = rollout(b, None)
    assert torch.equal(ro.traj[b.valid], b.log[b.valid])
    from sim.controller import WaypointController
    from sim.expert import expert_waypoints

    be = KinematicBackend()
    state = be.reset(b)
    ctrl = WaypointController(b.dt)
    errs = []
    for t in range(b.init_step, b.num_steps - 1):
        wps = expert_waypoints(b, t, origin=state.xy[:, 0], yaw=state.yaw[:, 0])
        state = be.step(state, *ctrl(wps, state.speed[:, 0]), t)
        d = (state.xy[:, 0] - b.log[:, 0, t + 1, :2]).norm(dim=-1)
        errs.append(torch.where(b.step_valid[:, t + 1], d, torch.nan))
    err = torch.stack(errs, 1)
    assert err.nanmean(1).max().item() < 0.3  # about 0.1 m on these logs
    assert err.nan_to_num(0).max().item() < 1.0


@pytest.mark.parametrize("agents", ["log", "idm"])
def test_later_rollouts_of_a_batch_record_the_same_as_a_first_one(agents):
    # with log-replay agents the third rollout of a batch starts from the second one's record and writes the
    # ego's row alone: it must equal a first rollout on a fresh batch bit for bit (scenes that end early too)
    def scenes():
        long = scene_from_tracks([straight(0, 0, 8), straight(20, 0, 6), straight(10, 3.5, 9)], scene_id="long")
        short = scene_from_tracks([straight(0, 0, 5, n_t=31), straight(12, 0, 4, n_t=31)], scene_id="short")
        return [long, short]

    def brake(obs, t):  # another policy than the first rollout's
        return constant_velocity_policy(DT)(obs, t)[0] * 0.5, {}

    warm = make_batch(scenes())
    from sim.rollout import _TEMPLATES

    for _ in range(2):  # full records; the second one is kept (log replay)
        rollout(warm, constant_velocity_policy(DT), agents=agents)
    assert (warm in _TEMPLATES) == (agents == "log")
    again = rollout(warm, brake, agents=agents)
    assert (again.ego_row is not None) == (agents == "log")  # the record is shared, the ego's row its own
    later = rollout(warm, constant_velocity_policy(DT), agents=agents)  # must not touch `again`
    fresh_batch = make_batch(scenes())
    fresh = rollout(fresh_batch, brake, agents=agents)
    assert not warm.step_valid.all()  # one scene ends early
    assert torch.equal(again.traj.nan_to_num(), fresh.traj.nan_to_num())
    assert torch.equal(again.ego, fresh.ego) and not torch.equal(later.ego, fresh.ego)
    assert torch.equal(again.valid, fresh.valid) and torch.equal(again.ego_action, fresh.ego_action)
    from sim.metrics.registry import compute_metrics

    got, want = compute_metrics(again, warm), compute_metrics(fresh, fresh_batch)
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, equal_nan=True, msg=name)
    assert not torch.equal(again.traj[:, 0], rollout(warm, None, agents=agents).traj[:, 0])  # the ego did drive


def test_no_cap_drops_an_agent_within_reach():
    """docs/metrics.md: every agent within reach counts. 150 cars within reach (more than DEFAULT_MAX_AGENTS) are all
    simulated; the ones far from the ego's path only fill what DEFAULT_MAX_AGENTS leaves."""
    from sim.config import AGENT_REACH, DEFAULT_MAX_AGENTS

    rng = np.random.default_rng(0)
    near = [straight(float(x), float(y), 5) for x, y in zip(rng.uniform(-40, 60, 150), rng.uniform(-30, 30, 150))]
    far = [straight(500.0 + 10 * i, 300.0, 5) for i in range(DEFAULT_MAX_AGENTS)]
    s = scene_from_tracks([straight(0, 0, 5), *near, *far], ego=0)
    b = make_batch([s])
    ego_path = b.log[0, 0, :, :2]
    d = torch.cdist(b.log[0, 1:, :, :2].reshape(-1, 2), ego_path).reshape(b.num_agents - 1, -1, ego_path.shape[0])
    reach = (d.amin(-1).amin(-1) <= AGENT_REACH).sum()
    assert b.num_agents == 151 and int(reach) == 150 and b.agents_dropped.tolist() == [0]
    for cap in (1, 2, 40, 151, 182, 200):  # the results file's count, without the reach test where it cannot matter
        assert agents_dropped(s, cap) == select_agents(s, cap)[1] == 0
