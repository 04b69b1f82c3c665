"""Agent plug-ins: evaluate checkpoints of any trainer through one protocol (nothing is unpickled).

Protocol:

- A **factory** ``(checkpoint_path: str, device: str) -> Agent``; ``--agent NAME_OR_MODULE:FACTORY`` names one
  (:func:`resolve_factory`). Built in: ``own`` (this project's ``.pt``, the default), ``sb3`` (PPO / SAC ``.zip``)
  and ``torchscript`` (a scripted module ``[B, OBS_DIM] -> [B, K, 2]``).
- An **agent** (:class:`Agent`) maps batched observations float32 ``[B, OBS_DIM]`` (:mod:`sim.observation`) to
  waypoints float32 ``[B, K, 2]`` (metres, ego frame, x forward, y left), K = ``sim.config.NUM_WAYPOINTS``,
  which the waypoint controller turns into controls, or directly to :class:`sim.rollout.Controls`
  (acceleration ``[B]`` m/s^2, curvature ``[B]`` 1/m). An agent that builds its own features defines
  ``from_state(state, batch)`` (:class:`StateAgent`: the batched :class:`sim.state.SimState`, every agent's
  pose and speed ``[B, A]`` with the ego at index 0, and the :class:`sim.batch.ScenarioBatch` with the log,
  route and road) instead of ``waypoints(obs)``, with the same outputs. It carries an :class:`AgentInfo`: the
  plug-in name,
  the file, a stable ``identity`` (SHA-256 of the acting weights: same weights, same identity, whatever the file
  name) and the training ``step`` from metadata or the file name (``ep00100.pt``, ``rl_model_20000_steps.zip``),
  for results keys, resume and comparison sets.
- :func:`policy_fn` adapts an agent to :data:`sim.rollout.PolicyFn`, so ``rollout(batch, policy_fn(agent))`` runs it.
- Sampled actions (``sim.evaluate --rollouts K``): an agent that defines ``sample(obs, generator) -> [B, K, 2]``
  (the ``own`` agent: cloned waypoints + a delta drawn from the Gaussian head) is also rolled out with sampled
  actions, :func:`policy_fn` with a ``generator``; :func:`can_sample` tells which agents do.

Errors are :class:`AgentError` with one line naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from sim.action_map import DELTA_BOUND, waypoints_from_action
from sim.batch import ScenarioBatch
from sim.config import NUM_WAYPOINTS
from sim.observation import OBS_DIM
from sim.rollout import Controls, PolicyFn, StatePolicy
from sim.state import SimState


class AgentError(ValueError):
    """A checkpoint cannot be used by an agent plug-in; the message names the file and the problem."""


@dataclass(frozen=True)
class AgentInfo:
    """What identifies an agent in results.

    Attributes:
        plugin: factory name (``own``, ``sb3``, ``torchscript`` or ``module:attr``).
        path: the checkpoint file.
        identity: hex SHA-256 of the acting weights (names, shapes, dtypes and bytes, in name order).
        step: training step (episode for ``own``, env steps for ``sb3``) or None when unknown.
        step_source: ``"meta"``, ``"file name"`` or ``"none"``.
    """

    plugin: str
    path: str
    identity: str
    step: int | None
    step_source: str


@runtime_checkable
class Agent(Protocol):
    """``info`` plus ``waypoints(obs [B, OBS_DIM]) -> [B, K, 2]`` (metres, ego frame) or ``Controls``;
    deterministic."""

    info: AgentInfo

    def waypoints(self, obs: Tensor) -> Tensor | Controls: ...


@runtime_checkable
class StateAgent(Protocol):
    """``info`` plus ``from_state(state, batch) -> [B, K, 2] | Controls``: builds its own features; deterministic."""

    info: AgentInfo

    def from_state(self, state: SimState, batch: ScenarioBatch) -> Tensor | Controls: ...


AgentFactory = Callable[[str, str], Agent]

_STEP_PATTERNS = (re.compile(r"_(\d+)_steps$"), re.compile(r"^ep(\d+)$"), re.compile(r"(?:step|steps|iter)[_-]?(\d+)$"))


def step_from_name(path: str | Path) -> int | None:
    """Training step in a checkpoint's file name: ``ep00100.pt`` -> 100, ``rl_model_20000_steps.zip`` -> 20000."""
    stem = Path(path).stem
    for pat in _STEP_PATTERNS:
        m = pat.search(stem)
        if m:
            return int(m.group(1))
    return None


def weights_digest(state: Mapping[str, Tensor]) -> str:
    """Hex SHA-256 over ``state`` (name, dtype, shape, bytes of each tensor, in name order)."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def _info(plugin: str, path: str, state: Mapping[str, Tensor], meta_step: int | None) -> AgentInfo:
    if meta_step is not None:
        step, src = int(meta_step), "meta"
    else:
        step = step_from_name(path)
        src = "none" if step is None else "file name"
    return AgentInfo(plugin, str(path), weights_digest(state), step, src)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
    return next((ln for ln in lines if "Unsupported global" in ln), lines[0])[:200]


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


# --- sb3 ---------------------------------------------------------------------------------------------------------


def _mlp_from_state(state: Mapping[str, Tensor], prefix: str, act: type[nn.Module]) -> nn.Sequential:
    """Rebuild SB3's ``nn.Sequential`` of Linear/activation layers stored under ``prefix`` (indices 0, 2, 4, ...)."""
    idx = sorted({int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)})
    mods: list[nn.Module] = []
    for i in idx:
        mods += [SB3Agent._linear(state, f"{prefix}{i}."), act()]
    return nn.Sequential(*mods)


class SB3Agent:
    """A Stable-Baselines3 PPO / A2C / SAC ``.zip`` with an ``MlpPolicy``, read without unpickling.

    Weights come from ``policy.pth`` (``torch.load(weights_only=True)``); the algorithm, spaces and kwargs from
    the zip's JSON ``data`` (never its pickled ``:serialized:`` fields). Deterministic action as SB3's
    ``predict(obs, deterministic=True)``: PPO/A2C the Gaussian mean clipped to the action space, SAC
    ``tanh(mu)`` rescaled to it. The action maps to waypoints like the env does
    (:func:`sim.action_map.waypoints_from_action`). Default activations (PPO/A2C ``Tanh``, SAC ``ReLU``).
    """

    def __init__(self, path: str, device: str = "cpu") -> None:
        p = Path(path)
        if not p.is_file():
            raise AgentError(f"{p}: no such file")
        try:
            self._load(p, device)
        except AgentError:
            raise
        except MALFORMED as e:  # any other shape of a damaged or foreign zip: one line, no traceback
            raise AgentError(f"{p}: not a usable Stable-Baselines3 model ({_first_line(e)})") from None

    def _load(self, p: Path, device: str) -> None:
        try:
            with zipfile.ZipFile(p) as z:
                names = set(z.namelist())
                if "data" not in names or "policy.pth" not in names:
                    raise AgentError(f"{p}: not a Stable-Baselines3 model (zip lacks data or policy.pth)")
                data = json.loads(z.read("data"))
                raw = z.read("policy.pth")
        except zipfile.BadZipFile:
            raise AgentError(f"{p}: not a Stable-Baselines3 model (not a zip file)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AgentError(f"{p}: SB3 data file is not JSON ({_first_line(e)})") from None
        if not isinstance(data, dict):
            raise AgentError(f"{p}: SB3 data file is not a JSON object (got {type(data).__name__})")
        try:
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as e:  # pickled code or a corrupt file
            raise AgentError(f"{p}: policy.pth needs unpickling or is corrupt; refused ({_first_line(e)})") from None
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise AgentError(f"{p}: policy.pth is not a state dict of tensors")
        kwargs = data.get("policy_kwargs", {})
        if not isinstance(kwargs, dict) or ":serialized:" in kwargs:
            raise AgentError(f"{p}: policy_kwargs are pickled (custom classes); refused, nothing is unpickled")
        if kwargs.get("use_sde") or data.get("use_sde"):
            raise AgentError(f"{p}: gSDE policies are not supported")
        if "features_extractor_class" in kwargs or "activation_fn" in kwargs:
            raise AgentError(f"{p}: custom feature extractor / activation needs unpickling; refused")
        self._check_space(p, data, "observation_space", (OBS_DIM,))
        low, high = self._check_space(p, data, "action_space", (2 * NUM_WAYPOINTS,))
        self.low = torch.tensor(low, dtype=torch.float32, device=device)
        self.high = torch.tensor(high, dtype=torch.float32, device=device)
        if "action_net.weight" in state:
            self.kind = "ppo"
            self.net = nn.Sequential(_mlp_from_state(state, "mlp_extractor.policy_net.", nn.Tanh),
                                     self._linear(state, "action_net."))
            acting = {k: v for k, v in state.items() if k.startswith(("mlp_extractor.policy_net.", "action_net."))}
        elif "actor.mu.weight" in state:
            self.kind = "sac"
            self.net = nn.Sequential(_mlp_from_state(state, "actor.latent_pi.", nn.ReLU),
                                     self._linear(state, "actor.mu."))
            acting = {k: v for k, v in state.items() if k.startswith(("actor.latent_pi.", "actor.mu."))}
        else:
            raise AgentError(f"{p}: unsupported SB3 policy (neither action_net nor actor.mu in policy.pth)")
        self.net.to(device).eval()
        steps = data.get("num_timesteps")
        self.info = _info("sb3", str(p), acting, steps if isinstance(steps, int) else None)

    @staticmethod
    def _linear(state: Mapping[str, Tensor], prefix: str) -> nn.Linear:
        w, b = state[prefix + "weight"], state[prefix + "bias"]
        lin = nn.Linear(w.shape[1], w.shape[0])
        lin.load_state_dict({"weight": w, "bias": b})
        return lin

    @staticmethod
    def _check_space(p: Path, data: dict, key: str, shape: tuple[int, ...]) -> tuple[list[float], list[float]]:
        sp = data.get(key)
        if not isinstance(sp, dict) or "Box" not in str(sp.get(":type:", "")):
            raise AgentError(f"{p}: {key} is not a Box in the SB3 data file")
        got = tuple(_numbers(sp.get("_shape", [])))
        if got != shape:
            raise AgentError(f"{p}: {key} has shape {list(got)}, this simulator needs {list(shape)}")
        if key != "action_space":
            return [], []
        low, high = _numbers(sp.get("low")), _numbers(sp.get("high"))
        if len(low) != shape[0] or len(high) != shape[0]:
            raise AgentError(f"{p}: action_space bounds unreadable in the SB3 data file")
        return low, high

    @torch.no_grad()
    def action(self, obs: Tensor) -> Tensor:
        """SB3's deterministic action ``[B, 2K]`` (metres) for observations ``[B, OBS_DIM]``."""
        a = self.net(obs.float())
        if self.kind == "sac":
            return self.low + 0.5 * (torch.tanh(a) + 1.0) * (self.high - self.low)
        return torch.maximum(torch.minimum(a, self.high), self.low)

    def waypoints(self, obs: Tensor) -> Tensor:
        bound = float(self.high.abs().max()) if self.high.numel() else DELTA_BOUND
        return waypoints_from_action(obs, self.action(obs), bound)


MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, EOFError, OSError,
             NotImplementedError, zlib.error)
"""What reading a damaged or foreign SB3 zip can raise besides :class:`AgentError` (wrong JSON types, tensors of the
wrong shape, a truncated member, an unsupported compression): reported as one :class:`AgentError` line."""


def _numbers(v: object) -> list:
    """A JSON list, or numpy's printed array (``"[-5. -5.]"``), as a flat list of numbers."""
    if isinstance(v, list):
        return [x for x in v]
    try:
        return [float(x) for x in str(v).replace("[", " ").replace("]", " ").replace(",", " ").split()]
    except ValueError:
        return []


# --- torchscript -------------------------------------------------------------------------------------------------


class TorchScriptAgent:
    """A ``torch.jit`` scripted or traced module ``[B, OBS_DIM] -> [B, K, 2]`` waypoints (m, ego frame)."""

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
            raise AgentError(f"{p}: module fails on observations [2, {OBS_DIM}] ({_first_line(e)})") from None
        if not isinstance(out, Tensor) or tuple(out.shape) != (2, NUM_WAYPOINTS, 2):
            shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise AgentError(f"{p}: module output must be [B, {NUM_WAYPOINTS}, 2] waypoints, got {shape} for B=2")
        self.info = _info("torchscript", str(p), dict(self.module.state_dict()), None)

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


def policy_fn(agent: Agent | StateAgent, generator: torch.Generator | None = None) -> PolicyFn | StatePolicy:
    """What :func:`sim.rollout.rollout` runs for ``agent`` (aux is empty): a :data:`~sim.rollout.PolicyFn` on the
    observation, or a :class:`~sim.rollout.StatePolicy` for an agent that defines ``from_state``.

    Args:
        generator: None: the deterministic action (``waypoints``); else actions sampled with it (``sample``).

    Raises:
        AgentError: a ``generator`` is given and the agent does not sample (:func:`can_sample`).
    """
    if generator is not None:
        check_can_sample(agent)

        def sampled(obs: Tensor, t: int) -> tuple[Tensor | Controls, dict[str, Tensor]]:
            return agent.sample(obs, generator), {}  # type: ignore[union-attr]

        return sampled
    if isinstance(agent, StateAgent) and not isinstance(agent, Agent):
        return StatePolicy(lambda state, batch, t: (agent.from_state(state, batch), {}))

    def fn(obs: Tensor, t: int) -> tuple[Tensor | Controls, dict[str, Tensor]]:
        return agent.waypoints(obs), {}

    return fn
