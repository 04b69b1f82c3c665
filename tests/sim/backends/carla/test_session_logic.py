"""Session logic (settings, watchdog, cleanup order) against a recorder of calls, NOT a CARLA server.

``CallRecorder`` objects stand in for ``carla.Client`` / ``carla.World`` / actors and only record
what the session asks of them; settings and commands are real ``carla`` client objects (they
work offline). What a real server does with them is covered by ``test_server.py``.
"""

from __future__ import annotations

import os
import signal

import pytest

carla = pytest.importorskip("carla")

from sim.backends.carla import CarlaError  # noqa: E402
from sim.backends.carla.session import CarlaSession, SessionConfig  # noqa: E402


class CallRecorder:
    """Records calls as ``(owner, method, args)`` in a shared list ``log``."""

    def __init__(self, log: list, owner: str) -> None:
        self.log = log
        self.owner = owner

    def _rec(self, method: str, *args):
        self.log.append((self.owner, method, args))


class RecorderActor(CallRecorder):
    def __init__(self, log, actor_id: int) -> None:
        super().__init__(log, f"actor{actor_id}")
        self.id = actor_id

    def stop(self):
        self._rec("stop")

    def set_simulate_physics(self, on: bool):
        self._rec("set_simulate_physics", on)


class _Response:
    def __init__(self, error: str = "") -> None:
        self.error = error


class RecorderClient(CallRecorder):
    def __init__(self, log, fail_batch: str = "", on_batch=None) -> None:
        super().__init__(log, "client")
        self.fail_batch = fail_batch
        self.on_batch = on_batch

    def apply_batch_sync(self, cmds, due_tick_cue=False):
        self._rec("apply_batch_sync", list(cmds), due_tick_cue)
        if self.on_batch:
            self.on_batch()
        return [_Response(self.fail_batch) for _ in cmds]


class RecorderWorld(CallRecorder):
    def __init__(self, log, stall_after: int | None = None, refuse_spawns: int = 0) -> None:
        super().__init__(log, "world")
        self.original = carla.WorldSettings(synchronous_mode=False, no_rendering_mode=False, fixed_delta_seconds=0.05)
        self.applied: list = []
        self.frame = 100
        self.stall_after = stall_after
        self.refuse = refuse_spawns
        self.next_id = 1

    def get_settings(self):
        self._rec("get_settings")
        return self.original

    def apply_settings(self, s):
        self._rec("apply_settings", s)
        self.applied.append(s)
        return self.frame

    def tick(self, seconds=0.0):
        self._rec("tick", seconds)
        if self.stall_after is not None and self.frame - 100 >= self.stall_after:
            raise RuntimeError(f"time-out of {int(seconds * 1000)}ms while waiting for the simulator")
        self.frame += 1
        return self.frame

    def try_spawn_actor(self, bp, tf, parent=None):
        self._rec("try_spawn_actor", bp, tf, parent)
        if self.refuse > 0:
            self.refuse -= 1
            return None
        a = RecorderActor(self.log, self.next_id)
        self.next_id += 1
        return a


def _methods(log, owner=None):
    return [(o, m) for o, m, _ in log if owner is None or o == owner]


def _destroyed(log) -> list[int]:
    out = []
    for _, m, args in log:
        if m == "apply_batch_sync":
            out += [c.actor_id for c in args[0] if isinstance(c, carla.command.DestroyActor)]
    return out


def test_settings_synchronous_then_restored():
    log = []
    world = RecorderWorld(log)
    with CarlaSession(RecorderClient(log), world, dt=0.1) as sess:
        s = world.applied[-1]
        assert s.synchronous_mode and s.no_rendering_mode and s.fixed_delta_seconds == pytest.approx(0.1)
        assert sess.tick() == 101
    assert world.applied[-1] is world.original  # restored last
    assert _methods(log)[-1] == ("world", "apply_settings")


@pytest.mark.parametrize("exc", [ValueError("boom"), KeyboardInterrupt()])
def test_cleanup_on_error_and_ctrl_c(exc):
    """Sensors stop first, every spawned actor is destroyed exactly once, a tick, then settings restored."""
    log = []
    world = RecorderWorld(log, refuse_spawns=1)
    client = RecorderClient(log)
    with pytest.raises(type(exc)), CarlaSession(client, world, dt=0.1) as sess:
        assert sess.spawn("bp", carla.Transform()) is None  # refused: nothing to destroy
        ego = sess.spawn("bp", carla.Transform())
        sensor = sess.spawn("bp", carla.Transform(), attach_to=ego, sensor=True)
        other = sess.spawn("bp", carla.Transform(), physics=False)
        sess.tick()
        raise exc
    assert sorted(_destroyed(log)) == sorted([ego.id, sensor.id, other.id])
    seq = _methods(log)
    i_stop = seq.index((f"actor{sensor.id}", "stop"))
    i_destroy = max(i for i, (_, m) in enumerate(seq) if m == "apply_batch_sync")
    i_restore = len(seq) - 1 - seq[::-1].index(("world", "apply_settings"))
    assert i_stop < i_destroy < i_restore
    assert ("world", "tick") in seq[i_destroy:i_restore]
    assert world.applied[-1] is world.original
    assert (f"actor{other.id}", "set_simulate_physics") in seq
    sess.close()  # idempotent: nothing destroyed twice
    assert len(_destroyed(log)) == 3


def test_watchdog_names_the_stall_and_still_cleans_up():
    log = []
    world = RecorderWorld(log, stall_after=2)
    cfg = SessionConfig(tick_timeout=0.25)
    sess = CarlaSession(RecorderClient(log), world, dt=0.1, cfg=cfg, name="h:2000")
    with pytest.raises(CarlaError, match=r"stalled: tick 3 got no answer within 0.25 s"), sess:
        sess.spawn("bp", carla.Transform())
        for _ in range(5):
            sess.tick()
    assert all(args == (0.25,) for o, m, args in log if m == "tick")
    assert world.applied[-1] is world.original  # the failed cleanup tick did not stop the restore
    assert len(_destroyed(log)) == 1


def test_failed_commands_raise():
    log = []
    sess = CarlaSession(RecorderClient(log, fail_batch="actor 7 not found"), RecorderWorld(log), dt=0.1)
    with sess, pytest.raises(CarlaError, match="2 of 2 commands failed, first: actor 7 not found"):
        sess.apply([carla.command.ApplyTransform(7, carla.Transform())] * 2)


def test_ctrl_c_during_cleanup_is_deferred():
    """A SIGINT that arrives while actors are being destroyed does not skip the settings restore."""
    log = []
    world = RecorderWorld(log)
    client = RecorderClient(log, on_batch=lambda: os.kill(os.getpid(), signal.SIGINT))
    sess = CarlaSession(client, world, dt=0.1).__enter__()
    sess.spawn("bp", carla.Transform())
    with pytest.raises(KeyboardInterrupt):
        sess.close()
    assert world.applied[-1] is world.original
    assert len(_destroyed(log)) == 1


def test_bad_dt():
    with pytest.raises(CarlaError, match="dt must be positive"):
        CarlaSession(None, None, dt=0.0)
