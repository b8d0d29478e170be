from primer_search.dna import DNA, Instruction, Subprogram
from primer_search.fec import fingerprint
from primer_search.graph import canonical_hash
from primer_search.seeds import load_seed


def _program(*instructions):
    return DNA(subprograms=(Subprogram(tuple(instructions)),), constants=(0.0, 2.0), dimensions=(1, 2, 4, 8, 12, 16))


def test_equivalent_programs_with_different_graphs_share_a_fingerprint():
    doubled = _program(Instruction("ADD", in1=0, in2=1))                  # x + x
    scaled = _program(Instruction("C_MUL", in1=0, const=1))               # 2 * x
    assert canonical_hash(doubled) != canonical_hash(scaled)
    assert fingerprint(doubled) == fingerprint(scaled) is not None


def test_different_functions_differ_and_fingerprints_are_stable():
    a, b = load_seed("transformer"), load_seed("primer_ez")
    assert fingerprint(a) == fingerprint(a) != fingerprint(b)
    assert fingerprint(_program(Instruction("TANH", in1=0))) != fingerprint(_program(Instruction("SIGMOID", in1=0)))


def test_non_finite_outputs_still_fingerprint():
    exploding = _program(Instruction("EXP", in1=0), Instruction("EXP", in1=2), Instruction("EXP", in1=3))
    assert fingerprint(exploding) is not None


def test_programs_equal_only_at_initialization_differ():
    """SHIFT starts at zero, so relu(x + b) and relu(x) + b agree at initialization but not once trained."""
    shift_then_relu = _program(Instruction("SHIFT", in1=0), Instruction("MAX", in1=2, const=0))
    relu_then_shift = _program(Instruction("MAX", in1=0, const=0), Instruction("SHIFT", in1=2))
    assert fingerprint(shift_then_relu) != fingerprint(relu_then_shift)


def test_macro_options_are_part_of_the_fingerprint():
    prints = [fingerprint(load_seed(name)) for name in ("transformer", "transformer+mod", "transformer+calm")]
    assert None not in prints and len(set(prints)) == 3
