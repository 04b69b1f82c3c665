"""Streamed scenes (scenarios.scene_file.SceneFile) against the whole-file reader, and load_scenes' choice of them."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.io import BLOCK, load_scenarios, save_scenarios
from scenarios.loading import load_scenes, streams
from scenarios.scenario import ScenarioError
from scenarios.scene_file import SceneFile, blocks_for, scene_ids, scene_keys, take
from tests.scenarios.test_scenario_io import _rewrite, _write_v2, assert_same, make_scene

N = 2 * BLOCK + 5  # three blocks, the last one short


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    scenes = [make_scene(num_agents=1 + i % 4, num_steps=12 + i % 7, seed=i, sid=f"t/{i}") for i in range(N)]
    return save_scenarios(tmp_path_factory.mktemp("sf") / "s.npz", scenes), scenes


def test_every_scene_reads_as_the_whole_file_reader_reads_it(scene_file):
    path, scenes = scene_file
    f = SceneFile.open(path)
    assert len(f) == N and scene_ids(f) == [s.id for s in scenes]
    assert scene_keys(f) == [(s.init_step, s.dt) for s in scenes]
    for a, b, c in zip(f, load_scenarios(path), scenes, strict=True):
        assert_same(a, b)
        assert_same(a, c)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, N - 1), min_size=1, max_size=12), st.integers(-N, N), st.integers(-N, N))
def test_take_and_slices_index_like_a_list(scene_file, picks, start, stop):
    path, scenes = scene_file
    f = SceneFile.open(path, cache_blocks=1)
    assert [s.id for s in take(f, picks)] == [scenes[i].id for i in picks]
    assert scene_ids(f[start:stop]) == [s.id for s in scenes[start:stop]]
    assert [s.id for s in take(scenes, picks)] == [scenes[i].id for i in picks]  # a list stays a list
    with pytest.raises(IndexError):
        f[N]


def test_a_thread_keeps_only_its_last_blocks_and_threads_do_not_share_them(scene_file):
    path, _ = scene_file
    f = SceneFile.open(path, cache_blocks=2)
    first = f[0]
    assert f[1] is not None and f[0] is first  # the same object while its block is kept (digests memoised on it)
    for _ in f:
        assert len(f._local.cache) <= 2
    assert f[0] is not first  # block 0 was dropped: decoded again
    seen: list = []
    t = threading.Thread(target=lambda: seen.append((f[N - 1].id, len(f._local.cache))))
    t.start()
    t.join()
    assert seen == [(f"t/{N - 1}", 1)]


def test_pickles_as_its_index_and_reads_the_file_in_the_other_process(scene_file):
    path, scenes = scene_file
    f = SceneFile.open(path)
    list(f)  # a full cache is not pickled
    blob = pickle.dumps(f[BLOCK:])
    assert len(blob) < 20_000
    g = pickle.loads(blob)
    assert_same(g[0], scenes[BLOCK])


def test_a_bad_scene_is_skipped_by_its_id_and_a_version_2_file_is_refused(tmp_path, scene_file):
    _, scenes = scene_file
    path = save_scenarios(tmp_path / "s.npz", scenes[: BLOCK + 2])

    def nan_in_block_1(a):
        x = a["b1/agents/data"].copy()
        x[0] = np.nan
        a["b1/agents/data"] = x

    _rewrite(path, nan_in_block_1)
    skipped: list = []
    f = SceneFile.open(path, skipped)
    assert scene_ids(f) == [s.id for i, s in enumerate(scenes[: BLOCK + 2]) if i != BLOCK]
    assert [k for k, _ in skipped] == [scenes[BLOCK].id] and "NaN" in skipped[0][1]
    with pytest.raises(ScenarioError, match=rf"s\.npz: scene {BLOCK}: .*NaN"):
        SceneFile.open(path)
    _write_v2(tmp_path / "v2.npz", scenes[:3])
    with pytest.raises(ScenarioError, match=r"v2\.npz: format version 2 is read whole"):
        SceneFile.open(tmp_path / "v2.npz")
    with pytest.raises(ScenarioError, match="no such scenario file"):
        SceneFile.open(tmp_path / "missing.npz")


def test_load_scenes_streams_a_version_3_file_of_more_scenes_than_the_window(tmp_path, scene_file):
    path, scenes = scene_file
    held = load_scenes(path, window=N)
    assert isinstance(held.scenes, list) and len(held.scenes) == N
    streamed = load_scenes(path, window=BLOCK)
    assert isinstance(streamed.scenes, SceneFile) and streamed.scenes.cache_blocks == blocks_for(BLOCK) == 3
    assert scene_ids(streamed.scenes) == scene_ids(held.scenes) and streamed.files == held.files
    assert isinstance(load_scenes(path).scenes, list)  # no window: held
    assert streams(3, N, BLOCK) and not streams(2, N, BLOCK) and not streams(3, N, N) and not streams(3, N, None)
    _write_v2(tmp_path / "v2.npz", scenes[:5])
    assert isinstance(load_scenes(tmp_path / "v2.npz", window=2).scenes, list)  # version 2: read whole
    # a bad scene: skipped with its file and id, or the --strict error
    bad = save_scenarios(tmp_path / "bad.npz", scenes[:BLOCK + 2])
    _rewrite(bad, lambda a: a.__setitem__("b1/route/shape", a["b1/route/shape"][:-1]))
    rep = load_scenes(bad, window=4)
    assert isinstance(rep.scenes, SceneFile) and len(rep.scenes) == BLOCK + 1
    assert [(s.file, s.scene_id) for s in rep.skipped] == [(str(bad), scenes[BLOCK + 1].id)]
    with pytest.raises(ScenarioError, match=r"bad\.npz:t/.*\(--strict\)"):
        load_scenes(bad, window=4, strict=True)
    # a file that cannot be indexed at all: the whole-file path names it
    (tmp_path / "trunc.npz").write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ScenarioError, match="trunc.npz"):
        load_scenes(tmp_path / "trunc.npz", window=4)


def test_a_file_damaged_after_indexing_is_a_one_line_error_naming_it(tmp_path, scene_file):
    path, scenes = scene_file
    copy = save_scenarios(tmp_path / "s.npz", scenes[: BLOCK + 2])
    f = SceneFile.open(copy)
    copy.write_bytes(copy.read_bytes()[:4000])  # truncated once indexed: another process or thread reads it next
    with pytest.raises(ScenarioError, match=r"s\.npz: block 1 unreadable since the file was indexed") as e:
        pickle.loads(pickle.dumps(f))[BLOCK]
    assert "\n" not in str(e.value)
