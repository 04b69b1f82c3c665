"""The agent plug-in API: what a plug-in returns and raises (:class:`Agent`, :class:`StateAgent`, :class:`AgentInfo`,
:class:`AgentError`) and how an agent is identified (:func:`weights_digest`, :func:`step_from_name`).

Users' own plug-ins import these from :mod:`sim.evaluation.plugins` (which re-exports them); the built-in plug-ins
(:mod:`sim.evaluation.plugins`, :mod:`sim.evaluation.plugin_sb3`) build on them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

from sim.batch import ScenarioBatch
from sim.results.run_folder import step_from_name
from sim.rollout import Controls
from sim.state import SimState


class AgentError(ValueError):
    """A checkpoint cannot be used by an agent plug-in; the message names the file and the problem."""


@dataclass(frozen=True)
class AgentInfo:
    """What identifies an agent in results.

    Attributes:
        plugin: factory name (``own``, ``sb3``, ``torchscript`` or ``module:attr``).
        path: the checkpoint file.
        identity: hex SHA-256 of the acting weights (names, shapes, dtypes and bytes, in name order) and, for an
            agent whose behaviour is also code (TorchScript), of that code (:func:`weights_digest`).
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

def weights_digest(state: Mapping[str, Tensor], code: Iterable[tuple[str, bytes]] = ()) -> str:
    """An agent's identity: hex SHA-256 over ``state`` (name, dtype, shape, bytes of each tensor, in name order:
    :func:`policy.checkpoint.hash_tensors`) and, for an agent whose behaviour is also code, its ``code`` records
    (name, bytes; in name order). Without code it is the digest of the weights alone, as it always was.

    Args:
        state: the acting weights ``{name: tensor}``.
        code: ``(name, bytes)`` records of the code that acts (a TorchScript file's :func:`torchscript_code`).
    """
    from policy.checkpoint import hash_tensors

    h = hashlib.sha256()
    hash_tensors(h, state)
    for name, data in sorted(code):
        h.update(f"code|{name}|{len(data)}|".encode())
        h.update(data)
    return h.hexdigest()


def _info(plugin: str, path: str, state: Mapping[str, Tensor], meta_step: int | None,
          code: Iterable[tuple[str, bytes]] = ()) -> AgentInfo:
    if meta_step is not None:
        step, src = int(meta_step), "meta"
    else:
        step = step_from_name(path)
        src = "none" if step is None else "file name"
    return AgentInfo(plugin, str(path), weights_digest(state, code), step, src)


TORCHSCRIPT_TRACE = "The following operation failed in the TorchScript interpreter"
"""How a TorchScript module's runtime error begins; the module's own message is its last line."""


def _first_line(e: BaseException) -> str:
    """One line for an exception: a ``weights_only`` refusal as :func:`policy.checkpoint.unpickling_refusal` says
    it, the last line of a TorchScript traceback (the module's own error), else the first line."""
    from policy.checkpoint import unpickling_refusal

    text = str(e)
    refused = unpickling_refusal(text)
    if refused:
        return refused
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()] or [type(e).__name__]
    if TORCHSCRIPT_TRACE in text:
        return re.sub(r"^[A-Za-z_.]*(?:Error|Exception): ", "", lines[-1])[:200]
    return lines[0][:200]
