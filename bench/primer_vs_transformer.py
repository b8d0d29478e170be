"""Primer-EZ against the Transformer under one training budget on a real corpus: the Primer paper's speedup factor.

Both seeds are evaluated one after the other with `primer_search.lm.fitness.evaluate` under the same config: the
tiny CPU config's model sizing and training hyperparameters (search_configs/tiny.yaml: 2 layers, width 8
units, each model sized into the 0.4M-1.2M parameter band by its own unit; Adafactor, peak learning rate 0.01,
100 warmup steps; XLA), a seconds budget of training steps (--budget, default 300 s per model; the first,
compiling step and evaluations are not spent from it; `training.timeout_seconds` is lifted), and a validation
checkpoint every --every of the budget (default 5%: 19 checkpoints, then the final evaluation). Nothing is tuned
per seed. Each point of a curve is (training compute so far, validation loss in nats/token), compute being
    seconds   `train_seconds` at the checkpoint (step time, the first compiling step excluded)
    FLOPs     steps x flops_per_token x batch_tokens (the analytic training FLOPs of `primer_search.program.cost`)
Speedup factor (So et al. 2021, section 4): the compute the Transformer spent to reach its final validation loss,
divided by the compute Primer-EZ needs to reach that same loss, read off Primer-EZ's curve by linear
interpolation between the two points around its first crossing. If Primer-EZ is already below that loss at its
first checkpoint the factor is a lower bound (">="); if it never gets there, the factor is below (total Transformer
compute / total Primer-EZ compute) and is printed as "not reached (< x)".

Corpora (--data):
    wikitext2 (default)  WikiText-2 as stored in <repo>/../shared/data/wikitext-2 (--wikitext-dir): only valid.txt
        and test.txt exist there, so valid.txt (~214K words) trains and test.txt is held out for validation (the
        first --validation-tokens tokens of it, in whole lines). The files are used as they are, via
        data.source=text_files with document: line: every non-blank line is one document ending with the
        end-of-document token (blank lines are dropped by the loader); heading lines (" = Title = ",
        " = = Section = = ") are kept as short documents, since they are part of WikiText's text and of its
        usual perplexities; the corpus's literal "<unk>" and " @-@ " / " @.@ " / " @,@ " markers are kept as text.
        Training documents (lines) are shuffled, so paragraphs of different articles interleave. The corpus is small
        (~0.34M tokens): a long budget runs many epochs over it, and the output reports how many.
    lm1b  the One Billion Word benchmark through tensorflow-datasets (data.source=lm1b, prepared by the user;
        --tfds-data-dir), with the config's default splits.
The subword vocabulary is --vocab (default 8192) pieces if SentencePiece can learn that many from the training
text, else the largest it reports possible (WikiText-2's valid.txt allows 7651). --set section.key=value overrides
any config key last (e.g. --set model.num_layers=4).

The two runs happen one after the other on a possibly shared machine: a seconds budget gives the model that ran
while the machine was busier fewer steps, which the printed tokens/s shows; the FLOPs figure does not depend on it.

    python bench/primer_vs_transformer.py [--data wikitext2|lm1b] [--budget 300] [--every 0.05] [--vocab 8192]
                                          [--validation-tokens 65536] [--config search_configs/tiny.yaml]
                                          [--cache-dir DIR] [--set section.key=value ...]

The last line printed is the headline: the speedup factor measured in training seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from primer_search.config import load_config  # noqa: E402
from primer_search.lm.data import load_data  # noqa: E402
from primer_search.lm.fitness import evaluate  # noqa: E402
from primer_search.program.seeds import load_seed  # noqa: E402
from primer_search.search.speedup import compute_to_reach as reach  # noqa: E402
from bench_cli import CONFIGS, REPO  # noqa: E402

DEFAULT_WIKITEXT = REPO.parent / "shared" / "data" / "wikitext-2"
SEEDS = ("transformer", "primer_ez")
LABELS = {"transformer": "Transformer", "primer_ez": "Primer-EZ"}


def data_overrides(args) -> list[str]:
    if args.data == "lm1b":
        items = ["data.source=lm1b"]
        if args.tfds_data_dir:
            items.append(f"data.tfds_data_dir={json.dumps(args.tfds_data_dir)}")
        return items
    root = pathlib.Path(args.wikitext_dir)
    train, valid = root / "valid.txt", root / "test.txt"
    missing = [str(p) for p in (train, valid) if not p.is_file()]
    if missing:
        raise SystemExit(f"WikiText-2 not found: missing {', '.join(missing)}. Put valid.txt and test.txt of "
                         f"WikiText-2 there, pass --wikitext-dir, or use --data lm1b.")
    return ["data.source=text_files", f"data.train_files={json.dumps([str(train)])}",
            f"data.validation_files={json.dumps([str(valid)])}", "data.document=line"]


def load_with_vocab(args, base: list[str]):
    """(config, data) at --vocab pieces, or the largest the corpus allows when SentencePiece says it is fewer."""
    vocab = args.vocab
    for _ in range(2):
        config = load_config(args.config, base + [f"model.vocab_size={vocab}"] + args.set)
        try:
            return config, load_data(config.data, config.model.vocab_size)
        except ValueError as err:
            limit = re.search(r"expected at most (\d+) for this corpus", str(err))
            if not limit or int(limit.group(1)) >= vocab:
                raise
            print(f"vocabulary: {vocab} pieces is more than SentencePiece can learn from this training text; "
                  f"using the largest it allows, {limit.group(1)}")
            vocab = int(limit.group(1))
    raise SystemExit("could not train a tokenizer at the reported largest vocabulary")


def curve(result, batch_tokens: int) -> list[tuple[str, int, float, float, float]]:
    """[(label, step, train seconds, training FLOPs, validation loss)]: the checkpoints, then the final point."""
    flops_per_step = result.flops_per_token * batch_tokens
    points = [(f"{c['fraction']:.0%}", c["step"], c["train_seconds"], c["step"] * flops_per_step,
               c["validation_loss"]) for c in result.checkpoints]
    points.append(("final", result.steps, result.train_seconds, result.steps * flops_per_step,
                   result.validation_loss))
    return points


def compute_to_reach(points, target: float, axis: int) -> tuple[str, float]:
    """`speedup.compute_to_reach` along one compute axis of these points (2: seconds, 3: FLOPs)."""
    keys = ("label", "step", "train_seconds", "flops", "validation_loss")
    return reach([dict(zip(keys, point)) for point in points], target, "validation_loss", keys[axis])


def speedup(reference, candidate, axis: int) -> tuple[str, float]:
    """(text, value) of the speedup factor along one compute axis (2: seconds, 3: FLOPs)."""
    target, total = reference[-1][4], reference[-1][axis]
    kind, compute = compute_to_reach(candidate, target, axis)
    if kind == "at":
        return f"{total / compute:.2f}", total / compute
    if kind == "before":
        return f">= {total / compute:.2f} (below the target already at its first checkpoint)", total / compute
    return f"not reached (< {total / compute:.2f})", math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("wikitext2", "lm1b"), default="wikitext2")
    parser.add_argument("--wikitext-dir", default=str(DEFAULT_WIKITEXT))
    parser.add_argument("--tfds-data-dir", help="lm1b: the TFDS data directory (default: TFDS's own)")
    parser.add_argument("--config", default=str(CONFIGS / "tiny.yaml"))
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training per model")
    parser.add_argument("--every", type=float, default=0.05, help="checkpoint spacing, as a budget fraction")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--validation-tokens", type=int, default=65536)
    parser.add_argument("--cache-dir", help="tokenizer cache (default: the library's, ~/.cache/primer_search)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key (applied last; repeatable)")
    args = parser.parse_args()
    if args.budget <= 0 or not 0 < args.every < 1 or args.vocab < 2 or args.validation_tokens < 1:
        parser.error("--budget must be positive, --every in (0, 1), --vocab >= 2, --validation-tokens >= 1")

    count = round(1 / args.every)
    fractions = sorted({round(i * args.every, 6) for i in range(1, count + 1)} - {1.0})
    fractions = [f for f in fractions if 0 < f < 1]
    base = data_overrides(args) + [
        "training.budget_kind=seconds", f"training.budget={args.budget}", "training.timeout_seconds=null",
        "training.jit_compile=true",
        f"training.checkpoints={json.dumps(fractions)}", f"data.validation_tokens={args.validation_tokens}"]
    if args.cache_dir:
        base.append(f"data.cache_dir={json.dumps(args.cache_dir)}")

    start = time.perf_counter()
    config, data = load_with_vocab(args, base)
    batch_tokens = config.data.batch_tokens
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; config {args.config} with the overrides above")
    print(f"corpus {args.data}: vocab {data.vocab_size} ({getattr(data.tokenizer, 'name', '?')}); validation "
          f"{data.validation.num_documents} documents, {data.validation.num_targets:,} target tokens, "
          f"{data.validation.num_bytes:,} bytes; load_data {time.perf_counter() - start:.1f} s")
    train_tokens = None
    if hasattr(data.source, "train"):          # in-memory corpora: count the training tokens for the epoch figure
        train_tokens = sum(len(ids) + 1 for ids in data.tokenizer.encode(list(data.source.train)))
        print(f"training text: {len(data.source.train):,} documents, {train_tokens:,} tokens (end tokens included)")
    print(f"budget {args.budget:g} s of training per model, {len(fractions)} checkpoints every {args.every:.0%}, "
          f"batch {batch_tokens} tokens (sequence {config.data.sequence_length}), "
          f"{config.model.num_layers} layers, band {list(config.model.param_band)}")

    results, curves = {}, {}
    for name in SEEDS:
        run_start = time.perf_counter()
        result = evaluate(load_seed(name), config)
        if result.status != "ok":
            raise SystemExit(f"{name}: evaluation ended with status {result.status}: {result.error}")
        results[name], curves[name] = result, curve(result, batch_tokens)
        rate = (result.steps - 1) * batch_tokens / result.train_seconds
        epochs = f", {result.tokens_seen / train_tokens:.1f} epochs" if train_tokens else ""
        print(f"{LABELS[name]:11s} {result.parameter_count:,} params (unit {result.unit}, "
              f"{result.flops_per_token / 1e6:.2f} MFLOPs/token); {result.steps} steps{epochs}; "
              f"train {result.train_seconds:.1f} s ({rate:,.0f} tokens/s), compile {result.compile_seconds:.1f} s, "
              f"eval {result.eval_seconds:.1f} s, wall {time.perf_counter() - run_start:.1f} s; final loss "
              f"{result.validation_loss:.4f} nats/token, {result.bits_per_byte:.4f} bits/byte")

    print()
    header = "           " + "".join(f"| {LABELS[n]:^37s}" for n in SEEDS)
    print(header)
    print(f"{'budget':>10s} " + "| step  train s  TFLOPs   val loss " * len(SEEDS))
    rows = max(len(c) for c in curves.values())
    for i in range(rows):
        label = next(c[i][0] for c in curves.values() if i < len(c))
        cells = []
        for name in SEEDS:
            if i < len(curves[name]):
                _, step, seconds, flops, loss = curves[name][i]
                cells.append(f"| {step:5d} {seconds:7.1f} {flops / 1e12:7.2f} {loss:10.4f} ")
            else:
                cells.append("|" + " " * 38)
        print(f"{label:>10s} " + "".join(cells))
    print()

    for name in SEEDS:
        losses = [p[4] for p in curves[name]]
        best = min(range(len(losses)), key=losses.__getitem__)
        if best != len(losses) - 1:
            print(f"WARNING: {LABELS[name]}'s validation loss is not at its lowest at the end: {losses[best]:.4f} at "
                  f"{curves[name][best][0]} of the budget, {losses[-1]:.4f} final (overfitting or noise); the "
                  f"speedup compares final losses as the paper does")
    reference, candidate = curves["transformer"], curves["primer_ez"]
    target = reference[-1][4]
    for axis, unit in ((2, "s"), (3, "TFLOPs")):
        scale = 1 if axis == 2 else 1e12
        kind, compute = compute_to_reach(candidate, target, axis)
        where = {"at": "reaches it at", "before": "is below it already at", "never": "never reaches it in"}[kind]
        print(f"Transformer final loss {target:.4f} after {reference[-1][axis] / scale:.2f} {unit}; Primer-EZ "
              f"{where} {compute / scale:.2f} {unit}")
    flops_text, _ = speedup(reference, candidate, 3)
    seconds_text, _ = speedup(reference, candidate, 2)
    print(f"speedup factor in training FLOPs: {flops_text}")
    print(f"speedup factor of Primer-EZ over the Transformer (training seconds, {args.data}, {args.budget:g} s "
          f"budget): {seconds_text}")


if __name__ == "__main__":
    main()
