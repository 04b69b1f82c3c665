"""``python -m sim.evaluate`` and the dashboard on a results file whose store is consolidated, damaged, another
program's, or being written: nothing stored is lost, and each problem is one line naming the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from sim.evaluate import main
from sim.results.errors import EvaluationError
from sim.results.reader import read_checkpoints, read_summary
from sim.results.schema import SCHEMA_VERSION, parts_dir
from sim.results.store import ResultsWriter
from tests.sim.evaluation.test_evaluate_support import make_run, write_scenes

ARGS = ["--scenarios", "scenes.npz", "--no-progress", "--n-resamples", "50", "--batch-size", "4"]


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """A run of 3 checkpoints under tmp/out and 6 scenes in tmp/scenes.npz; cwd = tmp."""
    run = make_run(tmp_path, episodes=(0, 50, 100), log_stds=[-0.5, -0.9, -0.7], rewards=[0.0, 2.0, 1.0])
    write_scenes(tmp_path / "scenes.npz", 6, num_steps=30)
    monkeypatch.chdir(tmp_path)
    return run


def _state(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_more_scenes_after_a_consolidation_append_to_it(work, capsys):
    res = work / "results.h5"
    assert main(["--run", str(work), *ARGS, "--max-scenarios", "3", "--consolidate"]) == 0
    assert not parts_dir(res).exists()
    first = {c.key: c for c in read_checkpoints(res)}
    assert main(["--run", str(work), *ARGS, "--max-scenarios", "6"]) == 0
    assert main(["--run", str(work), *ARGS, "--max-scenarios", "6"]) == 0  # and again: nothing left dangling
    got = {c.key: c for c in read_checkpoints(res)}
    assert got.keys() == first.keys() and all(len(c.rows.scenario_ids) == 6 for c in got.values())
    for k, c in first.items():  # the rows of the first call are kept as they were
        np.testing.assert_array_equal(got[k].rows.select(c.rows.scenario_ids).metrics["score"],
                                      c.rows.metrics["score"])
    assert len(read_summary(res).scenarios) == 6
    assert main(["--run", str(work), *ARGS, "--consolidate"]) == 0 and not parts_dir(res).exists()
    assert all(len(c.rows.scenario_ids) == 6 for c in read_checkpoints(res))


def test_a_broken_scenes_part_is_refused_in_one_line_and_nothing_is_lost(work, capsys):
    res = work / "results.h5"
    assert main(["--run", str(work), *ARGS, "--max-scenarios", "4"]) == 0
    (part,) = parts_dir(res).glob("scenes-*.h5")
    part.write_bytes(np.random.default_rng(1).bytes(part.stat().st_size))
    capsys.readouterr()
    before = _state(work.parent.parent)
    for extra in (["--max-scenarios", "6"], ["--max-scenarios", "4", "--consolidate"]):
        assert main(["--run", str(work), *ARGS, *extra]) != 0
        err = _one_line_error(capsys)
        assert f"{part}: the stored scenes cannot be read" in err
        assert _state(work.parent.parent) == before


def test_another_programs_hdf5_file_is_refused_and_left_byte_identical(work, capsys):
    out = work.parent.parent / "theirs.h5"
    with h5py.File(out, "w") as f:
        f.create_dataset("data", data=np.arange(5.0))
        f.attrs["schema_version"] = SCHEMA_VERSION
    before = out.read_bytes()
    assert main(["--run", str(work), *ARGS, "--out", str(out)]) != 0
    assert "theirs.h5: not a results file (holds 'data'" in _one_line_error(capsys)
    assert out.read_bytes() == before and not parts_dir(out).exists()


def test_consolidation_runs_inside_the_evaluations_lock(work, monkeypatch):
    """Another evaluation starting while ``--consolidate`` copies the file is refused (it used to commit into the
    sidecar the consolidation then removed: every row lost)."""
    real = ResultsWriter.consolidate
    seen = []

    def consolidate(self):
        # a second evaluation of the same file, now
        with pytest.raises(EvaluationError, match="another evaluation is writing this file"), \
                ResultsWriter(self.path).lock():
            pass
        seen.append(self.path)
        real(self)

    monkeypatch.setattr(ResultsWriter, "consolidate", consolidate)
    assert main(["--run", str(work), *ARGS, "--max-scenarios", "2", "--consolidate"]) == 0
    assert seen == [work / "results.h5"] and not parts_dir(seen[0]).exists()


def _ref(run: Path):
    from dashboard.data import RunRef

    return RunRef(name=run.name, path=run, mtime=0.0, has_results=True, has_history=True)


def test_dashboard_never_advises_deleting_a_file_being_written(work, monkeypatch):
    from dashboard import data
    from sim.results import opening, reader

    assert main(["--run", str(work), *ARGS, "--max-scenarios", "3"]) == 0
    res = work / "results.h5"
    busy = f"{res} {opening.BUSY}"
    monkeypatch.setattr(data, "read_summary", lambda *a, **k: (_ for _ in ()).throw(reader.ResultsError(busy)))
    errors = [m for kind, m in data.load_run(_ref(work)).problems if kind == "error"]
    assert errors == [busy]  # no "Re-create it: rm ..." after it


def test_dashboard_names_a_broken_commit_file_and_never_advises_deleting(work):
    from dashboard import data

    assert main(["--run", str(work), *ARGS, "--max-scenarios", "3"]) == 0
    res = work / "results.h5"
    data.st.cache_data.clear()
    run = data.load_run(_ref(work))
    (part,) = parts_dir(res).glob("scenes-*.h5")
    part.unlink()
    part.mkdir()  # a directory where the scenes' commit file was
    scene, err = data.load_scene(run, 0)  # used to raise a raw KeyError
    assert scene is None and f"results.h5.parts/{part.name} cannot be read" in err and "\n" not in err
    next(parts_dir(res).glob("ckpt-*.h5")).unlink()
    data.st.cache_data.clear()  # the cache follows the index's mtime, which a deleted commit file leaves alone
    errors = [m for kind, m in data.load_run(_ref(work)).problems if kind == "error"]
    assert errors and all("its commit file results.h5.parts/" in m and "rm " not in m for m in errors), errors
