"""Streamlit dashboard: does the checkpoint picked by policy entropy drive best in closed loop?

Run: ``streamlit run dashboard/app.py`` (opens on ``out/latest``) or
``streamlit run dashboard/app.py -- --runs-dir DIR``. Layout only: the page's frame is in ``dashboard.frame``,
loading in ``dashboard.data``, figures in ``dashboard.figures``, selection logic in ``dashboard.rules``. The view
lives in the URL query parameters.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts dashboard/ on the path, not the repo root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.frame import PageFrame, open_page  # noqa: E402 - Streamlit only

# First on the page, before the imports below (numpy, h5py, plotly) and the run's data: the browser starts
# loading Plotly's code while they load (see dashboard.frame).
FRAME = open_page()

from dashboard import data, figures, run_roles, table  # noqa: E402
from dashboard.answer import Answer, build_answer, card_markdown  # noqa: E402
from dashboard.run_kind import RunKind, run_kind  # noqa: E402
from sim.metrics.catalogue import JUDGED_METRICS, METRIC_NAMES  # noqa: E402

if TYPE_CHECKING:  # pandas (and dashboard.rules, which uses it) load after the first paint, in the views below it
    import pandas as pd
    from streamlit.delta_generator import DeltaGenerator

SEL = "sel_ckpt"  # the selected checkpoint key, shared by every view (not a widget key: survives hidden tabs)
VIEWS = ("Report card", "What-if rule", "Entropy vs metrics", "Scenarios & replay", "Runs overlaid",
         "Checkpoint table", "Training signals", "Statistics")
METRICS = ("score", *(m for m in JUDGED_METRICS if m != "score"))  # the catalogue's, the verdict's metric first


@dataclass(frozen=True)
class AppConfig:
    """Command-line settings (after ``--``). runs_dir: folder holding run folders and ``latest``."""

    runs_dir: Path


def parse_args(argv: list[str]) -> AppConfig:
    """Parse ``--runs-dir`` (default ``out``); unknown arguments are ignored."""
    ap = argparse.ArgumentParser(prog="dashboard/app.py", add_help=False)
    ap.add_argument("--runs-dir", type=Path, default=Path("out"))
    a, _ = ap.parse_known_args(argv)
    return AppConfig(runs_dir=a.runs_dir)


def qp_default(key: str, value, cast=str):
    """Seed a widget's session state from the URL once per session; bad values fall back to ``value``."""
    if key not in st.session_state:
        raw = st.query_params.get(key)
        try:
            st.session_state[key] = cast(raw) if raw is not None else value
        except (TypeError, ValueError):
            st.session_state[key] = value


def take_selection(chart_keys: tuple[str, ...], valid: set[str]) -> None:
    """Move a new click on any checkpoint chart into ``st.session_state[SEL]`` (events are plain dicts)."""
    for k in chart_keys:
        evt = st.session_state.get(k)
        if not evt:
            continue
        pts = (evt.get("selection") or {}).get("points") or []
        sig = repr(pts)
        if not pts or st.session_state.get(f"_seen_{k}") == sig:
            continue
        st.session_state[f"_seen_{k}"] = sig
        cd = pts[0].get("customdata")
        cd = cd[0] if isinstance(cd, list) and cd else cd
        if isinstance(cd, str) and cd in valid:
            st.session_state[SEL] = cd


def show_problems(run: data.RunData, where: DeltaGenerator) -> None:
    for level, msg in run.problems:
        getattr(where, level)(msg)


def entropy_caveat(run: data.RunData, where: DeltaGenerator, kind: RunKind) -> None:
    flag = data.log_std_state_dependent(run)
    if flag is None and kind.plugin:  # a foreign trainer's policy: the project's log-std note does not apply
        return
    if flag is False:
        where.warning("**The policy's log-std is state-independent.** Its entropy is sum(log_std) + const: a "
                      "number set by a few free parameters that says **nothing about the mean network** (the part "
                      "that drives). Read every entropy-based pick below with that in mind.")
    elif flag is None:
        where.info("The run does not record whether the log-std is state-dependent. If it is not, entropy is "
                   "sum(log_std) + const and says nothing about the mean network.")


def _csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    """CSV text of a list of dicts (pandas-free: the default view runs before pandas is imported)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def draw_answer(ans: Answer, metric: str, kind: RunKind, where: DeltaGenerator, metrics_version: str = "") -> None:
    """The verdict sentence (left) and the report card (right), above the charts; the caption names the metric
    definitions' version of the file (``docs/metrics.md``)."""
    left, right = where.columns([2, 3])
    left.markdown(f"**Verdict** ({metric}): {ans.sentence}")
    version = f"Metrics version {metrics_version or 'not recorded'}"
    left.caption(f"{version}; stored by `sim.evaluate`, details in the Report card tab." if ans.stored is not None
                 else f"{version}.")
    if ans.card:
        right.markdown(card_markdown(ans.card, metric, kind))


def report_card_view(ans: Answer, rr: run_roles.RunRoles, results: Path) -> None:
    """The report card's sentences, its CSV and the HTML report (the table itself is above the charts)."""
    from dashboard import rules

    st.subheader("Selection report card")
    partial = rr.partial_line()
    if partial:
        st.warning(partial)
    if ans.stored:
        st.markdown(f"Verdict stored by `sim.evaluate`: {ans.stored.get('sentence', '')}")
    if not ans.card:
        st.info(ans.sentence)
        return
    st.markdown("\n".join(f"- {r['verdict']}" for r in ans.card))
    c1, c2 = st.columns(2)
    c1.download_button("CSV: report card", _csv(list(ans.card), rules.CARD_COLUMNS), "report_card.csv", "text/csv",
                       key="dl_card")
    with c2:
        html_report_button(results)


def html_report_button(results: Path) -> None:
    """"Prepare HTML report": builds ``sim.selection.report_html.build_report`` (1-3 s) only when asked, then offers
    it as a download (one self-contained file: figures inline, no server)."""
    if st.button("Prepare HTML report", key="prep_html"):
        from sim.results.errors import ResultsError
        from sim.selection.report_html import build_report

        try:
            with st.spinner("Writing the report..."):
                st.session_state["_html_report"] = (str(results), data.file_key(results),
                                                    build_report(results.parent))
        except (ResultsError, OSError) as e:
            st.error(f"HTML report: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    held = st.session_state.get("_html_report")
    if held and held[0] == str(results) and held[1] == data.file_key(results):
        st.download_button("Download HTML report", held[2], f"report_{results.parent.name}.html", "text/html",
                           key="dl_html")


def what_if_view(ck: table.Rows, metric: str, history: dict | None, partial: bool = False,
                 unit: str = "episode") -> None:
    from dashboard import rules

    st.subheader("What-if: another selection rule")
    eps = table.candidates(ck).cols["episode"]
    top = int(max(eps)) if eps else 0
    st.session_state["after"] = min(int(st.session_state.get("after", 0)), top)
    c1, c2, c3 = st.columns(3)
    mode = c1.radio("pick the", ["max", "min"], key="mode", horizontal=True, format_func=lambda m: f"{m} entropy")
    after = c2.number_input(f"after {unit}", min_value=0, max_value=top, step=10, key="after")
    window = c3.slider("smoothing window (history points)", 1, 100, key="window")
    pick = rules.apply_rule(ck, rules.Rule(mode=mode, after_episode=int(after), window=int(window)), metric, history,
                            unit)
    if pick is None:
        st.info(f"No evaluated checkpoint at or after that {unit}.")
        return
    m1, m2 = st.columns(2)
    m1.metric(f"rank by {metric}", f"{pick.rank} / {pick.n}")
    m2.metric("regret", f"{pick.regret:.3g}")
    best_label = "best so far" if partial else "truly best"
    st.markdown(f"pick: **{pick.name}** ({unit} {pick.episode}) &nbsp; {best_label}: **{pick.best_name}**")
    st.write(rules.so_far(pick.sentence) if partial else pick.sentence)


def correlation_view(run: data.RunData, ck: pd.DataFrame, metric: str) -> None:
    import pandas as pd

    from dashboard import rules

    st.subheader("Entropy against each metric")
    corr_metric = st.selectbox("metric", METRICS, key="corr_metric")
    stored = ((run.summary.verdict or {}).get("correlations") or {}) if run.summary else {}
    cands = ck[(ck["kind"] == "checkpoint") & ck["entropy"].notna()].sort_values("episode")
    if corr_metric in stored:
        s = stored[corr_metric]
        corr = {"spearman": s["spearman"], "spearman_lo": s["spearman_ci"][0], "spearman_hi": s["spearman_ci"][1],
                "kendall": s["kendall"], "kendall_lo": s["kendall_ci"][0], "kendall_hi": s["kendall_ci"][1],
                "n": s.get("n", len(cands))}
    else:
        mat = data.per_scene_matrix(run.summary, list(cands.index), corr_metric)
        corr = rules.rank_correlations(cands["entropy"].to_numpy(), mat)
    ok = not any(v is None or (isinstance(v, float) and math.isnan(v)) for v in corr.values())  # null: undefined
    st.plotly_chart(figures.scatter_figure(ck, corr_metric, corr if ok else None, st.session_state.get(SEL)),
                    key="scatter_chart", on_select="rerun", selection_mode="points")
    if stored:
        tab = pd.DataFrame([{"metric": m, **{k: v for k, v in s.items() if not isinstance(v, list)},
                             "spearman_ci": _interval_text(s.get("spearman_ci")),
                             "kendall_ci": _interval_text(s.get("kendall_ci"))}
                            for m, s in stored.items()])
        st.dataframe(table.shown(tab), hide_index=True, width="stretch")
        st.download_button("CSV: correlations", tab.to_csv(index=False), "correlations.csv", "text/csv",
                           key="dl_corr")


def _interval_text(ci) -> str:
    """A stored ``[low, high]`` interval as the tables show intervals (``[-0.94, -0.59]``; ``n/a`` when undefined)."""
    if not ci or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return "n/a"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def FILTERS(df: pd.DataFrame) -> list[tuple[str, str, list[str]]]:  # noqa: N802 - reads like a constant table
    """(session key, label, options) of the per-scenario filters; the keys are also URL parameters."""
    return [("f_family", "family", sorted(df["family"].unique())),
            ("f_source", "source", sorted(df["source"].unique())),
            ("f_failure", "failure kind", sorted(df["failure"].unique()))]


def scenes_view(run: data.RunData, ck: pd.DataFrame) -> None:
    import pandas as pd

    st.subheader("Per scenario")
    keys = list(ck.index)
    st.session_state["ckpt_pick"] = st.session_state.get(SEL)
    key = st.selectbox("checkpoint", keys, key="ckpt_pick", format_func=lambda k: f"{ck.loc[k, 'name']} ({k[:8]})",
                       on_change=lambda: st.session_state.__setitem__(SEL, st.session_state["ckpt_pick"]))
    scenarios, err = data.load_scenarios(run)
    if err:
        st.warning(err)
    df = data.scene_frame(run.summary, key, scenarios)
    f1, f2, f3 = st.columns(3)
    chosen = []
    for col, (key_, label, options) in zip((f1, f2, f3), FILTERS(df)):
        st.session_state[key_] = [v for v in st.session_state.get(key_, []) if v in options]
        chosen.append(col.multiselect(label, options, key=key_))
    fam, src, fail = chosen
    mask = pd.Series(True, index=df.index)
    for col, chosen in (("family", fam), ("source", src), ("failure", fail)):
        if chosen:
            mask &= df[col].isin(chosen)
    view = df[mask]
    public = view.drop(columns=["pos", "row"])  # the file's row numbers: how the replay finds a scene, not data
    st.dataframe(table.shown(public), hide_index=True, width="stretch", height=260)
    st.download_button("CSV: scenarios", public.to_csv(index=False), f"scenarios_{key[:8]}.csv", "text/csv",
                       key="dl_scenes")
    if view.empty:
        st.info("No scenario matches the filters.")
        return
    ids = view["id"].tolist()
    if st.session_state.get("scene") not in ids:
        st.session_state["scene"] = ids[0]
    sid = st.selectbox("scene for the replay", ids, key="scene")
    r = view[view["id"] == sid].iloc[0]
    scene, err = data.load_scene(run, int(r["row"]))
    traj, terr = data.load_traj(run, key, int(r["pos"]))
    for e in (err, terr):
        if e:
            st.warning(e)
    if scene is not None:
        st.plotly_chart(figures.replay_figure(scene, traj, label=str(ck.loc[key, "name"])), key="replay_chart")


def seed_view_state(names: list[str], latest: str | None) -> list[str]:
    """Seed the view's session state from the URL (``qp_default``) and repair values that are no longer valid.

    Every value is written back on every run, valid or not: a widget drawn only in one tab (the what-if editor's,
    the correlation metric, the scene filters) would otherwise lose its value when the user leaves that tab
    (Streamlit drops an undrawn widget's state and the value seeded at the session's start comes back).

    Returns:
        One line per run or metric that was asked for (URL or session) and does not exist, saying what is shown.
    """
    notices = []
    qp_default("run", latest if latest in names else names[0])
    if st.session_state["run"] not in names:
        shown = latest if latest in names else names[0]
        notices.append(f"Run `{st.session_state['run']}` is not in the runs folder (deleted or renamed?): showing "
                       f"`{shown}`.")
        st.session_state["run"] = shown
    qp_default("metric", "score")
    if st.session_state["metric"] not in METRICS:
        notices.append(f"Metric `{st.session_state['metric']}` is not one of the closed-loop metrics: showing "
                       "`score`.")
        st.session_state["metric"] = "score"
    qp_default("corr_metric", st.session_state["metric"])
    st.session_state["corr_metric"] = (st.session_state["corr_metric"] if st.session_state["corr_metric"] in METRICS
                                       else st.session_state["metric"])
    qp_default("window", 1, int)  # window 1 with "max": the standard rule, the same pick as chart and verdict
    st.session_state["window"] = min(100, max(1, int(st.session_state["window"])))
    qp_default("mode", "max")
    st.session_state["mode"] = st.session_state["mode"] if st.session_state["mode"] in ("max", "min") else "max"
    qp_default("scene", None)
    st.session_state["scene"] = st.session_state["scene"]
    for k in ("f_family", "f_source", "f_failure"):
        qp_default(k, [], lambda v: [x for x in v.split(",") if x])
        st.session_state[k] = list(st.session_state[k])
    return notices


def draw_sidebar(names: list[str], latest: str | None, runs: list[data.RunRef], runs_dir: Path,
                 sets: tuple[data.ResultSet, ...] = ()) -> None:
    """The run, scenario-set and metric pickers (their values are already in the session state: see
    :func:`seed_view_state` and :func:`seed_result_set`). The scenario-set picker shows when the run has several
    results files: one is shown at a time, never pooled."""
    with st.sidebar:
        st.selectbox("run", names, key="run", format_func=lambda n: n + (" (latest)" if n == latest else "")
                     + ("" if runs[names.index(n)].has_results else " - no results"))
        if len(sets) > 1:
            labels = {s.path.name: s.label for s in sets}
            st.selectbox("scenario set", list(labels), key="results", format_func=labels.__getitem__)
        st.selectbox("closed-loop metric", METRICS, key="metric")
        st.caption(f"runs folder: `{runs_dir}`")


def seed_result_set(sets: tuple[data.ResultSet, ...]) -> str | None:
    """The chosen results file's name (URL ``results``; the run's first file when absent or not the run's)."""
    names = [s.path.name for s in sets]
    if not names:
        return None
    qp_default("results", names[0])
    if st.session_state["results"] not in names:
        st.session_state["results"] = names[0]
    return st.session_state["results"]


def select_and_mark(rows: table.Rows, rr: run_roles.RunRoles, run_name: str,
                    metric: str) -> tuple[str | None, dict[str, str | None]]:
    """The selected checkpoint key (``st.session_state[SEL]``: kept across reruns; a new run starts on its
    best-entropy checkpoint or the URL's ``ckpt``; a chart click moves it) and the charts' marks, role -> key."""
    declared, after_ep = tuple(rr.declared), rr.after_episode
    valid = set(rows.keys)
    if st.session_state.get("_ckpt_run") != run_name:  # a new run: start from its best-entropy checkpoint
        st.session_state["_ckpt_run"] = run_name
        qp = st.query_params.get("ckpt")
        if st.session_state.get(SEL) not in valid:
            st.session_state[SEL] = qp if qp in valid else table.role_key(rows, "best_entropy", declared, after_ep)
    take_selection(("entropy_chart", "metrics_chart", "scatter_chart"), valid)
    if st.session_state.get(SEL) not in valid:
        st.session_state[SEL] = table.role_key(rows, "best_entropy", declared, after_ep) or (
            next(iter(valid)) if valid else None)
    selected = st.session_state.get(SEL)
    marks = {r: table.role_key(rows, r, declared, after_ep) for r in ("best_entropy", "last", "best_reward")}
    marks["best"] = table.best_key(rows, metric) if metric in rows else None
    if "best_entropy" not in declared:  # no role file: the rule's pick, labelled as such
        marks["max_entropy"] = marks.pop("best_entropy")
    if rr.partial_line():
        marks["best_so_far"] = marks.pop("best")
    return selected, marks


def main(frame: PageFrame) -> None:
    """The page below ``frame``'s title: read the run, then draw the sidebar, notes, charts and the open tab."""
    cfg = parse_args(sys.argv[1:])
    problem = data.runs_dir_problem(cfg.runs_dir)
    if problem:
        frame.clear()
        frame.notes.error(problem)
        return
    runs = data.list_runs(cfg.runs_dir)
    if not runs:
        frame.clear()
        frame.notes.info(f"No runs under `{cfg.runs_dir.resolve()}` yet. Train one, then evaluate it:\n\n"
                         f"`{data.TRAIN_CMD}`\n\n`{data.EVAL_CMD}`\n\n(or point the dashboard elsewhere: "
                         f"`streamlit run dashboard/app.py -- --runs-dir DIR`)")
        return
    names = [r.name for r in runs]
    latest = data.latest_run_name(cfg.runs_dir)
    notices = seed_view_state(names, latest)
    run_name, metric = st.session_state["run"], st.session_state["metric"]  # the sidebar's, drawn below
    others = [n for n in names if n != run_name and runs[names.index(n)].has_results]  # what can be overlaid
    qp_default("overlay", [], lambda s: [x for x in s.split(",") if x])
    st.session_state["overlay"] = [x for x in st.session_state["overlay"] if x in others]

    # Load and decide first, then send the page in one burst: elements that reach the browser one by one while
    # the server reads are drawn one frame each, before Plotly's code can run (about 0.2 s of a first paint).
    sets = data.result_sets(runs[names.index(run_name)])
    try:
        run = data.load_run(runs[names.index(run_name)], seed_result_set(sets))
        qp_default("after", int((run.history or {}).get("select_after") or 0), int)  # the trainer's own rule
        st.session_state["after"] = max(0, int(st.session_state["after"]))
        rows, rr = run_roles.apply_run_roles(data.checkpoint_rows(run.summary), run.ref.path,
                                             run.summary.attrs if run.summary else None)  # pandas-free: first paint
        selected, marks = select_and_mark(rows, rr, run_name, metric)
        kind = run_kind(run.summary)
        ans = build_answer(rows, metric, run.summary.verdict, rr,
                           lambda keys, m: data.per_scene_matrix(run.summary, keys, m), kind
                           ) if run.summary is not None and len(rows) else None
        entropy_fig = figures.entropy_figure(rows, metric, run.history, int(st.session_state["window"]), marks,
                                             selected, kind)
        metrics_fig = figures.metrics_figure(rows, data.MAIN_METRICS, selected,
                                             marks.get("best", marks.get("best_so_far")), kind) if len(rows) else None
    except Exception:  # an unforeseen fault in this run's files: keep the run picker, drop the empty frames
        frame.clear()
        draw_sidebar(names, latest, runs, cfg.runs_dir, sets)
        raise
    valid = set(rows.keys)

    draw_sidebar(names, latest, runs, cfg.runs_dir, sets)
    if ans is not None:
        draw_answer(ans, metric, kind, frame.answer,
                    run.summary.experiment.metrics_version if run.summary and run.summary.experiment else "")
    for line in notices:
        frame.notes.warning(line)
    show_problems(run, frame.notes)
    entropy_caveat(run, frame.notes, kind)
    frame.entropy.plotly_chart(entropy_fig, key="entropy_chart", on_select="rerun", selection_mode="points")
    perdim = frame.left.expander("per-dimension entropy and sigma", key="perdim", on_change="rerun")
    if perdim.open:  # built only when opened
        with perdim:
            st.plotly_chart(figures.per_dim_figure(rows, run.history), key="perdim_chart")
    if metrics_fig is not None:
        frame.metrics.plotly_chart(metrics_fig, key="metrics_chart", on_select="rerun", selection_mode="points")
    else:
        frame.metrics.empty()
    if run.summary is None or rows.empty:
        sync_url(run_name, metric, selected)
        return
    if run.summary.skipped:  # scenes sim.evaluate could not use, with its one-line reasons
        with st.expander(f"{len(run.summary.skipped)} scene(s) skipped by sim.evaluate", key="skipped"):
            skipped = [vars(s) for s in run.summary.skipped]
            st.dataframe({k: [s[k] for s in skipped] for k in skipped[0]}, hide_index=True)
    if selected in valid:
        h = rows.get(selected, "entropy")
        ent = f"entropy {h:.3f} nats" if math.isfinite(h) else "no entropy logged"  # plug-ins without --signals
        st.caption(f"Selected: **{rows.get(selected, 'name')}** ({kind.step_unit} {rows.get(selected, 'episode')}, "
                   f"{ent})")
    # Tabs run lazily (only the open one is computed and sent) and the open tab is kept in the URL (?view=).
    # The first two are pandas-free; the others import pandas when opened (ck_frame). The what-if editor has its
    # own tab: its widgets cost the first paint about 0.1 s in the browser (benchmarks/dashboard_paint.py).
    tabs = st.tabs(list(VIEWS), key="view", bind="query-params")
    with tabs[0]:
        if tabs[0].open:
            report_card_view(ans, rr, run.results_path)
    with tabs[1]:
        if tabs[1].open:
            what_if_view(rows, metric, run.history, partial=bool(rr.partial_line()), unit=kind.step_unit)
    ck = rows.frame  # called by the one open view that needs a pandas frame
    with tabs[2]:
        if tabs[2].open:
            correlation_view(run, ck(), metric)
    with tabs[3]:
        if tabs[3].open:
            scenes_view(run, ck())
    with tabs[4]:
        if tabs[4].open:
            overlay_view(runs, names, run_name, ck(), metric, others)
    with tabs[5]:
        if tabs[5].open:
            shown = plain_table(ck())
            st.dataframe(table.shown(shown), width="stretch")
            st.download_button("CSV: checkpoints", shown.to_csv(), "checkpoints.csv", "text/csv", key="dl_ck")
    with tabs[6]:
        if tabs[6].open:
            from dashboard.signals_view import signals_view

            signals_view(run.results_path, metric)
    with tabs[7]:  # the field's statistics and the verdict per scenario type (dashboard/stats_view.py)
        if tabs[7].open:
            from dashboard.stats_view import stats_view

            stats_view(run.summary.verdict, metric)
    sync_url(run_name, metric, st.session_state.get(SEL))


def plain_table(ck: pd.DataFrame) -> pd.DataFrame:
    """The checkpoint table as shown and exported: roles as plain names (``best_entropy bc``), no tuples; a metric
    that applies to no scene (NaN throughout: the map lacks its semantic) reads ``n/a``."""
    shown = ck.drop(columns=["entropy_per_dim", "files", "scenario_id"], errors="ignore").copy()
    shown["roles"] = [" ".join(r for r in roles if r != "candidate") for roles in shown["roles"]]
    for m in METRIC_NAMES:
        if m in shown and len(shown) and shown[m].isna().all():
            shown[m] = "n/a"
    return shown


def overlay_view(runs: list[data.RunRef], names: list[str], run_name: str, ck: pd.DataFrame, metric: str,
                 others: list[str]) -> None:
    """Other runs' (seeds') entropy and metric curves over this run's; ``others``: the runs that can be overlaid."""
    overlay = st.multiselect("overlay runs / seeds", others, key="overlay")  # its own tab: not built at first paint
    if not overlay:
        st.info("Choose runs or seeds to overlay ('overlay runs / seeds' above).")
        return
    frames = {run_name: ck}
    for name in overlay:
        other = data.load_run(runs[names.index(name)])
        if other.summary is not None:
            frames[name] = data.checkpoint_frame(other.summary)
    st.plotly_chart(figures.overlay_figure(frames, metric), key="overlay_chart")
    from dashboard.across_view import across_section

    across_section([(n, runs[names.index(n)].path) for n in [run_name, *overlay]], metric)


def sync_url(run_name: str, metric: str, ckpt: str | None) -> None:
    """Write the view into the URL query parameters so it can be shared (``view`` is bound to the tabs)."""
    overlay = st.session_state.get("overlay") or []
    qp = {"run": run_name, "metric": metric, "window": str(st.session_state.get("window", 1)),
          "mode": st.session_state.get("mode", "max"), "after": str(st.session_state.get("after", 0)),
          "corr_metric": st.session_state.get("corr_metric", metric), "ckpt": ckpt or "",
          "scene": st.session_state.get("scene") or "", "overlay": ",".join(overlay),
          "results": "" if st.session_state.get("results") == data.RESULTS_NAME else st.session_state.get("results")}
    for k in ("f_family", "f_source", "f_failure"):
        qp[k] = ",".join(st.session_state.get(k) or [])
    for k in [k for k, v in qp.items() if not v and k in st.query_params]:
        del st.query_params[k]
    changed = {k: v for k, v in qp.items() if v and st.query_params.get(k) != v}
    if changed:  # one message to the browser (each single assignment sends one)
        st.query_params.update(changed)


main(FRAME)
