"""The "which training signal picks the best checkpoint" view: the stored signal verdict (torch- and pandas-free).

Reads ``/verdict`` attribute ``signals_json`` of a results file (:func:`sim.results.reader.read_signal_verdict`,
written by ``python -m sim.evaluate --signals ...``; docs/results_schema.md), cached on the file's mtime and size.
Entropy is the headline: its sentence comes first, then the ranking of every signal by selection regret, one row per
signal with both of its rules (pick the max, pick the min) and their places in the stored ranking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from sim.results.reader import ResultsError, read_signal_verdict

SIGNALS_CMD = "python -m sim.evaluate --ckpt 'DIR/*' --agent NAME --signals LOG"


@st.cache_data(show_spinner=False, max_entries=16)
def _read(path: str, key: tuple[int, int]) -> tuple[dict | None, str | None]:
    try:
        return read_signal_verdict(path), None
    except (ResultsError, OSError, ValueError) as e:
        return None, f"{path}: unreadable signal verdict ({str(e).splitlines()[0] if str(e) else type(e).__name__})"


def load_signal_verdict(path: Path) -> tuple[dict | None, str | None]:
    """The stored signal verdict (None when the file or the attribute is absent) and an error message."""
    if not path.is_file():
        return None, None
    st_ = path.stat()
    return _read(str(path), (st_.st_mtime_ns, st_.st_size))


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


def signals_view(results: Path, metric: str) -> None:
    """Render the view for the results file ``results`` (``metric``: the dashboard's chosen metric)."""
    st.subheader("Which training signal picks the best checkpoint?")
    v, err = load_signal_verdict(results)
    if err:
        st.error(err)
        return
    if v is None:
        st.info("No training signals judged for this run yet. Evaluate with a training log: "
                f"`{SIGNALS_CMD}` (a run of this project's trainer uses its entropy_history.json by default).")
        return
    d = "higher" if v.get("higher_is_better", True) else "lower"
    st.caption(f"{len(v.get('checkpoints', []))} checkpoints x {v.get('n_scenarios')} scenes, metric "
               f"**{v['metric']}** ({d} is better), log `{v.get('source', '')}`; best checkpoint "
               f"{(v.get('checkpoint_names') or {}).get(v['best_checkpoint'], v['best_checkpoint'])} "
               f"({v['best_value']:.4g})." + ("" if v["metric"] == metric else
                                              f" Judged on {v['metric']}, the metric of the last evaluation."))
    st.markdown(headline_sentence(v))
    st.dataframe(ranking_table(v), hide_index=True, width="stretch")
    for note in v.get("notes", []):
        st.caption(note)
