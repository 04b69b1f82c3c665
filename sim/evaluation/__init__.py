"""Evaluation (torch): candidates, ego plug-ins, executors, the orchestration ``python -m sim.evaluate`` calls."""
