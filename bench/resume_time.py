"""Time to resume a long run from its store: open RUN_DIR/run.sqlite and read everything `resume` needs.

A store of --individuals proposals (default 25,000) is built in a temporary directory (or --dir) through the
`primer_search.search.store.RunStore` API, with realistic content: each DNA is the Transformer seed's `to_dict()` with
1-6 random edits (constants, dimensions, instruction fields, a duplicated or dropped instruction), the controller's
`random.Random` state stored with every proposal, up to 4 hurdle records each (half stop at each hurdle),
FitnessResult-shaped metrics with their checkpoints, a status mix (ok, stopped, invalid, diverged, timeout, oom,
error), 15% cache hits, and the last --in-flight proposals left without a result. Construction commits every 1,000
individuals (`RunStore.transaction()`); the store itself commits per event, whose cost is measured apart on a
small store (--events unbatched proposals with the random state, synchronous=FULL).

The timed resume read, repeated --repeats times on the closed store (warm page cache: the file was just written):
    RunStore.open(run_dir, lock=True), config, rng_state(), completed() (every result in seq order, metrics
    decoded), pending(), counts(), close(), and the DNAs of the last 100 completed (a population) and the pending
`Individual.dna` is decoded on first use; completed() decoding every DNA too, and completed(last=100), are timed
beside it.

    python bench/resume_time.py [--individuals 25000] [--in-flight 8] [--repeats 3] [--events 200] [--dir DIR]

The last line printed is the headline: the median resume read time against the target of 10 s.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import pathlib
import random
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.config import load_config  # noqa: E402
from primer_search.program.seeds import load_seed  # noqa: E402  (imports TensorFlow through primitives; not timed)
from primer_search.search.store import RunStore  # noqa: E402
from bench_cli import CONFIGS  # noqa: E402

STATUS_MIX = {"ok": 0.42, "invalid": 0.08, "diverged": 0.03, "timeout": 0.02, "oom": 0.01, "error": 0.01}
HURDLES = tuple((2 ** i - 1) / 31 for i in range(1, 6))   # H = 4 hurdles at (2^i - 1)/(2^(H+1) - 1), then 1.0
MUTATIONS = ("insert", "delete", "swap", "change_op", "change_argument", "change_constant", "change_dimension")


def edited_dna(seed: dict, rng: random.Random) -> dict:
    dna = copy.deepcopy(seed)
    for _ in range(rng.randint(1, 6)):
        program = rng.choice(dna["subprograms"])
        instructions = program["instructions"]
        kind = rng.randrange(5)
        if kind == 0:
            dna["constants"][rng.randrange(2)] = round(rng.uniform(-2.0, 2.0), 6)
        elif kind == 1:
            dna["dimensions"][rng.randrange(6)] = rng.choice((1, 2, 4, 8, 12, 16, 24, 32, 48, 64))
        elif kind == 2 and instructions:
            instruction = rng.choice(instructions)
            field = rng.choice(("in1", "in2", "const", "dim", "branch"))
            instruction[field] = rng.choice((1, 2, 4, 8)) if field == "branch" else rng.randrange(6)
        elif kind == 3 and instructions:
            instructions.insert(rng.randrange(len(instructions) + 1), dict(rng.choice(instructions)))
        elif len(instructions) > 1:
            instructions.pop(rng.randrange(len(instructions)))
    return dna


def result_metrics(status: str, rng: random.Random, passed: int, canonical_hash: str) -> tuple[float | None, dict]:
    loss = rng.uniform(2.5, 6.0)
    measured = status in ("ok", "stopped")
    steps = int(1000 * (HURDLES[passed] if status == "stopped" else 1.0)) if measured else rng.randrange(40)
    checkpoints = [{"fraction": f, "step": int(1000 * f), "validation_loss": loss + (1 - f), "train_seconds": 60 * f}
                   for f in HURDLES[:passed + 1]] if measured else []
    fitness = loss if measured else None
    metrics = {
        "status": status, "fitness": fitness, "validation_loss": fitness,
        "perplexity": 2.718281828 ** loss if measured else None, "bits_per_byte": loss * 0.31 if measured else None,
        "steps": steps, "tokens_seen": steps * 4096, "mean_step_seconds": rng.uniform(0.01, 0.2),
        "train_seconds": rng.uniform(1, 60), "compile_seconds": rng.uniform(1, 10), "eval_seconds": rng.uniform(0, 3),
        "total_seconds": rng.uniform(5, 80), "parameter_count": rng.randrange(1_000_000, 3_000_000),
        "unit": rng.choice((16, 24, 32)), "flops_per_token": rng.randrange(10 ** 7, 10 ** 8),
        "budget_fraction": HURDLES[passed] if measured else 0.0, "checkpoints": checkpoints,
        "failed_step": steps if status == "diverged" else None,
        "error": None if measured else f"{status.title()}Error: something about the program at step {steps}",
        "canonical_hash": canonical_hash}
    return fitness, metrics


def build(run_dir: pathlib.Path, individuals: int, in_flight: int) -> None:
    rng = random.Random(0)
    seed = load_seed("transformer").to_dict()
    config = load_config(CONFIGS / "tiny.yaml").to_dict()
    measured: list[int] = []                     # ids with a reusable result, for cache hits
    with RunStore.create(run_dir, config) as store:
        for start in range(0, individuals, 1000):
            with store.transaction():
                for n in range(start, min(start + 1000, individuals)):
                    add_individual(store, rng, seed, n, done=n < individuals - in_flight, measured=measured)


def add_individual(store: RunStore, rng: random.Random, seed: dict, n: int, done: bool, measured: list) -> None:
    parent = rng.randint(1, n) if n else None
    dna = edited_dna(seed, rng) if n else seed
    cached = measured and rng.random() < 0.15
    source = store.individual(rng.choice(measured)) if cached else None
    canonical_hash = source.canonical_hash if cached else hashlib.sha256(json.dumps(dna).encode()).hexdigest()
    individual_id = store.add_proposal(parent, rng.choice(MUTATIONS) if n else None,
                                       {"subprogram": rng.randrange(6), "index": rng.randrange(8)} if n else None,
                                       dna, canonical_hash, f"fp{rng.getrandbits(64):016x}", rng.getstate())
    if not done:
        return
    if cached:
        store.record_result(individual_id, source.status, source.fitness, source.metrics,
                            cached_from=source.id, attempts=0)
        return
    status = rng.choices(list(STATUS_MIX), list(STATUS_MIX.values()))[0]
    passed = 0
    if status == "ok":
        while passed < len(HURDLES) - 1 and rng.random() < 0.5:
            passed += 1
        status = "ok" if passed == len(HURDLES) - 1 else "stopped"
        for hurdle in range(min(passed + 1, len(HURDLES) - 1)):
            store.record_hurdle(individual_id, hurdle, HURDLES[hurdle], rng.uniform(3, 7), hurdle < passed)
    fitness, metrics = result_metrics(status, rng, passed, canonical_hash)
    store.record_result(individual_id, status, fitness, metrics, worker=f"worker-{rng.randrange(8)}",
                        started_at=time.time() - 60)
    if status in ("ok", "stopped", "invalid", "diverged"):
        measured.append(individual_id)


def resume_read(run_dir: pathlib.Path, population: int = 100) -> tuple[float, int, int]:
    start = time.perf_counter()
    with RunStore.open(run_dir, lock=True) as store:
        config, state = store.config, store.rng_state()
        completed, pending, counts = store.completed(), store.pending(), store.counts()
    dnas = [individual.dna for individual in completed[-population:] + pending]   # decoded lazily: those used
    elapsed = time.perf_counter() - start
    assert config and state and dnas and counts["done"] == len(completed) and counts["in_flight"] == len(pending)
    return elapsed, len(completed), len(pending)


def decode_every_dna(run_dir: pathlib.Path) -> float:
    start = time.perf_counter()
    with RunStore.open(run_dir) as store:
        dnas = [individual.dna for individual in store.completed()]
    assert all(dnas)
    return time.perf_counter() - start


def commit_cost(directory: pathlib.Path, events: int) -> float:
    rng = random.Random(1)
    dna = load_seed("transformer").to_dict()
    with RunStore.create(directory, {}) as store:
        start = time.perf_counter()
        for i in range(events):
            rng.random()
            store.add_proposal(None, None, None, dna, f"h{i}", rng_state=rng.getstate())
        return (time.perf_counter() - start) / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--individuals", type=int, default=25_000)
    parser.add_argument("--in-flight", type=int, default=8, help="proposals left without a result")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events", type=int, default=200, help="unbatched commits timed for the per-event cost")
    parser.add_argument("--dir", type=pathlib.Path, help="where to build the store (default: a temporary directory)")
    args = parser.parse_args()
    if args.individuals < 1 or not 0 <= args.in_flight <= args.individuals or args.repeats < 1 or args.events < 1:
        parser.error("need --individuals >= 1, 0 <= --in-flight <= --individuals, --repeats and --events >= 1")

    with tempfile.TemporaryDirectory(prefix="resume_time_") as temp:
        base = args.dir or pathlib.Path(temp)
        run_dir = base / "run"
        print(f"per-event commit (add_proposal with the random state, synchronous=FULL, {base}): "
              f"{commit_cost(base / 'commit_probe', args.events) * 1e3:.2f} ms over {args.events} commits")
        start = time.perf_counter()
        build(run_dir, args.individuals, args.in_flight)
        size = sum(p.stat().st_size for p in run_dir.iterdir()) / 2 ** 20
        print(f"built {args.individuals:,} individuals in {time.perf_counter() - start:.1f} s "
              f"(commits of 1,000): {size:.1f} MiB in {run_dir}")
        times = []
        for _ in range(args.repeats):
            elapsed, done, pending = resume_read(run_dir)
            times.append(elapsed)
        with RunStore.open(run_dir) as store:
            start = time.perf_counter()
            population = store.completed(last=100)
            last = time.perf_counter() - start
            counts = store.counts()
        print(f"counts: {counts['done']:,} done {counts['by_status']}, {counts['in_flight']} in flight, "
              f"{counts['cache_hits']:,} cache hits, {counts['hurdle_stops']:,} hurdle stops")
        print(f"completed(last=100): {last * 1e3:.1f} ms ({len(population)} individuals); completed() decoding "
              f"every DNA as well: {decode_every_dna(run_dir):.2f} s")
        print(f"resume reads (s): {' '.join(f'{t:.2f}' for t in times)}")
        print(f"resume read of {args.individuals:,} individuals ({done:,} completed in seq order + {pending} "
              f"pending + meta + counts): {statistics.median(times):.2f} s median of {args.repeats}, target <= 10 s")


if __name__ == "__main__":
    main()
