"""Retrain scaling: the same Ray Train job on 1 and on 2 workers (one CPU thread each) on this machine.

Trains the Transformer seed of a discovery-sized model (2 layers, unit 13, 4096-token batches) for --steps steps,
alternating 1-worker and 2-worker jobs --rounds times (the machine's load drifts), and reads each job's step time
(the first, compiling step excluded) from its result. Prints steps per second for each, the per-step overhead of the
collectives (the 2-worker step time minus half the 1-worker step time: what is not halved), and as the last line
the ratio of 2-worker to 1-worker steps per second (2.0 would be perfect scaling).

    python bench/retrain_scaling.py [--steps 60] [--rounds 2] [--out /tmp/retrain_scaling]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.config import config_from_dict  # noqa: E402
from primer_search.program.seeds import load_seed  # noqa: E402
from primer_search.retrain.config import RetrainConfig  # noqa: E402
from primer_search.retrain.jobs import Program, retrain  # noqa: E402


def config(steps: int, workers: int) -> RetrainConfig:
    return config_from_dict({
        "model": {"vocab_size": 258, "num_layers": 2, "width_units": 8},
        "data": {"source": "pydoc", "tokenizer": "bytes", "sequence_length": 64, "batch_tokens": 4096,
                 "validation_tokens": 4096},
        "training": {"warmup_steps": 25, "jit_compile": True},
        "retrain": {"units": [13], "budget_kind": "steps", "budgets": [steps], "seeds": 1, "curve_points": 1,
                    "workers": workers, "cpus_per_worker": 1, "num_cpus": 2, "max_failures": 0},
    }, cls=RetrainConfig)


def step_seconds(steps: int, workers: int, out: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    [(_, result)] = retrain(config(steps, workers), [Program("transformer", load_seed("transformer"), True)], out)
    if result["status"] != "ok":
        raise RuntimeError(f"{workers}-worker job: {result}")
    return result["curve"][-1]["train_seconds"] / (result["steps"] - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="/tmp/retrain_scaling")
    args = parser.parse_args()
    times = {1: [], 2: []}
    for round_ in range(args.rounds):
        for workers in (1, 2):
            times[workers].append(step_seconds(args.steps, workers, f"{args.out}/w{workers}"))
            print(f"round {round_}: {workers} worker(s): {times[workers][-1] * 1000:.1f} ms/step", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"1 worker: {1 / one:.2f} steps/s; 2 workers: {1 / two:.2f} steps/s; collective overhead per step: "
          f"{(two - one / 2) * 1000:.1f} ms")
    print(f"2-worker / 1-worker steps per second: {one / two:.2f}")


if __name__ == "__main__":
    main()
