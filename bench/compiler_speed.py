"""Training speed of compiled seed blocks against hand-written Keras blocks, and of Primer-EZ against the Transformer.

Every language model is built and trained in this one process, on the same random tokens:
    token embedding -> 2 decoder blocks -> LayerNormalization -> Dense(vocab) logits
with Adam and sparse cross-entropy in a custom `tf.function` train step, without XLA and/or with
`jit_compile=True`. Three comparisons, each timed alternately in rounds (order flipped every round) after a
warm-up, so machine noise spreads over both models of a pair:
    transformer  compiled Transformer seed vs `primer_search.program.reference.ReferenceTransformerBlock` (Keras
                 MultiHeadAttention), vocab 8192, d 128 (unit 16: 8 heads of 16, d_ff 512), batch 32 x 64
    primer_ez    compiled Primer-EZ seed vs the hand-written Primer-EZ (`primer_ez=True`: Dense Q/K/V, causal
                 ZeroPadding1D + DepthwiseConv1D, dot-product attention), same shapes
    tiny         compiled Primer-EZ vs compiled Transformer at `search_configs/tiny.yaml`'s size: vocab 4096,
                 d 152 (unit 19), 4096-token batches of 64 x 64
    discovery    the same at `search_configs/discovery.yaml`'s size: vocab 1024, d 104 (unit 13), 64 x 64
Also reported: how long `compile_block` takes per seed (DNA -> Keras layer, weights built by a first call).

    python bench/compiler_speed.py [--steps 10] [--rounds 3] [--xla off|on|both]
                                   [--compare transformer,primer_ez,tiny,discovery]

Each ratio is the median over rounds of the tokens/s ratio within a round, which is robust to load changing
between rounds on a shared machine. Targets: compiled/hand-written >= 0.95; Primer-EZ/Transformer >= 0.90 (its
step time within 10%). The last line printed holds every ratio measured.
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

from primer_search.program import cost  # noqa: E402
from primer_search.program.compiler import compile_block  # noqa: E402
from primer_search.program.reference import ReferenceTransformerBlock  # noqa: E402
from primer_search.program.seeds import SEED_NAMES, load_seed  # noqa: E402

SEQ, LAYERS, HEADS = 64, 2, 8
WARMUP_STEPS = 3
# (vocabulary, size unit, batch rows): the unit gives heads of `unit`, d = 8 units, d_ff = 32 units
SIZES = {"small": (8192, 16, 32), "tiny": (4096, 19, 64), "discovery": (1024, 13, 64)}
COMPARISONS = {                   # name: (size, (first model, second model)); ratio = first / second tokens/s
    "transformer": ("small", ("compiled transformer", "reference transformer")),
    "primer_ez": ("small", ("compiled primer_ez", "reference primer_ez")),
    "tiny": ("tiny", ("compiled primer_ez", "compiled transformer")),
    "discovery": ("discovery", ("compiled primer_ez", "compiled transformer")),
}
TARGETS = {"transformer": 0.95, "primer_ez": 0.95, "tiny": 0.90, "discovery": 0.90}
SEED_PAIRS = ("tiny", "discovery")    # Primer-EZ against the Transformer: parameter counts differ slightly


def make_block(kind: str, unit: int, index: int) -> keras.layers.Layer:
    """A decoder block: "compiled NAME" (a seed compiled at `unit`) or "reference NAME" (hand-written)."""
    how, name = kind.split()
    if how == "compiled":
        return compile_block(load_seed(name), unit=unit, seed=index + 1)
    return ReferenceTransformerBlock(8 * unit, HEADS, unit, 32 * unit, primer_ez=name == "primer_ez")


def language_model(kind: str, size: str) -> keras.Model:
    vocab, unit, _ = SIZES[size]
    model = keras.Sequential([keras.Input((SEQ,), dtype="int32"),           # [B, S]
                              keras.layers.Embedding(vocab, 8 * unit)]      # [B, S, D]
                             + [make_block(kind, unit, i) for i in range(LAYERS)]   # [B, S, D]
                             + [keras.layers.LayerNormalization(),
                                keras.layers.Dense(vocab)])                 # [B, S, V]
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
    _, unit, _ = SIZES["small"]
    x = tf.zeros([1, SEQ, 8 * unit])
    print(f"compile_block time (DNA -> Keras layer + first call building weights), unit {unit}, d {8 * unit}:")
    for name in SEED_NAMES:
        dna = load_seed(name)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            block = compile_block(dna, unit=unit)
            block(x)
            times.append(time.perf_counter() - start)
        print(f"  {name:12s} first {times[0] * 1e3:7.1f} ms   median of {repeats} "
              f"{statistics.median(times) * 1e3:7.1f} ms   ({len(block.graph.nodes)} graph nodes, "
              f"{block.count_params():,} params)")
    start = time.perf_counter()
    make_block("reference transformer", unit, 0)(x)
    print(f"  {'reference':12s} first {(time.perf_counter() - start) * 1e3:7.1f} ms   (hand-written block, "
          "for comparison)")


def benchmark(models: dict, jit_compile: bool, steps: int, rounds: int, batches, tokens_per_step: int) -> float:
    """Time `rounds` rounds of `steps` steps per model, the two models alternating; return the first model's
    tokens/s over the second's: the median over rounds of the ratio within a round (the two ran back to back, so
    they saw about the same machine load); the ratio of the totals is printed beside it."""
    step_fns = {name: train_step_fn(model, jit_compile) for name, model in models.items()}
    for name, step in step_fns.items():
        start = time.perf_counter()
        for i in range(WARMUP_STEPS):
            loss = step(batches[i % len(batches)])
        loss.numpy()
        print(f"  {name:22s} warm-up ({WARMUP_STEPS} steps, includes tracing"
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
    rates = {}
    for name, times in elapsed.items():
        rates[name] = tokens_per_step * steps * rounds / sum(times)
        per_round = " ".join(f"{tokens_per_step * steps / t:8.0f}" for t in times)
        print(f"  {name:22s} {rates[name]:9.0f} tokens/s  ({sum(times) / (rounds * steps) * 1e3:6.1f} ms/step; "
              f"per round: {per_round})")
    first, second = order
    paired = [b / a for a, b in zip(elapsed[first], elapsed[second])]          # time ratio = rate ratio
    ratio = statistics.median(paired)
    print(f"  {first}/{second}: median of per-round ratios {ratio:.3f} (rounds: "
          f"{' '.join(f'{p:.3f}' for p in paired)}), ratio of totals {rates[first] / rates[second]:.3f}")
    return ratio


def compare(name: str, modes, steps: int, rounds: int) -> dict[str, float]:
    size, kinds = COMPARISONS[name]
    vocab, unit, rows = SIZES[size]
    keras.utils.set_random_seed(0)
    models = {kind: language_model(kind, size) for kind in kinds}
    counts = {kind: model.count_params() for kind, model in models.items()}
    print(f"\n[{name}] vocab {vocab}, {LAYERS} blocks, d {8 * unit}, {HEADS} heads of {unit}, d_ff {32 * unit}, "
          f"seq {SEQ}, batch {rows}; parameters: {counts}")
    if name not in SEED_PAIRS and len(set(counts.values())) != 1:
        raise SystemExit(f"{name}: the two models should have the same parameter count")
    if name in SEED_PAIRS:
        flops = {kind: cost.training_flops_per_token(models[kind].layers[1].graph, unit, SEQ, LAYERS, vocab)
                 for kind in kinds}
        print(f"  training FLOPs per token: {flops} (ratio {flops[kinds[0]] / flops[kinds[1]]:.4f})")
    rng = np.random.default_rng(0)
    batches = [tf.constant(rng.integers(0, vocab, (rows, SEQ + 1)), tf.int32) for _ in range(4)]
    ratios = {}
    for jit_compile in modes:
        label = "XLA" if jit_compile else "no XLA"
        print(f"training, {label}: {rounds} rounds x {steps} steps per model")
        ratios[label] = benchmark(models, jit_compile, steps, rounds, batches, rows * SEQ)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--xla", choices=("off", "on", "both"), default="both")
    parser.add_argument("--compare", default=",".join(COMPARISONS),
                        help=f"comma-separated, from {', '.join(COMPARISONS)}")
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")
    names = args.compare.split(",")
    if unknown := [n for n in names if n not in COMPARISONS]:
        parser.error(f"--compare: unknown {', '.join(unknown)}; expected some of {', '.join(COMPARISONS)}")

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs")
    time_compile_block()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.xla]
    results = {name: compare(name, modes, args.steps, args.rounds) for name in names}
    labels = {"transformer": "compiled/hand-written transformer", "primer_ez": "compiled/hand-written primer_ez",
              "tiny": "primer_ez/transformer at the tiny size",
              "discovery": "primer_ez/transformer at the discovery size"}
    print("\n" + "; ".join(f"{labels[name]} {', '.join(f'{r:.2f} ({label})' for label, r in ratios.items())} "
                            f"(target >= {TARGETS[name]:.2f})" for name, ratios in results.items()))


if __name__ == "__main__":
    main()
