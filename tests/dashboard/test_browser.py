"""End to end: `streamlit run dashboard/app.py` in a real headless Chromium (Playwright + /usr/bin/chromium).

The page loads and draws its charts, the run picker switches runs, a click on a checkpoint of the entropy curve
selects it everywhere (URL and caption), and screenshots are kept under test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from benchmarks.dashboard_paint import CHROMIUM, PAINTED_JS, launch, load_and_time, serve
from benchmarks.fixture_runs import FixtureSpec, write_run
from sim.results.reader import read_summary

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`make browser`) to run browser tests",
                allow_module_level=True)

# Page position of checkpoint j of the entropy chart's "checkpoints" trace, and its key.
POINT_JS = """([j]) => {
  const gd = document.querySelectorAll('.js-plotly-plot')[0];
  const i = gd.data.findIndex(t => t.name === 'checkpoints');
  const pt = gd.querySelectorAll('.scatterlayer .trace')[i].querySelectorAll('path.point')[j];
  const r = pt.getBoundingClientRect();
  return {x: r.x + r.width / 2, y: r.y + r.height / 2, key: gd.data[i].customdata[j]};
}"""


def query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_run(root, FixtureSpec(name="run-b", seed=1, n_checkpoints=6, n_scenes=30))
    write_run(root, FixtureSpec(name="run-a", seed=0, n_checkpoints=20, n_scenes=500, steps=91))  # paint budget size
    return root


def test_page_loads_picker_and_click(runs):
    ARTIFACTS.mkdir(exist_ok=True)
    summ = read_summary(runs / "run-a" / "results.h5")
    with serve(runs) as url, sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            ctx = browser.new_context(viewport={"width": 1600, "height": 1100})
            cold_s = load_and_time(ctx.new_page(), url)  # fresh server: imports and the HDF5 read included
            page = ctx.new_page()
            paint_s = load_and_time(page, url)  # cached, keyed on the file's modification time
            page.get_by_text("Does the max-entropy checkpoint drive best?").wait_for()
            assert page.locator(".js-plotly-plot").count() >= 2
            assert query(page)["run"] == "run-a"  # opened on out/latest
            page.screenshot(path=str(ARTIFACTS / "dashboard_loaded.png"), full_page=True)

            # a click on a checkpoint that carries no other mark selects it everywhere
            marked = set(page.evaluate(
                "() => document.querySelectorAll('.js-plotly-plot')[0].data"
                ".filter(t => t.name !== 'checkpoints').flatMap(t => t.customdata || [])"))
            j = next(j for j in range(20) if page.evaluate(POINT_JS, [j])["key"] not in marked)
            pt = page.evaluate(POINT_JS, [j])
            page.mouse.click(pt["x"], pt["y"])
            page.wait_for_function("(k) => location.search.includes('ckpt=' + k)", arg=pt["key"], timeout=30000)
            name = summ.checkpoints[pt["key"]].name
            page.get_by_text(re.compile(f"Selected: {re.escape(name)}")).wait_for(timeout=30000)
            page.screenshot(path=str(ARTIFACTS / "dashboard_clicked.png"), full_page=True)

            # the replay tab draws an animated bird's-eye view of the selected checkpoint
            page.get_by_role("tab", name="Scenarios & replay").click()
            page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some("
                                   "p => (p._transitionData?._frames || []).length > 0)", timeout=30000)
            assert query(page)["view"] == "Scenarios & replay"
            page.locator(".js-plotly-plot").last.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "dashboard_replay.png"))

            # the run picker switches to the other run and the URL follows
            page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
            page.get_by_role("option", name=re.compile("^run-b")).click()
            page.wait_for_function("() => location.search.includes('run=run-b')", timeout=30000)
            page.wait_for_function(PAINTED_JS, arg=2, timeout=30000)
            page.screenshot(path=str(ARTIFACTS / "dashboard_run_b.png"), full_page=True)
            assert query(page)["ckpt"] in read_summary(runs / "run-b" / "results.h5").checkpoints
        finally:
            browser.close()
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    (ARTIFACTS / "dashboard_browser.json").write_text(json.dumps(
        {"first_paint_s": paint_s, "first_paint_cold_s": cold_s, "checkpoints": 20, "scenes": 500,
         "load_per_cpu": round(load, 2)}))
    # A guard against a pathological first paint only: its speed is measured by benchmarks/dashboard_paint.py
    # (ratio to a bare page, same run), not by a test. The answer block and the sixth metric row (nuplan_score) took
    # the cached paint from under 3 s to about 3.7 s on a quiet 2-core machine.
    if load < 1.0:  # on this CPU, not on this CPU shared by several busy processes
        assert paint_s <= 6.0, f"first paint {paint_s:.2f} s > 6 s (20 checkpoints x 500 scenes)"


# Page boxes of the verdict paragraph, the report card's table and the first two Plotly charts.
BOXES_JS = """() => {
  const box = e => { if (!e) return null; const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom}; };
  const verdict = [...document.querySelectorAll('[data-testid="stMarkdownContainer"] p')]
    .find(p => p.innerText.startsWith('Verdict'));
  const card = [...document.querySelectorAll('[data-testid="stMarkdownContainer"] table')]
    .find(t => t.innerText.startsWith('rule'));
  const charts = [...document.querySelectorAll('.js-plotly-plot')].map(box);
  return {verdict: box(verdict), verdictText: verdict ? verdict.innerText : '', card: box(card),
          cardText: card ? card.innerText : '', charts};
}"""
# Axis titles and legend entries of the entropy chart (the first), as drawn.
ENTROPY_TEXT_JS = """() => {
  const gd = document.querySelectorAll('.js-plotly-plot')[0];
  return {xtitle: gd.querySelector('.xtitle')?.textContent || '',
          legend: [...gd.querySelectorAll('.legendtext')].map(t => t.textContent),
          page: document.body.innerText};
}"""


@pytest.fixture(scope="module")
def answer_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("answer_runs")
    write_run(root, FixtureSpec(name="proj", seed=2, n_checkpoints=12, n_scenes=60))
    write_run(root, FixtureSpec(name="sb3", seed=3, n_checkpoints=8, n_scenes=40, agent="sb3"), link_latest=False)
    return root


def test_the_answer_comes_first_at_1400x900(answer_runs):
    """The verdict and the report card are drawn above the charts and inside the first 900 px; an SB3 run's
    entropy chart counts environment steps, names its files without role-file names, and the page carries no
    project-run note (screenshots kept under test-artifacts/)."""
    ARTIFACTS.mkdir(exist_ok=True)
    with serve(answer_runs) as url, sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            for run in ("proj", "sb3"):
                page.goto(f"{url}/?run={run}")
                page.wait_for_function(PAINTED_JS, arg=2, timeout=60000)
                page.get_by_text(re.compile("^Verdict")).first.wait_for(timeout=30000)
                shot = ARTIFACTS / f"answer_first_{run}.png"
                page.screenshot(path=str(shot))
                b = page.evaluate(BOXES_JS)
                assert b["verdict"] and b["card"], f"no verdict or card drawn (see {shot})"
                top_chart = min(c["top"] for c in b["charts"][:2])
                assert b["verdict"]["bottom"] <= top_chart and b["card"]["bottom"] <= top_chart, (b, str(shot))
                assert b["verdict"]["bottom"] <= 900 and b["card"]["bottom"] <= 900, (b, str(shot))
                assert "Max entropy picks" in b["verdictText"] and "Max entropy" in b["cardText"]
                t = page.evaluate(ENTROPY_TEXT_JS)
                if run == "sb3":
                    assert t["xtitle"] == "environment step", str(shot)
                    # the card's step column is left out where every pick's file name holds its step (fits 700 px)
                    assert "episode" not in b["cardText"] and "_steps.zip" in b["cardText"], b["cardText"]
                    assert "(environment step " in b["verdictText"]
                    assert not any(".pt" in x for x in t["legend"]), (t["legend"], str(shot))
                    assert any(x.startswith("last (highest step): rl_model_") for x in t["legend"]), t["legend"]
                    assert "entropy_history.json" not in t["page"] and "training.train" not in t["page"]
                else:
                    assert t["xtitle"] == "episode"
                    # the HTML report: built when asked (not at first paint), then downloaded as one file
                    assert page.get_by_role("button", name="Download HTML report").count() == 0
                    page.get_by_role("button", name="Prepare HTML report").click()
                    dl_button = page.get_by_role("button", name="Download HTML report")
                    dl_button.wait_for(timeout=60000)
                    with page.expect_download(timeout=30000) as dl:
                        dl_button.click()
                    doc = Path(dl.value.path()).read_text()
                    page.screenshot(path=str(ARTIFACTS / "answer_html_report.png"))
                    assert doc.lstrip().lower().startswith("<!doctype html>") and "<svg" in doc
                    assert dl.value.suggested_filename == "report_proj.html"
        finally:
            browser.close()
