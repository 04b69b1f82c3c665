"""HDF5 results writer: round trip through the h5py+numpy reader, merge/resume, bad files, kill safety."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.io import save_scenarios
from sim.results.errors import EvaluationError
from sim.results.reader import read_checkpoints, read_ego_traj, read_scene, read_summary
from sim.results.schema import SCHEMA_VERSION, CheckpointRows
from sim.results.store import ResultsWriter
from tests.sim.evaluation.test_evaluate_support import straight_scene

REPO = Path(__file__).resolve().parents[3]
METRICS = ("ade", "fde", "collision", "collision_time", "score")


def _rows(ids, t=12, seed=0) -> CheckpointRows:
    rng = np.random.default_rng(seed)
    n = len(ids)
    m = {k: rng.random(n) for k in METRICS}
    m["collision_time"][::2] = np.nan
    return CheckpointRows(tuple(ids), m, rng.random((n, t, 4)).astype(np.float32))


def _attrs(name, episode=0, entropy=1.0):
    return {"name": name, "path": f"/x/{name}", "sha256": "ab" * 32, "kind": "checkpoint",
            "roles": ["candidate"], "episode": episode, "entropy": entropy, "entropy_per_dim": [0.5, 0.5],
            "train_reward": float("nan"), "eval_info": {"policy_entropy": entropy}, "backend": "kinematic"}


ROOT = {"backend": "kinematic", "suite": "test", "config": {"seed": 0}, "run_dir": ""}


def test_round_trip_through_the_dashboard_reader(tmp_path):
    scenes = [straight_scene(i, 12) for i in range(4)]
    w = ResultsWriter(tmp_path / "r.h5")
    w.preflight()
    w.prepare(scenes, ROOT)
    rows = _rows([s.id for s in scenes])
    w.commit("00112233aabbccdd", _attrs("ep00010.pt", 10, 2.5), rows, scenes, ROOT)
    s = read_summary(tmp_path / "r.h5")
    assert s.schema_version == SCHEMA_VERSION and s.attrs["backend"] == "kinematic"
    assert [x.id for x in s.scenarios] == [sc.id for sc in scenes]
    c = s.checkpoints["00112233aabbccdd"]
    assert c.name == "ep00010.pt" and c.episode == 10 and c.entropy == 2.5 and c.roles == ("candidate",)
    assert c.scenario_id == rows.scenario_ids and list(c.scenario) == [0, 1, 2, 3]
    for k in METRICS:
        np.testing.assert_array_equal(c.metrics[k], rows.metrics[k])
    np.testing.assert_array_equal(read_ego_traj(tmp_path / "r.h5", "00112233aabbccdd"), rows.ego_traj)
    d = read_scene(tmp_path / "r.h5", 2)
    np.testing.assert_allclose(d.log_ego, scenes[2].agents[0, :, :3])
    np.testing.assert_allclose(d.agents[:, :, 3:], scenes[2].agents[:, :, 5:7])
    assert len(d.map["drivable"]) == 1 and d.info.init_step == scenes[2].init_step


def test_resume_merges_rows_and_done_reports_pairs(tmp_path):
    scenes = [straight_scene(i, 12) for i in range(6)]
    ids = [s.id for s in scenes]
    w = ResultsWriter(tmp_path / "r.h5")
    assert w.done() == {}
    first, second = _rows(ids[:4], t=10, seed=1), _rows(ids[4:], t=12, seed=2)
    w.commit("k1", _attrs("a.pt"), first, scenes[:4], ROOT)
    assert w.done() == {"k1": set(ids[:4])}
    w.commit("k1", _attrs("a.pt"), second, scenes[4:], ROOT)
    assert w.done() == {"k1": set(ids)}
    (got,) = read_checkpoints(tmp_path / "r.h5", with_traj=True)
    want = CheckpointRows.concat([first, second])
    assert got.rows.scenario_ids == tuple(ids)
    np.testing.assert_array_equal(got.rows.metrics["ade"], want.metrics["ade"])
    np.testing.assert_array_equal(got.rows.ego_traj, want.ego_traj)
    assert got.rows.ego_traj.shape == (6, 12, 4) and np.isnan(got.rows.ego_traj[:4, 10:]).all()
    assert list(got.scenario_rows) == list(range(6))
    with h5py.File(tmp_path / "r.h5", "r") as f:  # one group per key, no temporary group left
        assert list(f["checkpoints"]) == ["k1"] and len(f["scenarios"]) == 6


def test_newer_schema_and_foreign_files_are_refused_untouched(tmp_path):
    p = tmp_path / "r.h5"
    with h5py.File(p, "w") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    before = p.read_bytes()
    with pytest.raises(EvaluationError, match="newer"):
        ResultsWriter(p).preflight()
    assert p.read_bytes() == before
    q = tmp_path / "q.h5"
    q.write_bytes(b"not hdf5 at all")
    with pytest.raises(EvaluationError, match="q.h5"):
        ResultsWriter(q).preflight()


def test_unwritable_output_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EvaluationError, match="cannot create output folder"):
        ResultsWriter(blocker / "sub" / "r.h5").preflight()


def test_failed_commit_leaves_previous_file_intact(tmp_path):
    scenes = [straight_scene(i, 12) for i in range(2)]
    w = ResultsWriter(tmp_path / "r.h5")
    w.commit("k1", _attrs("a.pt"), _rows([s.id for s in scenes]), scenes, ROOT)
    digest = hashlib.sha256((tmp_path / "r.h5").read_bytes()).hexdigest()
    bad = _rows([s.id for s in scenes])
    bad = CheckpointRows(bad.scenario_ids, {"ade": bad.metrics["ade"]}, bad.ego_traj)  # metric set changed
    with pytest.raises(EvaluationError, match="metrics"):
        w.commit("k1", _attrs("a.pt"), bad, scenes, ROOT)
    assert hashlib.sha256((tmp_path / "r.h5").read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5", "r.h5.parts"]  # temporary index removed
    assert not [p for p in (tmp_path / "r.h5.parts").iterdir() if p.name.startswith(".tmp")]


WRITER_LOOP = r"""
import sys, numpy as np
sys.path.insert(0, {repo!r})
from sim.results.schema import CheckpointRows
from sim.results.store import ResultsWriter
from scenarios.io import load_scenarios
scenes = load_scenarios({scenes!r})
ids = tuple(s.id for s in scenes)
w = ResultsWriter({path!r})
w.prepare(scenes, {{"backend": "kinematic", "suite": "t", "config": "{{}}", "run_dir": ""}})
print("ready", flush=True)
for k in range(1000):
    n = len(ids)
    m = {{name: np.full(n, float(k)) for name in ("ade", "fde", "score")}}
    traj = np.full((n, 20, 4), float(k), np.float32)
    w.commit(f"k{{k:04d}}", {{"name": f"c{{k}}", "kind": "checkpoint", "episode": k}}, CheckpointRows(ids, m, traj),
             scenes, {{"backend": "kinematic"}})
"""


@pytest.mark.slow
def test_killed_writer_always_leaves_a_readable_file(tmp_path):
    """SIGKILL a real writer process at random moments; every time the file reads back complete."""
    path = tmp_path / "r.h5"
    scenes = save_scenarios(tmp_path / "scenes.npz", [straight_scene(i, 20) for i in range(40)])
    rng = np.random.default_rng(0)
    seen_counts = []
    for _ in range(6):
        code = WRITER_LOOP.format(repo=str(REPO), path=str(path), scenes=str(scenes))
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=tmp_path)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.02, 0.6)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        s = read_summary(path)
        assert len(s.scenarios) == 40
        for key, c in s.checkpoints.items():
            k = float(int(key[1:]))
            assert c.n == 40 and np.all(c.metrics["ade"] == k) and np.all(c.metrics["score"] == k)
            assert np.all(read_ego_traj(path, key) == k)
        seen_counts.append(len(s.checkpoints))
    assert max(seen_counts) > 0  # the kills did land after some commits
    stale = [".tmp-r.h5-stale", "r.h5.parts/.tmp-ckpt-stale.h5"]  # what a kill mid-commit can leave
    for name in stale:
        (tmp_path / name).write_bytes(b"")
    with ResultsWriter(path).lock():  # ...and the next evaluation's lock removes it
        assert not [n for n in stale if (tmp_path / n).exists()]


def test_a_second_writer_is_locked_out(tmp_path):
    w = ResultsWriter(tmp_path / "r.h5")
    with w.lock(), pytest.raises(EvaluationError, match="another evaluation"), ResultsWriter(tmp_path / "r.h5").lock():
        pass
    with w.lock():  # released
        pass


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 9), min_size=0, max_size=4, unique=True), seed=st.integers(0, 10))
def test_commits_in_any_split_merge_to_the_same_rows(tmp_path_factory, cuts, seed):
    """Resume property: committing a row set in pieces equals committing it at once (order kept)."""
    scenes = [straight_scene(i, 12) for i in range(10)]
    ids = [s.id for s in scenes]
    full = _rows(ids, t=12, seed=seed)
    path = tmp_path_factory.mktemp("split") / "r.h5"
    w = ResultsWriter(path)
    bounds = [0, *sorted(cuts), 10]
    for a, b in zip(bounds[:-1], bounds[1:]):
        w.commit("k", _attrs("a.pt"), full.select(ids[a:b]), scenes[a:b], ROOT)
    (got,) = read_checkpoints(path, with_traj=True)
    assert got.rows.scenario_ids == tuple(ids)
    for k in METRICS:
        np.testing.assert_array_equal(got.rows.metrics[k], full.metrics[k])
    np.testing.assert_array_equal(got.rows.ego_traj, full.ego_traj)
    assert list(got.scenario_rows) == list(range(10))
