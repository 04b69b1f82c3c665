"""No CARLA server: clear one-line errors within 5 s, no traceback (real sockets, real client)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.backends.carla import CarlaError
from sim.backends.carla.session import Endpoint, SessionConfig, connect, probe
from sim.evaluation.carla_pool import check_servers, parse_endpoints

REPO = Path(__file__).resolve().parents[4]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_closed_port_fails_fast():
    port = _closed_port()
    t0 = time.monotonic()
    with pytest.raises(CarlaError, match=rf"no CARLA server at 127.0.0.1:{port} .*-RenderOffScreen"):
        probe(Endpoint("127.0.0.1", port))
    assert time.monotonic() - t0 < 5.0


def test_unknown_host_fails_fast():
    t0 = time.monotonic()
    with pytest.raises(CarlaError, match="cannot resolve CARLA host 'no-such-host.invalid'"):
        probe(Endpoint("no-such-host.invalid", 2000))
    assert time.monotonic() - t0 < 5.0


def test_bad_port():
    with pytest.raises(CarlaError, match="1..65535"):
        probe(Endpoint("127.0.0.1", 70000))


def test_silent_server_times_out_in_rpc_timeout():
    """Something accepts TCP but never speaks CARLA's RPC: the real client gives up after rpc_timeout."""
    pytest.importorskip("carla")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        t0 = time.monotonic()
        with pytest.raises(CarlaError, match="did not answer within 1 s"):
            connect(Endpoint("127.0.0.1", srv.getsockname()[1]), SessionConfig(rpc_timeout=1.0))
        assert time.monotonic() - t0 < 5.0
    finally:
        srv.close()


def test_several_servers_probed_together():
    ports = [_closed_port(), _closed_port()]
    t0 = time.monotonic()
    with pytest.raises(CarlaError, match=r"no CARLA server .*\(and 1 more\)"):
        check_servers(parse_endpoints("127.0.0.1", ports))
    assert time.monotonic() - t0 < 5.0
    assert [str(e) for e in parse_endpoints("a,b", [2000, 3000])] == ["a:2000", "a:3000", "b:2000", "b:3000"]


def test_evaluate_carla_without_server():
    from sim.evaluation.carla_pool import evaluate_carla

    t0 = time.monotonic()
    with pytest.raises(CarlaError, match="no CARLA server"):
        evaluate_carla([], None, Endpoint("127.0.0.1", _closed_port()))
    assert time.monotonic() - t0 < 5.0


def test_cli_prints_one_line_and_exits_1():
    pytest.importorskip("carla")  # without the client the CLI says how to install it (test_missing_package_message)
    port = _closed_port()
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "sim.backends.carla", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert time.monotonic() - t0 < 5.0
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no CARLA server at 127.0.0.1:{port}")


def test_missing_package_message():
    """Without the carla package (import blocked), the CLI says how to install it, in one line."""
    code = (
        "import sys; sys.modules['carla'] = None\n"
        "from sim.backends.carla.__main__ import main\nsys.exit(main(['--port', '1']))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: the CARLA backend needs the Python client: pip install carla=="
    )


def test_evaluate_cli_probes_every_carla_server(tmp_path):
    """``sim.evaluate --backend carla --carla-port P1 P2``: the several-servers path is reachable from the CLI;
    with no server there it fails in one line naming one, fast, and writes nothing."""
    ports = [str(_closed_port()), str(_closed_port())]
    out = tmp_path / "r.h5"
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "sim.evaluate", "--backend", "carla", "--carla-host", "127.0.0.1", "--carla-port",
         *ports, "--baseline", "log-replay", "--out", str(out), "--max-scenarios", "2", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CARLA server at 127.0.0.1:" in lines[0] and "(and 1 more)" in lines[0]
    assert time.monotonic() - t0 < 60.0
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []  # no lock file left
