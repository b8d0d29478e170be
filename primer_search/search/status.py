"""A search's progress from its run store: what `primer-search status` and the progress line show."""

from __future__ import annotations

import dataclasses
import time

from primer_search.config import config_from_dict
from primer_search.search import hurdles
from primer_search.search.store import MEASURED, RunStore


@dataclasses.dataclass
class Status:
    done: int
    in_flight: int
    target: int
    by_status: dict
    best: tuple[int, float] | None           # (id, fitness)
    evaluations_per_hour: float
    cache_hits: int
    hurdle_stops: int
    hurdle_compute_saved: float              # share of training compute
    compute_factor: float = 1.0              # individuals per full training budget spent (hurdles and cache)
    children_factor: tuple[float, int, int] | None = None   # (factor, children, seed evaluations): the same over
                                             # the children alone, the seed's (calibration) evaluations aside
    trained_factor: tuple[float, int] | None = None   # (factor, children): children that trained (ok or stopped)
                                             # per full budget all children spent; an invalid or quickly diverging
                                             # child costs almost nothing, so it does not count as a saving here
    hurdle_passes: tuple[tuple[int, int], ...] = ()   # per hurdle, (children that reached it, passed it)
    noise: tuple[float, int] | None = None   # the first seed's final metric: (standard deviation, evaluations)
    improvements: int | None = None          # programs better than the seed beyond the promotion margin
    compared: int | None = None              # programs (children with a finished evaluation) compared
    copied: int = 0                          # seed evaluations copied from other runs (no compute spent here)

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.done if self.done else 0.0

    def line(self) -> str:
        failed = sum(n for s, n in self.by_status.items() if s not in MEASURED)
        best = f"{self.best[1]:.4f} (#{self.best[0]})" if self.best else "-"
        return (f"search: done {self.done}/{self.target}  in flight {self.in_flight}  failed {failed}  "
                f"best {best}  {self.evaluations_per_hour:.0f} evals/h  cache hits {self.cache_hits}  "
                f"hurdle stops {self.hurdle_stops} (saved {self.hurdle_compute_saved:.0%})  "
                f"compute saved {self.compute_factor:.1f}x"
                + (f"  noise {self.noise[0]:.4f} ({self.noise[1]} seeds)  better than the seed "
                   f"{self.improvements}" if self.noise else ""))


SEARCH_SECONDS = "search_seconds"   # store meta: the time controllers have spent running the search, summed
SEARCH_CLOCK_EVERY = 10.0           # seconds between a running controller's additions to it


def read_status(store: RunStore, since: float | None = None, done_before: int = 0) -> Status:
    """The status of a run from its store (works while a controller runs). The evaluation rate is over the time
    since `since` (a controller's start: its own evaluations), else over the time controllers ran the search
    (a run resumed a day later is not rated by the day it stood still)."""
    counts = store.counts()
    config = config_from_dict(store.config)
    top = store.top(1)
    if since is not None:
        elapsed = time.time() - since
    else:
        elapsed = store.meta_get(SEARCH_SECONDS) or time.time() - store.meta_get("created_at")
    rate = (counts["done"] - done_before) / elapsed * 3600 if elapsed > 0 else 0.0
    completed = store.completed()
    trained = sum(1 for row in completed if row.status == "ok" and _trained_here(row))
    spent = _spent(completed)
    children = [row for row in completed if row.parent_id is not None]
    children_spent = _spent(children)
    trained_children = sum(1 for row in children if row.status in MEASURED)
    calibration = store.meta_get("calibration")
    final = calibration["programs"][0]["final"] if calibration else None
    improvements, compared = (_improvements(completed, final, config.search.metric)
                              if final and final["std"] is not None else (None, None))
    return Status(done=counts["done"], in_flight=counts["proposed"] - counts["done"],
                  target=config.search.num_individuals, by_status=counts["by_status"],
                  best=(top[0].id, top[0].fitness) if top else None, evaluations_per_hour=rate,
                  cache_hits=counts["cache_hits"], hurdle_stops=counts["hurdle_stops"],
                  hurdle_compute_saved=hurdles.compute_saved(store.stopped_fractions(), trained),
                  compute_factor=counts["done"] / spent if spent > 0 else 1.0,
                  hurdle_passes=_hurdle_passes(children),
                  children_factor=((len(children) / children_spent, len(children), len(completed) - len(children))
                                   if children_spent > 0 else None),
                  trained_factor=((trained_children / children_spent, trained_children)
                                  if children_spent > 0 else None),
                  noise=(final["std"], final["runs"]) if final and final["std"] is not None else None,
                  improvements=improvements, compared=compared,
                  copied=sum(1 for row in completed if row.attempts == 0))


def _hurdle_passes(children) -> tuple[tuple[int, int], ...]:
    """Per hurdle, how many of the trained children reached it and how many of those passed it."""
    counts: dict[int, list[int]] = {}
    for row in children:
        for record in row.hurdles if _trained_here(row) else ():
            reached_passed = counts.setdefault(record.hurdle, [0, 0])
            reached_passed[0] += 1
            reached_passed[1] += record.passed
    return tuple(tuple(counts[h]) for h in sorted(counts))


def _trained_here(row) -> bool:
    """Whether the row's result is its own training in this run: not a cache hit, nor a seed evaluation copied
    from another run (recorded with 0 attempts)."""
    return row.cached_from is None and row.attempts != 0


def _spent(rows) -> float:
    """Full training budgets the rows' own trainings in this run spent. A trial that died without reporting (a
    timeout, out of memory, a lost worker: no `budget_fraction`) counts as one whole budget: its spend is unknown."""
    return sum(row.metrics.get("budget_fraction", 1.0) or 0.0 for row in rows if _trained_here(row))


def _improvements(completed, final: dict, metric: str) -> tuple[int, int]:
    """(programs, among the children with their re-evaluations, whose mean fitness beats the seed's by more than
    the promotion margin for their number of evaluations (`calibration.promotion_margin`), programs compared).
    The calibration measures the metric; the seed's fitness adds its constant cost term under `objective:
    inference`."""
    from primer_search.search.calibration import promotion_margin

    seed = next((row for row in completed if row.parent_id is None and row.fitness is not None
                 and row.metrics.get(metric) is not None), None)
    seed_fitness = final["mean"] + (seed.fitness - seed.metrics[metric] if seed else 0.0)
    programs: dict[int, list] = {}                       # root -> [evaluations, latest mean]
    for row in completed:
        if row.parent_id is None or row.status != "ok" or row.fitness is None:
            continue
        program = programs.setdefault(row.repeat_of or row.id, [0, row.fitness])
        program[0] += row.cached_from is None
        program[1] = row.fitness
    measured = [(n, mean) for n, mean in programs.values() if n]
    return (sum(1 for n, mean in measured if mean < seed_fitness - promotion_margin(final["std"], final["runs"], n)),
            len(measured))
