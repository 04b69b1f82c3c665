"""Prepared scenes on disk (sim/scene_cache.py): a batch built through the cache is the batch built without it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from scenarios.procedural import generate_suite
from scenarios.scenario import LightState, content_digest
from sim.batch import make_batch
from sim.scene_cache import SceneCache


def assert_same(a, b, where: str = "batch") -> None:
    """Every tensor, array and field of two batches (recursively) is identical."""
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.nan_to_num(7.5), b.nan_to_num(7.5)), where
        assert torch.equal(a.isnan(), b.isnan()) if a.is_floating_point() else True, where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif hasattr(a, "data") and hasattr(a, "query"):  # a KD-tree: same points
        np.testing.assert_array_equal(a.data, b.data, err_msg=where)
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def scenes():
    return list(generate_suite(range(6)))


def test_cold_and_warm_batches_equal_the_uncached_batch(scenes, tmp_path):
    plain = make_batch(scenes)
    cache = SceneCache(tmp_path)
    cold = make_batch(scenes, cache=cache)
    assert (cache.hits, cache.misses) == (0, len(scenes))
    warm_cache = SceneCache(tmp_path)  # another process's view: files only
    warm = make_batch(scenes, cache=warm_cache)
    assert (warm_cache.hits, warm_cache.misses) == (len(scenes), 0)
    assert_same(plain, cold)
    assert_same(plain, warm)


def test_real_scenes_round_trip(shared_data, tmp_path):
    from scenarios.loading import load_scenes

    scenes = [s for src in ("scenarionet", "av2", "commonroad")
              for s in list(load_scenes(str(shared_data / src), progress=False).scenes)[:2]]
    assert len(scenes) >= 3
    for s in scenes:  # lane polygons, traffic lights, speed limits, road edges
        plain = make_batch([s])
        make_batch([s], cache=SceneCache(tmp_path))
        assert_same(plain, make_batch([s], cache=SceneCache(tmp_path)), s.id)


def test_a_damaged_file_is_prepared_again_and_replaced(scenes, tmp_path):
    cache = SceneCache(tmp_path)
    make_batch(scenes[:2], cache=cache)
    path = cache.path(scenes[0], 0.5)
    path.write_bytes(b"not a zip")
    again = SceneCache(tmp_path)
    batch = make_batch(scenes[:2], cache=again)
    assert (again.hits, again.misses) == (1, 1)
    assert_same(make_batch(scenes[:2]), batch)
    assert SceneCache(tmp_path).get(scenes[0], 0.5) is not None and path.stat().st_size > 100


def test_an_unwritable_cache_costs_the_cache_not_the_batch(scenes, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    assert_same(make_batch(scenes[:1]), make_batch(scenes[:1], cache=SceneCache(blocker / "sub")))


def test_content_digest_sees_every_field(scenes):
    s = scenes[0]
    same = dataclasses.replace(s, agents=s.agents.copy())
    assert content_digest(same) == content_digest(s)
    assert content_digest(dataclasses.replace(s, dt=0.2)) != content_digest(s)
    assert content_digest(dataclasses.replace(s, tags=(*s.tags, "x"))) != content_digest(s)
    moved = s.agents.copy()
    moved[0, -1, 0] += 1e-3
    assert content_digest(dataclasses.replace(s, agents=moved)) != content_digest(s)
    states = np.full((1, s.num_steps), int(LightState.STOP), np.int8)
    lit = dataclasses.replace(s.map, light_states=states, light_lanes=np.zeros(1, np.int64),
                              light_stop_points=np.zeros((1, 2)))
    assert content_digest(dataclasses.replace(s, map=lit)) != content_digest(s)
    assert content_digest(dataclasses.replace(s, map=dataclasses.replace(lit, light_states=states * 0))) != \
        content_digest(dataclasses.replace(s, map=lit))
