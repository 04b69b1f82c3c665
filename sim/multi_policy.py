"""Several checkpoints in one batch: C policies x S scenes run as one rollout of C*S scenes.

The harness evaluates many checkpoints of one architecture on the same scenes. Instead of C
rollouts of S scenes (C times the per-step overhead), it can repeat the batch C times
(:func:`repeat_batch`, checkpoint-major: rows ``c*S .. c*S + S - 1`` belong to checkpoint c),
run ONE rollout with :func:`stacked_policy_fn` (the policies' weights stacked with
``torch.func.stack_module_state`` and evaluated with ``torch.func.vmap``: one batched matmul
per layer for all checkpoints), and split the rows back with :func:`split_rows`::

    policies = [load_policy(p, device) for p in checkpoint_paths]       # same architecture
    big = repeat_batch(batch, len(policies))
    ro = rollout(big, stacked_policy_fn(policies), agents=settings.agents)
    per_ckpt = split_rows(compute_metrics(ro, big)["ade"], len(policies))  # [C, S]

Every scene's result equals the one-checkpoint rollout within float tolerance (the same
matmuls, batched; ``tests/test_multi_policy.py``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sim.batch import ScenarioBatch
from sim.config import SimError
from sim.rollout import PolicyFn


class _Method(nn.Module):
    """Exposes ``module.<method>(obs)`` as ``forward`` so that ``functional_call`` can reach it."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.m = module
        self.method = method

    def forward(self, obs: Tensor) -> Tensor:
        return getattr(self.m, self.method)(obs)


def stacked_policy_fn(policies: Sequence[nn.Module], method: str = "act") -> PolicyFn:
    """One :data:`~sim.rollout.PolicyFn` that runs C same-architecture policies on a C-times-repeated batch.

    Args:
        policies: C modules with identical parameter names and shapes (e.g. ``WaypointPolicy``
            checkpoints of one run), on one device, in eval mode.
        method: the module method mapping obs ``[S, OBS_DIM]`` -> waypoints ``[S, K, 2]``
            (``"act"`` for :class:`policy.model.WaypointPolicy`: deterministic cloned + delta mean;
            ``"forward"`` for a plain network that returns waypoints).

    Returns:
        ``policy_fn(obs [C*S, OBS_DIM], t) -> (waypoints [C*S, K, 2], {})``; rows ``c*S .. c*S+S-1``
        go through policy c.

    Raises:
        SimError: no policies, or their parameters differ in names or shapes.
    """
    if len(policies) == 0:
        raise SimError("stacked_policy_fn: no policies given")
    wrapped = [_Method(p, method) for p in policies]
    shapes = [{k: tuple(v.shape) for k, v in w.state_dict().items()} for w in wrapped]
    if any(s != shapes[0] for s in shapes[1:]):
        raise SimError("stacked_policy_fn: the policies do not share one architecture (parameter names/shapes)")
    params, buffers = torch.func.stack_module_state(wrapped)
    base = copy.deepcopy(wrapped[0]).to("meta")
    n_c = len(wrapped)

    def one(p: dict[str, Tensor], b: dict[str, Tensor], obs: Tensor) -> Tensor:
        return torch.func.functional_call(base, (p, b), (obs,))

    batched = torch.func.vmap(one, in_dims=(0, 0, 0))

    def policy_fn(obs: Tensor, t: int) -> tuple[Tensor, dict[str, Tensor]]:
        n = obs.shape[0]
        if n % n_c:
            raise SimError(f"stacked_policy_fn: batch {n} is not a multiple of {n_c} policies")
        with torch.no_grad():
            wps = batched(params, buffers, obs.reshape(n_c, n // n_c, *obs.shape[1:]))
        return wps.reshape(n, *wps.shape[2:]), {}

    return policy_fn


def _repeat(x: Any, copies: int, n: int) -> Any:
    """One per-scene field repeated along the scene axis; fields that are not per-scene are kept."""
    if isinstance(x, Tensor) and x.ndim and x.shape[0] == n:
        return x.repeat(copies, *([1] * (x.ndim - 1)))
    if isinstance(x, np.ndarray) and x.ndim and x.shape[0] == n:
        return np.concatenate([x] * copies, axis=0)
    if isinstance(x, tuple) and len(x) == n:
        return x * copies
    return x


def _repeat_fields(obj: Any, copies: int, n: int) -> Any:
    return dataclasses.replace(obj, **{f.name: _repeat(getattr(obj, f.name), copies, n)
                                       for f in dataclasses.fields(obj)})


def repeat_batch(batch: ScenarioBatch, copies: int) -> ScenarioBatch:
    """The batch repeated ``copies`` times along the scene axis (checkpoint-major), road grids included.

    Every per-scene field (first dimension S: tensors, arrays, tuples) of the batch and of its road is
    repeated, so fields added later repeat too.

    Args:
        batch: S scenes.
        copies: C >= 1.

    Returns:
        A :class:`ScenarioBatch` of C*S scenes; scene ``c*S + i`` is scene ``i``.
    """
    if copies < 1:
        raise SimError(f"repeat_batch: copies must be >= 1, got {copies}")
    n = len(batch.ids)
    out = _repeat_fields(batch, copies, n)
    lanes = None if batch.lanes is None else _repeat_fields(batch.lanes, copies, n)
    return dataclasses.replace(out, road=_repeat_fields(batch.road, copies, n), lanes=lanes)


def split_rows(x: Tensor, copies: int) -> Tensor:
    """``[C*S, ...]`` -> ``[C, S, ...]`` (rows of a :func:`repeat_batch` rollout, per policy)."""
    if x.shape[0] % copies:
        raise SimError(f"split_rows: {x.shape[0]} rows are not a multiple of {copies}")
    return x.reshape(copies, x.shape[0] // copies, *x.shape[1:])
