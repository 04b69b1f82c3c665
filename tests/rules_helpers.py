"""Synthetic scenes with map semantics for the rule-metric tests (tests/sim/metrics/test_rules.py, test_scores.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from scenarios.scenario import MAP_SEMANTICS, AgentType, Polylines, RoadMap, Scenario
from sim.batch import make_batch
from sim.metrics.registry import compute_metrics
from sim.rollout import Rollout

DT = 0.1
T = 61  # 6 s
INIT = 10


def ego_states(xy: np.ndarray, yaw: np.ndarray | float, length: float = 4.5, width: float = 1.9) -> np.ndarray:
    """``[T, 7]`` states of a box along ``xy [T, 2]`` with heading ``yaw``; velocities from the positions."""
    xy = np.asarray(xy, np.float64)
    vel = np.gradient(xy, DT, axis=0)
    out = np.zeros((len(xy), 7), np.float32)
    out[:, :2], out[:, 2], out[:, 3:5], out[:, 5], out[:, 6] = xy, yaw, vel, length, width
    return out


def straight(x0: float, speed: float, y: float = 0.0, n: int = T) -> np.ndarray:
    """``[n, 2]`` positions from ``(x0, y)`` moving along +x at ``speed`` m/s (negative: along -x)."""
    return np.stack([x0 + speed * DT * np.arange(n), np.full(n, y)], axis=1)


def road_map(lanes: Sequence[np.ndarray], widths: Sequence[float] | float = 3.5, *,
             polygons: Sequence[np.ndarray] | None = None, limits: Sequence[float] | None = None,
             intersection: Sequence[int] | None = None, successors: Sequence[tuple[int, int]] = (),
             lights: Sequence[tuple[int, tuple[float, float], Sequence[int]]] = (),
             known: Sequence[str] = ()) -> RoadMap:
    """A :class:`RoadMap` of ``lanes``; ``known`` names the semantics the "source" provides (the rest unknown).

    ``lights``: ``(controlled lane, stop point, states [T])`` per signal.
    """
    n = len(lanes)
    w = np.full(n, widths, np.float64) if np.isscalar(widths) else np.asarray(widths, np.float64)
    edges = []
    return RoadMap(
        lanes=Polylines.from_list(lanes), lane_widths=w, road_edges=Polylines.from_list(edges),
        lane_polygons=Polylines.from_list(polygons) if polygons is not None else None,
        lane_speed_limits=None if limits is None else np.asarray(limits, np.float64),
        lane_intersection=None if intersection is None else np.asarray(intersection, np.int8),
        lane_successors=np.asarray(successors, np.int64).reshape(-1, 2),
        light_lanes=np.array([g[0] for g in lights], np.int64),
        light_stop_points=np.array([g[1] for g in lights], np.float64).reshape(-1, 2),
        light_states=np.array([g[2] for g in lights], np.int8).reshape(len(lights), -1) if lights
        else np.zeros((0, T), np.int8),
        unknown=tuple(s for s in MAP_SEMANTICS if s not in known),
    )


def scene(ego: np.ndarray, road: RoadMap, others: Sequence[np.ndarray] = (), sid: str = "synthetic") -> Scenario:
    """A validated scene: ``ego [T, 7]`` (agent 0), optional other agents, the map, the route along the ego."""
    agents = np.stack([ego, *others]).astype(np.float32)
    route = ego[:, :2].astype(np.float64)
    return Scenario(id=sid, source="synthetic", agents=agents, valid=np.ones(agents.shape[:2], bool),
                    agent_type=np.full(len(agents), int(AgentType.VEHICLE), np.int8), ego=0, map=road,
                    route=route, dt=DT, init_step=INIT).validate()


def replay(scenes: Sequence[Scenario], policy_ego: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every metric of the ego driving ``policy_ego [T, 7]`` per scene (default: its log), others on their logs."""
    batch = make_batch(list(scenes))
    traj = batch.log.clone()
    if policy_ego is not None:
        for i, e in enumerate(policy_ego):
            traj[i, 0, : len(e)] = torch.as_tensor(e)
    ro = Rollout(traj, batch.valid, torch.zeros(batch.num_scenes, batch.num_steps, 2), None, agent_model="log",
                 init_step=batch.init_step, dt=batch.dt)
    return {k: v.numpy().astype(np.float64) for k, v in compute_metrics(ro, batch).items()}
