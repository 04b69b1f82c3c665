"""The page's frame, sent before the dashboard loads its data (Streamlit only: no numpy, h5py or pandas).

Top to bottom: the title, the answer (the verdict and the report card), notes about the run, then the charts.
A first paint is bounded by the browser fetching and evaluating Plotly's code (about 4.7 MB), which starts only
when the first chart element reaches the page. :func:`open_page` therefore sends the title and the two top
charts' frames before the dashboard imports numpy and h5py and reads the run. On a session's first run each frame
holds an empty Plotly figure, so the browser loads Plotly while the server reads the results; the real figures
then replace them in place (usually before Plotly is ready, so the empty ones are never drawn). Later runs find
Plotly loaded and fill the frames directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

PAGE_TITLE = "driveselect: entropy vs closed loop"
TITLE = "Does the max-entropy checkpoint drive best?"
FIRST_RUN = "_frame_sent"  # session-state flag: this session's first run has sent the empty frames
# One empty trace (Streamlit refuses a figure without traces), no axes: a blank frame of the entropy chart's height.
EMPTY_FIGURE = {"data": [{"type": "scatter", "x": [], "y": [], "hoverinfo": "skip"}],
                "layout": {"height": 430, "xaxis": {"visible": False}, "yaxis": {"visible": False}}}


@dataclass(frozen=True)
class PageFrame:
    """Where the page's parts go, top to bottom.

    answer: the verdict and the report card, under the title (the page answers before it charts).
    notes: messages about the runs folder and the run (above the charts). left, right: the chart columns (3:2).
    entropy, metrics: one-element slots in ``left``/``right`` for the entropy curve and the closed-loop metrics.
    """

    answer: DeltaGenerator
    notes: DeltaGenerator
    left: DeltaGenerator
    right: DeltaGenerator
    entropy: DeltaGenerator
    metrics: DeltaGenerator

    def clear(self) -> None:
        """Empty both chart slots (nothing to chart: no runs, a bad folder, no results)."""
        self.entropy.empty()
        self.metrics.empty()


def open_page() -> PageFrame:
    """Set the page up and send the title and the two chart frames (empty figures on a session's first run)."""
    st.set_page_config(page_title=PAGE_TITLE, layout="wide")
    st.title(TITLE)
    answer = st.container()
    notes = st.container()
    left, right = st.columns([3, 2])
    frame = PageFrame(answer=answer, notes=notes, left=left, right=right, entropy=left.empty(),
                      metrics=right.empty())
    if not st.session_state.get(FIRST_RUN):
        st.session_state[FIRST_RUN] = True
        frame.entropy.plotly_chart(EMPTY_FIGURE, key="_frame_entropy")
        frame.metrics.plotly_chart(EMPTY_FIGURE, key="_frame_metrics")
    return frame
