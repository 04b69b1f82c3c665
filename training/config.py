"""Training configuration: one frozen dataclass; the command line is generated from it.

Each field is a setting with its default written once here and its help text in the field's metadata;
:func:`build_parser` turns every field into a flag with ``scenarios.cli_config`` (``--field-name``;
booleans get ``--name``/``--no-name``). ``--resume [RUN]`` is the one flag that is not a setting.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from scenarios.cli_config import (
    FINITE,
    SEED,
    UNIT,
    OneLineParser,
    RangeError,
    above,
    add_dataclass_arguments,
    at_least,
    check_ranges,
    check_types,
    dataclass_from_args,
    flag_name,
    given_fields,
)
from sim.config import DEFAULT_MAX_AGENTS
from sim.rl.reward import RewardWeights

_W = RewardWeights()  # the one set of reward defaults (the Gym env uses the same)

MAX_WIDTH = 4096
"""Largest ``--hidden`` (wider MLPs do not fit a laptop's memory at the default batch sizes)."""
MAX_LAYERS = 16
"""Largest ``--layers``."""
MAX_AGENTS_LIMIT = 1024
"""Largest ``--max-agents`` (agents simulated per scene, ego included)."""
MAX_THREADS = 1024
"""Largest ``--threads``."""


class TrainError(RuntimeError):
    """A training run cannot start or continue; the message names the file and the problem."""


def _opt(default: Any, help: str, **metadata: Any) -> Any:
    """A setting: its default, its ``--help`` text and, for a number, its ``range`` (``scenarios.cli_config.Range``),
    plus ``choices``/``metavar``/``flag`` when given."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run (saved in ``config.json`` and in each checkpoint under ``config["train"]``).

    Episodes count scenes rolled out to their end during RL; ``batch_scenes`` of them make one PPO iteration.
    """

    episodes: int = _opt(500, "RL episodes (scenes rolled out to their end)", range=at_least(1))
    seed: int = _opt(0, "random seed (same seed, same run on CPU)", range=SEED)
    device: str = _opt("auto", "torch device: auto (cuda when present, else cpu), cpu, cuda, cuda:N, mps")
    out_dir: str | None = _opt(None, "run directory (default out/<run>, with out/latest pointed at it)",
                               metavar="DIR")
    eval_interval: int = _opt(50, "episodes between evaluations (one candidate checkpoint each)", range=at_least(1))
    keep_top_k: int = _opt(0, "keep only the k highest-entropy candidates in checkpoints/ (0 keeps all)",
                           range=at_least(0))
    select_after: int = _opt(0, "no checkpoint before this episode can become best_entropy", range=at_least(0))
    min_entropy: float | None = _opt(None, "early stop when entropy stays below this (nats)", range=FINITE)
    entropy_patience: int = _opt(3, "evaluations below --min-entropy before stopping", range=at_least(1))
    scenarios: str = _opt("procedural", "suite name (its train/val splits are used), scenario file or folder")
    init: str | None = _opt(None, "start RL from this checkpoint instead of behaviour cloning", metavar="CKPT")
    train_pool: int = _opt(256, "first scenes of the train split used (0 = all)", range=at_least(0))
    # behaviour cloning
    bc_scenes: int = _opt(128, "train scenes cloned", range=at_least(1))
    bc_epochs: int = _opt(15, "behaviour-cloning epochs (relabelling rounds use half)", range=at_least(1, 10_000))
    bc_lr: float = _opt(1e-3, "behaviour-cloning learning rate (Adam)", range=above(0, 1))
    bc_batch: int = _opt(512, "behaviour-cloning minibatch size (samples)", range=at_least(1))
    dagger_rounds: int = _opt(1, "on-policy relabelling rounds after cloning the log (0 = plain behaviour cloning)",
                              range=at_least(0, 100))
    # policy
    hidden: int = _opt(128, "width of the hidden layers", range=at_least(1, MAX_WIDTH))
    layers: int = _opt(2, "hidden layers per MLP", range=at_least(1, MAX_LAYERS))
    state_dependent_std: bool = _opt(False, "log-std as a head on the state (default: one learned vector)")
    init_log_std: float = _opt(-1.5, "initial log-std of the delta head (log m; -1.5 is sigma 0.22 m)",
                               range=at_least(-20, 5))
    # PPO
    batch_scenes: int = _opt(25, "scenes per PPO iteration", range=at_least(1))
    lr: float = _opt(1e-4, "PPO learning rate of the delta and value heads (Adam)", range=above(0, 1))
    log_std_lr: float = _opt(1e-2, "learning rate of a state-independent log-std", range=above(0, 1))
    gamma: float = _opt(0.97, "discount per simulation step", range=UNIT)
    gae_lambda: float = _opt(0.9, "GAE lambda", range=UNIT)
    clip: float = _opt(0.2, "PPO clip range of the probability ratio", range=above(0, 1))
    ppo_epochs: int = _opt(4, "PPO epochs per iteration", range=at_least(1, 1000))
    minibatch: int = _opt(512, "PPO minibatch size (transitions)", range=at_least(1))
    ent_coef: float = _opt(0.0, "entropy bonus coefficient", range=at_least(0))
    vf_coef: float = _opt(0.5, "value loss coefficient", range=at_least(0))
    max_grad_norm: float = _opt(0.5, "gradient norm clip", range=above(0))
    value_warmup: int = _opt(2, "first PPO iterations that train only the value head", range=at_least(0))
    delta_l2: float = _opt(0.3, "L2 pull of the delta mean towards the cloned plan", range=at_least(0))
    imitation: float = _opt(0.0, "weight of the on-policy imitation term (way back to the log)", range=at_least(0))
    noise_hold: int = _opt(5, "steps an exploration noise draw is held (temporally correlated exploration)",
                           range=at_least(1))
    # reward weights (per simulation step)
    w_progress: float = _opt(_W.progress, "reward per metre of route progress", range=at_least(0))
    w_collision: float = _opt(_W.collision, "penalty per collision onset", range=at_least(0))
    w_offroad: float = _opt(_W.offroad, "penalty per metre outside the drivable area (clamped at 2 m)",
                            range=at_least(0))
    w_comfort: float = _opt(_W.comfort, "penalty per nuPlan comfort bound broken", range=at_least(0))
    w_log_dist: float = _opt(_W.log_dist, "penalty per metre from the logged position", range=at_least(0))
    w_ttc: float = _opt(_W.ttc, "penalty per step with time to collision below 0.95 s (0 skips the TTC series)",
                        range=at_least(0))
    w_not_at_fault: float = _opt(_W.not_at_fault, "factor on the collision penalty when the scene's collision is "
                                 "not the ego's fault", range=UNIT)
    # evaluation
    val_scenes: int = _opt(16, "val scenes of the closed-loop evaluation at each interval", range=at_least(1))
    eval_states: int = _opt(512, "fixed evaluation states the entropy is averaged over", range=at_least(1))
    max_agents: int = _opt(DEFAULT_MAX_AGENTS, "agent cap per scene (the one rule: sim.batch.select_agents)",
                           range=at_least(1, MAX_AGENTS_LIMIT))
    strict: bool = _opt(False, "a scenario file or scene that cannot be used stops the run (default: skipped)")
    threads: int = _opt(1, "torch CPU threads (1 is fastest for these sizes)", range=at_least(1, MAX_THREADS))
    progress: bool = _opt(True, "progress bars (--no-progress silences every bar)")

    def reward_weights(self) -> RewardWeights:
        """The reward weights of this run (``--w-*``), as the reward functions take them."""
        return RewardWeights(**{k: getattr(self, "w_" + k) for k in RewardWeights._fields})

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

    @staticmethod
    def from_saved(d: dict[str, Any], path: Path) -> TrainConfig:
        """The settings a run saved (``train`` in its ``config.json`` at ``path``), checked as :meth:`validate` does.

        Raises:
            TrainError: naming ``path`` and the key (``train.episodes``) of an unknown setting, or of a value of
                the wrong type or outside its range.
        """
        extra = sorted(set(d) - {f.name for f in fields(TrainConfig)})
        if extra:
            raise TrainError(f"{path}: unknown training setting{'s' if len(extra) > 1 else ''} "
                             f"{', '.join('train.' + str(k) for k in extra)} (not a setting of this version)")
        try:
            cfg = TrainConfig(**d)
            check_types(cfg)
            check_ranges(cfg)
        except RangeError as e:
            key = f"train.{e.name} {e.problem}" if e.name else str(e)
            raise TrainError(f"{path}: {key}") from None
        return cfg

    def validate(self) -> TrainConfig:
        """Check every setting's type and declared range (the ``range`` next to its default).

        Raises:
            TrainError: the first bad setting, naming its flag and allowed range.
        """
        try:
            check_types(self)
            check_ranges(self)
        except RangeError as e:
            raise TrainError(str(e)) from None
        return self

    def check_selection(self) -> TrainConfig:
        """Check that ``--select-after`` leaves a checkpoint to select (the last evaluation is at ``--episodes``):
        a relation between two settings, beyond each one's declared range (:meth:`validate`).

        Raises:
            TrainError: ``--select-after`` is past ``--episodes``.
        """
        if self.select_after > self.episodes:
            raise TrainError(f"--select-after {self.select_after}: after the run's last episode (--episodes "
                             f"{self.episodes}), so no checkpoint could become best_entropy.pt")
        return self


RESUMABLE = ("episodes", "device", "threads", "progress")
"""Settings a resumed run takes from the command line; every other one comes from its ``config.json``."""


def _resume_flag(f: Any) -> str:
    """How a resumable setting is typed with ``--resume`` (``--no-progress`` for a boolean that defaults on)."""
    name = flag_name(f)
    return "--no-" + name[2:] if f.default is True else name


def build_parser(prog: str = "python -m training.train") -> argparse.ArgumentParser:
    """Argument parser: one flag per :class:`TrainConfig` field, plus ``--resume [RUN_DIR]``."""
    p = OneLineParser(
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
        given: names of the settings typed on the command line.
    """

    config: TrainConfig
    resume: str | None
    overrides: dict[str, Any]
    prog: str = "python -m training.train"
    given: frozenset[str] = frozenset()


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
    return CliArgs(cfg.validate(), ns.resume, overrides, prog, frozenset(given))
