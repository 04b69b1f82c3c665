"""What a run trains is what it records: one resolved config (issue 21 item 4).

With ``--init CKPT`` the architecture comes from the checkpoint, not from the defaults: :func:`resolve_init`
reads the init checkpoint once, before the run folder exists, and returns the config with the checkpoint's
architecture (:data:`ARCHITECTURE`) and a record of the init checkpoint (path, policy digest, episode). That one
config and that one record are what ``config.json`` and every checkpoint's ``config`` hold
(:func:`run_record`); :func:`check_architecture` makes sure the policy being trained has exactly that
architecture.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from policy.checkpoint import first_non_finite, read_checkpoint
from policy.model import WaypointPolicy
from scenarios.cli_config import flag_name
from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS
from sim.observation import OBS_DIM, OBS_VERSION
from training.config import CliArgs, TrainConfig, TrainError

ARCHITECTURE = ("hidden", "layers", "state_dependent_std", "init_log_std")
"""Settings that are also fields of ``policy.model.PolicyConfig``: with ``--init`` they come from the checkpoint."""


def _flag(name: str) -> str:
    return next(flag_name(f) for f in fields(TrainConfig) if f.name == name)


def resolve_init(cli: CliArgs) -> tuple[CliArgs, dict[str, Any] | None]:
    """The command line with ``--init``'s architecture filled in, and the init record (None without ``--init``).

    A resumed run is returned as it is (its ``config.json`` was resolved when it started).

    Returns:
        ``(cli, init)``: ``init`` is ``{"path", "policy_digest", "episode"}`` of the init checkpoint.

    Raises:
        policy.checkpoint.CheckpointError: the init checkpoint is missing or unreadable.
        TrainError: an architecture flag typed on the command line differs from the init checkpoint's.
    """
    cfg = cli.config
    if cli.resume is not None or cfg.init is None:
        return cli, None
    obj = read_checkpoint(cfg.init)
    bad = first_non_finite(obj["state_dict"])
    if bad is not None:
        raise TrainError(f"--init {cfg.init}: weight {bad} is not finite (NaN or infinite): nothing to train from")
    arch = obj["config"]["policy"]
    updates: dict[str, Any] = {}
    for name in ARCHITECTURE:
        if name not in arch:
            raise TrainError(f"--init {cfg.init}: its policy config lacks {name!r}")
        value = arch[name]
        if name in cli.given and getattr(cfg, name) != value:
            raise TrainError(f"{_flag(name)} {getattr(cfg, name)}: --init {cfg.init} has {name} {value}; drop "
                             f"{_flag(name)} (the architecture comes from the init checkpoint)")
        updates[name] = value
    try:
        cfg = replace(cfg, **updates).validate()
    except TrainError as e:
        raise TrainError(f"--init {cfg.init}: {e}") from None
    init = {"path": str(cfg.init), "policy_digest": obj["meta"].get("policy_digest"),
            "episode": obj["meta"].get("episode")}
    return cli._replace(config=cfg), init


def run_record(cfg: TrainConfig, init: dict[str, Any] | None) -> dict[str, Any]:
    """The one record of what a run trains: ``config`` of every checkpoint, and the same keys in ``config.json``.

    Keys: ``train`` (every setting), ``init`` (the init checkpoint's record, or None), ``obs_dim``,
    ``obs_version``, ``num_waypoints``, ``waypoint_steps`` (``policy`` is added by ``save_checkpoint``).
    """
    return {"train": cfg.to_dict(), "init": init, "obs_dim": OBS_DIM, "obs_version": OBS_VERSION,
            "num_waypoints": NUM_WAYPOINTS, "waypoint_steps": WAYPOINT_STEPS}


def check_architecture(cfg: TrainConfig, policy: WaypointPolicy) -> None:
    """Raise :class:`TrainError` when ``policy``'s architecture differs from the settings that will be recorded."""
    pc = policy.config
    wrong = [f"{n} {getattr(pc, n)} (settings say {getattr(cfg, n)})" for n in ARCHITECTURE
             if getattr(pc, n) != getattr(cfg, n)]
    if wrong:
        raise TrainError("the policy's architecture differs from the recorded settings: " + ", ".join(wrong))
