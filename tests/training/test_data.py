"""training.data: the train/val split of a file or folder."""

from __future__ import annotations

import pytest

from tests.sim.evaluation.test_evaluate_support import write_scenes
from training.config import TrainError
from training.data import split_scenes


def test_repeated_scene_ids_are_used_once_and_never_in_both_splits(tmp_path, capsys):
    """The same scenes in two files of a folder: each id is used once (the first file's), the splits stay
    disjoint, and each repeat is reported naming both files; --strict makes the first repeat an error."""
    write_scenes(tmp_path / "a.npz", 12, num_steps=30)
    write_scenes(tmp_path / "b.npz", 12, num_steps=30, start=6)  # scenes 6..11 are in both
    train = split_scenes(str(tmp_path), "train", progress=False)
    val = split_scenes(str(tmp_path), "val", progress=False)
    t_ids, v_ids = [s.id for s in train], [s.id for s in val]
    assert len(set(t_ids)) == len(t_ids) and len(set(v_ids)) == len(v_ids) and not set(t_ids) & set(v_ids)
    assert len(t_ids) + len(v_ids) == 18  # 0..17
    err = capsys.readouterr().err
    assert err.count("skipped ") == 6 and f"is in both {tmp_path / 'a.npz'} and {tmp_path / 'b.npz'}" in err
    with pytest.raises(TrainError, match=r"--scenarios .*: scene id .* is in both .* \(--strict\)"):
        split_scenes(str(tmp_path), "train", progress=False, strict=True)
