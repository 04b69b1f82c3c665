"""What the results store never loses: a consolidated file appended to, a broken commit file (named, never copied
into a consolidated file as a dangling link), another program's HDF5 file, the lock around consolidation, and a
reader's snapshot while commits land (docs/results_schema.md "Crash safety and concurrency")."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from sim.results import reader as reader_mod
from sim.results.errors import EvaluationError, ResultsError
from sim.results.opening import BUSY
from sim.results.reader import read_checkpoints, read_scenarios, read_scene, read_summary
from sim.results.schema import SCHEMA_VERSION, CheckpointAttrs, parts_dir
from sim.results.store import ResultsWriter
from tests.sim.evaluation.test_evaluate_support import straight_scene
from tests.sim.results.test_store import ROOT, _filled, _rows


def _state(path) -> dict:
    """Every file of a results file and its sidecar (and any temporary left beside them), by content digest."""
    return {p.relative_to(path.parent): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.parent.rglob("*")) if p.is_file()}


def _part_of(path, group: str, name: str):
    with h5py.File(path, "r", locking=False) as f:
        return path.parent / f[group].get(name, getlink=True).filename


def _attrs(k: int) -> CheckpointAttrs:
    return CheckpointAttrs(name=f"ep{k}.pt", kind="checkpoint", episode=k)


# --- 1. a consolidated file is appended to, never destroyed ---------------------------------------------------------


def test_merging_into_a_consolidated_file_keeps_the_shared_whole_file(tmp_path):
    """After a consolidation the adopted ``whole-<id>.h5`` holds the scenes and every checkpoint: a merge of one key
    supersedes its link, not the file (deleting it lost every row)."""
    path = tmp_path / "r.h5"
    _, scenes, ids = _filled(path, n_keys=3, n_scenes=4)
    ResultsWriter(path).consolidate()
    more = [straight_scene(i, 12) for i in range(4, 6)]
    w = ResultsWriter(path)
    with w.lock():
        w.commit("k1", _attrs(1), _rows([s.id for s in more], 7.0), more, ROOT)
        (whole,) = parts_dir(path).glob("whole-*.h5")
        assert whole.exists()
        s = read_summary(path)  # mid-session: every key and scene readable
        assert s.checkpoints["k1"].n == 6 and s.checkpoints["k0"].n == 4 and len(s.scenarios) == 6
    assert whole.exists()  # still linked to by k0, k2 and the first scenes: kept at the end of the session too
    s = read_summary(path)
    assert {k: c.n for k, c in s.checkpoints.items()} == {"k0": 4, "k1": 6, "k2": 4}
    assert len(read_scenarios(path)) == 6
    np.testing.assert_array_equal(read_scene(path, 0).log_ego, scenes[0].agents[0, :, :3])
    ResultsWriter(path).consolidate()  # and it consolidates again
    assert not parts_dir(path).exists() and read_summary(path).checkpoints["k1"].n == 6


def test_a_file_no_link_points_at_any_more_is_collected(tmp_path):
    """Reference counting over the index's links: once every link into the whole file is superseded, it goes."""
    path = tmp_path / "r.h5"
    _, scenes, ids = _filled(path, n_keys=1, n_scenes=2)
    ResultsWriter(path).consolidate()
    w = ResultsWriter(path)
    with w.lock():
        w.commit("k0", _attrs(0), _rows(ids, 5.0), scenes, ROOT)  # the key moves out, the scenes stay in the whole
    assert len(list(parts_dir(path).glob("whole-*.h5"))) == 1
    assert read_checkpoints(path)[0].rows.metrics["ade"].tolist() == [5.0, 5.0]


# --- 2. a broken commit file is named; consolidation checks its copy --------------------------------------------------


def _break_scenes(path):
    part = _part_of(path, "scenarios", "s00000")
    part.write_bytes(np.random.default_rng(0).bytes(part.stat().st_size))
    return part


def test_resume_refuses_a_broken_scenes_part_in_one_line_and_loses_nothing(tmp_path):
    path = tmp_path / "r.h5"
    w, _, _ = _filled(path, n_keys=2)
    part = _break_scenes(path)
    before = _state(path)
    with pytest.raises(EvaluationError, match=f"{part.name}: the stored scenes cannot be read") as e:
        w.done()
    assert "\n" not in str(e.value)
    part.unlink()
    with pytest.raises(EvaluationError, match=f"{part.name}.* is missing"):
        w.done()
    assert _state(path) == {k: v for k, v in before.items() if k.name != part.name}


@pytest.mark.parametrize("damage", ["random bytes", "deleted"])
def test_consolidate_refuses_a_broken_commit_file_and_deletes_nothing(tmp_path, damage):
    path = tmp_path / "r.h5"
    _filled(path, n_keys=2)
    part = _break_scenes(path)
    if damage == "deleted":
        part.unlink()
    before = _state(path)
    with pytest.raises(EvaluationError, match=r"r\.h5: not consolidated, nothing deleted: its commit file ") as e:
        ResultsWriter(path).consolidate()
    assert f"{part} cannot be read" in str(e.value) and "\n" not in str(e.value)
    assert _state(path) == before  # no file replaced or deleted, no temporary left


def test_consolidate_refuses_a_copy_that_still_links(tmp_path, monkeypatch):
    """HDF5's copy leaves an external link it cannot follow in place: the check of the copy catches it even where
    the check of the commit files did not (here: switched off)."""
    path = tmp_path / "r.h5"
    _filled(path, n_keys=2)
    part = _break_scenes(path)
    before = _state(path)
    monkeypatch.setattr(ResultsWriter, "_broken_part", lambda self, f, groups: None, raising=False)
    with pytest.raises(EvaluationError, match=rf"deleted: /scenarios/s00000 \(in .*{part.name}\) cannot be read"):
        ResultsWriter(path).consolidate()
    assert _state(path) == before


def test_consolidate_checks_every_dataset_of_the_copy(tmp_path, monkeypatch):
    """A copy that lacks a dataset the index reaches (here: dropped by a faulty copy) is refused the same way."""
    path = tmp_path / "r.h5"
    _filled(path, n_keys=1)
    before = _state(path)
    real = h5py.Group.copy

    def faulty(self, source, dest, name=None, **kw):
        real(self, source, dest, name=name, **kw)
        if name == "checkpoints":
            del dest["checkpoints/k0/metrics/ade"]

    monkeypatch.setattr(h5py.Group, "copy", faulty)
    with pytest.raises(EvaluationError, match="nothing deleted: /checkpoints/k0/metrics/ade is missing in the copy"):
        ResultsWriter(path).consolidate()
    assert _state(path) == before


# --- 3. another program's HDF5 file ---------------------------------------------------------------------------------


def _foreign(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(10.0))
        f.attrs["schema_version"] = SCHEMA_VERSION
    return path


def test_another_programs_file_is_refused_and_left_byte_identical(tmp_path):
    path = _foreign(tmp_path / "r.h5")
    before = _state(path)
    with pytest.raises(EvaluationError, match=r"r\.h5: not a results file \(holds 'data'") as e:
        ResultsWriter(path).preflight()
    assert "\n" not in str(e.value)
    # and the writer itself never adopts it (an API caller without preflight)
    scenes = [straight_scene(0, 12)]
    with pytest.raises(EvaluationError, match="not a results file"):
        w = ResultsWriter(path)
        with w.lock():
            w.commit("k0", _attrs(0), _rows([scenes[0].id]), scenes, ROOT)
    assert _state(path) == before and not parts_dir(path).exists()
    with h5py.File(path, "w") as f:  # ours always holds created / tool_version / updated
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.create_group("checkpoints")
    with pytest.raises(EvaluationError, match="not a results file .lacks the attribute 'created'"):
        ResultsWriter(path).preflight()


def test_a_results_file_of_ours_passes_the_check(tmp_path):
    path = tmp_path / "r.h5"
    _filled(path, n_keys=1)
    ResultsWriter(path).write_skipped([])
    ResultsWriter(path).preflight()
    ResultsWriter(path).consolidate()
    ResultsWriter(path).preflight()  # consolidated (version 2, self-contained) too


# --- 4. consolidation holds the evaluation lock ---------------------------------------------------------------------


def test_consolidate_is_refused_while_an_evaluation_holds_the_lock(tmp_path):
    path = tmp_path / "r.h5"
    _, scenes, ids = _filled(path, n_keys=2)
    busy = ResultsWriter(path)
    with busy.lock():
        before = _state(path)
        with pytest.raises(EvaluationError, match="another evaluation is writing this file"):
            ResultsWriter(path).consolidate()
        assert _state(path) == before
        busy.commit("k9", _attrs(9), _rows(ids, 9.0), scenes, ROOT)  # the evaluation goes on
    assert set(read_summary(path).checkpoints) == {"k0", "k1", "k9"}
    w = ResultsWriter(path)
    with w.lock():  # inside one's own session it is the same lock: no refusal
        w.consolidate()
    assert not parts_dir(path).exists() and set(read_summary(path).checkpoints) == {"k0", "k1", "k9"}


def test_a_refused_lock_deletes_nothing(tmp_path):
    """The refused call used to collect 'garbage' on its way out: a commit file the holder had just published and
    was about to link (not yet in the index) was deleted, and the holder's index then linked to nothing."""
    path = tmp_path / "r.h5"
    _filled(path, n_keys=1)
    holder = ResultsWriter(path)
    with holder.lock():
        pending = parts_dir(path) / "ckpt-k1-000000000000.h5"  # published, its index not yet
        with h5py.File(pending, "w") as f:
            f.create_group("checkpoints/k1")
        with pytest.raises(EvaluationError, match="another evaluation"), ResultsWriter(path).lock():
            pass
        assert pending.exists()


# --- 5. readers keep their snapshot; a read a commit overtook is read again ----------------------------------------


def _commit_while_reading(monkeypatch, path, writer, ids, scenes, times: int):
    """Commit a merge of key ``k1`` (its old commit file deleted at once) while ``read_checkpoints`` reads ``k0``,
    ``times`` times: the reader then follows its old index's link into a deleted file."""
    monkeypatch.setattr("sim.results.store.SUPERSEDED_GRACE_S", 0.0, raising=False)
    real = reader_mod.scenario_ids_of
    calls = {"n": 0}

    def racing(g):
        if g.name == "/checkpoints/k0" and calls["n"] < times:
            calls["n"] += 1
            writer.commit("k1", _attrs(1), _rows(ids[:1], 10.0 + calls["n"]), scenes[:1], ROOT)
        return real(g)

    monkeypatch.setattr(reader_mod, "scenario_ids_of", racing)
    return calls


def test_a_read_overtaken_by_a_commit_is_read_again(tmp_path, monkeypatch):
    path = tmp_path / "r.h5"
    w, scenes, ids = _filled(path, n_keys=2)
    calls = _commit_while_reading(monkeypatch, path, w, ids, scenes, times=1)
    got = {c.key: c for c in read_checkpoints(path)}
    k1 = got["k1"].rows
    assert calls["n"] == 1 and dict(zip(k1.scenario_ids, k1.metrics["ade"], strict=True))[ids[0]] == 11.0  # the new
    assert len(k1.scenario_ids) == len(ids)  # snapshot, whole


def test_a_read_always_overtaken_says_try_again_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "r.h5"
    w, scenes, ids = _filled(path, n_keys=2)
    _commit_while_reading(monkeypatch, path, w, ids, scenes, times=100)
    with pytest.raises(ResultsError) as e:
        read_checkpoints(path)
    assert str(e.value) == f"{path} {BUSY}"


# --- 6. a broken or deleted commit file is named --------------------------------------------------------------------


def test_read_scene_of_a_broken_scenes_part_names_it(tmp_path):
    path = tmp_path / "r.h5"
    _filled(path, n_keys=1)
    part = _break_scenes(path)
    with pytest.raises(ResultsError, match=f"its commit file r.h5.parts/{part.name} cannot be read") as e:
        read_scene(path, 1)
    assert "\n" not in str(e.value)
    part.unlink()
    part.mkdir()  # as the tester left it: a directory in its place
    with pytest.raises(ResultsError, match=f"its commit file r.h5.parts/{part.name} cannot be read"):
        read_scene(path, 1)


def test_one_deleted_commit_file_is_named_not_the_folder(tmp_path):
    path = tmp_path / "r.h5"
    _filled(path, n_keys=2)
    for group, name in (("checkpoints", "k1"), ("scenarios", "s00000")):
        part = _part_of(path, group, name)
        part.unlink()
        with pytest.raises(ResultsError) as e:
            read_summary(path) if group == "checkpoints" else read_scenarios(path)
        msg = str(e.value)
        assert f"its commit file r.h5.parts/{part.name} is missing" in msg and "not beside it" not in msg, msg
