"""The one checkpoint record (``sim.results.schema.CheckpointAttrs``): HDF5 round trip and older files' defaults."""

from __future__ import annotations

import math

import h5py
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.results.schema import CheckpointAttrs

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


@settings(max_examples=40, deadline=None)
@given(records)
def test_checkpoint_record_survives_an_hdf5_round_trip(tmp_path_factory, rec):
    path = tmp_path_factory.mktemp("h5") / "r.h5"
    with h5py.File(path, "w") as f:
        f.create_group("g").attrs.update(rec.to_hdf5())
    with h5py.File(path, "r") as f:
        back = CheckpointAttrs.from_hdf5(f["g"].attrs, "abc")
    assert _same(back, rec)


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
