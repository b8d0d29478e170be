"""Calibration: how noisy a config's fitness is, measured on its seed programs, and what its hurdles cost.

`calibrate(config, k)` evaluates every seed program of `config.search.seeds` k times with training seeds
training.seed + 1 ... training.seed + k (they change the initial weights and the order of the data), with a
checkpoint at each hurdle fraction and nothing stopped, on the project's executor (`make_executor(config.search)`).
`summarize(results, config)` is the pure part, also usable on stored results: per program, the metric's mean and
standard deviation at each hurdle and at the end, the steps and training seconds at which each hurdle falls, the
rank correlation between the metric at a hurdle and at the end, and the smallest difference the config can detect:
the true difference that a one-sided two-sample z rule at level `ALPHA` finds with probability `POWER`,
(z_0.95 + z_0.8) x sigma x sqrt(2 / n) = 3.52 sigma with one evaluation per program, 1.24 sigma with eight.
With H halving hurdles at fractions f_1 < ... < f_H of the budget, each passed by half the candidates, a candidate
costs on average E = f_1 + (f_2 - f_1) / 2 + ... + (1 - f_H) / 2^H of a full evaluation: compute saved 1 / E.

Evaluations run through `primer_search.search.trial.run_evaluations`, as `primer_search.search.confirmation`'s do.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable, Mapping, Sequence

from primer_search.config import Config
from primer_search.search import stats
from primer_search.search.hurdles import hurdle_fractions
from primer_search.search.trial import run_evaluations

ALPHA = 0.05    # one-sided level of the detectable-difference rule
POWER = 0.8


def expected_cost(fractions: Sequence[float], pass_rate: float | Sequence[float] = 0.5) -> float:
    """The expected share of a full evaluation's training a candidate costs when each hurdle, at these budget
    fractions, passes `pass_rate` of the candidates (one rate for all, or one per hurdle):
    f_1 + (f_2 - f_1) p_1 + ... + (1 - f_H) p_1 ... p_H."""
    rates = [pass_rate] * len(fractions) if isinstance(pass_rate, numbers.Real) else list(pass_rate)
    if len(rates) != len(fractions):
        raise ValueError(f"pass_rate: found {len(rates)} rates for {len(fractions)} hurdles, expected one per hurdle")
    bounds = [0.0, *fractions, 1.0]
    reach = [math.prod(rates[:i]) for i in range(len(bounds) - 1)]
    return sum((high - low) * r for r, low, high in zip(reach, bounds, bounds[1:]))


@dataclasses.dataclass(frozen=True)
class Point:
    """The metric across runs at one hurdle, or at the end (fraction 1)."""

    fraction: float
    runs: int                               # runs with a value here
    mean: float | None
    std: float | None                       # sample standard deviation
    step: float | None                      # mean step at which it falls
    steps: tuple[int, int] | None           # (fewest, most) steps
    train_seconds: float | None             # mean
    rank_correlation: float | None = None   # Spearman, metric here against the final metric (hurdles only)


@dataclasses.dataclass(frozen=True)
class ProgramCalibration:
    program: str                            # seed name or DNA file
    canonical_hash: str | None
    values: tuple[tuple[float | None, ...], ...]   # per run: the metric at each hurdle, then at the end
    statuses: tuple[str, ...]               # per run
    errors: tuple[str, ...]                 # messages of the runs that failed
    hurdles: tuple[Point, ...]
    final: Point

    @property
    def ok(self) -> int:
        return self.statuses.count("ok")


@dataclasses.dataclass(frozen=True)
class Calibration:
    metric: str
    budget_kind: str
    budget: float
    warmup_steps: int
    training_seeds: tuple[int, ...]
    hurdle_fractions: tuple[float, ...]
    expected_cost: float                    # share of a full evaluation per candidate with halving hurdles
    programs: tuple[ProgramCalibration, ...]
    alpha: float = ALPHA
    power: float = POWER

    @property
    def compute_saved(self) -> float:
        """Full evaluations per candidate's expected cost: 1 / E."""
        return 1.0 / self.expected_cost

    def detectable(self, sigma: float | None, n: int = 1) -> float | None:
        """The smallest difference detectable with `n` evaluations per program (see the module docstring)."""
        return None if sigma is None else stats.detectable_difference(sigma, n, self.alpha, self.power)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        def point(d):
            return Point(**{**d, "steps": tuple(d["steps"]) if d["steps"] is not None else None})

        programs = tuple(ProgramCalibration(
            p["program"], p["canonical_hash"], tuple(tuple(v) for v in p["values"]), tuple(p["statuses"]),
            tuple(p["errors"]), tuple(point(h) for h in p["hurdles"]), point(p["final"])) for p in data["programs"])
        return cls(**{**data, "training_seeds": tuple(data["training_seeds"]),
                      "hurdle_fractions": tuple(data["hurdle_fractions"]), "programs": programs})


def _checkpoint_at(result: dict, fraction: float) -> dict | None:
    for checkpoint in result.get("checkpoints") or ():
        if math.isclose(checkpoint["fraction"], fraction, abs_tol=1e-9):
            return checkpoint
    return None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _point(fraction: float, found: list[tuple[float, int, float]], rank_correlation=None) -> Point:
    """`found`: (metric, step, train seconds) of the runs that reached this point."""
    values = [v for v, _, _ in found]
    steps = [s for _, s, _ in found]
    return Point(fraction, len(found), stats.mean(values) if values else None, stats.stdev(values),
                 stats.mean(steps) if steps else None, (min(steps), max(steps)) if steps else None,
                 stats.mean([t for _, _, t in found]) if found else None, rank_correlation)


def summarize_program(program: str, results: Sequence[dict], config: Config) -> ProgramCalibration:
    """One program's calibration from its FitnessResult dicts: a hurdle counts every result with a checkpoint
    there (a run stopped, timed out or failed later measured it all the same), the end only the results that
    trained to the end (status ok)."""
    metric, fractions = config.search.metric, hurdle_fractions(config.search.hurdles)
    rows, at_hurdles = [], [[] for _ in fractions]
    finals = []
    for result in results:
        row = []
        for i, fraction in enumerate(fractions):
            checkpoint = _checkpoint_at(result, fraction)
            value = checkpoint.get(metric) if checkpoint else None
            row.append(value if _finite(value) else None)
            if row[-1] is not None:
                at_hurdles[i].append((value, checkpoint["step"], checkpoint["train_seconds"]))
        final = result.get(metric) if result.get("status") == "ok" else None
        row.append(final if _finite(final) else None)
        if row[-1] is not None:
            finals.append((final, result["steps"], result["train_seconds"]))
        rows.append(tuple(row))
    hurdles = []
    for i, fraction in enumerate(fractions):
        pairs = [(row[i], row[-1]) for row in rows if row[i] is not None and row[-1] is not None]
        correlation = stats.spearman([a for a, _ in pairs], [b for _, b in pairs])
        hurdles.append(_point(fraction, at_hurdles[i], correlation))
    hashes = [r.get("canonical_hash") for r in results if r.get("canonical_hash")]
    errors = tuple(f"{r.get('status')}: {r.get('error') or ''}".strip() for r in results
                   if r.get("status") not in ("ok", "stopped"))
    return ProgramCalibration(program, hashes[0] if hashes else None, tuple(rows),
                              tuple(str(r.get("status")) for r in results), errors, tuple(hurdles),
                              _point(1.0, finals))


def summarize(results: Mapping[str, Sequence[dict]], config: Config,
              training_seeds: Sequence[int] = ()) -> Calibration:
    """The calibration of FitnessResult dicts grouped by program (see the module docstring)."""
    fractions = hurdle_fractions(config.search.hurdles)
    training = config.training
    return Calibration(config.search.metric, training.budget_kind, training.budget, training.warmup_steps,
                       tuple(training_seeds), fractions, expected_cost(fractions),
                       tuple(summarize_program(name, runs, config) for name, runs in results.items()))


def calibrate(config: Config, k: int = 8, executor=None,
              on_result: Callable[[str, int, dict], None] | None = None) -> Calibration:
    """Evaluate each seed program `k` times with training seeds training.seed + 1 ... + k and summarize;
    `on_result(program, training_seed, result)` is called as each evaluation finishes."""
    from primer_search.program.seeds import load_seed_or_file

    if k < 2:
        raise ValueError(f"k: found {k}, expected at least 2 evaluations per program (a standard deviation needs "
                         f"two)")
    names = list(dict.fromkeys(config.search.seeds))
    programs = [load_seed_or_file(name) for name in names]
    fractions = list(hurdle_fractions(config.search.hurdles))
    seeds = [config.training.seed + i for i in range(1, k + 1)]
    configs = [config.replace(training={"checkpoints": fractions, "seed": seed}) for seed in seeds]
    jobs = [(dna, trial_config) for dna in programs for trial_config in configs]

    def report(index: int, result: dict) -> None:
        if on_result is not None:
            on_result(names[index // k], seeds[index % k], result)

    results = run_evaluations(config.search, jobs, executor, report)
    grouped = {name: results[i * k:(i + 1) * k] for i, name in enumerate(names)}
    return summarize(grouped, config, seeds)


# -- the promotion rule ------------------------------------------------------------------------------------------

PROMOTION_ALPHA = 0.001


def promotion_margin(sigma: float, seed_runs: int, program_runs: int = 1, alpha: float = PROMOTION_ALPHA) -> float:
    """How far below the seed's mean a program's mean must fall for the run to call it better than the seed: a
    one-sided t rule at level `alpha` with the seed's degrees of freedom,
    t_(1 - alpha, k - 1) x sigma x sqrt(1 / n + 1 / k), k the seed's evaluations and n the program's. At the default
    level a program equal to the seed passes it about once in a thousand evaluations (bench/null_rate.py)."""
    if seed_runs < 2 or program_runs < 1:
        raise ValueError(f"promotion_margin: found {seed_runs} seed and {program_runs} program evaluations, "
                         f"expected at least 2 and 1")
    return stats.t_quantile(1 - alpha, seed_runs - 1) * sigma * math.sqrt(1 / program_runs + 1 / seed_runs)
