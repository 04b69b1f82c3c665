"""Dashboard first paint in a real headless Chromium against ``streamlit run``.

``python -m benchmarks.dashboard_paint`` writes a fixture run (20 checkpoints x 500 scenes by default), starts
``streamlit run dashboard/app.py -- --runs-dir TMP`` on a free port, loads the page in Chromium (Playwright,
``/usr/bin/chromium``) and prints one JSON line:
``first_paint_s`` (fresh server, empty cache: navigation start until the frame that first shows the entropy and
metrics charts drawn and visible, ``PAINT_CLOCK_JS``)
and ``first_paint_warm_s`` (median of later page loads, cache hit). The helpers here are also used by the
browser test (tests/dashboard/test_browser.py).

``breakdown`` / ``floor_breakdown`` split each cold first paint (seconds from navigation start): ``ws_open_s``
(the page's websocket is open: the script starts), ``chart_sent_s`` (the browser asks for Plotly's code: the first
chart element has arrived), ``plotly_loaded_s`` (that code is downloaded) and ``painted_s``. ``chart_sent_s -
ws_open_s`` is the server's share (imports, reads, figure building before the first chart); ``painted_s -
plotly_loaded_s`` is the browser's (Plotly's code evaluated, the figures and every other element drawn).
``polled_s`` is when a 50 ms poll first saw the charts (the measure before the paint clock, see ``PAINT_CLOCK_JS``);
``ratio_polled`` compares those.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.dashboard_paint", "python -m benchmarks.dashboard_paint")

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks import cli

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Charts drawn = Plotly has laid out at least this many plots with a drawn point or line in their SVG, and the plot is
# visible (2: the entropy curve and the closed-loop metrics beside it, the top of the page). A plot with no point
# drawn does not count, nor one still hidden (Streamlit draws a chart once with `visibility: hidden` until it knows
# the column's width).
PAINTED_JS = """(n) => {
  const plots = document.querySelectorAll('.js-plotly-plot');
  let drawn = 0;
  for (const p of plots) {
    if (p._fullLayout && p.querySelector('.main-svg .scatterlayer .trace :is(.point, .js-line)')
        && p.checkVisibility({visibilityProperty: true, checkVisibilityCSS: true})) drawn += 1;
  }
  return drawn >= n;
}"""
# The paint clock: a MutationObserver checks PAINTED_JS whenever the page's DOM changes and, the first time it holds,
# stamps the start of the next animation frame (the frame that shows the charts). Polling PAINTED_JS instead would
# also count the wait for the page's next idle moment (a poll cannot run during the long tasks that often follow the
# charts, such as Plotly's relayout to the column's width): 50-150 ms of noise that is not paint.
PAINT_CLOCK_JS = """(n) => {
  const drawn = """ + PAINTED_JS + """;
  window.__chartsPainted = undefined;
  let pending = false;
  const check = () => {
    if (pending || !drawn(n)) return;
    pending = true;
    obs.disconnect();
    requestAnimationFrame(() => { window.__chartsPainted = performance.now(); });
  };
  const obs = new MutationObserver(check);
  obs.observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ['style']});
  check();
}"""


# Installed in every page before its own scripts: the time the app's websocket opens (the script run starts then).
WS_OPEN_JS = """(() => {
  const WS = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new WS(...args);
    ws.addEventListener('open', () => { window.__wsOpen = window.__wsOpen ?? performance.now(); });
    return ws;
  };
  window.WebSocket.prototype = WS.prototype;
  Object.assign(window.WebSocket, WS);
})();"""
BREAKDOWN_JS = """() => {
  const p = performance.getEntriesByType('resource').find(e => e.name.includes('/PlotlyChart.'));
  return {ws_open: window.__wsOpen ?? null, chart_sent: p ? p.startTime : null,
          plotly_loaded: p ? p.responseEnd : null};
}"""


class DashboardServeError(Exception):
    """``streamlit run`` did not come up (message names the port and the log tail)."""


@dataclass(frozen=True)
class PaintConfig:
    """Benchmark settings. checkpoints x scenes: fixture size. repeats: warm page loads. timeout_s: per load."""

    checkpoints: int = 20
    scenes: int = 500
    repeats: int = 3
    timeout_s: float = 60.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FLOOR_APP = """import plotly.graph_objects as go
import streamlit as st
st.title("floor")
st.plotly_chart(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), key="a")
st.plotly_chart(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), key="b")
"""


@contextlib.contextmanager
def serve(runs_dir: Path, port: int | None = None, timeout_s: float = 60.0, app: Path = APP) -> Iterator[str]:
    """Run ``streamlit run APP -- --runs-dir runs_dir`` headless (APP: the dashboard); yields its base URL.

    Raises:
        DashboardServeError: the health endpoint did not answer ``ok`` within ``timeout_s``.
    """
    port = port or free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless=true", f"--server.port={port}",
           "--server.address=127.0.0.1", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
           "--", "--runs-dir", str(runs_dir)]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-500:]
                raise DashboardServeError(f"streamlit on port {port} did not come up: {tail}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def launch(playwright):
    """Headless Debian Chromium with the flags that avoid blocked network calls."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def load_and_clock(page, url: str, n_charts: int = 2, timeout_s: float = 60.0) -> tuple[float, float]:
    """Navigate to ``url``; return (seconds from navigation start until the frame that first shows ``n_charts`` drawn
    Plotly charts (:data:`PAINT_CLOCK_JS`), seconds until a 50 ms poll of the page first sees them)."""
    page.goto(url, wait_until="commit")
    page.evaluate(PAINT_CLOCK_JS, n_charts)
    page.wait_for_function("() => window.__chartsPainted !== undefined", timeout=timeout_s * 1000, polling=50)
    clock, polled = page.evaluate("[window.__chartsPainted, performance.now()]")
    return float(clock) / 1000.0, float(polled) / 1000.0


def load_and_time(page, url: str, n_charts: int = 2, timeout_s: float = 60.0) -> float:
    """Navigate to ``url`` and return seconds until the frame that first shows ``n_charts`` drawn Plotly charts."""
    return load_and_clock(page, url, n_charts, timeout_s)[0]


def breakdown(page, painted_s: float) -> dict[str, float | None]:
    """Where a page load's time went (see the module docstring); needs ``WS_OPEN_JS`` installed in the page."""
    b = page.evaluate(BREAKDOWN_JS)
    s = {k: (None if v is None else round(float(v) / 1000.0, 3)) for k, v in b.items()}
    return {"ws_open_s": s["ws_open"], "chart_sent_s": s["chart_sent"], "plotly_loaded_s": s["plotly_loaded"],
            "painted_s": round(painted_s, 3)}


def _paint_times(url: str, repeats: int, timeout_s: float) -> tuple[float, float, dict]:
    """(first load on a fresh server and browser, median of ``repeats`` later loads in the same browser,
    the first load's :func:`breakdown` with ``polled_s``, when a 50 ms poll first saw the charts)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
            ctx.add_init_script(WS_OPEN_JS)
            first = ctx.new_page()
            cold, polled = load_and_clock(first, url, timeout_s=timeout_s)
            split = {**breakdown(first, cold), "polled_s": round(polled, 3)}
            warm = []
            for _ in range(repeats):  # a returning visitor: data cache and browser cache warm
                page = ctx.new_page()
                warm.append(load_and_time(page, url, timeout_s=timeout_s))
                page.close()
        finally:
            browser.close()
    return cold, statistics.median(warm), split


def measure(cfg: PaintConfig) -> dict[str, float | int | dict]:
    """Write the fixture, serve it, and time a cold and ``repeats`` warm first paints.

    Also times the same two-chart paint of a trivial Streamlit page (``floor_*``): what Streamlit and Plotly
    alone cost on this machine under its current load, to read the dashboard's numbers against.
    """
    from benchmarks.fixture_runs import FixtureSpec, write_run

    with tempfile.TemporaryDirectory() as tmp:
        write_run(Path(tmp), FixtureSpec(name="bench", n_checkpoints=cfg.checkpoints, n_scenes=cfg.scenes, steps=91))
        with serve(Path(tmp), timeout_s=cfg.timeout_s) as url:
            cold, warm, split = _paint_times(url, cfg.repeats, cfg.timeout_s)
        floor_app = Path(tmp) / "floor_app.py"
        floor_app.write_text(FLOOR_APP)
        with serve(Path(tmp), timeout_s=cfg.timeout_s, app=floor_app) as url:
            f_cold, f_warm, f_split = _paint_times(url, cfg.repeats, cfg.timeout_s)
    load1 = os.getloadavg()[0]
    return {"first_paint_s": round(cold, 3), "first_paint_warm_s": round(warm, 3),
            "floor_first_paint_s": round(f_cold, 3), "floor_first_paint_warm_s": round(f_warm, 3),
            "ratio": round(cold / f_cold, 3), "ratio_warm": round(warm / f_warm, 3),
            "ratio_polled": round(split["polled_s"] / f_split["polled_s"], 3),
            "checkpoints": cfg.checkpoints, "scenes": cfg.scenes, "cpus": os.cpu_count(),
            "load_avg_1min": round(load1, 2), "breakdown": split, "floor_breakdown": f_split}


@cli.one_line_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: print one JSON line with ``first_paint_s`` (bad input: one line on stderr, exit status 2)."""
    d = PaintConfig()
    ap = cli.parser("python -m benchmarks.dashboard_paint", "Dashboard first paint in headless Chromium.")
    cli.flag(ap, "--checkpoints", "checkpoints of the fixture run", default=d.checkpoints, type=int,
             range=cli.at_least(1))
    cli.flag(ap, "--scenes", "scenes of the fixture run", default=d.scenes, type=int, range=cli.at_least(1))
    cli.flag(ap, "--repeats", "warm page loads (their median is first_paint_warm_s)", default=d.repeats, type=int,
             range=cli.at_least(1))
    a = ap.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} not found (install it: apt-get install chromium, or `make browser`)",
              file=sys.stderr)
        return 2
    try:
        res = measure(PaintConfig(checkpoints=a.checkpoints, scenes=a.scenes, repeats=a.repeats))
    except DashboardServeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(res))
    return 0
