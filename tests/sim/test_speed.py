"""The optimised simulator paths against reference formulations, device choice, compile fallback, GPU paths.

Real scenes (procedural families) and a real policy network; no mocks. GPU tests are skipped
where CUDA is absent.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import sim.geometry as geometry
from policy.device import CUDA_MIN_BATCH, DeviceError, pick_device
from policy.model import PolicyConfig, WaypointPolicy
from scenarios.procedural import FAMILY_NAMES, generate
from sim.batch import make_batch
from sim.compiled import PARTS, StepCompile
from sim.config import NUM_WAYPOINTS
from sim.geometry import TTC_NONE, boxes_overlap, project_to_dense_polyline, time_to_collision
from sim.metrics.registry import MetricContext, compute_metrics
from sim.metrics.ttc import TTC_MIN_SPEED
from sim.observation import OBS_DIM, OBS_VERSION
from sim.rollout import rollout

_BOX = [0, 1, 2, 5, 6]
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def scenes():
    return [generate(FAMILY_NAMES[i % len(FAMILY_NAMES)], 100 + i) for i in range(24)]


def _policy(device="cpu") -> WaypointPolicy:
    torch.manual_seed(0)
    cfg = PolicyConfig(obs_dim=OBS_DIM, num_waypoints=NUM_WAYPOINTS, hidden=64, obs_version=OBS_VERSION)
    return WaypointPolicy(cfg).to(device).eval()


def _fn(policy):
    return lambda obs, t: (policy.act(obs), {})


def test_compacted_overlap_ttc_and_chunked_route_equal_the_brute_force_formulation(scenes, monkeypatch):
    batch = make_batch(scenes, max_agents=32)
    ro = rollout(batch, _fn(_policy()))
    c = MetricContext(ro, batch)
    # box overlap of every (agent, step) pair, as before the compaction
    ok = ro.valid[:, 1:] & ro.valid[:, :1]
    brute = boxes_overlap(ro.traj[:, 0][..., _BOX][:, None], ro.traj[:, 1:][..., _BOX]) & ok
    assert torch.equal(c.agent_overlap, brute)
    assert brute.any()  # the scenes do collide, so the test can fail
    # TTC with one call over every controlled moving step and all of nuPlan's candidates: each agent's angle
    # from the ego's rear axle (arccos, as nuPlan's get_agent_relative_angle), tracks touched before dropped,
    # 0 at an at-fault collision
    n_b, n_a, n_t = ro.valid.shape
    rows = (c.controlled & (c.speed.abs() > TTC_MIN_SPEED)).reshape(-1)
    traj = ro.traj.transpose(1, 2).reshape(n_b * n_t, n_a, 7)
    yaw = traj[:, :1, 2]
    axle = traj[:, :1, :2] - torch.clamp(traj[:, :1, 5:6] / 2, max=1.461) * torch.stack(
        [torch.cos(yaw), torch.sin(yaw)], -1)
    rel = traj[:, 1:, :2] - axle
    cos = (rel[..., 0] * torch.cos(yaw) + rel[..., 1] * torch.sin(yaw)) / rel.norm(dim=-1)
    angle = torch.arccos(cos.clamp(-1, 1)).nan_to_num(math.pi / 2)
    touched = torch.zeros(n_b, n_a - 1, n_t, dtype=torch.bool)
    hit = c.agent_overlap & c.controlled[:, None]
    for t in range(n_t):
        touched[..., t] = hit[..., : t + 1].any(-1)
    exposed = c.lateral_exposed.reshape(-1, 1)
    cand = (angle < math.radians(30)) | (exposed & (angle <= math.radians(150)))  # nuPlan is_agent_ahead: 30 deg
    cand &= ~touched.transpose(1, 2).reshape(n_b * n_t, n_a - 1)
    valid = ro.valid.transpose(1, 2).reshape(n_b * n_t, n_a)[:, 1:] & cand
    ref = torch.full((n_b * n_t,), TTC_NONE)
    ref[rows] = time_to_collision(
        traj[rows, 0][:, _BOX], traj[rows, 0, 3:5], traj[rows, 1:][..., _BOX], traj[rows, 1:, 3:5], valid[rows]
    )
    ref = ref.reshape(n_b, n_t).masked_fill(c.at_fault_steps, 0.0)
    assert torch.equal(c.ttc, ref)
    assert (ref < TTC_NONE).any()
    # route projection in one piece (no chunking)
    chunked = c.route_s
    monkeypatch.setattr(geometry, "_DENSE_CHUNK", 1 << 62)
    whole = project_to_dense_polyline(batch.route, batch.route_valid, ro.traj[:, 0, :, :2])[0]
    monkeypatch.setattr(geometry, "_DENSE_CHUNK", 64)  # many chunks of one scene
    tiny = project_to_dense_polyline(batch.route, batch.route_valid, ro.traj[:, 0, :, :2])[0]
    assert torch.equal(chunked, whole) and torch.equal(tiny, whole)


def test_metric_route_projection_is_computed_once_and_equals_a_direct_call(scenes):
    batch = make_batch(scenes, max_agents=32)
    ro = rollout(batch, _fn(_policy()))
    c = MetricContext(ro, batch)
    s, lat = project_to_dense_polyline(batch.route, batch.route_valid, ro.traj[:, 0][..., [0, 1]])
    assert torch.equal(c.route_s, s) and torch.equal(c.route_lat, lat)
    assert c.route_s.data_ptr() == c.route_projection[0].data_ptr()


def test_failed_compile_falls_back_to_eager_with_a_warning(scenes):
    batch = make_batch(scenes[:6], max_agents=16)
    pol = _policy()
    eager = rollout(batch, _fn(pol))
    with pytest.warns(RuntimeWarning, match="torch.compile"):
        cfg = StepCompile(enabled=True, backend="no-such-backend", parts=("observation",))
        ro = rollout(batch, _fn(pol), compile=cfg)
    assert torch.equal(ro.traj, eager.traj)
    metrics = compute_metrics(eager, batch)
    with pytest.warns(RuntimeWarning, match="torch.compile"):
        fell_back = compute_metrics(eager, batch, StepCompile(enabled=True, backend="no-such-backend"))
    for k, v in metrics.items():
        torch.testing.assert_close(fell_back[k], v, rtol=0, atol=0, equal_nan=True, msg=k)


def test_compile_parts_default_to_every_part():
    on = StepCompile(enabled=True)
    assert all(on.compiles(part) for part in PARTS)
    assert set(PARTS) == {"observation", "controller", "metric_filters", "route_projection"}
    assert not any(StepCompile().compiles(part) for part in PARTS)
    only = StepCompile(enabled=True, parts=("observation",))
    assert only.compiles("observation") and not only.compiles("controller")
    with pytest.raises(ValueError, match="unknown compile part"):
        on.compiles("policy")


def test_compiled_parts_are_one_graph_each(scenes):
    # plain tensors in, no graph break: what inductor fuses on the CPU and CUDA graphs replay on a GPU
    import torch._dynamo

    from sim.backends.kinematic import KinematicBackend
    from sim.controller import pursuit_law
    from sim.observation import observation_features, scene_inputs

    batch = make_batch(scenes[:4], max_agents=16)
    state = KinematicBackend().reset(batch)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(observation_features)(
        state.kin, state.valid, state.last_action, scene_inputs(batch))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    wps = torch.rand(4, NUM_WAYPOINTS, 2).cumsum(1)
    explained = torch._dynamo.explain(pursuit_law)(wps, torch.rand(4) * 10, 4.0, (3.0, 0.6, 20.0), 0.5, 0.05)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    torch._dynamo.reset()


@pytest.mark.slow
def test_batches_of_other_sizes_reuse_one_symbolic_graph(scenes):
    # a sweep's shards differ in scene count, agents, route length and grid size: after the first shape each
    # compiled part compiles once more with symbolic sizes, not once per shape (dynamo's limit is 8 per function)
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = StepCompile(enabled=True, backend="eager", parts=("observation", "controller"))  # dynamo alone: fast
    fn = _fn(_policy())
    shapes, graphs = set(), []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for n, agents in ((2, 8), (3, 16), (5, 12), (4, 32), (1, 6)):
            batch = make_batch(scenes[n : 2 * n], max_agents=agents)
            shapes.add((tuple(batch.log.shape[:2]), tuple(batch.route.shape), tuple(batch.road.sdf.shape)))
            rollout(batch, fn, compile=cfg)
            graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    torch._dynamo.reset()
    assert len(shapes) == 5
    assert graphs[:4] == [2, 4, 4, 4]  # observation and controller: a static graph, then one symbolic graph each
    assert graphs[4] <= 6  # one scene: dynamo specialises sizes of 1, at most one more graph each


def _has_compiler() -> bool:
    import shutil

    return shutil.which("cc") is not None or shutil.which("gcc") is not None or shutil.which("g++") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _has_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_metric_filters_give_the_same_metrics(scenes):
    # the compiled candidate filters are conservative and the exact tests run eager: bit-identical metrics
    batch = make_batch(scenes, max_agents=32)
    ro = rollout(batch, _fn(_policy()))
    eager = compute_metrics(ro, batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback to eager
        compiled = compute_metrics(ro, batch, StepCompile(enabled=True, parts=("metric_filters",)))
    c = MetricContext(ro, batch)
    assert (c.agent_overlap.any() or c.ttc.lt(TTC_NONE).any())  # the filters had work to do
    for k, v in eager.items():
        torch.testing.assert_close(compiled[k], v, rtol=0, atol=0, equal_nan=True, msg=k)


def test_pick_device_says_what_it_picked():
    dev, why = pick_device("cpu", 10)
    assert dev.type == "cpu" and "requested" in why
    dev, why = pick_device("auto", 8)
    assert dev.type == "cpu" and why.startswith("auto:")
    if not torch.cuda.is_available():
        assert pick_device("auto", 10 * CUDA_MIN_BATCH)[0].type == "cpu"
        with pytest.raises(DeviceError, match="no cuda device"):
            pick_device("cuda", 10)
    with pytest.raises(DeviceError, match="not a device name"):
        pick_device("tpu-ish", 10)


@NO_CUDA
def test_auto_picks_cuda_for_large_batches():
    dev, why = pick_device("auto", CUDA_MIN_BATCH)
    assert dev.type == "cuda" and "CUDA" in why


@NO_CUDA
def test_cpu_and_gpu_agree_on_every_metric(scenes):
    cpu_b = make_batch(scenes, max_agents=32)
    gpu_b = make_batch(scenes, device="cuda", max_agents=32)
    m_cpu = compute_metrics(rollout(cpu_b, _fn(_policy())), cpu_b)
    m_gpu = compute_metrics(rollout(gpu_b, _fn(_policy("cuda"))), gpu_b)
    for k, v in m_cpu.items():
        torch.testing.assert_close(m_gpu[k].cpu(), v, rtol=0, atol=1e-4, equal_nan=True, msg=k)


@NO_CUDA
def test_cuda_graph_step_equals_eager_and_the_step_never_syncs(scenes):
    batch = make_batch(scenes, device="cuda", max_agents=32)
    fn = _fn(_policy("cuda"))
    eager = rollout(batch, fn)  # also warms the per-batch tables and per-device constants
    graphed = rollout(batch, fn, compile=StepCompile(enabled=True))  # reduce-overhead: CUDA graphs
    torch.testing.assert_close(graphed.traj, eager.traj, rtol=0, atol=1e-4)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        rollout(batch, fn)  # a host synchronisation inside the step raises here
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_evaluate_auto_device_says_what_it_picked(tmp_path, capsys):
    from sim.evaluate import main

    assert main(["--device", "auto", "--baseline", "log-replay", "--scenarios", "procedural-small",
                 "--max-scenarios", "2", "--out", str(tmp_path / "r.h5"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    expected = "auto: no CUDA device" if not torch.cuda.is_available() else "auto: batch 64 < 1024"
    assert f"device: {expected}" in out


def test_broad_phase_candidates_equal_one_pass_over_every_pair(scenes):
    # the broad phase (chunks of steps out of reach skipped; a shared log-replay record's bounds kept) gives the
    # one-pass filters' tables bit for bit, on a first rollout and on a later one that shares its batch's record
    from sim.metrics.pairs import pair_candidates

    batch = make_batch(scenes, max_agents=32)
    fn = _fn(_policy())
    for ro in [rollout(batch, fn) for _ in range(3)][::2]:
        c = MetricContext(ro, batch)
        rows = c.controlled & (c.speed.abs() > TTC_MIN_SPEED)
        one_pass = [t.reshape(-1).nonzero().squeeze(1) for t in pair_candidates(c.ego, ro.record, ro.valid, rows)]
        assert torch.equal(c.candidates[0], one_pass[0]) and torch.equal(c.candidates[1], one_pass[1])
        assert c.agent_overlap.any() and (c.ttc < TTC_NONE).any()  # the scenes touch and come close: it can fail
    assert ro.ego_row is not None  # the last one shared its batch's record


@pytest.mark.slow
@pytest.mark.skipif(not _has_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_step_stays_within_round_off_of_eager(scenes):
    # the compiled observation and controller fuse float32 arithmetic differently: round-off, nothing more
    batch = make_batch(scenes, max_agents=32)
    fn = _fn(_policy())
    eager = rollout(batch, fn, record_obs=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback to eager
        compiled = rollout(batch, fn, record_obs=True, compile=StepCompile(enabled=True))
    torch.testing.assert_close(compiled.obs, eager.obs, rtol=0, atol=1e-4)
    torch.testing.assert_close(compiled.traj, eager.traj, rtol=0, atol=1e-3, equal_nan=True)
    on = StepCompile(enabled=True)  # every part, the fused nearest route vertex included
    m_eager, m_compiled = compute_metrics(eager, batch), compute_metrics(compiled, batch, on)
    for k, v in m_eager.items():
        torch.testing.assert_close(m_compiled[k], v, rtol=0, atol=1e-4, equal_nan=True, msg=k)
    # the fused nearest vertex against cdist's on the same trajectory: the same projection to round-off
    c_eager, c_fused = MetricContext(eager, batch), MetricContext(eager, batch, on)
    torch.testing.assert_close(c_fused.route_s, c_eager.route_s, rtol=0, atol=1e-4)
    torch.testing.assert_close(c_fused.route_lat, c_eager.route_lat, rtol=0, atol=1e-4)


def test_lane_test_at_the_steps_asked_equals_the_whole_rollouts_and_metrics_do_not_change(scenes):
    """The lane occupancy runs only at the steps the at-fault and TTC rules ask for: exact there (against the
    occupancy of every step), and every metric equals the one of a context that decided every step first."""
    from sim.metrics.registry import REGISTRY

    batch = make_batch(scenes, max_agents=32)
    ro = rollout(batch, _fn(_policy()))
    full = MetricContext(ro, batch)
    several, inter = full.lanes_taken  # every step
    assert several.any() and not several.all()  # the scenes exercise both answers (procedural maps flag no
    # intersection lanes: those are checked on real maps by tests/sim/metrics/test_field_rules.py)
    lazy = MetricContext(ro, batch)
    gen = torch.Generator().manual_seed(0)
    asked = torch.zeros_like(several)
    for _ in range(3):  # overlapping requests: each step decided once, every asked step exact
        need = torch.rand(several.shape, generator=gen) < 0.3
        asked |= need
        s, i = lazy.lanes_taken_at(need)
        assert torch.equal(s, several & asked) and torch.equal(i, inter & asked)
    m_lazy = compute_metrics(ro, batch)
    pre = MetricContext(ro, batch)
    _ = pre.lateral_exposed, pre.beside_exposed  # every step decided before any metric asks
    m_full = {name: m.from_context(pre).float() for name, m in REGISTRY.items()}
    assert m_lazy["collision"].any() and (m_lazy["min_ttc"] < TTC_NONE).any()
    for name in REGISTRY:
        torch.testing.assert_close(m_lazy[name], m_full[name], rtol=0, atol=0, equal_nan=True, msg=name)
