"""The signal verdict as a table and a sentence (sim.selection.signal_table): pure functions on a stored verdict."""

from __future__ import annotations

from sim.selection.signal_table import headline_sentence, ranking_table


def test_headline_sentence_and_table_from_a_verdict():
    v = {"metric": "score", "checkpoint_names": {"a": "a.zip", "b": "b.zip"}, "ranking": [
        {"signal": "train/approx_kl", "headline": False, "pick_max": "a", "pick_min": "b", "rule": "min",
         "regret": 0.0, "regret_max": 0.2, "regret_min": 0.0, "spearman": None, "spearman_ci": None,
         "n_checkpoints": 2},
        {"signal": "entropy (-train/entropy_loss)", "headline": True, "pick_max": "a", "pick_min": "b",
         "rule": "max", "regret": 0.2, "regret_max": 0.2, "regret_min": 0.0, "spearman": 0.5,
         "spearman_ci": [-0.1, 0.9], "n_checkpoints": 2}]}
    s = headline_sentence(v)
    assert "ranks **2 of 2**" in s and "**a.zip**" in s and "regret 0.2" in s and "[-0.10, +0.90]" in s
    assert "Lowest regret: pick the min of `train/approx_kl`" in s
    t = ranking_table(v)  # headline first, then the others by rank; each rule's place in the stored ranking
    assert t["signal"] == ["entropy (-train/entropy_loss) (headline)", "train/approx_kl"]
    assert t["max: picks"] == ["a.zip", "a.zip"] and t["min: picks"] == ["b.zip", "b.zip"]
    assert t["max: rank"] == ["2 of 2", "n/a"] and t["min: rank"] == ["n/a", "1 of 2"]
    assert t["spearman"] == ["+0.50", "n/a"]
