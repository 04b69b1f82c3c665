"""`WaypointPolicy`: observation encoder, behaviour-cloned waypoint head and a Gaussian delta head.

The executed plan is ``cloned waypoints + delta``. The cloned head is trained by behaviour cloning;
RL (PPO) then refines the Gaussian over waypoint deltas. Shapes (B states, K waypoints, D = 2K):

- observations ``obs``: float32 ``[B, obs_dim]`` (ego frame, as produced by the simulator).
- waypoints: float32 ``[B, K, 2]`` metres in the ego frame (x forward, y left).
- actions (deltas): float32 ``[B, D]`` metres, flattened ``(x0, y0, x1, y1, ...)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture of a :class:`WaypointPolicy` (saved in every checkpoint under ``config["policy"]``).

    Attributes:
        obs_dim: observation width (``sim.observation.OBS_DIM``).
        num_waypoints: K waypoints per plan.
        obs_version: ``sim.observation.OBS_VERSION`` the policy was trained with (checked on use).
        hidden: width of the hidden layers.
        layers: number of hidden layers in each MLP.
        state_dependent_std: if True the log-std is a head on the state; else one learned vector.
        init_log_std: initial log-std of each delta dimension (log metres).
        min_log_std: lower clamp of the log-std (log metres).
        max_log_std: upper clamp of the log-std (log metres).
        speed_feature: index of the ego speed in the observation; when set, the cloned head predicts a residual
            over a constant-velocity prior (waypoint k at ``speed * waypoint_dt * (k + 1)`` m straight ahead).
        speed_scale: ego speed (m/s) = ``obs[:, speed_feature] * speed_scale``.
        waypoint_dt: seconds between waypoints.
    """

    obs_dim: int
    num_waypoints: int = 8
    obs_version: int | str = 0
    hidden: int = 128
    layers: int = 2
    state_dependent_std: bool = False
    init_log_std: float = -0.5
    min_log_std: float = -5.0
    max_log_std: float = 2.0
    speed_feature: int | None = None
    speed_scale: float = 1.0
    waypoint_dt: float = 0.5

    @property
    def action_dim(self) -> int:
        """D = 2K delta dimensions."""
        return 2 * self.num_waypoints

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON and ``weights_only`` safe)."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> PolicyConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        return PolicyConfig(**d)


class PolicyOutput(NamedTuple):
    """One forward pass.

    Attributes:
        cloned: float32 ``[B, K, 2]`` behaviour-cloned waypoints, metres, ego frame.
        delta_mean: float32 ``[B, D]`` mean of the delta Gaussian, metres.
        log_std: float32 ``[B, D]`` log standard deviation of the delta Gaussian, log metres.
        value: float32 ``[B]`` state-value estimate (return units).
    """

    cloned: Tensor
    delta_mean: Tensor
    log_std: Tensor
    value: Tensor


def _mlp(inp: int, hidden: int, layers: int, out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = inp
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.Tanh()]
        width = hidden
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


class WaypointPolicy(nn.Module):
    """Encoder -> behaviour-cloned waypoints, plus a Gaussian head over waypoint deltas and a value head.

    Normalisation statistics for observations and waypoints live in buffers (saved in the state dict);
    :meth:`set_normalization` fills them from behaviour-cloning data. The delta head reads the encoder
    features *detached* together with the normalised observation, so RL never moves the cloned head.
    """

    MIN_OBS_STD = 0.1
    """Floor of the per-feature observation scale: features constant in the expert data (a road probe that is
    always inside the road, an agent slot that is always empty) must not blow up when closed loop moves them."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        d = c.action_dim
        self.register_buffer("obs_mean", torch.zeros(c.obs_dim))
        self.register_buffer("obs_std", torch.ones(c.obs_dim))
        self.register_buffer("wp_mean", torch.zeros(d))
        self.register_buffer("wp_std", torch.ones(d))
        self.encoder = _mlp(c.obs_dim, c.hidden, c.layers, c.hidden)
        self.bc_head = nn.Linear(c.hidden, d)
        self.delta_net = _mlp(c.hidden + c.obs_dim, c.hidden, c.layers, d)
        last = self.delta_net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        if c.state_dependent_std:
            self.log_std_head: nn.Linear | None = nn.Linear(c.hidden + c.obs_dim, d)
            nn.init.zeros_(self.log_std_head.weight)
            nn.init.constant_(self.log_std_head.bias, c.init_log_std)
            self.log_std = None
        else:
            self.log_std_head = None
            self.log_std = nn.Parameter(torch.full((d,), float(c.init_log_std)))
        self.value_net = _mlp(c.obs_dim, c.hidden, c.layers, 1)

    @torch.no_grad()
    def set_normalization(self, obs: Tensor, waypoints: Tensor) -> None:
        """Set normalisation buffers from data.

        Args:
            obs: float ``[N, obs_dim]`` observations.
            waypoints: float ``[N, K, 2]`` target waypoints, metres.
        """
        o = obs.reshape(-1, self.config.obs_dim).float()
        w = (waypoints.reshape(-1, self.config.num_waypoints, 2).float() - self.prior(o)).reshape(o.shape[0], -1)
        self.obs_mean.copy_(o.mean(0))
        self.obs_std.copy_(o.std(0, unbiased=False).clamp_min(self.MIN_OBS_STD))
        self.wp_mean.copy_(w.mean(0))
        self.wp_std.copy_(w.std(0, unbiased=False).clamp_min(1e-2))

    def prior(self, obs: Tensor) -> Tensor:
        """Constant-velocity prior waypoints ``[B, K, 2]`` (m, ego frame); zeros without ``speed_feature``."""
        c = self.config
        out = torch.zeros(obs.shape[0], c.num_waypoints, 2, dtype=obs.dtype, device=obs.device)
        if c.speed_feature is not None:
            steps = torch.arange(1, c.num_waypoints + 1, dtype=obs.dtype, device=obs.device) * c.waypoint_dt
            out[..., 0] = (obs[:, c.speed_feature] * c.speed_scale).unsqueeze(1) * steps
        return out

    def _norm_obs(self, obs: Tensor) -> Tensor:
        return ((obs - self.obs_mean) / self.obs_std).clamp(-10.0, 10.0)

    def cloned_waypoints(self, obs: Tensor) -> Tensor:
        """Behaviour-cloned waypoints ``[B, K, 2]`` (metres, ego frame) for observations ``[B, obs_dim]``."""
        feat = self.encoder(self._norm_obs(obs))
        flat = self.bc_head(feat) * self.wp_std + self.wp_mean
        return flat.view(-1, self.config.num_waypoints, 2) + self.prior(obs)

    def forward(self, obs: Tensor) -> PolicyOutput:
        """Full forward pass for observations ``[B, obs_dim]``; see :class:`PolicyOutput`."""
        x = self._norm_obs(obs)
        feat = self.encoder(x)
        cloned = (self.bc_head(feat) * self.wp_std + self.wp_mean).view(-1, self.config.num_waypoints, 2)
        cloned = cloned + self.prior(obs)
        head_in = torch.cat([feat.detach(), x], dim=-1)
        mean = self.delta_net(head_in)
        if self.log_std_head is not None:
            log_std = self.log_std_head(head_in)
        else:
            assert self.log_std is not None
            log_std = self.log_std.expand_as(mean)
        log_std = log_std.clamp(self.config.min_log_std, self.config.max_log_std)
        value = self.value_net(x).squeeze(-1)
        return PolicyOutput(cloned, mean, log_std, value)

    def executed(self, out: PolicyOutput, delta: Tensor) -> Tensor:
        """Executed waypoints ``[B, K, 2]`` = cloned + delta (``delta`` ``[B, D]`` metres)."""
        return out.cloned + delta.view(-1, self.config.num_waypoints, 2)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """Waypoints to execute.

        Args:
            obs: float32 ``[B, obs_dim]``.
            deterministic: True: cloned + delta mean; False: cloned + a sampled delta.
            generator: random source for sampling (on the policy's device).

        Returns:
            float32 ``[B, K, 2]`` waypoints, metres, ego frame.
        """
        out = self(obs)
        delta = out.delta_mean
        if not deterministic:
            delta = sample_delta(out, generator)
        return self.executed(out, delta)


def sample_delta(out: PolicyOutput, generator: torch.Generator | None = None) -> Tensor:
    """Draw deltas ``[B, D]`` from the Gaussian of ``out`` (reparameterised, reproducible with ``generator``)."""
    eps = torch.randn(out.delta_mean.shape, generator=generator, device=out.delta_mean.device,
                      dtype=out.delta_mean.dtype)
    return out.delta_mean + eps * out.log_std.exp()


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, x: Tensor) -> Tensor:
    """Log density of a diagonal Gaussian summed over the last dim: ``[..., D]`` -> ``[...]`` (nats)."""
    z = (x - mean) / log_std.exp()
    return (-0.5 * z * z - log_std - _HALF_LOG_2PI).sum(-1)
