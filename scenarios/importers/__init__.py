"""Importers of real recorded driving logs into :class:`~scenarios.scenario.Scenario`.

- :mod:`scenarios.importers.scenarionet`: ScenarioNet scenario-dict pickles (restricted unpickler).
- :mod:`scenarios.importers.waymo_json`: Waymo Open Motion scenes as GPUDrive/Nocturne JSON.
- :mod:`scenarios.importers.commonroad`: CommonRoad XML through ``commonroad-io``.

All three fill a :class:`~scenarios.importers.common.Recording` and share
:func:`~scenarios.importers.common.recording_to_scenes` (resampling, windowing, route,
drivable area); lane buffers, crops and the route are in
:mod:`scenarios.importers.mapgeom`, time in :mod:`scenarios.importers.resample`. See ``docs/importers.md``.
"""
