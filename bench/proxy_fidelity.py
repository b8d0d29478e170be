"""Proxy fidelity: does the discovery config's fitness rank programs as a 10x longer training does?

A panel of programs (the three seeds; the Transformer plus each Primer change alone; single-edit mutants of
Primer-EZ; random single-edit mutants of the Transformer, seeded; and any programs named with --program, such as a
search's winners, `RUN_DIR:ID` or `RUN_DIR:topK`, whose shortcuts are what a proxy most needs to rank right) is
scored twice under one config (default
search_configs/discovery.yaml): by its search fitness (the full budget, as a candidate that passes every hurdle)
and by training `--multiplier` times longer. Both read the config's validation split. A program that fails
(invalid, diverged) ranks last. Prints each program's two scores and, as the last line, Spearman's rank
correlation between the two rankings (target >= 0.8).

Trials run on the project's executor (local Ray, `search.max_in_flight` at a time, no hurdles). Every finished
measurement is written to --out at once (JSON keyed by program hash and budget), so a killed run picks up where it
stopped; a measurement that ended in an out-of-memory kill or a crash is taken again.

    python bench/proxy_fidelity.py [--config search_configs/discovery.yaml] [--multiplier 10]
                                   [--mutants 14] [--ez-mutants 5] [--seed 0] [--program SPEC ...]
                                   [--out bench/results/proxy_fidelity.json] [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.config import MutationWeights, load_config  # noqa: E402
from primer_search.program.graph import canonical_hash  # noqa: E402
from primer_search.program.seeds import load_seed  # noqa: E402
from primer_search.retrain.jobs import load_programs  # noqa: E402
from primer_search.search.mutations import mutate  # noqa: E402
from primer_search.search.stats import spearman  # noqa: E402
from primer_search.search.store import REUSABLE_STATUSES  # noqa: E402
from primer_search.search.trial import run_evaluations  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="search_configs/discovery.yaml")
    parser.add_argument("--multiplier", type=float, default=10.0)
    parser.add_argument("--mutants", type=int, default=14)
    parser.add_argument("--ez-mutants", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--program", action="append", default=[], dest="programs",
                        help="also rank this program: a seed name, DNA file, RUN_DIR:ID or RUN_DIR:topK (repeatable)")
    parser.add_argument("--out", default="bench/results/proxy_fidelity.json")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    config = load_config(args.config, ["search.hurdles=0", *args.overrides])
    budgets = {"search": config.training.budget, "long": config.training.budget * args.multiplier}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()) if out.exists() else {}
    programs = panel(args.mutants, args.ez_mutants, args.seed, args.programs)
    kept = sum(1 for entry in done.values() if entry["status"] in REUSABLE_STATUSES)
    print(f"{len(programs)} programs; budgets {budgets['search']:.3g} and {budgets['long']:.3g} "
          f"{config.training.budget_kind}; {kept} measurements already in {out}")
    todo = [(name, kind) for name in programs for kind in budgets             # an oom or a crash is measured again
            if done.get(f"{canonical_hash(programs[name])}:{kind}", {}).get("status") not in REUSABLE_STATUSES]
    configs = {kind: config.replace(training={"budget": budget, "timeout_seconds": None})
               for kind, budget in budgets.items()}

    def record(index: int, result: dict) -> None:
        name, kind = todo[index]
        done[f"{canonical_hash(programs[name])}:{kind}"] = {
            "name": name, "status": result["status"], "fitness": result.get("fitness"),
            "steps": result.get("steps"), "train_seconds": result.get("train_seconds")}
        out.write_text(json.dumps(done, indent=1, sort_keys=True))
        print(f"  {kind:6} {result['status']:8} {result.get('fitness') or float('nan'):.4f}  {name}", flush=True)

    limit = config.search.trial_timeout_seconds                 # a hard limit per trial: the long budget's, scaled
    search = dataclasses.replace(config.search, trial_timeout_seconds=limit and limit * args.multiplier)
    run_evaluations(search, [(programs[name], configs[kind]) for name, kind in todo], None, record)

    def score(name, kind):
        entry = done[f"{canonical_hash(programs[name])}:{kind}"]
        return entry["fitness"] if entry["status"] == "ok" and entry["fitness"] is not None else math.inf

    names = sorted(programs, key=lambda n: score(n, "long"))
    print(f"\n{'search fitness':>14} {'x' + format(args.multiplier, 'g') + ' budget':>12}  program")
    for name in names:
        print(f"{score(name, 'search'):14.4f} {score(name, 'long'):12.4f}  {name}")
    rho = spearman([score(n, "search") for n in names], [score(n, "long") for n in names])
    print(f"Spearman rho between the search fitness and {args.multiplier:g}x training, "
          f"{len(names)} programs: {rho:.3f}")


if __name__ == "__main__":
    main()
