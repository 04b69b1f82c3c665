"""Entropy ranking, top-k retention, best files and history documents (real policies, real files)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.checkpoint import load_checkpoint
from policy.model import PolicyConfig, WaypointPolicy
from training.checkpoints import CheckpointManager, candidate_name, rank
from training.history import EvalRecord, entropy_history_doc, train_metrics_doc, write_history


def _record(ep: int, ent: float, reward: float) -> EvalRecord:
    info = {"mean_delta_norm": 0.1, "max_delta_norm": 0.2, "std_delta_norm": 0.05, "policy_entropy": ent}
    return EvalRecord(ep, ep // 10, ent, [ent / 2, ent / 2], reward, info, None)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.floats(-20, 20, allow_nan=False)), min_size=0, max_size=20,
                unique_by=lambda t: t[0]), st.integers(0, 500))
def test_rank_is_descending_entropy_over_eligible(pairs, select_after):
    recs = [_record(ep * 10, ent, 0.0) for ep, ent in pairs]
    ranked = rank(recs, select_after)
    eligible = [r for r in recs if r.episode >= select_after]
    assert sorted(r.episode for r in ranked) == sorted(r.episode for r in eligible)
    for a, b in zip(ranked, ranked[1:]):
        assert a.entropy > b.entropy or (a.entropy == b.entropy and a.episode < b.episode)
    if eligible:
        assert ranked[0].entropy == max(r.entropy for r in eligible)


def _policy(log_std: float) -> WaypointPolicy:
    torch.manual_seed(0)
    pol = WaypointPolicy(PolicyConfig(obs_dim=6, num_waypoints=1, hidden=8))
    with torch.no_grad():
        pol.log_std.fill_(log_std)
    return pol


@pytest.mark.parametrize("keep_top_k,select_after", [(0, 0), (2, 0), (2, 30), (1, 0)])
def test_manager_retention_and_best_files(tmp_path, keep_top_k, select_after):
    (tmp_path / "checkpoints").mkdir()
    mgr = CheckpointManager(tmp_path, keep_top_k=keep_top_k, select_after=select_after)
    entropies = [1.0, 3.0, 2.0, 5.0, 0.5, 4.0]
    rewards = [0.0, -1.0, 2.0, 1.0, 0.5, -3.0]
    for i, (ent, rew) in enumerate(zip(entropies, rewards)):
        ep = 10 * (i + 1)
        meta = {"episode": ep, "entropy": ent, "eval_info": {"policy_entropy": ent}, "train_reward": rew}
        mgr.add(_policy(ent / 2), {"train": {}}, meta, _record(ep, ent, rew))
        files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
        eligible = [(e, 10 * (j + 1)) for j, e in enumerate(entropies[: i + 1]) if 10 * (j + 1) >= select_after]
        order = [ep_ for _, ep_ in sorted(eligible, key=lambda t: (-t[0], t[1]))]
        if keep_top_k:
            assert files == sorted(candidate_name(e).split("/")[1] for e in order[:keep_top_k])
        else:
            assert len(files) == i + 1
        if order:
            best = load_checkpoint(tmp_path / "best_entropy.pt")
            assert best.meta["episode"] == order[0] and best.meta["kind"] == "best_entropy"
            assert best.meta["source"] == candidate_name(order[0])
        else:
            assert not (tmp_path / "best_entropy.pt").exists()
        best_r = load_checkpoint(tmp_path / "best_reward.pt")
        assert best_r.meta["train_reward"] == max(rewards[: i + 1])
    kept = {r.episode for r in mgr.records if r.path is not None}
    assert all((tmp_path / candidate_name(e)).is_file() for e in kept)


def test_history_documents_agree_with_manager(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    mgr = CheckpointManager(tmp_path, keep_top_k=0, select_after=20)
    for i, ent in enumerate([9.0, 2.0, 4.0, 3.0]):
        ep = 10 * (i + 1)
        mgr.add(_policy(0.0), {}, {"episode": ep, "entropy": ent, "eval_info": {}}, _record(ep, ent, float(i)))
    bc = {"path": "bc.pt", "episode": 0, "entropy": 1.0, "eval_info": {}}
    ent_doc = entropy_history_doc(mgr.records, mgr.best, select_after=20, state_dependent_std=False, bc=bc)
    met_doc = train_metrics_doc(mgr.records, mgr.ranked, mgr.best, mgr.best_reward, keep_top_k=0, select_after=20,
                                episodes_done=40, stop_reason=None, bc=bc)
    write_history(tmp_path, ent_doc, met_doc)
    h = json.loads((tmp_path / "entropy_history.json").read_text())
    m = json.loads((tmp_path / "train_metrics.json").read_text())
    # episode 10 has the highest entropy but is before --select-after
    elig = [(e, ep) for e, ep in zip(h["entropy"], h["episodes"]) if ep >= h["select_after"]]
    assert h["best_entropy"] == max(elig)[0] == 4.0 and h["best_episode"] == 30
    assert m["best_checkpoint"] == {"path": "best_entropy.pt", "source": "checkpoints/ep00030.pt", "episode": 30,
                                    "entropy": 4.0, "train_reward": 2.0}
    assert [r["episode"] for r in m["ranked"]] == [30, 40, 20]
    assert [r["rank"] for r in m["ranked"]] == [1, 2, 3]
    assert load_checkpoint(tmp_path / "best_entropy.pt").meta["episode"] == h["best_episode"]


def test_trainer_ranking_and_verdict_pick_are_one_rule():
    """best_entropy.pt (the trainer's ranking) is what the verdict's max-entropy rule picks, for any history."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from sim.selection.verdict import pick_index
    from training.checkpoints import rank
    from training.history import EvalRecord

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 20), st.sampled_from([-1.0, 0.0, 0.5, 2.0])), min_size=1, max_size=8,
                    unique_by=lambda t: t[0]),
           st.integers(0, 25))
    def check(rows, after):
        recs = [EvalRecord(episode=e * 50, step=e, entropy=h, entropy_per_dim=[], train_reward=0.0, eval_info={},
                           path=None)
                for e, h in rows]
        ranked = rank(recs, after * 50)
        i = pick_index("max_entropy", [("candidate",)] * len(recs), [r.episode for r in recs],
                       [r.entropy for r in recs], [0.0] * len(recs), after_episode=after * 50)
        assert (ranked[0] if ranked else None) == (recs[i] if i is not None else None)

    check()
