"""Budgeted selection (``sim.selection.budget``): P(best) against brute-force bootstrap enumeration, the race's
invariants (budget, pairing, resume, determinism), and ``sim.evaluate --budget`` end to end."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sim.selection.budget import (
    PRIOR_MASS,
    STOP_BUDGET,
    BudgetPlan,
    budget_rollouts,
    contenders,
    p_best,
    prob_at_least,
    race,
    regret,
    scene_order,
    uniform_pick,
)


def _exact_bootstrap(scores: list[list[int]]) -> tuple[list[Fraction], list[list[Fraction]]]:
    """Exact bootstrap over every ordered resample of n scenes (n**n, equally likely), in integer arithmetic:
    P(best) with split ties, and P(mean_i >= mean_l) for every pair."""
    k, n = len(scores), len(scores[0])
    pb = [Fraction(0)] * k
    ge = [[Fraction(0)] * k for _ in range(k)]
    total = n ** n
    for idx in itertools.product(range(n), repeat=n):
        sums = [sum(row[j] for j in idx) for row in scores]
        top = max(sums)
        winners = [i for i in range(k) if sums[i] == top]
        for i in winners:
            pb[i] += Fraction(1, len(winners) * total)
        for i in range(k):
            for m in range(k):
                if sums[i] >= sums[m]:
                    ge[i][m] += Fraction(1, total)
    return pb, ge


def _exact_polya(scores: list[list[int]], unseen: int) -> tuple[list[Fraction], list[list[Fraction]]]:
    """Exact Polya posterior of the full-sweep sums with the Dirichlet-process prior: every sequence of ``unseen``
    urn draws, in integer arithmetic. The urn starts with weight 1 per seen scene and PRIOR_MASS / K per
    pseudo-scene k (candidate k at the highest seen score, the others at the lowest); a drawn ball goes back
    with a copy of weight 1."""
    k, n = len(scores), len(scores[0])
    lo, hi = min(map(min, scores)), max(map(max, scores))
    cols = [[row[j] for row in scores] for j in range(n)] + [[hi if i == c else lo for i in range(k)] for c in range(k)]
    weight = [Fraction(1)] * n + [Fraction(PRIOR_MASS).limit_denominator() / k] * k
    pb = [Fraction(0)] * k
    ge = [[Fraction(0)] * k for _ in range(k)]
    for seq in itertools.product(range(n + k), repeat=unseen):
        prob, w = Fraction(1), list(weight)
        for i in seq:
            prob *= w[i] / sum(w)
            w[i] += 1
        sums = [sum(row) + sum(cols[i][c] for i in seq) for c, row in enumerate(scores)]
        top = max(sums)
        winners = [i for i in range(k) if sums[i] == top]
        for i in winners:
            pb[i] += prob / len(winners)
        for i in range(k):
            for m in range(k):
                if sums[i] >= sums[m]:
                    ge[i][m] += prob
    return pb, ge


small = st.integers(2, 4).flatmap(lambda n: st.lists(st.lists(st.integers(0, 4), min_size=n, max_size=n),
                                                      min_size=2, max_size=3))


@settings(max_examples=15, deadline=None)
@given(small)
def test_p_best_and_pairwise_match_exact_bootstrap_enumeration(rows):
    exact_pb, exact_ge = _exact_bootstrap(rows)
    x = np.array(rows, dtype=np.float64) / 4.0  # integer-valued sums make ties exact in the oracle
    r = 40_000
    got = p_best(x, n_resamples=r, seed=3)
    assert got.sum() == pytest.approx(1.0)
    for i, p in enumerate(exact_pb):
        assert abs(got[i] - float(p)) <= 4.5 * math.sqrt(float(p) * (1 - float(p)) / r) + 1e-9
    for lead in range(len(rows)):
        ge = prob_at_least(x, lead, n_resamples=r, seed=5)
        assert ge[lead] == 1.0
        for i in range(len(rows)):
            q = float(exact_ge[i][lead])
            assert abs(ge[i] - q) <= 4.5 * math.sqrt(q * (1 - q) / r) + 1e-9


@settings(max_examples=15, deadline=None)
@given(small, st.integers(0, 3))
def test_full_sweep_p_best_matches_exact_polya_enumeration(rows, unseen):
    exact_pb, exact_ge = _exact_polya(rows, unseen)
    x = np.array(rows, dtype=np.float64) / 4.0
    n_total = x.shape[1] + unseen
    r = 40_000
    got = p_best(x, n_resamples=r, seed=3, n_total=n_total)
    for i, p in enumerate(exact_pb):
        assert abs(got[i] - float(p)) <= 4.5 * math.sqrt(float(p) * (1 - float(p)) / r) + 1e-9
    for lead in range(len(rows)):
        ge = prob_at_least(x, lead, n_resamples=r, seed=5, n_total=n_total)
        for i in range(len(rows)):
            q = float(exact_ge[i][lead])
            assert abs(ge[i] - q) <= 4.5 * math.sqrt(q * (1 - q) / r) + 1e-9


def test_full_sweep_p_best_is_exact_when_every_scene_is_seen():
    x = np.random.default_rng(1).random((4, 30))
    np.testing.assert_array_equal(p_best(x, 100, n_total=30), np.eye(4)[np.argmax(x.mean(axis=1))])
    with pytest.raises(ValueError, match="n_total"):
        p_best(x, 100, n_total=29)


def test_p_best_is_seeded_and_refuses_nan():
    x = np.random.default_rng(0).random((3, 20))
    np.testing.assert_array_equal(p_best(x, 500, seed=1), p_best(x, 500, seed=1))
    x[1, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        p_best(x)


def test_budget_rollouts_fraction_count_and_errors():
    assert budget_rollouts(0, 9, 200) == 1800
    assert budget_rollouts(0.3, 9, 200) == 540
    assert budget_rollouts(1, 9, 200) == 1800
    assert budget_rollouts(120, 9, 200) == 120
    assert budget_rollouts(10**6, 9, 200) == 1800
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="--budget"):
            budget_rollouts(bad, 9, 200)


def _synthetic(seed: int, k: int, n: int, gap: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scene = rng.normal(0.0, 0.2, size=(1, n))  # shared scene difficulty: pairing cancels it
    means = np.sort(rng.normal(0.7, 0.02, size=k))
    means[-1] += gap
    return means[rng.permutation(k)][:, None] + scene + rng.normal(0.0, 0.03, size=(k, n))


class Oracle:
    """``evaluate`` from a full score matrix, recording every request."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores, self.asked = scores, []

    def __call__(self, ask: dict[int, list[int]]) -> dict[int, np.ndarray]:
        self.asked.append({k: list(v) for k, v in ask.items()})
        return {k: self.scores[k, v] for k, v in ask.items()}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 7), n=st.integers(1, 90), frac=st.floats(0.05, 1.0),
       conf=st.sampled_from([0.8, 0.95, 1.0]))
@example(seed=1, k=4, n=32, frac=0.5, conf=0.8)  # a drop in the last round: P(best) is recomputed among the rest
def test_race_invariants(seed, k, n, frac, conf):
    s = _synthetic(seed, k, n, gap=0.0)
    plan = BudgetPlan(total=budget_rollouts(frac, k, n), confidence=conf, n_resamples=300, seed=seed)
    ev = Oracle(s)
    r = race(k, n, plan, ev)
    asked = [(c, j) for a in ev.asked for c, v in a.items() for j in v]
    assert len(asked) == len(set(asked)) == r.simulated == r.rollouts <= plan.total  # nothing asked twice
    assert r.rollouts == int(r.n_scenes.sum())
    order = list(r.order)
    for c in range(k):  # each candidate got a prefix of the one scene order (paired scenes)
        assert sorted(j for cc, j in asked if cc == c) == sorted(order[: r.n_scenes[c]])
    racing = r.dropped_after < 0
    if r.rounds:
        assert len(set(r.n_scenes[racing])) == 1 and r.n_scenes[racing].max() == r.n_scenes.max()
        assert r.pick is not None and racing[r.pick]
        assert np.all(r.n_scenes[~racing] == r.dropped_after[~racing])
        assert r.p_best[racing].sum() == pytest.approx(1.0)
    r2 = race(k, n, plan, Oracle(s))
    assert (r2.pick, r2.rollouts, r2.stop) == (r.pick, r.rollouts, r.stop)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 6), n=st.integers(2, 60))
def test_race_on_every_scene_at_once_picks_the_full_sweep_best(seed, k, n):
    s = _synthetic(seed, k, n, gap=0.0)
    r = race(k, n, BudgetPlan(total=k * n, min_scenes=n, n_resamples=200, seed=seed), Oracle(s))
    assert r.pick == int(np.argmax(s.mean(axis=1))) and regret(s, r.pick) == 0.0


def test_clear_winner_is_found_early_with_a_fraction_of_the_rollouts():
    s = _synthetic(7, 8, 400, gap=0.15)
    r = race(8, 400, BudgetPlan(total=8 * 400), Oracle(s))
    assert r.pick == int(np.argmax(s.mean(axis=1)))
    assert r.p_best[r.pick] >= 0.95 and r.stop != STOP_BUDGET
    assert r.rollouts <= 0.1 * r.full and r.saved == r.full - r.rollouts


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(3, 8), n=st.integers(1, 40), unseen=st.integers(0, 40),
       remaining=st.integers(0, 200))
def test_contenders_are_the_highest_in_p_best_or_everyone(seed, k, n, unseen, remaining):
    x = _synthetic(seed, k, n, gap=0.0)
    p = p_best(x, 200, seed=seed, n_total=n + unseen)
    active = [3 * i + 1 for i in range(k)]  # race indices, not positions
    got = contenders(active, x, p, remaining, n + unseen, n_resamples=200, seed=seed)
    assert got == sorted(got) and set(got) <= set(active) and len(got) >= 2
    assert got == contenders(active, x, p, remaining, n + unseen, n_resamples=200, seed=seed)  # seeded
    kept = [active.index(a) for a in got]
    assert all(p[i] <= p[kept].min() for i in set(range(k)) - set(kept))  # the highest in P(best)
    if remaining < 2 or remaining // k >= unseen:  # the few would learn nothing, or everyone sees every scene
        assert got == active


def test_contenders_keep_a_candidate_whose_loss_would_cost_more_than_the_few_gain():
    """The contenders' round weighs what dropping costs, not how much P(best) the others hold: here a candidate
    with P(best) 0.07 after 32 of 40 scenes (the former rule, the fewest holding 80 % of P(best), dropped it)
    is the full-sweep best by 0.07. The budget pays 5 more scenes for all three, 8 (every scene) for two; uniform
    allocation at those rollouts picks the best, and so must the race."""
    n = 40
    rng = np.random.default_rng(0)
    order = scene_order(n, 0)
    a = rng.uniform(0.5, 0.9, n)
    s = np.stack([a, a + rng.normal(0.0, 0.03, n), a.copy()])  # two alike; a third that swings
    s[2, order[:32]] += 0.3 * np.where(np.arange(32) % 2 == 0, 1.0, -1.0) - 0.03
    s[2, order[32:]] += 0.5  # ... and is better on the scenes the race has not seen yet
    r = race(3, n, BudgetPlan(total=3 * 32 + 16, min_scenes=16, growth=2.0), Oracle(s))
    assert r.pick == 2 == uniform_pick(s, r.rollouts) and regret(s, r.pick) == 0.0
    assert (r.dropped_after < 0).all() and r.rollouts == 3 * 37


def _close_race(seed: int, k: int = 10, n: int = 200) -> np.ndarray:
    """A sweep like a default-length run's: checkpoints 0.06 apart in all, scene noise larger than the gaps."""
    rng = np.random.default_rng(seed)
    means = np.linspace(0.60, 0.66, k)[rng.permutation(k)]
    return means[:, None] + rng.normal(0.0, 0.2, size=(1, n)) + rng.normal(0.0, 0.08, size=(k, n))


def test_a_budget_short_of_the_next_round_goes_to_the_contenders_and_beats_uniform():
    """Step 5 of the race: the round the budget cannot pay for everyone goes to the few highest in P(best) when
    the race's posterior expects a lower regret from it; on sweeps whose checkpoints are too close to drop any,
    that spends the budget where the pick is decided (uniform allocation at the same rollouts spreads it over
    every checkpoint)."""
    total_race = total_uniform = 0.0
    focused = 0
    for seed in range(4):
        s = _close_race(seed)
        plan = BudgetPlan(total=budget_rollouts(0.4, *s.shape), n_resamples=500)
        for order in range(15):
            r = race(*s.shape, replace(plan, seed=order), Oracle(s))
            assert r.rollouts <= plan.total
            left = r.dropped_after >= 0
            if left.any():  # the pick's candidates got more scenes than any left out
                focused += 1
                assert len(set(r.n_scenes[~left])) == 1 and r.n_scenes[~left][0] >= r.n_scenes[left].max()
            total_race += regret(s, r.pick)
            total_uniform += regret(s, uniform_pick(s, r.rollouts, order))
    assert focused >= 40 and total_race < 0.75 * total_uniform


def test_resume_reuses_stored_pairs_and_decides_the_same():
    s = _synthetic(11, 6, 150, gap=0.01)
    plan = BudgetPlan(total=budget_rollouts(0.3, 6, 150), seed=4)
    first = Oracle(s)
    a = race(6, 150, plan, first)
    known = np.full_like(s, np.nan)
    for req in first.asked[: max(1, len(first.asked) // 2)]:  # a run killed half-way
        for c, v in req.items():
            known[c, v] = s[c, v]
    b = race(6, 150, plan, Oracle(s), known=known)
    assert (b.pick, b.rollouts, b.stop) == (a.pick, a.rollouts, a.stop)
    np.testing.assert_array_equal(b.n_scenes, a.n_scenes)
    assert b.simulated == a.simulated - int(np.isfinite(known).sum())


def test_uniform_pick_uses_the_same_prefix_for_everyone():
    s = _synthetic(2, 5, 100, gap=0.0)
    m = 37
    cols = scene_order(100, 0)[:m]
    assert uniform_pick(s, 5 * m) == int(np.argmax(s[:, cols].mean(axis=1)))
    assert uniform_pick(s, 5 * 100) == int(np.argmax(s.mean(axis=1)))


# --- sim.evaluate --budget end to end ------------------------------------------------------------------------


@pytest.fixture()
def work(tmp_path, monkeypatch):
    from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

    run = make_run(tmp_path, episodes=(0, 50, 100, 150))
    write_scenes(tmp_path / "scenes.npz", 5, num_steps=30)
    monkeypatch.chdir(tmp_path)
    return run


CLI = ["--scenarios", "scenes.npz", "--no-progress", "--n-resamples", "200", "--batch-size", "4"]


def test_budgeted_cli_stores_what_it_ran_and_a_full_sweep_reuses_it(work, capsys):
    from sim.evaluate import main
    from sim.results.reader import read_checkpoints, read_verdict

    # 4 policies x 5 scenes = 20 rollouts; 0.5 -> 10: 2 common scenes each (8 rollouts), then out of budget
    assert main(["--run", str(work), "--budget", "0.5", "--baseline", "log-replay", *CLI]) == 0
    out = capsys.readouterr().out
    assert "Budgeted selection by score" in out and "8 of 20 rollouts" in out
    assert "Executor local (auto: --budget runs short rounds of rollouts, in this process)" in out
    res = work / "results.h5"
    stored = {s.attrs["name"]: s for s in read_checkpoints(res)}
    from scenarios.io import load_scenarios

    all_ids = [s.id for s in load_scenarios(work.parents[1] / "scenes.npz")]
    first_two = sorted(all_ids[j] for j in scene_order(5, 0)[:2])  # the seeded order's prefix, for everyone
    racers = [n for n in stored if n != "log-replay"]
    assert len(racers) == 4
    assert all(sorted(s.rows.scenario_ids) == first_two for s in stored.values())  # baseline: the race's scenes
    b = read_verdict(res)["budget"]
    assert (b["rollouts"], b["full_sweep"], b["saved"], b["stop"]) == (8, 20, 12, STOP_BUDGET)
    assert sum(c["p_best"] for c in b["checkpoints"]) == pytest.approx(1.0)
    assert {c["n_scenes"] for c in b["checkpoints"]} == {2}
    means = {n: stored[n].rows.metrics["score"].mean() for n in racers}
    assert means[b["pick"]["name"]] == max(means.values())
    # the same budgeted call again resumes: nothing new to simulate, the same pick (HDF5 once refused the second
    # open of the file by the scene writer's thread)
    assert main(["--run", str(work), "--budget", "0.5", "--baseline", "log-replay", *CLI]) == 0
    assert "Resuming: 10 (checkpoint, scenario) pairs" in capsys.readouterr().out
    assert read_verdict(res)["budget"]["pick"] == b["pick"]
    # a later full sweep simulates only what is missing
    assert main(["--run", str(work), *CLI]) == 0
    out = capsys.readouterr().out
    assert "Resuming: 8 (checkpoint, scenario) pairs" in out
    assert all(len(s.rows.scenario_ids) == (2 if s.attrs["name"] == "log-replay" else 5) for s in read_checkpoints(res))
    assert "budget" not in read_verdict(res)
    # the benchmark replays the race on this full sweep: one JSON line per budget
    import json

    from benchmarks.budgeted_selection import main as bench

    assert bench(["--results", str(res), "--budgets", "0.5", "1", "--repeats", "2"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["budget"] for d in lines] == [0.5, 1.0]
    run = lines[1]["runs"][0]
    assert (run["checkpoints"], run["scenes"]) == (4, 5) and run["regret_max"] == 0.0  # at n = N it is exact
    assert lines[0]["max_rollouts_fraction"] <= 0.5
    assert bench(["--results", str(work / "missing.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --results") and "\n" not in err


@pytest.mark.parametrize("flag", [["--budget", "-1"], ["--budget", "2.5"], ["--budget", "3"], ["--confidence", "0"],
                                  ["--confidence", "1.5"]])
def test_bad_budget_flags_are_one_line_errors(work, capsys, flag):
    from sim.evaluate import main

    assert main(["--run", str(work), *flag, *CLI]) == 2
    err = capsys.readouterr().err.strip()
    assert ("error: " + flag[0]) in err and "\n" not in err and "Traceback" not in err


def test_a_budget_below_one_scene_per_checkpoint_writes_nothing(work, capsys):
    from sim.evaluate import main

    assert main(["--run", str(work), "--budget", "2", *CLI]) == 2  # 2 rollouts for 4 checkpoints
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --budget 2") and "fewer than the 4 checkpoints" in err and "\n" not in err
    assert not list(work.glob("results*"))


def test_benchmark_replay_is_the_race_and_uniform_at_equal_rollouts():
    from benchmarks.budgeted_selection import replay

    s = _synthetic(5, 6, 300, gap=0.2)
    got = replay(s, 0.3, 0.95, seed=2)
    r = race(6, 300, BudgetPlan(total=budget_rollouts(0.3, 6, 300), seed=2), Oracle(s))
    assert (got["pick"], got["rollouts"], got["stop"]) == (r.pick, r.rollouts, r.stop)
    assert got["regret"] == regret(s, r.pick) == 0.0
    assert got["uniform_regret"] == regret(s, uniform_pick(s, r.rollouts, 2))


def test_a_named_signal_missing_from_the_runs_own_log_is_refused(work, capsys):
    """``--signal NAME``: a scalar the training log must hold; the run's own entropy_history.json lacking it is an
    error before anything is evaluated, as it is for a log named with --signals."""
    from sim.evaluate import main

    assert main(["--run", str(work), "--signal", "bogus", *CLI]) == 2
    err = capsys.readouterr().err.strip()
    assert "entropy_history.json: no scalar 'bogus'" in err and "\n" not in err
    assert not list(work.glob("results*"))
