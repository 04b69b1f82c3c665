"""The non-finite guard: training stops at the first non-finite loss or weight (issue 21 item 3).

A NaN or infinite loss (a diverging learning rate, an exploding reward) would otherwise be written into every
later checkpoint and then scored as "the max-entropy checkpoint". :func:`require_finite_loss` and
:func:`require_finite_weights` raise :class:`NonFiniteError` (a :class:`~training.config.TrainError`: one line on
stderr, exit 2) before anything holding the bad numbers is saved; ``policy.checkpoint.save_checkpoint`` refuses
non-finite weights as a last line of defence.
"""

from __future__ import annotations

import math

import torch

from training.config import TrainError


class NonFiniteError(TrainError):
    """A loss or a weight became NaN or infinite; the message says where (phase, iteration, parameter)."""


HINT = "no checkpoint holds it; lower --lr/--bc-lr or the reward weights"


def require_finite_loss(value: float, where: str) -> None:
    """Raise :class:`NonFiniteError` when ``value`` (a loss, any units) is NaN or infinite.

    Args:
        value: the loss as a Python float.
        where: the phase, e.g. ``"behaviour cloning epoch 3"`` or ``"PPO iteration 12 (episode 300)"``.
    """
    if not math.isfinite(value):
        raise NonFiniteError(f"non-finite loss ({value}) in {where}: training stopped; {HINT}")


def first_non_finite(module: torch.nn.Module) -> str | None:
    """Name of the first parameter or buffer of ``module`` holding a NaN or infinity, or None."""
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def require_finite_weights(module: torch.nn.Module, where: str) -> None:
    """Raise :class:`NonFiniteError` when any parameter or buffer of ``module`` is NaN or infinite."""
    bad = first_non_finite(module)
    if bad is not None:
        raise NonFiniteError(f"non-finite weights ({bad}) after {where}: training stopped; {HINT}")
