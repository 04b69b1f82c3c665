"""The evaluation harness around the simulator core (``sim/``).

The simulator (batch, state, dynamics, controller, agents, observation, geometry, metrics, rollout,
backends) turns scenes and a policy into rollouts and metrics. The harness decides what to evaluate and
keeps the results:

- :mod:`sim.harness.errors`: the harness's exceptions (one-line messages naming the file and the problem).
- :mod:`sim.harness.candidates`: which checkpoints (a run's comparison set, roles) and baselines.
- :mod:`sim.harness.executors`: work units (checkpoint x scene shard) run locally, on Ray, or on CARLA servers.
- :mod:`sim.harness.schema`: the results file's schema constants and typed records (h5py + numpy only).
- :mod:`sim.harness.store`: the one writer of results files (commits in a sidecar folder, an index file).
- :mod:`sim.harness.reader`: the one reader of results files (the dashboard's; h5py + numpy only).
- :mod:`sim.harness.verdict`: the selection verdict (typed), used by the CLI, the file and the dashboard.
- :mod:`sim.harness.report`: intervals of means (normal) and rates (Wilson), the CLI's summary tables.
- :mod:`sim.harness.identity`: what identifies stored rows (settings, scene content); other settings refused.
- :mod:`sim.harness.run_info`: a run's declared roles and ``select_after``, without torch.
- :mod:`sim.harness.across_data`: one run's results as a seed of :mod:`sim.harness.across` (``python -m sim.across``).

``python -m sim.evaluate`` is the command; it is a thin CLI over these modules.
"""
