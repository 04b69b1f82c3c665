"""Scene shards in worker processes (sim.evaluation.shards): same metrics as one process, errors in one line."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from policy.checkpoint import save_checkpoint
from policy.model import PolicyConfig, WaypointPolicy
from scenarios.procedural import FAMILY_NAMES, generate
from sim.batch import make_batch
from sim.config import NUM_WAYPOINTS, SimError
from sim.evaluation.plugins import load_agent, policy_fn
from sim.evaluation.shards import CheckpointPolicy, ShardPool, ShardSettings, split_evenly
from sim.metrics.registry import compute_metrics
from sim.observation import OBS_DIM, OBS_VERSION
from sim.rollout import rollout


@pytest.fixture(scope="module")
def scenes():
    return [generate(FAMILY_NAMES[i % len(FAMILY_NAMES)], 300 + i) for i in range(10)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(3)
    cfg = PolicyConfig(obs_dim=OBS_DIM, num_waypoints=NUM_WAYPOINTS, hidden=64, obs_version=OBS_VERSION)
    path = tmp_path_factory.mktemp("shards") / "policy.pt"
    save_checkpoint(path, WaypointPolicy(cfg).eval(), {"seed": 0}, {"episode": 1, "entropy": 0.0, "eval_info": {}})
    return str(path)


@pytest.fixture(scope="module")
def pool(scenes):
    with ShardPool(scenes, ShardSettings(workers=2, threads=1, max_agents=16)) as p:
        yield p


def _in_process(scenes, path):
    torch.set_num_threads(1)
    batch = make_batch(scenes, max_agents=16)
    with torch.no_grad():
        return compute_metrics(rollout(batch, policy_fn(load_agent("own", path))), batch)


@given(n=st.integers(1, 500), parts=st.integers(1, 16))
def test_split_evenly_covers_every_index_once_in_near_equal_ranges(n, parts):
    got = split_evenly(n, parts)
    assert [i for r in got for i in r] == list(range(n))
    sizes = [len(r) for r in got]
    assert len(got) == min(n, parts) and max(sizes) - min(sizes) <= 1


def test_sharded_metrics_equal_one_process_on_the_same_slices(pool, scenes, ckpt):
    got = pool.run(CheckpointPolicy(ckpt))
    assert [len(r) for r in pool.slices] == [5, 5] and len(pool.last_stats) == 2
    halves = [_in_process([scenes[i] for i in r], ckpt) for r in pool.slices]
    for k, v in got.items():
        assert v.shape == (len(scenes),)
        torch.testing.assert_close(v, torch.cat([h[k] for h in halves]), rtol=0, atol=0, equal_nan=True, msg=k)
    whole = _in_process(scenes, ckpt)  # one batch of all scenes: the same up to float32 round-off
    for k, v in whole.items():
        torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-4, equal_nan=True, msg=k)
    assert got["ade"].gt(0).all()  # a policy, not the log


def test_log_replay_and_repeated_runs_are_deterministic(pool, ckpt):
    replay = pool.run(None)
    assert torch.equal(replay["ade"], torch.zeros_like(replay["ade"]))
    a, b = pool.run(CheckpointPolicy(ckpt)), pool.run(CheckpointPolicy(ckpt))
    assert all(torch.equal(a[k].nan_to_num(-1), b[k].nan_to_num(-1)) for k in a)


def test_a_failing_policy_is_one_line_and_the_pool_keeps_working(pool, tmp_path, ckpt):
    with pytest.raises(SimError, match=r"worker 0 .*missing\.pt") as e:
        pool.run(CheckpointPolicy(str(tmp_path / "missing.pt")))
    assert "\n" not in str(e.value)
    with pytest.raises(SimError, match="cannot be pickled"):
        pool.run(lambda device: None)
    assert pool.run(CheckpointPolicy(ckpt))["ade"].shape == (10,)  # no stale replies left behind


@pytest.mark.slow
def test_bad_settings_and_closed_pool(scenes):
    with pytest.raises(SimError, match="no scenes"):
        ShardPool([])
    with pytest.raises(SimError, match="must be >= 1"):
        ShardPool(scenes, ShardSettings(workers=0))
    p = ShardPool(scenes[:2], ShardSettings(workers=3, max_agents=8))  # more workers than scenes: one each
    assert len(p.slices) == 2
    p.close()
    p.close()  # idempotent
    with pytest.raises(SimError, match="closed"):
        p.run(functools.partial(CheckpointPolicy, "x"))
