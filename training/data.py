"""Scenarios of a run: train batches, the val batch, expert data and the fixed evaluation states."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from policy.checkpoint import CheckpointError, atomic_write_bytes
from scenarios.loading import first_of_each_id, load_scenes
from scenarios.scenario import Scenario, ScenarioError
from scenarios.suites import parse_spec, suite_seeds
from sim.batch import ScenarioBatch, make_batch
from sim.expert import collect_expert
from sim.observation import OBS_DIM, OBS_VERSION
from sim.results.run_folder import EVAL_STATES_FILE, SCENES_FILE
from training.bc import ExpertData, flatten_expert
from training.config import TrainConfig, TrainError
from training.run_dir import write_json

EVAL_STATES_VERSION = 1
EXPERT_CHUNK = 64  # scenes per collect_expert call


def expert_data(scenes: Sequence[Scenario], device: torch.device, max_agents: int) -> ExpertData:
    """Expert observations and waypoints of ``scenes`` (ego on its log), flattened over real steps."""
    obs, wps = [], []
    for start in range(0, len(scenes), EXPERT_CHUNK):
        batch = make_batch(scenes[start:start + EXPERT_CHUNK], device, max_agents)
        o, w = collect_expert(batch)
        d = flatten_expert(o, w, batch.step_valid, batch.init_step)
        obs.append(d.obs)
        wps.append(d.waypoints)
    return ExpertData(torch.cat(obs), torch.cat(wps))


VAL_EVERY, VAL_OFFSET = 10, 4  # a file or folder: scenes sorted by id, i % VAL_EVERY == VAL_OFFSET is val
MIN_VAL_SCENES = 5  # below this a val score at each interval says little (a warning)


def _min_scenes(n_val: int) -> int:
    """Usable scenes a file or folder needs for ``n_val`` val scenes (and at least one train scene)."""
    return VAL_OFFSET + 1 + (n_val - 1) * VAL_EVERY


def split_scenes(spec: str, split: str, limit: int = 0, progress: bool = True, strict: bool = False) -> list[Scenario]:
    """Scenes of ``split`` (``train`` or ``val``) of a suite name, a scenario file or a folder.

    A bundled suite (``procedural``, any ``:split`` suffix ignored) gives the first ``limit`` scenes of its
    split (0 = all), generated on demand. A file or folder has no splits: its usable scenes
    (:func:`scenarios.loading.load_scenes`; an unusable file or scene is skipped with a one-line reason
    on stderr, or is an error with ``strict``), ordered by id, are split deterministically by position
    (every :data:`VAL_EVERY`-th scene, starting with the ``VAL_OFFSET + 1``-th, is val; the rest train).

    Raises:
        TrainError: the split is empty, nothing is usable, or (``strict``) a scene cannot be used.
    """
    name = spec.split(":", 1)[0]
    if parse_spec(name) is not None:
        from scenarios.procedural import generate_suite

        seeds = list(suite_seeds(name, split))
        seeds = seeds[:limit] if limit > 0 else seeds
        scenes = generate_suite(seeds, progress=progress and len(seeds) > 100)
    else:
        try:
            report = load_scenes(spec, strict=strict)
        except ScenarioError as e:
            raise TrainError(f"--scenarios {spec}: {e}") from None
        ids = [s.id for s in report.scenes]
        keep, repeated = first_of_each_id(ids, report.files, used_as="the first is used")  # a repeat would leak
        if repeated and strict:  # into both splits
            raise TrainError(f"--scenarios {spec}: {repeated[0].reason.split(';')[0]} (--strict)")
        if split == "train":
            for note in report.notes:
                print(f"note: {note}", file=sys.stderr)
            for item in [*report.skipped, *repeated]:
                print(item.line(), file=sys.stderr)
        every = sorted((report.scenes[i] for i in keep), key=lambda s: s.id)
        scenes = [s for i, s in enumerate(every) if (i % VAL_EVERY == VAL_OFFSET) == (split == "val")]
        scenes = scenes[:limit] if limit > 0 else scenes
        if not scenes:
            raise TrainError(f"--scenarios {spec}: {len(every)} usable scene(s) leave the {split} split empty; a file "
                             f"or folder is split by scene id (every {VAL_EVERY}th scene, from the "
                             f"{VAL_OFFSET + 1}th, is val; the rest train): training needs at least "
                             f"{_min_scenes(1)} usable scenes")
    if not scenes:
        raise TrainError(f"--scenarios {spec}: the {split} split is empty")
    return scenes


@dataclass
class RunData:
    """Scenarios and fixed data of a run.

    Attributes:
        train_scenes: the train split.
        val_batch: the first ``val_scenes`` scenes of the val split, batched on the device.
        eval_obs: float32 ``[N, OBS_DIM]`` fixed evaluation states (saved in ``eval_states.pt``).
        expert: behaviour-cloning data (``bc_scenes`` train scenes), None when not needed.
    """

    train_scenes: list[Scenario]
    val_batch: ScenarioBatch
    eval_obs: Tensor
    expert: ExpertData | None
    bc_scenes: list[Scenario]
    device: torch.device
    max_agents: int
    _cache: dict[tuple[int, ...], ScenarioBatch] = field(default_factory=dict)

    def bc_batches(self) -> list[ScenarioBatch]:
        """The behaviour-cloning scenes in batches of at most ``EXPERT_CHUNK``."""
        return [make_batch(self.bc_scenes[i:i + EXPERT_CHUNK], self.device, self.max_agents)
                for i in range(0, len(self.bc_scenes), EXPERT_CHUNK)]

    def train_batch(self, seed: int, n: int) -> ScenarioBatch:
        """``n`` train scenes drawn without replacement with ``seed`` (same seed, same scenes)."""
        perm = torch.randperm(len(self.train_scenes), generator=torch.Generator().manual_seed(seed))
        idx = tuple(sorted(int(i) for i in perm[: min(n, len(self.train_scenes))]))
        if idx not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[idx] = make_batch([self.train_scenes[i] for i in idx], self.device, self.max_agents)
        return self._cache[idx]


def say_split(spec: str, train: list[Scenario], val: list[Scenario]) -> None:
    """Print how many scenes each split holds; warn when the val split is too small for a meaningful score."""
    print(f"scenes: {len(train)} train, {len(val)} val from {spec}")
    if len(val) < MIN_VAL_SCENES:
        print(f"warning: --scenarios {spec}: the val split has {len(val)} scene(s); the val score at each interval "
              f"says little on fewer than {MIN_VAL_SCENES} (a file or folder needs at least "
              f"{_min_scenes(MIN_VAL_SCENES)} usable scenes: every {VAL_EVERY}th by id is val)", file=sys.stderr)


def load_run_data(cfg: TrainConfig, run: Path, device: torch.device, need_expert: bool = True) -> RunData:
    """Load the splits, the expert data and the evaluation states (drawn once, then read from the run dir)."""
    train = split_scenes(cfg.scenarios, "train", cfg.train_pool, cfg.progress, cfg.strict)
    val = split_scenes(cfg.scenarios, "val", cfg.val_scenes, cfg.progress, cfg.strict)
    say_split(cfg.scenarios, train, val)
    write_json(run / SCENES_FILE, {"scenarios": cfg.scenarios, "train": [s.id for s in train],
                                   "val": [s.id for s in val]})
    val_batch = make_batch(val, device, cfg.max_agents)
    expert = None
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))
    bc_scenes = [train[int(i)] for i in order[: cfg.bc_scenes]]
    if need_expert:
        expert = expert_data(bc_scenes, device, cfg.max_agents)
    path = run / EVAL_STATES_FILE
    if path.exists():
        eval_obs = read_eval_states(path).to(device)
    else:
        v = expert_data(val, device, cfg.max_agents)
        pick = torch.randperm(v.obs.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[: cfg.eval_states]
        eval_obs = v.obs[pick.to(v.obs.device)]
        write_eval_states(path, eval_obs, cfg)
    return RunData(train, val_batch, eval_obs, expert, bc_scenes, device, cfg.max_agents)


def write_eval_states(path: Path, obs: Tensor, cfg: TrainConfig) -> None:
    """Save the evaluation observations ``[N, OBS_DIM]`` with their provenance (atomic, weights_only)."""
    import io

    buf = io.BytesIO()
    torch.save({"obs": obs.detach().cpu(), "version": EVAL_STATES_VERSION, "obs_dim": OBS_DIM,
                "obs_version": OBS_VERSION, "seed": cfg.seed, "source": f"{cfg.scenarios}:val expert states"}, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except CheckpointError as e:
        raise TrainError(str(e)) from e


def read_eval_states(path: Path) -> Tensor:
    """Load ``eval_states.pt``; raises :class:`TrainError` naming the file when it is unusable."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainError(f"{path}: not a readable evaluation-state file ({str(e).splitlines()[0][:200]})") from e
    if not isinstance(obj, dict) or obj.get("version") != EVAL_STATES_VERSION or "obs" not in obj:
        raise TrainError(f"{path}: not an evaluation-state file of version {EVAL_STATES_VERSION}")
    if obj.get("obs_dim") != OBS_DIM or obj.get("obs_version") != OBS_VERSION:
        raise TrainError(f"{path}: observations of dim {obj.get('obs_dim')} version {obj.get('obs_version')}, "
                         f"the simulator gives dim {OBS_DIM} version {OBS_VERSION}")
    return obj["obs"].float()
