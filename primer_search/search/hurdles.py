"""Halving hurdles (So et al. 2021, appendix A.3): stop weak candidates early, at points of equal compute.

With H hurdles at budget fractions (2^i - 1) / (2^(H+1) - 1), i = 1..H (for H = 4: 1/31, 3/31, 7/31, 15/31),
each band between consecutive hurdles costs the same expected compute when half the candidates pass each hurdle.
At hurdle i a candidate goes on only if its fitness there is in the better half of the most recent fitnesses
recorded at that hurdle by trainings with the run's training seed (lower is better: at most their median; under
common random numbers a training with another seed, a calibration run or a re-evaluation, is not comparable draw
for draw). The first hurdle looks at the last `window` records, each next one at half as many (`window_at`): as
half pass each hurdle, every hurdle then looks back over the same stretch of the search. With one window for all,
a later hurdle, where records arrive 2, 4, 8 times slower, would compare with children of much older parents;
as the population improves, more than half would pass.
Until `MIN_RECORDS` fitnesses are recorded at a hurdle, everyone passes it. A candidate that stops keeps the
fitness it had there.

Even so, an improving population passes more than half (a child is compared with its parents' generation), and each
extra pass costs compute. `search.hurdle_gain` g > 0 steers each hurdle to half (`quantile`): a candidate must be
within the quantile 0.5 - g x (passes - judged / 2) / window of the recent records, clamped to [0.1, 0.9], where
passes and judged count every verdict at that hurdle so far. The excess of passes over half accumulates, so the
quantile moves until the hurdle has passed half of all it judged (integral control; steering by the recent pass
rate alone settles above half while the population keeps improving). g = 0 is the median.

The threshold is taken when a trial reaches the hurdle, from every record so far (the search controller answers
the trial's question, `primer_search.search.controller`). Hurdles must fall after the learning-rate warmup and after a
minimum number of steps (`placement_error`): earlier, losses mostly measure the initialization.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

MIN_RECORDS = 4
QUANTILE_BOUNDS = (0.1, 0.9)     # a pass-rate controller never asks for less than the best tenth, nor lets 9/10 by


def hurdle_fractions(count: int) -> tuple[float, ...]:
    """The budget fractions of `count` hurdles."""
    total = 2 ** (count + 1) - 1
    return tuple((2 ** i - 1) / total for i in range(1, count + 1))


def hurdle_steps(count: int, total_steps: float) -> list[int]:
    """The training step at which each hurdle falls in a run of `total_steps` (the first step whose budget
    fraction reaches the hurdle's)."""
    return [max(1, math.ceil(f * total_steps - 1e-9)) for f in hurdle_fractions(count)]


def placement_error(count: int, total_steps: float, warmup_steps: int, min_steps: int) -> str | None:
    """Why hurdles at these steps cannot rank programs, or None: each must fall at or after both the warmup and
    `min_steps`."""
    steps = hurdle_steps(count, total_steps)
    floor = max(warmup_steps, min_steps)
    if not steps or steps[0] >= floor:
        return None
    fractions = ", ".join(f"{f:.3g}" for f in hurdle_fractions(count))
    early = [s for s in steps if s < floor]
    return (f"search.hurdles: {count} hurdles at budget fractions {fractions} of {total_steps:,.0f} training steps "
            f"fall at steps {', '.join(map(str, steps))}; {len(early)} before step {floor} (training.warmup_steps "
            f"{warmup_steps}, search.min_hurdle_steps {min_steps}); expected a budget of at least "
            f"{math.ceil(floor / hurdle_fractions(count)[0]):,} steps, a shorter warmup or fewer hurdles")


def window_at(hurdle: int, window: int) -> int:
    """How many recent records the 0-based `hurdle` compares with: `window` at the first, half as many at each
    next one, never fewer than `MIN_RECORDS`."""
    return max(MIN_RECORDS, math.ceil(window / 2 ** hurdle))


def quantile(passed: int, judged: int, window: int, gain: float) -> float:
    """The quantile of the recent records a candidate must be within: the median, moved by `gain` x the excess of
    the hurdle's passes over half of the `judged` candidates so far, per `window` (none until `MIN_RECORDS`
    verdicts)."""
    if gain == 0 or judged < MIN_RECORDS:
        return 0.5
    low, high = QUANTILE_BOUNDS
    return min(high, max(low, 0.5 - gain * (passed - judged / 2) / window))


def threshold(recent: Sequence[float], q: float = 0.5) -> float | None:
    """The fitness a candidate must not exceed at a hurdle: the `q` quantile of the recent records there, linearly
    interpolated (None: fewer than `MIN_RECORDS`, no hurdle yet)."""
    if len(recent) < MIN_RECORDS:
        return None
    return float(np.quantile(recent, q))


def limit(recent: Sequence[float], tally: tuple[int, int], window: int, gain: float) -> float | None:
    """The threshold the controller takes at a hurdle from its recent records and its (passed, judged) tally."""
    return threshold(recent, quantile(*tally, window, gain))


def passes(fitness: float, limit: float | None) -> bool:
    return limit is None or fitness <= limit


def compute_saved(stopped_fractions: Sequence[float], completed: int) -> float:
    """The share of training compute the hurdles saved: budget not spent by stopped trials over budget without
    hurdles, given the fractions at which trials stopped and the number of trials trained to the end."""
    trials = len(stopped_fractions) + completed
    return sum(1.0 - f for f in stopped_fractions) / trials if trials else 0.0
