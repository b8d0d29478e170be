"""Rediscovery: from the Transformer seed, does a laptop-scale search find Primer's changes and a better block?

Runs the discovery config (search_configs/discovery.yaml) from the Transformer seed for at most --hours of search
(accumulated across restarts: the run store keeps the search time, so a killed benchmark resumes) and prints its
run summary (compute saved by hurdles and the cache, hurdle pass rates, the seed's noise), then the paper's
protocol (`primer-search confirm`): the top --top programs and the seed retrained with --seeds training seeds at
--budget-multiplier x the search budget on the test split the search never ranked on. Prints, for each confirmed
program, whether it holds squared ReLU and a depthwise convolution after the Q, K and V projections, its mean and
95% interval, its speedup factor against the Transformer (So et al. 2021, section 4) and the paired t-test's p; the
last line is the best confirmed program's speedup factor (target: >= 1.2 at p < 0.01 for 2 of 3 search seeds). The
best is chosen on the trainings it is then tested on, so the line before it multiplies its p by --top (Bonferroni).
`--mode random` and `--mode hill_climb` run the baselines at the same budget; when the evolution run of the same
search seed is confirmed, a baseline copies its trainings of the programs both runs confirm (the seed's; `confirm
--reuse`) and prints its best against the evolution's best, paired by training seed (`confirm --against`; a factor
below 1: the baseline's best is worse). `--reuse RUN_DIR` names a run of the same setting whose seed evaluations the
search copies instead of training them (`primer-search run --reuse`) and whose confirmed trainings `confirm` copies.

    python bench/rediscovery.py --search-seed N [--mode evolution|random|hill_climb] [--hours 2] [--top 5]
                                [--seeds 5] [--budget-multiplier 1] [--config search_configs/discovery.yaml]
                                [--run-dir bench/results/rediscovery-CONFIG-MODE-N] [--against RUN_DIR]
                                [--reuse RUN_DIR ...]
                                [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.config import config_from_dict  # noqa: E402
from primer_search.program.dna import DNA  # noqa: E402
from primer_search.search.confirmation import compare_best, confirm  # noqa: E402
from primer_search.search.controller import Search  # noqa: E402
from primer_search.search.reports import best_against_text, p_text, speedup_text, status_text  # noqa: E402
from primer_search.search.status import SEARCH_SECONDS, read_status  # noqa: E402
from primer_search.search.store import RunStore  # noqa: E402
from bench_cli import CONFIGS, RESULTS, load_config_or_exit  # noqa: E402
from reachability import detect  # noqa: E402


class TimeUp(Exception):
    pass


def search_for(run_dir: pathlib.Path, config, hours: float, reuse=()) -> None:
    """Start or resume the search and stop it once its controllers have run it for `hours` in all. A run directory
    holding a run under other settings (another --config, --mode, --search-seed or --set) is refused, not resumed."""
    if (run_dir / "run.sqlite").exists():
        with RunStore.open(run_dir) as store:
            stored = config_from_dict(store.config).to_dict()
        wanted = config.to_dict()
        differ = [f"{section}.{key}" for section in wanted for key in wanted[section]
                  if stored[section].get(key) != wanted[section][key]]
        if differ:
            print(f"{run_dir}: holds a run with other {', '.join(differ)}; expected --run-dir naming a new "
                  f"directory, or the settings it was run with", file=sys.stderr)
            raise SystemExit(2)
    exists = (run_dir / "run.sqlite").exists()
    search = Search.resume(run_dir) if exists else Search.start(config, run_dir, reuse=reuse)

    def on_progress(status) -> None:
        elapsed = search.store.meta_get(SEARCH_SECONDS, 0.0)
        print(f"{elapsed / 60:6.1f} min  {status.line()}", flush=True)
        if elapsed >= hours * 3600:
            raise TimeUp

    try:
        if search.store.meta_get(SEARCH_SECONDS, 0.0) < hours * 3600:
            search.run(on_progress=on_progress, progress_every=30.0)
    except TimeUp:
        pass
    finally:
        search.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search-seed", type=int, required=True)
    parser.add_argument("--mode", default="evolution", choices=("evolution", "random", "hill_climb"))
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget-multiplier", type=float, default=1.0)
    parser.add_argument("--config", default=str(CONFIGS / "discovery.yaml"))
    parser.add_argument("--run-dir")
    parser.add_argument("--against", help="a confirmed run to compare the best program with (default for a "
                                          "baseline: the evolution run of the same config and search seed)")
    parser.add_argument("--reuse", action="append", default=[], help="a run of the same setting to copy the seed's "
                                                                     "evaluations and confirmed trainings from")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    default = str(RESULTS / f"rediscovery-{pathlib.Path(args.config).stem}-{args.mode}-{args.search_seed}")
    run_dir = pathlib.Path(args.run_dir or default)          # a directory per config: two configs' runs never mix
    config = load_config_or_exit(parser, args.config, [f"search.seed={args.search_seed}", f"search.mode={args.mode}",
                                                       *args.overrides])
    search_for(run_dir, config, args.hours, args.reuse)
    with RunStore.open(run_dir) as store:
        print(f"searched {store.meta_get(SEARCH_SECONDS, 0.0) / 3600:.2f} h: {store.counts()['done']} individuals")
        print(status_text(read_status(store)), flush=True)       # compute saved, hurdle passes, noise
    against = args.against or (default.replace(f"-{args.mode}-", "-evolution-") if args.mode != "evolution" else None)
    if against and not (pathlib.Path(against) / "run.sqlite").exists():
        against = None                                                    # not run (or not here): nothing to compare
    reuse = args.reuse + ([against] if against else [])        # the seed trains alike in each: copied, not repeated
    result = confirm(run_dir, k=args.top, seeds=args.seeds, budget_multiplier=args.budget_multiplier,
                     on_result=lambda i, s, r: print(f"  confirm #{i} seed {s}: {r['status']} "
                                                     f"{r.get('fitness') or float('nan'):.4f}", flush=True),
                     reuse=reuse)
    if result.copied:
        print(f"copied {result.copied} trainings of the same programs from {', '.join(reuse)}")
    with RunStore.open(run_dir) as store:
        print(f"\nconfirmed on {result.test_split}, {len(result.training_seeds)} training seeds, "
              f"{result.budget:.3g} {result.budget_kind}")
        print(f"{'id':>5} {'role':5} {'sqReLU':6} {'MDHA':5} {'mean':>8} {'95% CI':>7} {'p':>8}  speedup [95% CI]")
        best = None
        for program in result.programs:
            squared, mdha = detect(DNA.from_dict(store.individual(program.individual_id).dna))
            comparison = program.comparisons[0] if program.comparisons else None
            print(f"{program.individual_id:5} {program.role:5} {'yes' if squared else '-':6} "
                  f"{'yes' if mdha else '-':5} {program.mean or float('nan'):8.4f} {program.ci or float('nan'):7.4f} "
                  f"{p_text(comparison.p_value) if comparison else '-':>8}  "
                  f"{speedup_text(comparison) if comparison else '-'}")
            if program.role == "top" and program.mean is not None and (best is None or program.mean < best.mean):
                best = program
    top = [p for p in result.programs if p.role == "top"]
    with RunStore.open(run_dir) as store:
        found = [detect(DNA.from_dict(store.individual(p.individual_id).dna)) for p in top]
    print(f"squared ReLU among the top {len(top)}: {any(s for s, _ in found)}; depthwise convolution after Q, K and V: "
          f"{any(m for _, m in found)}")
    if against:                                                            # a baseline against the search
        try:
            print(best_against_text(run_dir, against, *compare_best(result, run_dir, against)))
        except ValueError as err:
            print(f"not compared: {err}")
    comparison = best.comparisons[0] if best and best.comparisons else None
    if comparison is None or comparison.speedup_mean is None:
        print("confirmed speedup factor of the best program against the Transformer: not measured")
        return
    if comparison.p_value is not None:    # the best is chosen on the trainings it is tested on: a choice of len(top)
        print(f"(the best of {len(top)} chosen on these trainings: p x {len(top)} = "
              f"{min(1.0, comparison.p_value * len(top)):.2g}, Bonferroni for the choice)")
    print(f"confirmed speedup factor of the best program (#{best.individual_id}) against the Transformer "
          f"({args.mode}, search seed {args.search_seed}): {speedup_text(comparison)}x (geometric mean [95% CI]), "
          f"p = {p_text(comparison.p_value)}")


if __name__ == "__main__":
    main()
