"""What-if selection logic (dashboard/rules.py): properties against brute-force oracles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dashboard import rules

floats = st.floats(-5, 5, allow_nan=False, width=32)


def frame(entropy, score, ade=None) -> pd.DataFrame:
    n = len(entropy)
    return pd.DataFrame({"name": [f"ep{i:05d}.pt" for i in range(n)], "kind": "checkpoint",
                         "episode": np.arange(n) * 10, "entropy": entropy, "train_reward": np.arange(n, dtype=float),
                         "roles": [("candidate",)] * n, "score": score,
                         "ade": ade if ade is not None else -np.asarray(score)},
                        index=[f"k{i}" for i in range(n)])


@given(st.lists(floats, min_size=1, max_size=30), st.integers(1, 10))
def test_smooth_is_trailing_mean(xs, w):
    got = rules.smooth(np.array(xs), w)
    want = [np.mean(xs[max(0, i - w + 1): i + 1]) for i in range(len(xs))]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(floats, floats), min_size=2, max_size=15, unique_by=lambda t: t[1]))
def test_pick_rank_and_regret(pairs):
    ent, score = (np.array(v, dtype=float) for v in zip(*pairs))
    ck = frame(ent, score)
    p = rules.apply_rule(ck, rules.Rule("max"), "score")
    i = int(np.argmax(ent))
    assert p.key == f"k{i}"
    assert p.rank == 1 + int((score > score[i]).sum())
    assert p.regret == pytest.approx(score.max() - score[i]) and p.regret >= 0
    assert (p.rank == 1) == (p.regret == 0)
    assert p.random_regret == pytest.approx(np.mean(score.max() - score))
    q = rules.apply_rule(ck, rules.Rule("min"), "ade")  # lower is better for ADE
    j = int(np.argmin(ent))
    assert q.regret == pytest.approx(ck["ade"].iloc[j] - ck["ade"].min())


def test_sentences_name_the_runs_step_unit():
    """An SB3 run counts its checkpoints in environment steps: the report card's and the what-if rule's sentences
    say so, as the page's headline does (they said "episode" whatever the run was)."""
    ck = frame(np.array([5.0, 1.0, 3.0]), np.arange(3.0))
    card = rules.report_card_rows(ck, "score", unit="environment step")
    assert card and all("(environment step " in r["verdict"] and "episode" not in r["verdict"] for r in card)
    p = rules.apply_rule(ck, rules.Rule("max", after_episode=5), "score", unit="environment step")
    assert p.sentence.startswith("Max entropy after environment step 5 picks ep00002.pt (environment step 20)")
    assert "(episode 0)" in rules.report_card_rows(ck, "score")[0]["verdict"]  # the project's run: episodes


def test_after_episode_and_window():
    ent = np.array([5.0, 1.0, 3.0, 0.0, 2.0])
    ck = frame(ent, np.arange(5.0))
    assert rules.apply_rule(ck, rules.Rule("max", after_episode=15), "score").key == "k2"
    assert rules.apply_rule(ck, rules.Rule("max", after_episode=41), "score") is None
    hist = {"episodes": list(range(50)), "entropy": [0.0] * 30 + [10.0] * 20}  # jumps at episode 30
    # a 25-point trailing window at episode 40 still averages in the zeros: (10*11)/25 = 4.4
    s = rules.rule_scores(ck, 25, hist)
    assert s["k4"] == pytest.approx(10 * 11 / 25) and s["k0"] == 0.0
    with pytest.raises(ValueError, match="mode"):
        rules.Rule("median")


def test_report_card_roles():
    ck = frame(np.array([3.0, 2.0, 1.0]), np.array([0.1, 0.9, 0.5]))
    ck.loc["k1", "roles"] = ("candidate", "best_entropy")  # a stored role wins over the derived one
    card = pd.DataFrame(rules.report_card_rows(ck, "score"), columns=list(rules.CARD_COLUMNS)).set_index("rule")
    assert card.loc["Max entropy", "checkpoint"] == "ep00001.pt" and card.loc["Max entropy", "rank"] == 1
    assert card.loc["Last", "checkpoint"] == "ep00002.pt" and card.loc["Last", "regret"] == pytest.approx(0.4)
    assert card.loc["Behaviour-cloned start", "rank"] == 3
    assert "rank 1 of 3" in card.loc["Max entropy", "verdict"]


def test_rank_correlations():
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 8)
    per = x[:, None] * 10 + rng.normal(0, 0.01, (8, 200))  # perfectly monotone in expectation
    r = rules.rank_correlations(x, per, n_boot=100)
    assert r["spearman"] == pytest.approx(1.0) and r["kendall"] == pytest.approx(1.0)
    assert r["spearman_lo"] == pytest.approx(1.0)
    noisy = rng.normal(0, 1, (8, 50))
    r2 = rules.rank_correlations(x, noisy, n_boot=200)
    assert r2["spearman"] == pytest.approx(stats.spearmanr(x, noisy.mean(1))[0])
    assert r2["kendall"] == pytest.approx(stats.kendalltau(x, noisy.mean(1))[0])
    assert r2["spearman_lo"] <= r2["spearman"] <= r2["spearman_hi"] and r2["spearman_hi"] - r2["spearman_lo"] > 0.1
    assert np.isnan(rules.rank_correlations(x[:2], noisy[:2])["spearman"])
