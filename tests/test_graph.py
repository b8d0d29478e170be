import dataclasses
import gc
import random

from primer_search.config import MutationWeights
from primer_search.program.dna import DNA, Instruction, Subprogram
from primer_search.program.graph import canonical_hash, lower, used_inputs_and_live
from primer_search.program.macro_options import MacroOptions
from primer_search.program.search_space import random_dna
from primer_search.program.seeds import load_seed
from primer_search.search import mutations


def _edit(dna, s, instructions):
    subprograms = list(dna.subprograms)
    subprograms[s] = dataclasses.replace(subprograms[s], instructions=tuple(instructions))
    return dna.replace(subprograms=tuple(subprograms))


def test_dead_instructions_do_not_change_the_hash():
    dna = load_seed("transformer")
    relu = list(dna.subprograms[9].instructions)
    with_dead = _edit(dna, 9, [Instruction("SIN", in1=0, const=1, dim=4)] + [
        dataclasses.replace(relu[0], in1=0)])
    assert canonical_hash(with_dead) == canonical_hash(dna)
    unused_field = _edit(dna, 9, [dataclasses.replace(relu[0], in2=1, dim=5)])  # MAX reads neither
    assert unused_field != dna and canonical_hash(unused_field) == canonical_hash(dna)


def test_reordering_independent_instructions_keeps_the_hash():
    dna = load_seed("transformer")
    attention = list(dna.subprograms[1].instructions)   # key, query, value, scores, softmax, weighted values
    # move the value projection first: every later reference shifts by one state
    reordered = [dataclasses.replace(attention[2])] + [
        dataclasses.replace(attention[0]), dataclasses.replace(attention[1]),
        Instruction("T_MAT_MUL", in1=4, in2=3), Instruction("S4", in1=5), Instruction("MAT_MUL", in1=6, in2=2)]
    assert canonical_hash(_edit(dna, 1, reordered)) == canonical_hash(dna)


def test_changes_that_reach_the_output_change_the_hash():
    dna = load_seed("transformer")
    base = canonical_hash(dna)
    squared = _edit(dna, 9, list(dna.subprograms[9].instructions) + [Instruction("SQUARE", in1=2)])
    changes = [
        squared,
        dna.replace(constants=(0.5, 0.125)),                                 # ReLU threshold
        dna.replace(dimensions=(2, 8, 32, 2, 4, 16)),                        # head size
        _edit(dna, 0, [dataclasses.replace(i, branch=4) if i.op == "S1" else i for i in dna.subprograms[0].instructions]),
        dna.replace(macro_options=MacroOptions.from_dict({"mixture_of_depths": {"enabled": True}})),
    ]
    hashes = [canonical_hash(c) for c in changes]
    assert base not in hashes and len(set(hashes)) == len(hashes)


def test_unused_bank_values_do_not_change_the_hash():
    dna = load_seed("transformer")
    assert canonical_hash(dna.replace(dimensions=(1, 8, 32, 64, 64, 64))) == canonical_hash(dna)


def test_hash_does_not_depend_on_block_width():
    dna = load_seed("primer")
    assert lower(dna, 4).canonical_hash() == lower(dna, 16).canonical_hash()


def test_liveness_follows_calls():
    dna = load_seed("transformer")
    uses, live = used_inputs_and_live(dna)
    assert uses[8] == {0, 1} and uses[3] == {0}   # residual reads both inputs; a projection only the first
    assert live[1] == set(range(6))


def test_transformer_parameter_count_matches_the_paper_shapes():
    # d_model 512, 8 heads of 64, d_ff 2048: 4 d^2 attention + 2 d d_ff + biases + two layer norms
    d, ff = 512, 2048
    assert lower(load_seed("transformer")).parameter_count(64) == 4 * d * d + 2 * d * ff + ff + d + 4 * d


def test_branching_appears_as_split_and_merge():
    ops = [n.op for n in lower(load_seed("transformer")).nodes]
    assert ops.count("SPLIT") == 1 and ops.count("MERGE") == 1 and ops.count("SOFTMAX") == 1
    assert ops[0] == "INPUT" and ops[-1] == "OUTPUT"


def test_random_programs_lower_deterministically(rng):
    for _ in range(30):
        dna = random_dna(rng, num_subprograms=4)
        assert lower(dna).listing() == lower(DNA.from_dict(dna.to_dict())).listing()
        assert canonical_hash(dna) == canonical_hash(dna.replace(name="other"))


# Fast hashing path (the search hashes every proposal)

def _corpus():
    dnas = [load_seed(name) for name in ("transformer", "primer_ez", "primer")]
    dnas += [random_dna(random.Random(i)) for i in range(100)]
    dnas += [random_dna(random.Random(i), num_subprograms=4, max_instructions=12, branch_probability=0.4,
                        chain_probability=0.6, ops=("EXP", "MASK", "RED_SUM", "DIVIDE", "T_MAT_MUL", "CONV_1X1"))
             for i in range(100)]                                      # softmax patterns, branching
    rng, dna = random.Random(0), load_seed("transformer")
    for _ in range(50):
        dna, _ = mutations.mutate(dna, rng, MutationWeights(), 40)
        dnas.append(dna)
    return dnas


def test_hash_fast_path_agrees_with_the_lowered_graph():
    for dna in _corpus():
        assert canonical_hash(dna) == lower(dna).canonical_hash() == lower(dna, 3).canonical_hash()


def test_seed_hashes_are_permanent():      # stored in run stores: the hash format must never change
    assert [canonical_hash(load_seed(name)) for name in ("transformer", "primer_ez", "primer")] == [
        "4a82d7f5f5d6d6ef", "8e488e9ebb1e93b7", "c009c1d6545eb5eb"]


def test_unused_constant_does_not_change_the_hash():
    dna = DNA(subprograms=(Subprogram((Instruction("MAX", in1=0, const=0), Instruction("ADD", in1=2, in2=1))),))
    assert canonical_hash(dna.replace(constants=(0.0, 0.25))) == canonical_hash(dna)        # c[1]: read by none
    assert canonical_hash(dna.replace(constants=(0.5, 0.125))) != canonical_hash(dna)       # c[0]: MAX's


def test_hashing_leaves_no_garbage_cycles():
    dna = load_seed("primer")
    gc.collect()
    gc.disable()
    try:
        canonical_hash(dna)
        lower(dna)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_liveness_memo_follows_the_subprograms_index():
    # One Subprogram object, at index 1 of one DNA and index 0 of another, where the subprograms after it use the
    # same inputs but its call S2 reaches a different one: its memoized liveness must not carry over.
    caller = Subprogram((Instruction("S2", in1=0, in2=1),))
    uses_h1, uses_h0 = Subprogram((Instruction("SQUARE", in1=1),)), Subprogram((Instruction("SQUARE", in1=0),))
    first = DNA(subprograms=(Subprogram((Instruction("S1"),)), caller, uses_h1, uses_h0))
    second = DNA(subprograms=(caller, uses_h1, uses_h0))
    assert used_inputs_and_live(first)[0][1] == {1} and used_inputs_and_live(second)[0][0] == {0}
    for dna in (first, second):
        fresh = dna.replace(subprograms=tuple(dataclasses.replace(sp) for sp in dna.subprograms))   # no memos
        assert used_inputs_and_live(dna) == used_inputs_and_live(fresh)
        assert canonical_hash(dna) == canonical_hash(fresh) == lower(fresh).canonical_hash()
