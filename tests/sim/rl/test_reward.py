"""Reward terms and GAE against hand-computed values and a plain-Python oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.rl.reward import RewardWeights, step_rewards
from training.ppo import gae


def _series(t: int, **over) -> dict[str, torch.Tensor]:
    base = {k: torch.zeros(1, t) for k in ("offroad_dist", "route_s", "log_dist", "accel", "jerk", "lat_accel",
                                           "yaw_rate")}
    base["collision"] = torch.zeros(1, t, dtype=torch.bool)
    base.update({k: torch.tensor([v]) for k, v in over.items()})
    return base


def test_reward_terms_by_hand():
    coll = [False, False, True, True, False, True]
    s = _series(6, route_s=[0.0, 0.0, 1.0, 3.0, 4.0, 4.0], log_dist=[0, 0, 1.0, 0, 0, 2.0], collision=coll,
                jerk=[0, 0, 0, 5.0, 0, 0], offroad_dist=[0, 0, 0, 0, 3.0, -1.0])
    step_valid = torch.tensor([[True] * 5 + [False]])
    w = RewardWeights(progress=1.0, collision=10.0, offroad=0.5, comfort=0.3, log_dist=0.1)
    r = step_rewards(s, step_valid, init_step=1, w=w)
    # transitions t = 1..4 scored at t+1 = 2..5; step 5 does not exist
    assert r.mask.tolist() == [[True, True, True, False]]
    assert r.done.tolist() == [[False, False, True, False]]
    expected = [1.0 - 10.0 - 0.1 * 1.0,  # progress 1 m, collision starts, 1 m from the log
                2.0 - 0.3,  # progress 2 m, still colliding (no new penalty), jerk above 4.13
                1.0 - 0.5 * 2.0,  # progress 1 m, 3 m offroad clipped to 2
                0.0]
    torch.testing.assert_close(r.reward, torch.tensor([expected]))
    assert r.episode_return.item() == pytest.approx(sum(expected))


def _gae_oracle(rew, val, mask, done, gamma, lam):
    n = len(rew)
    adv = [0.0] * n
    last, next_v = 0.0, 0.0
    for i in reversed(range(n)):
        if not mask[i]:
            last, next_v = 0.0, 0.0
            continue
        nonterm = 0.0 if done[i] else 1.0
        delta = rew[i] + gamma * next_v * nonterm - val[i]
        last = delta + gamma * lam * nonterm * last
        adv[i] = last
        next_v = val[i]
    return adv


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-5, 5), min_size=n, max_size=n), st.lists(st.floats(-5, 5), min_size=n, max_size=n),
    st.integers(0, n))), st.floats(0.5, 1.0), st.floats(0.0, 1.0))
def test_gae_matches_oracle(data, gamma, lam):
    rew, val, length = data
    n = len(rew)
    mask = [i < length for i in range(n)]
    done = [i == length - 1 for i in range(n)]
    adv, ret = gae(torch.tensor([rew], dtype=torch.float64), torch.tensor([val], dtype=torch.float64),
                   torch.tensor([mask]), torch.tensor([done]), gamma, lam)
    ref = _gae_oracle(rew, val, mask, done, gamma, lam)
    assert adv[0].tolist() == pytest.approx(ref, abs=1e-9)
    assert ret[0].tolist() == pytest.approx([a + v if m else 0.0 for a, v, m in zip(ref, val, mask)], abs=1e-9)


def test_collision_not_at_fault_costs_less():
    s = _series(4, collision=[False, False, True, True])
    step_valid = torch.ones(2, 4, dtype=torch.bool)
    s = {k: v.expand(2, -1) for k, v in s.items()}
    w = RewardWeights(progress=0.0, collision=20.0, offroad=0.0, comfort=0.0, log_dist=0.0, ttc=0.0, not_at_fault=0.1)
    r = step_rewards(s, step_valid, init_step=0, w=w, at_fault=torch.tensor([True, False]))
    torch.testing.assert_close(r.reward, torch.tensor([[0.0, -20.0, 0.0], [0.0, -2.0, 0.0]]))
    plain = step_rewards(s, step_valid, init_step=0, w=w)  # no fault information: every onset costs the full weight
    torch.testing.assert_close(plain.reward, torch.tensor([[0.0, -20.0, 0.0]] * 2))


def test_one_set_of_reward_defaults_for_the_trainer_and_the_gym_env():
    """The trainer's --w-* defaults and the Gymnasium env's default weights are the same numbers (one home)."""
    from training.config import TrainConfig

    cfg = TrainConfig()
    assert cfg.reward_weights() == RewardWeights()
    assert {f"w_{k}" for k in RewardWeights._fields} <= set(cfg.to_dict())
