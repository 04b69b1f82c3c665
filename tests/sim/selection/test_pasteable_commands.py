"""The commands sim.across and sim.report suggest are pasteable on a path with spaces (each path shell-quoted)."""

from __future__ import annotations

import shlex

import pytest

from sim.across import main as across
from sim.results.errors import ResultsError
from sim.selection.across import AcrossError
from sim.selection.across_data import results_path as across_results
from sim.selection.report_html import results_path as report_results


def _suggested(text: str, before: str, after: str = "") -> list[str]:
    cmd = text.split(before, 1)[1]
    return shlex.split(cmd.split(after)[0] if after else cmd)


def test_a_run_without_results_suggests_a_pasteable_evaluate(tmp_path):
    run = tmp_path / "seed 0's run"
    run.mkdir()
    with pytest.raises(AcrossError) as e:
        across_results(run)
    assert _suggested(str(e.value), "evaluate the run first: ") == ["python", "-m", "sim.evaluate", "--run", str(run)]
    with pytest.raises(ResultsError) as e:
        report_results(run)
    assert _suggested(str(e.value), "(run ", " first)") == ["python", "-m", "sim.evaluate", "--run", str(run)]


def test_compare_traffic_without_the_second_file_suggests_a_pasteable_evaluate(tmp_path, capsys):
    run = tmp_path / "my run"
    run.mkdir()
    assert across([str(run), "--compare-traffic"]) == 2
    err = capsys.readouterr().err.strip()
    assert _suggested(err, "with the other model: ") == ["python", "-m", "sim.evaluate", "--run", str(run),
                                                          "--agents", "idm"]
