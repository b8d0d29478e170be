"""One trial: evaluate a program in a worker process. `run_trial(payload, ask)` is what every executor runs for the
search, `calibrate` and `confirm`; `run_evaluations` runs many (DNA, config) pairs through an executor.

The payload is JSON data: the DNA, the resolved config, optionally the training seed that replaces the config's,
and the CPU threads the trial may use. At each `training.checkpoints` fraction the trial asks `ask({hurdle,
fraction, value})` whether to go on (the search's hurdles); without `ask` it never stops.
"""

from __future__ import annotations

from typing import Callable, Sequence

from primer_search.config import Config, SearchConfig, config_from_dict
from primer_search.program.dna import DNA
from primer_search.search.executors import make_executor


def limit_threads(threads: int | None) -> None:
    """Keep a worker's TensorFlow to the CPUs its trial reserved (TF uses every core by default, so parallel
    trials would fight over them). Possible only before TF starts in the process; a recycled worker's later
    trials keep the setting of its first."""
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass


def run_trial(payload: dict, ask: Callable[[dict], bool] | None = None) -> dict:
    """Evaluate one program (see the module docstring); returns the FitnessResult dict."""
    from primer_search.lm.fitness import evaluate

    limit_threads(payload.get("threads"))
    seed = payload.get("training_seed")
    config = config_from_dict(payload["config"], [f"training.seed={seed}"] if seed is not None else [])
    fractions = config.training.checkpoints

    def on_checkpoint(checkpoint) -> bool:
        if ask is None:
            return True
        return bool(ask({"hurdle": fractions.index(checkpoint.fraction), "fraction": checkpoint.fraction,
                         "value": getattr(checkpoint, config.search.metric)}))

    return evaluate(DNA.from_dict(payload["dna"]), config, on_checkpoint=on_checkpoint).to_dict()


def failure_result(failure: str) -> dict:
    """The result of a trial that produced none (an executor's one-line `failure`): timeout, oom or error."""
    status = next((s for s in ("timeout", "oom") if failure.startswith(s)), "error")
    return {"status": status, "error": failure}


def run_evaluations(search: SearchConfig, jobs: Sequence[tuple[DNA, Config]], executor=None,
                    on_result: Callable[[int, dict], None] | None = None) -> list[dict]:
    """The FitnessResult dicts of evaluating each (dna, config) job, in job order; at most `search.max_in_flight`
    at a time on `executor` (default: `make_executor(search)`, shut down at the end). A trial that could not
    produce a result (its worker died, it timed out) gives `failure_result`.
    `on_result(index, result)` is called as each finishes."""
    owned = executor is None
    executor = executor or make_executor(search)
    threads = None if search.executor == "in_process" else max(1, int(search.cpus_per_trial))
    results: list[dict | None] = [None] * len(jobs)
    submitted = finished = 0
    try:
        while finished < len(jobs):
            while submitted < len(jobs) and executor.in_flight < search.max_in_flight:
                dna, config = jobs[submitted]
                executor.submit(submitted, run_trial,
                                {"dna": dna.to_dict(), "config": config.to_dict(), "threads": threads})
                submitted += 1
            for completion in executor.wait(timeout=60):
                result = completion.value if completion.failure is None else failure_result(completion.failure)
                results[completion.trial_id] = result
                finished += 1
                if on_result is not None:
                    on_result(completion.trial_id, result)
    finally:
        if owned:
            executor.shutdown()
    return results


# -- the summary --------------------------------------------------------------------------------------------------
