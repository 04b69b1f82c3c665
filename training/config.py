"""Training configuration: one frozen dataclass; the command line is generated from it.

Each field is a setting with its default written once here and its help text in the field's metadata;
:func:`build_parser` turns every field into a flag with ``scenarios.cli_config`` (``--field-name``;
booleans get ``--name``/``--no-name``). ``--resume [RUN]`` is the one flag that is not a setting.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

from scenarios.cli_config import add_dataclass_arguments, dataclass_from_args, flag_name, given_fields
from sim.config import DEFAULT_MAX_AGENTS


class TrainError(RuntimeError):
    """A training run cannot start or continue; the message names the file and the problem."""


def _opt(default: Any, help: str, **metadata: Any) -> Any:
    """A setting: its default and its ``--help`` text (plus ``choices``/``metavar``/``flag`` when given)."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run (saved in ``config.json`` and in each checkpoint under ``config["train"]``).

    Episodes count scenes rolled out to their end during RL; ``batch_scenes`` of them make one PPO iteration.
    """

    episodes: int = _opt(500, "RL episodes (scenes rolled out to their end)")
    seed: int = _opt(0, "random seed (same seed, same run on CPU)")
    device: str = _opt("auto", "torch device: auto (cuda when present, else cpu), cpu, cuda, cuda:N, mps")
    out_dir: str | None = _opt(None, "run directory (default out/<run>, with out/latest pointed at it)",
                               metavar="DIR")
    eval_interval: int = _opt(50, "episodes between evaluations (one candidate checkpoint each)")
    keep_top_k: int = _opt(0, "keep only the k highest-entropy candidates in checkpoints/ (0 keeps all)")
    select_after: int = _opt(0, "no checkpoint before this episode can become best_entropy")
    min_entropy: float | None = _opt(None, "early stop when entropy stays below this (nats)")
    entropy_patience: int = _opt(3, "evaluations below --min-entropy before stopping")
    scenarios: str = _opt("procedural", "suite name (its train/val splits are used), scenario file or folder")
    init: str | None = _opt(None, "start RL from this checkpoint instead of behaviour cloning", metavar="CKPT")
    train_pool: int = _opt(256, "first scenes of the train split used (0 = all)")
    # behaviour cloning
    bc_scenes: int = _opt(128, "train scenes cloned")
    bc_epochs: int = _opt(15, "behaviour-cloning epochs (relabelling rounds use half)")
    bc_lr: float = _opt(1e-3, "behaviour-cloning learning rate (Adam)")
    bc_batch: int = _opt(512, "behaviour-cloning minibatch size (samples)")
    dagger_rounds: int = _opt(1, "on-policy relabelling rounds after cloning the log (0 = plain behaviour cloning)")
    # policy
    hidden: int = _opt(128, "width of the hidden layers")
    layers: int = _opt(2, "hidden layers per MLP")
    state_dependent_std: bool = _opt(False, "log-std as a head on the state (default: one learned vector)")
    init_log_std: float = _opt(-1.5, "initial log-std of the delta head (log m; -1.5 is sigma 0.22 m)")
    # PPO
    batch_scenes: int = _opt(25, "scenes per PPO iteration")
    lr: float = _opt(1e-4, "PPO learning rate of the delta and value heads (Adam)")
    log_std_lr: float = _opt(1e-2, "learning rate of a state-independent log-std")
    gamma: float = _opt(0.97, "discount per simulation step")
    gae_lambda: float = _opt(0.9, "GAE lambda")
    clip: float = _opt(0.2, "PPO clip range of the probability ratio")
    ppo_epochs: int = _opt(4, "PPO epochs per iteration")
    minibatch: int = _opt(512, "PPO minibatch size (transitions)")
    ent_coef: float = _opt(0.0, "entropy bonus coefficient")
    vf_coef: float = _opt(0.5, "value loss coefficient")
    max_grad_norm: float = _opt(0.5, "gradient norm clip")
    value_warmup: int = _opt(2, "first PPO iterations that train only the value head")
    delta_l2: float = _opt(0.3, "L2 pull of the delta mean towards the cloned plan")
    imitation: float = _opt(0.0, "weight of the on-policy imitation term (way back to the log)")
    noise_hold: int = _opt(5, "steps an exploration noise draw is held (temporally correlated exploration)")
    # reward weights (per simulation step)
    w_progress: float = _opt(0.0, "reward per metre of route progress")
    w_collision: float = _opt(20.0, "penalty per collision onset")
    w_offroad: float = _opt(0.5, "penalty per metre outside the drivable area (clamped at 2 m)")
    w_comfort: float = _opt(1.0, "penalty per nuPlan comfort bound broken")
    w_log_dist: float = _opt(0.05, "penalty per metre from the logged position")
    w_ttc: float = _opt(2.0, "penalty per step with time to collision below 0.95 s (0 skips the TTC series)")
    w_not_at_fault: float = _opt(0.1, "factor on the collision penalty when the scene's collision is not the "
                                 "ego's fault")
    # evaluation
    val_scenes: int = _opt(16, "val scenes of the closed-loop evaluation at each interval")
    eval_states: int = _opt(512, "fixed evaluation states the entropy is averaged over")
    max_agents: int = _opt(DEFAULT_MAX_AGENTS, "agent cap per scene (the one rule: sim.batch.select_agents)")
    strict: bool = _opt(False, "a scenario file or scene that cannot be used stops the run (default: skipped)")
    threads: int = _opt(1, "torch CPU threads (1 is fastest for these sizes)")
    progress: bool = _opt(True, "progress bars (--no-progress silences every bar)")

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
            (self.batch_scenes >= 1 and self.ppo_epochs >= 1 and self.minibatch >= 1,
             "--batch-scenes, --ppo-epochs and --minibatch must be >= 1"),
            (self.batch_scenes >= 1 and self.val_scenes >= 1 and self.bc_scenes >= 1, "scene counts must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise TrainError(msg)
        return self


RESUMABLE = ("episodes", "device", "threads", "progress")
"""Settings a resumed run takes from the command line; every other one comes from its ``config.json``."""


def _resume_flag(f: Any) -> str:
    """How a resumable setting is typed with ``--resume`` (``--no-progress`` for a boolean that defaults on)."""
    name = flag_name(f)
    return "--no-" + name[2:] if f.default is True else name


def build_parser(prog: str = "python -m training.train") -> argparse.ArgumentParser:
    """Argument parser: one flag per :class:`TrainConfig` field, plus ``--resume [RUN_DIR]``."""
    p = argparse.ArgumentParser(
        prog=prog, description="Behaviour cloning then PPO refinement of a waypoint policy; writes an "
        "entropy-ranked run.")
    p.add_argument("--resume", nargs="?", const="out/latest", default=None, metavar="RUN_DIR",
                   help="continue a run (default out/latest) with its saved settings; only "
                        + ", ".join(_resume_flag(f) for f in fields(TrainConfig) if f.name in RESUMABLE)
                        + " may be given with it")
    add_dataclass_arguments(p, TrainConfig)
    return p


class CliArgs(NamedTuple):
    """Parsed command line.

    Attributes:
        config: the settings for a new run.
        resume: run directory to continue, or None.
        overrides: settings that apply to a resumed run too (those of :data:`RESUMABLE` that were typed).
        prog: the command's name, for messages that print a command to run.
    """

    config: TrainConfig
    resume: str | None
    overrides: dict[str, Any]
    prog: str = "python -m training.train"


def parse_config(argv: list[str] | None = None, prog: str = "python -m training.train") -> CliArgs:
    """Parse the command line; raises :class:`TrainError` on bad values or settings a resume cannot change."""
    ns = build_parser(prog).parse_args(argv)
    given = given_fields(ns, TrainConfig)
    cfg = dataclass_from_args(TrainConfig, ns)
    if ns.resume is not None:
        fixed = sorted(given - set(RESUMABLE))
        if fixed:
            names = ", ".join(flag_name(f) for f in fields(TrainConfig) if f.name in fixed)
            raise TrainError(f"--resume {ns.resume}: {names} cannot change a run's saved settings (its config.json); "
                             "start a new run instead")
    overrides = {k: getattr(cfg, k) for k in RESUMABLE if k in given or k != "episodes"}
    return CliArgs(cfg.validate(), ns.resume, overrides, prog)
