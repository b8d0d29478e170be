import dataclasses

from primer_search.program.dna import DNA, Instruction, Subprogram
from primer_search.program.graph import canonical_hash
from primer_search.program.seeds import load_seed
from primer_search.search import fec
from primer_search.search.fec import FingerprintIndex, fingerprint, same_function


def _program(*instructions):
    return DNA(subprograms=(Subprogram(tuple(instructions)),), constants=(0.0, 2.0), dimensions=(1, 2, 4, 8, 12, 16))


def test_equivalent_programs_with_different_graphs_share_a_fingerprint():
    doubled = _program(Instruction("ADD", in1=0, in2=1))                  # x + x
    scaled = _program(Instruction("C_MUL", in1=0, const=1))               # 2 * x
    assert canonical_hash(doubled) != canonical_hash(scaled)
    assert same_function(fingerprint(doubled), fingerprint(scaled))


def test_a_redundant_mask_is_the_same_function_despite_last_digit_numerics():
    """Deleting the softmax's MASK (its key reduction masks anyway) unfuses the softmax: the outputs agree only to
    float32 rounding, which a rounded-and-hashed fingerprint misses."""
    seed = load_seed("transformer")
    softmax = next(i for i, s in enumerate(seed.subprograms) if [x.op for x in s.instructions][:2] == ["EXP", "MASK"])
    exp, mask, total, divide = seed.subprograms[softmax].instructions
    unmasked = dataclasses.replace(seed.subprograms[softmax], instructions=(
        exp, dataclasses.replace(total, in1=2), dataclasses.replace(divide, in1=2, in2=3)))
    child = seed.replace(subprograms=seed.subprograms[:softmax] + (unmasked,) + seed.subprograms[softmax + 1:])
    assert canonical_hash(child) != canonical_hash(seed)
    assert same_function(fingerprint(seed), fingerprint(child))


def test_different_functions_differ_and_fingerprints_are_stable():
    a, b = load_seed("transformer"), load_seed("primer_ez")
    first = fingerprint(a)
    fec._MEMO.clear()                                          # computed again, not remembered
    assert fingerprint(a) == first and not same_function(first, fingerprint(b))
    assert not same_function(fingerprint(_program(Instruction("TANH", in1=0))),
                             fingerprint(_program(Instruction("SIGMOID", in1=0))))


def test_non_finite_outputs_have_no_fingerprint():
    """All-NaN outputs would make unrelated programs equal."""
    exploding = _program(Instruction("EXP", in1=0), Instruction("EXP", in1=2), Instruction("EXP", in1=3))
    assert fingerprint(exploding) is None and not same_function(None, None)


def test_programs_equal_only_at_initialization_differ():
    """SHIFT starts at zero, so relu(x + b) and relu(x) + b agree at initialization but not once trained."""
    shift_then_relu = _program(Instruction("SHIFT", in1=0), Instruction("MAX", in1=2, const=0))
    relu_then_shift = _program(Instruction("MAX", in1=0, const=0), Instruction("SHIFT", in1=2))
    assert not same_function(fingerprint(shift_then_relu), fingerprint(relu_then_shift))


def test_macro_options_are_part_of_the_fingerprint():
    prints = [fingerprint(load_seed(name)) for name in ("transformer", "transformer+mod", "transformer+calm")]
    assert None not in prints
    assert not any(same_function(prints[i], prints[j]) for i in range(3) for j in range(i + 1, 3))


def test_the_index_finds_the_first_match_by_tolerance():
    programs = [_program(Instruction(op, in1=0)) for op in ("TANH", "SIGMOID", "ABS", "SIN", "COS")]
    index = FingerprintIndex()
    for key, dna in enumerate(programs * 5):              # grows past its first capacity
        index.add(key, fingerprint(dna))
    assert len(index) == 25
    assert index.find(fingerprint(_program(Instruction("SIGMOID", in1=0)))) == 1
    assert index.find(fingerprint(_program(Instruction("ADD", in1=0, in2=1)))) is None
    assert index.find(None) is None and FingerprintIndex().find(fingerprint(programs[0])) is None
