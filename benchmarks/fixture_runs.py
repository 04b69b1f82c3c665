"""Generator of realistic fixture runs (run directory + results.h5); results go through the real writer and verdict.

Used by the dashboard tests and the paint benchmark; needs no torch. Layout (docs/run_files.md,
docs/results_schema.md): ``<root>/<run>/{config.json, entropy_history.json, train_metrics.json, results.h5,
checkpoints/}`` and ``<root>/latest`` -> newest run. Checkpoint ``.pt`` files are not written (they need torch);
the dashboard never reads them.

CLI: ``python -m benchmarks.fixture_runs OUT_DIR [--checkpoints 20 --scenes 500]`` writes one run there.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.fixture_runs", "python -m benchmarks.fixture_runs")

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from benchmarks import cli
from sim.metrics.catalogue import METRIC_NAMES, METRICS_VERSION, epdms, nuplan_score, score_terms
from sim.results.identity import METRICS_VERSION_ATTR
from sim.results.reader import read_checkpoints
from sim.results.schema import CheckpointAttrs, CheckpointRows, SceneRecord, parts_dir
from sim.results.store import ResultsWriter
from sim.selection.report import build_verdict

FAMILIES = ("straight", "lane_change", "intersection", "merge", "roundabout")
FAMILY_TYPES = {"straight": ("following_lane_without_lead",), "lane_change": ("changing_lane",),
                "intersection": ("traversing_intersection", "starting_left_turn"),
                "merge": ("following_lane_with_lead",), "roundabout": ("traversing_intersection",)}
"""Scenario types of the fixture's families (scenarios.types names), stored per scene as sim.evaluate stores them."""
SOURCES = ("procedural", "waymo", "commonroad")
ACT_DIM = 16
AGENTS = ("own", "sb3")  # FixtureSpec.agent
SB3_STEPS = 2048  # environment steps between an SB3 run's checkpoints (CheckpointCallback's save_freq)
SB3_HEADLINE = "entropy (-train/entropy_loss)"  # the signal name sim.selection.signals gives SB3's entropy


@dataclass(frozen=True)
class FixtureSpec:
    """What to generate.

    Attributes:
        name: run folder name. n_checkpoints: evaluated ``ep*.pt`` checkpoints. n_scenes: scenarios.
        episodes: training episodes. steps: T, scenario length (10 Hz). agents: A per scene.
        seed: RNG seed. state_dependent_log_std: recorded in config/meta.
        with_results / with_history / with_verdict: which files to write. temp_group: also leave a
        half-written checkpoint group under a temporary name (as a concurrent writer would).
        agent: ``own`` (a run of this project's trainer) or ``sb3``: results of foreign checkpoints evaluated with
            ``--agent sb3 --signals LOG`` (``rl_model_<steps>_steps.zip`` named by environment steps, no
            config.json / entropy_history.json / train_metrics.json, the log's signals judged and stored).
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
    agent: str = "own"


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


def _scene(row: int, spec: FixtureSpec, rng: np.random.Generator) -> SceneRecord:
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
    mp = {kind: (np.concatenate(lines).astype(np.float32), np.cumsum([0] + [len(x) for x in lines]).astype(np.int64))
          for kind, lines in _scene_map(rng, float(agents[0, -1, 0])).items()}
    return SceneRecord(id=f"{fam}-{row:05d}", source=SOURCES[row % len(SOURCES)], family=fam, tags=(fam,), dt=0.1,
                       init_step=10, num_steps=T, types=FAMILY_TYPES[fam],
                       log_ego=np.concatenate([agents[0, :, :2], np.zeros((T, 1), np.float32)], 1),
                       agents=agents, valid=valid, agent_type=np.ones(A, np.int8), route=agents[0, ::5, :2], map=mp)


def _metrics(quality: float, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    ade = np.abs(rng.gamma(2.0, 0.4 + 1.2 * (1 - quality), n))
    coll = (rng.random(n) < 0.25 * (1 - quality) + 0.02).astype(float)
    off = (rng.random(n) < 0.15 * (1 - quality) + 0.01).astype(float)
    prog = np.clip(rng.normal(0.6 + 0.35 * quality, 0.15, n), 0, 1)
    ttc_ok = (rng.random(n) < 0.6 + 0.35 * quality).astype(float)
    comf = (rng.random(n) < 0.7 + 0.2 * quality).astype(float)
    at_fault = coll * (rng.random(n) < 0.7)
    ddc = np.where(rng.random(n) < 0.1 * (1 - quality), 0.5, 1.0)
    slc = np.clip(1 - rng.exponential(0.1 * (1 - quality) + 0.01, n), 0, 1)
    lk = (rng.random(n) < 0.8 + 0.15 * quality).astype(float)
    tlc = np.full(n, np.nan)  # the fixture's maps record no traffic lights: not applicable
    rules = {"traffic_light_compliance": tlc, "driving_direction_compliance": ddc, "speed_limit_compliance": slc,
             "lane_keeping": lk}
    terms = score_terms({"no_at_fault_collisions": 1.0 - at_fault, "offroad": off, "progress": prog, "ttc_ok": ttc_ok,
                         "comfortable": comf, **rules})
    score = epdms(terms)
    m = {"ade": ade, "fde": ade * rng.uniform(1.5, 2.5, n), "collision": coll,
         "collision_time": np.where(coll > 0, rng.uniform(1, 5, n), np.nan), "collision_at_fault": at_fault,
         "no_at_fault_collisions": 1.0 - at_fault,
         "offroad": off, "offroad_fraction": off * rng.uniform(0, 0.3, n), "progress": prog,
         "route_completion": np.clip(prog + rng.normal(0, 0.05, n), 0, 1), "min_ttc": rng.uniform(0.2, 3.0, n),
         "ttc_ok": ttc_ok, "comfortable": comf, **rules, "score": score, "nuplan_score": nuplan_score(terms)}
    assert set(m) == set(METRIC_NAMES)
    return m


def write_run(root: Path, spec: FixtureSpec = FixtureSpec(), link_latest: bool = True) -> Path:
    """Write one fixture run under ``root`` and (optionally) point ``root/latest`` at it.

    Returns:
        The run directory.
    """
    if spec.agent not in AGENTS:
        raise ValueError(f"FixtureSpec.agent must be one of {AGENTS}, got {spec.agent!r}")
    rng = np.random.default_rng(spec.seed)
    run = Path(root) / spec.name
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    config = {"seed": spec.seed, "episodes": spec.episodes,
              "policy": {"state_dependent_log_std": spec.state_dependent_log_std, "num_waypoints": ACT_DIM // 2}}
    if spec.agent == "own":
        _write_json(run / "config.json", config)
    hist = _history(spec, rng)
    eps = np.linspace(0, spec.episodes - 1, spec.n_checkpoints).round().astype(int)
    ent = np.asarray(hist["entropy"])
    cks: list[dict] = []
    for j, e in enumerate(eps):
        name = f"ep{e:05d}.pt" if spec.agent == "own" else f"rl_model_{SB3_STEPS * (j + 1)}_steps.zip"
        quality = float(np.clip(0.2 + 0.7 * math.sin(math.pi * (j + 0.5) / spec.n_checkpoints)
                                + rng.normal(0, 0.05), 0, 1))
        cks.append({"key": hashlib.sha256(f"{spec.name}{name}".encode()).hexdigest()[:16], "name": name,
                    "kind": "checkpoint", "episode": int(e) if spec.agent == "own" else SB3_STEPS * (j + 1),
                    "entropy": float(ent[e]),
                    "entropy_per_dim": hist["entropy_per_dim"][e], "train_reward": float(hist["reward"][e]),
                    "roles": ["candidate"], "quality": quality})
    cks[-1]["roles"].append("last")
    if spec.agent == "own":  # a plug-in's comparison set has no role files but last (plugin_candidates)
        cks[int(np.argmax([c["entropy"] for c in cks]))]["roles"].append("best_entropy")
        cks[int(np.argmax([c["train_reward"] for c in cks]))]["roles"].append("best_reward")
        cks[0]["roles"].append("bc")
    for b, q in (("baseline-log-replay", 1.0), ("baseline-constant-velocity", 0.1)):
        cks.append({"key": b, "name": b.removeprefix("baseline-"), "kind": "baseline", "episode": -1,
                    "entropy": math.nan, "entropy_per_dim": [], "train_reward": math.nan, "roles": [], "quality": q})
    for c in cks:
        c["metrics"] = _metrics(c["quality"], spec.n_scenes, rng)
    if spec.with_history and spec.agent == "own":
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
    """Through the real writer (:class:`sim.results.store.ResultsWriter`) and the real verdict."""
    path.unlink(missing_ok=True)
    shutil.rmtree(parts_dir(path), ignore_errors=True)
    w = ResultsWriter(path)
    own = spec.agent == "own"
    config = {"backend": "kinematic"} if own else {"backend": "kinematic", "agent": spec.agent}  # EvalConfig.agent
    root = {"backend": "kinematic", "suite": "procedural:test", "config": config,
            "run_dir": str(path.parent) if own else "",
            METRICS_VERSION_ATTR: str(METRICS_VERSION)}  # the metric definitions these rows stand for
    scenes = [_scene(r, spec, rng) for r in range(spec.n_scenes)]
    ids = [s.id for s in scenes]
    T = spec.steps
    with w.lock():
        w.prepare(scenes, root)
        for c in cks:
            traj = np.full((spec.n_scenes, T, 4), np.nan, np.float32)
            drift = (1 - c["quality"]) * 0.05
            for r, sc in enumerate(scenes):
                off = np.cumsum(rng.normal(0, drift, T))
                traj[r, :, 0], traj[r, :, 1] = sc.log_ego[:, 0] * (1 - drift), sc.log_ego[:, 1] + off
                traj[r, :, 2], traj[r, :, 3] = 0.0, 8.0
            attrs = CheckpointAttrs(
                name=c["name"], kind=c["kind"], path=f"/runs/{spec.name}/checkpoints/{c['name']}",
                sha256=c["key"] * 4 if c["kind"] == "checkpoint" else "", roles=tuple(c["roles"]),
                episode=c["episode"], entropy=c["entropy"], entropy_per_dim=tuple(c["entropy_per_dim"]),
                train_reward=c["train_reward"], backend="kinematic",
                eval_info={"policy_entropy": c["entropy"], "mean_delta_norm": 0.1,
                           "state_dependent_log_std": spec.state_dependent_log_std} if own
                else {"agent": spec.agent, "step": c["episode"], "step_source": "file name"}
                if c["kind"] == "checkpoint" else {})
            w.commit(c["key"], attrs, CheckpointRows(tuple(ids), c["metrics"], traj), scenes, root)
        if spec.with_verdict:
            types = {sc.id: sc.types for sc in scenes}
            w.write_verdict(build_verdict(read_checkpoints(path), ids, "score", n_resamples=99, seed=spec.seed,
                                          types=types),
                            signals=None if own else _signal_doc(spec, cks, rng))
    if spec.temp_group:  # what an interrupted older writer could leave: a half-written group under a temp name
        with h5py.File(path, "a") as f:
            g = f.create_group("checkpoints/_tmp_deadbeefdeadbeef")
            g.attrs["name"] = "half.pt"
            g["metrics/score"] = np.zeros(2)


def _signal_doc(spec: FixtureSpec, cks: list[dict], rng: np.random.Generator) -> dict:
    """The signal verdict ``sim.evaluate --signals`` stores for a plug-in run (the real judge, SB3's TensorBoard
    tag names; the entropy signal is the headline)."""
    from sim.selection.signal_verdict import judge_signals

    cps = [c for c in cks if c["kind"] == "checkpoint"]
    n = len(cps)
    signals = {SB3_HEADLINE: [c["entropy"] for c in cps], "rollout/ep_rew_mean": [c["train_reward"] for c in cps],
               "train/approx_kl": rng.uniform(0.005, 0.03, n).tolist(),
               "train/value_loss": rng.uniform(1.0, 5.0, n).tolist(),
               "train/clip_fraction": rng.uniform(0.05, 0.2, n).tolist()}
    v = judge_signals(np.stack([c["metrics"]["score"] for c in cps]), signals, [c["key"] for c in cps],
                      headline=SB3_HEADLINE, steps=[c["episode"] for c in cps], n_resamples=99, seed=spec.seed)
    return {**v.to_dict(), "source": f"/runs/{spec.name}/tb/PPO_1", "agent": spec.agent,
            "checkpoint_names": {c["key"]: c["name"] for c in cps}}


@cli.one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Write a fixture run: ``python -m benchmarks.fixture_runs OUT_DIR`` (bad input: one line on stderr, exit 2)."""
    d = FixtureSpec()
    ap = cli.parser("python -m benchmarks.fixture_runs", __doc__.splitlines()[0])
    cli.flag(ap, "out", "folder to write the run into (made if absent; OUT_DIR/latest points at the run)", type=Path,
             metavar="OUT_DIR")
    cli.flag(ap, "--name", "run folder name", default=d.name)
    cli.flag(ap, "--checkpoints", "evaluated checkpoints", default=20, type=int, range=cli.at_least(1))
    cli.flag(ap, "--scenes", "scenarios per checkpoint", default=500, type=int, range=cli.at_least(1))
    cli.flag(ap, "--seed", "RNG seed", default=d.seed, type=int, range=cli.SEED)
    cli.flag(ap, "--agent", "own (this project's trainer) or sb3 (foreign checkpoints with a signal log)",
             default=d.agent, choices=AGENTS)
    a = ap.parse_args(argv)
    if a.out.exists() and not a.out.is_dir():
        ap.error(f"{a.out}: not a folder")
    if not a.name or a.name in (".", "..", "latest") or "/" in a.name or os.sep in a.name:
        ap.error(f"--name {a.name!r}: must be a plain folder name other than 'latest'")
    run = write_run(a.out, FixtureSpec(name=a.name, n_checkpoints=a.checkpoints, n_scenes=a.scenes, seed=a.seed,
                                       agent=a.agent))
    print(run)
