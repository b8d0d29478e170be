"""Causal depthwise convolution under XLA: fused shifted slices against banded matrix products.

Times one forward and backward pass (gradients for the input and the taps) of each form, compiled with
`jit_compile=True`, on [B, 1, S, W] inputs of 4096 tokens, alternating the two forms round by round; a ratio is
the median over rounds of slices time / banded time (above 1: banded is faster). `primitives.parametric` uses
the banded form from `BANDED_MIN_TAPS` taps on; this benchmark is what that threshold rests on.

    python bench/depthwise_forms.py [--width 104] [--rounds 6] [--calls 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from primitives.parametric import BANDED_MIN_TAPS, _banded_depthwise, _sliced_depthwise  # noqa: E402


def forward_backward(form, taps: tf.Variable):
    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(form(x, taps)))
        return tape.gradient(loss, [x, taps])
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=104)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per form per round")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; width {args.width}, 4096 tokens; "
          f"the banded form is used from {BANDED_MIN_TAPS} taps on")
    ratios = {}
    for length in (64, 128, 256):
        x = tf.constant(rng.normal(size=(4096 // length, 1, length, args.width)).astype(np.float32))
        for k in (3, 7, 15, 31):
            taps = tf.Variable(rng.normal(size=(1, k, args.width)).astype(np.float32))
            steps = {"slices": forward_backward(_sliced_depthwise, taps),
                     "banded": forward_backward(_banded_depthwise, taps)}
            for step in steps.values():
                [g.numpy() for g in step(x)]                                          # compile
            times = {name: [] for name in steps}
            for r in range(args.rounds):
                for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        [g.numpy() for g in steps[name](x)]
                    times[name].append((time.perf_counter() - start) / args.calls)
            ratio = statistics.median(a / b for a, b in zip(times["slices"], times["banded"]))
            ratios[length, k] = ratio
            print(f"S {length:3}  k {k:2}  slices {1000 * statistics.median(times['slices']):6.2f} ms  "
                  f"banded {1000 * statistics.median(times['banded']):6.2f} ms  slices/banded {ratio:5.2f}",
                  flush=True)
    print("slices/banded time at k 3, 7, 15, 31 (S 64): "
          + ", ".join(f"{ratios[64, k]:.2f}" for k in (3, 7, 15, 31)))


if __name__ == "__main__":
    main()
