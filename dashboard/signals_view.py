"""The "which training signal picks the best checkpoint" view: the stored signal verdict (torch- and pandas-free).

Reads ``/verdict`` attribute ``signals_json`` of a results file (:func:`sim.results.reader.read_signal_verdict`,
written by ``python -m sim.evaluate --signals ...``; docs/results_schema.md), cached on the file's mtime and size.
Entropy is the headline: its sentence comes first, then the ranking of every signal by selection regret, one row per
signal with both of its rules (pick the max, pick the min) and their places in the stored ranking.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from sim.results.reader import ResultsError, read_signal_verdict
from sim.selection.signal_table import headline_sentence, ranking_table

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
