"""Generator of realistic fixture runs (run directory + results.h5) written with plain h5py/json per the contracts.

Used by the dashboard tests and the paint benchmark; needs no torch. Layout (DESIGN "Files a run writes",
docs/results_schema.md): ``<root>/<run>/{config.json, entropy_history.json, train_metrics.json, results.h5,
checkpoints/}`` and ``<root>/latest`` -> newest run. Checkpoint ``.pt`` files are not written (they need torch);
the dashboard never reads them.

CLI: ``python -m dashboard.fixtures OUT_DIR [--checkpoints 20 --scenes 500]`` writes one run there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy import stats

from sim.metric_catalogue import METRIC_NAMES

FAMILIES = ("straight", "lane_change", "intersection", "merge", "roundabout")
SOURCES = ("procedural", "waymo", "commonroad")
ACT_DIM = 16
HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)


@dataclass(frozen=True)
class FixtureSpec:
    """What to generate.

    Attributes:
        name: run folder name. n_checkpoints: evaluated ``ep*.pt`` checkpoints. n_scenes: scenarios.
        episodes: training episodes. steps: T, scenario length (10 Hz). agents: A per scene.
        seed: RNG seed. state_dependent_log_std: recorded in config/meta.
        with_results / with_history / with_verdict: which files to write. temp_group: also leave a
        half-written checkpoint group under a temporary name (as a concurrent writer would).
    """

    name: str = "run-a"
    n_checkpoints: int = 8
    n_scenes: int = 24
    episodes: int = 500
    steps: int = 50
    agents: int = 4
    seed: int = 0
    state_dependent_log_std: bool = False
    with_results: bool = True
    with_history: bool = True
    with_verdict: bool = True
    temp_group: bool = False


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _history(spec: FixtureSpec, rng: np.random.Generator) -> dict:
    ep = np.arange(spec.episodes)
    base = 4.0 - 7.0 * (1 - np.exp(-ep / (spec.episodes / 3)))  # falls through zero: entropy can be negative
    ent = base + rng.normal(0, 0.35, ep.size)
    per_dim = (ent[:, None] / ACT_DIM) + rng.normal(0, 0.05, (ep.size, ACT_DIM))
    reward = -50 + 60 * (1 - np.exp(-ep / (spec.episodes / 4))) + rng.normal(0, 4, ep.size)
    i = int(np.argmax(ent))
    return {
        "episodes": ep.tolist(), "entropy": ent.round(5).tolist(), "entropy_per_dim": per_dim.round(5).tolist(),
        "reward": reward.round(4).tolist(), "best_entropy": float(ent[i]), "best_episode": int(ep[i]),
    }


def _scene_map(rng: np.random.Generator, length: float) -> dict[str, list[np.ndarray]]:
    xs = np.linspace(-10, length + 10, 30)
    lanes = [np.stack([xs, np.full_like(xs, y)], 1) for y in (0.0, 3.5)]
    edges = [np.stack([xs, np.full_like(xs, y)], 1) for y in (-1.75, 5.25)]
    drivable = [np.array([[-10, -1.75], [length + 10, -1.75], [length + 10, 5.25], [-10, 5.25], [-10, -1.75]])]
    cross = [np.array([[length / 2, -1.75], [length / 2 + 3, -1.75], [length / 2 + 3, 5.25], [length / 2, 5.25]])]
    return {"lanes": lanes, "road_edges": edges, "road_lines": [np.stack([xs, np.full_like(xs, 1.75)], 1)],
            "drivable": drivable, "crosswalks": cross}


def _write_scene(g: h5py.Group, row: int, spec: FixtureSpec, rng: np.random.Generator) -> np.ndarray:
    T, A = spec.steps, spec.agents
    v = rng.uniform(5, 12)
    t = np.arange(T) * 0.1
    agents = np.zeros((A, T, 5), np.float32)
    agents[0, :, 0] = v * t
    agents[0, :, 1] = 0.2 * np.sin(t)
    for a in range(1, A):
        agents[a, :, 0] = rng.uniform(5, 40) + rng.uniform(3, 12) * t
        agents[a, :, 1] = rng.choice([0.0, 3.5])
    agents[:, :, 3], agents[:, :, 4] = 4.5, 1.9
    valid = np.ones((A, T), bool)
    valid[A - 1, T // 2:] = False
    fam = FAMILIES[row % len(FAMILIES)]
    g.attrs.update({"id": f"{fam}-{row:05d}", "source": SOURCES[row % len(SOURCES)], "family": fam,
                    "tags": json.dumps([fam]), "dt": 0.1, "init_step": 10, "num_steps": T})
    g["log_ego"] = np.concatenate([agents[0, :, :2], np.zeros((T, 1), np.float32)], 1)
    g["agents"], g["valid"] = agents, valid
    g["agent_type"] = np.ones(A, np.int8)
    g["route"] = agents[0, ::5, :2]
    for kind, lines in _scene_map(rng, float(agents[0, -1, 0])).items():
        pts = np.concatenate(lines).astype(np.float32)
        g[f"map/{kind}/points"] = pts
        g[f"map/{kind}/offsets"] = np.cumsum([0] + [len(x) for x in lines]).astype(np.int64)
    return agents[0]


def _metrics(quality: float, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    ade = np.abs(rng.gamma(2.0, 0.4 + 1.2 * (1 - quality), n))
    coll = (rng.random(n) < 0.25 * (1 - quality) + 0.02).astype(float)
    off = (rng.random(n) < 0.15 * (1 - quality) + 0.01).astype(float)
    prog = np.clip(rng.normal(0.6 + 0.35 * quality, 0.15, n), 0, 1)
    ttc_ok = (rng.random(n) < 0.6 + 0.35 * quality).astype(float)
    comf = (rng.random(n) < 0.7 + 0.2 * quality).astype(float)
    at_fault = coll * (rng.random(n) < 0.7)
    score = (1 - at_fault) * (1 - off) * (5 * prog + 5 * ttc_ok + 2 * comf) / 12
    m = {"ade": ade, "fde": ade * rng.uniform(1.5, 2.5, n), "collision": coll,
         "collision_time": np.where(coll > 0, rng.uniform(1, 5, n), np.nan), "collision_at_fault": at_fault,
         "offroad": off, "offroad_fraction": off * rng.uniform(0, 0.3, n), "progress": prog,
         "route_completion": np.clip(prog + rng.normal(0, 0.05, n), 0, 1), "min_ttc": rng.uniform(0.2, 3.0, n),
         "ttc_ok": ttc_ok, "comfortable": comf, "score": score}
    assert set(m) == set(METRIC_NAMES)
    return m


def _rank_stats(ent: np.ndarray, means: np.ndarray) -> dict:
    r, k = stats.spearmanr(ent, means)[0], stats.kendalltau(ent, means)[0]
    return {"spearman": float(r), "spearman_ci": [float(r) - 0.3, float(r) + 0.3], "kendall": float(k),
            "kendall_ci": [float(k) - 0.25, float(k) + 0.25], "n": int(ent.size)}


def _verdict(cks: list[dict], metric: str = "score") -> dict:
    real = [c for c in cks if c["kind"] == "checkpoint"]
    ent = np.array([c["entropy"] for c in real])
    ep = np.array([c["episode"] for c in real], float)
    means = {m: np.array([np.mean(c["metrics"][m]) for c in real]) for m in METRIC_NAMES}
    val = means[metric]
    best = int(np.argmax(val))
    order = np.argsort(-val)

    def rule(i: int) -> dict:
        c = real[i]
        return {"key": c["key"], "name": c["name"], "episode": c["episode"], "value": float(val[i]),
                "rank": int(np.where(order == i)[0][0]) + 1, "regret": float(val[best] - val[i])}

    last = int(np.argmax(ep))
    rules = {"max_entropy": rule(int(np.argmax(ent))), "last": rule(last),
             "best_reward": rule(int(np.argmax([c["train_reward"] for c in real]))), "bc": rule(int(np.argmin(ep))),
             "random": {"expected_regret": float(np.mean(val[best] - val))}}
    corr = {m: _rank_stats(ent, means[m]) for m in METRIC_NAMES
            if not np.isnan(means[m]).any() and np.std(means[m]) > 0}
    step = {m: _rank_stats(ep, means[m]) for m in corr}
    r = rules["max_entropy"]
    return {"metric": metric, "higher_is_better": True, "n_checkpoints": len(real),
            "n_scenarios": int(real[0]["metrics"][metric].size), "correlations": corr, "step_correlations": step,
            "rules": rules, "best": {k: rule(best)[k] for k in ("key", "name", "episode", "value")},
            "entropy_beats_step": abs(corr[metric]["spearman"]) > abs(step[metric]["spearman"]),
            "sentence": f"Max entropy picked {r['name']} (rank {r['rank']} of {len(real)}, regret {r['regret']:.3f})."}


def write_run(root: Path, spec: FixtureSpec = FixtureSpec(), link_latest: bool = True) -> Path:
    """Write one fixture run under ``root`` and (optionally) point ``root/latest`` at it.

    Returns:
        The run directory.
    """
    rng = np.random.default_rng(spec.seed)
    run = Path(root) / spec.name
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    config = {"seed": spec.seed, "episodes": spec.episodes,
              "policy": {"state_dependent_log_std": spec.state_dependent_log_std, "num_waypoints": ACT_DIM // 2}}
    _write_json(run / "config.json", config)
    hist = _history(spec, rng)
    eps = np.linspace(0, spec.episodes - 1, spec.n_checkpoints).round().astype(int)
    ent = np.asarray(hist["entropy"])
    cks: list[dict] = []
    for j, e in enumerate(eps):
        name = f"ep{e:05d}.pt"
        quality = float(np.clip(0.2 + 0.7 * math.sin(math.pi * (j + 0.5) / spec.n_checkpoints)
                                + rng.normal(0, 0.05), 0, 1))
        cks.append({"key": hashlib.sha256(f"{spec.name}{name}".encode()).hexdigest()[:16], "name": name,
                    "kind": "checkpoint", "episode": int(e), "entropy": float(ent[e]),
                    "entropy_per_dim": hist["entropy_per_dim"][e], "train_reward": float(hist["reward"][e]),
                    "roles": ["candidate"], "quality": quality})
    cks[int(np.argmax([c["entropy"] for c in cks]))]["roles"].append("best_entropy")
    cks[-1]["roles"].append("last")
    cks[int(np.argmax([c["train_reward"] for c in cks]))]["roles"].append("best_reward")
    cks[0]["roles"].append("bc")
    for b, q in (("baseline-log-replay", 1.0), ("baseline-constant-velocity", 0.1)):
        cks.append({"key": b, "name": b.removeprefix("baseline-"), "kind": "baseline", "episode": -1,
                    "entropy": math.nan, "entropy_per_dim": [], "train_reward": math.nan, "roles": [], "quality": q})
    for c in cks:
        c["metrics"] = _metrics(c["quality"], spec.n_scenes, rng)
    if spec.with_history:
        _write_json(run / "entropy_history.json", hist)
        ranked = sorted([c for c in cks if c["kind"] == "checkpoint"], key=lambda c: -c["entropy"])
        _write_json(run / "train_metrics.json", {
            "best_checkpoint": {"path": str(run / "checkpoints" / "best_entropy.pt"),
                                "episode": ranked[0]["episode"], "entropy": ranked[0]["entropy"]},
            "checkpoints": [{"path": str(run / "checkpoints" / c["name"]), "episode": c["episode"],
                             "entropy": c["entropy"], "eval_info": {"policy_entropy": c["entropy"]}} for c in ranked]})
    if spec.with_results:
        _write_results(run / "results.h5", spec, cks, rng)
    if link_latest:
        latest = Path(root) / "latest"
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(spec.name)
    return run


def _write_results(path: Path, spec: FixtureSpec, cks: list[dict], rng: np.random.Generator) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update({"schema_version": 1, "tool_version": "0.1.0", "created": "2026-11-26T00:00:00Z",
                        "updated": "2026-11-26T00:00:00Z", "backend": "kinematic", "suite": "procedural:test",
                        "config": json.dumps({"backend": "kinematic"}), "run_dir": str(path.parent)})
        logs = [_write_scene(f.create_group(f"scenarios/s{r:05d}"), r, spec, rng) for r in range(spec.n_scenes)]
        T = spec.steps
        for c in cks:
            name = f"checkpoints/{c['key']}"
            g = f.create_group(name)
            g.attrs.update({"name": c["name"], "path": f"/runs/{spec.name}/checkpoints/{c['name']}",
                            "sha256": c["key"] * 4 if c["kind"] == "checkpoint" else "", "kind": c["kind"],
                            "roles": json.dumps(c["roles"]), "episode": c["episode"], "entropy": c["entropy"],
                            "entropy_per_dim": json.dumps(c["entropy_per_dim"]), "train_reward": c["train_reward"],
                            "eval_info": json.dumps({"policy_entropy": c["entropy"], "mean_delta_norm": 0.1,
                                                     "state_dependent_log_std": spec.state_dependent_log_std}),
                            "backend": "kinematic", "completed": "2026-11-26T00:00:00Z"})
            g["scenario"] = np.arange(spec.n_scenes, dtype=np.int32)
            g.create_dataset("scenario_id", data=[f"s{r}" for r in range(spec.n_scenes)],
                             dtype=h5py.string_dtype())
            for m, v in c["metrics"].items():
                g[f"metrics/{m}"] = v.astype(np.float64)
            traj = np.full((spec.n_scenes, T, 4), np.nan, np.float32)
            drift = (1 - c["quality"]) * 0.05
            for r, log in enumerate(logs):
                off = np.cumsum(rng.normal(0, drift, T))
                traj[r, :, 0], traj[r, :, 1] = log[:, 0] * (1 - drift), log[:, 1] + off
                traj[r, :, 2], traj[r, :, 3] = 0.0, 8.0
            g["ego_traj"] = traj
        if spec.with_verdict:
            f.create_group("verdict").attrs["json"] = json.dumps(_verdict(cks))
        if spec.temp_group:
            g = f.create_group("checkpoints/_tmp_deadbeefdeadbeef")
            g.attrs["name"] = "half.pt"
            g["metrics/score"] = np.zeros(2)
        f.flush()
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    """Write a fixture run: ``python -m dashboard.fixtures OUT_DIR``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--name", default="run-a")
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--scenes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    run = write_run(a.out, FixtureSpec(name=a.name, n_checkpoints=a.checkpoints, n_scenes=a.scenes, seed=a.seed))
    print(run)


if __name__ == "__main__":
    main()
