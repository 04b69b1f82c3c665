"""Test helpers: a pickle that would run code if it were ever unpickled."""

from __future__ import annotations

import os
from pathlib import Path


class RunsCode:
    """A pickle whose loading would run a shell command (what ``weights_only=True`` exists to refuse): it touches
    ``marker``, so a test can tell that the code never ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)
