"""Token-by-token decoding with a cache (`primer_search.lm.decoding`) equals the full forward pass, row by row."""

import collections
import random

import numpy as np
import pytest
import tensorflow as tf

from primitives import FEATURES
from primer_search.lm.decoding import BlockDecoder, decode_sequence
from primer_search.program.compiler import compile_block
from primer_search.program.decoding_rules import cacheable, decoding_rule, fallback_reason
from primer_search.program.dna import DNA, Instruction, Subprogram
from primer_search.program.search_space import random_dna
from primer_search.program.seeds import SEED_NAMES, load_seed

B, S, WIDTH = 2, 12, 8
FAMILIES = {
    "any": None,
    "sequence": ("T_MAT_MUL", "MAT_MUL", "EXP", "RED_SUM", "RED_MAX", "RED_MIN", "RED_PROD", "RED_MEAN", "CUM_SUM",
                 "CUM_PROD", "CONV_3X1", "DCONV_3X1", "CONV_1X1", "DIVIDE", "ADD", "SCALE", "MASK"),
    "positions": ("T_MAT_MUL", "T_MAT_MUL", "MAT_MUL", "MAT_MUL", "EXP", "MASK", "RED_SUM", "RED_MAX", "DIVIDE",
                  "CONV_1X1", "ADD", "MULTIPLY", "TANH", "SCALE", "SHIFT", "CONV_7X1", "DCONV_7X1", "CUM_SUM",
                  "CUM_PROD", "SIGMOID"),
}


def _program(*instructions):
    """One subprogram; states 0 and 1 are the input, instruction i writes state i + 2. Widths in units."""
    return DNA(subprograms=(Subprogram(tuple(instructions)),), constants=(0.0, 0.5), dimensions=(1, 2, 4, 8, 12, 16))


Ins = Instruction
PROGRAMS = {
    # unnormalized attention: T_MAT_MUL keys, MAT_MUL values
    "values": _program(Ins("CONV_1X1", 0, dim=2), Ins("CONV_1X1", 0, dim=2), Ins("T_MAT_MUL", 2, 3), Ins("TANH", 4),
                       Ins("MASK", 5), Ins("MAT_MUL", 6, 0), Ins("ADD", 7, 0)),
    # T_MAT_MUL of two positions tensors: a square keys history
    "square_keys": _program(Ins("T_MAT_MUL", 0, 0), Ins("SIN", 2), Ins("T_MAT_MUL", 3, 2), Ins("MULTIPLY", 4, 0)),
    # T_MAT_MUL of features x positions (keys stored as causal means) and positions x features
    "mixed_keys": _program(Ins("T_MAT_MUL", 0, 0), Ins("TANH", 2), Ins("T_MAT_MUL", 0, 3), Ins("T_MAT_MUL", 3, 0),
                           Ins("ADD", 4, 5), Ins("RED_MAX", 6), Ins("MULTIPLY", 0, 7)),
    # MASK on features depends on the position itself; running sums and products on features
    "mask_and_running": _program(Ins("MASK", 0), Ins("CUM_SUM", 2), Ins("TANH", 3), Ins("CUM_PROD", 4),
                                 Ins("ADD", 5, 3)),
    # long convolutions, one of them over a positions tensor (its causal mean)
    "long_convs": _program(Ins("CONV_31X1", 0, dim=1), Ins("T_MAT_MUL", 2, 2), Ins("DCONV_7X1", 3),
                           Ins("CONV_15X1", 4, dim=3), Ins("DCONV_15X1", 0), Ins("ADD", 5, 6)),
    # branched: 4 heads of softmax attention in a called subprogram, then a depthwise conv
    "branched": DNA(subprograms=(
        Subprogram((Ins("S1", 0, 0, branch=4), Ins("CONV_1X1", 2, dim=3), Ins("DCONV_3X1", 3), Ins("ADD", 4, 0))),
        Subprogram((Ins("CONV_1X1", 0, dim=0), Ins("CONV_1X1", 0, dim=0), Ins("T_MAT_MUL", 2, 3), Ins("EXP", 4),
                    Ins("MASK", 5), Ins("RED_SUM", 6), Ins("DIVIDE", 6, 7), Ins("MAT_MUL", 8, 0))),
    ), constants=(0.0, 0.5), dimensions=(1, 2, 4, 8, 12, 16)),
}
FALLBACK_PROGRAMS = {
    "cum_sum_over_positions": _program(Ins("T_MAT_MUL", 0, 0), Ins("CUM_SUM", 2), Ins("MULTIPLY", 3, 0)),
    "positions_mat_mul": _program(Ins("T_MAT_MUL", 0, 0), Ins("TANH", 2), Ins("MAT_MUL", 3, 2), Ins("ADD", 4, 0)),
}


def _input(unit: int, seed: int, batch: int = B, length: int = S) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, length, WIDTH * unit)).astype(np.float32)


def _assert_rows_equal(full, decoded, what: str) -> float:
    """decoded [B, S, d] equals full [B, S, d] wherever the full pass is finite (1e-4 of the row's magnitude);
    returns the finite share of the full pass (the share compared).

    (A full pass can be non-finite where decoding is not: 0 * inf of a masked future key; see decoding's docs.)"""
    full, decoded = np.asarray(full), np.asarray(decoded)
    assert decoded.shape == full.shape, f"{what}: decoded shape {decoded.shape} != full {full.shape}"
    finite = np.isfinite(full)
    scale = 1.0 + np.max(np.abs(np.where(finite, full, 0.0)), axis=-1, keepdims=True)   # [B, S, 1]
    with np.errstate(invalid="ignore"):
        ok = ~finite | (np.abs(decoded - full) <= 1e-4 * scale)
    where = sorted({(int(b), int(t)) for b, t, _ in zip(*np.nonzero(~ok))})
    assert ok.all(), f"{what}: decoded rows (batch, position) {where[:6]} differ from the full pass"
    return float(finite.mean())


def _too_big(block) -> bool:
    """Nested random branching can make tensors of millions of columns (the full pass alone runs out of memory)."""
    sizes = [n.mult * (n.sig.width.absolute(block.unit) if n.sig.kind == FEATURES else S) for n in block.graph.nodes]
    return max(sizes) > 1024


@pytest.mark.parametrize("name", SEED_NAMES)
def test_seeds_decode_like_the_full_pass(name):
    block = compile_block(load_seed(name), unit=2, width_units=WIDTH)
    x = _input(2, seed=1)
    decoder = BlockDecoder(block)
    assert cacheable(block.graph) and decoder.mode == "cached" and decoder.reason is None
    _assert_rows_equal(block(x), decode_sequence(decoder, x), name)


def test_traced_step_traces_once_for_all_lengths_and_batch_sizes():
    block = compile_block(load_seed("primer"), unit=2, width_units=WIDTH)
    decoder = BlockDecoder(block)
    x = _input(2, seed=2)
    _assert_rows_equal(block(x), decode_sequence(decoder, x, traced=True), "traced primer")
    _assert_rows_equal(block(x[:1]), decode_sequence(decoder, x[:1], traced=True), "traced primer, B=1")
    assert decoder.traced_step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_hand_built_programs_decode_like_the_full_pass(name):
    block = compile_block(PROGRAMS[name], unit=2, width_units=WIDTH, seed=3)
    decoder = BlockDecoder(block)
    assert decoder.mode == "cached", decoder.reason
    x = _input(2, seed=3)
    _assert_rows_equal(block(x), decode_sequence(decoder, x), name)
    _assert_rows_equal(block(x), decode_sequence(decoder, x, traced=True), f"{name} (traced)")


def test_each_hand_built_program_exercises_its_rule():
    def rules(name):
        return {decoding_rule(node)[0] for node in compile_block(PROGRAMS[name], unit=2).graph.nodes}

    assert {"keys", "values", "mask"} <= rules("values")
    assert "running" in rules("mask_and_running") and "window" in rules("long_convs")
    block = compile_block(PROGRAMS["square_keys"], unit=2, width_units=WIDTH)
    assert any(key.startswith("square/") for key in BlockDecoder(block).cache_spec())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_random_programs_decode_like_the_full_pass(family):
    rng, used, checked, compared = random.Random(sorted(FAMILIES).index(family) + 11), collections.Counter(), 0, 0
    for index in range(36):
        dna = random_dna(rng, num_subprograms=rng.randint(1, 4), max_instructions=10, dimensions=(1, 2, 4),
                         branch_probability=0.25, ops=FAMILIES[family], chain_probability=0.6)
        unit = rng.randint(2, 4)
        block = compile_block(dna, unit=unit, width_units=WIDTH, seed=index)
        if _too_big(block):
            continue
        x = _input(unit, seed=index)
        decoder = BlockDecoder(block)
        used.update(decoding_rule(node)[0] for node in block.graph.nodes)
        what = f"{family} program {index} ({decoder.mode}):\n{block.graph.listing()}"
        compared += _assert_rows_equal(block(x), decode_sequence(decoder, x, traced=index % 4 == 0), what) > 0.5
        checked += 1
    assert checked >= 30 and compared >= 28, (checked, compared)      # most are finite, so compared
    if family != "any":       # the sequence-reaching rules all occur
        assert {"keys", "window", "running", "mask"} <= set(used), used


def test_random_branched_programs_decode_like_the_full_pass():
    rng, checked = random.Random(5), 0
    for _ in range(200):
        dna = random_dna(rng, num_subprograms=3, max_instructions=8, dimensions=(1, 2),
                         branch_probability=0.5, ops=FAMILIES["positions"], chain_probability=0.6)
        block = compile_block(dna, unit=2, width_units=WIDTH, seed=checked)
        if _too_big(block) or max(node.mult for node in block.graph.nodes) == 1:
            continue
        x = _input(2, seed=checked)
        assert _assert_rows_equal(block(x), decode_sequence(BlockDecoder(block), x), block.graph.listing()) > 0.5
        checked += 1
        if checked == 12:
            break
    assert checked == 12


@pytest.mark.parametrize("name", sorted(FALLBACK_PROGRAMS))
def test_programs_that_are_not_row_local_fall_back_and_still_match(name):
    block = compile_block(FALLBACK_PROGRAMS[name], unit=2, width_units=WIDTH, seed=4)
    assert not cacheable(block.graph)
    decoder = BlockDecoder(block)
    assert decoder.mode == "fallback" and decoder.reason == fallback_reason(block.graph)
    assert ("CUM_SUM" if name.startswith("cum") else "MAT_MUL") in decoder.reason
    x = _input(2, seed=4)
    _assert_rows_equal(block(x), decode_sequence(decoder, x), name)
    _assert_rows_equal(block(x), decode_sequence(decoder, x, traced=True), f"{name} (traced)")


def test_seeds_are_cacheable_and_cum_over_positions_is_not():
    for name in SEED_NAMES:
        assert cacheable(compile_block(load_seed(name), unit=2).graph), name
    cum_features = _program(Ins("CUM_SUM", 0), Ins("CUM_PROD", 2))
    assert cacheable(compile_block(cum_features, unit=2).graph)
    reason = fallback_reason(compile_block(FALLBACK_PROGRAMS["cum_sum_over_positions"], unit=2).graph)
    assert "CUM_SUM" in reason and "positions" in reason


@pytest.mark.parametrize("name", ["transformer", "primer", "long_convs", "mask_and_running",
                                  "cum_sum_over_positions"])
def test_extend_leaves_the_cache_step_would(name):
    dna = load_seed(name) if name in SEED_NAMES else {**PROGRAMS, **FALLBACK_PROGRAMS}[name]
    block = compile_block(dna, unit=2, width_units=WIDTH, seed=6)
    decoder = BlockDecoder(block)
    x = tf.constant(_input(2, seed=6))
    full = block(x).numpy()
    exited = {1, 2, 5, 6, 7}                                   # positions whose output is not wanted (CALM exit)
    stepped, extended = decoder.init_cache(B), decoder.init_cache(B)
    for t in range(S):
        y_t, stepped = decoder.step(x[:, t:t + 1], stepped)
        if t in exited:
            extended = decoder.extend(x[:, t:t + 1], extended)
        else:
            z_t, extended = decoder.step(x[:, t:t + 1], extended)
            _assert_rows_equal(full[:, t:t + 1], z_t, f"{name}: step at {t} after extends")
        assert int(decoder.cache_length(extended)) == t + 1
        for key in stepped:
            np.testing.assert_allclose(extended[key].numpy(), stepped[key].numpy(), rtol=1e-6, atol=1e-6,
                                       err_msg=f"{name}: cache entry {key} at position {t}")
    if decoder.mode == "cached":                               # extend skips what only the output needs
        assert block.graph.output.id not in decoder.extend_nodes


def test_extend_in_transformer_computes_only_keys_and_values():
    block = compile_block(load_seed("transformer"), unit=2, width_units=WIDTH)
    decoder = BlockDecoder(block)
    ops = collections.Counter(block.graph.nodes[i].op for i in decoder.extend_nodes)
    assert ops["T_MAT_MUL"] == ops["SOFTMAX"] == ops["MAT_MUL"] == 0 and ops["CONV_1X1"] == 2   # k, v projections
    traced = decoder.traced_extend(tf.zeros([3, 1, block.d_model]), decoder.init_cache(3))
    assert int(traced["length"]) == 1


def test_batch_rows_are_decoded_independently():
    block = compile_block(PROGRAMS["branched"], unit=2, width_units=WIDTH, seed=7)
    decoder = BlockDecoder(block)
    x = _input(2, seed=7, batch=3)
    together = decode_sequence(decoder, x).numpy()
    for b in range(3):
        alone = decode_sequence(decoder, x[b:b + 1]).numpy()
        np.testing.assert_allclose(together[b:b + 1], alone, rtol=1e-5, atol=1e-6)
    changed = x.copy()
    changed[1] += 1.0
    again = decode_sequence(decoder, changed).numpy()
    np.testing.assert_array_equal(again[[0, 2]], together[[0, 2]])


def test_misuse_is_refused_with_clear_messages():
    block = compile_block(load_seed("transformer"), unit=2, width_units=WIDTH)
    decoder = BlockDecoder(block)
    cache = decoder.init_cache(B)
    with pytest.raises(ValueError, match=r"expected one position x_t of shape \[B, 1, 16\], received shape"):
        decoder.step(tf.zeros([B, 2, 16]), cache)
    other = BlockDecoder(compile_block(PROGRAMS["long_convs"], unit=2, width_units=WIDTH))
    with pytest.raises(ValueError, match="the cache does not belong to this decoder"):
        decoder.step(tf.zeros([B, 1, 16]), other.init_cache(B))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, received 0"):
        decoder.init_cache(0)
    with pytest.raises(TypeError, match="expected a CompiledBlock, received str"):
        BlockDecoder("transformer")
