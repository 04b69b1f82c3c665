"""PPO pieces: on-policy log labels and the imitation term of the update."""

from __future__ import annotations

import torch

from policy.model import PolicyConfig, WaypointPolicy
from scenarios.suites import load_suite
from sim.batch import make_batch
from sim.expert import collect_expert
from sim.observation import OBS_DIM
from sim.rollout import rollout
from training.bc import log_labels
from training.ppo import Transitions, ppo_update, rl_param_groups


def test_log_labels_on_the_log_equal_the_expert_waypoints():
    batch = make_batch(load_suite("procedural-small")[:3], "cpu", 16)
    ro = rollout(batch, None, record_obs=True)  # ego on its log
    labels, ok = log_labels(batch, ro)
    _, wps = collect_expert(batch)
    s = labels.shape[1]
    assert ok.any() and not (ok & ~batch.step_valid[:, batch.init_step + 1:batch.init_step + 1 + s]).any()
    torch.testing.assert_close(labels[ok], wps[ok], atol=1e-4, rtol=0)


def test_imitation_term_pulls_the_plan_to_the_target():
    torch.manual_seed(0)
    pol = WaypointPolicy(PolicyConfig(obs_dim=OBS_DIM, hidden=32))
    n, d = 256, pol.config.action_dim
    obs = torch.randn(n, OBS_DIM)
    with torch.no_grad():
        cloned = pol(obs).cloned.reshape(n, -1)
    target = cloned + 0.5  # the log lies 0.5 m off the cloned plan in every coordinate
    data = Transitions(obs, torch.zeros(n, d), torch.zeros(n), torch.zeros(n), torch.zeros(n), target,
                       torch.ones(n, dtype=torch.bool))
    opt = torch.optim.Adam(rl_param_groups(pol, 3e-3, 0.0))

    def err() -> float:
        with torch.no_grad():
            out = pol(obs)
            return float((out.cloned.reshape(n, -1) + out.delta_mean - target).abs().mean())

    before = err()
    for i in range(5):
        ppo_update(pol, opt, data, epochs=4, minibatch=64, clip=0.2, vf_coef=0.0, ent_coef=0.0, max_grad_norm=1.0,
                   generator=torch.Generator().manual_seed(i), pg_coef=0.0, imitation=1.0)
    assert before > 0.45 and err() < 0.5 * before
    with torch.no_grad():
        torch.testing.assert_close(pol(obs).cloned.reshape(n, -1), cloned)  # the cloned head never moves
