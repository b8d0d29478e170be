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

from primer_search.search import hurdles
from primer_search.search.calibration import expected_cost
from primer_search.search.store import RunStore


def replay(history: list, window: int, run_seed: int, gain: float) -> list[bool]:
    """The verdicts on the children at one hurdle under `gain`, with the thresholds the controller would take from
    the records (`RunStore.hurdle_history`) before each."""
    verdicts: list[bool] = []
    for n, (_, parent, _, record) in enumerate(history):
        earlier = [r.fitness for _, _, seed, r in history[:n] if seed == run_seed and r.fitness is not None]
        limit = hurdles.threshold(earlier[-window:], hurdles.quantile(verdicts[-window:], gain))
        if parent is not None and limit is not None:
            verdicts.append(hurdles.passes(record.fitness, limit))
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=pathlib.Path)
    parser.add_argument("--gains", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    args = parser.parse_args()
    with RunStore.open(args.run_dir) as store:
        search, run_seed = store.config["search"], store.config["training"]["seed"]
        history = [store.hurdle_history(i) for i in range(search["hurdles"])]
    recorded = [[r.passed for _, parent, _, r in at if parent is not None and r.threshold is not None]
                for at in history]
    fractions = hurdles.hurdle_fractions(len(history))

    def line(name: str, verdicts: list[list[bool]]) -> str:
        rates = [sum(v) / len(v) if v else 1.0 for v in verdicts]
        shown = ", ".join(f"{r:.0%} of {len(v)}" for r, v in zip(rates, verdicts))
        return f"{name:<18} {shown}  -> {1 / expected_cost(fractions, rates):.2f}x compute saved per child"

    print(f"{args.run_dir}: {len(history)} hurdles, window {search['hurdle_window']}, "
          f"recorded gain {search.get('hurdle_gain', 0.0):g}")
    print(line("recorded", recorded))
    for gain in args.gains:
        print(line(f"replayed gain {gain:g}", [replay(at, hurdles.window_at(i, search["hurdle_window"]), run_seed, gain)
                                                for i, at in enumerate(history)]))


if __name__ == "__main__":
    main()
