"""The stored verdict over every training signal as rows, columns and one sentence (pure: no Streamlit, no torch).

Input: the dict :func:`sim.results.reader.read_signal_verdict` returns (``/verdict`` attribute ``signals_json``,
written by ``python -m sim.evaluate --signals ...``; docs/results_schema.md). Used by the dashboard's "Training
signals" view and the HTML report (``python -m sim.report``). Sentences use Markdown emphasis (``**``, backticks).
"""

from __future__ import annotations

from typing import Any


def _num(x: Any, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def _ci(ci: Any) -> str:
    return "" if not ci or ci[0] is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def signal_rows(v: dict) -> list[dict]:
    """One entry per signal, both of its rules together: ``signal``, ``headline``, ``n_checkpoints``, ``spearman``,
    ``spearman_ci`` and, per rule ``r`` in (``max``, ``min``), ``rank_r`` (the rule's place in the stored ranking,
    1 = lowest regret, of ``2 x signals``), ``regret_r`` and ``pick_r``. Ordered headline first, then by the better
    of the signal's two ranks."""
    out: dict[str, dict] = {}
    for i, j in enumerate(v.get("ranking", []), 1):
        e = out.setdefault(j["signal"], {"signal": j["signal"], "headline": False, "n_checkpoints": j["n_checkpoints"],
                                         "spearman": j.get("spearman"), "spearman_ci": j.get("spearman_ci"),
                                         "regret_max": j["regret_max"], "regret_min": j["regret_min"],
                                         "pick_max": j["pick_max"], "pick_min": j["pick_min"]})
        rule = j.get("rule", j.get("best_rule"))  # best_rule: files written before rules were ranked one by one
        e.setdefault(f"rank_{rule}", i)
        e["headline"] = e["headline"] or bool(j.get("headline"))
    return sorted(out.values(), key=lambda e: (not e["headline"], min(e.get("rank_max", 1e9), e.get("rank_min", 1e9))))


def ranking_table(v: dict) -> dict[str, list]:
    """The ranking as columns (a dict of lists, what ``st.dataframe`` shows): one row per signal with both of its
    rules (pick the max, pick the min), the headline (entropy) first, then the others by their better rank."""
    names = v.get("checkpoint_names") or {}
    n = len(v.get("ranking", []))
    cols: dict[str, list] = {k: [] for k in ("signal", "max: rank", "max: regret", "max: picks", "min: rank",
                                             "min: regret", "min: picks", "spearman", "spearman CI", "checkpoints")}
    for e in signal_rows(v):
        cols["signal"].append(e["signal"] + (" (headline)" if e["headline"] else ""))
        for r in ("max", "min"):
            rank = e.get(f"rank_{r}")
            cols[f"{r}: rank"].append("n/a" if rank is None else f"{rank} of {n}")
            cols[f"{r}: regret"].append(round(float(e[f"regret_{r}"]), 4))
            cols[f"{r}: picks"].append(names.get(e[f"pick_{r}"], e[f"pick_{r}"]))
        cols["spearman"].append(_num(e.get("spearman"), "+.2f"))
        cols["spearman CI"].append(_ci(e.get("spearman_ci")))
        cols["checkpoints"].append(e["n_checkpoints"])
    return cols


def headline_sentence(v: dict) -> str:
    """One sentence on the entropy signal (the headline) and the best signal."""
    rank = v.get("ranking", [])
    names = v.get("checkpoint_names") or {}
    best = rank[0] if rank else None
    head = next((j for j in rank if j.get("headline")), None)
    parts = []
    if head is None:
        parts.append("The training log holds no entropy series (or it did not vary), so entropy is not judged.")
    else:
        i = rank.index(head) + 1
        parts.append(f"**Max entropy** (`{head['signal']}`) ranks **{i} of {len(rank)}** rules: picking its max "
                     f"(**{names.get(head['pick_max'], head['pick_max'])}**) has regret {head['regret_max']:.3g} "
                     f"in {v['metric']}, picking its min {head['regret_min']:.3g}; Spearman "
                     f"{_num(head.get('spearman'), '+.2f')} {_ci(head.get('spearman_ci'))}.")
    if best is not None and best is not head:
        rule = best.get("rule", best.get("best_rule"))
        parts.append(f"Lowest regret: pick the {rule} of `{best['signal']}` (regret {best['regret']:.3g}).")
    return " ".join(parts)
