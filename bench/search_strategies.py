"""Search strategies on a simulated fitness: which mode finds more, over many search seeds, at which budget?

Runs the discovery config's search (hurdles, cache, calibration and all, in process) with every trial answered by
a simulated landscape (`primer_search.search.simulation`: a model of mutation effects and training noise, fitted
to the discovery searches' measured noise and single-edit changes) instead of training. For each search seed,
which is also the landscape's seed, so the modes meet the same landscape, and each --individuals budget, it runs
every --modes setting and takes from the run's top 5 by search fitness the program of best true quality: what
`confirm` of the top 5 would pick with many training seeds. Prints each setting's mean true gain on the seed with
its 95% interval, and each setting against the first, paired by landscape: the mean difference, its interval, the
paired t-test's p and wins/ties/losses. A mode is a `search.mode`, optionally with settings: `evolution:
population_size=12,tournament_size=4`. The last line is the first setting against the last at the last budget.
What it shows holds for the model, not for blocks; bench/rediscovery.py measures the real thing.

    python bench/search_strategies.py [--search-seeds 10] [--individuals 300 1000]
                                      [--modes evolution hill_climb random] [--config search_configs/discovery.yaml]
                                      [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.config import load_config  # noqa: E402
from primer_search.program.dna import DNA  # noqa: E402
from primer_search.program.seeds import load_seed_or_file  # noqa: E402
from primer_search.search import stats  # noqa: E402
from primer_search.search.controller import Search  # noqa: E402
from primer_search.search.simulation import Landscape, SimulatedExecutor  # noqa: E402
from bench_cli import CONFIGS, load_config_or_exit  # noqa: E402


def mode_overrides(mode: str) -> list[str]:
    """`evolution:population_size=12,tournament_size=4` -> search.mode and search.* overrides."""
    name, _, settings = mode.partition(":")
    return [f"search.mode={name}"] + [f"search.{s.strip()}" for s in settings.split(",") if s.strip()]


def true_gain(config, landscape: Landscape, top: int = 5):
    """Search `config` on `landscape` in a temporary run directory; the best true gain on the seed (nats) among
    its top `top` programs by search fitness, and the run's final status."""
    with tempfile.TemporaryDirectory() as tmp:
        search = Search.start(config, os.path.join(tmp, "run"))
        try:
            status = search.run(executor=SimulatedExecutor(landscape, answer=search.answer), progress_every=0)
            qualities = [landscape.quality(DNA.from_dict(row.dna)) for row in search.store.top(top)]
        finally:
            search.close()
    return landscape.seed_quality - min(qualities, default=landscape.seed_quality), status


def interval(values: list[float]) -> str:
    half = stats.confidence_half_width(values)
    return f"{stats.mean(values):+.4f}" + (f" ± {half:.4f}" if half is not None else "")


def compare(name: str, gains: list[float], reference: list[float]) -> str:
    diffs = [a - b for a, b in zip(gains, reference)]
    test = stats.paired_t_test(gains, reference)
    wins = sum(d > 1e-12 for d in diffs), sum(abs(d) <= 1e-12 for d in diffs), sum(d < -1e-12 for d in diffs)
    p = f"p {test[1]:.2g}" if test is not None else "p -"
    return f"{name}: {interval(diffs)} nats, {p}, wins/ties/losses {wins[0]}/{wins[1]}/{wins[2]}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIGS / "discovery.yaml"))
    parser.add_argument("--search-seeds", type=int, default=10)
    parser.add_argument("--individuals", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--modes", nargs="+", default=["evolution", "hill_climb", "random"])
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    base = ["search.executor=in_process", "search.fec=false", *args.overrides]
    seed_program = load_seed_or_file(load_config_or_exit(parser, args.config, base).search.seeds[0])
    configs = {(mode, n, seed): load_config(args.config, base + mode_overrides(mode) + [
        f"search.num_individuals={n}", f"search.seed={seed}"])
        for mode in args.modes for n in args.individuals for seed in range(args.search_seeds)}
    gains: dict = {}
    for n in args.individuals:
        for seed in range(args.search_seeds):
            landscape = Landscape(seed_program, seed=seed)
            for mode in args.modes:
                start = time.perf_counter()
                gains[mode, n, seed], status = true_gain(configs[mode, n, seed], landscape)
                failed = sum(k for s, k in status.by_status.items() if s not in ("ok", "stopped"))
                print(f"  {n} individuals, landscape {seed}, {mode}: gain {gains[mode, n, seed]:.4f} "
                      f"({status.done} done, {failed} failed, compute saved {status.compute_factor:.2f}x, "
                      f"{time.perf_counter() - start:.0f} s)", flush=True)
    line = ""
    for n in args.individuals:
        print(f"\n{n} individuals, {args.search_seeds} landscapes: best true gain on the seed among the top 5 "
              f"(mean, 95% CI)")
        series = {mode: [gains[mode, n, s] for s in range(args.search_seeds)] for mode in args.modes}
        for mode, values in series.items():
            print(f"  {mode:40s} {interval(values)} nats")
        first = args.modes[0]
        for mode in args.modes[1:]:
            line = compare(f"{first} - {mode} at {n} individuals", series[first], series[mode])
            print("  " + line)
    print(line)


if __name__ == "__main__":
    main()
