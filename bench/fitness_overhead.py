"""Overhead of one fitness evaluation: how much of its wall time is not training, and can the input keep up.

One `primer_search.lm.fitness.evaluate` of a seed (default: the Transformer) under a config (default
search_configs/tiny.yaml) with a seconds budget (default 60 s; `training.timeout_seconds` is lifted so a
long budget is never cut off), in a fresh process, timed from just before the first `load_data` call (source,
tokenizer load or training, validation set) to the return of `evaluate`. TensorFlow's import happens before that
point; its time is printed but not counted. `train_seconds` is the time of the training steps after the first;
everything else is overhead:
    load_data      opening the corpus, loading (or training, on a cold cache) the SentencePiece model, validation set
    build          sizing, analytic cost, model and optimizer construction (evaluate's total less the parts below)
    compile        the first training step: trace, XLA-compile and run it
    eval           the validation passes (the final one here; its first call also compiles the eval step)
    non-training share = (wall - train_seconds) / wall             target: at most 10%

The tokenizer is cached in --cache-dir (default /tmp/primer_search_bench_cache, not the user's cache), so the
first run ever trains it and later runs load it; the output says which happened. --cold uses a fresh empty
directory, so the tokenizer is always trained (the worst case, a first evaluation on a new corpus).

Then, with training over, the input pipeline alone: `LanguageData.prefetched_batches(seed)` (the same pipeline
the trainer iterates) is drained for --pipeline-seconds after its first batch (whose startup time is printed
apart), and its tokens/s (batch_tokens per batch) is compared with the evaluation's training tokens/s,
(steps - 1) x batch_tokens / train_seconds (the compiling first step excluded, as from train_seconds).
Target: the pipeline at least 10x faster than training.

    python bench/fitness_overhead.py [--budget 60] [--seed transformer] [--config search_configs/tiny.yaml]
                                     [--cache-dir DIR | --cold] [--pipeline-seconds 5]

The last line printed is the headline: the non-training share and the pipeline/training tokens/s ratio.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
import time

_START = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from primer_search.lm.data import load_data  # noqa: E402
from primer_search.lm.fitness import evaluate  # noqa: E402
from primer_search.program.seeds import SEED_NAMES, load_seed  # noqa: E402
from bench_cli import CONFIGS, load_config_or_exit  # noqa: E402

DEFAULT_CACHE = "/tmp/primer_search_bench_cache"


def cached_models(cache_dir: pathlib.Path) -> set[pathlib.Path]:
    return {p.resolve() for p in cache_dir.glob("*.model")} if cache_dir.is_dir() else set()


def pipeline_throughput(data, seed: int, seconds: float) -> tuple[float, float, int, float]:
    """(startup seconds to the first batch, tokens/s after it, batches timed, seconds timed)."""
    start = time.perf_counter()
    batches = data.prefetched_batches(seed)
    next(batches)
    first = time.perf_counter()
    count = 0
    while True:
        next(batches)
        count += 1
        now = time.perf_counter()
        if now - first >= seconds:
            break
    batches.close()
    elapsed = now - first
    return first - start, count * data.config.batch_tokens / elapsed, count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training (training.budget)")
    parser.add_argument("--seed", default="transformer", choices=SEED_NAMES, help="the seed DNA to evaluate")
    parser.add_argument("--config", default=str(CONFIGS / "tiny.yaml"))
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", default=DEFAULT_CACHE, help=f"tokenizer cache (default {DEFAULT_CACHE})")
    cache.add_argument("--cold", action="store_true", help="use a fresh empty tokenizer cache")
    parser.add_argument("--pipeline-seconds", type=float, default=5.0,
                        help="how long to drain the input pipeline alone")
    args = parser.parse_args()
    if args.budget <= 0 or args.pipeline_seconds <= 0:
        parser.error("--budget and --pipeline-seconds must be positive")

    cache_dir = pathlib.Path(tempfile.mkdtemp(prefix="primer_search_cold_") if args.cold else args.cache_dir)
    config = load_config_or_exit(parser, args.config, ["training.budget_kind=seconds", f"training.budget={args.budget}",
                                                       "training.jit_compile=true", "training.timeout_seconds=null"])
    config = config.replace(data={"cache_dir": str(cache_dir)})
    before = cached_models(cache_dir)
    dna = load_seed(args.seed)
    imports = time.perf_counter() - _START
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; config {args.config}; seed {args.seed}; "
          f"budget {args.budget:g} s of training; tokenizer cache {cache_dir}")
    print(f"process start to first load_data (imports, not counted): {imports:.1f} s")

    start = time.perf_counter()
    data = load_data(config.data, config.model.vocab_size)
    load_seconds = time.perf_counter() - start
    result = evaluate(dna, config)
    wall = time.perf_counter() - start
    if result.status != "ok":
        raise SystemExit(f"evaluation ended with status {result.status}: {result.error}")

    path = getattr(data.tokenizer, "path", None)
    if path is None:
        tokenizer_note = f"tokenizer {data.tokenizer.name} (nothing to load)"
    elif path.resolve() in before:
        tokenizer_note = f"tokenizer loaded from the cache ({path.name})"
    else:
        tokenizer_note = f"tokenizer TRAINED in this run (not in the cache before: {path.name})"
    build = result.total_seconds - result.compile_seconds - result.train_seconds - result.eval_seconds
    share = (wall - result.train_seconds) / wall
    print(f"corpus {config.data.source}: {len(data.validation.inputs)} validation rows "
          f"({data.validation.num_targets} targets), vocab {data.vocab_size}; {tokenizer_note}")
    print(f"model: {result.parameter_count:,} parameters (unit {result.unit}); {result.steps} steps, "
          f"validation loss {result.validation_loss:.3f} nats/token, {result.bits_per_byte:.3f} bits/byte")
    print(f"wall time of the evaluation, from before load_data: {wall:7.2f} s")
    parts = [("load_data", load_seconds), ("build", build), ("compile (first step)", result.compile_seconds),
             ("eval", result.eval_seconds), ("train (steps 2..)", result.train_seconds)]
    for name, seconds in parts:
        print(f"  {name:22s} {seconds:7.2f} s  {seconds / wall:6.1%}")
    unaccounted = wall - load_seconds - result.total_seconds
    print(f"  {'(between the two calls)':22s} {unaccounted:7.2f} s  {unaccounted / wall:6.1%}")
    print(f"non-training share: ({wall:.2f} - {result.train_seconds:.2f}) / {wall:.2f} = {share:.1%} "
          f"(target <= 10%: {'met' if share <= 0.10 else 'NOT met'})")

    batch_tokens = config.data.batch_tokens
    training_rate = (result.steps - 1) * batch_tokens / result.train_seconds
    startup, pipeline_rate, count, elapsed = pipeline_throughput(data, config.training.seed, args.pipeline_seconds)
    ratio = pipeline_rate / training_rate
    print(f"training tokens/s: ({result.steps} - 1) x {batch_tokens} / {result.train_seconds:.2f} s = "
          f"{training_rate:,.0f} ({result.mean_step_seconds * 1e3:.1f} ms/step)")
    print(f"input pipeline alone (prefetched_batches): first batch after {startup:.2f} s, then {count} batches in "
          f"{elapsed:.2f} s = {pipeline_rate:,.0f} tokens/s")
    print(f"pipeline/training tokens/s: {ratio:.1f}x (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")
    print(f"non-training share of a {args.budget:g} s evaluation: {share:.1%}; pipeline/training tokens/s: "
          f"{ratio:.0f}x")


if __name__ == "__main__":
    main()
