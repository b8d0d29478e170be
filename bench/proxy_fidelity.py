"""Proxy fidelity: does the discovery config's fitness rank programs as a 10x longer training does?

A panel of programs (the three seeds; the Transformer plus each Primer change alone; single-edit mutants of
Primer-EZ; random single-edit mutants of the Transformer, seeded; and any programs named with --program, such as a
search's winners, `RUN_DIR:ID` or `RUN_DIR:topK`, whose shortcuts are what a proxy most needs to rank right) is
scored twice under one config (default search_configs/discovery.yaml), with `--seeds` training seeds each: by its
search fitness (the full budget, as a candidate that passes every hurdle) and by training `--multiplier` times
longer. The long run also records its validation loss at the `--curve` fractions of its budget: the learning-rate
schedule does not depend on the budget, so these are the scores of shorter budgets, and show which budget would rank
as the long one does; with 1/multiplier among them, that point is the search fitness and no separate run is made.
Both read the config's validation split. A program that fails (invalid, diverged) ranks last. Prints each program's
mean scores, their spread across seeds, with several seeds each program's paired difference from the Transformer at
both budgets, each budget's Spearman rho against the long ranking and, as the last line, the search fitness's
(target >= 0.8) with its 95% interval (Fisher's z; the programs are a sample of what a search meets).

With `--long-results FILE` only the search budget is trained, under this run's config and `--set` options, and
ranked against the long runs recorded in FILE (a panel measured under the base config): a variant of the proxy
(another batch size or sequence length; `--proxy-metric late_validation_loss` scores it by the loss over the second
half of each window's positions) is judged at the cost of 1/multiplier of a panel, on the programs FILE holds.
The long curve's points below 1/multiplier (the hurdle fractions, say), and those some programs lack (added to
`--curve` after they were measured), are kept for offline analysis and left out of the table.

A program that computes the same function as an earlier one of the panel (the functional-equivalence fingerprint
matches, with `search.fec` on) is not trained: it is given that program's measurements, marked `copy_of`, as the
search's cache would give it that program's score.

Trials run on the project's executor (local Ray, `search.max_in_flight` at a time, no hurdles). Every finished
measurement is written to --out at once (`result_file.py`: keyed by program hash, budget and training seed, tied to
the config and multiplier), so a killed run picks up where it stopped; a measurement that ended in an out-of-memory
kill or a crash is taken again.

    python bench/proxy_fidelity.py [--config search_configs/discovery.yaml] [--multiplier 10] [--seeds 1]
                                   [--curve 0.1,0.2,0.3,0.5] [--mutants 14] [--ez-mutants 5] [--seed 0]
                                   [--program SPEC ...] [--only NAME ...]
                                   [--out bench/results/proxy_fidelity.json] [--set section.key=value ...]
                                   [--noise SEARCH,LONG] [--long-results FILE] [--proxy-metric NAME] [--report]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import pathlib
import random
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.config import MutationWeights  # noqa: E402
from primer_search.program.graph import canonical_hash  # noqa: E402
from primer_search.program.seeds import load_seed  # noqa: E402
from primer_search.retrain.jobs import load_programs  # noqa: E402
from primer_search.search.fec import FingerprintIndex, fingerprint  # noqa: E402
from primer_search.search.mutations import mutate  # noqa: E402
from primer_search.search.stats import (confidence_half_width, paired_t_test, spearman,  # noqa: E402
                                        spearman_interval)
from primer_search.search.store import REUSABLE_STATUSES  # noqa: E402
from primer_search.search.trial import run_evaluations  # noqa: E402
from bench_cli import CONFIGS, RESULTS, load_config_or_exit  # noqa: E402
from result_file import ResultFile  # noqa: E402


def without_last(dna, op: str):
    """The DNA with every subprogram that ends in `op` (after something else) cut before it."""
    subprograms = tuple(dataclasses.replace(sp, instructions=sp.instructions[:-1])
                        if len(sp.instructions) > 1 and sp.instructions[-1].op == op else sp
                        for sp in dna.subprograms)
    return dna.replace(subprograms=subprograms)


def panel(mutants: int, ez_mutants: int, seed: int, extra=()) -> dict[str, object]:
    """Programs by name, distinct by canonical hash: the named ones, then `extra` (specs as `retrain --program`
    takes them; measured early, as they are what a run is about), then the seeded mutants, which `extra` leaves
    unchanged."""
    ez = load_seed("primer_ez")
    programs = {name: load_seed(name) for name in ("transformer", "primer_ez", "primer")}
    programs["transformer+squared_relu"] = without_last(ez, "DCONV_3X1")
    programs["transformer+mdha"] = without_last(ez, "SQUARE")
    seen = {canonical_hash(dna) for dna in programs.values()}
    rng, mutated = random.Random(seed), {}
    for parent, count in (("primer_ez", ez_mutants), ("transformer", mutants)):
        made = 0
        while made < count:
            child, mutation = mutate(programs[parent], rng, MutationWeights(), 40)
            if mutation.child_hash in seen:
                continue
            seen.add(mutation.child_hash)
            made += 1
            mutated[f"{parent}/{mutation.kind}:{mutation.detail}"] = child
    for program in load_programs(extra, ()):
        if canonical_hash(program.dna) not in seen:
            seen.add(canonical_hash(program.dna))
            programs[program.label] = program.dna
    return {**programs, **mutated}


def fec_twins(programs: dict, width_units: int) -> dict[str, str]:
    """Each program whose fingerprint matches an earlier program's -> that program's name. Two such pairs of the
    panel, trained anyway (Primer and Primer-EZ; Primer-EZ with its variance floor at -0.34), agree to the seventh
    digit at every curve point: common random numbers give equal functions equal weights."""
    index, names, twins = FingerprintIndex(), list(programs), {}
    for i, name in enumerate(names):
        text = fingerprint(programs[name], width_units)
        twin = index.find(text)
        if twin is not None:
            twins[name] = names[twin]
        elif text is not None:
            index.add(i, text)
    return twins


def copy_twins(done: dict, twins: dict[str, str], key, kinds: list[str], seeds: list[int]) -> int:
    """Give each twin the reusable measurements of its program that it lacks; returns how many were copied."""
    copied = 0
    for name, twin in twins.items():
        for kind in kinds:
            for seed in seeds:
                source = done.get(key(twin, kind, seed))
                if key(name, kind, seed) not in done and source and source["status"] in REUSABLE_STATUSES:
                    done[key(name, kind, seed)] = {**source, "name": name, "copy_of": twin}
                    copied += 1
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIGS / "discovery.yaml"))
    parser.add_argument("--multiplier", type=float, default=10.0)
    parser.add_argument("--mutants", type=int, default=14)
    parser.add_argument("--ez-mutants", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the seed of the random mutants")
    parser.add_argument("--seeds", type=int, default=1,
                        help="training seeds per measurement: training.seed, training.seed + 1, ...")
    parser.add_argument("--curve", default="0.1,0.2,0.3,0.5",
                        help="fractions of the long budget where the long run's validation loss is also recorded")
    parser.add_argument("--program", action="append", default=[], dest="programs",
                        help="also rank this program: a seed name, DNA file, RUN_DIR:ID or RUN_DIR:topK (repeatable)")
    parser.add_argument("--only", action="append", default=[],
                        help="measure only the panel programs of this name (repeatable), e.g. more seeds for a few")
    parser.add_argument("--out", default=str(RESULTS / "proxy_fidelity.json"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--noise", type=_sigmas, default=None, metavar="SEARCH,LONG",
                        help="one evaluation's standard deviation at the search and the long budget (e.g. from "
                             "calibrate or bench/null_rate.py): also print the rho that a proxy ranking exactly as "
                             "the long training would show through that noise")
    parser.add_argument("--long-results", default=None, metavar="FILE",
                        help="train only the search budget, under this config and --set, and rank it against the "
                             "long runs in FILE (a panel's --out under the base config)")
    parser.add_argument("--proxy-metric", choices=("fitness", "late_validation_loss"), default="fitness",
                        help="the search budget's score: its fitness, or the validation loss over the second half "
                             "of each window's positions (recorded beside it)")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: report over the programs measured so far (beside a running panel too)")
    args = parser.parse_args()
    config = load_config_or_exit(parser, args.config, ["search.hurdles=0", *args.overrides])
    curve = tuple(sorted(float(f) for f in args.curve.split(",") if f.strip()))
    budgets = {"search": config.training.budget, "long": config.training.budget * args.multiplier}
    store = ResultFile(args.out, config, multiplier=args.multiplier)
    try:
        long_done = long_results(args.long_results, args.multiplier)
    except ValueError as err:
        parser.error(f"--long-results: {err}")
    done = store.results
    results = collections.ChainMap(done, long_done or {})     # a live view: this run's measurements first
    programs = panel(args.mutants, args.ez_mutants, args.seed, args.programs)
    unknown = sorted(set(args.only) - set(programs))
    if unknown:
        parser.error(f"--only: found {unknown}, expected names of the panel: {sorted(programs)}")
    programs = {name: dna for name, dna in programs.items() if not args.only or name in args.only}
    seeds = [config.training.seed + i for i in range(args.seeds)]
    key = lambda name, kind, seed: f"{canonical_hash(programs[name])}:{kind}:{seed}"   # noqa: E731
    kept = sum(1 for entry in done.values() if entry["status"] in REUSABLE_STATUSES)
    print(f"{len(programs)} programs x {len(seeds)} training seeds; budgets {budgets['search']:.3g} and "
          f"{budgets['long']:.3g} {config.training.budget_kind}; {kept} measurements already in {args.out}")
    kinds = ["long"] if 1 / args.multiplier in curve else list(budgets)   # else the curve holds the search fitness
    if long_done is not None:           # the long runs are another file's: only those programs, the search budget
        kinds = ["search"]
        programs = {name: dna for name, dna in programs.items()
                    if all(key(name, "long", seed) in long_done for seed in seeds)}
    twins = fec_twins(programs, config.model.width_units) if config.search.fec else {}
    if twins:
        print(f"{len(twins)} compute an earlier program's function and take its measurements: "
              + ", ".join(f"{name} = {twin}" for name, twin in twins.items()))
    if copy_twins(done, twins, key, kinds, seeds) and not args.report:
        store.save()
    if args.report:
        programs = {name: dna for name, dna in programs.items()
                    if all(key(name, kind, seed) in done for kind in kinds for seed in seeds)}
        return report(programs, results, key, seeds, curve, args.multiplier, args.noise, args.proxy_metric, twins)
    todo = [(name, kind, seed) for seed in seeds for name in programs for kind in kinds   # oom, crash: again
            if name not in twins and done.get(key(name, kind, seed), {}).get("status") not in REUSABLE_STATUSES]
    configs = {(kind, seed): config.replace(training={"budget": budget, "timeout_seconds": None, "seed": seed,
                                                      "checkpoints": list(curve) if kind == "long" else []})
               for kind, budget in budgets.items() for seed in seeds}

    def record(index: int, result: dict) -> None:
        name, kind, seed = todo[index]
        done[key(name, kind, seed)] = {
            "name": name, "status": result["status"], "error": result.get("error"), "fitness": result.get("fitness"),
            "steps": result.get("steps"), "train_seconds": result.get("train_seconds"),
            "curve": {str(c["fraction"]): c[config.search.metric] for c in result.get("checkpoints") or ()},
            "late_validation_loss": result.get("late_validation_loss"),
            "late_curve": {str(c["fraction"]): c.get("late_validation_loss") for c in result.get("checkpoints") or ()}}
        copy_twins(done, twins, key, kinds, seeds)
        store.save()
        print(f"  {kind:6} seed {seed} {result['status']:8} {result.get('fitness') or float('nan'):.4f}  {name}",
              flush=True)

    limit = config.search.trial_timeout_seconds                 # a hard limit per trial: the long budget's, scaled
    search = dataclasses.replace(config.search, trial_timeout_seconds=limit and limit * args.multiplier)
    run_evaluations(search, [(programs[name], configs[kind, seed]) for name, kind, seed in todo], None, record)
    report(programs, results, key, seeds, curve, args.multiplier, args.noise, args.proxy_metric, twins)


def long_results(path: str | None, multiplier: float) -> dict | None:
    """The long runs recorded in another panel's file (None without one); its multiplier must be this run's."""
    if path is None:
        return None
    try:
        stored = json.loads(pathlib.Path(path).read_text())
        theirs, results = stored["settings"]["multiplier"], stored["results"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"cannot read {path} ({err}); expected a file written by this benchmark") from None
    if theirs != multiplier:
        raise ValueError(f"{path} holds {theirs:g}x runs, expected this run's --multiplier {multiplier:g}")
    return {key: entry for key, entry in results.items() if ":long:" in key}


def _sigmas(text: str) -> tuple[float, float]:
    values = text.split(",")
    try:
        search, long = (float(v) for v in values)
    except ValueError:
        raise argparse.ArgumentTypeError(f"found {text!r}, expected two standard deviations, e.g. 0.014,0.012")
    if search < 0 or long < 0:
        raise argparse.ArgumentTypeError(f"found {text!r}, expected standard deviations of at least 0")
    return search, long


def noise_ceiling(search: list[float], long: list[float], sigmas: tuple[float, float], rng: random.Random,
                  draws: int = 2000) -> tuple[float, float]:
    """The Spearman rho that a proxy ranking exactly as the long training would show through measurement noise:
    the search scores re-ordered into the long ranking (each side keeps its own scale), then both sides measured
    again with normal noise of `sigmas` (search, long). Mean and 5th percentile over `draws`. The long scores carry
    their own noise already, so their spread, and with it the ceiling, is a little high."""
    perfect = [0.0] * len(long)
    for value, index in zip(sorted(search), sorted(range(len(long)), key=long.__getitem__)):
        perfect[index] = value
    rhos = sorted(spearman([v + rng.gauss(0.0, sigmas[0]) for v in perfect],
                           [v + rng.gauss(0.0, sigmas[1]) for v in long]) for _ in range(draws))
    return statistics.fmean(rhos), rhos[int(0.05 * draws)]


def report(programs: dict, done: dict, key, seeds: list[int], curve: tuple[float, ...], multiplier: float,
           noise: tuple[float, float] | None = None, proxy: str = "fitness", twins=()) -> None:
    """Each program's mean score over the training seeds at the search budget (its `proxy`: "fitness" or
    "late_validation_loss"), at each curve point of the long run and at the long budget (a failure ranks last);
    Spearman's rho of each budget's ranking against the long one, and with `noise` (one evaluation's standard
    deviation at each budget) the rho a perfect proxy would show. With `twins` (programs computing an earlier
    one's function) the last line also gives rho over the distinct functions: ties of equal programs inflate it."""
    def scores(name, kind, fraction=None) -> list[float]:
        values = []
        final, points = (proxy, "late_curve") if kind == "search" and proxy != "fitness" else ("fitness", "curve")
        for seed in seeds:
            if kind == "search" and key(name, kind, seed) not in done:   # measured as the long run's curve point
                entry, point = done[key(name, "long", seed)], str(1 / multiplier)
            else:
                entry, point = done[key(name, kind, seed)], fraction and str(fraction)
            recorded = entry.get(points) or {}
            if point in recorded:
                values.append(recorded[point])
            elif entry["status"] != "ok" or entry["fitness"] is None:
                values.append(math.inf)                  # failed (before that point)
            elif point is None:
                values.append(math.nan if entry.get(final) is None else entry[final])   # None: not recorded
            else:
                values.append(math.nan)                  # a long run measured before curves were kept has none
        return values

    shown = [f for f in curve if f * multiplier >= 1 - 1e-9      # points below the search budget: offline analysis,
             and not any(math.isnan(v) for n in programs for v in scores(n, "long", f))]   # as are those some lack
    points = {"search": lambda n: scores(n, "search"),
              **{f"{multiplier * f:g}x": (lambda n, f=f: scores(n, "long", f)) for f in shown},
              f"{multiplier:g}x": lambda n: scores(n, "long")}
    means = {label: {n: statistics.fmean(get(n)) for n in programs} for label, get in points.items()}
    long = means[f"{multiplier:g}x"]
    names = sorted(programs, key=long.get)
    print("\n" + "".join(f"{label:>9}" for label in points) + "  program (mean of "
          f"{len(seeds)} training seed{'s' * (len(seeds) > 1)})")
    for name in names:
        entries = [done.get(key(name, kind, seeds[0])) or {} for kind in ("search", "long")]
        copy = next((f" (same function as {e['copy_of']}: not trained)" for e in entries if "copy_of" in e), "")
        print("".join(f"{means[label][name]:9.4f}" for label in points) + f"  {name}{copy}")
    if len(seeds) > 1:
        spread = {label: [statistics.stdev(get(n)) for n in programs
                          if len(get(n)) > 1 and all(map(math.isfinite, get(n)))] for label, get in points.items()}
        print("".join(f"{statistics.fmean(spread[label]) if spread[label] else math.nan:9.4f}" for label in points)
              + "  mean standard deviation across seeds")
    if len(seeds) > 1 and "transformer" in programs:
        print("\nagainst the Transformer, paired over training seeds: difference, 95% interval, p")
        for name in (n for n in names if n != "transformer"):
            cells = []
            for label in ("search", f"{multiplier:g}x"):
                ours, base = points[label](name), points[label]("transformer")
                test = paired_t_test(ours, base) if all(map(math.isfinite, ours + base)) else None
                differences = [x - y for x, y in zip(ours, base)]
                cells.append(f"{label:>6} {statistics.fmean(differences):+.4f} +- "
                             f"{confidence_half_width(differences):.4f} p {test[1]:<8.2g}" if test else
                             f"{label:>6} {'-':>27}")
            print("  ".join(cells) + f"  {name}")
    def rho_of(label: str, among: list[str]) -> float | None:
        """Spearman's rho of `label`'s ranking of `among` against the long one (None: a score not recorded)."""
        if any(math.isnan(means[label][n]) for n in among):
            return None
        return spearman([means[label][n] for n in among], [long[n] for n in among])

    rhos = {label: rho_of(label, names) for label in points}
    print("".join(f"{rhos[label]:9.3f}" if rhos[label] is not None else f"{'-':>9}" for label in points)
          + f"  Spearman rho against {multiplier:g}x")
    rho = rhos["search"]
    if noise and rho is not None:
        sigmas = tuple(sigma / math.sqrt(len(seeds)) for sigma in noise)
        mean, low = noise_ceiling([means["search"][n] for n in names], [long[n] for n in names], sigmas,
                                  random.Random(0))
        print(f"a proxy ranking exactly as {multiplier:g}x training would show, through noise of "
              f"{noise[0]:g} / {noise[1]:g} per evaluation: rho {mean:.3f} on average, below {low:.3f} in 5% of draws")

    def rho_text(among: list[str], what: str) -> str:
        rho = rho_of("search", among)
        interval = (" (95% interval {:.2f} to {:.2f})".format(*spearman_interval(rho, len(among)))
                    if rho is not None and len(among) > 3 else "")
        return f"{len(among)} {what}: {'-' if rho is None else format(rho, '.3f')}{interval}"

    distinct = [n for n in names if n not in twins]
    print(f"Spearman rho between the search fitness and {multiplier:g}x training, {rho_text(names, 'programs')}"
          + (f"; {rho_text(distinct, 'distinct functions')}" if len(distinct) < len(names) else ""))


if __name__ == "__main__":
    main()
