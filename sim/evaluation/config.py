"""``EvalConfig``: the settings of one evaluation, each with its default and range written once; the CLI
(``python -m sim.evaluate``) is generated from it."""

from __future__ import annotations

from dataclasses import dataclass, field

from scenarios.cli_config import PORT, SEED, RangeError, above, at_least, check_ranges
from scenarios.suites import DEFAULT_CACHE_DIR
from sim.evaluation.candidates import BASELINES
from sim.evaluation.executors import EXECUTORS
from sim.evaluation.units import MAX_ROLLOUTS, check_rollouts
from sim.metrics.catalogue import MAP_RULES
from sim.results.errors import EvaluationError
from sim.selection.budget import check_budget

MAX_BATCH = 65_536
"""Largest ``--batch-size`` (scenes simulated together)."""
MAX_RESAMPLES = 1_000_000
"""Largest ``--n-resamples`` of the scenario bootstrap."""


def _f(default, help: str, **kw):  # noqa: A002 - argparse's word
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one ``sim.evaluate`` call; every field is a flag (``--help``)."""

    ckpt: tuple[str, ...] = _f((), "checkpoint file, quoted glob, folder (foreign agents), or bare name resolved "
                                   "in --run's folder or out/latest/", metavar="PATH")
    agent: str = _f("own", "agent plug-in that loads the checkpoints: own, sb3, torchscript or MODULE:FACTORY",
                    metavar="NAME")
    signals: str | None = _f(None, "training log to judge every signal of: entropy_history.json, TensorBoard folder, "
                             "MLflow tracking folder (mlruns), CSV or JSON lines (default: the run's "
                             "entropy_history.json)", metavar="PATH")
    signal_names: tuple[str, ...] = _f((), "a scalar the training log must hold (raw or judged name); every "
                                       "scalar is judged", flag="signal", metavar="NAME")
    run: str | None = _f(None, "evaluate every checkpoint of this run directory (bare --ckpt names resolve in it "
                         "first; with --only and --ckpt, just those)", metavar="DIR")
    only: bool = _f(False, "only the given checkpoints, not their run's comparison set")
    baselines: tuple[str, ...] = _f((), "add baseline rows", choices=BASELINES, flag="baseline")
    scenarios: str = _f("procedural:test", "suite name (procedural:test), file, or folder")
    scenario_cache: str = _f(DEFAULT_CACHE_DIR, "on-disk cache of generated bundled suites and of prepared scenes "
                             "(road grids, lane pieces; keyed by content) ('' to disable)")
    max_scenarios: int = _f(0, "evaluate only the first N scenes (0: all)", range=at_least(0))
    scenario_types: str = _f("", "evaluate only scenes of any of these scenario types, comma-separated "
                             "(scenarios/types.py: starting_left_turn, changing_lane, ...; '': all)", metavar="A,B")
    strict: bool = _f(False, "stop at the first unusable scene file instead of skipping it")
    backend: str = _f("kinematic", "simulator", choices=("kinematic", "carla"))
    carla_host: str = _f("localhost", "CARLA host(s), comma-separated")
    carla_port: tuple[int, ...] = _f((2000,), "CARLA RPC port(s): one server each, scenes spread across them",
                                     range=PORT)
    agents: str = _f("log", "other agents: log replay or IDM", choices=("log", "idm"))
    batch_size: int = _f(64, "scenes simulated together", range=at_least(1, MAX_BATCH))
    scene_window: int = _f(512, "scenes whose batches a process holds at once: a larger scene set runs window by "
                           "window, every checkpoint on one window before the next (each batch built once; memory "
                           "grows with the window, not the scene set; a checkpoint's rows are committed per window; a "
                           "larger set in a project .npz file is streamed from it, not held; 0: one window)",
                           metavar="N", range=at_least(0))
    device: str = _f("cpu", "torch device: cpu, cuda, cuda:N, or auto (CUDA only from a batch size where it is "
                              "faster; the choice is printed)")
    threads: int = _f(1, "torch CPU threads per process (small tensors: 1 is fastest)", range=at_least(1, 1024))
    compile: bool = _f(False, "torch.compile the hot parts (sim.compiled.StepCompile: observation, controller, "
                       "the metrics' candidate filters and route projection; continuous metrics differ from "
                       "eager's at float32 round-off, a borderline boolean one can flip; about 20 s to compile "
                       "per process: pays on long sweeps); falls back to eager with a warning")
    out: str | None = _f(None, "results file, one experiment each (default <run>/results.h5; a run's other "
                               "scenario sets: <run>/results.<set>.h5)")
    consolidate: bool = _f(False, "at the end, copy the sidecar commits into one self-contained results file")
    seed: int = _f(0, "torch and bootstrap seed", range=SEED)
    executor: str = _f("auto", "where work units run: this process, worker processes here, or Ray; auto: worker "
                               "processes for sweeps long enough to pay for their start on a machine of several CPUs "
                               "(sim.evaluation.executors.pick_executor), else this process", choices=EXECUTORS)
    ray_address: str | None = _f(None, "Ray cluster address (default: start a local instance)")
    num_cpus: int = _f(0, "worker processes (--executor processes) or CPUs of a local Ray instance (0: all)",
                       range=at_least(0))
    metric: str = _f("score", "metric that defines the best checkpoint in the verdict")
    budget: float = _f(0.0, "budgeted selection: at most N (checkpoint, scene) rollouts, or a fraction in (0, 1] of "
                       "the full sweep; clearly worse checkpoints stop receiving scenes, the race stops once one is "
                       "best with probability --confidence (docs/selection.md; 0: full sweep)", metavar="N",
                       range=at_least(0))
    confidence: float = _f(0.95, "--budget stops once one checkpoint is best by --metric with this probability, "
                           "in (0, 1]", metavar="P", range=above(0, 1))
    rollouts: int = _f(0, "besides the mean action, run each (checkpoint, scene) K more times with actions sampled "
                       "from the policy's Gaussian head (seeded by --seed), stored beside the mean-action rows, and "
                       f"report the variance within and between scenes (0 to {MAX_ROLLOUTS}; 0: mean action only)",
                       metavar="K", range=at_least(0, MAX_ROLLOUTS))
    n_resamples: int = _f(999, "scenario bootstrap resamples", range=at_least(1, MAX_RESAMPLES))
    latest: str = _f("out/latest", "the run folder that bare --ckpt names resolve in (after --run's)")
    progress: bool = _f(True, "progress bar")

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(dict.fromkeys(self.baselines)))
        try:
            check_ranges(self)
            check_budget(self.budget)
        except (RangeError, ValueError) as e:
            raise EvaluationError(str(e)) from None
        try:
            check_rollouts(self.rollouts)
        except ValueError as e:
            raise EvaluationError(str(e)) from None
        if self.budget > 0 and self.metric in MAP_RULES:
            raise EvaluationError(f"--metric {self.metric}: not applicable on scenes whose map lacks what it needs, "
                                  "and --budget races on a metric defined on every scene: use score or nuplan_score "
                                  "(which count it where it applies), or drop --budget")
