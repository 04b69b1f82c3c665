"""Training configuration: one frozen dataclass, parsed from the command line with argparse."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

from sim.config import DEFAULT_MAX_AGENTS


class TrainError(RuntimeError):
    """A training run cannot start or continue; the message names the file and the problem."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run (saved in ``config.json`` and in each checkpoint under ``config["train"]``).

    Episodes count scenes rolled out to their end during RL; ``batch_scenes`` of them make one PPO iteration.
    """

    episodes: int = 500
    seed: int = 0
    device: str = "auto"
    out_dir: str | None = None
    eval_interval: int = 50
    keep_top_k: int = 0
    select_after: int = 0
    min_entropy: float | None = None
    entropy_patience: int = 3
    scenarios: str = "procedural"
    init: str | None = None
    train_pool: int = 256
    # behaviour cloning
    bc_scenes: int = 128
    bc_epochs: int = 15
    bc_lr: float = 1e-3
    bc_batch: int = 512
    dagger_rounds: int = 1
    # policy
    hidden: int = 128
    layers: int = 2
    state_dependent_std: bool = False
    init_log_std: float = -1.5
    # PPO
    batch_scenes: int = 25
    lr: float = 1e-4
    log_std_lr: float = 1e-2
    gamma: float = 0.97
    gae_lambda: float = 0.9
    clip: float = 0.2
    ppo_epochs: int = 4
    minibatch: int = 512
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    value_warmup: int = 2
    delta_l2: float = 0.3
    imitation: float = 0.0
    noise_hold: int = 5
    # reward weights (per simulation step)
    w_progress: float = 0.0
    w_collision: float = 20.0
    w_offroad: float = 0.5
    w_comfort: float = 1.0
    w_log_dist: float = 0.05
    w_ttc: float = 2.0
    w_not_at_fault: float = 0.1
    # evaluation
    val_scenes: int = 16
    eval_states: int = 512
    max_agents: int = DEFAULT_MAX_AGENTS  # the simulator's one agent cap (sim.batch.select_agents)
    strict: bool = False  # a scenario that cannot be used stops the run instead of being skipped
    threads: int = 1
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every setting."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`TrainError`."""
        known = {f.name for f in fields(TrainConfig)}
        extra = set(d) - known
        if extra:
            raise TrainError(f"unknown training settings {sorted(extra)}")
        return TrainConfig(**d)

    def validate(self) -> TrainConfig:
        """Check ranges; raises :class:`TrainError` naming the bad setting."""
        checks = [
            (self.episodes >= 1, "--episodes must be >= 1"),
            (self.eval_interval >= 1, "--eval-interval must be >= 1"),
            (self.keep_top_k >= 0, "--keep-top-k must be >= 0 (0 keeps every checkpoint)"),
            (self.select_after >= 0, "--select-after must be >= 0"),
            (self.dagger_rounds >= 0 and self.threads >= 1, "--dagger-rounds must be >= 0, --threads >= 1"),
            (self.entropy_patience >= 1, "--entropy-patience must be >= 1"),
            (self.noise_hold >= 1, "--noise-hold must be >= 1"),
            (self.device in ("auto", "cpu", "cuda"), "--device must be auto, cpu or cuda"),
            (self.batch_scenes >= 1 and self.val_scenes >= 1 and self.bc_scenes >= 1, "scene counts must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise TrainError(msg)
        return self


def build_parser() -> argparse.ArgumentParser:
    """Argument parser for ``python -m training.train``."""
    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Behaviour cloning then PPO refinement of a waypoint policy; writes an entropy-ranked run.")
    d = TrainConfig()
    p.add_argument("--episodes", type=int, default=None, help=f"RL episodes (scenes rolled out), default {d.episodes}")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device)
    p.add_argument("--out-dir", default=None, help="run directory (default out/<run>, with out/latest updated)")
    p.add_argument("--resume", nargs="?", const="out/latest", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run (default out/latest); its saved settings are used")
    p.add_argument("--init", default=None, help="start RL from this checkpoint instead of behaviour cloning")
    p.add_argument("--eval-interval", type=int, default=d.eval_interval, help="episodes between evaluations")
    p.add_argument("--keep-top-k", type=int, default=d.keep_top_k,
                   help="keep only the k highest-entropy candidates in checkpoints/ (0 keeps all)")
    p.add_argument("--select-after", type=int, default=d.select_after,
                   help="no checkpoint before this episode can become best_entropy")
    p.add_argument("--min-entropy", type=float, default=None, help="early stop when entropy stays below this (nats)")
    p.add_argument("--entropy-patience", type=int, default=d.entropy_patience,
                   help="evaluations below --min-entropy before stopping")
    p.add_argument("--scenarios", default=d.scenarios, help="suite name (train/val splits used), file or folder")
    p.add_argument("--strict", action="store_true",
                   help="a scenario that cannot be used is an error (default: skipped with a one-line reason)")
    p.add_argument("--train-pool", type=int, default=d.train_pool,
                   help="first scenes of the train split used (0 = all)")
    p.add_argument("--batch-scenes", type=int, default=d.batch_scenes, help="scenes per PPO iteration")
    p.add_argument("--bc-scenes", type=int, default=d.bc_scenes, help="train scenes cloned")
    p.add_argument("--bc-epochs", type=int, default=d.bc_epochs)
    p.add_argument("--dagger-rounds", type=int, default=d.dagger_rounds,
                   help="on-policy relabelling rounds after cloning the log (0 = plain behaviour cloning)")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (1 is fastest for these sizes)")
    p.add_argument("--val-scenes", type=int, default=d.val_scenes)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--state-dependent-std", action="store_true", help="log-std as a head on the state")
    p.add_argument("--init-log-std", type=float, default=d.init_log_std,
                   help="initial log-std of the delta head (log m; -1.5 is sigma 0.22 m)")
    p.add_argument("--noise-hold", type=int, default=d.noise_hold,
                   help="steps an exploration noise draw is held (temporally correlated exploration)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


class CliArgs(NamedTuple):
    """Parsed command line.

    Attributes:
        config: the settings for a new run.
        resume: run directory to continue, or None.
        overrides: settings that apply to a resumed run too (device, progress, episodes when given).
    """

    config: TrainConfig
    resume: str | None
    overrides: dict[str, Any]


def parse_config(argv: list[str] | None = None) -> CliArgs:
    """Parse the command line; raises :class:`TrainError` on bad values."""
    a = build_parser().parse_args(argv)
    cfg = TrainConfig(
        episodes=a.episodes if a.episodes is not None else TrainConfig.episodes, seed=a.seed, device=a.device,
        out_dir=a.out_dir, eval_interval=a.eval_interval, keep_top_k=a.keep_top_k, select_after=a.select_after,
        min_entropy=a.min_entropy, entropy_patience=a.entropy_patience, scenarios=a.scenarios, init=a.init,
        strict=a.strict,
        train_pool=a.train_pool,
        batch_scenes=a.batch_scenes, bc_scenes=a.bc_scenes, bc_epochs=a.bc_epochs, dagger_rounds=a.dagger_rounds,
        threads=a.threads, val_scenes=a.val_scenes,
        lr=a.lr, hidden=a.hidden, state_dependent_std=a.state_dependent_std, init_log_std=a.init_log_std,
        noise_hold=a.noise_hold,
        progress=not a.no_progress)
    overrides: dict[str, Any] = {"device": a.device, "progress": not a.no_progress, "threads": a.threads}
    if a.episodes is not None:
        overrides["episodes"] = a.episodes
    return CliArgs(cfg.validate(), a.resume, overrides)
