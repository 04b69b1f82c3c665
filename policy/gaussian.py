"""Constants of the Gaussian policy head, torch-free so that readers of run files (the dashboard) can use them."""

from __future__ import annotations

import math

HALF_LOG_2PI_E = 0.5 * math.log(2.0 * math.pi * math.e)  # entropy of a unit Gaussian per dimension: 1.4189... nats
