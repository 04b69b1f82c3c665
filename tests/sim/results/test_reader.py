"""sim.results.reader: round trip against a plain-h5py fixture, concurrent writers, broken files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from benchmarks.fixture_runs import FixtureSpec, write_run
from sim.metrics.catalogue import METRIC_NAMES
from sim.results.reader import ResultsError, read_ego_traj, read_scenarios, read_scene, read_summary
from sim.results.schema import SCHEMA_VERSION, parts_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs"), FixtureSpec(n_checkpoints=5, n_scenes=7, temp_group=True))


def test_summary_round_trip(run_dir):
    s = read_summary(run_dir / "results.h5")
    assert s.schema_version == SCHEMA_VERSION and s.attrs["backend"] == "kinematic"
    assert s.attrs["config"] == {"backend": "kinematic"}
    assert len(s.scenarios) == 7 and [x.row for x in s.scenarios] == list(range(7))
    assert s.scenarios[3].family and s.scenarios[3].init_step == 10
    # 5 checkpoints + 2 baselines; the half-written temp group is ignored
    assert len(s.checkpoints) == 7 and not any("tmp" in k for k in s.checkpoints)
    kinds = [c.kind for c in s.checkpoints.values()]
    assert kinds == ["checkpoint"] * 5 + ["baseline"] * 2  # baselines last, then by episode
    eps = [c.episode for c in s.checkpoints.values() if c.kind == "checkpoint"]
    assert eps == sorted(eps)
    with h5py.File(run_dir / "results.h5", "r") as f:
        for key, c in s.checkpoints.items():
            g = f["checkpoints"][key]
            assert set(c.metrics) == set(METRIC_NAMES)
            np.testing.assert_array_equal(c.metrics["ade"], g["metrics/ade"][()])
            assert c.roles == tuple(json.loads(g.attrs["roles"]))
            assert c.mean("score") == pytest.approx(float(np.nanmean(g["metrics/score"][()])))
    assert s.verdict is not None and s.verdict["metric"] == "score"
    lazy = read_summary(run_dir / "results.h5", with_scenarios=False)
    assert lazy.scenarios == () and lazy.checkpoints.keys() == s.checkpoints.keys()
    assert read_scenarios(run_dir / "results.h5") == s.scenarios


def test_scene_and_traj(run_dir):
    sc = read_scene(run_dir / "results.h5", 2)
    assert sc.info.row == 2 and sc.log_ego.shape[1] == 3 and sc.agents.shape[2] == 5
    assert sc.valid.shape == sc.agents.shape[:2] and sc.route.shape[1] == 2
    with h5py.File(run_dir / "results.h5", "r") as f:
        off = f["scenarios/s00002/map/lanes/offsets"][()]
        pts = f["scenarios/s00002/map/lanes/points"][()]
    assert len(sc.map["lanes"]) == len(off) - 1
    np.testing.assert_array_equal(np.concatenate(sc.map["lanes"]), pts)
    key = next(iter(read_summary(run_dir / "results.h5").checkpoints))
    full = read_ego_traj(run_dir / "results.h5", key)
    rows = [4, 1, 4]
    np.testing.assert_array_equal(read_ego_traj(run_dir / "results.h5", key, rows), full[rows])
    with pytest.raises(ResultsError, match="out of range"):
        read_ego_traj(run_dir / "results.h5", key, [99])
    with pytest.raises(ResultsError, match="no scenario row"):
        read_scene(run_dir / "results.h5", 99)


def test_broken_files(tmp_path):
    with pytest.raises(ResultsError, match="sim.evaluate"):
        read_summary(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(ResultsError, match="bad.h5"):
        read_summary(bad)
    newer = tmp_path / "newer.h5"
    with h5py.File(newer, "w") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ResultsError, match="newer"):
        read_summary(newer)
    noattr = tmp_path / "noattr.h5"
    h5py.File(noattr, "w").close()
    with pytest.raises(ResultsError, match="schema_version"):
        read_summary(noattr)


def test_uncommitted_group_ignored(tmp_path):
    p = tmp_path / "r.h5"
    with h5py.File(p, "w") as f:
        f.attrs["schema_version"] = 1
        g = f.create_group("checkpoints/0123456789abcdef")  # no `completed` attr yet: still being written
        g["scenario"] = np.arange(3, dtype=np.int32)
    assert read_summary(p).checkpoints == {}


def test_read_while_another_process_writes(run_dir, tmp_path):
    """A writer holding the file open in append mode does not make the reader fail."""
    p = tmp_path / "results.h5"
    p.write_bytes((run_dir / "results.h5").read_bytes())
    shutil.copytree(parts_dir(run_dir / "results.h5"), parts_dir(p))  # the file and its sidecar move together
    code = ("import h5py,sys,time\nf=h5py.File(sys.argv[1],'a')\nf.attrs['updated']='now'\nf.flush()\n"
            "print('open',flush=True)\ntime.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(p)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        s = read_summary(p)
        assert len(s.checkpoints) == 7
    finally:
        proc.kill()
        proc.wait()


def test_no_torch_import():
    out = subprocess.run([sys.executable, "-c", "import sys, sim.results.reader, benchmarks.fixture_runs;"
                          "print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
