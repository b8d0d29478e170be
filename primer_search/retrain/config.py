"""The retrain config: which programs to retrain, at which sizes, for how long, with how many seeds, where.

A YAML file with the search config's `model`, `data` and `training` sections (`training.budget_kind`, `budget`
and `checkpoints` are set per size from the `retrain` section) and a `retrain` section. `job_config` turns it into
the plain `Config` of one job, so a retrain job trains exactly as a search evaluation would.
This module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

from primer_search.config import Config, DataConfig, ModelConfig, TrainingConfig, load_config
from primer_search.program.schema import between, choice


@dataclasses.dataclass(frozen=True)
class RetrainSection:
    """What is retrained and how (see the README's "Retrain the winners")."""

    programs: tuple[str, ...] = ()              # seed names, DNA files, RUN_DIR:ID or RUN_DIR:topK (+ the CLI's)
    baselines: tuple[str, ...] = ("transformer",)
    # sizes, smallest first: parameter bands (every program sized into each, as a search sizes its candidates),
    # or size units (every program built at each unit)
    sizes: tuple[tuple[int, int], ...] = ()
    units: tuple[int, ...] = ()
    # tokens, steps or training FLOPs per size; compute_optimal: tokens_per_parameter x the first baseline's
    # parameters at that size (Hoffmann et al. 2022 found about 20 compute-optimal)
    budget_kind: str = choice("tokens", "tokens", "steps", "flops", "compute_optimal")
    budgets: tuple[float, ...] = ()             # one per size, or one for every size
    tokens_per_parameter: float = between(20.0, 0.0, low_open=True)
    seeds: int = between(3, 1)                  # training seeds per program and size: training.seed + 0, 1, ...
    curve_points: int = between(20, 1)          # validation evaluations along each run, the end included
    # execution: one Ray Train job per (program, size, seed)
    address: str | None = None                  # None: local Ray; "auto" or "ray://host:port"
    num_cpus: int | None = None                 # local Ray: CPUs to use (None: all)
    workers: int = between(1, 1)                # Ray Train workers per job (MultiWorkerMirroredStrategy)
    cpus_per_worker: int = between(1, 1)        # also its TensorFlow threads
    gpus_per_worker: int = between(0, 0)        # several: MirroredStrategy inside the worker
    max_failures: int = between(2, 0)           # a job's worker failures retried from its last checkpoint
    mixed_precision: bool = False               # bfloat16 compute, float32 weights (accelerators); model.keras float32

    def __post_init__(self):
        if bool(self.sizes) == bool(self.units):
            raise ValueError(f"sizes: found {len(self.sizes)} parameter bands and {len(self.units)} units, expected "
                             f"one of the two lists")
        for i, (low, high) in enumerate(self.sizes):
            if not 0 < low <= high:
                raise ValueError(f"sizes[{i}]: found [{low}, {high}], expected [low, high] with 0 < low <= high")
        if any(u < 1 for u in self.units):
            raise ValueError(f"units: found {list(self.units)}, expected positive size units")
        count = len(self.sizes or self.units)
        if self.budget_kind == "compute_optimal":
            if self.budgets:
                raise ValueError(f"budgets: found {list(self.budgets)} with budget_kind: compute_optimal, expected "
                                 f"none (tokens_per_parameter sets them)")
        elif len(self.budgets) not in (1, count) or any(not b > 0 for b in self.budgets):
            raise ValueError(f"budgets: found {list(self.budgets)}, expected 1 or {count} positive "
                             f"{self.budget_kind} budgets (one per size)")
        if not self.baselines:
            raise ValueError("baselines: found none, expected at least one program to compare with")

    @property
    def size_count(self) -> int:
        return len(self.sizes or self.units)


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    retrain: RetrainSection = dataclasses.field(default_factory=lambda: RetrainSection(units=(8,), budgets=(1e6,)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_retrain_config(path=None, overrides=()) -> RetrainConfig:
    return load_config(path, overrides, RetrainConfig)


def curve_fractions(points: int) -> tuple[float, ...]:
    """Budget fractions of the validation points before the end: 1/points, 2/points, ..."""
    return tuple(i / points for i in range(1, points))


def job_config(config: RetrainConfig, size: int, seed: int, baseline_parameters: int | None = None) -> Config:
    """The `Config` of one job: size `size` (index), training seed `training.seed + seed`, the size's budget as a
    steps or FLOPs budget with a validation point every 1/curve_points of it. `baseline_parameters` (the first
    baseline's count at this size) is needed for compute_optimal budgets."""
    section = config.retrain
    model = config.model
    if section.sizes:
        model = dataclasses.replace(model, param_band=section.sizes[size])
    kind = section.budget_kind
    if kind == "compute_optimal":
        if baseline_parameters is None:
            raise ValueError("a compute_optimal budget needs the baseline's parameter count at the size")
        budget = section.tokens_per_parameter * baseline_parameters
    else:
        budget = section.budgets[size if len(section.budgets) > 1 else 0]
    if kind in ("tokens", "compute_optimal"):
        kind, budget = "steps", math.ceil(budget / config.data.batch_tokens)
    training = dataclasses.replace(config.training, budget_kind=kind, budget=float(budget),
                                   checkpoints=curve_fractions(section.curve_points),
                                   seed=config.training.seed + seed, timeout_seconds=None)
    return Config(model=model, data=config.data, training=training)
