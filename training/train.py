"""``python -m training.train``: behaviour cloning, then PPO on the delta head, with entropy-ranked checkpoints.

Reads top to bottom: settings and run directory, scenarios, fixed evaluation states, behaviour-cloned start
(or ``--init``/``--resume``), then the RL loop (rollout -> reward -> GAE -> PPO update -> evaluation at
intervals -> checkpoints and history files), then a summary table.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from policy.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from policy.model import PolicyConfig, WaypointPolicy
from scenarios.scenario import ScenarioError
from sim.config import NUM_WAYPOINTS, WAYPOINT_STEPS, SimError
from sim.metrics import MetricContext
from sim.observation import OBS_DIM, OBS_VERSION, SPEED_SCALE
from sim.rollout import rollout
from training.bc import ExpertData, behaviour_clone, log_labels, relabel_on_policy
from training.checkpoints import CheckpointManager
from training.config import CliArgs, TrainConfig, TrainError, parse_config
from training.data import RunData, load_run_data
from training.evaluation import evaluate
from training.history import EvalRecord, entropy_history_doc, train_metrics_doc, write_history
from training.ppo import Transitions, gae, make_sampling_policy_fn, ppo_update, rl_param_groups
from training.reward import REWARD_SERIES, RewardWeights, step_rewards
from training.run_dir import create_run_dir, package_versions, read_json, update_latest, write_config
from training.summary import print_summary


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU raises :class:`TrainError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available")
    return torch.device(name)


def iteration_seed(seed: int, iteration: int, stream: int) -> int:
    """Seed of random stream ``stream`` at PPO iteration ``iteration`` (a resumed run draws the same numbers)."""
    return (seed * 1_000_003 + iteration * 7919 + stream * 104_729) % (2**63 - 1)


def checkpoint_config(cfg: TrainConfig) -> dict[str, Any]:
    """``config`` stored in every checkpoint (``policy`` is added by ``save_checkpoint``)."""
    return {"train": cfg.to_dict(), "obs_dim": OBS_DIM, "obs_version": OBS_VERSION,
            "num_waypoints": NUM_WAYPOINTS, "waypoint_steps": WAYPOINT_STEPS}


def base_meta(episode: int, step: int, entropy: Any, eval_info: dict[str, float], kind: str,
              train_reward: float | None) -> dict[str, Any]:
    """``meta`` of a checkpoint (format_version and state_dependent_std are added by ``save_checkpoint``)."""
    v = package_versions()
    return {"episode": episode, "step": step, "entropy": entropy.total, "entropy_per_dim": entropy.per_dim,
            "eval_info": eval_info, "kind": kind, "train_reward": train_reward,
            "versions": {"torch": v["torch"], "package": v["driveselect"]}}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (errors: one line on stderr, status 2)."""
    try:
        return train(parse_config(argv))
    except (TrainError, CheckpointError, SimError, ScenarioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: continue with --resume RUN_DIR (files up to the last evaluation are kept)",
              file=sys.stderr)
        return 130


def train(cli: CliArgs) -> int:
    """Run (or continue) a training run; returns 0."""
    # --- settings, run directory ------------------------------------------------------------------------
    resume_state: dict[str, Any] | None = None
    if cli.resume is not None:
        run = Path(cli.resume).resolve() if Path(cli.resume).is_symlink() else Path(cli.resume)
        saved = read_json(run / "config.json")
        cfg = replace(TrainConfig.from_dict(saved["train"]), **cli.overrides).validate()
        last = run / "last.pt"
        if last.exists():
            raw = read_checkpoint(last)
            if "train_state" not in raw:
                raise TrainError(f"{last}: holds no training state to resume from")
            resume_state = raw["train_state"]
        print(f"resuming {run} at episode {resume_state['episode'] if resume_state else 0}", file=sys.stderr)
    else:
        cfg = cli.config
        run = create_run_dir(cfg)
        write_config(run, cfg, {"obs_dim": OBS_DIM, "obs_version": OBS_VERSION, "num_waypoints": NUM_WAYPOINTS,
                                "run": run.name})
        if cfg.out_dir is None:
            update_latest(run)
        print(f"run directory: {run}", file=sys.stderr)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    ckpt_cfg = checkpoint_config(cfg)
    weights = RewardWeights(cfg.w_progress, cfg.w_collision, cfg.w_offroad, cfg.w_comfort, cfg.w_log_dist, cfg.w_ttc,
                            cfg.w_not_at_fault)
    series_names = REWARD_SERIES + (("ttc",) if cfg.w_ttc > 0 else ())

    # --- scenarios, fixed evaluation states, expert data --------------------------------------------------
    data: RunData = load_run_data(cfg, run, device, need_expert=resume_state is None and cfg.init is None)

    # --- the behaviour-cloned start (or --init), saved as bc.pt -----------------------------------------------
    pcfg = PolicyConfig(obs_dim=OBS_DIM, num_waypoints=NUM_WAYPOINTS, obs_version=OBS_VERSION, hidden=cfg.hidden,
                        layers=cfg.layers, state_dependent_std=cfg.state_dependent_std,
                        init_log_std=cfg.init_log_std, speed_feature=0, speed_scale=SPEED_SCALE,
                        waypoint_dt=WAYPOINT_STEPS * data.val_batch.dt)
    manager = CheckpointManager(run, cfg.keep_top_k, cfg.select_after)
    if resume_state is not None:
        policy = load_checkpoint(run / "last.pt", device, expect_obs=(OBS_DIM, OBS_VERSION)).policy
        bc_info = resume_state["bc"]
        manager.records = [EvalRecord.from_dict(r) for r in resume_state["records"]]
        manager.restore_best_files()
    else:
        if cfg.init is not None:
            policy = load_checkpoint(cfg.init, device, expect_obs=(OBS_DIM, OBS_VERSION)).policy
            bc_source = str(cfg.init)
        else:
            policy = WaypointPolicy(pcfg).to(device)
            assert data.expert is not None
            expert = data.expert
            bc = behaviour_clone(policy, expert, epochs=cfg.bc_epochs, lr=cfg.bc_lr, batch=cfg.bc_batch,
                                 generator=torch.Generator().manual_seed(cfg.seed))
            # DAgger-style rounds: visit the states the clone reaches in closed loop, label them with the log
            for r in range(cfg.dagger_rounds):
                gen = torch.Generator(device=device).manual_seed(iteration_seed(cfg.seed, r, 3))
                new = [relabel_on_policy(b, make_sampling_policy_fn(policy, gen)) for b in data.bc_batches()]
                expert = ExpertData(torch.cat([expert.obs] + [n.obs for n in new]),
                                    torch.cat([expert.waypoints] + [n.waypoints for n in new]))
                bc = behaviour_clone(policy, expert, epochs=max(1, cfg.bc_epochs // 2), lr=cfg.bc_lr,
                                     batch=cfg.bc_batch, generator=torch.Generator().manual_seed(cfg.seed + r + 1),
                                     refit_norm=False)
            bc_source = (f"behaviour cloning of {len(data.bc_scenes)} train scenes + {cfg.dagger_rounds} relabelling "
                         f"rounds, {expert.obs.shape[0]} samples, final loss {bc.final_loss:.4f}")
        ev = evaluate(policy, data.eval_obs, data.val_batch, None)
        save_checkpoint(run / "bc.pt", policy, ckpt_cfg, {**base_meta(0, 0, ev.entropy, ev.eval_info, "bc", None),
                                                          "source": bc_source})
        bc_info = {"path": "bc.pt", "episode": 0, "entropy": ev.entropy.total, "eval_info": ev.eval_info}
    policy.train()
    opt = torch.optim.Adam(rl_param_groups(policy, cfg.lr, cfg.log_std_lr), eps=1e-5)
    episode = iteration = below_min = 0
    stop_reason: str | None = None
    if resume_state is not None:
        opt.load_state_dict(resume_state["optimizer"])
        episode, iteration = int(resume_state["episode"]), int(resume_state["iteration"])
        below_min, stop_reason = int(resume_state["below_min"]), resume_state["stop_reason"]

    def write_files(last_meta: dict[str, Any]) -> None:
        """History files, then last.pt (the commit point a resume starts from)."""
        write_history(run,
                      entropy_history_doc(manager.records, manager.best, select_after=cfg.select_after,
                                          state_dependent_std=cfg.state_dependent_std, bc=bc_info),
                      train_metrics_doc(manager.records, manager.ranked, manager.best, manager.best_reward,
                                        keep_top_k=cfg.keep_top_k, select_after=cfg.select_after,
                                        episodes_done=episode, stop_reason=stop_reason, bc=bc_info))
        state = {"optimizer": opt.state_dict(), "episode": episode, "iteration": iteration, "below_min": below_min,
                 "stop_reason": stop_reason, "records": [r.to_dict() for r in manager.records], "bc": bc_info}
        save_checkpoint(run / "last.pt", policy, ckpt_cfg, last_meta, extra={"train_state": state})

    if resume_state is None:
        bc_ev = read_checkpoint(run / "bc.pt")["meta"]
        write_files({**bc_ev, "kind": "last"})

    # --- RL: PPO on the delta head ----------------------------------------------------------------------------
    from tqdm import tqdm

    bar = tqdm(total=cfg.episodes, initial=episode, unit="ep", disable=not cfg.progress, file=sys.stderr,
               dynamic_ncols=True)
    returns: list[float] = []
    next_eval = (episode // cfg.eval_interval + 1) * cfg.eval_interval
    last_entropy = manager.records[-1].entropy if manager.records else bc_info["entropy"]
    while episode < cfg.episodes and stop_reason is None:
        n = min(cfg.batch_scenes, cfg.episodes - episode)
        batch = data.train_batch(iteration_seed(cfg.seed, iteration, 0), n)
        gen = torch.Generator(device=device).manual_seed(iteration_seed(cfg.seed, iteration, 1))
        policy.eval()
        ro = rollout(batch, make_sampling_policy_fn(policy, gen, cfg.noise_hold), record_obs=True)
        ctx = MetricContext(ro, batch)
        series = {name: getattr(ctx, name) for name in series_names}
        rw = step_rewards(series, batch.step_valid, batch.init_step, weights, batch.road.has_road,
                          ctx.first_collision_at_fault if cfg.w_not_at_fault != 1.0 else None)
        adv, ret = gae(rw.reward, ro.aux["value"], rw.mask, rw.done, cfg.gamma, cfg.gae_lambda)
        m = rw.mask
        assert ro.obs is not None
        target, target_ok = log_labels(batch, ro) if cfg.imitation > 0 else (None, None)
        transitions = Transitions(ro.obs[m], ro.aux["delta"][m], ro.aux["logp"][m], adv[m], ret[m],
                                  None if target is None else target[m].flatten(1),
                                  None if target_ok is None else target_ok[m])
        policy.train()
        ppo_update(policy, opt, transitions, epochs=cfg.ppo_epochs, minibatch=cfg.minibatch, clip=cfg.clip,
                   vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef, max_grad_norm=cfg.max_grad_norm,
                   generator=torch.Generator().manual_seed(iteration_seed(cfg.seed, iteration, 2)),
                   pg_coef=0.0 if iteration < cfg.value_warmup else 1.0, delta_l2=cfg.delta_l2,
                   imitation=cfg.imitation)
        episode += n
        iteration += 1
        returns += rw.episode_return.tolist()
        bar.update(n)
        bar.set_postfix(ret=f"{rw.episode_return.mean():.2f}", ent=f"{last_entropy:.2f}")

        if episode >= next_eval or episode >= cfg.episodes:
            mean_return = sum(returns) / len(returns)
            ev = evaluate(policy, data.eval_obs, data.val_batch, mean_return)
            last_entropy = ev.entropy.total
            record = EvalRecord(episode, iteration, ev.entropy.total, ev.entropy.per_dim, mean_return,
                                ev.eval_info, None)
            meta = base_meta(episode, iteration, ev.entropy, ev.eval_info, "candidate", mean_return)
            manager.add(policy, ckpt_cfg, meta, record)
            if cfg.min_entropy is not None:
                below_min = below_min + 1 if ev.entropy.total < cfg.min_entropy else 0
                if below_min >= cfg.entropy_patience:
                    stop_reason = (f"entropy below {cfg.min_entropy} nats for {below_min} evaluations "
                                   f"(episode {episode})")
            write_files({**meta, "kind": "last"})
            returns = []
            next_eval = (episode // cfg.eval_interval + 1) * cfg.eval_interval
            bar.set_postfix(ret=f"{mean_return:.2f}", ent=f"{last_entropy:.2f}")
            policy.train()
    bar.close()
    if stop_reason:
        print(f"early stop: {stop_reason}", file=sys.stderr)
    print_summary(run, manager, bc_info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
