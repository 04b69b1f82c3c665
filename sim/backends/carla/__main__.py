"""``python -m sim.backends.carla --host H --port P``: check that a CARLA server answers (exit 0) or say why not (1)."""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("sim.backends.carla.__main__", "python -m sim.backends.carla")

import argparse
import sys
import time

from sim.backends.carla import CarlaError


def main(argv: list[str] | None = None) -> int:
    """Probe one or more servers; print the server version or a one-line error per server."""
    ap = argparse.ArgumentParser(prog="python -m sim.backends.carla", description=__doc__)
    ap.add_argument("--host", default="localhost", help="CARLA host name or address")
    ap.add_argument("--port", type=int, nargs="+", default=[2000], help="RPC port(s), one server each")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the world to answer")
    args = ap.parse_args(argv)
    from sim.backends.carla.session import Endpoint, SessionConfig, connect

    bad = 0
    for port in args.port:
        ep = Endpoint(args.host, port)
        t0 = time.monotonic()
        try:
            client, world = connect(ep, SessionConfig(probe_timeout=min(2.0, args.timeout), rpc_timeout=args.timeout))
            print(
                f"{ep}: CARLA {client.get_server_version()} map {world.get_map().name} ({time.monotonic() - t0:.1f} s)"
            )
        except CarlaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0
