"""A shareable report of one experiment: one self-contained HTML file (figures inline as SVG, no server, no script).

``python -m sim.report RUN_DIR [--out report.html]`` writes it; the dashboard offers the same bytes as a download.
What it holds, for a paper's appendix or a pull request: the verdict sentence, the report card (each selection
rule's pick, rank and regret), the closed-loop table (mean or rate with its 95 % interval over scenarios,
:func:`sim.selection.report.metric_interval`), the entropy curve next to the judged metric per checkpoint, one small
figure per table metric, the per-scenario-type breakdown when the verdict has one, the ranking of every training
signal (entropy first; ``sim.evaluate --signals``) when the results file holds one, the skipped scenes and the
settings that identify the experiment. Torch-free (matplotlib, numpy, h5py through the results reader).
"""

from __future__ import annotations

import html
import io
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.commands import command
from sim.metrics.catalogue import CARD_DECIMALS, SPECS, TABLE_METRICS
from sim.results.errors import ResultsError
from sim.results.reader import (
    StoredCheckpoint,
    read_checkpoints,
    read_root_attrs,
    read_scenarios,
    read_signal_verdict,
    read_verdict,
)
from sim.results.run_folder import HISTORY_FILE, RESULTS_NAME, step_unit, stored_agent
from sim.selection.report import summary_rows
from sim.selection.signal_table import headline_sentence, ranking_table
from sim.selection.stats import type_table_rows

FIG_SIZE = (6.4, 3.0)  # inches; SVG scales with the page
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d1d1f}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.verdict{font-size:1.1em;background:#f3f6fb;border-left:4px solid #3867d6;padding:.7em 1em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} th,td{padding:.25em .6em;border-bottom:1px solid #eee;
text-align:right;white-space:nowrap} th:first-child,td:first-child{text-align:left} .muted{color:#777;font-size:.85em}
.figs{display:flex;flex-wrap:wrap;gap:.5em} .figs svg{width:540px;height:auto}
"""


@dataclass(frozen=True)
class ReportInfo:
    """What :func:`write_report` wrote: ``path``, ``bytes`` (file size) and ``seconds`` it took."""

    path: Path
    bytes: int
    seconds: float


def results_path(run: Path) -> Path:
    """The results file of ``run`` (a run folder, or a results file itself).

    Raises:
        ResultsError: one line naming the path when there is no results file.
    """
    p = Path(run)
    f = p / RESULTS_NAME if p.is_dir() else p
    if not f.is_file():
        raise ResultsError(f"{run}: no {RESULTS_NAME} (run {command('python -m sim.evaluate', '--run', run)} first)")
    return f


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float | np.floating):
        return "n/a" if not math.isfinite(float(v)) else f"{float(v):.{digits}f}"
    return html.escape(str(v))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    s = buf.getvalue()
    return s[s.index("<svg"):]  # drop the XML prolog and doctype: inline SVG


def _axes(title: str, xlabel: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=FIG_SIZE)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _checkpoint_rows(stored: Sequence[StoredCheckpoint], ids: Sequence[str]) -> list[dict[str, Any]]:
    rows = [r for r in summary_rows(stored, ids) if r["kind"] == "checkpoint"]
    return sorted(rows, key=lambda r: (r["episode"], r["name"]))


def entropy_figure(history: Mapping[str, Any] | None, rows: Sequence[Mapping[str, Any]], metric: str,
                   picks: Mapping[str, str], unit: str = "episode") -> str:
    """SVG: policy entropy (nats, linear axis: it can be negative) and the judged metric per checkpoint, by step.

    Args:
        history: ``entropy_history.json`` (``episodes``, ``entropy``) or None. rows: checkpoint rows of
            :func:`_checkpoint_rows`. metric: the judged metric. picks: rule -> picked checkpoint name.
        unit: what the checkpoints' step counts (:func:`sim.results.run_folder.step_unit`), the x axis' title.
    """
    fig, ax = _axes(f"Entropy and closed-loop {metric}", unit, "policy entropy (nats)")
    if history and history.get("episodes"):
        ax.plot(history["episodes"], history["entropy"], color="#3867d6", lw=1.2, label="entropy")
    else:
        ep = [r["episode"] for r in rows]
        ax.plot(ep, [r["entropy"] for r in rows], "o-", color="#3867d6", lw=1.2, label="entropy")
    ax2 = ax.twinx()
    ep = [r["episode"] for r in rows]
    mean = np.array([r[metric][0] for r in rows])
    lo = np.array([r[metric][1] for r in rows])
    hi = np.array([r[metric][2] for r in rows])
    ax2.errorbar(ep, mean, yerr=[mean - lo, hi - mean], fmt="s", ms=4, color="#e17055", capsize=2,
                 label=f"{metric} [95% interval]")
    ax2.set_ylabel(SPECS[metric].axis_title if metric in SPECS else metric)
    by_name = {r["name"]: r for r in rows}
    for rule, name in picks.items():
        r = by_name.get(name)
        if r is not None and math.isfinite(r[metric][0]):
            ax2.annotate(rule, (r["episode"], r[metric][0]), textcoords="offset points", xytext=(0, 8), fontsize=7,
                         ha="center")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="best")
    return _svg(fig)


def metric_figure(rows: Sequence[Mapping[str, Any]], metric: str, unit: str = "episode") -> str:
    """SVG: one table metric per checkpoint by step (``unit``: what it counts) with its 95 % interval."""
    spec = SPECS[metric]
    fig, ax = _axes(spec.label, unit, spec.axis_title)
    ep = [r["episode"] for r in rows]
    mean = np.array([r[metric][0] for r in rows])
    lo = np.array([r[metric][1] for r in rows])
    hi = np.array([r[metric][2] for r in rows])
    ok = np.isfinite(mean)
    if ok.any():
        ax.fill_between(np.asarray(ep)[ok], lo[ok], hi[ok], alpha=0.2, color="#636e72")
        ax.plot(np.asarray(ep)[ok], mean[ok], "o-", ms=3, color="#2d3436")
    else:
        ax.text(0.5, 0.5, "not applicable in these scenes", ha="center", va="center", transform=ax.transAxes)
    return _svg(fig)


def _rules_table(verdict: Mapping[str, Any], unit: str = "episode") -> str:
    rows = []
    for name, e in (verdict.get("rules") or {}).items():
        if e is None:
            rows.append((name, "n/a", "", "", "", ""))
        elif name == "random":
            expected = f"{_fmt(e.get('expected_regret', math.nan), CARD_DECIMALS)} (expected)"
            rows.append((name, "uniform", "", _fmt(e.get("value"), CARD_DECIMALS), "", expected))
        else:
            rows.append((name, e.get("name"), e.get("episode"), _fmt(e.get("value"), CARD_DECIMALS), e.get("rank"),
                         _fmt(e.get("regret"), CARD_DECIMALS)))
    return _table(("rule", "picks", unit, verdict.get("metric", "score"), "rank", "regret"), rows)


def _per_type(verdict: Mapping[str, Any]) -> str:
    """The verdict per scenario type (``by_type``: :func:`sim.selection.stats.type_table_rows`) and its sentence."""
    bt = verdict.get("by_type")
    if not bt or not bt.get("types"):
        return "<p class='muted'>No per-scenario-type breakdown in this results file.</p>"
    header, rows = type_table_rows(bt)
    note = (f"<p>Regret by {html.escape(str(bt.get('metric')))} (rank); no verdict below {bt.get('min_scenes')} "
            f"scenes. {html.escape(str(bt.get('sentence', '')))}</p>")
    return note + _table(header, rows)


def _markdown(text: str) -> str:
    """HTML of a sentence with Markdown emphasis (``**bold**``, backticks): escaped, then the two marks."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _signals(v: Mapping[str, Any] | None) -> str:
    """The stored verdict over every training signal (:func:`sim.results.reader.read_signal_verdict`): the
    headline sentence and one row per signal with both of its rules (:func:`sim.selection.signal_table`)."""
    if not v or not v.get("ranking"):
        return ("<p class='muted'>No training signals judged in this results file (<code>python -m sim.evaluate "
                "--signals LOG</code>; a run of this project's trainer uses its entropy_history.json).</p>")
    cols = ranking_table(v)
    for r in ("max", "min"):  # regrets in the report card's decimals (as the card above and the dashboard)
        cols[f"{r}: regret"] = [_fmt(x, CARD_DECIMALS) for x in cols[f"{r}: regret"]]
    rows = list(zip(*cols.values()))
    notes = "".join(f"<p class='muted'>{html.escape(str(n))}</p>" for n in v.get("notes", []))
    return f"<p>{_markdown(headline_sentence(v))}</p>" + _table(tuple(cols), rows) + notes


def _closed_loop_table(rows: Sequence[Mapping[str, Any]], unit: str = "episode") -> str:
    def cell(t):
        m, lo, hi = t
        return "n/a" if not math.isfinite(m) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"

    out = [(r["name"], r["episode"], r["entropy"], ",".join(x for x in r["roles"] if x != "candidate"),
            *(cell(r[m]) for m in TABLE_METRICS)) for r in rows]
    return _table(("checkpoint", unit, "entropy", "roles", *(SPECS[m].label for m in TABLE_METRICS)), out)


def build_report(run: Path) -> str:
    """The report of ``run`` (a run folder or its results file) as one HTML string.

    Raises:
        ResultsError: one line when the results file is missing or unreadable.
    """
    res = results_path(run)
    run_dir = res.resolve().parent
    attrs, _ = read_root_attrs(res)
    stored = read_checkpoints(res)
    scen = read_scenarios(res)
    ids = [s.id for s in scen]
    verdict = read_verdict(res) or {}
    try:
        signals, signals_error = read_signal_verdict(res), ""
    except ResultsError as e:  # the rest of the report stands; the section says what is wrong
        signals, signals_error = None, str(e).splitlines()[0]
    metric = verdict.get("metric", "score")
    history = None
    hp = run_dir / HISTORY_FILE
    if hp.is_file():
        try:
            history = json.loads(hp.read_text())
        except (OSError, ValueError):
            history = None
    rows = _checkpoint_rows(stored, ids)
    unit = step_unit(stored_agent(s.record.eval_info for s in stored if s.record.kind == "checkpoint"))
    picks = {k: e["name"] for k, e in (verdict.get("rules") or {}).items() if e and "name" in e}
    figs = [entropy_figure(history, rows, metric, picks, unit)] if rows and metric in rows[0] else []
    figs += [metric_figure(rows, m, unit) for m in TABLE_METRICS if rows]
    title = f"driveselect report: {run_dir.name}"
    scen_set = attrs.get("suite") or attrs.get("scenario_set") or ""
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='muted'>{len(rows)} checkpoints, {len(ids)} scenarios ({html.escape(str(scen_set))}), "
        f"judged by {html.escape(metric)}; written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>",
        f"<h2>Verdict</h2><p class='verdict'>{html.escape(verdict.get('sentence', 'No verdict stored yet.'))}</p>",
        "<h2>Report card</h2>" + (_rules_table(verdict, unit) if verdict else "<p>No verdict.</p>"),
        "<h2>Closed loop: mean [95% interval] over scenarios</h2>" + _closed_loop_table(rows, unit),
        "<h2>Figures</h2><div class='figs'>" + "".join(figs) + "</div>",
        "<h2>Per scenario type</h2>" + _per_type(verdict),
        "<h2>Training signals: which one picks the best checkpoint</h2>" + (
            f"<p class='muted'>Unreadable: {html.escape(signals_error)}</p>" if signals_error else _signals(signals)),
    ]
    skipped = verdict.get("skipped") or []
    if skipped:
        parts.append("<h2>Skipped</h2><ul>" + "".join(f"<li>{html.escape(str(s))}</li>" for s in skipped) + "</ul>")
    settings = {k: attrs[k] for k in ("backend", "suite", "settings", "settings_digest", "metrics_version",
                                      "tool_version", "schema_version", "created", "updated") if k in attrs}
    parts.append("<h2>Experiment</h2><pre>" + html.escape(json.dumps(settings, indent=1, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run: Path, out: Path | None = None) -> ReportInfo:
    """Write the report of ``run`` to ``out`` (default ``<run>/report.html``), atomically.

    Raises:
        ResultsError: no readable results file. OSError: ``out`` cannot be written (the caller says so in one line).
    """
    t0 = time.perf_counter()
    text = build_report(run)
    res = results_path(run)
    out = Path(out) if out is not None else res.parent / "report.html"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return ReportInfo(out, out.stat().st_size, time.perf_counter() - t0)
