"""Connection and synchronous-mode session with a CARLA server: fast failure, watchdog, cleanup.

- :func:`probe` resolves the host name and opens a TCP connection to the port, so a missing
  server is reported in about a second (``carla.Client`` itself does not connect, and
  ``get_world`` only fails after the full RPC timeout).
- :func:`connect` then builds the client and checks that the world answers.
- :class:`CarlaSession` (a context manager) switches the world to synchronous mode with
  ``fixed_delta_seconds = dt`` and rendering off, ticks with a watchdog, remembers every actor it
  spawns and, in ``__exit__`` (also on Ctrl-C): stops sensors, destroys every actor once, ticks,
  and restores the world's original settings. Ctrl-C during the cleanup itself is deferred until
  the cleanup has finished.

The session only uses the client and world objects' methods, so its logic can be exercised
against any object with the same methods (see ``tests/sim/backends/carla/test_session_logic.py``).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from dataclasses import dataclass

from sim.backends.carla import CARLA_VERSION, CarlaError, require_carla


@dataclass(frozen=True)
class Endpoint:
    """One CARLA server: host name or address and RPC port (the server's ``-carla-rpc-port``)."""

    host: str = "localhost"
    port: int = 2000

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SessionConfig:
    """Timeouts (seconds) of a session.

    Attributes:
        probe_timeout: TCP connect timeout of the reachability probe.
        rpc_timeout: client RPC timeout (``client.set_timeout``) for world loading and calls.
        tick_timeout: watchdog on each ``world.tick``: longer means the server stalled.
        load_timeout: RPC timeout while a map is generated or loaded (slow on first use).
    """

    probe_timeout: float = 2.0
    rpc_timeout: float = 10.0
    tick_timeout: float = 10.0
    load_timeout: float = 60.0


def probe(endpoint: Endpoint, timeout: float = 2.0) -> str:
    """Check that something listens at ``endpoint``; return the resolved IP address.

    Raises:
        CarlaError: the host name does not resolve, or nothing accepts a TCP connection on the port.
    """
    if not (0 < endpoint.port < 65536):
        raise CarlaError(f"CARLA port must be in 1..65535, got {endpoint.port}")
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise CarlaError(f"cannot resolve CARLA host {endpoint.host!r}: {exc}") from None
    last: OSError | None = None
    for family, stype, proto, _, addr in infos:
        with socket.socket(family, stype, proto) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(addr)
                return str(addr[0])
            except OSError as exc:
                last = exc
    reason = "timed out" if isinstance(last, socket.timeout) else (last.strerror or str(last)) if last else "no address"
    raise CarlaError(
        f"no CARLA server at {endpoint} ({reason}); start one with: CarlaUE4.sh -RenderOffScreen "
        f"-carla-rpc-port={endpoint.port}"
    )


def connect(endpoint: Endpoint, cfg: SessionConfig | None = None):
    """Probe the server, build a ``carla.Client`` and check that its world answers.

    Returns:
        ``(client, world)``.

    Raises:
        CarlaError: package missing, host unresolvable, port closed, or no answer within ``rpc_timeout``.
    """
    cfg = cfg or SessionConfig()
    carla = require_carla()
    ip = probe(endpoint, cfg.probe_timeout)
    client = carla.Client(ip, endpoint.port)
    client.set_timeout(cfg.rpc_timeout)
    try:
        world = client.get_world()
        server = client.get_server_version()
    except RuntimeError as exc:
        raise CarlaError(f"CARLA server at {endpoint} did not answer within {cfg.rpc_timeout:g} s: {exc}") from None
    if not str(server).startswith(CARLA_VERSION):
        print(f"warning: CARLA server {endpoint} runs {server}, client is {CARLA_VERSION}")
    return client, world


@contextlib.contextmanager
def _defer_sigint():
    """Hold Ctrl-C until the block ends (main thread only), then re-raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: list[bool] = []
    old = signal.signal(signal.SIGINT, lambda *_: hit.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if hit:
        raise KeyboardInterrupt


class CarlaSession:
    """Synchronous-mode use of one CARLA world, with cleanup guaranteed by ``with``.

    Args:
        client: a connected ``carla.Client`` (or an object with the same methods).
        world: its ``carla.World``.
        dt: simulation step, s (the scenario's dt) -> ``fixed_delta_seconds``.
        cfg: timeouts.
        name: label used in error messages (usually the endpoint).
    """

    def __init__(self, client, world, dt: float, cfg: SessionConfig | None = None, name: str = "CARLA") -> None:
        if not dt > 0:
            raise CarlaError(f"session step dt must be positive, got {dt}")
        self.client = client
        self.world = world
        self.dt = float(dt)
        self.cfg = cfg or SessionConfig()
        self.name = name
        self.actors: list = []  # spawned, in order; destroyed in reverse
        self.sensors: list = []
        self.ticks = 0
        self._original = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> CarlaSession:
        carla = require_carla()
        self._original = self.world.get_settings()
        settings = carla.WorldSettings(synchronous_mode=True, no_rendering_mode=True, fixed_delta_seconds=self.dt)
        try:
            self.world.apply_settings(settings)
        except RuntimeError as exc:
            raise CarlaError(f"{self.name}: could not switch to synchronous mode: {exc}") from None
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> list[str]:
        """Stop sensors, destroy every spawned actor once, tick, restore the original settings.

        Every step runs even when an earlier one fails; Ctrl-C is deferred until the end.

        Returns:
            One line per cleanup step that failed (empty when all went well).
        """
        if self._closed:
            return []
        self._closed = True
        problems: list[str] = []
        with _defer_sigint():
            for s in self.sensors:
                try:
                    s.stop()
                except RuntimeError as exc:
                    problems.append(f"stop sensor {getattr(s, 'id', '?')}: {exc}")
            if self.actors:
                carla = require_carla()
                cmds = [carla.command.DestroyActor(a.id) for a in reversed(self.actors)]
                try:
                    self.client.apply_batch_sync(cmds, False)
                except RuntimeError as exc:
                    problems.append(f"destroy {len(cmds)} actors: {exc}")
                if self._original is not None:
                    try:
                        self.world.tick(self.cfg.tick_timeout)
                    except RuntimeError as exc:
                        problems.append(f"tick after destroy: {exc}")
            self.actors.clear()
            self.sensors.clear()
            if self._original is not None:
                try:
                    self.world.apply_settings(self._original)
                except RuntimeError as exc:
                    problems.append(f"restore settings: {exc}")
        for p in problems:
            print(f"warning: {self.name} cleanup: {p}")
        return problems

    # -- actors ----------------------------------------------------------------------------
    def spawn(self, blueprint, transform, *, physics: bool = True, attach_to=None, sensor: bool = False):
        """Spawn an actor and remember it for cleanup.

        Returns:
            The actor, or ``None`` when CARLA refused the spot (``try_spawn_actor``).
        """
        if attach_to is not None:
            actor = self.world.try_spawn_actor(blueprint, transform, attach_to)
        else:
            actor = self.world.try_spawn_actor(blueprint, transform)
        if actor is None:
            return None
        self.actors.append(actor)
        if sensor:
            self.sensors.append(actor)
        if not physics:
            actor.set_simulate_physics(False)
        return actor

    def apply(self, commands: list) -> None:
        """Send commands in one ``apply_batch_sync`` (no tick); raise :class:`CarlaError` on any failure."""
        if not commands:
            return
        try:
            responses = self.client.apply_batch_sync(commands, False)
        except RuntimeError as exc:
            raise CarlaError(f"{self.name}: batch of {len(commands)} commands failed: {exc}") from None
        errors = [r.error for r in responses or [] if getattr(r, "error", "")]
        if errors:
            raise CarlaError(f"{self.name}: {len(errors)} of {len(commands)} commands failed, first: {errors[0]}")

    # -- time ------------------------------------------------------------------------------
    def tick(self) -> int:
        """Advance the world by ``dt`` with a watchdog.

        Returns:
            The new frame number.

        Raises:
            CarlaError: the server did not answer within ``tick_timeout`` (stalled or gone).
        """
        t0 = time.monotonic()
        try:
            frame = self.world.tick(self.cfg.tick_timeout)
        except RuntimeError as exc:
            waited = time.monotonic() - t0
            raise CarlaError(
                f"{self.name} stalled: tick {self.ticks + 1} got no answer within {self.cfg.tick_timeout:g} s "
                f"(waited {waited:.1f} s): {exc}"
            ) from None
        self.ticks += 1
        return int(frame)
