"""The throughput benchmark's record (yardstick side by side or a note) and the sweep plot script."""

from __future__ import annotations

import json

import pytest

from benchmarks.plot_throughput import main as plot_main
from benchmarks.sim_throughput import BenchConfig, run
from benchmarks.yardstick import DEFAULT_PATH, load_yardstick


def _cfg(**kw) -> BenchConfig:
    return BenchConfig(batch=4, agents=4, steps=5, repeats=2, threads=1, scenes="synthetic", **kw)


def test_record_without_yardstick_says_so(tmp_path):
    rec = run(_cfg(yardstick=str(tmp_path / "absent.py")))
    assert "yardstick_note" in rec and "ratio_to_yardstick" not in rec
    assert str(tmp_path / "absent.py") in rec["yardstick_note"]  # the path looked at, not the default's
    assert rec["batch"] == 4 and rec["steps"] == 5 and rec["scenario_steps_per_s"] > 0
    assert rec["agent_steps_per_s"] == pytest.approx(rec["scenario_steps_per_s"] * 4, rel=1e-4)
    assert rec["device"] == "cpu" and rec["peak_memory_mb"] > 0


@pytest.mark.skipif(load_yardstick() is None, reason=f"no yardstick at {DEFAULT_PATH}")
def test_record_with_yardstick_has_both_rates_and_the_ratios():
    rec = run(_cfg())
    assert rec["yardstick_scenario_steps_per_s"] > 0
    assert rec["ratio_to_yardstick"] == pytest.approx(
        rec["scenario_steps_per_s"] / rec["yardstick_scenario_steps_per_s"], rel=1e-2)
    assert rec["ratio_min"] <= rec["ratio_median"] <= rec["ratio_max"]


def test_plot_writes_a_png_and_prints_the_table(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rows = [{"batch": b, "scenario_steps_per_s": 1000.0 * b, "agent_steps_per_s": 32000.0 * b, "device": "cpu",
             "threads": 2, "yardstick_scenario_steps_per_s": 900.0 * b, "ratio_to_yardstick": 1.11,
             "peak_memory_mb": 100.0} for b in (1024, 256)]
    src = tmp_path / "sweep.jsonl"
    src.write_text("warming up\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "curve.png"
    assert plot_main([str(src), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out.splitlines()
    assert table[2].startswith("| 256 |") and table[3].startswith("| 1024 |")


@pytest.mark.slow
def test_worker_processes_share_the_scenes_and_the_record_says_so(tmp_path):
    rec = run(_cfg(workers=2, yardstick=str(tmp_path / "absent.py")))
    assert rec["workers"] == 2 and rec["threads_per_worker"] == 1 and rec["threads"] == 1
    assert rec["scenario_steps_per_s"] > 0 and rec["single_process_scenario_steps_per_s"] > 0
    assert rec["worker_peak_memory_mb"] > 0


def test_default_workers_one_per_thread_with_enough_scenes_each():
    import torch

    from benchmarks.sim_throughput import MIN_SCENES_PER_WORKER, worker_count

    cpu = torch.device("cpu")
    assert worker_count(BenchConfig(batch=1024, threads=2), cpu) == 2
    assert worker_count(BenchConfig(batch=MIN_SCENES_PER_WORKER, threads=2), cpu) == 1
    assert worker_count(BenchConfig(batch=1024, threads=2, workers=1), cpu) == 1
    assert worker_count(BenchConfig(batch=1024, threads=2), torch.device("cuda")) == 1


def test_plot_draws_one_curve_per_sweep_labelled_by_compile(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    paths = []
    for compiled, rate in ((False, 1000.0), (True, 1400.0)):
        rows = [{"batch": b, "scenario_steps_per_s": rate * b, "agent_steps_per_s": 32 * rate * b, "device": "cpu",
                 "threads": 2, "compile": compiled, "peak_memory_mb": 100.0} for b in (256, 1024)]
        paths.append(tmp_path / f"sweep_{compiled}.jsonl")
        paths[-1].write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "curves.png"
    assert plot_main([*map(str, paths), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    eager, compiled = printed.index("eager"), printed.index("--compile")
    assert eager < compiled and printed.count("| 256 |") == 2 and "| 358,400 |" in printed[compiled:]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("no records\n")
    with pytest.raises(SystemExit) as e:
        plot_main([str(paths[0]), str(empty), str(out)])
    assert e.value.code == 2 and capsys.readouterr().err.startswith(f"error: {empty}: no sweep records")


def test_eval_sweep_checks_scene_window_before_preparing_anything(capsys):
    """``--scene-window`` takes sim.evaluate's range, refused in one line at parse time (before minutes of scene
    generation and preparation)."""
    import pytest

    from benchmarks.eval_sweep import parse_args

    assert parse_args(["--scene-window", "64"]).scene_window == 64
    assert parse_args([]).scene_window is None
    with pytest.raises(SystemExit) as e:
        parse_args(["--scene-window", "-1"])
    assert e.value.code == 2 and "--scene-window must be >= 0" in capsys.readouterr().err


def test_agent_scaling_times_every_count_in_the_same_rounds(capsys):
    from benchmarks.agent_scaling import main as scaling_main

    assert scaling_main(["--agents", "2,6", "--batch", "3", "--steps", "4", "--threads", "1", "--rounds", "2"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["ratio_to"] == 2 and set(rec["agents"]) == {"2", "6"} and rec["batch"] == 3
    first, more = rec["agents"]["2"], rec["agents"]["6"]
    assert "ratio" not in first and first["rate"] >= first["rate_median"] > 0
    assert more["ratio"] == pytest.approx(more["rate"] / first["rate"], rel=1e-2)
    assert more["ratio_min"] <= more["ratio_median"] <= more["ratio_max"]


@pytest.mark.parametrize("argv", [["--agents", "32,x"], ["--agents", "32,32"], ["--rounds", "0"]])
def test_agent_scaling_refuses_bad_flags_in_one_line(argv, capsys):
    from benchmarks.agent_scaling import main as scaling_main

    with pytest.raises(SystemExit) as e:
        scaling_main(argv)
    assert e.value.code == 2 and "--" in capsys.readouterr().err.strip().splitlines()[-1]
