"""Pure Plotly figure builders for the dashboard (no Streamlit, no file access).

Conventions: every checkpoint point carries its key in ``customdata`` (so a click selects it everywhere);
entropy axes are always linear (entropy can be negative, see docs/metrics.md "Policy entropy").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from dashboard.run_kind import PROJECT_RUN, RunKind
from dashboard.table import Rows, candidates, smooth
from policy.gaussian import HALF_LOG_2PI_E
from sim.metrics.catalogue import axis_title, higher_is_better
from sim.results.reader import SceneDetail

if TYPE_CHECKING:  # pandas is imported by the views after the first paint only
    import pandas as pd

MARKS = {"best_entropy": ("star", "#d62728", "best_entropy.pt"), "last": ("square", "#7f7f7f", "last.pt"),
         "best_reward": ("diamond", "#9467bd", "best reward"), "best": ("circle-open", "#2ca02c", "truly best"),
         # the run has no best_entropy.pt / its comparison set is partial
         "max_entropy": ("star", "#d62728", "max entropy (rule; no best_entropy.pt)"),
         "best_so_far": ("circle-open", "#2ca02c", "best so far (partial set)")}
METRICS_SPACING = 0.04  # vertical gap between the closed-loop metric rows, fraction of the figure height
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def zero_near(values: Sequence[float], frac: float = 0.25) -> bool:
    """Whether H = 0 lies inside the values' range widened by ``frac`` of its span on each side (or no values)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return True
    lo, hi = float(v.min()), float(v.max())
    pad = frac * max(hi - lo, 1e-9)
    return lo - pad <= 0.0 <= hi + pad


def zero_marks(values: Sequence[float], ax: str = "", inside: bool = False) -> tuple[list[dict], list[dict]]:
    """(shapes, annotations) of the H = 0 line on axes ``x{ax}``/``y{ax}`` when zero is near the data; otherwise
    no line and a note saying where zero is, instead of squashing the curve (forcing 0 into the axis range hides
    entropy changes of a few hundredths around, say, 14.7 nats). Plain layout dicts: cheap to build.

    The note sits just above the plot, or with ``inside`` (figures whose subplot titles sit there) inside it at the
    edge zero lies beyond (bottom when every value is above zero, top when below), on a white box."""
    if zero_near(values):
        return ([{"type": "line", "xref": f"x{ax} domain", "yref": f"y{ax}", "x0": 0, "x1": 1, "y0": 0, "y1": 0,
                  "line": {"dash": "dash", "color": "#888"}}],
                [{"text": "H = 0", "xref": f"x{ax} domain", "yref": f"y{ax}", "x": 0, "y": 0, "xanchor": "left",
                  "yanchor": "top", "showarrow": False}])
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    side = "above" if v.min() > 0 else "below"
    note = {"text": f"H = 0 is off-scale: every value is {side} it", "xref": f"x{ax} domain",
            "yref": f"y{ax} domain", "x": 0, "y": 1.0, "xanchor": "left", "yanchor": "bottom",
            "showarrow": False, "font": {"size": 10, "color": "#666"}}
    if inside:
        note.update(x=1.0, xanchor="right", y=0.0 if side == "above" else 1.0,
                    yanchor="bottom" if side == "above" else "top", bgcolor="rgba(255,255,255,0.85)")
    return [], [note]


def zero_line(fig: go.Figure, values: Sequence[float], inside: bool = False) -> None:
    """Add :func:`zero_marks` to ``fig``'s first (x, y) axes."""
    shapes, notes = zero_marks(values, inside=inside)
    fig.update_layout(shapes=list(fig.layout.shapes) + shapes, annotations=list(fig.layout.annotations) + notes)


def _cands(ck: pd.DataFrame) -> pd.DataFrame:
    return ck[ck["kind"] == "checkpoint"].sort_values("episode")


def entropy_figure(ck: Rows | pd.DataFrame, metric: str, history: dict | None = None, window: int = 1,
                   marks: dict[str, str | None] | None = None, selected: str | None = None,
                   kind: RunKind = PROJECT_RUN) -> go.Figure:
    """Entropy over training steps with every evaluated checkpoint coloured by a closed-loop metric.

    Args:
        ck: checkpoint table (``dashboard.data.checkpoint_rows``, or its pandas frame). metric: colour metric.
        history: ``entropy_history.json`` dict (raw + smoothed lines drawn when given).
        window: trailing smoothing window, history points. marks: role -> checkpoint key for
            ``best_entropy, last, best_reward, best``. selected: key drawn with a ring.
        kind: the run's kind: the x axis counts its step unit (episodes for this project's runs, environment
            steps for SB3) and a plug-in run's marks are named without the project's role files.
    """
    unit = kind.step_unit
    data: list[dict] = []  # plain dicts validated once by go.Figure: much cheaper than add_trace/update_layout
    ys: list[np.ndarray] = []
    if history and history.get("episodes"):
        ep = np.asarray(history["episodes"], float)
        h = np.asarray(history["entropy"], float)
        hs = smooth(h, window)
        data += [{"type": "scatter", "x": ep, "y": h, "mode": "lines", "name": "entropy (raw)",
                  "line": {"color": "#c7c7c7", "width": 1}, "hoverinfo": "skip"},
                 {"type": "scatter", "x": ep, "y": hs, "mode": "lines", "name": f"smoothed (window {window})",
                  "line": {"color": "#1f77b4", "width": 2}, "hoverinfo": "skip"}]
        ys += [h, hs]
    ck = Rows.of(ck)
    c = candidates(ck)
    if metric in c:
        ys.append(c.column("entropy"))
        data.append({
            "type": "scatter", "x": list(c.cols["episode"]), "y": ys[-1], "mode": "markers", "name": "checkpoints",
            "customdata": list(c.keys), "text": list(c.cols["name"]),
            "marker": {"size": 11, "color": c.column(metric), "line": {"width": 1, "color": "#333"},
                       "colorscale": "Viridis" if higher_is_better(metric) else "Viridis_r",
                       "colorbar": {"title": {"text": metric}, "x": 1.02}, "showscale": True},
            "hovertemplate": "%{text}<br>" + unit + " %{x}<br>entropy %{y:.3f} nats<br>" + metric
            + " %{marker.color:.3f}<extra></extra>"})
    for role, key in (marks or {}).items():
        if key is None or key not in ck.keys or role not in MARKS:
            continue
        sym, col, label = MARKS[role]
        label = kind.mark_label(role, label)
        name = ck.get(key, "name")
        ys.append(np.asarray([ck.get(key, "entropy")], float))
        data.append({"type": "scatter", "x": [ck.get(key, "episode")], "y": [ck.get(key, "entropy")],
                     "mode": "markers", "name": f"{label}: {name}", "customdata": [key], "text": [name],
                     "marker": {"symbol": sym, "size": 20 if role == "best" else 16, "color": col,
                                "line": {"width": 3 if role == "best" else 1, "color": col}},
                     "hovertemplate": label + ": %{text}<extra></extra>"})
    if selected is not None and selected in ck.keys and ck.get(selected, "kind") == "checkpoint":
        ys.append(np.asarray([ck.get(selected, "entropy")], float))
        data.append({"type": "scatter", "x": [ck.get(selected, "episode")], "y": [ck.get(selected, "entropy")],
                     "mode": "markers", "name": f"selected: {ck.get(selected, 'name')}", "customdata": [selected],
                     "hoverinfo": "skip", "marker": {"symbol": "circle-open", "size": 26, "color": "#000",
                                                     "line": {"width": 2, "color": "#000"}}})
    shapes, notes = zero_marks(np.concatenate(ys).tolist() if ys else [])
    return go.Figure({"data": data, "layout": {
        "title": {"text": "Policy entropy over training<br><sup>click a checkpoint to select it</sup>"},
        "xaxis": {"title": {"text": unit}}, "yaxis": {"title": {"text": "entropy (nats)"}, "type": "linear"},
        "height": 430, "legend": {"orientation": "h", "y": -0.2}, "margin": {"l": 50, "r": 10, "t": 70, "b": 10},
        "clickmode": "event+select", "shapes": shapes, "annotations": notes}})


def dim_names(n: int) -> list[str]:
    """Labels of the policy's action dimensions: waypoint offsets ``wp1 x, wp1 y, ...`` (ego frame) when the
    count is even (the delta head's ``[2K]`` layout), else ``dim i``."""
    if n % 2:
        return [f"dim {d}" for d in range(n)]
    return [f"wp{d // 2 + 1} {'xy'[d % 2]}" for d in range(n)]


def per_dim_figure(ck: Rows | pd.DataFrame, history: dict | None = None, max_points: int = 200) -> go.Figure:
    """Per-dimension entropy (nats) and sigma = exp(H_i - 0.5 ln(2 pi e)) over episodes, one line per dimension.

    The history (when it has ``entropy_per_dim``) is thinned to at most ``max_points`` episodes.
    """
    if history and history.get("entropy_per_dim") and len(history["entropy_per_dim"]) == len(history["episodes"]):
        ep = np.asarray(history["episodes"], float)
        per = np.asarray(history["entropy_per_dim"], float)
    else:
        c = candidates(Rows.of(ck))
        c = c.where(lambda r: len(r["entropy_per_dim"]) > 0) if "entropy_per_dim" in c else c.where(lambda r: False)
        ep = c.column("episode")
        per = np.asarray([list(v) for v in c.cols.get("entropy_per_dim", ())], float) if len(c) else np.zeros((0, 0))
    if len(ep) > max_points:  # keep the payload small: every k-th history point
        keep = np.unique(np.linspace(0, len(ep) - 1, max_points).round().astype(int))
        ep, per = ep[keep], per[keep]
    per = np.round(per, 4)
    from plotly.subplots import make_subplots  # not needed by the first paint's two charts

    fig = make_subplots(rows=1, cols=2, subplot_titles=("entropy per dimension (nats)", "sigma per dimension"))
    if per.ndim == 2 and per.size:
        names = dim_names(per.shape[1])
        for d in range(per.shape[1]):
            col = PALETTE[d % len(PALETTE)]
            fig.add_trace(go.Scatter(x=ep, y=per[:, d], mode="lines", name=names[d], legendgroup=str(d),
                                     line={"color": col, "width": 1}), 1, 1)
            sigma = np.round(np.exp(per[:, d] - HALF_LOG_2PI_E), 5)
            fig.add_trace(go.Scatter(x=ep, y=sigma, mode="lines", name=names[d], showlegend=False,
                                     legendgroup=str(d), line={"color": col, "width": 1}), 1, 2)
    zero_line(fig, per.ravel().tolist() if per.size else [], inside=True)
    fig.update_yaxes(type="linear")
    fig.update_layout(height=340, margin={"l": 40, "r": 10, "t": 40, "b": 10}, showlegend=True,
                      legend={"title": {"text": "action dimension"}, "font": {"size": 9}})
    return fig


def metrics_figure(ck: Rows | pd.DataFrame, metrics: Sequence[str], selected: str | None = None,
                   best: str | None = None, kind: RunKind = PROJECT_RUN) -> go.Figure:
    """Closed-loop metrics per checkpoint (mean with 95 % interval) over training steps (``kind.step_unit``);
    baselines as dotted lines.

    One row per metric (make_subplots' row domains and titles), all on ONE x axis drawn under the last row: the
    same picture as n matched x axes, and about 0.15 s less of a first paint in the browser (Streamlit draws a
    chart twice before it shows; every axis is laid out and measured on each draw).
    """
    ck = Rows.of(ck)
    metrics = [m for m in metrics if m in ck]
    n = max(1, len(metrics))
    h = (1.0 - METRICS_SPACING * (n - 1)) / n
    layout: dict = {"xaxis": {"anchor": f"y{'' if n == 1 else n}", "domain": [0.0, 1.0],
                              "title": {"text": kind.step_unit}}}
    for i in range(1, n + 1):
        top = 1.0 - (i - 1) * (h + METRICS_SPACING)
        domain = [max(0.0, round(top - h, 9)), min(1.0, round(top, 9))]  # round-off never leaves [0, 1]
        layout[f"yaxis{'' if i == 1 else i}"] = {"anchor": "x", "domain": domain}
    c = candidates(ck)
    base = ck.where(lambda r: r["kind"] == "baseline")
    ep = list(c.cols["episode"])
    data: list[dict] = []
    titles: list[dict] = []
    shapes: list[dict] = []
    notes: list[dict] = []
    for i, m in enumerate(metrics, start=1):
        ax = "" if i == 1 else str(i)
        titles.append({"text": f"{m} ({'higher' if higher_is_better(m) else 'lower'} is better)", "font": {"size": 16},
                       "showarrow": False, "x": 0.5, "xanchor": "center", "xref": "paper",
                       "y": layout[f"yaxis{ax}"]["domain"][1], "yanchor": "bottom", "yref": "paper"})
        y = c.column(m)
        data.append({"type": "scatter", "x": ep, "y": y, "xaxis": "x", "yaxis": f"y{ax}",
                     "mode": "lines+markers", "name": m, "customdata": list(c.keys), "text": list(c.cols["name"]),
                     "line": {"color": "#1f77b4"},
                     "error_y": {"type": "data", "symmetric": False, "array": c.column(f"{m}_hi") - y,
                                 "arrayminus": y - c.column(f"{m}_lo"), "thickness": 1},
                     "hovertemplate": "%{text}<br>" + m + " %{y:.3f}<extra></extra>", "showlegend": False})
        for j, (v, name) in enumerate(zip(base.column(m), base.cols["name"])):
            if not np.isnan(v):
                col = PALETTE[(j + 3) % len(PALETTE)]
                shapes.append({"type": "line", "xref": "x domain", "yref": f"y{ax}", "x0": 0, "x1": 1,
                               "y0": float(v), "y1": float(v), "line": {"dash": "dot", "color": col}})
                notes.append({"xref": "x domain", "yref": f"y{ax}", "x": 0, "y": float(v), "showarrow": False,
                              "text": str(name), "xanchor": "left", "yanchor": "bottom", "font": {"size": 9}})
        for key, sym, col in ((best, "circle-open", "#2ca02c"), (selected, "circle-open", "#000")):
            if key is not None and key in c.keys:
                data.append({"type": "scatter", "x": [c.get(key, "episode")], "y": [c.get(key, m)],
                             "xaxis": "x", "yaxis": f"y{ax}", "mode": "markers", "customdata": [key],
                             "showlegend": False, "hoverinfo": "skip",
                             "marker": {"symbol": sym, "size": 16, "color": col, "line": {"width": 2}}})
    layout.update(shapes=shapes, annotations=titles + notes, height=170 * n + 80,
                  margin={"l": 50, "r": 10, "t": 80, "b": 10},
                  title={"text": "Closed loop per checkpoint (95 % CI)", "y": 0.995, "yanchor": "top"})
    return go.Figure({"data": data, "layout": layout})


def scatter_figure(ck: pd.DataFrame, metric: str, corr: dict | None = None, selected: str | None = None) -> go.Figure:
    """Entropy (x, nats) against a metric's mean (y, with 95 % interval), Spearman/Kendall in the title."""
    c = _cands(ck).dropna(subset=["entropy", metric])
    fig = go.Figure(go.Scatter(
        x=c["entropy"], y=c[metric], mode="markers", customdata=list(c.index), text=c["name"],
        marker={"size": [16 if k == selected else 9 for k in c.index], "color": c["episode"], "colorscale": "Blues",
                "showscale": True, "colorbar": {"title": {"text": "episode"}}, "line": {"width": 1, "color": "#333"}},
        error_y={"type": "data", "symmetric": False, "array": c[f"{metric}_hi"] - c[metric],
                 "arrayminus": c[metric] - c[f"{metric}_lo"], "thickness": 1},
        hovertemplate="%{text}<br>entropy %{x:.3f}<br>" + metric + " %{y:.3f}<extra></extra>"))
    title = f"entropy vs {metric}"
    if corr:
        title += (f"<br><sup>Spearman {corr['spearman']:+.2f} [{corr['spearman_lo']:+.2f}, {corr['spearman_hi']:+.2f}]"
                  f", Kendall {corr['kendall']:+.2f} [{corr['kendall_lo']:+.2f}, {corr['kendall_hi']:+.2f}]"
                  f", n = {int(corr['n'])} checkpoints</sup>")
    if zero_near(c["entropy"].tolist()):  # else the H = 0 line would squash the points to one side
        fig.add_vline(x=0, line_dash="dash", line_color="#888")
    else:
        side = "above" if float(c["entropy"].min()) > 0 else "below"
        fig.add_annotation(text=f"H = 0 is off-scale: every entropy is {side} it", xref="x domain", yref="y domain",
                           x=0 if side == "above" else 1, y=1.0, xanchor="left" if side == "above" else "right",
                           yanchor="bottom", showarrow=False, font={"size": 10, "color": "#666"})
    fig.update_layout(title=title, xaxis_title="entropy (nats)", yaxis_title=axis_title(metric), xaxis_type="linear",
                      height=330, margin={"l": 50, "r": 10, "t": 60, "b": 10})
    return fig


def _box_xy(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray) -> tuple[list, list]:
    """Outline of oriented boxes (arrays [n]) as one polyline with None separators."""
    xs: list = []
    ys: list = []
    for i in range(len(x)):
        c, s = math.cos(yaw[i]), math.sin(yaw[i])
        pts = [(length[i] / 2, width[i] / 2), (-length[i] / 2, width[i] / 2), (-length[i] / 2, -width[i] / 2),
               (length[i] / 2, -width[i] / 2), (length[i] / 2, width[i] / 2)]
        xs += [x[i] + c * a - s * b for a, b in pts] + [None]
        ys += [y[i] + s * a + c * b for a, b in pts] + [None]
    return xs, ys


def _lines(polys: list[np.ndarray]) -> tuple[list, list]:
    xs: list = []
    ys: list = []
    for p in polys:
        xs += p[:, 0].tolist() + [None]
        ys += p[:, 1].tolist() + [None]
    return xs, ys


def ego_view(scene: SceneDetail, ego: np.ndarray | None, pad: float = 25.0) -> tuple[list[float], list[float]]:
    """Axis ranges (m) that frame the ego: its logged and closed-loop paths plus ``pad``, square (the map may
    span kilometres; the replay opens on the ego, not on the whole map)."""
    pts = [scene.log_ego[:, :2]]
    if ego is not None:
        pts.append(np.asarray(ego)[:, :2])
    xy = np.concatenate(pts, axis=0).astype(float)
    xy = xy[np.isfinite(xy).all(1)]
    if not len(xy):
        return [-pad, pad], [-pad, pad]
    lo, hi = xy.min(0), xy.max(0)
    c, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2 + pad, pad)
    return [float(c[0] - half), float(c[0] + half)], [float(c[1] - half), float(c[1] + half)]


def replay_title(info) -> str:
    """``id (family, source)`` of a scene, each of family and source once and only when the id does not already
    say it (imported scenes' ids often carry the source, and their family is often the source's name)."""
    sid = str(info.id)
    parts: list[str] = []
    for p in (str(info.family or ""), str(info.source or "")):
        if p and p.lower() not in sid.lower() and p not in parts:
            parts.append(p)
    return sid + (f" ({', '.join(parts)})" if parts else "")


def replay_figure(scene: SceneDetail, ego: np.ndarray | None, label: str = "closed loop", stride: int = 1) -> go.Figure:
    """Bird's-eye animated replay: map, route, logged ego path, closed-loop ego path, boxes of all agents per step.

    Args:
        scene: from ``read_scene``. ego: float [T, 4] closed-loop ego x, y, yaw, speed (NaN padded) or None.
        label: legend name of the closed-loop ego. stride: draw every ``stride``-th step as a frame.
    """
    fig = go.Figure()
    styles = {"drivable": ("#eeeeee", 0, "toself"), "road_edges": ("#333", 1.5, None),
              "road_lines": ("#bbb", 1, None), "lanes": ("#9ecae1", 1, None), "crosswalks": ("#fdd0a2", 1, "toself")}
    for kind, (col, w, fill) in styles.items():
        if scene.map.get(kind):
            xs, ys = _lines(scene.map[kind])
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=kind, fill=fill, fillcolor=col if fill else None,
                                     line={"color": col, "width": w}, hoverinfo="skip"))
    if len(scene.route):
        fig.add_trace(go.Scatter(x=scene.route[:, 0], y=scene.route[:, 1], mode="lines", name="route",
                                 line={"color": "#74c476", "width": 6}, opacity=0.4, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=scene.log_ego[:, 0], y=scene.log_ego[:, 1], mode="lines", name="logged ego",
                             line={"color": "#1f77b4", "dash": "dash"}))
    if ego is not None:
        fig.add_trace(go.Scatter(x=ego[:, 0], y=ego[:, 1], mode="lines", name=label, line={"color": "#d62728"}))
    T = scene.agents.shape[1]
    n_static = len(fig.data)
    ln, wd = scene.agents[0, 0, 3], scene.agents[0, 0, 4]

    def dynamic(t: int) -> list[go.Scatter]:
        ok = scene.valid[1:, t]
        a = scene.agents[1:, t][ok]
        ax, ay = _box_xy(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4])
        lx, ly = _box_xy(scene.agents[0, t, :1], scene.agents[0, t, 1:2], scene.agents[0, t, 2:3], [ln], [wd])
        out = [go.Scatter(x=ax, y=ay, mode="lines", fill="toself", name="agents", line={"color": "#636363"}),
               go.Scatter(x=lx, y=ly, mode="lines", name="logged ego box", line={"color": "#1f77b4", "dash": "dot"})]
        if ego is not None and t < len(ego) and not np.isnan(ego[t, 0]):
            ex, ey = _box_xy(ego[t, :1], ego[t, 1:2], ego[t, 2:3], [ln], [wd])
        else:
            ex, ey = [], []
        out.append(go.Scatter(x=ex, y=ey, mode="lines", fill="toself", name="ego", line={"color": "#d62728"}))
        return out

    for tr in dynamic(0):
        fig.add_trace(tr)
    steps = list(range(0, T, max(1, stride)))
    dt = scene.info.dt or 0.1
    fig.frames = [go.Frame(data=dynamic(t), traces=list(range(n_static, n_static + 3)), name=str(t)) for t in steps]
    xr, yr = ego_view(scene, ego)
    fig.update_layout(
        title=replay_title(scene.info), height=520,
        xaxis={"title": "x (m)", "range": xr}, yaxis={"title": "y (m)", "scaleanchor": "x", "scaleratio": 1,
                                                      "range": yr},
        margin={"l": 40, "r": 10, "t": 50, "b": 10},
        updatemenus=[{"type": "buttons", "x": 0, "y": -0.08, "xanchor": "left", "buttons": [
            {"label": "play", "method": "animate",
             "args": [None, {"frame": {"duration": int(1000 * dt * max(1, stride)), "redraw": False},
                             "fromcurrent": True, "transition": {"duration": 0}}]},
            {"label": "pause", "method": "animate", "args": [[None], {"mode": "immediate"}]}]}],
        sliders=[{"x": 0.12, "len": 0.88, "y": -0.05, "currentvalue": {"prefix": "t = "},
                  "steps": [{"label": f"{t * dt:.1f}s", "method": "animate",
                             "args": [[str(t)], {"mode": "immediate", "frame": {"duration": 0, "redraw": False}}]}
                            for t in steps]}])
    return fig


def overlay_figure(runs: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """Several runs (or seeds) overlaid: entropy and a metric's mean with its 95 % band, over episodes."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("entropy (nats)", f"{metric} (95 % CI band)"))
    for i, (name, ck) in enumerate(runs.items()):
        c = _cands(ck)
        col = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=c["episode"], y=c["entropy"], mode="lines+markers", name=name, legendgroup=name,
                                 line={"color": col}), 1, 1)
        if metric not in c:
            continue
        x = c["episode"].tolist()
        fig.add_trace(go.Scatter(x=x + x[::-1], y=c[f"{metric}_hi"].tolist() + c[f"{metric}_lo"].tolist()[::-1],
                                 fill="toself", fillcolor=col, opacity=0.2, line={"width": 0}, legendgroup=name,
                                 showlegend=False, hoverinfo="skip"), 1, 2)
        fig.add_trace(go.Scatter(x=x, y=c[metric], mode="lines+markers", legendgroup=name, showlegend=False,
                                 line={"color": col}), 1, 2)
    zero_line(fig, [v for ck in runs.values() for v in _cands(ck)["entropy"].tolist()], inside=True)
    fig.update_yaxes(type="linear")
    fig.update_xaxes(title_text="episode")
    fig.update_layout(height=360, margin={"l": 40, "r": 10, "t": 40, "b": 10})
    return fig


def profile_figure(stats: dict, selected: str | None = None) -> go.Figure:
    """Performance profiles (rliable): per checkpoint, the fraction of scenes whose metric exceeds each threshold.

    Args:
        stats: the verdict's ``statistics`` (:func:`sim.selection.stats.field_statistics`): ``profile``
            ``{thresholds [K], fractions {key: [K]}}``, ``checkpoints`` (names), ``pick``, ``metric``.
        selected: a checkpoint key drawn thicker.

    Returns:
        One step line per checkpoint (``customdata`` its key), the pick dashed and named; x the metric's
        threshold, y the fraction of scenes above it, in [0, 1].
    """
    prof = stats.get("profile") or {}
    x = list(prof.get("thresholds") or [])
    names = {e["key"]: e["name"] for e in stats.get("checkpoints") or ()}
    pick = stats.get("pick")
    fig = go.Figure()
    for i, (key, frac) in enumerate((prof.get("fractions") or {}).items()):
        is_pick = key == pick
        fig.add_trace(go.Scatter(
            x=x, y=frac, mode="lines", line_shape="hv", name=names.get(key, key) + (" (pick)" if is_pick else ""),
            customdata=[key] * len(x),
            line={"color": PALETTE[i % len(PALETTE)], "width": 4 if key == selected else 2,
                  "dash": "dash" if is_pick else "solid"},
            hovertemplate="%{fullData.name}<br>" + stats.get("metric", "") + " > %{x:.3f}: %{y:.0%} of scenes"
                          "<extra></extra>"))
    metric = stats.get("metric", "")
    fig.update_layout(title=f"performance profile: fraction of scenes with {metric} above a threshold "
                            f"<br><sup>{stats.get('n_scenes', 0)} scenes; a curve above another is "
                            f"{'better' if stats.get('higher_is_better', True) else 'worse (lower is better)'}"
                            "</sup>",
                      xaxis_title=axis_title(metric) if metric else "threshold", yaxis_title="fraction of scenes",
                      yaxis_range=[0, 1.02], height=360, margin={"l": 50, "r": 10, "t": 60, "b": 10})
    return fig
