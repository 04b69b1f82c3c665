"""Closed loop on imported real scenes: log replay is perfect, constant velocity is not; train/evaluate run.

Needs ../shared/data (skipped when absent) and the sim package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scenarios.formats import ImportOptions, load_any

pytestmark = pytest.mark.data
REPO = Path(__file__).resolve().parents[2]


def _sim():
    for mod in ("sim.batch", "sim.rollout", "sim.metrics.registry", "sim.baselines"):
        pytest.importorskip(mod, reason=f"{mod} is not written yet")
    from sim.baselines import constant_velocity_policy
    from sim.batch import make_batch
    from sim.metrics.registry import compute_metrics
    from sim.rollout import rollout

    return make_batch, rollout, compute_metrics, constant_velocity_policy


@pytest.fixture(scope="module")
def real_batch(shared_data):
    make_batch, *_ = _sim()
    scenes = load_any(shared_data)
    # long recordings also as 9.1 s windows, as training uses them
    scenes += load_any(shared_data / "scenarionet", ImportOptions(window=91, stride=91))
    return scenes, make_batch(scenes)


@pytest.mark.slow
def test_log_replay_is_perfect_on_every_real_scene(real_batch):
    _, rollout, compute_metrics, _ = _sim()
    scenes, batch = real_batch
    m = {k: v.numpy() for k, v in compute_metrics(rollout(batch, None), batch).items()}
    ids = np.array(batch.ids)
    for name, want in (("ade", 0.0), ("fde", 0.0), ("collision", 0.0), ("offroad", 0.0), ("progress", 1.0)):
        bad = np.abs(m[name] - want) > 1e-4
        assert not bad.any(), f"log replay {name} != {want} on {ids[bad].tolist()}: {m[name][bad].tolist()}"


@pytest.mark.slow
def test_constant_velocity_drifts_from_the_log(real_batch):
    _, rollout, compute_metrics, constant_velocity_policy = _sim()
    scenes, batch = real_batch
    ade = compute_metrics(rollout(batch, constant_velocity_policy(batch.dt)), batch)["ade"].numpy()
    moving = np.array([np.hypot(*np.diff(s.ego_log[s.init_step :, :2], axis=0).T).sum() > 5.0 for s in scenes])
    assert moving.sum() >= 6
    assert np.all(ade[moving] > 0.05), dict(zip(np.array(batch.ids)[moving], ade[moving]))
    assert np.all(np.isfinite(ade))


def _run(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def real_folder(shared_data, tmp_path_factory) -> Path:
    """A folder holding the real samples converted to the project's format as 9.1 s windows."""
    real = tmp_path_factory.mktemp("real")
    r = _run("scenarios.convert", str(shared_data), str(real / "real.npz"), "--window", "91", "--stride", "91")
    assert r.returncode == 0, r.stderr
    return real


@pytest.mark.slow
def test_evaluate_baselines_on_a_folder_of_imported_real_scenes(real_folder, tmp_path):
    pytest.importorskip("sim.evaluate", reason="sim.evaluate is not written yet")
    out = tmp_path / "results.h5"
    r = _run("sim.evaluate", "--baseline", "log-replay", "--baseline", "constant-velocity", "--scenarios",
             str(real_folder), "--out", str(out), "--no-progress", "--n-resamples", "99")
    assert r.returncode == 0, r.stderr[-2000:]
    from scenarios.io import load_scenarios

    n = len(load_scenarios(real_folder / "real.npz"))  # every sample converted (the folder gains formats over time)
    assert out.is_file() and f"{n} scenes" in r.stdout + r.stderr


@pytest.mark.slow
def test_train_then_evaluate_on_a_folder_of_imported_real_scenes(real_folder, tmp_path):
    for mod in ("training.train", "sim.evaluate"):
        pytest.importorskip(mod, reason=f"{mod} is not written yet")
    run = tmp_path / "run"
    r = _run("training.train", "--episodes", "8", "--scenarios", str(real_folder), "--out-dir", str(run),
             "--eval-interval", "4", "--batch-scenes", "4", "--bc-scenes", "8", "--bc-epochs", "2",
             "--val-scenes", "4", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (run / "last.pt").is_file()
    out = tmp_path / "results.h5"
    r = _run("sim.evaluate", "--ckpt", str(run / "last.pt"), "--only", "--scenarios", str(real_folder),
             "--out", str(out), "--no-progress", "--n-resamples", "99")
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.is_file()
