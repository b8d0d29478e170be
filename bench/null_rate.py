"""The null rate: how often would a search call a program better than the seed when it is the seed itself?

Evaluates the seed of a config (default search_configs/discovery.yaml) --calibration + --null times with different
training seeds (`primer_search.search.calibration.calibrate`, on the project's executor). The first --calibration
evaluations play the run's calibration (`search.seed_evaluations`): their mean and standard deviation. Each of the
other --null evaluations is a program equivalent to the seed; it is counted when it beats the calibrated mean by
more than the search's promotion margin (`calibration.promotion_margin`, one evaluation). An evaluation that timed
out says more about the machine than about the seed: it is run again on the next call. Also printed: the
standard deviation at each hurdle and at the end, where the hurdles fall, the promotion rate the nulls' spread
implies under a normal model (50 nulls cannot count a rate near the rule's 0.001) and the gain one evaluation is
promoted for 80% of the time. The last line is the count (target: none). Every evaluation is written to --out as
it finishes (`result_file.py`: tied to the config), so a killed run resumes.

    python bench/null_rate.py [--config search_configs/discovery.yaml] [--calibration 8] [--null 50]
                              [--out bench/results/null_rate.json] [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
import math
import os
from statistics import NormalDist

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.program.seeds import load_seed_or_file  # noqa: E402
from primer_search.search import stats  # noqa: E402
from primer_search.search.calibration import promotion_margin, summarize  # noqa: E402
from primer_search.search.hurdles import hurdle_fractions  # noqa: E402
from primer_search.search.trial import run_evaluations  # noqa: E402
from bench_cli import CONFIGS, RESULTS, load_config_or_exit  # noqa: E402
from result_file import ResultFile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIGS / "discovery.yaml"))
    parser.add_argument("--calibration", type=int, default=8)
    parser.add_argument("--null", type=int, default=50)
    parser.add_argument("--out", default=str(RESULTS / "null_rate.json"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    config = load_config_or_exit(parser, args.config, args.overrides)
    name = config.search.seeds[0]
    seed = load_seed_or_file(name)
    store = ResultFile(args.out, config)
    done = {int(k): v for k, v in store.results.items() if v["status"] != "timeout"}
    training_seeds = [config.training.seed + i for i in range(args.calibration + args.null)]
    todo = [s for s in training_seeds if s not in done]
    fractions = list(hurdle_fractions(config.search.hurdles))
    jobs = [(seed, config.replace(training={"checkpoints": fractions, "seed": s})) for s in todo]
    print(f"{name}: {len(training_seeds)} evaluations, {len(done)} already in {args.out}", flush=True)

    def record(index: int, result: dict) -> None:
        done[todo[index]] = result
        store.results = {str(k): v for k, v in sorted(done.items())}
        store.save()
        print(f"  training seed {todo[index]}: {result['status']} {result.get('fitness') or float('nan'):.4f}",
              flush=True)

    if jobs:
        run_evaluations(config.search, jobs, None, record)
    calibration = summarize({name: [done[s] for s in training_seeds[:args.calibration]]}, config,
                            training_seeds[:args.calibration])
    everything = summarize({name: [done[s] for s in training_seeds]}, config, training_seeds).programs[0]
    for point in (*everything.hurdles, everything.final):
        print(f"fraction {point.fraction:.3f}: step {point.step or float('nan'):.0f}, mean "
              f"{point.mean or float('nan'):.4f}, standard deviation {point.std or float('nan'):.4f} "
              f"({point.runs} runs)")
    final = calibration.programs[0].final
    margin = promotion_margin(final.std, final.runs)
    nulls = [done[s] for s in training_seeds[args.calibration:]]
    values = [r[config.search.metric] for r in nulls if r["status"] == "ok"]     # what the calibration measures
    promoted = [v for v in values if v < final.mean - margin]
    spread = stats.stdev(values)
    # 50 nulls cannot show a rate near 0.001 by counting; under a normal model of the nulls, the rate they imply:
    implied = NormalDist().cdf((final.mean - margin - stats.mean(values)) / spread) if spread else float("nan")
    # a program better by this much is promoted by one evaluation 80% of the time (its draw against the seed's mean)
    found = margin + NormalDist().inv_cdf(0.8) * final.std * math.sqrt(1 + 1 / final.runs)
    print(f"calibration: mean {final.mean:.4f}, standard deviation {final.std:.4f} over {final.runs} runs; "
          f"promotion margin {margin:.4f}; null programs' spread {spread or float('nan'):.4f}, implied promotion "
          f"rate {implied:.1e}; a gain the promotion rule finds 80% of the time: {found:.4f}")
    print(f"null programs ranked above the seed beyond the promotion margin: {len(promoted)} of {len(values)}")


if __name__ == "__main__":
    main()
