"""Shared test fixtures and marker handling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def pytest_collection_modifyitems(config, items):
    """Skip CARLA server tests unless CARLA_HOST is set."""
    if os.environ.get("CARLA_HOST"):
        return
    skip = pytest.mark.skip(reason="needs a CARLA server: set CARLA_HOST (and CARLA_PORT) to run")
    for item in items:
        if "carla" in item.keywords and item.get_closest_marker("carla") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recorded samples in ../shared/data; skips when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recorded samples not found at {SHARED_DATA} (only present in the team's checkout)")
    return SHARED_DATA


FIELD_RULES = (REPO / ".." / "shared" / "cases" / "realdata" / "field_rules").resolve()


@pytest.fixture(scope="session")
def cases() -> Path:
    """``../shared/cases/realdata/field_rules``; skips with a reason when absent (a user's fresh clone)."""
    if not FIELD_RULES.is_dir():
        pytest.skip(f"field-rule cases not found at {FIELD_RULES} (only present in the team's checkout)")
    return FIELD_RULES


@pytest.fixture(scope="session", autouse=True)
def _sb3_logs_in_tmp(tmp_path_factory):
    """SB3's ``learn()`` without ``tensorboard_log`` makes an empty ``SB3-<date>`` folder in the system's temp dir
    (``stable_baselines3.common.logger.configure``); the suite's go under pytest's own temp folder instead."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3_logs")))
    yield
    mp.undo()
