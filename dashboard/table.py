"""The checkpoint table of the first paint without pandas: columns of plain lists, indexed by checkpoint key.

Importing pandas costs most of a second; the two charts at the top of the page (entropy over training, closed loop
per checkpoint) and the picks they mark need only a few columns, so they are built from :class:`Rows`, and the
views below them (tabs) get a pandas frame from :meth:`Rows.frame` when they open.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.metrics.catalogue import higher_is_better
from sim.selection.verdict import RULE_ROLES, pick_index, rank_and_regret

BASE_COLUMNS = ("name", "kind", "episode", "entropy", "train_reward", "roles", "n", "entropy_per_dim", "files",
                "scenario_id")


@dataclass(frozen=True)
class Rows:
    """A table: ``keys`` (the index, checkpoint keys) and ``cols`` (column name -> one value per key)."""

    keys: tuple[str, ...]
    cols: Mapping[str, tuple]

    @classmethod
    def of(cls, table: Any) -> Rows:
        """``table`` itself, or a pandas frame indexed by key converted (figures accept both)."""
        if isinstance(table, Rows):
            return table
        return cls(tuple(str(k) for k in table.index), {c: tuple(table[c].tolist()) for c in table.columns})

    def __contains__(self, col: str) -> bool:
        return col in self.cols

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def empty(self) -> bool:
        return not self.keys

    def get(self, key: str, col: str) -> Any:
        """The value of ``col`` at ``key``."""
        return self.cols[col][self.keys.index(key)]

    def column(self, col: str) -> np.ndarray:
        """float array of a numeric column (None -> NaN)."""
        return np.array([np.nan if v is None else v for v in self.cols[col]], dtype=float)

    def where(self, keep: Callable[[dict[str, Any]], bool]) -> Rows:
        """Rows for which ``keep(row dict)`` is true, in order."""
        idx = [i for i in range(len(self.keys)) if keep({c: v[i] for c, v in self.cols.items()})]
        return Rows(tuple(self.keys[i] for i in idx), {c: tuple(v[i] for i in idx) for c, v in self.cols.items()})

    def sorted_by(self, col: str) -> Rows:
        """Rows ordered by ``col`` (stable)."""
        idx = sorted(range(len(self.keys)), key=lambda i: self.cols[col][i])
        return Rows(tuple(self.keys[i] for i in idx), {c: tuple(v[i] for i in idx) for c, v in self.cols.items()})

    def frame(self):
        """The same table as a pandas DataFrame indexed by ``key`` (imports pandas: views after the first paint)."""
        import pandas as pd

        if not self.keys:
            return pd.DataFrame(columns=["key", *self.cols]).set_index("key")
        return pd.DataFrame({c: list(v) for c, v in self.cols.items()}, index=pd.Index(list(self.keys), name="key"))


def candidates(rows: Rows) -> Rows:
    """The checkpoints (no baselines), in episode order."""
    return rows.where(lambda r: r["kind"] == "checkpoint").sorted_by("episode")


def role_key(rows: Rows, role: str, declared: Collection[str] = (), after_episode: int = 0) -> str | None:
    """Key of the checkpoint a standard rule picks: the one carrying ``role``, else the verdict's fallback
    (:func:`sim.selection.verdict.pick_index`, the one definition); None when the run declares the role
    (``declared``: its role file exists) but that policy has no results yet."""
    c = rows.where(lambda r: r["kind"] == "checkpoint")
    if c.empty:
        return None
    rule = {r: rule for rule, r in RULE_ROLES.items()}[role]
    i = pick_index(rule, list(c.cols["roles"]), np.asarray(c.cols["episode"]), c.column("entropy"),
                   c.column("train_reward"), declared, after_episode)
    return None if i is None else c.keys[i]


def best_key(rows: Rows, metric: str) -> str | None:
    """The best checkpoint by ``metric`` (checkpoints with a value), or None."""
    c = rows.where(lambda r: r["kind"] == "checkpoint" and r.get(metric) is not None
                   and not np.isnan(r.get(metric)))
    if c.empty:
        return None
    return c.keys[rank_and_regret(c.column(metric), 0, higher_is_better(metric))[2]]


def smooth(x: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Trailing NaN-aware moving average.

    Args:
        x: float [L]. window: points (>= 1).

    Returns:
        float [L]; element i is the mean of x[max(0, i - window + 1) : i + 1] ignoring NaN (NaN if all are).
    """
    a = np.asarray(x, dtype=float)
    w = max(1, int(window))
    if a.size == 0:
        return a.copy()
    win = np.lib.stride_tricks.sliding_window_view(np.concatenate([np.full(w - 1, np.nan), a]), w)
    ok = ~np.isnan(win)
    cnt = ok.sum(1)
    total = np.where(ok, win, 0.0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, total / np.maximum(cnt, 1), np.nan)


SHOWN_DIGITS = 4  # significant digits of every float a dashboard table shows (exports keep full precision)


def round_sig(x: float, digits: int = SHOWN_DIGITS) -> float:
    """``x`` rounded to ``digits`` significant digits, as the shortest float (``-0.9151515151515152`` ->
    ``-0.9152``; ``69.0421`` -> ``69.04``); NaN and infinities unchanged."""
    x = float(x)
    return x if not np.isfinite(x) else float(f"{x:.{digits}g}")


def shown(table: Any, digits: int = SHOWN_DIGITS) -> Any:
    """A table as shown: every float column (a pandas frame's, or a dict of lists') rounded by :func:`round_sig`.

    Args:
        table: a pandas DataFrame or ``{column: list}``; other columns (text, integers, tuples) are kept as they are.

    Returns:
        A copy of the same type.
    """
    if isinstance(table, Mapping):
        return {k: [round_sig(v, digits) if isinstance(v, float) else v for v in col] for k, col in table.items()}
    out = table.copy()
    for c in out.columns:
        if out[c].dtype.kind == "f":
            out[c] = [round_sig(v, digits) for v in out[c]]
    return out
