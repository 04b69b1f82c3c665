"""The one checkpoint record and the one scene header (``sim.results.schema``): HDF5 round trips, older files."""

from __future__ import annotations

import math

import h5py
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.results.reader import read_scenarios
from sim.results.schema import CheckpointAttrs, SceneHeader

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
num = st.floats(allow_nan=True, allow_infinity=False, width=64)
records = st.builds(
    CheckpointAttrs,
    name=text, kind=st.sampled_from(["checkpoint", "baseline"]), path=text, sha256=text, weights_sha256=text,
    roles=st.lists(st.sampled_from(["candidate", "best_entropy", "last", "best_reward", "bc"]), unique=True,
                   max_size=5).map(tuple),
    files=st.lists(text, max_size=3).map(tuple), episode=st.integers(-1, 10**6), entropy=num,
    entropy_per_dim=st.lists(st.floats(-5, 5), max_size=4).map(tuple), train_reward=num,
    eval_info=st.dictionaries(st.sampled_from(["score", "collision"]), st.floats(0, 1), max_size=2),
    backend=st.sampled_from(["kinematic", "carla", ""]),
)


def _same(a: CheckpointAttrs, b: CheckpointAttrs) -> bool:
    def norm(r):
        return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in vars(r).items()}
    return norm(a) == norm(b)


def _stored(path, group: str, attrs: dict, read):
    """Write ``attrs`` on ``group`` of a new HDF5 file at ``path``, then ``read(the group's attrs)`` from it."""
    with h5py.File(path, "w") as f:
        f.create_group(group).attrs.update(attrs)
    with h5py.File(path, "r") as f:
        return read(f[group].attrs)


@settings(max_examples=40, deadline=None)
@given(records)
def test_checkpoint_record_survives_an_hdf5_round_trip(tmp_path_factory, rec):
    path = tmp_path_factory.mktemp("h5") / "r.h5"
    assert _same(_stored(path, "g", rec.to_hdf5(), lambda a: CheckpointAttrs.from_hdf5(a, "abc")), rec)


def test_an_older_group_without_attributes_reads_with_defaults(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.create_group("a")
        f.create_group("b").attrs.update({"roles": "not json", "episode": "x", "entropy": b"1.5"})
    with h5py.File(path, "r") as f:
        a = CheckpointAttrs.from_hdf5(f["a"].attrs, "baseline-log-replay")
        b = CheckpointAttrs.from_hdf5(f["b"].attrs, "0123abcd")
    assert (a.kind, a.name, a.episode, a.roles) == ("baseline", "baseline-log-replay", -1, ())
    assert math.isnan(a.entropy) and a.eval_info == {}
    assert (b.kind, b.roles, b.episode, b.entropy) == ("checkpoint", (), -1, 1.5)


headers = st.builds(
    SceneHeader, id=text, source=text, family=text, tags=st.lists(text, max_size=3).map(tuple),
    dt=st.floats(0.01, 1.0), init_step=st.integers(0, 100), num_steps=st.integers(1, 1000),
    offset=st.none() | st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), agents_dropped=st.integers(-1, 500),
    types=st.lists(st.sampled_from(["following_lane", "stationary", "left_turn"]), unique=True, max_size=3).map(tuple),
)


@settings(max_examples=40, deadline=None)
@given(headers)
def test_scene_header_survives_an_hdf5_round_trip_and_reads_as_scenario_info(tmp_path_factory, head):
    path = tmp_path_factory.mktemp("h5") / "s.h5"
    back = _stored(path, "scenarios/s7", head.header_hdf5(),
                   lambda a: SceneHeader(**SceneHeader.header_fields(a, "s7")))
    assert back == head
    info = read_scenarios(path)
    assert len(info) == 1 and info[0].row == 7 and SceneHeader(**{k: getattr(info[0], k) for k in vars(head)}) == head


def test_an_unrecorded_offset_is_stored_as_nan_and_read_as_none(tmp_path):
    head = SceneHeader(id="a", source="s", family="f", tags=(), dt=0.1, init_step=0, num_steps=5)
    assert np.isnan(head.header_hdf5()["offset"]).all()
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_group("g").attrs.update(head.header_hdf5())
        assert SceneHeader.header_fields(f["g"].attrs, "g")["offset"] is None
