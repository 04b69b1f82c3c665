"""Constants of the closed-loop simulator (units: metres, seconds, radians)."""

from __future__ import annotations

NUM_WAYPOINTS = 8  # K waypoints the policy outputs
WAYPOINT_STEPS = 5  # simulation steps between waypoints (0.5 s at 10 Hz; 4 s horizon)

ACCEL_MIN = -6.0  # m/s^2
ACCEL_MAX = 6.0  # m/s^2
CURVATURE_MAX = 0.3  # 1/m, |curvature| limit
WHEELBASE = 2.8  # m

ROUTE_SPACING = 1.0  # m between resampled route points
# One agent rule for training, validation and evaluation (sim.batch.select_agents): every agent
# that comes within AGENT_REACH of the ego's logged path or route at any valid step is simulated,
# however many (docs/metrics.md: every agent within reach counts; real scenes keep up to 226); agents never
# within reach only fill slots up to DEFAULT_MAX_AGENTS per scene (ego included).
DEFAULT_MAX_AGENTS = 64
AGENT_REACH = 50.0  # m from the ego's logged path/route within which an agent can touch the ego

# IDM (REFERENCE.md, Waymax defaults)
IDM_V0 = 30.0  # m/s desired speed
IDM_S0 = 2.0  # m minimum gap
IDM_T = 2.0  # s time headway
IDM_A_MAX = 2.0  # m/s^2
IDM_B = 4.0  # m/s^2 comfortable deceleration
IDM_LOOKAHEAD = 10.0  # m along the path in which a leader is searched


class SimError(ValueError):
    """Bad input to the simulator (batch, policy output, backend). The message names what is wrong."""
