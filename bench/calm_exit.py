"""CALM early exit: how many blocks a token needs at a quality loss of at most 1%, and what that saves in sampling.

A Transformer with CALM exits after every block (the DNA's defaults: linear loss weights, confidence = softmax
top-1 minus top-2) is trained for --budget seconds (default 120) on the benchmark corpus with the tiny config's
training settings, --layers blocks (default 8) and a 4M-8M parameter band. On the validation set the never-exit
loss (the full model) is the reference; for each threshold of a sweep the early-exit loss and the average number of
blocks per token are measured (`CalmLanguageModel.early_exit_sums`). The threshold kept is the one with the fewest
blocks whose loss is at most 1% above the reference (Schuster et al. 2022 calibrate it to a quality tolerance in
the same way). Then --tokens tokens (default 256) are generated with a cache at that threshold and with no exit
(`primer_search.lm.sampling`, batch 1; the two taking turns for five rounds, median) to measure the step time.
Schuster et al. report a "speedup of up to x3" in decoding with early exit.

    python bench/calm_exit.py [--budget 120] [--layers 8] [--tokens 256] [--set section.key=value ...]

The last line printed is the headline: blocks per token and the sampling speedup at <= 1% quality loss.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from macro_common import config, paired_step_seconds, parse_args, train

from primer_search.lm.data import load_data
from primer_search.lm.sampling import Sampler
from primer_search.program.macro_options import MacroOptions
from primer_search.program.seeds import load_seed

THRESHOLDS = (0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05)
TOLERANCE = 0.01


def sweep(model, validation, batch_size: int) -> dict[float, tuple[float, float]]:
    """{threshold: (early-exit loss in nats/token, blocks per token)} over the validation set; inf never exits."""
    sums_of = tf.function(model.early_exit_sums)
    out = {}
    for threshold in (math.inf,) + THRESHOLDS:
        totals = np.zeros(4)
        for start in range(0, len(validation.inputs), batch_size):
            inputs = tf.constant(validation.inputs[start:start + batch_size])
            targets = tf.constant(validation.targets[start:start + batch_size])
            totals += [float(v) for v in sums_of(inputs, targets, tf.constant(threshold, tf.float32))]
        nll, layers, _, count = totals
        out[threshold] = (nll / count, layers / count)
    return out


def main() -> None:
    args = parse_args(__doc__, budget=120.0, tokens=256)
    cfg = config(args)
    dna = load_seed("transformer").replace(macro_options=MacroOptions.from_dict({"calm": {"enabled": True}}))
    model, arch, metrics = train(dna, cfg, "CALM")
    data = load_data(cfg.data, cfg.model.vocab_size)
    results = sweep(model, data.validation, data.config.batch_size)
    full_loss, full_layers = results[math.inf]
    print(f"{'threshold':>9}  {'loss':>7}  {'change':>7}  {'blocks/token':>12}")
    for threshold, (loss, layers) in results.items():
        print(f"{threshold:>9}  {loss:7.4f}  {loss / full_loss - 1:+7.2%}  {layers:12.2f}")
    within = [(layers, t, loss) for t, (loss, layers) in results.items() if loss <= full_loss * (1 + TOLERANCE)]
    layers, threshold, loss = min(within)
    timed = paired_step_seconds({"full": Sampler(model, args.tokens + 1, threshold=math.inf),
                                 "exit": Sampler(model, args.tokens + 1, threshold=threshold)}, args.tokens)
    (full_seconds, _), (exit_seconds, run) = timed["full"], timed["exit"]
    print(f"sampling at threshold {threshold}: {exit_seconds * 1000:.2f} ms/token, "
          f"{np.mean(run.layers_run):.2f} blocks/token; never exiting: {full_seconds * 1000:.2f} ms/token")
    print(f"CALM at <= 1% quality loss (threshold {threshold}, {loss / full_loss - 1:+.2%}): {layers:.2f} of "
          f"{full_layers:.0f} blocks per token ({full_layers / layers:.2f}x fewer), sampling "
          f"{full_seconds / exit_seconds:.2f}x faster (paper: up to 3x)")


if __name__ == "__main__":
    main()
