"""The ``sb3`` agent plug-in: a Stable-Baselines3 PPO / A2C / SAC ``.zip`` with an ``MlpPolicy``, read without
unpickling (``--agent sb3``; the protocol is :mod:`sim.evaluation.plugins`)."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sim.action_map import DELTA_BOUND, waypoints_from_action
from sim.config import NUM_WAYPOINTS
from sim.evaluation.agent_api import AgentError, _first_line, _info
from sim.observation import OBS_DIM


def _mlp_from_state(state: Mapping[str, Tensor], prefix: str, act: type[nn.Module]) -> nn.Sequential:
    """Rebuild SB3's ``nn.Sequential`` of Linear/activation layers stored under ``prefix`` (indices 0, 2, 4, ...)."""
    idx = sorted({int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)})
    mods: list[nn.Module] = []
    for i in idx:
        mods += [SB3Agent._linear(state, f"{prefix}{i}."), act()]
    return nn.Sequential(*mods)


def _policy_module(data: Mapping[str, Any]) -> str:
    """`` (stable_baselines3.td3.policies)``: the module of the zip's policy class as SB3's JSON ``data`` lists it
    readably (never unpickled), or "" when it does not."""
    cls = data.get("policy_class")
    mod = cls.get("__module__") if isinstance(cls, dict) else None
    return f" ({mod})" if isinstance(mod, str) and mod else ""


class SB3Agent:
    """A Stable-Baselines3 PPO / A2C / SAC ``.zip`` with an ``MlpPolicy``, read without unpickling.

    Weights come from ``policy.pth`` (``torch.load(weights_only=True)``); the algorithm, spaces and kwargs from
    the zip's JSON ``data`` (never its pickled ``:serialized:`` fields). Deterministic action as SB3's
    ``predict(obs, deterministic=True)``: PPO/A2C the Gaussian mean clipped to the action space, SAC
    ``tanh(mu)`` rescaled to it. The action maps to waypoints like the env does
    (:func:`sim.action_map.waypoints_from_action`). Default activations (PPO/A2C ``Tanh``, SAC ``ReLU``).
    ``policy_kwargs`` that SB3 pickled are accepted when only the optimizer needed the pickle
    (:data:`ACTING_NEUTRAL_KWARGS`: A2C's default RMSprop), read from their readable keys.
    """

    checkpoint_suffixes = (".zip",)
    """What ``--ckpt FOLDER`` takes for this plug-in (the files of another suffix are noted and never read:
    ``CheckpointCallback``'s ``*_vecnormalize_*.pkl`` and ``*_replay_buffer_*.pkl``)."""

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
                    held = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
                    raise AgentError(f"{p}: not a Stable-Baselines3 model: the zip has no data or policy.pth (it "
                                     f"holds {held or 'nothing'}: a file cut short, or a zip of something else)")
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
            from policy.checkpoint import unpickling_refusal

            refused = unpickling_refusal(str(e))
            if refused:
                raise AgentError(f"{p}: policy.pth needs unpickling; {refused}") from None
            raise AgentError(f"{p}: policy.pth needs unpickling or is corrupt; refused ({_first_line(e)})") from None
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise AgentError(f"{p}: policy.pth is not a state dict of tensors")
        kwargs = self._policy_kwargs(p, data)
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
            raise AgentError(f"{p}: unsupported SB3 policy{_policy_module(data)}: the sb3 plug-in reads PPO, A2C "
                             "and SAC (neither action_net nor actor.mu in policy.pth)")
        self.net.to(device).eval()
        steps = data.get("num_timesteps")
        self.info = _info("sb3", str(p), acting, steps if isinstance(steps, int) else None)

    @staticmethod
    def _policy_kwargs(p: Path, data: dict) -> dict:
        """The zip's ``policy_kwargs`` from its JSON, never unpickled.

        SB3 pickles the whole dict (``:serialized:``) when one value is not JSON, and lists every key beside it
        readably (a value that was not JSON as its ``str``). Such a dict is accepted when the keys that needed the
        pickle are only :data:`ACTING_NEUTRAL_KWARGS` (A2C's default RMSprop optimizer); those are dropped, the
        rest is read as plain JSON.

        Raises:
            AgentError: policy_kwargs not a dict, or pickling anything that may change the network.
        """
        kwargs = data.get("policy_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise AgentError(f"{p}: policy_kwargs is not a JSON object in the SB3 data file")
        if ":serialized:" not in kwargs:
            return kwargs
        readable = {k: v for k, v in kwargs.items() if k not in (":type:", ":serialized:")}
        pickled = sorted(k for k, v in readable.items() if isinstance(v, str) and k not in ACTING_NEUTRAL_KWARGS)
        if pickled or "dict" not in str(kwargs.get(":type:")) or not set(readable) & set(ACTING_NEUTRAL_KWARGS):
            what = ", ".join(pickled) if pickled else "values this plug-in cannot read"
            raise AgentError(f"{p}: policy_kwargs are pickled ({what}: custom classes); refused, nothing is "
                             "unpickled")
        return {k: v for k, v in readable.items() if k not in ACTING_NEUTRAL_KWARGS}

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


ACTING_NEUTRAL_KWARGS = ("optimizer_class", "optimizer_kwargs")
"""SB3 ``policy_kwargs`` that never change how a policy acts (the optimizer and its settings: A2C's default RMSprop).
SB3 pickles them; the ``sb3`` plug-in accepts a pickled ``policy_kwargs`` whose pickled values are only these,
reading the readable keys beside the pickle (never the pickle)."""

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
