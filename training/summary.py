"""End-of-run summary table (rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from training.checkpoints import CheckpointManager


def print_summary(run: Path, manager: CheckpointManager, bc: dict[str, Any] | None) -> None:
    """Print one row per evaluation (and the behaviour-cloned start), marking best_entropy and best_reward."""
    table = Table(title=f"training run {run}", caption="entropy in nats; val = closed loop on the val scenes")
    for col in ("ep", "entropy", "return", "score", "coll", "ade m", "|d| m", "file"):
        table.add_column(col, justify="right", no_wrap=True)
    best, best_r = manager.best, manager.best_reward

    def fmt(info: dict[str, float], key: str) -> str:
        v = info.get(key)
        return "-" if v is None else f"{v:.3f}"

    if bc is not None:
        i = bc["eval_info"]
        table.add_row("0 (bc)", f"{bc['entropy']:.3f}", "-", fmt(i, "val_score"), fmt(i, "val_collision"),
                      fmt(i, "val_ade"), fmt(i, "mean_delta_norm"), "bc.pt")
    for r in manager.records:
        tags = [t for t, rr in (("best_entropy", best), ("best_reward", best_r)) if rr and rr.episode == r.episode]
        file = (r.path or "(evicted)").removeprefix("checkpoints/") + (f" *{','.join(tags)}" if tags else "")
        i = r.eval_info
        table.add_row(str(r.episode), f"{r.entropy:.3f}", f"{r.train_reward:.3f}", fmt(i, "val_score"),
                      fmt(i, "val_collision"), fmt(i, "val_ade"), fmt(i, "mean_delta_norm"), file)
    Console(stderr=False, width=max(100, Console().width)).print(table)
