"""The arithmetic of a retrain report: per program and size, the final quality over seeds, the speedup factor
against each baseline with its confidence interval, and a power law of quality against training compute.

The speedup factor is the confirmation's (`primer_search.search.speedup`, So et al. 2021 section 4): the training
FLOPs the baseline needs to reach a quality over the FLOPs the program needs, at the quality both reach (the
baseline's final one, or the program's where the program ends worse: a factor below 1), paired by training seed at
each size, averaged on the log scale (geometric mean and t interval of the log factors). The power law is the
paper's Figure 1 fit, quality = A x compute^b, by least squares on logarithms over the sizes (each size's mean final
quality against its mean training FLOPs); b < 0, steeper is better.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from primer_search.search import stats
from primer_search.search.speedup import speedup_factor

LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished (or failed) retrain job, as the report reads it."""

    program: str
    baseline: bool
    size: int
    seed: int
    parameter_count: int
    result: dict                      # retrain's result.json: status, curve, steps, ...

    @property
    def ok(self) -> bool:
        return self.result.get("status") == "ok" and bool(self.result.get("curve"))


@dataclasses.dataclass(frozen=True)
class Speedup:
    baseline: str
    mean: float | None                # geometric mean of the paired factors
    interval: tuple[float, float] | None   # LEVEL t interval of their logarithms, exponentiated
    pairs: int                        # seeds where both trained
    lower_bounds: int                 # pairs where the program was better from its first point
    upper_bounds: int                 # pairs where the baseline was better than the program's final from its first


@dataclasses.dataclass(frozen=True)
class SizeResult:
    program: str
    size: int
    parameter_count: int
    seeds: int                        # finished runs
    failed: int
    compute: float | None             # mean training FLOPs of the whole run
    final_mean: float | None
    final_ci: float | None
    speedups: tuple[Speedup, ...]


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    program: str
    coefficient: float                # A
    exponent: float                   # b
    r_squared: float | None
    sizes: int


def speedup(program: Sequence[Run], baseline: Sequence[Run], name: str, metric: str) -> Speedup:
    """The program's speedup over the baseline at one size, paired by training seed."""
    base = {run.seed: run for run in baseline if run.ok}
    factors = [speedup_factor(base[run.seed].result["curve"], run.result["curve"], metric)
               for run in program if run.ok and run.seed in base]
    values = [f.value for f in factors]
    centre, interval = stats.geometric_interval(values, LEVEL)
    return Speedup(name, centre, interval, len(values), sum(f.kind == "lower_bound" for f in factors),
                   sum(f.kind == "upper_bound" for f in factors))


def size_result(program: str, size: int, runs: Sequence[Run], baselines: dict[str, Sequence[Run]],
                metric: str) -> SizeResult:
    ok = [run for run in runs if run.ok]
    finals = [run.result["curve"][-1][metric] for run in ok]
    computes = [run.result["curve"][-1]["flops"] for run in ok]
    speedups = tuple(speedup(runs, base, name, metric) for name, base in baselines.items() if name != program)
    return SizeResult(program, size, runs[0].parameter_count, len(ok), len(runs) - len(ok),
                      stats.mean(computes) if ok else None, stats.mean(finals) if ok else None,
                      stats.confidence_half_width(finals, LEVEL) if len(ok) > 1 else None, speedups)


MIN_COMPUTE_SPAN = 1.5    # a fit needs sizes whose training compute differs at least this much (max / min)


def power_law(results: Sequence[SizeResult]) -> PowerLaw | None:
    """quality = A x compute^b over the sizes with a finished run (None for fewer than 2 sizes, or when their
    compute spans less than MIN_COMPUTE_SPAN: one FLOPs budget for every size leaves no slope to fit)."""
    points = [(math.log(r.compute), math.log(r.final_mean)) for r in results
              if r.compute and r.final_mean and r.final_mean > 0]
    if len(points) < 2 or max(x for x, _ in points) - min(x for x, _ in points) < math.log(MIN_COMPUTE_SPAN):
        return None
    xs, ys = zip(*points)
    mx, my = stats.mean(xs), stats.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    total = sum((y - my) ** 2 for y in ys)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    return PowerLaw(results[0].program, math.exp(intercept), slope,
                    1 - residual / total if len(points) > 2 and total > 0 else None, len(points))


@dataclasses.dataclass(frozen=True)
class Report:
    metric: str
    sizes: tuple[SizeResult, ...]     # programs in order given, sizes ascending
    power_laws: tuple[PowerLaw, ...]


def summarize(runs: Sequence[Run], metric: str = "validation_loss") -> Report:
    programs = list(dict.fromkeys(run.program for run in runs))
    baselines = list(dict.fromkeys(run.program for run in runs if run.baseline))
    by = {}
    for run in runs:
        by.setdefault((run.program, run.size), []).append(run)
    sizes = sorted({run.size for run in runs})
    results, laws = [], []
    for program in programs:
        rows = [size_result(program, size, by[program, size],
                            {name: by.get((name, size), ()) for name in baselines}, metric)
                for size in sizes if (program, size) in by]
        results.extend(rows)
        law = power_law(rows)
        if law is not None:
            laws.append(law)
    return Report(metric, tuple(results), tuple(laws))
