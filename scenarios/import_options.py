"""Options that shape how recorded scenes become scenarios (its own module: the importers and
``scenarios.formats``, which dispatches to them, both import it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImportOptions:
    """Options that shape how recorded scenes become scenarios.

    Attributes:
        window: steps per scene; 0 keeps the whole recording as one scene. Long recordings
            are cut into windows of ``window`` steps every ``stride`` steps.
        stride: steps between window starts (0 means ``window``, i.e. no overlap).
        init_step: first closed-loop step of every produced scene.
        ego: id of the recorded road user to use as ego: a CommonRoad obstacle ("" = farthest-travelling
            vehicle valid over the whole horizon) or an Argoverse 2 track ("" = the AV).
        ego_agent: for any recorded source, import agent ``ego_agent`` of the default import (its agent order:
            0 is the default ego) as the ego instead; the scene's id gains ``+ego<k>``. Log replay of every
            vehicle, each in turn as the ego, uses it (``scenarios.check --every-vehicle``).
    """

    window: int = 0
    stride: int = 0
    init_step: int = 10
    ego: str = ""
    ego_agent: int = 0
