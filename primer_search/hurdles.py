"""Halving hurdles (So et al. 2021, appendix A.3): stop weak candidates early, at points of equal compute.

With H hurdles at budget fractions (2^i - 1) / (2^(H+1) - 1), i = 1..H (for H = 4: 1/31, 3/31, 7/31, 15/31),
each band between consecutive hurdles costs the same expected compute when half the candidates pass each hurdle.
At hurdle i a candidate goes on only if its fitness there is in the better half of the fitnesses recorded at that
hurdle by the most recent `window` individuals (lower is better: at most their median). Until `MIN_RECORDS`
fitnesses are recorded at a hurdle, everyone passes it. A candidate that stops keeps the fitness it had there.

The threshold a trial is held to is computed when the trial is submitted (workers do not talk back to the
controller mid-training), so in an asynchronous search it lags by the records of the trials in flight.
"""

from __future__ import annotations

import statistics
from typing import Sequence

MIN_RECORDS = 4


def hurdle_fractions(count: int) -> tuple[float, ...]:
    """The budget fractions of `count` hurdles."""
    total = 2 ** (count + 1) - 1
    return tuple((2 ** i - 1) / total for i in range(1, count + 1))


def threshold(recent: Sequence[float]) -> float | None:
    """The fitness a candidate must not exceed at a hurdle, from the recent records there (None: no hurdle yet)."""
    if len(recent) < MIN_RECORDS:
        return None
    return statistics.median(recent)


def passes(fitness: float, limit: float | None) -> bool:
    return limit is None or fitness <= limit


def compute_saved(stopped_fractions: Sequence[float], completed: int) -> float:
    """The share of training compute the hurdles saved: budget not spent by stopped trials over budget without
    hurdles, given the fractions at which trials stopped and the number of trials trained to the end."""
    trials = len(stopped_fractions) + completed
    return sum(1.0 - f for f in stopped_fractions) / trials if trials else 0.0
