"""Detect a scenario file's format and load it into :class:`~scenarios.scenario.Scenario` objects.

Supported inputs (by file suffix):

- ``.npz``: the project's own format (:func:`scenarios.io.load_scenarios`);
- ``.pkl``: a ScenarioNet scenario dict (restricted unpickler, no code runs);
- ``.json``: a Waymo Open Motion scene in the GPUDrive/Nocturne JSON layout;
- ``.xml``: a CommonRoad scenario (read with ``commonroad-io``);
- ``.parquet``: an Argoverse 2 scenario ``scenario_<id>.parquet`` with its map
  ``log_map_archive_<id>.json`` beside it (read with the ``av2`` package); a scenario folder holding
  the two is found like any folder (the map archive is read with its parquet, never as a scene);
- a folder: every supported file inside it and its sub-folders, in sorted path order (other
  files, and hidden ones, are ignored).

Every failure raises :class:`~scenarios.scenario.ScenarioError` with one line naming the file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from scenarios.import_options import ImportOptions
from scenarios.importers.av2 import is_av2_map
from scenarios.scenario import Scenario, ScenarioError

SUFFIXES = (".npz", ".pkl", ".json", ".xml", ".parquet")


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--window``, ``--stride``, ``--init-step`` and ``--ego`` (see :class:`ImportOptions`)."""
    g = parser.add_argument_group("recorded scenes")
    g.add_argument("--window", type=int, default=0, help="cut recordings into windows of this many steps (0: whole)")
    g.add_argument("--stride", type=int, default=0, help="steps between window starts (0: the window length)")
    g.add_argument("--init-step", type=int, default=10, help="first closed-loop step of every scene")
    g.add_argument("--ego", default="", help="id of the ego: a CommonRoad obstacle (default: farthest-travelling) "
                   "or an Argoverse 2 track (default: the AV)")
    g.add_argument("--ego-agent", type=int, default=0, metavar="K",
                   help="import agent K of the default import as the ego (0: the default ego), any recorded source")


def import_options_from_args(args: argparse.Namespace) -> ImportOptions:
    """Build :class:`ImportOptions` from arguments added by :func:`add_import_arguments`.

    Raises:
        ScenarioError: negative window/stride/init step.
    """
    opts = ImportOptions(window=args.window, stride=args.stride, init_step=args.init_step, ego=str(args.ego),
                         ego_agent=args.ego_agent)
    if opts.window < 0 or opts.stride < 0 or opts.init_step < 0 or opts.ego_agent < 0:
        raise ScenarioError("--window, --stride, --init-step and --ego-agent must be >= 0")
    if opts.stride and not opts.window:
        raise ScenarioError(f"--stride {opts.stride}: steps between windows, and there are none without --window "
                            "(the whole recording is one scene)")
    return opts


def _without_ego_id(load: Callable[..., list[Scenario]], what: str) -> Callable[..., list[Scenario]]:
    """``load`` refusing ``--ego ID`` (an id names a CommonRoad obstacle or an Argoverse 2 track): the file is
    skipped with that reason rather than imported with its default ego as if the flag had been honoured."""

    def loader(p, o, skipped=None):
        if o.ego:
            raise ScenarioError(f"--ego {o.ego}: names a CommonRoad obstacle or an Argoverse 2 track, and this is "
                                f"{what}; use --ego-agent K (agent K of its default import as the ego)")
        return load(p, o, skipped)

    return loader


def _loader(suffix: str) -> Callable[..., list[Scenario]]:
    """``loader(path, options, skipped)`` for a suffix (``skipped``: see :func:`load_file`)."""
    if suffix == ".npz":
        from scenarios.io import load_scenarios

        def npz(p, o, skipped=None):
            if o.ego_agent or o.ego:  # a .npz holds scenes (each with its ego), not recordings
                flag = f"--ego-agent {o.ego_agent}" if o.ego_agent else f"--ego {o.ego}"
                raise ScenarioError(f"{flag}: a .npz holds scenes, not recordings; it applies to recorded sources "
                                    "only")
            return load_scenarios(p, skipped)

        return npz
    if suffix == ".pkl":
        from scenarios.importers.scenarionet import load_scenarionet

        return _without_ego_id(load_scenarionet, "a ScenarioNet file")
    if suffix == ".json":
        from scenarios.importers.waymo_json import load_waymo_json

        return _without_ego_id(load_waymo_json, "a Waymo JSON file")
    if suffix == ".xml":
        from scenarios.importers.commonroad import load_commonroad

        return load_commonroad
    if suffix == ".parquet":
        from scenarios.importers.av2 import load_av2

        return load_av2
    raise KeyError(suffix)


def detect_format(path: str | os.PathLike) -> str:
    """Name the format of one file from its suffix.

    Returns:
        One of ``"npz"``, ``"scenarionet"``, ``"waymo_json"``, ``"commonroad"``, ``"av2"``.

    Raises:
        ScenarioError: unknown suffix, or an Argoverse 2 map archive given on its own.
    """
    suffix = Path(path).suffix.lower()
    if is_av2_map(path):
        raise ScenarioError(
            f"{path}: an Argoverse 2 map archive; give its scenario folder or scenario_<id>.parquet instead"
        )
    names = {".npz": "npz", ".pkl": "scenarionet", ".json": "waymo_json", ".xml": "commonroad", ".parquet": "av2"}
    if suffix not in names:
        raise ScenarioError(
            f"{path}: unknown scenario file type {suffix or '(no suffix)'!r} (supported: {', '.join(SUFFIXES)})"
        )
    return names[suffix]


def scenario_files(path: str | os.PathLike) -> list[Path]:
    """The files :func:`load_any` would read for ``path``, in order.

    Raises:
        ScenarioError: missing path, unknown file type, or a folder without supported files.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(
            (
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and not is_av2_map(p)
            ),
            key=lambda p: p.relative_to(path).parts,
        )
        if not files:
            maps = [p for p in path.rglob("*") if p.is_file() and is_av2_map(p)]
            if maps:  # a .json file, but an Argoverse 2 map: its scenario parquet is what is missing
                raise ScenarioError(f"{path}: folder holds Argoverse 2 map archives ({maps[0].name}) but no "
                                    "scenario_<id>.parquet beside them")
            raise ScenarioError(f"{path}: folder holds no scenario files (supported: {', '.join(SUFFIXES)})")
        return files
    if not path.exists():
        raise ScenarioError(f"{path}: no such scenario file or folder")
    detect_format(path)
    return [path]


def load_file(
    path: str | os.PathLike, options: ImportOptions | None = None, skipped: list[tuple[str, str]] | None = None
) -> list[Scenario]:
    """Load every scene of one file (any supported format), validated.

    Args:
        path: the file.
        options: windowing, init step and ego choice for recorded sources.
        skipped: when given, a scene of the file that is unusable on its own is appended here as
            ``(scene id, reason)`` and the file's other scenes are returned; None: it raises.

    Raises:
        ScenarioError: one line naming the file and what is wrong (with ``skipped``, only when
            the file as a whole is unusable).
    """
    path = Path(path)
    options = options or ImportOptions()
    detect_format(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file")
    loader = _loader(path.suffix.lower())
    try:
        scenes = loader(path, options, skipped=skipped)
        for s in scenes:
            s.validate()
    except ScenarioError as e:
        msg = str(e)
        raise ScenarioError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    return scenes


def load_any(path: str | os.PathLike, options: ImportOptions | None = None) -> list[Scenario]:
    """Load scenes from a file or a folder of files in any supported format.

    Args:
        path: a ``.npz``/``.pkl``/``.json``/``.xml``/``.parquet`` file, or a folder holding such files
            (searched recursively; files read in sorted path order).
        options: windowing, init step and ego choice for recorded sources.

    Returns:
        The scenes, each validated, in file order.

    Raises:
        ScenarioError: one line naming the file and what is wrong (missing path, empty
            folder, unknown extension, unreadable or malformed file).
    """
    scenes: list[Scenario] = []
    for f in scenario_files(path):
        scenes.extend(load_file(f, options))
    return scenes
