"""MLflow runs as ``--signals``: real file stores written by ``mlflow`` itself, read back with MLflow's client and
judged end to end; a foreign log against a project run is one line and exit 2."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sim.evaluate import main
from sim.results.reader import read_signal_verdict
from sim.selection.signals import SignalError, match_checkpoints, read_mlflow, read_signals
from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'driveselect[mlflow]')")


def log_run(store: Path, metrics: dict[str, dict[int, float]], experiment: str = "exp", name: str = "run") -> Path:
    """Log ``{key: {step: value}}`` with mlflow into the file store ``store``; returns the run's folder."""
    mlflow.set_tracking_uri(store.resolve().as_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=name) as run:
        for key, hist in metrics.items():
            for step, value in hist.items():
                mlflow.log_metric(key, value, step=step)
    return store / run.info.experiment_id / run.info.run_id


@pytest.fixture(autouse=True)
def _file_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 writes file stores only when asked to
    yield
    mlflow.set_tracking_uri(None)


STEPS = (100, 200, 300, 400)
LOGGED = {
    "entropy": {s: 2.0 - s / 1000 for s in range(0, 500, 50)},
    "train/loss": {s: (s - 250) ** 2 / 1e4 for s in range(0, 500, 50)},
    "reward": {s: s / 10 for s in (100, 200, 300, 400)},
}


def test_store_experiment_and_run_folders_read_every_history(tmp_path):
    run = log_run(tmp_path / "mlruns", LOGGED)
    for where in (tmp_path / "mlruns", run.parent, run):
        sig = read_signals(where)
        assert sig.source == str(run)
        assert set(sig.series) == set(LOGGED) and sig.headline == "entropy"
        for key, hist in LOGGED.items():
            assert sig.series[key].steps == tuple(sorted(hist))
            assert sig.series[key].values == pytest.approx([hist[k] for k in sorted(hist)])


def test_the_latest_value_at_a_step_wins_and_steps_default_to_zero(tmp_path):
    store = tmp_path / "mlruns"
    mlflow.set_tracking_uri(store.resolve().as_uri())
    mlflow.set_experiment("exp")
    with mlflow.start_run() as r:
        mlflow.log_metric("a", 1.0, step=5, timestamp=1000)
        mlflow.log_metric("a", 3.0, step=5, timestamp=2000)
        mlflow.log_metric("a", 2.0, step=7, timestamp=1500)
        mlflow.log_metric("b", 0.5)
    sig = read_mlflow(store / r.info.experiment_id / r.info.run_id)
    assert sig.series["a"].steps == (5, 7) and sig.series["a"].values == (3.0, 2.0)
    assert sig.series["b"].steps == (0,)


def test_several_runs_are_refused_naming_them(tmp_path):
    a = log_run(tmp_path / "mlruns", {"x": {1: 1.0}}, name="first")
    b = log_run(tmp_path / "mlruns", {"x": {1: 2.0}}, name="second")
    with pytest.raises(SignalError, match="2 MLflow runs") as e:
        read_signals(tmp_path / "mlruns")
    msg = str(e.value)
    assert a.name in msg and b.name in msg and "pass one run's folder" in msg and "\n" not in msg
    assert read_signals(b).series["x"].values == (2.0,)


def test_damaged_or_empty_stores_give_one_line(tmp_path):
    run = log_run(tmp_path / "mlruns", {"x": {1: 1.0}})
    (run / "meta.yaml").write_text("run_id: [unclosed\n")
    with pytest.raises(SignalError) as e:
        read_signals(run)
    assert str(e.value).startswith(str(run)) and "\n" not in str(e.value)
    empty = tmp_path / "empty"
    mlflow.set_tracking_uri(empty.resolve().as_uri())
    mlflow.set_experiment("exp")
    with mlflow.start_run() as r:
        pass
    with pytest.raises(SignalError, match="logged no metrics"):
        read_signals(empty / r.info.experiment_id / r.info.run_id)


def test_a_file_tracking_uri_reads_its_store_and_other_uris_say_what_to_pass(tmp_path, monkeypatch):
    """``--signals file:./mlruns`` (MLflow's tracking URI, as users set it) is the store, not "no such file"; a
    database or server URI is one line saying it is not read and what to pass, never a mangled path."""
    run = log_run(tmp_path / "mlruns", LOGGED)
    monkeypatch.chdir(tmp_path)
    for uri in ((tmp_path / "mlruns").resolve().as_uri(), "file:./mlruns", f"file:{tmp_path / 'mlruns'}"):
        sig = read_signals(uri)
        assert Path(sig.source).resolve() == run.resolve() and sig.headline == "entropy"
    for uri in ("sqlite:///mlflow.db", "http://localhost:5000"):
        with pytest.raises(SignalError) as e:
            read_signals(uri)
        msg = str(e.value)
        assert msg.startswith(uri + ": ") and "tracking URI is not read" in msg and "CSV" in msg
        assert "no such file" not in msg and "\n" not in msg
    # a path that merely starts like "word:" is a path (its own "no such" error); a file URI on another host is refused
    with pytest.raises(SignalError, match="no such file"):
        read_signals("run:v2/progress.csv")
    with pytest.raises(SignalError, match="another host"):
        read_signals("file://otherhost/abs/mlruns")


def test_matching_uses_the_logged_steps(tmp_path):
    sig = read_signals(log_run(tmp_path / "mlruns", LOGGED))
    m = match_checkpoints(sig, {f"step_{s}.pt": s for s in STEPS})
    assert m.values["entropy"] == pytest.approx([LOGGED["entropy"][s] for s in STEPS])
    assert m.values["reward"] == pytest.approx([LOGGED["reward"][s] for s in STEPS])


def test_plugin_checkpoints_judged_end_to_end_with_an_mlflow_run(tmp_path, capsys):
    from examples.custom_agent import _net

    for i, step in enumerate(STEPS):
        torch.manual_seed(i)
        torch.save(_net().state_dict(), tmp_path / f"step_{step}.pt")
    log_run(tmp_path / "mlruns", LOGGED)
    write_scenes(tmp_path / "scenes.npz", 4, num_steps=30)
    res = tmp_path / "results.h5"
    assert main(["--agent", "examples.custom_agent:make", "--ckpt", str(tmp_path / "step_*.pt"), "--signals",
                 str(tmp_path / "mlruns"), "--scenarios", str(tmp_path / "scenes.npz"), "--out", str(res),
                 "--no-progress", "--n-resamples", "50"]) == 0
    out = capsys.readouterr().out
    sv = read_signal_verdict(res)
    assert sv["headline"] == "entropy"
    assert {j["signal"] for j in sv["ranking"]} == {*LOGGED, "training step"}
    # "pick the max entropy" picks the earliest checkpoint: entropy falls with the step as logged
    head = next(j for j in sv["ranking"] if j["signal"] == "entropy")
    assert sv["checkpoint_names"][head["pick_max"]] == "step_100.pt"
    assert f"step_400.pt (step 400) -> entropy @ 400 = {LOGGED['entropy'][400]:.4g}" in out


@pytest.mark.parametrize("kind", ["mlflow", "csv"])
def test_a_foreign_log_against_a_project_run_is_one_line_and_exit_2(tmp_path, capsys, kind):
    """SB3-like environment steps (2048 ..) against a project run's episodes (0 .. 150): every checkpoint would
    match the same logged step; refused before anything is written."""
    run = make_run(tmp_path, episodes=(0, 50, 100, 150))
    env_steps = {s: 1.0 - s / 1e5 for s in range(2048, 2048 * 6, 2048)}
    if kind == "mlflow":
        log = log_run(tmp_path / "mlruns", {"train/entropy_loss": env_steps, "rollout/ep_rew_mean": env_steps})
    else:
        log = tmp_path / "progress.csv"
        rows = "".join(f"{s},{v}\n" for s, v in env_steps.items())
        log.write_text("time/total_timesteps,train/entropy_loss\n" + rows)
    write_scenes(tmp_path / "scenes.npz", 3, num_steps=30)
    res = tmp_path / "res.h5"
    capsys.readouterr()  # mlflow's own note on creating the experiment
    code = main(["--run", str(run), "--signals", str(log), "--scenarios", str(tmp_path / "scenes.npz"), "--out",
                 str(res), "--no-progress", "--n-resamples", "20"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and "not the log of these checkpoints" in err[0] and "0..150" in err[0]
    assert not res.exists()


def test_a_wandb_history_export(tmp_path):
    """The columns of ``wandb.Api().run(...).history().to_csv()``: ``_step`` is the step, the clocks are not read."""
    (tmp_path / "wandb.csv").write_text("_step,_runtime,_timestamp,losses/entropy,charts/episodic_return\n"
                                        "0,1.5,1796570000.1,1.4,-3\n100,9.25,1796570008.2,1.1,\n200,17.0,1796570016.0,0.9,7\n")
    sig = read_signals(tmp_path / "wandb.csv")
    assert set(sig.series) == {"losses/entropy", "charts/episodic_return"} and sig.headline == "losses/entropy"
    assert sig.series["losses/entropy"].steps == (0, 100, 200)
    assert sig.series["charts/episodic_return"].steps == (0, 200)


def test_a_run_logged_without_steps_names_the_checkpoint_file(tmp_path, capsys):
    """Metrics logged without ``step`` are at MLflow step 0: the plug-in checkpoints (keyed by their weights' digest)
    match none, and the one-line error names the first one's file."""
    from examples.custom_agent import _net

    for i, step in enumerate(STEPS):
        torch.manual_seed(i)
        torch.save(_net().state_dict(), tmp_path / f"step_{step}.pt")
    mlflow.set_tracking_uri((tmp_path / "mlruns").resolve().as_uri())
    mlflow.set_experiment("exp")
    with mlflow.start_run():
        mlflow.log_metric("entropy", 1.0)
    write_scenes(tmp_path / "scenes.npz", 2, num_steps=30)
    capsys.readouterr()
    res = tmp_path / "results.h5"
    assert main(["--agent", "examples.custom_agent:make", "--ckpt", str(tmp_path / "step_*.pt"), "--signals",
                 str(tmp_path / "mlruns"), "--scenarios", str(tmp_path / "scenes.npz"), "--out", str(res),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith("checkpoint step_100.pt (step 100) matches no logged step (it logs steps "
                                            "0..0)"), err
    assert not res.exists()


def test_a_nan_logged_to_mlflow_stays_at_its_step(tmp_path):
    run = log_run(tmp_path / "mlruns", {"entropy": {100: 1.0, 200: float("nan"), 300: 0.5}})
    m = match_checkpoints(read_signals(run), {"k": 200}, names={"k": "step_200.pt"})
    assert math.isnan(m.values["entropy"][0])
    assert any(n.startswith("entropy: step_200.pt (step 200) has no value: its logged step 200 of 'entropy'")
               for n in m.notes)
