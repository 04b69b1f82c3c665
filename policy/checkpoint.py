"""Checkpoint save/load (docs/run_files.md).

A checkpoint is a dict ``{"state_dict", "config", "meta"}`` of plain types and tensors, written
atomically (temp file in the same folder, fsync, ``os.replace``) and read only with
``torch.load(path, weights_only=True)``. ``config["policy"]`` is a :class:`PolicyConfig` dict;
``meta["format_version"]`` must equal :data:`FORMAT_VERSION`; ``meta["policy_digest"]`` is
:func:`acting_digest` of the weights (two files with the same digest drive the same).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from policy.model import PolicyConfig, WaypointPolicy

FORMAT_VERSION = 1
DIGEST_KEY = "policy_digest"
NON_ACTING_PREFIXES = ("value_net.",)
"""State-dict entries the acting forward pass never reads (the critic): left out of :func:`acting_digest`."""
NON_ACTING_CONFIG = ("init_log_std",)
"""Architecture settings that only matter at initialisation: left out of :func:`acting_digest`."""
REQUIRED_META = ("episode", "entropy", "eval_info", "format_version")
REFUSED_GLOBAL = re.compile(r"unsupported (?:global|class):?\s+(?:GLOBAL\s+)?([A-Za-z_][\w.]*)", re.IGNORECASE)
"""The name of the global (function or class) a ``weights_only`` load refused, in every wording PyTorch has used."""
WEIGHTS_ONLY_FAILED = "Weights only load failed"
WEIGHTS_ONLY_ADVICE = (WEIGHTS_ONLY_FAILED, "weights_only", "Check the documentation of torch.load")
"""Lines of PyTorch's refusal that are advice (re-run with ``weights_only=False``...), never repeated to users."""
ZIP_READER_REASONS = (  # PyTorch's zip reader (PytorchStreamReader / miniz) text -> what it means for the user
    ("failed finding central directory", "truncated or corrupt: not a complete zip archive"),
    ("not a ZIP archive", "not a PyTorch file: torch.save and TorchScript files are zip archives"),
    ("failed locating file constants.pkl", "a torch.save file, not a TorchScript module (torch.jit.save writes those)"),
    ("with TorchScript archives passed to", "a TorchScript module, not a torch.save file (--agent torchscript)"),
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message names the file and the problem."""


class LoadedCheckpoint(NamedTuple):
    """A loaded checkpoint.

    Attributes:
        policy: the :class:`WaypointPolicy`, in eval mode, on the requested device.
        config: the checkpoint's ``config`` dict (``config["policy"]`` is the architecture).
        meta: the checkpoint's ``meta`` dict (episode, entropy, eval_info, format_version, kind, ...).
    """

    policy: WaypointPolicy
    config: dict[str, Any]
    meta: dict[str, Any]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    Raises:
        CheckpointError: the folder is missing or not writable, or the disk is full; any earlier
            file at ``path`` is left untouched.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        try:
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write ({e.strerror or e}); earlier files are unchanged") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def plain(obj: Any, where: str = "value") -> Any:
    """Copy of ``obj`` made of plain types only (dict with str keys, list, str, int, float, bool, None, Tensor).

    Tuples become lists, str/int/float subclasses (e.g. ``torch.__version__``) and numpy scalars their base type.

    Raises:
        CheckpointError: a value of another type (it could not be read back with ``weights_only=True``).
    """
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {str(k): plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalar
        return plain(obj.item(), where)
    raise CheckpointError(f"{where}: {type(obj).__name__} cannot be stored in a weights_only checkpoint")


def acting_digest(state_dict: Mapping[str, torch.Tensor], policy_config: Mapping[str, Any] | None = None) -> str:
    """SHA-256 (hex) of the weights that act: what the simulator-facing forward pass reads.

    Covers every ``state_dict`` entry except the value head (:data:`NON_ACTING_PREFIXES`): normalisation
    buffers, encoder, cloned head, delta head and log-std (so the sampling distribution, and with it the
    entropy, is part of a policy's identity), each by name, dtype, shape and bytes; plus the architecture
    (``config["policy"]``, less :data:`NON_ACTING_CONFIG`) when given. Two checkpoints with the same digest
    produce the same actions for every observation: e.g. ``ep00050.pt`` and ``bc.pt`` while PPO's
    ``value_warmup`` trains only the value head. Deterministic across runs and machines for equal tensors.

    Args:
        state_dict: ``{name: tensor}`` as saved in a checkpoint (``obj["state_dict"]``).
        policy_config: the checkpoint's ``config["policy"]`` dict, or None to hash weights only.

    Returns:
        64 hex characters.
    """
    h = hashlib.sha256()
    if policy_config is not None:
        arch = {k: v for k, v in sorted(policy_config.items()) if k not in NON_ACTING_CONFIG}
        h.update(repr(arch).encode())
    hash_tensors(h, state_dict, skip=NON_ACTING_PREFIXES)
    return h.hexdigest()


def hash_tensors(h: Any, state: Mapping[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    """Feed ``state`` into the hash ``h``: each tensor's name, dtype, shape and bytes, in name order (the one
    definition every weights identity uses: :func:`acting_digest`, ``sim.evaluation.plugins.weights_digest``).

    Args:
        h: a ``hashlib`` hash object.
        state: ``{name: tensor}`` (0-d tensors included).
        skip: name prefixes left out.
    """
    for name in sorted(state):
        if skip and name.startswith(skip):
            continue
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def first_non_finite(state_dict: Mapping[str, Any], acting_only: bool = False) -> str | None:
    """Name of the first floating-point tensor of ``state_dict`` holding a NaN or an infinity, or None.

    Args:
        state_dict: ``{name: tensor}`` (non-tensor entries are ignored).
        acting_only: look only at the weights that act (every entry but :data:`NON_ACTING_PREFIXES`, as
            :func:`acting_digest`): a policy whose critic alone is non-finite still drives.
    """
    for name in sorted(state_dict):
        t = state_dict[name]
        if acting_only and name.startswith(NON_ACTING_PREFIXES):
            continue
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def policy_digest(policy: WaypointPolicy) -> str:
    """:func:`acting_digest` of a live policy (the value written to ``meta["policy_digest"]``)."""
    return acting_digest(policy.state_dict(), policy.config.to_dict())


def save_checkpoint(path: str | os.PathLike[str], policy: WaypointPolicy, config: dict[str, Any],
                    meta: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Save ``policy`` with ``config`` and ``meta`` atomically.

    ``config["policy"]`` is set from ``policy.config``; ``meta["format_version"]`` is set to
    :data:`FORMAT_VERSION` and ``meta["policy_digest"]`` to :func:`acting_digest`. Values must be plain
    (dict, list, str, int, float, bool, None, tensors).
    ``extra`` adds top-level entries (e.g. ``train_state`` for resuming); loaders ignore them.

    Raises:
        CheckpointError: a weight is NaN or infinite (nothing is written: no checkpoint ever holds non-finite
            weights), or cannot write (see :func:`atomic_write_bytes`).
    """
    cfg = plain(dict(config), "config")
    cfg["policy"] = plain(policy.config.to_dict(), "config.policy")
    m = plain(dict(meta), "meta")
    m["format_version"] = FORMAT_VERSION
    m.setdefault("state_dependent_std", policy.config.state_dependent_std)
    state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
    bad = first_non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path}: not written: weight {bad} is not finite (NaN or infinite)")
    m[DIGEST_KEY] = acting_digest(state, cfg["policy"])
    buf = io.BytesIO()
    torch.save({**(extra or {}), "state_dict": state, "config": cfg, "meta": m}, buf)
    atomic_write_bytes(path, buf.getvalue())


def unpickling_refusal(text: str) -> str | None:
    """What ``torch.load(..., weights_only=True)`` refused, in one line, or None when ``text`` (its exception's
    text) is not such a refusal.

    A pickled global (a function or class: code) is named whatever PyTorch's wording (:data:`REFUSED_GLOBAL`:
    ``Unsupported global: GLOBAL argparse.Namespace was not an allowed global``, torch 2.13's ``Trying to load
    unsupported GLOBAL posix.system whose module posix is blocked``, older ``Unsupported class``): ``refused: it
    pickles posix.system (code), nothing was unpickled``. PyTorch's advice to re-run with ``weights_only=False``
    (arbitrary code execution) is never repeated.
    """
    m = REFUSED_GLOBAL.search(text)
    if m:
        return f"refused: it pickles {m.group(1).rstrip('.')} (code), nothing was unpickled"
    if WEIGHTS_ONLY_FAILED not in text:
        return None
    detail = next((ln.strip().removeprefix("WeightsUnpickler error:").strip() for ln in text.splitlines()
                   if ln.strip() and not any(a in ln for a in WEIGHTS_ONLY_ADVICE)), "")
    detail = detail.split(". ")[0][:150]
    return "refused: it needs unpickling" + (f" ({detail})" if detail else "") + ", nothing was unpickled"


def load_error_reason(e: BaseException) -> str:
    """One clean line for an exception of ``torch.load`` / ``torch.jit.load`` (PyTorch's zip reader explains
    itself in several sentences; :data:`ZIP_READER_REASONS` names the common cases, a ``weights_only`` refusal is
    :func:`unpickling_refusal`, otherwise the first sentence)."""
    text = str(e)
    refused = unpickling_refusal(text)
    if refused:
        return refused
    for needle, reason in ZIP_READER_REASONS:
        if needle in text:
            return reason
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()] or [type(e).__name__]
    first = lines[0].split(" This is an internal ")[0]
    return first if len(first) <= 200 else first[:200].rsplit(" ", 1)[0] + " ..."


def file_load_reason(path: str | os.PathLike[str], e: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed with ``e``, in one line: no such file, not a
    ``torch.save`` archive at all (a text file, say), or :func:`load_error_reason` (a ``weights_only`` refusal first:
    a plain pickle of code is refused as such)."""
    path = Path(path)
    if not path.is_file():
        return "no such file"
    if unpickling_refusal(str(e)) or _starts_as_zip(path):
        return load_error_reason(e)
    return "not a torch.save archive"


def _starts_as_zip(path: Path) -> bool:
    """Whether the file begins as a zip archive does (``torch.save``'s format), complete or not."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the raw checkpoint dict (``weights_only=True``), without building a policy.

    Raises:
        CheckpointError: missing, unreadable/corrupt, wrong layout or format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/truncated/pickled-code files
        reason = file_load_reason(path, e)
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from e
    if not isinstance(obj, dict) or not {"state_dict", "config", "meta"} <= set(obj):
        raise CheckpointError(f"{path}: not a checkpoint of this project (expected keys state_dict, config, meta)")
    meta, config = obj["meta"], obj["config"]
    if not isinstance(meta, dict) or not isinstance(config, dict) or not isinstance(obj["state_dict"], dict):
        raise CheckpointError(f"{path}: malformed checkpoint (state_dict, config and meta must be dicts)")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {version!r}, this code reads {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: meta lacks {', '.join(missing)}")
    if not isinstance(config.get("policy"), dict):
        raise CheckpointError(f"{path}: config lacks the policy architecture (config['policy'])")
    return obj


MAX_SIZE = 1 << 16
"""Largest width, depth, observation size or waypoint count a checkpoint may declare (a larger one is malformed)."""


def _bad_architecture(pcfg: PolicyConfig) -> str | None:
    """What is wrong with a policy config read from a file (a size that is not a positive whole number up to
    :data:`MAX_SIZE`, a log-std bound or scale that is not a finite number), or None."""
    for name in ("obs_dim", "num_waypoints", "hidden", "layers"):
        v = getattr(pcfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIZE:
            return f"{name} {v!r} is not a whole number in [1, {MAX_SIZE}]"
    sf = pcfg.speed_feature
    if sf is not None and (isinstance(sf, bool) or not isinstance(sf, int) or not 0 <= sf < pcfg.obs_dim):
        return f"speed_feature {sf!r} is not an index of the observation"
    for name in ("init_log_std", "min_log_std", "max_log_std", "speed_scale", "waypoint_dt"):
        v = getattr(pcfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{name} {v!r} is not a finite number"
    if not isinstance(pcfg.state_dependent_std, bool) or not isinstance(pcfg.obs_version, (int, str)):
        return "state_dependent_std must be a boolean and obs_version an integer or a string"
    return None


def state_dict_mismatch(want: Mapping[str, Any], got: Mapping[str, Any]) -> str:
    """What keeps ``got`` from loading into a policy whose state dict is ``want``: missing and unexpected weight
    names and the first shape that differs, in a few words (``torch``'s own message spans many lines)."""
    parts = []
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    for what, names in (("missing", missing), ("unexpected", extra)):
        if names:
            parts.append(f"{what} {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else ""))
    for k in sorted(set(want) & set(got)):
        a, b = want[k], got[k]
        if isinstance(b, torch.Tensor) and tuple(a.shape) != tuple(b.shape):
            parts.append(f"{k} is {list(b.shape)}, the architecture needs {list(a.shape)}")
            break
    return "; ".join(parts) or "a weight of another type"


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                    expect_obs: tuple[int, int | str] | None = None) -> LoadedCheckpoint:
    """Load a checkpoint into a fresh :class:`WaypointPolicy`.

    Args:
        path: the ``.pt`` file.
        device: where to put the policy.
        expect_obs: optional ``(OBS_DIM, OBS_VERSION)`` of the running simulator; a mismatch raises.

    Raises:
        CheckpointError: corrupt file, other format version, other architecture, observation mismatch.
    """
    obj = read_checkpoint(path)
    try:
        pcfg = PolicyConfig.from_dict(obj["config"]["policy"])
    except TypeError as e:
        raise CheckpointError(f"{path}: policy config does not match this code's architecture ({e})") from e
    bad = _bad_architecture(pcfg)
    if bad:
        raise CheckpointError(f"{path}: malformed policy config ({bad})")
    if expect_obs is not None and (pcfg.obs_dim, pcfg.obs_version) != tuple(expect_obs):
        raise CheckpointError(
            f"{path}: trained on observations (dim {pcfg.obs_dim}, version {pcfg.obs_version!r}); "
            f"the simulator gives (dim {expect_obs[0]}, version {expect_obs[1]!r})")
    policy = WaypointPolicy(pcfg)
    try:
        policy.load_state_dict(obj["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the policy architecture "
                              f"({state_dict_mismatch(policy.state_dict(), obj['state_dict'])})") from e
    policy.to(device).eval()
    return LoadedCheckpoint(policy, obj["config"], obj["meta"])
