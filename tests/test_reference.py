"""The compiled transformer / primer_ez seeds agree with the hand-written Keras reference blocks."""

import dataclasses

import numpy as np
import pytest

from primer_search.program.compiler import compile_block
from primer_search.program.reference import ReferenceTransformerBlock, copy_weights, reference_for
from primer_search.program.seeds import load_seed

UNIT, D = 4, 32          # heads of 4, d_model 32, d_ff 128
UNITS = (4, 13, 19)      # the attention scale 1/sqrt(head size) must follow the unit (19: tiny.yaml's)


def _randomized_block(seed_name: str, x: np.ndarray, rng: np.random.Generator, unit: int = UNIT):
    """A built compiled block with every weight random (so a wrong mapping of SCALE/SHIFT/taps shows)."""
    block = compile_block(load_seed(seed_name), unit=unit)
    block(x)
    for node in block.graph.nodes:
        for variable in block._weights.get(node.id, {}).values():
            shape = tuple(variable.shape)
            if node.op == "SCALE":
                value = rng.uniform(0.5, 1.5, shape)
            elif node.op in ("SHIFT", "DCONV_3X1"):
                value = rng.normal(0.0, 0.5, shape)
            else:
                value = rng.normal(0.0, 1.0 / np.sqrt(shape[-2]), shape)
            variable.assign(value.astype("float32"))
    return block


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("seed_name", ["transformer", "primer_ez"])
def test_compiled_seed_matches_reference(seed_name, unit):
    rng = np.random.default_rng(unit)
    x = rng.normal(size=(2, 12, 8 * unit)).astype("float32")             # [B, S, D]
    block = _randomized_block(seed_name, x, rng, unit)
    reference = reference_for(block)
    assert reference.primer_ez == (seed_name == "primer_ez")
    assert (reference.num_heads, reference.head_dim, reference.d_ff) == (8, unit, 32 * unit)
    copy_weights(block, reference)
    compiled, expected = np.asarray(block(x)), np.asarray(reference(x))
    assert compiled.shape == expected.shape == x.shape
    assert np.max(np.abs(compiled - expected)) < 1e-5


@pytest.mark.parametrize("primer_ez", [False, True])
def test_reference_is_causal(primer_ez):
    rng = np.random.default_rng(1)
    block = ReferenceTransformerBlock(D, num_heads=8, head_dim=UNIT, d_ff=128, primer_ez=primer_ez)
    x = rng.normal(size=(2, 12, D)).astype("float32")
    y = np.asarray(block(x))
    for t in (0, 5, 11):
        changed = x.copy()
        changed[:, t:] += rng.normal(size=changed[:, t:].shape).astype("float32")
        z = np.asarray(block(changed))
        np.testing.assert_array_equal(z[:, :t], y[:, :t])             # the past never sees the future
        assert np.max(np.abs(z[:, t] - y[:, t])) > 1e-3               # ... but position t does see itself


def test_copy_weights_rejects_other_programs():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 4, D)).astype("float32")
    dna = load_seed("primer_ez")
    main = dna.subprograms[0]
    convolved = tuple(dataclasses.replace(ins, op="CONV_3X1") if ins.op == "CONV_1X1" else ins
                      for ins in main.instructions)                 # a 3-tap output projection
    block = compile_block(dna.replace(subprograms=(dataclasses.replace(main, instructions=convolved),)
                                      + dna.subprograms[1:]), unit=UNIT)
    block(x)
    with pytest.raises(ValueError, match="copy_weights"):
        copy_weights(block, ReferenceTransformerBlock(D, 8, UNIT, 128, primer_ez=True))
