"""``python -m training.rl.train_rl_delta_waypoint``: the seed's command, an alias of ``python -m training.train``.

Same flags, same files (docs/run_files.md), e.g.::

    python -m training.rl.train_rl_delta_waypoint --out-dir out/rl_delta_waypoint_v0/run_001 --episodes 500
    python -m sim.evaluate --ckpt out/rl_delta_waypoint_v0/run_001/best_entropy.pt
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("training.rl.train_rl_delta_waypoint", "python -m training.rl.train_rl_delta_waypoint")

from training.train import main as train_main

PROG = "python -m training.rl.train_rl_delta_waypoint"


def main(argv: list[str] | None = None) -> int:
    """Run the trainer under this command's name (its messages print this command); returns the exit status."""
    return train_main(argv, prog=PROG)
