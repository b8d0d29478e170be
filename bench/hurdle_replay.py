"""Hurdle rules replayed on a finished run: what would each `search.hurdle_gain` have passed, and saved?

Reads a run store (read-only) and replays, hurdle by hurdle in recording order, the fitnesses its trials recorded:
each child is judged as the controller would judge it under each --gains value (`hurdles.quantile` and
`hurdles.threshold` over the same windows and records). Prints each rule's pass rate at every hurdle, and the
compute saved per child that those rates imply (`calibration.expected_cost`) beside the rates the run recorded.
An estimate: a replayed child that passes where the run stopped it has no later records, so later hurdles are
judged on the children that reached them in the run, and a different rule would also have bred other children.
Use it to choose a gain before spending a search on it. The last line is the estimate for the last gain.

    python bench/hurdle_replay.py RUN_DIR [--gains 0 1 2 3]
"""

from __future__ import annotations

import argparse
import pathlib

from primer_search.config import config_from_dict
from primer_search.search import hurdles
from primer_search.search.calibration import expected_cost
from primer_search.search.store import RunStore


def replay(history: list, window: int, run_seed: int, gain: float) -> list[bool]:
    """The verdicts on the children at one hurdle under `gain`, with the thresholds the controller would take from
    the records before each (`RunStore.hurdle_history`; a fitness that was not finite, stored as None, fails)."""
    records: list[float] = []
    verdicts: list[bool] = []
    for _, parent, seed, record in history:
        limit = hurdles.limit(records[-window:], (sum(verdicts), len(verdicts)), window, gain)
        if parent is not None and limit is not None:
            verdicts.append(record.fitness is not None and hurdles.passes(record.fitness, limit))
        if seed == run_seed and record.fitness is not None:
            records.append(record.fitness)
    return verdicts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=pathlib.Path)
    parser.add_argument("--gains", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    args = parser.parse_args(argv)
    with RunStore.open(args.run_dir) as store:
        config = config_from_dict(store.config)
        history = [store.hurdle_history(i) for i in range(config.search.hurdles)]
    search = config.search
    recorded = [[r.passed for _, parent, _, r in at if parent is not None and r.threshold is not None]
                for at in history]
    fractions = hurdles.hurdle_fractions(search.hurdles)

    def line(name: str, verdicts: list[list[bool]]) -> str:
        rates = [sum(v) / len(v) if v else 1.0 for v in verdicts]
        shown = ", ".join(f"{r:.0%} of {len(v)}" for r, v in zip(rates, verdicts))
        return f"{name:<18} {shown}  -> {1 / expected_cost(fractions, rates):.2f}x compute saved per child"

    print(f"{args.run_dir}: {search.hurdles} hurdles, window {search.hurdle_window}, "
          f"recorded gain {search.hurdle_gain:g}")
    print(line("recorded", recorded))
    for gain in args.gains:
        print(line(f"replayed gain {gain:g}", [replay(at, hurdles.window_at(i, search.hurdle_window),
                                                      config.training.seed, gain) for i, at in enumerate(history)]))


if __name__ == "__main__":
    main()
