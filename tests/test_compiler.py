import collections
import random
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import primitives
from primer_search.program.compiler import CompiledBlock, compile_block, node_identity, weight_seed
from primer_search.program.dna import DNA, Instruction, Subprogram
from primer_search.program.graph import canonical_hash
from primer_search.program.search_space import random_dna
from primer_search.program.seeds import SEED_NAMES, load_seed
from primer_search.search import mutations

UNIT, WIDTH = 2, 4  # d = 8
# Ops that move information along the sequence axis, plus a few that feed them, to stress causality.
SEQUENCE_HEAVY = ("T_MAT_MUL", "MAT_MUL", "EXP", "RED_SUM", "RED_MAX", "RED_MIN", "RED_PROD", "RED_MEAN",
                  "CUM_SUM", "CUM_PROD", "CONV_3X1", "DCONV_3X1", "CONV_1X1", "DIVIDE", "ADD", "SCALE", "MASK")


def _program(*instructions, constants=(0.0, 0.5), dimensions=(1, 2, 4, 8, 12, 16)):
    return DNA(subprograms=(Subprogram(tuple(instructions)),), constants=constants, dimensions=dimensions)


# How position t of the input is disturbed: ordinary noise, and what reaches earlier positions only through a
# product that reads future rows (0 x inf, 0 x NaN) or a normalization of a constant row (0 / 0).
PERTURBATIONS = {
    "noise": lambda row, rng: row + rng.normal(size=row.shape).astype(np.float32),
    "zeros": lambda row, rng: np.zeros_like(row),
    "huge": lambda row, rng: np.where(rng.random(row.shape) < 0.5, -1e4, 1e4).astype(np.float32),
    "overflow": lambda row, rng: np.full_like(row, 3e38),
    "inf": lambda row, rng: np.where(rng.random(row.shape) < 0.5, -np.inf, np.inf).astype(np.float32),
    "nan": lambda row, rng: np.full_like(row, np.nan),
}


def _outputs_match_before(block, x, t):
    """Disturb position t of x in each way of PERTURBATIONS (one batch); whether every output at positions < t is
    unchanged, NaN and infinities included."""
    rng = np.random.default_rng(t)
    variants = [x]
    for perturb in PERTURBATIONS.values():
        variants.append(x.copy())
        variants[-1][:, t] = perturb(x[:, t], rng)
    out = block(np.concatenate(variants)).numpy().reshape(len(variants), *x.shape)[:, :, :t]
    return all(np.allclose(out[0], other, rtol=1e-5, atol=1e-6, equal_nan=True) for other in out[1:])


def test_causal_for_500_random_programs():
    rng = random.Random(7)
    x = np.random.default_rng(0).normal(size=(2, 10, UNIT * WIDTH)).astype(np.float32)
    finite = 0                                                 # programs whose outputs are mostly finite
    for index in range(500):
        ops = SEQUENCE_HEAVY if index % 2 else None
        dna = random_dna(rng, num_subprograms=rng.randint(1, 4), max_instructions=10, dimensions=(1, 2, 4),
                         branch_probability=0.25, ops=ops, chain_probability=0.6)
        block = compile_block(dna, unit=UNIT, width_units=WIDTH, seed=index)
        for t in (3, 7):
            assert _outputs_match_before(block, x, t), f"future leak at t={t} in program {index}:\n" + \
                block.graph.listing()
        finite += np.isfinite(block(x).numpy()).mean() > 0.5
    assert finite >= 450, finite                               # NaN equals NaN above: most outputs must be numbers


def test_a_non_finite_value_never_reaches_earlier_outputs_of_a_product():
    # scores @ values with an infinite value at position 6: a masked product must not read that row at all
    dna = _program(Instruction("T_MAT_MUL", in1=0, in2=0), Instruction("MAT_MUL", in1=2, in2=0))
    x = np.random.default_rng(3).normal(size=(1, 10, UNIT * WIDTH)).astype(np.float32)
    x[0, 6, 0] = np.inf
    out = compile_block(dna, unit=UNIT, width_units=WIDTH)(x).numpy()
    assert np.isfinite(out[0, :6]).all() and np.isnan(out[0, 6:, 0]).all()


def test_a_zero_row_leaves_the_seeds_finite():
    # the seeds' layer norm has an epsilon: a constant row normalizes to 0, not 0 / 0
    x = np.random.default_rng(1).normal(size=(1, 10, 8 * UNIT)).astype(np.float32)
    x[0, 6] = 0.0
    for name in SEED_NAMES:
        assert np.isfinite(compile_block(load_seed(name), unit=UNIT)(x).numpy()).all(), name


@pytest.mark.parametrize("name", SEED_NAMES)
def test_seeds_are_causal(name):
    block = compile_block(load_seed(name), unit=UNIT, width_units=8)
    x = np.random.default_rng(1).normal(size=(2, 12, 8 * UNIT)).astype(np.float32)
    for t in (1, 5, 11):
        assert _outputs_match_before(block, x, t)


@pytest.mark.parametrize("op", ["MAT_MUL", "T_MAT_MUL", "RED_SUM", "RED_MAX", "CUM_SUM", "CONV_31X1", "DCONV_7X1"])
def test_attention_without_mask_is_still_causal(op):
    # scores without MASK, then an op reading along the key or sequence axis
    dna = _program(Instruction("CONV_1X1", in1=0, dim=2),            # h2 [S, 4u]
                   Instruction("T_MAT_MUL", in1=2, in2=0),            # h3 [S, S], unmasked
                   Instruction("EXP", in1=3),                         # h4
                   Instruction(op, in1=4, in2=0, dim=2))              # h5
    block = compile_block(dna, unit=UNIT, width_units=WIDTH)
    x = np.random.default_rng(2).normal(size=(2, 9, UNIT * WIDTH)).astype(np.float32)
    for t in range(1, 9):
        assert _outputs_match_before(block, x, t)


def test_fused_softmax_equals_unfused():
    dna = load_seed("transformer")
    fused = compile_block(dna, unit=4)
    unfused = compile_block(dna, unit=4, fuse=False)
    x = tf.random.stateless_normal([2, 16, 32], seed=[1, 2])
    fused(x), unfused(x)
    unfused.set_weights(fused.get_weights())
    assert any(n.op == "SOFTMAX" for n in fused.graph.nodes)
    assert not any(n.op == "SOFTMAX" for n in unfused.graph.nodes)
    np.testing.assert_allclose(fused(x).numpy(), unfused(x).numpy(), rtol=1e-5, atol=1e-5)


def test_fused_softmax_is_stable_where_unfused_overflows():
    dna = load_seed("transformer")
    x = tf.random.stateless_normal([1, 8, 32], seed=[3, 4]) * 1e3
    fused, unfused = compile_block(dna, unit=4), compile_block(dna, unit=4, fuse=False)
    fused(x), unfused(x)
    unfused.set_weights(fused.get_weights())
    # large inputs: layer norm rescales, so push the scores with a large query projection instead
    for block in (fused, unfused):
        query = next(n for n in block.graph.nodes if n.path == "S0.1-S1.1-S3.0")
        kernel = block.node_weights(query.id)["kernel"]
        kernel.assign(kernel * 4000.0)
    assert np.isfinite(fused(x).numpy()).all()
    assert not np.isfinite(unfused(x).numpy()).all()


def test_branching_runs_as_one_batched_op_with_separate_weights():
    dna = load_seed("transformer")
    block = compile_block(dna, unit=4)
    block(tf.zeros([1, 4, 32]))
    projections = [v for v in block.weights if "S1.0-S3.0.kernel" in v.path]
    assert [tuple(v.shape) for v in projections] == [(8, 32, 4)]  # one [branch, d, head] kernel
    kernel = projections[0].numpy()
    assert not np.allclose(kernel[0], kernel[1])  # separate initial weights per branch


def test_dead_instructions_are_not_built():
    dna = _program(Instruction("CONV_1X1", in1=0, dim=3),   # dead: nobody reads h2
                   Instruction("SIN", in1=1),
                   Instruction("ADD", in1=0, in2=3))
    block = compile_block(dna, unit=UNIT, width_units=WIDTH)
    block(tf.zeros([1, 3, UNIT * WIDTH]))
    assert block.weights == [] and [n.op for n in block.graph.nodes] == ["INPUT", "SIN", "ADD", "OUTPUT"]


def test_any_sequence_length_and_shape_contract():
    block = compile_block(load_seed("primer"), unit=2)
    for length in (1, 5, 33):
        assert block(tf.zeros([3, length, 16])).shape == (3, length, 16)


def test_input_width_mismatch_is_a_clear_error():
    block = compile_block(load_seed("transformer"), unit=2)
    with pytest.raises(ValueError, match=r"input width 12 does not match the block width d = width_units x unit "
                                         r"= 8 x 2 = 16"):
        block(tf.zeros([1, 4, 12]))


def test_final_state_is_brought_to_width_d():
    narrow = _program(Instruction("RED_MEAN", in1=0))             # [S, 1] broadcasts to d
    wide = _program(Instruction("CONV_1X1", in1=0, dim=5))        # [S, 16u] is cut to d
    x = tf.random.stateless_normal([1, 3, UNIT * WIDTH], seed=[0, 1])
    out = compile_block(narrow, unit=UNIT, width_units=WIDTH)(x).numpy()
    np.testing.assert_allclose(out, np.broadcast_to(x.numpy().mean(-1, keepdims=True), out.shape), rtol=1e-6)
    assert compile_block(wide, unit=UNIT, width_units=WIDTH)(x).shape == x.shape


def test_get_config_round_trip_rebuilds_the_same_block():
    block = compile_block(load_seed("primer_ez"), unit=2, seed=3)
    x = tf.random.stateless_normal([2, 6, 16], seed=[5, 6])
    y = block(x)
    clone = CompiledBlock.from_config(block.get_config())
    clone(x)
    clone.set_weights(block.get_weights())
    assert clone.dna == block.dna
    np.testing.assert_allclose(clone(x).numpy(), y.numpy(), rtol=1e-6)


def test_keras_file_save_and_load(tmp_path):
    inputs = keras.Input((None, 16))
    outputs = compile_block(load_seed("primer"), unit=2)(compile_block(load_seed("transformer"), unit=2)(inputs))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(2, 7, 16)).astype(np.float32)
    path = tmp_path / "blocks.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_same_seed_gives_same_weights():
    a, b = compile_block(load_seed("transformer"), unit=2, seed=5), compile_block(load_seed("transformer"), unit=2,
                                                                                 seed=5)
    x = tf.zeros([1, 2, 16])
    a(x), b(x)
    for va, vb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(va, vb)


def test_a_different_seed_draws_different_weights():
    x = tf.zeros([1, 2, 16])
    a, b = compile_block(load_seed("transformer"), unit=2, seed=5), compile_block(load_seed("transformer"), unit=2,
                                                                                 seed=6)
    a(x), b(x)
    kernels = [(va, vb) for va, vb in zip(a.get_weights(), b.get_weights()) if va.ndim == 3]   # the glorot ones
    assert kernels and all(not np.array_equal(va, vb) for va, vb in kernels)


# Common random numbers: an edit re-draws only the weights it adds or changes.

CRN_UNIT = 2


def _weights_by_path(dna, seed=11) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """{node path: (op, {weight name: value})} of every node with weights, of a block built with `seed`."""
    block = compile_block(dna, unit=CRN_UNIT, seed=seed)
    block.build((None, None, 8 * CRN_UNIT))
    return {n.path: (n.op, {k: v.numpy() for k, v in block.node_weights(n.id).items()})
            for n in block.graph.nodes if block.node_weights(n.id)}


def _position_map(detail: str):
    """From a mutation's detail: (edited subprogram, {parent position: child position or None}) for the positions
    the edit moves or touches; positions not in the map keep their place. None: an instruction the edit touched."""
    if match := re.match(r"insert S(\d+)\.(\d+) ", detail):
        s, p = map(int, match.groups())
        return s, lambda i: i + 1 if i >= p else i
    if match := re.match(r"delete S(\d+)\.(\d+) ", detail):
        s, p = map(int, match.groups())
        return s, lambda i: None if i == p else i - 1 if i > p else i
    if match := re.match(r"swap S(\d+)\.(\d+)<->S\d+\.(\d+) ", detail):
        s, a, b = map(int, match.groups())
        return s, lambda i: None if i in (a, b) else i
    if match := re.match(r"mutate_field S(\d+)\.(\d+) ", detail):
        s, p = map(int, match.groups())
        return s, lambda i: None if i == p else i
    assert detail.startswith("mutate_bank"), detail
    return None, None


def _mapped_path(path: str, s: int | None, moved) -> str | None:
    """The child path of a parent node's path, or None when the edit touched one of its instructions."""
    steps = []
    for step in path.split("-"):
        sub, _, i = step[1:].partition(".")
        i = int(i) if s is None or int(sub) != s else moved(int(i))
        if i is None:
            return None
        steps.append(f"S{sub}.{i}")
    return "-".join(steps)


def _same_op_elsewhere(parent, child, detail) -> bool:
    """Whether the edited subprogram holds, besides the edited instruction(s), an instruction with an op the edit
    adds or removes: then its weights may be re-dealt (the documented limit of the ordinal identity)."""
    s, _ = _position_map(detail)
    if s is None:
        return False
    before = collections.Counter(ins.op for ins in parent.subprograms[s].instructions)
    after = collections.Counter(ins.op for ins in child.subprograms[s].instructions)
    changed = {op for op in before | after if before[op] != after[op]}
    if detail.startswith(("swap", "mutate_field")):
        p = int(re.match(r"\w+ S\d+\.(\d+)", detail).group(1))
        changed |= {parent.subprograms[s].instructions[p].op, child.subprograms[s].instructions[p].op}
        if detail.startswith("swap"):
            b = int(re.search(r"<->S\d+\.(\d+)", detail).group(1))
            changed |= {parent.subprograms[s].instructions[b].op}
    return any(before[op] + after[op] > 2 for op in changed)


def _cases(mutation, predicate, count):
    """The first `count` children of the transformer seed by `mutation` with Random(0), Random(1), ... that change
    the computation, satisfy `predicate(parent, child, detail)` and avoid the documented limit."""
    parent, cases = load_seed("transformer"), []
    for k in range(20000):
        child, detail = mutation(parent, random.Random(k), 40)
        if (child is not None and canonical_hash(child) != canonical_hash(parent) and predicate(parent, child, detail)
                and not _same_op_elsewhere(parent, child, detail) and detail not in {d for _, _, d in cases}):
            cases.append((parent, child, detail))
            if len(cases) == count:
                return cases
    raise AssertionError(f"found {len(cases)} of {count} cases")


def _inserted_op(detail):
    return re.match(r"insert S\d+\.\d+ (\S+)", detail).group(1)


def _weighted(op):
    return primitives.is_primitive(op) and primitives.get(op).has_weights


CRN_CASES = {
    "insert_weighted": (mutations.insert, lambda p, c, d: _weighted(_inserted_op(d))),
    "insert_mdha": (mutations.insert, lambda p, c, d: d.startswith("insert S3.1 DCONV_3X1 in1=2")),  # MDHA
    "insert_weightless": (mutations.insert, lambda p, c, d: primitives.is_primitive(_inserted_op(d))
                          and not _weighted(_inserted_op(d))),
    "delete": (mutations.delete, lambda p, c, d: True),
    "swap": (mutations.swap, lambda p, c, d: True),
    "mutate_field": (mutations.mutate_field, lambda p, c, d: True),
    "mutate_bank": (mutations.mutate_bank, lambda p, c, d: d.startswith("mutate_bank d[")),
}


@pytest.mark.parametrize("kind", sorted(CRN_CASES))
def test_an_edit_redraws_only_the_weights_it_adds_or_changes(kind):
    total, cases = 0, _cases(*CRN_CASES[kind], count=1 if kind == "insert_mdha" else 3)
    for parent, child, detail in cases:
        before, after = _weights_by_path(parent), _weights_by_path(child)
        s, moved = _position_map(detail)
        kept = 0
        for path, (op, weights) in before.items():
            mapped = _mapped_path(path, s, moved)
            if mapped is None or mapped not in after or after[mapped][0] != op:
                continue                                         # touched, or no longer computed
            for name, value in weights.items():
                if after[mapped][1][name].shape == value.shape:  # a new shape is a new weight
                    np.testing.assert_array_equal(after[mapped][1][name], value, err_msg=f"{detail}: {path}.{name}")
                    kept += value.ndim == 3                      # a glorot kernel [m, W, U], not a constant vector
        assert kept >= 1, f"{detail}: no kernel compared"       # (a new width upstream reshapes those below it)
        total += kept
        if kind.startswith("insert_") and kind != "insert_weightless":   # the new instruction has weights
            new = "S{}.{}".format(*re.match(r"insert S(\d+)\.(\d+)", detail).groups())
            assert any(path.split("-")[-1] == new for path in after), detail
    assert total >= 2 * len(cases)
    if kind == "insert_mdha":                                    # every kernel keeps its value beside the new taps
        assert total == 6


def test_transformer_and_primer_ez_share_their_kernels():
    transformer, primer_ez = _weights_by_path(load_seed("transformer")), _weights_by_path(load_seed("primer_ez"))
    shared = [path for path, (op, _) in transformer.items() if op == "CONV_1X1"]
    assert len(shared) == 6                                      # Q, K, V, output, and the two feed-forward kernels
    for path, (op, weights) in transformer.items():
        assert primer_ez[path][0] == op
        for name, value in weights.items():
            np.testing.assert_array_equal(primer_ez[path][1][name], value, err_msg=path)
    assert {op for path, (op, _) in primer_ez.items() if path not in transformer} == {"DCONV_3X1"}


def test_a_weight_depends_on_its_identity_not_on_the_weights_before_it():
    dna = load_seed("transformer")
    assert node_identity(dna, "S0.1-S1.2-S3.0") == "S1/-/8/0 > S3/-/1/2 > CONV_1X1/1/1/0"   # the value projection
    assert weight_seed(3, "a", "kernel", (1, 2, 2)) == 1411531191                       # the same in every process
    assert len({weight_seed(3, "a", "kernel", (1, 2, 2)), weight_seed(4, "a", "kernel", (1, 2, 2)),
                weight_seed(3, "b", "kernel", (1, 2, 2)), weight_seed(3, "a", "kernel", (1, 2, 3))}) == 4
