"""Agent plug-ins: evaluate checkpoints of any trainer through one protocol (nothing is unpickled).

Protocol:

- A **factory** ``(checkpoint_path: str, device: str) -> Agent``; ``--agent NAME_OR_MODULE:FACTORY`` names one
  (:func:`resolve_factory`). Built in: ``own`` (this project's ``.pt``, the default), ``sb3`` (PPO / A2C / SAC ``.zip``)
  and ``torchscript`` (a scripted module ``[B, OBS_DIM] -> [B, K, 2]``).
- An **agent** (:class:`Agent`) maps batched observations float32 ``[B, OBS_DIM]`` (:mod:`sim.observation`) to
  waypoints float32 ``[B, K, 2]`` (metres, ego frame, x forward, y left), K = ``sim.config.NUM_WAYPOINTS``,
  which the waypoint controller turns into controls, or directly to :class:`sim.rollout.Controls`
  (acceleration ``[B]`` m/s^2, curvature ``[B]`` 1/m). An agent that builds its own features defines
  ``from_state(state, batch)`` (:class:`StateAgent`: the batched :class:`sim.state.SimState`, every agent's
  pose and speed ``[B, A]`` with the ego at index 0, and the :class:`sim.batch.ScenarioBatch` with the log,
  route and road) instead of ``waypoints(obs)``, with the same outputs. It carries an :class:`AgentInfo`: the
  plug-in name,
  the file, a stable ``identity`` (:func:`weights_digest`, SHA-256 of the acting weights, and of a TorchScript file's
  code: same policy, same identity, whatever the file name) and the training ``step`` from metadata or the file name
  (``ep00100.pt``, ``rl_model_20000_steps.zip``), for results keys, resume and comparison sets.
- :func:`probe_agent` runs a loaded agent once, as the rollout will, before anything is written: an exception or an
  output of the wrong shape is an :class:`AgentError`, a non-finite output a reason to skip the file.
- :func:`policy_fn` adapts an agent to :data:`sim.rollout.PolicyFn`, so ``rollout(batch, policy_fn(agent))`` runs it;
  every output is checked (an exception or a wrong shape: :class:`AgentError` naming the plug-in and the file; a NaN
  or an infinity: :func:`non_finite_reason` after the rollout).
- Sampled actions (``sim.evaluate --rollouts K``): an agent that defines ``sample(obs, generator) -> [B, K, 2]``
  (the ``own`` agent: cloned waypoints + a delta drawn from the Gaussian head) is also rolled out with sampled
  actions, :func:`policy_fn` with a ``generator``; :func:`can_sample` tells which agents do.

Errors are :class:`AgentError` with one line naming the file and the problem.
"""

from __future__ import annotations

import functools
import importlib
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from sim.batch import ScenarioBatch
from sim.config import NUM_WAYPOINTS
from sim.evaluation.agent_api import (  # the plug-in API, re-exported for users' plug-ins
    Agent,
    AgentError,
    AgentFactory,
    AgentInfo,
    StateAgent,
    _first_line,
    _info,
    step_from_name,
    weights_digest,
)
from sim.evaluation.plugin_sb3 import SB3Agent
from sim.observation import OBS_DIM
from sim.rollout import Controls, PolicyFn, StatePolicy, policy_output_problem

__all__ = ["BUILTINS", "PROBE_SCENES", "Agent", "AgentError", "AgentFactory", "AgentInfo", "OwnAgent", "SB3Agent",
           "StateAgent", "TorchScriptAgent", "can_sample", "check_can_sample", "load_agent", "non_finite_reason",
           "policy_fn", "probe_agent", "resolve_factory", "step_from_name", "torchscript_code", "weights_digest"]

# --- own ---------------------------------------------------------------------------------------------------------


class OwnAgent:
    """This project's :class:`~policy.model.WaypointPolicy` checkpoint: cloned waypoints + delta mean."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        from policy.checkpoint import CheckpointError, load_checkpoint
        from sim.observation import OBS_VERSION

        try:
            ck = load_checkpoint(path, device, expect_obs=(OBS_DIM, OBS_VERSION))
        except CheckpointError as e:
            raise AgentError(str(e)) from None
        self.policy = ck.policy
        acting = {k: v for k, v in ck.policy.state_dict().items() if not k.startswith("value_net.")}
        ep = ck.meta.get("episode")
        self.info = _info("own", path, acting, ep if isinstance(ep, int) else None)

    @torch.no_grad()
    def waypoints(self, obs: Tensor) -> Tensor:
        return self.policy.act(obs, deterministic=True)

    @torch.no_grad()
    def sample(self, obs: Tensor, generator: torch.Generator) -> Tensor:
        """Waypoints ``[B, K, 2]`` (m, ego frame) with the delta drawn from the policy's Gaussian head
        (:func:`policy.model.sample_delta`; reproducible with ``generator``, on the policy's device)."""
        return self.policy.act(obs, deterministic=False, generator=generator)


# --- torchscript -------------------------------------------------------------------------------------------------


TORCHSCRIPT_CODE = ("code/", "constants/", "constants.pkl", "data.pkl")
"""The records of a TorchScript file (a zip) that act besides the weights: every method of every submodule
(``code/``, less the ``.debug_pkl`` source maps, which name the exporting machine's paths), constants baked in by
tracing (``constants.pkl``, ``constants/``) and the modules' attributes (``data.pkl``, non-tensor ones too)."""


def torchscript_code(path: str | Path, module: torch.jit.ScriptModule) -> list[tuple[str, bytes]]:
    """The ``(name, bytes)`` records of a TorchScript file that make up its behaviour besides the weights
    (:data:`TORCHSCRIPT_CODE`), named without the archive's top folder (the file's stem). Read as bytes, nothing
    unpickled; the same for the same module exported again. A file that is not a zip (another serialisation
    ``torch.jit.load`` reads) gives the code of each submodule's ``forward`` instead."""
    try:
        with zipfile.ZipFile(path) as z:
            out = []
            for info in z.infolist():
                name = info.filename.split("/", 1)[-1]
                if name.startswith(TORCHSCRIPT_CODE) and not name.endswith(".debug_pkl"):
                    out.append((name, z.read(info)))
            return out
    except zipfile.BadZipFile:
        return [(f"forward/{n}", str(getattr(m, "code", "")).encode()) for n, m in module.named_modules()]


class TorchScriptAgent:
    """A ``torch.jit`` scripted or traced module ``[B, OBS_DIM] -> [B, K, 2]`` waypoints (m, ego frame).

    Its identity covers the weights and the code (:func:`torchscript_code`): two files with the same weights and
    different ``forward`` code are two policies.
    """

    def __init__(self, path: str, device: str = "cpu") -> None:
        p = Path(path)
        if not p.is_file():
            raise AgentError(f"{p}: no such file")
        try:
            self.module = torch.jit.load(str(p), map_location=device).eval()
        except Exception as e:
            from policy.checkpoint import load_error_reason

            raise AgentError(f"{p}: not a TorchScript module ({load_error_reason(e)})") from None
        probe = torch.zeros(2, OBS_DIM, device=device)
        try:
            with torch.no_grad():
                out = self.module(probe)
        except Exception as e:
            raise AgentError(f"{p}: module fails on observations [2, {OBS_DIM}]: this simulator's observation has "
                             f"{OBS_DIM} features (sim.observation), and the module says: {_first_line(e)}") from None
        if not isinstance(out, Tensor) or tuple(out.shape) != (2, NUM_WAYPOINTS, 2):
            shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise AgentError(f"{p}: module output must be [B, {NUM_WAYPOINTS}, 2] waypoints, got {shape} for B=2")
        self.info = _info("torchscript", str(p), dict(self.module.state_dict()), None,
                          code=torchscript_code(p, self.module))

    @torch.no_grad()
    def waypoints(self, obs: Tensor) -> Tensor:
        return self.module(obs).float()


BUILTINS: dict[str, AgentFactory] = {"own": OwnAgent, "sb3": SB3Agent, "torchscript": TorchScriptAgent}


def resolve_factory(spec: str = "own") -> AgentFactory:
    """A built-in name (``own``, ``sb3``, ``torchscript``) or ``package.module:FACTORY`` -> the factory.

    Raises:
        AgentError: unknown name, module not importable, attribute missing or not callable.
    """
    if spec in BUILTINS:
        return BUILTINS[spec]
    if ":" not in spec:
        raise AgentError(f"--agent {spec}: not a built-in ({', '.join(BUILTINS)}) nor MODULE:FACTORY")
    mod, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, ValueError, TypeError) as e:  # an empty (ValueError) or relative (TypeError) module name
        raise AgentError(f"--agent {spec}: cannot import {mod!r} ({_first_line(e)})") from None
    except AttributeError:
        raise AgentError(f"--agent {spec}: module {mod} has no {attr}") from None
    if not callable(obj):
        raise AgentError(f"--agent {spec}: {attr} is not callable")
    return obj


def load_agent(spec: str, path: str, device: str = "cpu") -> Agent:
    """Resolve ``spec`` and build the agent for ``path``; checks the result follows :class:`Agent`.

    Raises:
        AgentError: as :func:`resolve_factory`; a factory that fails on ``(path, device)`` with an exception of
            its own (a plug-in's fault, or not a factory of that signature: ``os:system``); or a result that is
            not an agent. The built-in factories' own errors (unreadable checkpoints) pass through as they are.
    """
    from policy.checkpoint import CheckpointError

    factory = resolve_factory(spec)
    try:
        agent = factory(str(path), device)
    except (AgentError, CheckpointError, OSError):
        raise
    except Exception as e:  # noqa: BLE001 - a user's plug-in: any fault becomes the one-line error
        raise AgentError(f"--agent {spec}: the factory failed on {path} ({type(e).__name__}: {_first_line(e)}); "
                         "a factory takes (checkpoint path, device) and returns an Agent") from None
    if not isinstance(agent, Agent | StateAgent) or not isinstance(getattr(agent, "info", None), AgentInfo):
        raise AgentError(f"{path}: factory {spec} did not return an Agent (info: AgentInfo, and waypoints(obs) "
                         "or from_state(state, batch))")
    return agent


def can_sample(agent: object) -> bool:
    """Whether ``agent`` draws sampled actions: it defines ``sample(obs, generator)`` (``--rollouts K``)."""
    return callable(getattr(agent, "sample", None))


def check_can_sample(agent: Agent | StateAgent) -> None:
    """``--rollouts K > 0`` needs sampled actions.

    Raises:
        AgentError: ``agent`` does not sample (:func:`can_sample`); one line naming its file and plug-in.
    """
    if not can_sample(agent):
        raise AgentError(f"{agent.info.path}: --rollouts samples actions, and agent plug-in {agent.info.plugin} "
                         "has no sample(obs, generator); use --rollouts 0")


class _Watched:
    """The policy function :func:`policy_fn` hands :func:`sim.rollout.rollout` for an agent: at each call the agent's
    output, checked. An exception of the agent, or an output of the wrong shape, is an :class:`AgentError` naming the
    plug-in and its file; the scenes whose output is not finite are noted without waiting for the device, and
    :func:`non_finite_reason` reads them once the rollout is over.

    Args:
        agent: the agent. act: its method, on the rollout's inputs (``obs``, or ``state, batch``).
        what: the method as the errors name it. name: the plug-in as the errors name it.
    """

    def __init__(self, agent: Agent | StateAgent, act: Callable[..., Tensor | Controls], what: str, name: str) -> None:
        self.agent, self.act, self.what, self.name = agent, act, what, name
        self.kind = "output"
        self.bad: list[tuple[int, Tensor]] = []  # (step, [B] bool: the scene's output holds a NaN or an infinity)

    def __call__(self, *args: object) -> tuple[Tensor | Controls, dict[str, Tensor]]:
        """``(obs, t)`` or ``(state, batch, t)`` -> (output, no aux)."""
        *inputs, t = args
        return self.run(inputs, f"step {t}", int(t)), {}

    def run(self, inputs: Sequence[object], where: str, t: int) -> Tensor | Controls:
        """The agent's output on ``inputs``, checked (``where`` says when, in errors)."""
        path = self.agent.info.path
        try:
            out = self.act(*inputs)
        except AgentError:
            raise
        except Exception as e:  # noqa: BLE001 - a plug-in's fault: one line naming it and its file
            raise AgentError(f"--agent {self.name}: {self.what} failed on {path} ({where}): "
                             f"{type(e).__name__}: {_first_line(e)}") from None
        first = inputs[0]
        n_b = first.shape[0] if isinstance(first, Tensor) else int(inputs[1].log.shape[0])  # type: ignore[attr-defined]
        problem = policy_output_problem(out, n_b)
        if problem:
            raise AgentError(f"--agent {self.name}: {self.what} on {path} must return {problem} ({where})")
        self.kind = "controls" if isinstance(out, Controls) else "waypoints"
        if isinstance(out, Controls):
            finite = torch.isfinite(out.accel) & torch.isfinite(out.curvature)
        else:
            finite = torch.isfinite(out).flatten(1).all(1)
        self.bad.append((t, ~finite))
        return out


def policy_fn(agent: Agent | StateAgent, generator: torch.Generator | None = None) -> PolicyFn | StatePolicy:
    """What :func:`sim.rollout.rollout` runs for ``agent`` (aux is empty): a :data:`~sim.rollout.PolicyFn` on the
    observation, or a :class:`~sim.rollout.StatePolicy` for an agent that defines ``from_state``.

    The agent's outputs are checked at each step: an exception of the agent or an output of the wrong shape is an
    :class:`AgentError` naming the plug-in and its file; non-finite outputs are reported after the rollout by
    :func:`non_finite_reason`.

    Args:
        generator: None: the deterministic action (``waypoints``); else actions sampled with it (``sample``).

    Raises:
        AgentError: a ``generator`` is given and the agent does not sample (:func:`can_sample`).
    """
    w = _watch(agent, generator, agent.info.plugin)
    return StatePolicy(w) if _from_state(agent) and generator is None else w


def _from_state(agent: object) -> bool:
    return isinstance(agent, StateAgent) and not isinstance(agent, Agent)


def _watch(agent: Agent | StateAgent, generator: torch.Generator | None, name: str) -> _Watched:
    if generator is not None:
        check_can_sample(agent)
        return _Watched(agent, lambda obs: agent.sample(obs, generator),  # type: ignore[union-attr]
                        "sample(obs, generator)", name)
    if _from_state(agent):
        return _Watched(agent, agent.from_state, "from_state(state, batch)", name)  # type: ignore[union-attr]
    return _Watched(agent, agent.waypoints, "waypoints(obs)", name)  # type: ignore[union-attr]


def non_finite_reason(fn: object, scene_ids: Sequence[str] = (), where: str | None = None) -> str | None:
    """Why a rollout of ``fn`` (:func:`policy_fn`'s) is not to be scored: the agent returned a NaN or an infinity
    (the scenes it did so on, named from ``scene_ids`` in batch order, and the first step, or ``where``), or None.
    One wait for the device, after the rollout."""
    w = fn.fn if isinstance(fn, StatePolicy) else fn
    if not isinstance(w, _Watched) or not w.bad:
        return None
    any_bad = torch.stack([b.any() for _, b in w.bad]).cpu()
    if not bool(any_bad.any()):
        return None
    t, rows = w.bad[int(any_bad.nonzero()[0, 0])]
    idx = rows.nonzero().flatten().tolist()
    names = [scene_ids[i] for i in idx] if len(scene_ids) == rows.shape[0] else [f"#{i}" for i in idx]
    scenes = names[0] + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")
    return (f"agent plug-in {w.name} returned non-finite {w.kind} (NaN or infinite) on scene {scenes} "
            f"({where or f'step {t}'}); not scored")


PROBE_SCENES = (("cut_in", 7), ("lane_follow_straight", 1))
"""The procedural scenes (family, seed) whose first step every plug-in checkpoint is run on once, when loaded
(:func:`probe_agent`): two, so that a batch dimension mixed up with another shows."""


@functools.lru_cache(maxsize=2)
def _probe_batch(device: str) -> ScenarioBatch:
    from scenarios.procedural import generate
    from sim.batch import make_batch

    return make_batch([generate(f, s) for f, s in PROBE_SCENES], device=device)


def probe_agent(agent: Agent | StateAgent, spec: str, device: str = "cpu", sampling: bool = False) -> str | None:
    """Run ``agent`` once on the first step of the :data:`PROBE_SCENES`, as the rollout will (its observation, or
    the state and batch), before anything runs or is written.

    Args:
        spec: the ``--agent`` value, for errors. device: where the agent runs.
        sampling: also draw a sampled action (``--rollouts K``).

    Returns:
        None, or why the checkpoint is not evaluated: its output is not finite (:func:`non_finite_reason`).

    Raises:
        AgentError: the agent raises, or returns the wrong shape: one line naming ``spec`` and the file.
    """
    from sim.backends.kinematic import KinematicBackend
    from sim.observation import observe

    batch = _probe_batch(str(device))
    backend = KinematicBackend("log")
    where = "load-time probe"
    try:
        with torch.inference_mode():
            state = backend.reset(batch)
            gens = [None, torch.Generator(device=device).manual_seed(0)] if sampling else [None]
            for gen in gens:
                w = _watch(agent, gen, spec)
                w.run([state, batch] if _from_state(agent) and gen is None else [observe(state, batch)], where,
                      batch.init_step)
                reason = non_finite_reason(w, batch.ids, where)
                if reason:
                    return reason
    finally:
        backend.close()
    return None
