"""Your own trainer, your own checkpoint format: a factory for ``--agent examples.custom_agent:make``.

The factory takes ``(checkpoint_path, device)`` and returns an object with ``info``
(:class:`sim.evaluation.plugins.AgentInfo`) and ``waypoints(obs [B, OBS_DIM]) -> [B, K, 2]`` (metres, ego frame).
Here the checkpoint is a plain tensor dict (``torch.save(state_dict)``; read with ``weights_only=True``) for a
small MLP that outputs waypoints directly; the training log is a CSV with a ``step`` column.

Run ``python -m examples.custom_agent --out out/custom_example`` from the repo root: it writes three checkpoints
(``step_100.pt`` ...) and ``train_log.csv``, then evaluates them on held-out scenes and judges the logged signals
with ``python -m sim.evaluate --agent examples.custom_agent:make --ckpt 'OUT/step_*.pt' --signals OUT/train_log.csv``.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from policy.checkpoint import file_load_reason, state_dict_mismatch
from sim.config import NUM_WAYPOINTS
from sim.evaluation.plugins import AgentError, AgentInfo, step_from_name, weights_digest
from sim.observation import OBS_DIM


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(OBS_DIM, 64), nn.Tanh(), nn.Linear(64, 2 * NUM_WAYPOINTS))


class MyAgent:
    """Waypoints straight from an MLP (a plan in metres, scaled by the current speed)."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:  # a text file, a pickle of code, a truncated file: say which, in one line
            why = file_load_reason(path, e)
            raise AgentError(f"{path}: not a checkpoint of examples.custom_agent ({why})") from None
        self.net = _net().to(device)
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise AgentError(f"{path}: not a checkpoint of examples.custom_agent (it holds a {type(state).__name__}, "
                             "not a state dict of tensors)")
        try:
            self.net.load_state_dict(state)
        except RuntimeError:
            raise AgentError(f"{path}: not a checkpoint of examples.custom_agent (its weights do not fit the MLP: "
                             f"{state_dict_mismatch(self.net.state_dict(), state)})") from None
        self.net.eval()
        self.info = AgentInfo("examples.custom_agent:make", path, weights_digest(state), step_from_name(path),
                              "file name")

    @torch.no_grad()
    def waypoints(self, obs: Tensor) -> Tensor:
        speed = obs[:, :1] * 10.0  # m/s (sim.observation layout)
        k = torch.arange(1, NUM_WAYPOINTS + 1, dtype=obs.dtype, device=obs.device) * 0.5
        plan = self.net(obs).view(-1, NUM_WAYPOINTS, 2)
        plan[..., 0] += speed * k
        return plan


def make(path: str, device: str = "cpu") -> MyAgent:
    """The factory ``--agent examples.custom_agent:make`` names."""
    return MyAgent(path, device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/custom_example"))
    ap.add_argument("--scenes", type=int, default=16)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = ["step,loss,plan_scale"]
    for i, step in enumerate((100, 200, 300)):  # stand-in for your training loop
        torch.manual_seed(i)
        net = _net()
        with torch.no_grad():
            net[-1].weight.mul_(0.1 * (i + 1))
        torch.save(net.state_dict(), a.out / f"step_{step}.pt")
        rows.append(f"{step},{1.0 / (i + 1)},{0.1 * (i + 1)}")
    (a.out / "train_log.csv").write_text("\n".join(rows) + "\n")

    cmd = [sys.executable, "-m", "sim.evaluate", "--agent", "examples.custom_agent:make", "--ckpt",
           str(a.out / "step_*.pt"), "--signals", str(a.out / "train_log.csv"), "--scenarios", "procedural-small:test",
           "--max-scenarios", str(a.scenes), "--n-resamples", "200", "--out", str(a.out / "results.h5"),
           "--no-progress"]
    print("$ " + " ".join(shlex.quote(c) for c in ["python", *cmd[1:]]), flush=True)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
