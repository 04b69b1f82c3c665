"""What the dashboard tests share: the app's path, opening it on a runs folder with AppTest, its visible text."""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def open_app(runs_dir: Path, monkeypatch, timeout: float = 90, **qp) -> AppTest:
    """Run the dashboard once on ``runs_dir`` (``--runs-dir``) with URL query parameters ``qp``."""
    monkeypatch.setattr(sys, "argv", ["app.py", "--runs-dir", str(runs_dir)])
    at = AppTest.from_file(APP, default_timeout=timeout)
    for k, v in qp.items():
        at.query_params[k] = v
    return at.run()


def page_text(at: AppTest) -> str:
    """Every info, warning, error, markdown and caption element's text, one per line."""
    return "\n".join(str(e.value) for k in ("info", "warning", "error", "markdown", "caption") for e in getattr(at, k))
