"""C checkpoints x S scenes in one rollout equal C separate rollouts (real policies, real scenes)."""

from __future__ import annotations

import pytest
import torch

from policy.model import PolicyConfig, WaypointPolicy
from scenarios.procedural import FAMILY_NAMES, generate
from sim.batch import make_batch
from sim.config import NUM_WAYPOINTS, SimError
from sim.metrics import compute_metrics
from sim.multi_policy import repeat_batch, split_rows, stacked_policy_fn
from sim.observation import OBS_DIM, OBS_VERSION
from sim.rollout import rollout


def _policies(n: int) -> list[WaypointPolicy]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        cfg = PolicyConfig(obs_dim=OBS_DIM, num_waypoints=NUM_WAYPOINTS, hidden=32, obs_version=OBS_VERSION)
        p = WaypointPolicy(cfg)
        out.append(p.eval())
    return out


def test_stacked_policies_equal_one_rollout_per_policy():
    scenes = [generate(FAMILY_NAMES[i % len(FAMILY_NAMES)], i) for i in range(6)]
    batch = make_batch(scenes, max_agents=16)
    pols = _policies(3)
    big = repeat_batch(batch, len(pols))
    assert big.num_scenes == 18 and big.ids[6:12] == batch.ids
    ro = rollout(big, stacked_policy_fn(pols))
    got = {k: split_rows(v, len(pols)) for k, v in compute_metrics(ro, big).items()}
    traj = split_rows(ro.traj, len(pols))
    for c, p in enumerate(pols):
        one = rollout(batch, lambda obs, t, p=p: (p.act(obs), {}))
        torch.testing.assert_close(traj[c], one.traj, rtol=1e-5, atol=1e-4)
        for k, v in compute_metrics(one, batch).items():
            torch.testing.assert_close(got[k][c], v, rtol=1e-5, atol=1e-4, equal_nan=True, msg=k)
    # the policies really differ, so the rows cannot be mixed up unnoticed
    assert not torch.allclose(traj[0], traj[1])


def test_stacked_policy_rejects_mixed_architectures_and_bad_batches():
    small = _policies(1)[0]
    torch.manual_seed(0)
    cfg = PolicyConfig(obs_dim=OBS_DIM, num_waypoints=NUM_WAYPOINTS, hidden=64, obs_version=OBS_VERSION)
    wide = WaypointPolicy(cfg)
    with pytest.raises(SimError, match="architecture"):
        stacked_policy_fn([small, wide])
    fn = stacked_policy_fn(_policies(2))
    with pytest.raises(SimError, match="multiple"):
        fn(torch.zeros(3, OBS_DIM), 0)
    with pytest.raises(SimError):
        stacked_policy_fn([])
