"""The functional-equivalence cache's fingerprint (after AutoML-Zero's FEC, Real et al. 2020), for TF blocks.

Two programs whose graphs differ (so their canonical hashes differ) may still compute the same function, e.g.
x + x against 2 * x, or a reordered sum. The fingerprint runs the compiled block, at a small fixed size unit and
with weights drawn from a fixed seed, on a fixed random probe batch, and hashes its outputs rounded to 4
significant digits. Every weight is drawn at random for the probe, also the ones whose real initialization is the
identity (SHIFT starts at 0, SCALE at 1): at those values `relu(x + shift)` and `relu(x) + shift` agree, yet they
train differently. The search looks a candidate up by its canonical hash first (an exact duplicate) and then by
this fingerprint; a hit reuses the recorded result without training. The block is only part of the model: the
hash also covers the DNA's macro-options (their canonical form), so the same block with other routing, exits or
patching is a different model.

Equal fingerprints are strong evidence, not proof, of equal functions: weights are drawn per graph node, so two
equivalent programs that place their weights differently get different fingerprints (a missed hit, never a
wrong one, unless two different functions agree on the probe to 4 digits).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

PROBE_UNIT = 4
PROBE_SHAPE = (2, 16)        # [B, S]; the width is the block's d = width_units x PROBE_UNIT
PROBE_SEED = 20210917
DIGITS = 4


def fingerprint(dna, width_units: int = 8) -> str | None:
    """A hash of the block's outputs on the probe batch, or None when it cannot be built or run."""
    from primer_search.compiler import compile_block

    d = width_units * PROBE_UNIT
    probe = np.random.default_rng(PROBE_SEED).normal(size=(*PROBE_SHAPE, d)).astype(np.float32)   # [B, S, d]
    rng = np.random.default_rng(PROBE_SEED + 1)
    try:
        block = compile_block(dna, unit=PROBE_UNIT, width_units=width_units, seed=PROBE_SEED)
        block(probe[:, :1])                           # builds the weights
        for weight in block.weights:                  # in graph order: the same program gets the same draws
            fan_in = weight.shape[-2] if len(weight.shape) >= 2 else 4
            weight.assign(rng.normal(0.0, fan_in ** -0.5, size=weight.shape).astype(np.float32))
        outputs = block(probe).numpy()
    except Exception:  # noqa: BLE001 -- a program that cannot run has no fingerprint; training will say why
        return None
    text = ",".join(f"{value:.{DIGITS - 1}e}" for value in outputs.ravel().tolist())   # 4 significant digits
    if dna.macro_options.any_enabled:
        text += json.dumps(dna.macro_options.canonical(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
