"""The run directory: creation (never overwriting), ``config.json``, ``out/latest``, atomic JSON writes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from policy.checkpoint import CheckpointError, atomic_write_bytes
from scenarios.commands import quote
from sim.results.run_folder import CHECKPOINTS_DIR, CONFIG_FILE, LATEST_LINK
from training.config import TrainConfig, TrainError

CONFIG_SCHEMA_VERSION = 1


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically; raises :class:`TrainError` naming the file on failure."""
    try:
        atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())
    except CheckpointError as e:
        raise TrainError(str(e)) from e
    except ValueError as e:  # NaN/inf
        raise TrainError(f"{path}: refusing to write non-finite numbers ({e})") from e


def read_json(path: Path) -> Any:
    """Read JSON; raises :class:`TrainError` naming the file when missing or malformed."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise TrainError(f"{path}: missing") from e
    except (OSError, ValueError) as e:
        raise TrainError(f"{path}: unreadable JSON ({e})") from e


def git_revision(repo: Path) -> str:
    """``git rev-parse HEAD`` of ``repo`` plus ``-dirty`` when tracked files changed; ``unknown`` without git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of Python, torch, numpy and this package."""
    import numpy
    import torch
    try:
        from importlib.metadata import version
        pkg = version("driveselect")
    except Exception:  # not installed
        pkg = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "driveselect": pkg}


def default_run_name(seed: int) -> str:
    """``run-YYYYmmdd-HHMMSS-s{seed}`` (UTC)."""
    return time.strftime("run-%Y%m%d-%H%M%S", time.gmtime()) + f"-s{seed}"


def create_run_dir(cfg: TrainConfig, root: Path = Path("out")) -> tuple[Path, Path | None]:
    """Create a fresh run directory (``cfg.out_dir`` or ``root/<run>``) with ``checkpoints/``.

    Returns:
        ``(run, made)``: the run directory and the topmost folder this call created (the run directory or
        one of its parents; None when the run directory existed, empty). :func:`remove_new_run` undoes it.

    Raises:
        TrainError: the directory exists and is not empty (runs are never silently overwritten), or it
            cannot be created (read-only or full disk).
    """
    if cfg.out_dir is not None:
        run = Path(cfg.out_dir)
    else:
        run = root / default_run_name(cfg.seed)
        n = 1
        while run.exists():
            run = root / f"{default_run_name(cfg.seed)}-{n}"
            n += 1
    if run.exists() and not run.is_dir():
        raise TrainError(f"--out-dir {run}: a file, not a folder; pick another --out-dir (a new or empty folder)")
    if run.exists() and any(run.iterdir()):
        raise TrainError(f"{run}: already exists and is not empty; pick another --out-dir or continue it with "
                         f"--resume {quote(run)}")
    made = next((p for p in reversed([run, *run.parents]) if not p.exists()), None)
    try:
        (run / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainError(f"{run}: cannot create the run directory ({e.strerror or e})") from e
    return run, made


def remove_new_run(run: Path, made: Path | None) -> None:
    """Undo :func:`create_run_dir` for a run that failed before its first checkpoint (best effort).

    Removes everything in ``run``, then ``run`` and its parents up to ``made`` (the folders that call created);
    a run directory that existed (empty) before is left empty.
    """
    with contextlib.suppress(OSError):
        for child in list(run.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    if made is None:
        return
    for folder in [run, *run.parents]:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == made:
            return


def write_config(run: Path, cfg: TrainConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """Write ``config.json`` (every setting, seed, versions, git revision, ``extra``); returns what was written."""
    doc = {
        "schema_version": CONFIG_SCHEMA_VERSION,
        "train": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": package_versions(),
        "git_revision": git_revision(Path(__file__).resolve().parents[1]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    write_json(run / CONFIG_FILE, doc)
    return doc


def update_latest(run: Path) -> bool:
    """Point ``<parent>/latest`` at ``run`` with a relative symlink, replaced atomically.

    Returns:
        Whether the link now points at ``run`` (False when it could not be written; it is left as it was).
    """
    link = run.parent / LATEST_LINK
    tmp = run.parent / f".latest.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run.name, tmp)
        os.replace(tmp, link)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False


@contextlib.contextmanager
def run_lock(run: Path):
    """Hold an exclusive lock on the run directory while this process trains it (no file is left behind).

    ``flock`` on the directory itself: released when the process ends, however it ends. A second trainer on
    the same run (``--resume`` while the first still runs) would interleave writes into one history.

    Raises:
        TrainError: another process holds the run.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (documented)
        yield
        return
    fd = os.open(run, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrainError(f"{run}: another process is training this run right now; wait for it to finish "
                             "(or stop it) before --resume") from None
        yield
    finally:
        os.close(fd)
