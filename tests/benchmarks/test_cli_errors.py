"""Every benchmark command refuses bad input as the project's CLIs do: one line on stderr naming the flag or file,
exit status 2, no traceback (benchmarks.cli). Each case fails before any benchmark work starts."""

from __future__ import annotations

import importlib
import json
import re

import pytest

from benchmarks import cli

ERROR_LINE = re.compile(r"^(python -m benchmarks\.\w+: )?error: ")
BENCHMARKS = ("agent_scaling", "budgeted_selection", "dashboard_paint", "eval_sweep", "fixture_runs", "import_speed",
              "plot_throughput", "results_commit", "sb3_env_speed", "sim_throughput", "train_quality", "train_speed")


def _exit_code(main, argv) -> int | None:
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def assert_one_line_error(main, argv, capsys, *named: str) -> str:
    """``main(argv)`` exits 2 with exactly one ``error:`` line on stderr that contains every one of ``named``."""
    code = _exit_code(main, argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err
    assert len(lines) == 1 and ERROR_LINE.match(lines[0]), captured.err
    for text in named:
        assert text in lines[0], lines[0]
    assert not captured.out.strip()  # no JSON line: nothing ran
    return lines[0]


@pytest.fixture
def paths(tmp_path):
    """Placeholders of the cases: {absent} (nothing there), {file} (a plain file), {run} (a folder with bc.pt and
    last.pt that are not checkpoints), {out} (a folder to be made)."""
    plain = tmp_path / "plain.txt"
    plain.write_text("not a sweep\n")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("bc.pt", "last.pt"):
        (run / name).write_bytes(b"")
    return {"absent": str(tmp_path / "absent"), "file": str(plain), "run": str(run), "out": str(tmp_path / "out"),
            "tmp": str(tmp_path)}


CASES = [
    # (benchmark, argv, what the line must name)
    ("sim_throughput", ["--device", "tpu"], ["--device tpu"]),
    ("sim_throughput", ["--batch", "0"], ["--batch must be >= 1, got 0"]),
    ("sim_throughput", ["--yardstick", "{absent}.py", "--batch", "8", "--repeats", "1", "--steps", "5"],
     ["--yardstick {absent}.py: no such file"]),
    ("sim_throughput", ["--yardstick", "{file}"], ["--yardstick {file}", ".py"]),
    ("sim_throughput", ["--workers", "-1"], ["--workers must be >= 0"]),
    ("eval_sweep", ["--device", "tpu"], ["--device tpu"]),
    ("eval_sweep", ["--checkpoints", "0"], ["--checkpoints must be >= 1, got 0"]),
    ("eval_sweep", ["--scenarios", "procedural:test"], ["--scenarios must be an integer"]),
    ("eval_sweep", ["--batch-size", "0"], ["--batch-size must be >= 1"]),
    ("eval_sweep", ["--keep", "{file}"], ["--keep {file}: not a folder"]),
    ("budgeted_selection", ["--results", "X.h5", "--repeats", "0"], ["--repeats must be >= 1, got 0"]),
    ("budgeted_selection", ["--results", "X.h5", "--budgets", "-0.5"], ["--budgets must be in (0, 1], got -0.5"]),
    ("budgeted_selection", ["--results", "X.h5", "--budgets", "2"], ["--budgets must be in (0, 1], got 2"]),
    ("budgeted_selection", ["--results", "X.h5", "--metric", "nope"], ["--metric", "'nope'", "'score'"]),
    ("budgeted_selection", ["--results", "X.h5", "--confidence", "0"], ["--confidence must be in (0, 1]"]),
    ("budgeted_selection", ["--results", "{absent}.h5"], ["--results {absent}.h5"]),
    ("train_quality", ["{absent}"], ["{absent}: no such folder"]),
    ("train_quality", ["{tmp}"], ["bc.pt: no such file"]),
    ("train_quality", ["{run}", "--scenarios", "nope"], ["--scenarios nope: unknown suite 'nope'"]),
    ("fixture_runs", ["{out}", "--checkpoints", "0"], ["--checkpoints must be >= 1, got 0"]),
    ("fixture_runs", ["{out}", "--scenes", "0"], ["--scenes must be >= 1"]),
    ("fixture_runs", ["{out}", "--seed", "-1"], ["--seed must be in [0, 4294967295], got -1"]),
    ("fixture_runs", ["{file}"], ["{file}: not a folder"]),
    ("fixture_runs", ["{out}", "--name", "latest"], ["--name 'latest'"]),
    ("plot_throughput", ["{absent}.jsonl", "{tmp}/x.png"], ["{absent}.jsonl: no such file"]),
    ("plot_throughput", ["{file}", "{tmp}/x.png"], ["{file}: no sweep records"]),
    ("plot_throughput", ["{file}", "{absent}/x.png"], ["{absent}/x.png: its folder"]),
    ("sb3_env_speed", ["--num-envs", "0", "--iterations", "1"], ["--num-envs must be >= 1, got 0"]),
    ("sb3_env_speed", ["--iterations", "0"], ["--iterations must be >= 1"]),
    ("sb3_env_speed", ["--checkpoints", "-1"], ["--checkpoints must be >= 0"]),
    ("dashboard_paint", ["--repeats", "0"], ["--repeats must be >= 1, got 0"]),
    ("dashboard_paint", ["--scenes", "0"], ["--scenes must be >= 1"]),
    ("results_commit", ["--sizes-mb", "-1"], ["--sizes-mb must be > 0, got -1"]),
    ("results_commit", ["--scenes", "0"], ["--scenes must be >= 1, got 0"]),
    ("results_commit", ["--repeats", "0"], ["--repeats must be >= 1"]),
    ("results_commit", ["--dir", "{absent}"], ["--dir {absent}: no such folder"]),
    ("import_speed", ["--min-seconds", "-1"], ["--min-seconds must be > 0, got -1"]),
    ("import_speed", ["--data", "{absent}"], ["--data {absent}: no such folder"]),
    ("agent_scaling", ["--threads", "0"], ["--threads must be >= 1, got 0"]),
    ("agent_scaling", ["--agents", "3,3"], ["--agents must be distinct counts >= 1"]),
    ("train_speed", ["--episodes", "0"], ["--episodes must be >= 1, got 0"]),
    ("train_speed", ["--device", "tpu"], ["--device tpu"]),
]


@pytest.mark.parametrize(("bench", "argv", "named"), CASES, ids=[f"{b}:{' '.join(a)}" for b, a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(bench, argv, named, paths, capsys):
    main = importlib.import_module(f"benchmarks.{bench}").main
    assert_one_line_error(main, [a.format(**paths) for a in argv], capsys, *(n.format(**paths) for n in named))


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_every_flag_has_help_with_its_default_and_numeric_ones_a_range(bench, monkeypatch, capsys):
    made = []
    real = cli.parser
    monkeypatch.setattr(cli, "parser", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    main = importlib.import_module(f"benchmarks.{bench}").main
    assert _exit_code(main, ["--help"]) == 0
    capsys.readouterr()
    (p,) = made
    for action in p._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{bench} {action.option_strings or action.dest}: no help text"
        if getattr(action.type, "__name__", None) in ("int", "float"):
            assert "range: " in action.help, f"{bench} {action.option_strings}: no range in --help"
        if action.default not in (None, False, True) and action.option_strings:
            assert "default: " in action.help, f"{bench} {action.option_strings}: no default in --help"


def test_budgeted_summary_over_no_judged_run_claims_nothing(tmp_path, capsys):
    """A budget below one scene per checkpoint in every run: the run is skipped and the summary is null with a note,
    not regret 0 and 'never worse' as if the race had run."""
    from benchmarks.budgeted_selection import main
    from benchmarks.fixture_runs import FixtureSpec, write_run

    run = write_run(tmp_path, FixtureSpec(n_checkpoints=4, n_scenes=5, with_history=False, with_verdict=False))
    assert main(["--results", str(run / "results.h5"), "--budgets", "0.01", "1", "--repeats", "2"]) == 0
    skipped, judged = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert skipped["runs"][0]["skipped"] and "no run judged" in skipped["note"]
    assert skipped["worst_regret"] is None and skipped["never_worse_than_uniform_on_average"] is None
    assert skipped["max_rollouts_fraction"] is None and skipped["worst_uniform_regret"] is None
    assert judged["worst_regret"] == 0.0 and judged["never_worse_than_uniform_on_average"] is True
    assert "note" not in judged and "skipped" not in judged["runs"][0]


def test_only_the_projects_errors_become_one_line(capsys):
    from sim.results.errors import ResultsError

    @cli.one_line_errors
    def refuses(argv=None):
        raise ResultsError("x.h5: no results file\n(run sim.evaluate)")

    @cli.one_line_errors
    def missing(argv=None):
        open("/nonexistent/dir/file.json")  # noqa: SIM115 - raises

    @cli.one_line_errors
    def bug(argv=None):
        return {}["key"]

    assert_one_line_error(refuses, None, capsys, "error: x.h5: no results file (run sim.evaluate)")
    assert_one_line_error(missing, None, capsys, "error: /nonexistent/dir/file.json: No such file or directory")
    with pytest.raises(KeyError):
        bug()
    with pytest.raises(cli.BenchError, match=r"^--scenarios nope: boom$"), cli.blame("--scenarios nope"):
        raise cli.BenchError("boom")
