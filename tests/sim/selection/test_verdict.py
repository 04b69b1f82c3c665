"""Selection verdict: rank correlations against scipy, paired scenario bootstrap, rule regrets."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sim.selection.verdict import VerdictInput, compute_verdict, kendall_rows, resample_means, spearman_rows

values = st.lists(st.integers(-3, 3), min_size=3, max_size=9)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_vectorised_rank_correlations_match_scipy(data):
    y = np.array(data.draw(values), dtype=float)
    rows = np.array([data.draw(st.lists(st.integers(-3, 3), min_size=len(y), max_size=len(y))) for _ in range(3)],
                    dtype=float)
    rs, kt = spearman_rows(rows, y), kendall_rows(rows, y)
    for i, x in enumerate(rows):
        if np.all(x == x[0]) or np.all(y == y[0]):
            assert np.isnan(rs[i]) and np.isnan(kt[i])
            continue
        assert rs[i] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert kt[i] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)  # tau-b with ties


def _input(metric: np.ndarray, entropy, episodes, roles=None, reward=None, extra=None) -> VerdictInput:
    c = metric.shape[0]
    m = {"score": metric}
    if extra is not None:
        m["ade"] = extra
    return VerdictInput(
        keys=tuple(f"k{i}" for i in range(c)),
        names=tuple(f"ep{e:05d}.pt" for e in episodes),
        episodes=np.asarray(episodes),
        entropy=np.asarray(entropy, float),
        train_reward=np.asarray(reward if reward is not None else [np.nan] * c, float),
        roles=tuple(roles or [() for _ in range(c)]),
        metrics=m,
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 30), st.integers(1, 12), st.integers(0, 10_000), st.booleans())
def test_resample_means_match_nanmean_of_the_gathered_resamples(m, s, b, seed, rates):
    rng = np.random.default_rng(seed)
    data = (rng.random((m, 3, s)) < 0.5).astype(float) if rates else rng.normal(size=(m, 3, s))
    data[rng.random(data.shape) < 0.2] = np.nan  # not applicable
    idx = rng.integers(0, s, size=(b, rng.integers(1, s + 1)))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = np.nanmean(data[..., idx], axis=-1)  # [m, 3, b]
    got = resample_means(data, idx)
    if rates:  # integer sums: exact whatever the order
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_point_estimates_and_regrets_are_exact():
    rng = np.random.default_rng(3)
    c, s = 6, 40
    metric = rng.random((c, s))
    entropy = rng.normal(size=c)
    episodes = np.arange(c) * 100
    roles = [("bc",), (), ("best_reward",), (), (), ("last",)]
    v = compute_verdict(_input(metric, entropy, episodes, roles), n_resamples=200)
    means = metric.mean(1)
    assert v["correlations"]["score"]["spearman"] == pytest.approx(stats.spearmanr(entropy, means).statistic)
    assert v["correlations"]["score"]["kendall"] == pytest.approx(stats.kendalltau(entropy, means).statistic)
    assert v["step_correlations"]["score"]["spearman"] == pytest.approx(stats.spearmanr(episodes, means).statistic)
    best = int(np.argmax(means))
    assert v["best"]["key"] == f"k{best}"
    me = int(np.argmax(entropy))
    r = v["rules"]
    assert r["max_entropy"]["key"] == f"k{me}"
    assert r["max_entropy"]["regret"] == pytest.approx(means[best] - means[me])
    assert r["max_entropy"]["rank"] == 1 + int(np.sum(means > means[me]))
    assert r["bc"]["key"] == "k0" and r["best_reward"]["key"] == "k2" and r["last"]["key"] == "k5"
    assert r["random"]["expected_regret"] == pytest.approx(np.mean(means[best] - means))
    json.dumps(v, allow_nan=False)  # strict JSON: NaN became null


def test_max_entropy_rule_is_the_trainers_pick_else_the_highest_non_bc_entropy():
    metric = np.arange(12.0).reshape(4, 3)
    ent = [5.0, 3.0, 4.0, 1.0]
    plain = compute_verdict(_input(metric, ent, [0, 10, 20, 30], roles=[("bc",), (), (), ()]), n_resamples=50)
    assert plain["rules"]["max_entropy"]["key"] == "k2"  # bc excluded: highest among the rest
    picked = compute_verdict(_input(metric, ent, [0, 10, 20, 30], roles=[("bc",), ("best_entropy",), (), ()]),
                             n_resamples=50)
    assert picked["rules"]["max_entropy"]["key"] == "k1"
    assert picked["rules"]["max_entropy"]["regret"] == pytest.approx(10.0 - 4.0)


def test_lower_is_better_metric_flips_best_and_regret():
    metric = np.array([[3.0, 3.2], [1.0, 1.1], [2.0, 2.1]])
    v = compute_verdict(_input(metric, [0.5, 0.1, 0.3], [0, 1, 2]), metric="score",
                        higher_is_better={"score": False}, n_resamples=100)
    assert v["best"]["key"] == "k1"
    assert v["rules"]["max_entropy"]["key"] == "k0"
    assert v["rules"]["max_entropy"]["regret"] == pytest.approx(3.1 - 1.05)


def test_bootstrap_matches_an_independent_paired_bootstrap():
    """Same seed: our vectorised index bootstrap equals scipy.bootstrap over scenario rows with scipy.spearmanr."""
    rng = np.random.default_rng(0)
    c, s = 5, 30
    metric = rng.normal(size=(c, s)) + np.linspace(0, 0.5, c)[:, None]
    entropy = np.array([2.0, 1.5, 1.7, 0.2, -0.3])
    v = compute_verdict(_input(metric, entropy, np.arange(c)), n_resamples=300, seed=11)

    def stat(idx):  # idx: [S] resampled scenario indices, the same for every checkpoint (paired)
        return stats.spearmanr(entropy, metric[:, idx].mean(axis=1)).statistic

    ref = stats.bootstrap((np.arange(s),), stat, vectorized=False, n_resamples=300, method="percentile",
                          rng=np.random.default_rng(11))
    lo, hi = v["correlations"]["score"]["spearman_ci"]
    assert lo == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=1e-12)
    assert lo < v["correlations"]["score"]["spearman"] < hi


def test_bootstrap_is_seeded_and_narrows_with_agreeing_scenarios():
    rng = np.random.default_rng(1)
    c, s = 6, 60
    trend = np.linspace(0, 1, c)[:, None]
    noisy = trend + rng.normal(scale=2.0, size=(c, s))
    clean = trend + rng.normal(scale=0.01, size=(c, s))
    ent = np.linspace(1, 0, c)
    a = compute_verdict(_input(noisy, ent, np.arange(c)), n_resamples=300, seed=5)
    b = compute_verdict(_input(noisy, ent, np.arange(c)), n_resamples=300, seed=5)
    assert a == b
    lo_n, hi_n = a["correlations"]["score"]["spearman_ci"]
    lo_c, hi_c = compute_verdict(_input(clean, ent, np.arange(c)), n_resamples=300)["correlations"]["score"][
        "spearman_ci"]
    assert hi_c - lo_c < hi_n - lo_n
    assert hi_c <= -0.8  # entropy falls while the metric rises: strongly negative


def test_entropy_beats_step_only_when_it_carries_information():
    rng = np.random.default_rng(2)
    c, s = 10, 80
    quality = rng.permutation(c).astype(float)
    metric = quality[:, None] + rng.normal(scale=0.3, size=(c, s))
    episodes = np.arange(c) * 10
    informative = compute_verdict(_input(metric, quality + 0.01 * rng.normal(size=c), episodes), n_resamples=300)
    assert informative["entropy_beats_step"] is True
    assert informative["rules"]["max_entropy"]["regret"] == pytest.approx(0.0, abs=1e-12)
    falling = compute_verdict(_input(metric, -episodes.astype(float), episodes), n_resamples=300)
    assert falling["entropy_beats_step"] is False  # entropy == -step: no more information than the step
    assert falling["entropy_vs_step"]["abs_spearman_diff"] == pytest.approx(0.0)


def test_degenerate_inputs_give_nulls_not_errors():
    one = compute_verdict(_input(np.ones((1, 4)), [0.3], [0]), n_resamples=50)
    assert one["correlations"]["score"]["spearman"] is None and "nothing to compare" in one["sentence"]
    flat = compute_verdict(_input(np.ones((4, 5)), [1.0, 1.0, 1.0, 1.0], [0, 1, 2, 3]), n_resamples=50)
    assert flat["correlations"]["score"]["spearman"] is None
    assert flat["rules"]["max_entropy"]["regret"] == 0.0
    json.dumps(flat, allow_nan=False)


def test_verdict_carries_the_fields_statistics_and_a_per_type_verdict():
    """Statistics and by_type as compute_verdict stores them: the pick's own POI is 0.5, a checkpoint that wins on
    every scene has POI 1, the per-type regret is the difference of that type's means, and a rare type is not
    judged. The whole verdict is strict JSON."""
    from sim.results.schema import to_json
    from sim.selection.stats import MIN_TYPE_SCENES

    n_a, n_b = 6, 3
    base = np.linspace(0.2, 0.6, n_a + n_b)
    metric = np.stack([base, base + 0.1, base - 0.2])  # k1 best everywhere, k0 the max-entropy pick
    types = [("following_lane_with_lead",)] * n_a + [("starting_left_turn", "traversing_intersection")] * n_b
    inp = _input(metric, entropy=[3.0, 2.0, 1.0], episodes=[0, 50, 100])
    inp = VerdictInput(**{**inp.__dict__, "scene_types": tuple(types)})
    v = compute_verdict(inp, n_resamples=199)
    st_ = v["statistics"]
    cp = {e["key"]: e for e in st_["checkpoints"]}
    assert st_["pick"] == "k0" and st_["base"] == "k2"
    assert cp["k0"]["poi_over_pick"] == 0.5 and cp["k1"]["poi_over_pick"] == 1.0 and cp["k2"]["poi_over_pick"] == 0
    assert st_["rules_over_last"]["max_entropy"]["poi"] == 1.0
    assert st_["strata"] == {"starting_left_turn": n_b, "following_lane_with_lead": n_a}
    rows = {r["type"]: r for r in v["by_type"]["types"]}
    assert rows["following_lane_with_lead"]["n"] == n_a and rows["following_lane_with_lead"]["judged"]
    assert rows["following_lane_with_lead"]["rules"]["max_entropy"]["regret"] == pytest.approx(0.1)
    assert rows["following_lane_with_lead"]["best"]["key"] == "k1"
    assert n_b < MIN_TYPE_SCENES and not rows["starting_left_turn"]["judged"]
    assert "regret 0.1 on following_lane_with_lead (n=6, rank 2)" in v["by_type"]["sentence"]
    json.loads(to_json(v))
    # without types: one stratum, no per-type verdict
    plain = compute_verdict(_input(metric, entropy=[3.0, 2.0, 1.0], episodes=[0, 50, 100]), n_resamples=199)
    assert plain["by_type"] is None and plain["statistics"]["strata"] == {"unclassified": n_a + n_b}
    with pytest.raises(ValueError, match="scene_types"):
        VerdictInput(**{**inp.__dict__, "scene_types": tuple(types[:2])})


@pytest.fixture()
def typed_work(tmp_path, monkeypatch):
    """A run of 2 checkpoints and 4 procedural scenes of different families (2 left turns) in tmp/typed.npz."""
    from scenarios.io import save_scenarios
    from scenarios.procedural import generate
    from tests.sim.evaluation.test_evaluate_support import make_run

    run = make_run(tmp_path, episodes=(0, 50), log_stds=[-0.5, -0.9], rewards=[0.0, 1.0])
    scenes = [generate("left_turn", 1), generate("lane_follow_straight", 2), generate("left_turn", 3),
              generate("stopped_vehicle", 4)]
    save_scenarios(tmp_path / "typed.npz", scenes)
    monkeypatch.chdir(tmp_path)
    return run


def test_evaluate_filters_by_scenario_type_and_stores_types(typed_work, capsys):
    from scenarios.types import scenario_types
    from sim.evaluate import main
    from sim.results.reader import read_scenarios, read_verdict

    args = ["--run", str(typed_work), "--scenarios", "typed.npz", "--no-progress", "--n-resamples", "99"]
    assert main([*args, "--scenario-types", "starting_left_turn"]) == 0
    out = capsys.readouterr().out
    assert "--scenario-types starting_left_turn: 2 of 4 scenes" in out
    assert "Statistics, run" in out and "Per scenario type" in out
    res = typed_work / "results.h5"
    infos = read_scenarios(res)
    assert [i.id for i in infos] == ["procedural/left_turn/1", "procedural/left_turn/3"]
    from scenarios.procedural import generate

    assert all(i.types == scenario_types(generate("left_turn", int(i.id.rsplit("/", 1)[1]))) for i in infos)
    v = read_verdict(res)
    assert v["statistics"]["n_scenes"] == 2 and v["statistics"]["strata"] == {"starting_left_turn": 2}
    assert {r["type"] for r in v["by_type"]["types"]} >= {"starting_left_turn", "traversing_intersection"}
    # an unknown type: one line naming the flag, exit 2, nothing new written
    assert main([*args, "--scenario-types", "left_turn"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --scenario-types: unknown type(s) left_turn") and len(err.splitlines()) == 1
