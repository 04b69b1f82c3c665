"""The results store's sidecar layout: version-1 files, consolidation, the skipped table, flat commits, readers
during writes, and the metric catalogue every list is derived from."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from scenarios.loading import SkippedScene
from sim.metrics.catalogue import CATALOGUE, METRIC_NAMES, pdm_score
from sim.results.errors import ResultsError
from sim.results.reader import read_checkpoints, read_ego_traj, read_scene, read_summary
from sim.results.schema import LAYOUT_ATTR, SCHEMA_VERSION, CheckpointAttrs, CheckpointRows, parts_dir, scene_record
from sim.results.store import ResultsWriter
from tests.sim.evaluation.test_evaluate_support import straight_scene

ROOT = {"backend": "kinematic", "suite": "test", "config": {"seed": 0}, "run_dir": ""}


def _rows(ids, value=1.0, t=12):
    n = len(ids)
    return CheckpointRows(tuple(ids), {"ade": np.full(n, value), "score": np.arange(n, dtype=float) + value},
                          np.full((n, t, 4), value, np.float32))


def _filled(path, n_keys=3, n_scenes=4):
    scenes = [straight_scene(i, 12) for i in range(n_scenes)]
    ids = [s.id for s in scenes]
    w = ResultsWriter(path)
    with w.lock():
        for k in range(n_keys):
            w.commit(f"k{k}", CheckpointAttrs(name=f"ep{k}.pt", kind="checkpoint", episode=k), _rows(ids, k), scenes,
                     ROOT)
    return w, scenes, ids


def _as_version_1(path):
    """A consolidated file with the version-1 attributes: the layout version 1 wrote."""
    ResultsWriter(path).consolidate()
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 1
        if LAYOUT_ATTR in f.attrs:
            del f.attrs[LAYOUT_ATTR]


def test_index_links_into_the_sidecar_and_nothing_else_is_left(tmp_path):
    path = tmp_path / "r.h5"
    _filled(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5", "r.h5.parts"]  # no lock file
    with h5py.File(path, "r") as f:
        assert isinstance(f["checkpoints"].get("k1", getlink=True), h5py.ExternalLink)
        assert f.attrs["schema_version"] == SCHEMA_VERSION
    assert sorted(p.name.split("-")[0] for p in parts_dir(path).iterdir()) == ["ckpt", "ckpt", "ckpt", "scenes"]


def test_merge_keeps_one_commit_file_per_key(tmp_path, monkeypatch):
    path = tmp_path / "r.h5"
    scenes = [straight_scene(i, 12) for i in range(6)]
    ids = [s.id for s in scenes]
    w = ResultsWriter(path)
    with w.lock():
        w.commit("k", CheckpointAttrs(name="a.pt", kind="checkpoint"), _rows(ids[:2], 1.0), scenes[:2], ROOT)
        with h5py.File(path, "r", locking=False) as snapshot:  # a reader mid-read (the dashboard)
            w.commit("k", CheckpointAttrs(name="a.pt", kind="checkpoint"), _rows(ids[2:4], 2.0), scenes[2:4], ROOT)
            # the superseded commit file stays for the reader's snapshot (until the end of the session, or its grace)
            assert len(list(parts_dir(path).glob("ckpt-*"))) == 2
            assert list(snapshot["checkpoints/k/metrics/ade"][()]) == [1, 1]
        (got,) = read_checkpoints(path, with_traj=True)
        assert got.rows.scenario_ids == tuple(ids[:4])
        # a long sweep committing per scene window: a file superseded longer than the grace goes at the next commit
        monkeypatch.setattr("sim.results.store.SUPERSEDED_GRACE_S", 0.0)
        w.commit("k", CheckpointAttrs(name="a.pt", kind="checkpoint"), _rows(ids[4:], 3.0), scenes[4:], ROOT)
        assert len(list(parts_dir(path).glob("ckpt-*"))) == 1
    (got,) = read_checkpoints(path, with_traj=True)
    assert got.rows.scenario_ids == tuple(ids) and list(got.rows.metrics["ade"]) == [1, 1, 2, 2, 3, 3]
    assert len(list(parts_dir(path).glob("ckpt-*"))) == 1  # the superseded commit files were collected


def test_version_1_is_read_and_appended_to_without_copying(tmp_path):
    path = tmp_path / "r.h5"
    _, scenes, ids = _filled(path)
    before = read_summary(path)
    _as_version_1(path)
    assert not parts_dir(path).exists()
    old = read_summary(path)
    assert old.schema_version == 1 and old.checkpoints.keys() == before.checkpoints.keys()
    np.testing.assert_array_equal(read_ego_traj(path, "k2"), np.full((4, 12, 4), 2.0, np.float32))
    inode = path.stat().st_ino
    w = ResultsWriter(path)
    with w.lock():
        w.commit("k9", CheckpointAttrs(name="ep9.pt", kind="checkpoint", episode=9), _rows(ids, 9.0), scenes, ROOT)
    new = read_summary(path)
    assert new.schema_version == SCHEMA_VERSION and set(new.checkpoints) == {"k0", "k1", "k2", "k9"}
    (whole,) = parts_dir(path).glob("whole-*.h5")
    assert whole.stat().st_ino == inode  # the version-1 file joined the sidecar by hard link
    np.testing.assert_array_equal(new.checkpoints["k1"].metrics["score"], before.checkpoints["k1"].metrics["score"])


def test_consolidate_round_trip(tmp_path):
    path = tmp_path / "r.h5"
    _, scenes, _ = _filled(path)
    ResultsWriter(path).write_skipped([SkippedScene("a.json", "", "not JSON")])
    before = read_summary(path)
    ResultsWriter(path).consolidate()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]
    after = read_summary(path)
    assert after.checkpoints.keys() == before.checkpoints.keys() and after.skipped == before.skipped
    for k, c in before.checkpoints.items():
        np.testing.assert_array_equal(after.checkpoints[k].metrics["score"], c.metrics["score"])
    np.testing.assert_array_equal(read_scene(path, 1).log_ego, scenes[1].agents[0, :, :3])


def test_skipped_table_and_scene_extras_round_trip(tmp_path):
    path = tmp_path / "r.h5"
    w = ResultsWriter(path)
    scene = straight_scene(0, 12)
    rec = scene_record(scene, agents_dropped=3)
    w.prepare([rec], ROOT)
    skipped = [SkippedScene("logs/a.pkl", "", "truncated pickle"), SkippedScene("logs/b.json", "seg-7", "no ego")]
    w.write_skipped(skipped)
    s = read_summary(path)
    assert [(r.file, r.scene_id, r.reason) for r in s.skipped] == [(x.file, x.scene_id, x.reason) for x in skipped]
    assert s.scenarios[0].agents_dropped == 3
    assert s.scenarios[0].offset == pytest.approx(tuple(scene.world_origin))  # recentring offset, m


def test_a_reader_keeps_its_snapshot_while_commits_land(tmp_path):
    path = tmp_path / "r.h5"
    _, scenes, ids = _filled(path, n_keys=1)
    with h5py.File(path, "r", locking=False) as f:  # e.g. the dashboard, mid-read (same process: no lock)
        w = ResultsWriter(path)
        with w.lock():
            for k in range(1, 4):
                w.commit(f"k{k}", CheckpointAttrs(name="x", kind="checkpoint"), _rows(ids, k), scenes, ROOT)
        assert list(f["checkpoints"]) == ["k0"] and f["checkpoints/k0/metrics/ade"][0] == 0
    assert len(read_summary(path).checkpoints) == 4


def test_a_reader_open_in_this_process_does_not_block_the_writer(tmp_path):
    """A budgeted evaluation resumes while it reads the stored rows (``open_results``) and stores scenes in a thread:
    both open the file in one process, which HDF5 refuses unless they agree on file locking."""
    from sim.results.reader import open_results

    path = tmp_path / "r.h5"
    _filled(path, n_keys=1)
    with open_results(path) as f:
        w = ResultsWriter(path)
        w.write_skipped([SkippedScene("logs/a.pkl", "", "truncated pickle")])
        assert list(f["checkpoints"]) == ["k0"]
    assert [r.file for r in read_summary(path).skipped] == ["logs/a.pkl"]


def test_catalogue_is_what_the_simulator_computes():
    from sim.metrics.registry import REGISTRY

    assert tuple(REGISTRY) == METRIC_NAMES
    for spec in CATALOGUE:
        assert REGISTRY[spec.name].unit == spec.unit and REGISTRY[spec.name].higher_is_better == spec.higher_is_better
        assert spec.definition and "\n" not in spec.definition
    assert pdm_score(0.0, 0.0, 1.0, 1.0, 1.0) == pytest.approx(1.0)
    assert pdm_score(1.0, 0.0, 1.0, 1.0, 1.0) == 0.0
    assert pdm_score(0.0, 0.0, 0.5, 0.0, 1.0) == pytest.approx((2.5 + 2) / 12)


def test_a_results_file_moved_without_its_sidecar_says_so(tmp_path):
    """Moved without ``<name>.parts/``: one line naming the file and what to do, not an h5py traceback."""
    path = tmp_path / "r.h5"
    _filled(path, n_keys=1)
    moved = tmp_path / "elsewhere" / "r.h5"
    moved.parent.mkdir()
    shutil.copy(path, moved)
    with pytest.raises(ResultsError, match=r"r\.h5\.parts/ is not beside it.*moved together"):
        read_summary(moved)
    shutil.copytree(parts_dir(path), parts_dir(moved))  # moved together: readable
    assert len(read_summary(moved).checkpoints) == 1


def test_the_index_does_not_grow_with_each_commit_of_the_same_root(tmp_path):
    """The root's attributes (a digest per scene: about 0.5 MB at 10,000 scenes) are written only when they change.
    HDF5 does not reuse the space of a rewritten large attribute, and every commit copies the index: rewriting them
    at each commit grew it by their size each time (147 MB after 80 commits of a 10,000-scene sweep)."""
    path = tmp_path / "r.h5"
    scenes = [straight_scene(i, 12) for i in range(12)]
    root = {**ROOT, "scene_digests": {f"scene-{i:05d}": f"{i:064x}" for i in range(4000)}}  # about 0.3 MB
    w = ResultsWriter(path)
    w.prepare(scenes, root)

    def commit(j, root):
        w.commit("k0", CheckpointAttrs(name="ep0.pt", kind="checkpoint", episode=0), _rows([scenes[j].id]),
                 scenes[j : j + 1], root)

    commit(0, root)
    size = path.stat().st_size
    for j in range(1, 11):
        commit(j, root)
    assert path.stat().st_size < size + 10 * 16_384  # a few kilobytes per commit, not the root's 0.3 MB
    commit(11, {**root, "run_dir": "elsewhere"})
    with h5py.File(path, "r") as f:
        assert f.attrs["run_dir"] == "elsewhere"  # a changed value is still written
    assert len(read_checkpoints(path)[0].rows.scenario_ids) == 12


def test_an_unreadable_commit_file_is_named_and_nothing_is_lost(tmp_path):
    """A commit file overwritten behind the index's back: resuming names that file in one line and leaves every file
    as it was."""
    from sim.results.errors import EvaluationError

    path = tmp_path / "r.h5"
    w, _, ids = _filled(path, n_keys=2)
    with h5py.File(path, "r", locking=False) as f:
        bad = path.parent / f["checkpoints"].get("k1", getlink=True).filename
    bad.write_text("garbage\n")
    before = {p: p.read_bytes() for p in [path, *w.parts.iterdir()]}
    with pytest.raises(EvaluationError, match=f"{bad.name}: the stored rows of checkpoint k1 cannot be read") as e:
        w.done()
    assert "\n" not in str(e.value)
    assert {p: p.read_bytes() for p in [path, *w.parts.iterdir()]} == before
