"""The CLI's summary tables (``sim.selection.report.print_summary``): the step column says what the step counts."""

from __future__ import annotations

from rich.console import Console

from benchmarks.fixture_runs import FixtureSpec, write_run
from sim.results.reader import read_checkpoints, read_scenarios, read_verdict
from sim.results.run_folder import step_unit
from sim.selection.report import print_summary, summary_rows


def test_the_step_column_is_titled_by_the_runs_step_unit(tmp_path):
    """An SB3 run's checkpoints are at environment steps (``rl_model_2560_steps.zip``): both tables title the column
    so, never "episode"; this project's run keeps "episode"."""
    run = write_run(tmp_path, FixtureSpec(name="sb3", n_checkpoints=4, n_scenes=8, agent="sb3"), link_latest=False)
    res = run / "results.h5"
    rows = summary_rows(read_checkpoints(res), [s.id for s in read_scenarios(res)])
    for agent, unit in (("sb3", "environment step"), ("own", "episode")):
        console = Console(record=True, width=400)
        print_summary(console, rows, read_verdict(res), run="sb3", unit=step_unit(agent))
        text = console.export_text()
        assert text.count(unit) == 2, text
        assert agent == "own" or "episode" not in text.split("Verdict")[0]
