"""Bundled suites: splits, names, caching, and delegation to the file loaders."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest

from scenarios import suites
from scenarios.io import save_scenarios
from scenarios.procedural import FAMILY_NAMES, generate
from scenarios.suites import SuiteError, load_suite, suite_seeds


def test_small_suite_is_balanced_and_valid():
    scenes = load_suite("procedural-small")
    assert len(scenes) == 32
    counts = collections.Counter(s.family for s in scenes)
    assert set(counts) == set(FAMILY_NAMES) and set(counts.values()) == {4}
    assert len({s.id for s in scenes}) == 32
    for s in scenes:
        s.validate()


def test_splits_are_disjoint_and_sized():
    for name in suites.suite_names():
        seen: set[int] = set()
        for split in ("train", "val", "test"):
            seeds = set(suite_seeds(name, split))
            assert not seeds & seen
            seen |= seeds
    assert [len(suite_seeds("procedural", s)) for s in ("train", "val", "test")] == [1000, 100, 200]
    ids = {split: {s.id for s in load_suite("procedural-small", split)} for split in ("train", "val", "test")}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]


def test_spec_forms_agree_and_default_is_test():
    a = load_suite("procedural-small:val")
    b = load_suite("procedural-small", "val")
    assert [s.id for s in a] == [s.id for s in b]
    assert [s.id for s in load_suite("procedural-small")] == [s.id for s in load_suite("procedural-small:test")]
    # a returned list is the caller's to change
    a.pop()
    assert len(load_suite("procedural-small:val")) == 16


def test_unknown_names_are_clear_errors(tmp_path):
    with pytest.raises(SuiteError, match=r"unknown suite 'nope'; known: procedural, procedural-small"):
        load_suite("nope")
    with pytest.raises(SuiteError, match=r"unknown split 'dev' for suite 'procedural'; known: train, val, test"):
        load_suite("procedural:dev")
    with pytest.raises(SuiteError, match="names split 'val' but split='test'"):
        load_suite("procedural:val", "test")
    with pytest.raises(SuiteError, match="unknown suite"):
        load_suite(str(tmp_path / "missing.npz"))


def test_path_delegates_to_format_loader(tmp_path):
    scenes = [generate("merge", 5), generate("left_turn", 6)]
    f = save_scenarios(tmp_path / "two.npz", scenes)
    back = load_suite(str(f))
    assert [s.id for s in back] == [s.id for s in scenes]
    assert np.array_equal(back[1].agents, scenes[1].agents)
    assert [s.id for s in load_suite(str(tmp_path))] == [s.id for s in scenes]
    with pytest.raises(SuiteError, match="bundled suites only"):
        load_suite(str(f), "test")


def test_disk_cache_round_trip_and_repair(tmp_path):
    suites.clear_memory_cache()
    first = load_suite("procedural-small:val", cache_dir=tmp_path)
    files = list(tmp_path.glob("procedural-small-val-*.npz"))
    assert len(files) == 1
    suites.clear_memory_cache()
    again = load_suite("procedural-small:val", cache_dir=tmp_path)
    assert [s.id for s in again] == [s.id for s in first]
    assert all(np.array_equal(a.agents, b.agents) for a, b in zip(first, again))
    files[0].write_bytes(b"not a zip")  # a damaged cache is regenerated, not fatal
    suites.clear_memory_cache()
    repaired = load_suite("procedural-small:val", cache_dir=tmp_path)
    assert [s.id for s in repaired] == [s.id for s in first]
    assert files[0].stat().st_size > 1000
    suites.clear_memory_cache()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _scene_bytes(s) -> int:
    arrays = [s.agents, s.valid, s.agent_type, s.route, s.map.lane_widths]
    for name in s.map.POLYLINE_FIELDS:
        arrays += [getattr(s.map, name).points, getattr(s.map, name).offsets]
    return sum(a.nbytes for a in arrays)


@pytest.mark.slow
def test_thousand_scene_suite_fits_in_memory():
    suites.clear_memory_cache()
    before = _rss_bytes()
    scenes = load_suite("procedural:train")
    grown = _rss_bytes() - before
    held = sum(_scene_bytes(s) for s in scenes)
    assert len(scenes) == 1000 and len({s.id for s in scenes}) == 1000
    assert held < 1 << 30 and grown < 1 << 30, (held, grown)
    suites.clear_memory_cache()
