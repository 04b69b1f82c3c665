"""Scene shards in parallel threads (sim.sharded): the same rollouts and metrics as the whole batch, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.procedural import FAMILY_NAMES, generate
from sim.batch import make_batch
from sim.config import SimError
from sim.metrics import compute_metrics
from sim.rollout import rollout
from sim.sharded import run_sharded, shard_bounds
from tests.test_sim_speed import _fn, _policy


@pytest.fixture(scope="module")
def batch():
    scenes = [generate(FAMILY_NAMES[i % len(FAMILY_NAMES)], 300 + i) for i in range(21)]
    return make_batch(scenes, max_agents=32)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 5000), st.integers(1, 12), st.integers(1, 64))
def test_shard_bounds_tile_the_batch(n, workers, min_shard):
    b = shard_bounds(n, workers, min_shard)
    assert b[0][0] == 0 and b[-1][1] == n
    assert all(hi0 == lo1 for (_, hi0), (lo1, _) in zip(b, b[1:]))
    assert 1 <= len(b) <= workers
    if len(b) > 1:
        assert min(hi - lo for lo, hi in b) >= min_shard
        assert max(hi - lo for lo, hi in b) - min(hi - lo for lo, hi in b) <= 1


def test_bad_worker_count_is_refused():
    with pytest.raises(SimError, match="workers must be >= 1"):
        shard_bounds(10, 0)


@pytest.mark.parametrize("workers", [2, 3])
def test_sharded_rollout_and_metrics_equal_the_whole_batch(batch, workers):
    fn = _fn(_policy())

    def simulate(b):
        ro = rollout(b, fn)
        return ro, compute_metrics(ro, b)

    with torch.no_grad():
        whole_ro, whole = simulate(batch)
        parts = run_sharded(batch, simulate, workers, min_shard=4)
    assert len(parts) == workers
    assert torch.get_num_threads() >= 1
    traj = torch.cat([ro.traj for ro, _ in parts])
    assert torch.equal(traj, whole_ro.traj)
    for k, v in whole.items():
        torch.testing.assert_close(torch.cat([m[k] for _, m in parts]), v, rtol=0, atol=0, equal_nan=True, msg=k)


def test_threads_restored_and_grad_mode_carried(batch):
    before = torch.get_num_threads()
    seen = []

    def probe(b):
        seen.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.get_num_threads()))
        return b.num_scenes

    with torch.inference_mode():
        sizes = run_sharded(batch, probe, 3, min_shard=4)
    assert sum(sizes) == batch.num_scenes and torch.get_num_threads() == before
    assert all(s == (False, True, 1) for s in seen)


def test_evaluate_with_workers_writes_the_same_rows(tmp_path, monkeypatch, capsys):
    from sim.evaluate import main
    from sim.harness.reader import read_checkpoints
    from tests.test_evaluate_support import make_run, write_scenes

    run = make_run(tmp_path, episodes=(0, 50), log_stds=[-0.5, -0.9], rewards=[0.0, 1.0])
    write_scenes(tmp_path / "scenes.npz", 40, num_steps=30)
    monkeypatch.chdir(tmp_path)
    args = ["--run", str(run), "--scenarios", "scenes.npz", "--no-progress", "--n-resamples", "50",
            "--batch-size", "40", "--baseline", "constant-velocity"]
    assert main([*args, "--out", "one.h5"]) == 0
    assert main([*args, "--out", "two.h5", "--workers", "2"]) == 0
    one = {s.key: s.rows for s in read_checkpoints(tmp_path / "one.h5", with_traj=True)}
    two = {s.key: s.rows for s in read_checkpoints(tmp_path / "two.h5", with_traj=True)}
    assert one.keys() == two.keys() and len(one) == 3
    for k, rows in one.items():
        assert two[k].scenario_ids == rows.scenario_ids
        np.testing.assert_array_equal(two[k].ego_traj, rows.ego_traj)
        for m, v in rows.metrics.items():
            np.testing.assert_array_equal(two[k].metrics[m], v, err_msg=f"{k} {m}")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*args, "--workers", "0"])
    assert "--workers must be >= 1" in capsys.readouterr().err
