"""Wall time of ``python -m training.train`` (behaviour cloning included); prints one JSON line.

``python -m benchmarks.train_speed [--episodes 500] [--device auto|cpu|cuda|cuda:N]`` ->
``{"episodes": 500, "wall_s": 71.3, "device": "cpu", ...}``. The run is written to a temporary folder.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.train_speed", "python -m benchmarks.train_speed")

import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import cli
from policy.device import DeviceError, resolve_device
from training.train import main as train_main


@cli.one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Run one training and print ``{"episodes", "wall_s", "device", "threads", "rc"}`` as JSON (bad input: one line
    on stderr, exit status 2)."""
    p = cli.parser("python -m benchmarks.train_speed", __doc__)
    cli.flag(p, "--episodes", "training episodes (python -m training.train --episodes)", default=500, type=int,
             range=cli.at_least(1))
    cli.flag(p, "--device", "auto, cpu, cuda, cuda:N, mps", default="auto")
    cli.flag(p, "--seed", "training seed", default=0, type=int, range=cli.SEED)
    a = p.parse_args(argv)
    try:
        device = str(resolve_device(a.device))
    except DeviceError as e:
        p.error(str(e))
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        out = Path(tmp) / "run"
        args = ["--episodes", str(a.episodes), "--device", a.device, "--seed", str(a.seed), "--out-dir", str(out),
                "--no-progress"]
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = train_main(args)
        wall = time.perf_counter() - t0
    print(json.dumps({"episodes": a.episodes, "wall_s": round(wall, 2), "device": device,
                      "threads": torch.get_num_threads(), "rc": rc}))
    return rc
