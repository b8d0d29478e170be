"""Training speed of the compiled Transformer seed against the hand-written Keras reference block.

Both language models are built and trained in this one process, on the same random tokens:
    token embedding (vocab 8192) -> 2 decoder blocks -> LayerNormalization -> Dense(vocab) logits
with d_model 128 (unit 16: 8 heads of 16, d_ff 512), sequence 64, batch 32, Adam and sparse cross-entropy, in a
custom `tf.function` train step, without XLA and/or with `jit_compile=True`. The blocks are
`compile_block(transformer seed)` and `primer_search.reference.ReferenceTransformerBlock`. After a warm-up the
two models are timed alternately in rounds (order flipped every round) to spread machine noise over both.
Also reported: how long `compile_block` takes per seed (DNA -> Keras layer, weights built by a first call).

    python bench/compiler_speed.py [--steps 20] [--rounds 3] [--xla off|on|both]

The last line printed is the headline: the compiled/reference training tokens/s ratio without XLA (with XLA for
--xla on), as the median over rounds of the ratio within each round, which is robust to load changing between
rounds on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from primer_search.compiler import compile_block  # noqa: E402
from primer_search.reference import ReferenceTransformerBlock  # noqa: E402
from primer_search.seeds import SEED_NAMES, load_seed  # noqa: E402

VOCAB, UNIT, HEADS, D_FF, SEQ, BATCH, LAYERS = 8192, 16, 8, 512, 64, 32, 2
D_MODEL = 8 * UNIT
WARMUP_STEPS = 3


def language_model(make_block) -> keras.Model:
    model = keras.Sequential([keras.Input((SEQ,), dtype="int32"),           # [B, S]
                              keras.layers.Embedding(VOCAB, D_MODEL)]       # [B, S, D]
                             + [make_block(i) for i in range(LAYERS)]       # [B, S, D]
                             + [keras.layers.LayerNormalization(),
                                keras.layers.Dense(VOCAB)])                 # [B, S, V]
    model.build((None, SEQ))
    return model


def train_step_fn(model: keras.Model, jit_compile: bool):
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=jit_compile)
    def step(tokens):                                                       # [B, S + 1]
        with tf.GradientTape() as tape:
            logits = model(tokens[:, :-1], training=True)                   # [B, S, V]
            loss = loss_fn(tokens[:, 1:], logits)
        grads = tape.gradient(loss, model.trainable_variables)
        missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
        if missing:                                                         # checked once, at tracing
            raise RuntimeError(f"no gradient for {missing}")
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def time_compile_block(repeats: int = 5) -> None:
    x = tf.zeros([1, SEQ, D_MODEL])
    print(f"compile_block time (DNA -> Keras layer + first call building weights), unit {UNIT}, d {D_MODEL}:")
    for name in SEED_NAMES:
        dna = load_seed(name)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            block = compile_block(dna, unit=UNIT)
            block(x)
            times.append(time.perf_counter() - start)
        print(f"  {name:12s} first {times[0] * 1e3:7.1f} ms   median of {repeats} "
              f"{statistics.median(times) * 1e3:7.1f} ms   ({len(block.graph.nodes)} graph nodes, "
              f"{block.count_params():,} params)")
    start = time.perf_counter()
    ReferenceTransformerBlock(D_MODEL, HEADS, UNIT, D_FF)(x)
    print(f"  {'reference':12s} first {(time.perf_counter() - start) * 1e3:7.1f} ms   (hand-written block, "
          "for comparison)")


def benchmark(models: dict, jit_compile: bool, steps: int, rounds: int, batches) -> float:
    """Time `rounds` rounds of `steps` steps per model, models alternating; return the compiled/reference ratio.

    The ratio is the median over rounds of the ratio within a round (the two models ran back to back, so they
    saw about the same machine load); the ratio of the total tokens/s is printed beside it.
    """
    step_fns = {name: train_step_fn(model, jit_compile) for name, model in models.items()}
    for name, step in step_fns.items():
        start = time.perf_counter()
        for i in range(WARMUP_STEPS):
            loss = step(batches[i % len(batches)])
        loss.numpy()
        print(f"  {name:9s} warm-up ({WARMUP_STEPS} steps, includes tracing"
              f"{' and XLA compilation' if jit_compile else ''}): {time.perf_counter() - start:.1f} s, "
              f"loss {float(loss):.3f}")
    elapsed = {name: [] for name in models}
    order = list(models)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            step = step_fns[name]
            start = time.perf_counter()
            for i in range(steps):
                loss = step(batches[i % len(batches)])
            loss.numpy()
            elapsed[name].append(time.perf_counter() - start)
    tokens_per_round = steps * BATCH * SEQ
    rates = {}
    for name, times in elapsed.items():
        rates[name] = tokens_per_round * rounds / sum(times)
        per_round = " ".join(f"{tokens_per_round / t:8.0f}" for t in times)
        print(f"  {name:9s} {rates[name]:9.0f} tokens/s  ({sum(times) / (rounds * steps) * 1e3:6.1f} ms/step; "
              f"per round: {per_round})")
    paired = [r / c for c, r in zip(elapsed["compiled"], elapsed["reference"])]   # time ratio = rate ratio
    ratio = statistics.median(paired)
    print(f"  compiled/reference: median of per-round ratios {ratio:.3f} (rounds: "
          f"{' '.join(f'{p:.3f}' for p in paired)}), ratio of totals {rates['compiled'] / rates['reference']:.3f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--xla", choices=("off", "on", "both"), default="both")
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs; vocab {VOCAB}, "
          f"{LAYERS} blocks, d {D_MODEL}, {HEADS} heads of {UNIT}, d_ff {D_FF}, seq {SEQ}, batch {BATCH}")
    time_compile_block()

    keras.utils.set_random_seed(0)
    dna = load_seed("transformer")
    models = {"compiled": language_model(lambda i: compile_block(dna, unit=UNIT, seed=i + 1)),
              "reference": language_model(lambda i: ReferenceTransformerBlock(D_MODEL, HEADS, UNIT, D_FF))}
    counts = {name: model.count_params() for name, model in models.items()}
    print(f"parameters: {counts}")
    if len(set(counts.values())) != 1:
        raise SystemExit("the two models should have the same parameter count")
    rng = np.random.default_rng(0)
    batches = [tf.constant(rng.integers(0, VOCAB, (BATCH, SEQ + 1)), tf.int32) for _ in range(4)]

    modes = {"off": [False], "on": [True], "both": [False, True]}[args.xla]
    ratios = {}
    for jit_compile in modes:
        label = "XLA" if jit_compile else "no XLA"
        print(f"training, {label}: {args.rounds} rounds x {args.steps} steps per model")
        ratios[label] = benchmark(models, jit_compile, args.steps, args.rounds, batches)
    for label in sorted(ratios, key=lambda k: k == "no XLA"):   # the no-XLA headline goes last
        print(f"compiled/reference tokens/s ratio ({label}): {ratios[label]:.2f}")


if __name__ == "__main__":
    main()
