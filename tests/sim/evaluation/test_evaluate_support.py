"""Real scenes and a real (small) training-run layout for the evaluation-harness tests.

Scenes: a straight two-lane road along +x with a drivable rectangle, the ego at ~8-12 m/s
in the right lane and a few other vehicles. Runs: real ``WaypointPolicy`` checkpoints saved
with ``policy.checkpoint.save_checkpoint`` in the run layout of docs/run_files.md, each driving a plan
straight ahead at its own speed (so checkpoints differ in closed loop), with its own log-std
(so entropies differ).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from policy.checkpoint import read_checkpoint, save_checkpoint
from policy.entropy import gaussian_entropy, gaussian_entropy_per_dim
from policy.model import PolicyConfig, WaypointPolicy
from scenarios.io import save_scenarios
from scenarios.scenario import AgentType, Polylines, RoadMap, Scenario
from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS
from sim.observation import OBS_DIM, OBS_VERSION

LANE_W = 3.6


def straight_scene(i: int, num_steps: int = 40, num_agents: int = 3, init_step: int = 10, dt: float = 0.1) -> Scenario:
    """Scene ``i``: deterministic in ``i``; the ego drives straight in lane 0 at a constant speed."""
    rng = np.random.default_rng(1000 + i)
    t = np.arange(num_steps) * dt
    agents = np.zeros((num_agents, num_steps, 7), np.float32)
    v0 = 8.0 + 4.0 * rng.random()
    agents[0, :, 0] = v0 * t
    agents[0, :, 3] = v0
    agents[0, :, 5:] = (4.5, 1.9)
    for a in range(1, num_agents):
        lane = a % 2
        v = 6.0 + 6.0 * rng.random()
        x0 = 15.0 * a + 10.0 * rng.random()
        agents[a, :, 0] = x0 + v * t
        agents[a, :, 1] = lane * LANE_W
        agents[a, :, 3] = v
        agents[a, :, 5:] = (4.5, 1.9)
    length = float(max(agents[..., 0].max(), 1.0)) + 60.0
    y_lo, y_hi = -LANE_W / 2, LANE_W * 1.5
    drivable = Polylines.from_list([np.array([[-30.0, y_lo], [length, y_lo], [length, y_hi], [-30.0, y_hi]])])
    lanes = Polylines.from_list([np.array([[-30.0, k * LANE_W], [length, k * LANE_W]]) for k in range(2)])
    edges = Polylines.from_list([np.array([[-30.0, y_lo], [length, y_lo]]), np.array([[length, y_hi], [-30.0, y_hi]])])
    return Scenario(
        id=f"straight-{i:04d}",
        source="test",
        agents=agents,
        valid=np.ones((num_agents, num_steps), bool),
        agent_type=np.full(num_agents, AgentType.VEHICLE, np.int8),
        ego=0,
        map=RoadMap(lanes=lanes, lane_widths=np.full(2, LANE_W), road_edges=edges, drivable=drivable),
        route=np.array([[-30.0, 0.0], [length, 0.0]]),
        dt=dt,
        init_step=init_step,
        family="straight",
        tags=("test",),
    ).validate()


def write_scenes(path: Path, n: int, num_steps: int = 40, start: int = 0) -> Path:
    """Save scenes ``start .. start + n - 1`` to ``path`` (.npz)."""
    return save_scenarios(path, [straight_scene(start + i, num_steps) for i in range(n)])


def make_policy(speed: float, log_std: float, seed: int = 0) -> WaypointPolicy:
    """A real policy whose deterministic plan is (nearly) straight ahead at ``speed`` m/s."""
    torch.manual_seed(seed)
    p = WaypointPolicy(PolicyConfig(obs_dim=OBS_DIM, num_waypoints=NUM_WAYPOINTS, obs_version=OBS_VERSION,
                                    hidden=32, layers=1, init_log_std=log_std))
    with torch.no_grad():
        k = torch.arange(1, NUM_WAYPOINTS + 1, dtype=torch.float32) * WAYPOINT_STEPS * 0.1
        wp = torch.stack([speed * k, torch.zeros_like(k)], -1).reshape(-1)
        p.wp_mean.copy_(wp)
        p.wp_std.fill_(0.05)
    return p.eval()


def _meta(p: WaypointPolicy, episode: int, reward: float) -> dict:
    ent = float(gaussian_entropy(p.log_std.detach()))
    per = [float(x) for x in gaussian_entropy_per_dim(p.log_std.detach())]
    info = {"mean_delta_norm": 0.0, "max_delta_norm": 0.0, "std_delta_norm": 0.0, "policy_entropy": ent}
    return {"episode": episode, "entropy": ent, "entropy_per_dim": per, "eval_info": info, "train_reward": reward}


def make_run(root: Path, episodes=(0, 50, 100, 150), speeds=None, log_stds=None, rewards=None, name="run1",
             seed: int = 0) -> Path:
    """A run directory in the layout of docs/run_files.md under ``root/out``; ``root/out/latest`` points at it.

    Returns:
        The run directory.
    """
    n = len(episodes)
    speeds = speeds if speeds is not None else [6.0 + 2.0 * j for j in range(n)]
    log_stds = log_stds if log_stds is not None else [-0.5 - 0.2 * j for j in range(n)]
    rewards = rewards if rewards is not None else [float(j) for j in range(n)]
    run = root / "out" / name
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    for j, ep in enumerate(episodes):
        p = make_policy(speeds[j], log_stds[j], seed=j)
        save_checkpoint(run / "checkpoints" / f"ep{ep:05d}.pt", p, {"seed": 0}, {**_meta(p, ep, rewards[j]),
                                                                                "kind": "candidate"})
    best_e = int(np.argmax([_meta(make_policy(speeds[j], log_stds[j], j), 0, 0)["entropy"] for j in range(n)]))
    best_r = int(np.argmax(rewards))
    for src, dst, kind in ((episodes[best_e], "best_entropy.pt", "best_entropy"), (episodes[-1], "last.pt", "last"),
                           (episodes[best_r], "best_reward.pt", "best_reward"), (episodes[0], "bc.pt", "bc")):
        obj = read_checkpoint(run / "checkpoints" / f"ep{src:05d}.pt")
        obj["meta"] = {**obj["meta"], "kind": kind, "source": f"checkpoints/ep{src:05d}.pt"}
        torch.save(obj, run / dst)
    (run / "config.json").write_text(json.dumps({"seed": seed}))
    torch.save({"obs": torch.zeros(4, OBS_DIM)}, run / "eval_states.pt")  # the trainer's fixed states: not a checkpoint
    ents = [_meta(make_policy(speeds[j], log_stds[j], j), 0, 0)["entropy"] for j in range(n)]
    (run / "entropy_history.json").write_text(json.dumps({
        "episodes": list(episodes), "entropy": ents, "best_entropy": max(ents), "best_episode": episodes[best_e],
        "train_reward": list(rewards)}))
    latest = root / "out" / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    os.symlink(name, latest)
    return run


def expected_entropy(log_std: float) -> float:
    """Analytic entropy (nats) of the delta Gaussian with every log-std equal to ``log_std``."""
    return 2 * NUM_WAYPOINTS * (0.5 * math.log(2 * math.pi * math.e) + log_std)


def test_support_scenes_are_valid_and_deterministic():
    a, b = straight_scene(3), straight_scene(3)
    assert np.array_equal(a.agents, b.agents)
    assert not np.array_equal(a.agents, straight_scene(4).agents)


def test_support_policy_entropy_is_analytic(tmp_path):
    run = make_run(tmp_path, episodes=(0, 10), log_stds=[-0.5, -1.0])
    meta = read_checkpoint(run / "checkpoints" / "ep00010.pt")["meta"]
    assert abs(meta["entropy"] - expected_entropy(-1.0)) < 1e-4


def poison(path: Path, value: float = float("nan")) -> str:
    """Write ``value`` into one acting weight of the checkpoint at ``path`` (as a diverged trainer would have,
    before ``save_checkpoint`` refused it); returns the tensor's name."""
    obj = torch.load(path, weights_only=True)
    name = next(k for k in sorted(obj["state_dict"]) if "delta" in k and k.endswith("weight"))
    obj["state_dict"][name].view(-1)[0] = value
    torch.save(obj, path)
    return name


def test_checkpoint_with_non_finite_acting_weights_is_skipped_and_recorded(tmp_path, monkeypatch, capsys):
    """``sim.evaluate`` never scores a NaN policy: the file is listed as skipped (on screen and in /skipped)."""
    from sim.evaluate import main
    from sim.results.reader import read_checkpoints, read_summary

    run = make_run(tmp_path, episodes=(0, 50, 100, 150), rewards=[0.0, 3.0, 1.0, 2.0])  # ep00100 has no role
    write_scenes(tmp_path / "scenes.npz", 3, num_steps=30)
    monkeypatch.chdir(tmp_path)
    bad = run / "checkpoints" / "ep00100.pt"
    name = poison(bad, float("inf"))
    out = tmp_path / "r.h5"
    assert main(["--run", str(run), "--scenarios", "scenes.npz", "--no-progress", "--n-resamples", "50",
                 "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"skipped checkpoint {bad.resolve()}" in printed and name in printed
    s = read_summary(out)
    assert [(Path(r.file).name, r.scene_id) for r in s.skipped] == [("ep00100.pt", "")]
    assert "not finite" in s.skipped[0].reason and name in s.skipped[0].reason
    names = sorted(c.attrs["name"] for c in read_checkpoints(out))
    assert len(names) == 3 and not any("ep00100" in n for n in names)
