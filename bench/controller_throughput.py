"""Controller throughput: proposals per second on one core for select + mutate + validate + hash (no training).

Regularized evolution in one process over a population of 100 DNAs: the transformer seed and children of it
after 1..4 random mutations, each with a dummy fitness stored alongside. One proposal is: tournament selection
(sample 10 members uniformly, take the best dummy fitness) and `mutations.mutate` with the default weights (draws
a type, builds the child, which the DNA constructor validates, lowers it for its canonical hash and retries on
no-ops; the parent's hash is kept with the member and passed in); that much is timed. Then, untimed (it stands in
for a worker's evaluation), the child gets its dummy fitness and is pushed, and the oldest member is popped.

The dummy fitness (--fitness size, the default) is noise minus the distance between the child's graph size and
the seed's, so the population stays transformer-sized as in a real search. With --fitness random (noise only)
nothing opposes drift: the population degenerates into programs that are mostly dead code, where most mutations
are no-ops and each proposal takes many tries.

A second, instrumented pass (not in the headline) times the parts inside `mutate`: `graph.canonical_hash`
(split into building the live graph, `graph._build`, and hashing its records, `graph._hash_nodes`),
`dna.validate`, and the rest (selection, drawing the mutation, building instruction tuples), and counts tries per
proposal. With --profile, a cProfile of one more round is printed (it includes the untimed dummy fitness, one
more `graph.lower` per proposal).

    python bench/controller_throughput.py [--proposals 2000] [--rounds 3] [--population 100] [--tournament 10]
                                          [--seed 0] [--fitness size|random] [--profile]

The last line printed is the headline: the median over rounds of proposals per second on one core (target:
at least 5,000).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import random
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.config import MutationWeights, SearchConfig  # noqa: E402
from primer_search.program import dna as dna_module, graph  # noqa: E402
from primer_search.program.seeds import load_seed  # noqa: E402
from primer_search.search import mutations  # noqa: E402

WEIGHTS = MutationWeights()
MAX_INSTRUCTIONS = SearchConfig().max_instructions
LOWER = graph.lower        # for the dummy fitness, outside the timers of the instrumented pass


class Population:
    """Members as (dna, canonical hash, dummy fitness), oldest first."""

    def __init__(self, size: int, rng: random.Random, fitness: str):
        seed = load_seed("transformer")
        self.fitness, self.seed_nodes = fitness, len(LOWER(seed).nodes)
        self.members = collections.deque()
        for _ in range(size):
            dna, digest = seed, graph.canonical_hash(seed)
            for _ in range(rng.randint(1, 4)):
                dna, mutation = mutations.mutate(dna, rng, WEIGHTS, MAX_INSTRUCTIONS, parent_hash=digest)
                digest = mutation.child_hash
            self.members.append((dna, digest, self.dummy_fitness(dna, rng)))

    def dummy_fitness(self, dna, rng: random.Random) -> float:
        """Noise, minus (with --fitness size) how far the graph's size is from the seed's (not timed)."""
        if self.fitness == "random":
            return rng.random()
        return rng.random() - abs(len(LOWER(dna).nodes) - self.seed_nodes)

    def propose(self, rng: random.Random, tournament: int) -> tuple[float, str]:
        """One timed proposal (select + mutate), then the untimed fitness and the push/pop; returns seconds, kind."""
        start = time.perf_counter()
        parent, digest, _ = max(rng.sample(self.members, tournament), key=lambda m: m[2])
        child, mutation = mutations.mutate(parent, rng, WEIGHTS, MAX_INSTRUCTIONS, parent_hash=digest)
        seconds = time.perf_counter() - start
        self.members.append((child, mutation.child_hash, self.dummy_fitness(child, rng)))
        self.members.popleft()
        return seconds, mutation.kind


def timed_rounds(population: Population, rng: random.Random, args) -> list[float]:
    rates, kinds = [], collections.Counter()
    for _ in range(args.rounds):
        seconds = 0.0
        for _ in range(args.proposals):
            elapsed, kind = population.propose(rng, args.tournament)
            seconds += elapsed
            kinds[kind] += 1
        rates.append(args.proposals / seconds)
    print(f"rounds of {args.proposals} proposals: {' '.join(f'{r:7.0f}/s' for r in rates)}")
    print(f"mutation types of the children: {dict(kinds)}")
    return rates


class Timer:
    """Wraps a function and adds up the time spent in it; with `within`, only in calls made inside that timer's
    (so the untimed dummy fitness, which lowers the child with the same functions, is not counted)."""

    def __init__(self, fn, within: Timer | None = None):
        self.fn, self.within, self.seconds, self.calls, self.running = fn, within, 0.0, 0, False

    def __call__(self, *args, **kwargs):
        if self.within is not None and not self.within.running:
            return self.fn(*args, **kwargs)
        start, self.running = time.perf_counter(), True
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1
            self.running = False


def instrumented_pass(population: Population, rng: random.Random, args) -> None:
    """Split the time of one round between hashing, validation and the rest (patched timers, then restored)."""
    timers = {"hash": Timer(mutations.canonical_hash), "validate": Timer(dna_module.validate)}
    timers["build"] = Timer(graph._build, within=timers["hash"])
    timers["records"] = Timer(graph._hash_nodes, within=timers["hash"])
    originals = (mutations.canonical_hash, dna_module.validate, graph._build, graph._hash_nodes)
    mutations.canonical_hash, dna_module.validate = timers["hash"], timers["validate"]
    graph._build, graph._hash_nodes = timers["build"], timers["records"]
    try:
        total = sum(population.propose(rng, args.tournament)[0] for _ in range(args.proposals))
    finally:
        mutations.canonical_hash, dna_module.validate, graph._build, graph._hash_nodes = originals
    n = args.proposals
    sizes = [sum(len(sp.instructions) for sp in m[0].subprograms) for m in population.members]
    nodes = [len(LOWER(m[0]).nodes) for m in population.members]
    print(f"instrumented pass, {n} proposals ({total / n * 1e6:.0f} us each, timers included); population: "
          f"{statistics.mean(sizes):.1f} instructions, {statistics.mean(nodes):.1f} graph nodes on average")
    hashing, validating = timers["hash"], timers["validate"]
    print(f"  tries per proposal           {hashing.calls / n:6.2f}  (a try that applies validates and hashes a child)")
    rest = total - hashing.seconds - validating.seconds
    for label, seconds, calls in (
            ("canonical_hash (all)", hashing.seconds, hashing.calls),
            ("  graph._build", timers["build"].seconds, timers["build"].calls),
            ("  graph._hash_nodes", timers["records"].seconds, timers["records"].calls),
            ("dna.validate", validating.seconds, validating.calls),
            ("rest (select, mutation fns)", rest, n)):
        print(f"  {label:28s} {seconds / n * 1e6:6.0f} us/proposal  {seconds / total:6.1%}  "
              f"({seconds / max(calls, 1) * 1e6:.0f} us per call, {calls} calls)")


def profile_pass(population: Population, rng: random.Random, args) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.proposals):
        population.propose(rng, args.tournament)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proposals", type=int, default=2000, help="proposals per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--tournament", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fitness", choices=("size", "random"), default="size",
                        help="dummy fitness: noise minus distance from the seed's graph size, or only noise")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one round")
    args = parser.parse_args()
    if args.proposals < 1 or args.rounds < 1 or not 1 <= args.tournament <= args.population:
        parser.error("--proposals and --rounds must be at least 1, --tournament in 1..--population")

    rng = random.Random(args.seed)
    start = time.perf_counter()
    population = Population(args.population, rng, args.fitness)
    print(f"population of {args.population} built in {time.perf_counter() - start:.2f} s; tournament "
          f"{args.tournament}, max_instructions {MAX_INSTRUCTIONS}, dummy fitness {args.fitness}, weights {WEIGHTS}")
    for _ in range(min(200, args.proposals)):                       # warm-up
        population.propose(rng, args.tournament)
    rates = timed_rounds(population, rng, args)
    instrumented_pass(population, rng, args)
    if args.profile:
        profile_pass(population, rng, args)
    print(f"controller throughput: {statistics.median(rates):.0f} proposals/s on one core (target 5000)")


if __name__ == "__main__":
    main()
