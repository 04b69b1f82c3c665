"""``python -m training.train``: behaviour cloning, then PPO on the delta head, with entropy-ranked checkpoints.

Reads top to bottom, CleanRL style: (1) start a run or resume one, (2) the initial policy (behaviour cloning,
``--init`` or the resumed ``last.pt``), (3) the RL loop: rollout -> reward -> GAE -> PPO update -> at each
evaluation interval: entropy, closed-loop val metrics, a candidate checkpoint and the history files, then
(4) a summary table. The loop carries its counters in a :class:`TrainState` and gathers what it logs between two
evaluations in an :class:`IntervalLog`; ``last.pt`` holds both counters and records, so ``--resume`` continues
exactly where the last evaluation left off.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads: Ctrl-C while it does is one line, exit status 130
    from scenarios.commands import run_main

    run_main("training.train", "python -m training.train")

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from policy.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from policy.device import DeviceError, pick_device
from policy.model import PolicyConfig, WaypointPolicy
from scenarios.commands import command, no_interrupts
from scenarios.scenario import ScenarioError
from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS, SimError
from sim.observation import OBS_DIM, OBS_VERSION, SPEED_SCALE
from sim.results.run_folder import CONFIG_FILE, role_file
from sim.rl.reward import reward_signals, step_rewards
from sim.rollout import rollout
from training.bc import ExpertData, behaviour_clone, log_labels, relabel_on_policy
from training.checkpoints import CheckpointManager
from training.config import CliArgs, TrainConfig, TrainError, parse_config
from training.data import RunData, load_run_data
from training.evaluation import Evaluation, evaluate
from training.finite import require_finite_loss, require_finite_weights
from training.history import PPO_SERIES, EvalRecord, entropy_history_doc, train_metrics_doc, write_history
from training.ppo import Transitions, explained_variance, gae, make_sampling_policy_fn, ppo_update, rl_param_groups
from training.resolve import check_architecture, resolve_init, run_record
from training.run_dir import (
    create_run_dir,
    package_versions,
    read_json,
    remove_new_run,
    run_lock,
    update_latest,
    write_config,
)
from training.summary import print_summary

LAST, BC = role_file("last"), role_file("bc")

ERRORS = (TrainError, CheckpointError, SimError, ScenarioError, DeviceError)
"""Errors that end a run with one line on stderr and exit status 2."""


def resolve_device(name: str, batch_scenes: int) -> torch.device:
    """``--device`` to a present device (``policy.device.pick_device``: ``auto`` takes CUDA only from a batch size
    where it is faster, and says so); raises :class:`TrainError`."""
    try:
        device, why = pick_device(name, batch_scenes)
    except DeviceError as e:
        raise TrainError(str(e)) from None
    if name == "auto":
        print(f"device: {why}")
    return device


def iteration_seed(seed: int, iteration: int, stream: int) -> int:
    """Seed of random stream ``stream`` at PPO iteration ``iteration`` (a resumed run draws the same numbers)."""
    return (seed * 1_000_003 + iteration * 7919 + stream * 104_729) % (2**63 - 1)


class TrainState(NamedTuple):
    """The loop's counters: saved in ``last.pt`` (``train_state``) at every evaluation.

    Attributes:
        episode: RL episodes done.
        iteration: PPO iterations done.
        below_min: consecutive evaluations with entropy below ``--min-entropy``.
        stop_reason: why the run stopped early, or None.
    """

    episode: int = 0
    iteration: int = 0
    below_min: int = 0
    stop_reason: str | None = None

    @staticmethod
    def from_saved(saved: dict[str, Any]) -> TrainState:
        """From ``last.pt``'s ``train_state``."""
        return TrainState(int(saved["episode"]), int(saved["iteration"]), int(saved["below_min"]),
                          saved["stop_reason"])


class IntervalLog(NamedTuple):
    """What the loop logs between two evaluations (empty again after each; so empty in every ``last.pt``).

    Attributes:
        returns: undiscounted return of each training episode (reward units).
        ppo: per PPO iteration, :data:`training.history.PPO_SERIES` -> value (None when undefined).
    """

    returns: tuple[float, ...] = ()
    ppo: tuple[dict[str, float | None], ...] = ()

    def mean_return(self) -> float:
        """Mean episode return of the interval."""
        return sum(self.returns) / len(self.returns)

    def ppo_means(self) -> dict[str, float | None]:
        """Mean of each PPO statistic over the interval's iterations (None where never defined)."""
        out: dict[str, float | None] = {}
        for name in PPO_SERIES:
            vals = [v for it in self.ppo if (v := it.get(name)) is not None and v == v and abs(v) != float("inf")]
            out[name] = sum(vals) / len(vals) if vals else None
        return out


class RunStart(NamedTuple):
    """A run directory ready to train in.

    Attributes:
        run: the run directory.
        cfg: its settings (a resumed run's saved ones, with the command line's resumable overrides).
        saved: ``last.pt``'s ``train_state`` when resuming from it, else None (a fresh start).
        fresh: this process created the run (not ``--resume``); until its first checkpoint a failure removes it.
        made: the topmost folder created for a fresh run (removed again when it fails before its first
            checkpoint), or None when the run directory existed (empty) before (only its contents are removed).
        init: the ``--init`` checkpoint's record (``training.resolve.resolve_init``), or None.
    """

    run: Path
    cfg: TrainConfig
    saved: dict[str, Any] | None
    fresh: bool
    made: Path | None
    init: dict[str, Any] | None = None

    @property
    def record(self) -> dict[str, Any]:
        """``config`` of every checkpoint this run writes (``training.resolve.run_record``)."""
        return run_record(self.cfg, self.init)

    @property
    def complete(self) -> bool:
        """A resumed run that already trained its episodes or stopped early: there is nothing to do."""
        return self.saved is not None and (self.saved["episode"] >= self.cfg.episodes
                                           or self.saved["stop_reason"] is not None)

    @property
    def committed(self) -> bool:
        """The run has its first checkpoint (``last.pt``): from here on a failure keeps it for ``--resume``."""
        return (self.run / LAST).is_file()


class Interrupted(Exception):
    """Ctrl-C; the message says what was kept and the command that continues the run."""


def base_meta(episode: int, step: int, ev: Evaluation, kind: str, train_reward: float | None,
              ppo_stats: dict[str, float | None] | None = None) -> dict[str, Any]:
    """``meta`` of a checkpoint (``format_version``, ``policy_digest``, ... are added by ``save_checkpoint``)."""
    v = package_versions()
    meta = {"episode": episode, "step": step, "entropy": ev.entropy.total, "entropy_per_dim": ev.entropy.per_dim,
            "eval_info": ev.eval_info, "kind": kind, "train_reward": train_reward,
            "versions": {"torch": v["torch"], "package": v["driveselect"]}}
    if ppo_stats is not None:
        meta["ppo_stats"] = ppo_stats
    return meta


def start_or_resume(cli: CliArgs, init: dict[str, Any] | None = None) -> RunStart:
    """Open the run to continue (``--resume``) or create a fresh one; says which on stderr (or that it is complete).

    ``cli.config`` and ``init`` are already resolved (:func:`training.resolve.resolve_init`): ``config.json`` holds
    the same :func:`training.resolve.run_record` as every checkpoint.

    Raises:
        TrainError: no such run, unreadable ``config.json`` or ``last.pt``, the new directory is not empty, or
            ``--select-after`` is past ``--episodes`` (checked before anything is written).
    """
    if cli.resume is None:
        cfg = cli.config.check_selection()
        run, made = create_run_dir(cfg)
        try:
            record = run_record(cfg, init)
            write_config(run, cfg, {**{k: v for k, v in record.items() if k != "train"}, "run": run.name})
        except BaseException:  # Ctrl-C or a full disk while config.json is written: the run was never started
            with no_interrupts():
                remove_new_run(run, made)
            raise
        where = "out/latest moves to it after the first checkpoint" if cfg.out_dir is None else \
            "out/latest not moved: --out-dir given"
        print(f"run directory: {run} ({where})", file=sys.stderr)
        return RunStart(run, cfg, None, True, made, init)
    run = Path(cli.resume).resolve() if Path(cli.resume).is_symlink() else Path(cli.resume)
    config = run / CONFIG_FILE
    if not config.is_file():
        raise TrainError(f"--resume {cli.resume}: {config} not found (not a training run directory)")
    doc = read_json(config)
    if not isinstance(doc, dict) or not isinstance(doc.get("train"), dict):
        raise TrainError(f"--resume {cli.resume}: {config} holds no training settings ('train')")
    cfg = replace(TrainConfig.from_saved(doc["train"], config), **cli.overrides).validate().check_selection()
    init = doc.get("init")
    last = run / LAST
    if not last.exists():
        start = "--init " + cfg.init if cfg.init else "behaviour cloning"
        print(f"resuming {run}: it has no last.pt (stopped before its first checkpoint), so it starts again from "
              f"{start} with its saved settings", file=sys.stderr)
        return RunStart(run, cfg, None, False, None, init)
    saved = read_checkpoint(last).get("train_state")
    if saved is None:
        raise TrainError(f"{last}: holds no training state to resume from")
    check_train_state(saved, last)
    start = RunStart(run, cfg, saved, False, None, init)
    if start.complete:
        why = f"; stopped early: {saved['stop_reason']}" if saved["stop_reason"] else ""
        done = (f"{saved['episode']} of {cfg.episodes} episodes" if saved["episode"] <= cfg.episodes else
                f"{saved['episode']} episodes trained, --episodes {cfg.episodes} asks for fewer")
        print(f"{run} is complete ({done}{why}); nothing to do (give a larger --episodes to train further)",
              file=sys.stderr)
    else:
        print(f"resuming {run} from last.pt at episode {saved['episode']} of {cfg.episodes}", file=sys.stderr)
    return start


def check_train_state(saved: Any, last: Path) -> None:
    """Raise :class:`TrainError` naming ``last`` when its ``train_state`` is not what :func:`commit` writes."""
    def count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    ok = (isinstance(saved, dict) and all(count(saved.get(k)) for k in ("episode", "iteration", "below_min"))
          and isinstance(saved.get("stop_reason"), (str, type(None))) and isinstance(saved.get("records"), list)
          and isinstance(saved.get("bc"), dict) and isinstance(saved.get("optimizer"), dict))
    if ok:
        try:
            [EvalRecord.from_dict(r) for r in saved["records"]]
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
            raise TrainError(f"{last}: malformed training state records ({e})") from None
    else:
        raise TrainError(f"{last}: malformed training state (train_state needs episode, iteration, below_min, "
                         "stop_reason, records, bc, optimizer)")


def behaviour_cloned_policy(cfg: TrainConfig, data: RunData, device: torch.device) -> tuple[WaypointPolicy, str]:
    """Clone the log, then ``--dagger-rounds`` on-policy relabelling rounds; returns the policy and its source."""
    pcfg = PolicyConfig(obs_dim=OBS_DIM, num_waypoints=NUM_WAYPOINTS, obs_version=OBS_VERSION, hidden=cfg.hidden,
                        layers=cfg.layers, state_dependent_std=cfg.state_dependent_std,
                        init_log_std=cfg.init_log_std, speed_feature=0, speed_scale=SPEED_SCALE,
                        waypoint_dt=WAYPOINT_STEPS * data.val_batch.dt)
    policy = WaypointPolicy(pcfg).to(device)
    assert data.expert is not None
    expert = data.expert
    # one bar step per stage: the clone, then each relabelling round (a few seconds each, before PPO's bar)
    with tqdm(total=1 + cfg.dagger_rounds, unit="stage", desc="behaviour cloning", disable=not cfg.progress,
              file=sys.stderr, leave=False) as bar:
        bc = behaviour_clone(policy, expert, epochs=cfg.bc_epochs, lr=cfg.bc_lr, batch=cfg.bc_batch,
                             generator=torch.Generator().manual_seed(cfg.seed))
        bar.update()
        # DAgger-style rounds: visit the states the clone reaches in closed loop, label them with the log
        for r in range(cfg.dagger_rounds):
            gen = torch.Generator(device=device).manual_seed(iteration_seed(cfg.seed, r, 3))
            new = [relabel_on_policy(b, make_sampling_policy_fn(policy, gen)) for b in data.bc_batches()]
            expert = ExpertData(torch.cat([expert.obs] + [n.obs for n in new]),
                                torch.cat([expert.waypoints] + [n.waypoints for n in new]))
            bc = behaviour_clone(policy, expert, epochs=max(1, cfg.bc_epochs // 2), lr=cfg.bc_lr,
                                 batch=cfg.bc_batch, generator=torch.Generator().manual_seed(cfg.seed + r + 1),
                                 refit_norm=False)
            bar.update()
    return policy, (f"behaviour cloning of {len(data.bc_scenes)} train scenes + {cfg.dagger_rounds} relabelling "
                    f"rounds, {expert.obs.shape[0]} samples, final loss {bc.final_loss:.4f}")


def commit(start: RunStart, manager: CheckpointManager, policy: WaypointPolicy, opt: torch.optim.Optimizer,
           state: TrainState, bc_info: dict[str, Any], last_meta: dict[str, Any]) -> None:
    """History files, then ``last.pt`` with the training state (the commit point a resume starts from)."""
    cfg = start.cfg
    write_history(start.run,
                  entropy_history_doc(manager.records, manager.best, select_after=cfg.select_after,
                                      state_dependent_std=cfg.state_dependent_std, bc=bc_info),
                  train_metrics_doc(manager.records, manager.ranked, manager.best, manager.best_reward,
                                    keep_top_k=cfg.keep_top_k, select_after=cfg.select_after,
                                    episodes_done=state.episode, stop_reason=state.stop_reason, bc=bc_info))
    train_state = {"optimizer": opt.state_dict(), **state._asdict(),
                   "records": [r.to_dict() for r in manager.records], "bc": bc_info}
    save_checkpoint(start.run / LAST, policy, start.record, {**last_meta, "kind": "last"},
                    extra={"train_state": train_state})


@contextlib.contextmanager
def guarded(start: RunStart, prog: str) -> Iterator[None]:
    """Failure before the first checkpoint: remove what this run created (a second Ctrl-C cannot cut that short).
    Ctrl-C: say how to continue (the command shell-quoted, ready to paste)."""
    try:
        yield
    except BaseException as e:
        with no_interrupts():
            removed = start.fresh and not start.committed
            if removed:
                remove_new_run(start.run, start.made)
        if isinstance(e, KeyboardInterrupt):
            if not removed:
                raise Interrupted(f"interrupted: continue with {command(prog, '--resume', start.run)} (files up to "
                                  "the last evaluation are kept)") from None
            raise Interrupted(f"interrupted before the first checkpoint: {start.run} removed, nothing to resume; "
                              f"start again with {prog}") from None
        raise


def train(cli: CliArgs) -> int:
    """Run (or continue) a training run; returns 0."""
    # --- 1. start or resume ---------------------------------------------------------------------------------
    device = resolve_device(cli.config.device, cli.config.batch_scenes)  # before anything is written
    cli, init = resolve_init(cli)  # --init's architecture, read before anything is written
    start = start_or_resume(cli, init)
    cfg, run = start.cfg, start.run
    if start.complete:
        return 0
    with guarded(start, cli.prog), run_lock(run):
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        weights = cfg.reward_weights()
        manager = CheckpointManager(run, cfg.keep_top_k, cfg.select_after)
        init = None  # --init is read before the scenes are loaded: a bad file fails in a second, not a minute
        if start.saved is None and cfg.init is not None:
            init = load_checkpoint(cfg.init, device, expect_obs=(OBS_DIM, OBS_VERSION))
        data = load_run_data(cfg, run, device, need_expert=start.saved is None and cfg.init is None)

        # --- 2. the initial policy: resumed last.pt, --init, or behaviour cloning (saved as bc.pt) -----------
        if start.saved is not None:
            policy = load_checkpoint(run / LAST, device, expect_obs=(OBS_DIM, OBS_VERSION)).policy
            bc_info = start.saved["bc"]
            manager.records = [EvalRecord.from_dict(r) for r in start.saved["records"]]
            manager.restore_best_files()
        else:
            if init is not None:
                policy = init.policy
                bc_source = str(cfg.init)
            else:
                policy, bc_source = behaviour_cloned_policy(cfg, data, device)
            require_finite_weights(policy, bc_source.split(",")[0])
            check_architecture(cfg, policy)
            ev = evaluate(policy, data.eval_obs, data.val_batch, None)
            bc_meta = base_meta(0, 0, ev, "bc", None)
            save_checkpoint(run / BC, policy, start.record, {**bc_meta, "source": bc_source})
            bc_info = {"path": BC, "episode": 0, "entropy": ev.entropy.total, "eval_info": ev.eval_info}
        opt = torch.optim.Adam(rl_param_groups(policy, cfg.lr, cfg.log_std_lr), eps=1e-5)
        state = TrainState()
        if start.saved is not None:
            try:
                opt.load_state_dict(start.saved["optimizer"])
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                raise TrainError(f"{run / 'last.pt'}: optimizer state does not fit the policy ({e})") from None
            state = TrainState.from_saved(start.saved)
        else:
            commit(start, manager, policy, opt, state, bc_info, read_checkpoint(run / BC)["meta"])
            if cfg.out_dir is None:
                moved = update_latest(run)
                print(f"out/latest -> {run}" if moved else f"out/latest could not be updated; the run is {run}",
                      file=sys.stderr)

        # --- 3. RL: PPO on the delta head -------------------------------------------------------------------
        bar = tqdm(total=cfg.episodes, initial=state.episode, unit="ep", disable=not cfg.progress, file=sys.stderr,
                   dynamic_ncols=True)
        log = IntervalLog()
        next_eval = (state.episode // cfg.eval_interval + 1) * cfg.eval_interval
        last_entropy = manager.records[-1].entropy if manager.records else bc_info["entropy"]
        while state.episode < cfg.episodes and state.stop_reason is None:
            # rollout with sampled deltas (noise held for --noise-hold steps)
            n = min(cfg.batch_scenes, cfg.episodes - state.episode)
            batch = data.train_batch(iteration_seed(cfg.seed, state.iteration, 0), n)
            gen = torch.Generator(device=device).manual_seed(iteration_seed(cfg.seed, state.iteration, 1))
            policy.eval()
            ro = rollout(batch, make_sampling_policy_fn(policy, gen, cfg.noise_hold), record_obs=True)
            # reward from the closed-loop signals, then GAE
            sig = reward_signals(ro, batch, weights)  # ttc and the at-fault flag as the weights need
            rw = step_rewards(sig.series, batch.step_valid, batch.init_step, weights, batch.road.has_road,
                              sig.at_fault)
            adv, ret = gae(rw.reward, ro.aux["value"], rw.mask, rw.done, cfg.gamma, cfg.gae_lambda)
            m = rw.mask
            explained_var = explained_variance(ro.aux["value"][m], ret[m])
            # PPO update (the first --value-warmup iterations train the value head only)
            assert ro.obs is not None
            target, target_ok = log_labels(batch, ro) if cfg.imitation > 0 else (None, None)
            transitions = Transitions(ro.obs[m], ro.aux["delta"][m], ro.aux["logp"][m], adv[m], ret[m],
                                      None if target is None else target[m].flatten(1),
                                      None if target_ok is None else target_ok[m])
            policy.train()
            upd = ppo_update(policy, opt, transitions, epochs=cfg.ppo_epochs, minibatch=cfg.minibatch, clip=cfg.clip,
                             vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef, max_grad_norm=cfg.max_grad_norm,
                             generator=torch.Generator().manual_seed(iteration_seed(cfg.seed, state.iteration, 2)),
                             pg_coef=0.0 if state.iteration < cfg.value_warmup else 1.0, delta_l2=cfg.delta_l2,
                             imitation=cfg.imitation)
            where = f"PPO iteration {state.iteration + 1} (episode {state.episode + n})"
            for name, value in upd._asdict().items():
                require_finite_loss(value, f"{where}, {name}")
            require_finite_weights(policy, where)
            log = IntervalLog(log.returns + tuple(rw.episode_return.tolist()),
                              log.ppo + ({**upd._asdict(), "explained_variance": explained_var},))
            state = state._replace(episode=state.episode + n, iteration=state.iteration + 1)
            bar.update(n)
            bar.set_postfix(ret=f"{rw.episode_return.mean():.2f}", ent=f"{last_entropy:.2f}")

            # evaluation at intervals: entropy, val metrics, a candidate checkpoint, history files and last.pt
            if state.episode >= next_eval or state.episode >= cfg.episodes:
                mean_return, ppo_stats = log.mean_return(), log.ppo_means()
                ev = evaluate(policy, data.eval_obs, data.val_batch, mean_return)
                last_entropy = ev.entropy.total
                record = EvalRecord(state.episode, state.iteration, ev.entropy.total, ev.entropy.per_dim, mean_return,
                                    ev.eval_info, None, ppo_stats)
                meta = base_meta(state.episode, state.iteration, ev, "candidate", mean_return, ppo_stats)
                manager.add(policy, start.record, meta, record)
                if cfg.min_entropy is not None:
                    below = state.below_min + 1 if ev.entropy.total < cfg.min_entropy else 0
                    stop = (f"entropy below {cfg.min_entropy} nats for {below} evaluations (episode {state.episode})"
                            if below >= cfg.entropy_patience else None)
                    state = state._replace(below_min=below, stop_reason=stop)
                commit(start, manager, policy, opt, state, bc_info, meta)
                log = IntervalLog()
                next_eval = (state.episode // cfg.eval_interval + 1) * cfg.eval_interval
                bar.set_postfix(ret=f"{mean_return:.2f}", ent=f"{last_entropy:.2f}")
        bar.close()

    # --- 4. summary ---------------------------------------------------------------------------------------------
    with guarded(start, cli.prog):  # Ctrl-C here: the run is kept
        if state.stop_reason:
            print(f"early stop: {state.stop_reason}", file=sys.stderr)
        print_summary(run, manager, bc_info)
        if manager.best is None and manager.records:  # every checkpoint before --select-after (an early stop)
            print(f"warning: no checkpoint at or after --select-after {cfg.select_after} (the last is episode "
                  f"{manager.records[-1].episode}), so best_entropy.pt was not written; evaluate the run's "
                  f"checkpoints with: {command('python -m sim.evaluate', '--run', run)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m training.train") -> int:
    """CLI entry point; returns the exit status (errors: one line on stderr, status 2; Ctrl-C: 130)."""
    try:
        return train(parse_config(argv, prog))
    except ERRORS as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # always one line
        return 2
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before the run directory existed
        print("interrupted before the run started; nothing was written", file=sys.stderr)
        return 130
