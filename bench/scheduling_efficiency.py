"""Scheduling efficiency of the Ray executor: how close W concurrent trials come to W trials per trial length.

Trials are simulated: each sleeps a fixed `--sleep` seconds (no TensorFlow), so any shortfall is the executor's
and Ray's overhead (submission, scheduling, result delivery, the driver loop, worker recycling). A local Ray
instance is started with as many logical CPUs as the largest W (sleeping tasks use no CPU), one CPU per trial.
For each W the loop is the search controller's steady state: keep W trials in flight and submit a new one
on each completion. The first `--warmup-rounds` x W completions are a warm-up (Ray starts worker processes
a few at a time, so the pool grows for a while); the next `--rounds` x W completions are timed, from the last
warm-up completion to the last timed one, with W still in flight throughout.

    efficiency = achieved trials/s / ideal trials/s,   ideal = W / sleep

A `--timeout` per trial is set and workers are recycled every `--evaluations-per-worker` trials (10, as in a
search). With the default rounds a worker runs about 6 trials, so few are recycled inside the timed window and
the headline is the cost of scheduling itself. Recycling adds one worker start per `evaluations_per_worker`
trials, and Ray starts at most as many workers at once as the node has cores: negligible beside minute-long
trials on a real node, but a bottleneck for 6-s trials at W = 64 on a 2-core machine (try
`--evaluations-per-worker 4`). Each line says how many timed trials ran on a new worker process.

    python bench/scheduling_efficiency.py [--widths 2 8 32 64] [--sleep 6] [--warmup-rounds 2] [--rounds 4]

The last line printed is the headline: the efficiency at the largest W (target at least 0.95 at W = 64).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import ray

from primer_search.search.executors import RayExecutor


def simulated_trial(payload):
    time.sleep(payload["seconds"])
    return payload["seconds"]


def measure(width: int, seconds: float, warmup_rounds: int, rounds: int, evaluations_per_worker: int,
            timeout: float, workers_seen: set) -> float:
    """Run the steady-state loop at W = width; print and return the efficiency."""
    warmup, timed = warmup_rounds * width, rounds * width
    total = warmup + timed + width              # enough submissions to keep W in flight up to the last timed one
    submitted_at, latencies, fresh, failures = {}, [], 0, 0
    with RayExecutor(cpus_per_trial=1.0, evaluations_per_worker=evaluations_per_worker, timeout_seconds=timeout,
                     max_retries=0) as executor:

        def submit():
            submitted_at[len(submitted_at)] = time.time()
            executor.submit(len(submitted_at) - 1, simulated_trial, {"seconds": seconds})

        start = time.monotonic()
        for _ in range(width):
            submit()
        completed = 0
        while completed < warmup + timed:
            for completion in executor.wait():
                completed += 1
                if completed == warmup:
                    t0 = time.monotonic()
                elif completed > warmup:
                    failures += completion.failure is not None
                    latencies.append(completion.started_at - submitted_at[completion.trial_id])
                    fresh += completion.worker not in workers_seen
                workers_seen.add(completion.worker)
                if len(submitted_at) < total:
                    submit()
        elapsed = time.monotonic() - t0
    rate, ideal = timed / elapsed, width / seconds
    latencies.sort()
    print(f"  W {width:3d}: {timed:4d} trials in {elapsed:5.1f} s (after {t0 - start:4.1f} s of warm-up): "
          f"{rate:6.2f}/s of an ideal {ideal:6.2f}/s, efficiency {rate / ideal:.3f}; submission to start: "
          f"median {statistics.median(latencies) * 1e3:4.0f} ms, p95 {latencies[int(0.95 * len(latencies))]:.2f} s; "
          f"{fresh} on a new worker process, {failures} failed")
    return rate / ideal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[2, 8, 32, 64], help="W: trials in flight")
    parser.add_argument("--sleep", type=float, default=6.0, help="seconds per simulated trial")
    parser.add_argument("--warmup-rounds", type=int, default=2, help="untimed trials per W, in multiples of W")
    parser.add_argument("--rounds", type=int, default=4, help="timed trials per W, in multiples of W")
    parser.add_argument("--evaluations-per-worker", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=None, help="per-trial limit (default 10 x --sleep)")
    args = parser.parse_args()
    if min(args.widths) < 1 or args.rounds < 1 or args.warmup_rounds < 1 or args.sleep <= 0:
        parser.error("--widths, --rounds and --warmup-rounds must be at least 1, --sleep positive")

    start = time.monotonic()
    ray.init(address="local", num_cpus=max(args.widths), include_dashboard=False, log_to_driver=False)
    print(f"Ray {ray.__version__}, {os.cpu_count()} CPUs (Ray told {max(args.widths)}), started in "
          f"{time.monotonic() - start:.1f} s; trials sleep {args.sleep:g} s, {args.warmup_rounds} + {args.rounds} "
          f"rounds (warm-up + timed) per W, "
          f"workers recycled every {args.evaluations_per_worker} trials")
    efficiencies, workers = {}, set()
    try:
        for width in args.widths:
            efficiencies[width] = measure(width, args.sleep, args.warmup_rounds, args.rounds,
                                          args.evaluations_per_worker, args.timeout or 10 * args.sleep, workers)
    finally:
        ray.shutdown()
    width = max(efficiencies)
    print(f"scheduling efficiency at W = {width}: {efficiencies[width]:.3f} (achieved / ideal trials per second)")


if __name__ == "__main__":
    main()
