import pytest

from primer_search.program.dna import DNAError, Instruction
from primer_search.program.listing import from_listing, instruction_line, to_listing
from primer_search.program.search_space import random_dna
from primer_search.program.seeds import load_seed


def test_paper_style_lines():
    assert instruction_line(Instruction("CONV_1X1", in1=10, dim=0), 10) == "(12) CONV_1X1 in1=10 dim=d[0] -> h12"
    assert instruction_line(Instruction("S1", in1=2, in2=2, branch=8), 1) == "(3) S1 in1=2 in2=2 branch=8 -> h3"
    assert instruction_line(Instruction("MAX", in1=4, in2=3, const=1), 5) == "(7) MAX in1=4 c=c[1] -> h7   [in2=3]"


def test_listing_shows_banks_and_subprogram_names():
    text = to_listing(load_seed("transformer"))
    assert "constants: c[0]=0.0 c[1]=1e-06" in text and "S4 attention_softmax:" in text
    assert "(5) T_MAT_MUL in1=3 in2=2 -> h5" in text and "C_MUL" not in text


def test_random_programs_round_trip(rng):
    for _ in range(50):
        dna = random_dna(rng, num_subprograms=4)
        assert from_listing(to_listing(dna)) == dna


@pytest.mark.parametrize("text, message", [
    ("S0 main:\n  (3) SIN in1=0 -> h3\n", r"listing line 2: found state \(3\) -> h3, expected \(2\) -> h2"),
    ("S0 main:\n  (2) SIN in1=zero -> h2\n", r"listing line 2: cannot read 'S0 main:|listing line 2: cannot read"),
    ("S1 main:\n", r"listing line 1: found S1, expected S0"),
    ("  (2) SIN in1=0 -> h2\n", r"listing line 1: instruction before any subprogram header"),
    ("constants: c[0]=zero c[1]=1\n", r"listing line 1: 'zero' is not a number"),
    ("S0 main:\n  (2) SIN in1=5 -> h2\n", r"S0 \(main\) instruction 0 \(writes h2\), field in1: found 5"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(DNAError, match=message):
        from_listing(text)
