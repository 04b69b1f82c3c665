"""Waypoint policy (torch only): model, entropy, checkpoints. Import submodules directly."""
