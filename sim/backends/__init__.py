"""Simulator backends by name: ``kinematic`` (embedded, batched torch) and ``carla``."""
