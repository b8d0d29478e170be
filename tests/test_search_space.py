import collections
import itertools
import random

import pytest

import primitives
from primer_search.program.dna import DNA, Instruction, Subprogram
from primer_search.program.graph import canonical_hash, lower
from primer_search.program.search_space import OP_FAMILIES, OP_FAMILY_NAMES, OpFamilyWeights, SearchPriors, \
    family_of, live_wires, new_instruction, op_draw, random_dna, random_instruction
from primer_search.program.seeds import SEED_NAMES, load_seed

UNIFORM = SearchPriors(preset="uniform")


def _programs(dna):
    return [sp.instructions for sp in dna.subprograms]


def _dnas():
    yield from (load_seed(name) for name in SEED_NAMES)
    for seed in range(12):
        yield random_dna(random.Random(seed), num_subprograms=1 + seed % 4, max_instructions=8,
                         chain_probability=0.5)


# ---------------------------------------------------------------------------------------------------- families


def test_families_partition_the_registry():
    members = [op for ops in OP_FAMILIES.values() for op in ops]
    assert sorted(members) == sorted(primitives.names()) and len(members) == len(set(members))
    assert tuple(OP_FAMILIES) == OP_FAMILY_NAMES
    assert family_of("SQUARE") == "math" and family_of("DCONV_3X1") == "dconv"
    with pytest.raises(ValueError, match="primitive 'GELU' has no family, expected it in one of"):
        family_of("GELU")


def test_op_draw_is_uniform_only_when_every_primitive_weighs_the_same():
    assert op_draw(UNIFORM) == (primitives.names(), None)
    threes = OpFamilyWeights(**dict.fromkeys(OP_FAMILY_NAMES, 3.0))
    assert op_draw(SearchPriors(op_families=threes))[1] is None
    ops, cumulative = op_draw(SearchPriors(preset="uniform", op_families=OpFamilyWeights(dconv=0.0, math=2.5)))
    assert not {op for op in ops if op.startswith("DCONV")} and len(ops) == len(primitives.names()) - 4
    steps = [b - a for a, b in zip((0.0,) + cumulative, cumulative)]
    assert {op: w for op, w in zip(ops, steps) if w != 1.0} == dict.fromkeys(OP_FAMILIES["math"], 2.5)


def test_uniform_priors_draw_exactly_as_random_instruction_did():
    for seed in range(200):
        s, p = seed % 4, seed % 7
        a = random_instruction(random.Random(seed), s, p, 5)            # the draw before priors existed
        b = new_instruction(random.Random(seed), UNIFORM, s, p, 5)
        assert a == b


def _family_counts(priors, draws=6000, subprogram=3, num_subprograms=4):
    rng = random.Random(0)
    return collections.Counter(family_of(new_instruction(rng, priors, subprogram, 2, num_subprograms).op)
                               for _ in range(draws))


def test_family_weights_set_the_op_mix():
    counts = _family_counts(SearchPriors())
    total = sum(counts.values())
    weights = SearchPriors().op_families
    mass = {f: getattr(weights, f) * len(OP_FAMILIES[f]) for f in OP_FAMILIES}
    for family, share in mass.items():
        expected = share / sum(mass.values())
        assert abs(counts[family] / total - expected) < 0.02, (family, counts[family] / total, expected)
    only = SearchPriors(op_families=OpFamilyWeights(**{f: float(f in ("dense", "scale_shift")) for f in OP_FAMILIES}))
    assert set(_family_counts(only, draws=500)) == {"dense", "scale_shift"}


def test_call_and_branch_probabilities():
    def draws(priors, subprogram=0, n=2000):
        rng = random.Random(1)
        return [new_instruction(rng, priors, subprogram, 1, 4) for _ in range(n)]

    calls = SearchPriors(call_probability=1.0, branch_probability=0.0)
    assert all(ins.callee in (1, 2, 3) and ins.branch == 1 for ins in draws(calls))
    assert all(ins.callee is None for ins in draws(calls, subprogram=3))          # no higher subprogram
    never = SearchPriors(call_probability=0.0, branch_probability=1.0)
    assert all(ins.callee is None and ins.branch > 1 for ins in draws(never))
    default = draws(SearchPriors(), n=8000)
    assert abs(sum(ins.callee is not None for ins in default) / 8000 - 0.1) < 0.015
    assert abs(sum(ins.branch > 1 for ins in default) / 8000 - 0.05) < 0.01


def test_inputs_restrict_input_1():
    rng = random.Random(2)
    assert {new_instruction(rng, SearchPriors(), 0, 5, 1, inputs=(3, 6)).in1 for _ in range(200)} == {3, 6}


# ------------------------------------------------------------------------------------------------- live wires


def _splice(dna, op, s, p, state):
    """The DNA with op(h`state`) inserted at position p of subprogram s, spliced into its wire."""
    from primer_search.search.mutations import _add
    programs = _programs(dna)
    programs[s] = _add(programs[s], p, Instruction(op, in1=state))
    return dna.replace(subprograms=tuple(Subprogram(tuple(ins), sp.name) for ins, sp in zip(programs,
                                                                                              dna.subprograms)))


def _copies(graph, s: int) -> int:
    """How many times subprogram s is inlined in the graph (its call paths)."""
    return len({node.path.partition(f"S{s}.")[0] for node in graph.nodes if f"S{s}." in node.path
                and (node.path.startswith(f"S{s}.") or f"-S{s}." in node.path)})


@pytest.mark.parametrize("index", range(15))
def test_live_wires_are_the_inserts_that_change_the_graph_and_kill_nothing(index):
    dna = list(_dnas())[index]
    parent, wires = canonical_hash(dna), live_wires(_programs(dna))
    graph = lower(dna, fuse=False)
    used = {ins.op for ins in itertools.chain(*_programs(dna))}
    op = next(op for op in ("TANH", "SIN", "COS", "SIGMOID", "ABS", "SIGN", "SQUARE") if op not in used)  # a new node
    for s, instructions in enumerate(_programs(dna)):
        end = len(instructions)
        for p in range(end + 1):
            for state in range(p + 2):
                child = _splice(dna, op, s, p, state)
                changed = canonical_hash(child) != parent
                live = wires[s] is not None and state in wires[s][p]
                if p < end or wires[s] is None:
                    assert changed == live, (s, p, state)
                else:                            # at the end, any input changes the output; only its own wire
                    assert changed and live == (state == end + 1), (s, p, state)   # keeps every node
                if live:                         # one more node per inlined copy of S<s>, none fewer (unfused)
                    added = len(lower(child, fuse=False).nodes) - len(graph.nodes)
                    assert added == _copies(graph, s), (s, p, state)


def test_the_subprograms_with_wires_are_those_the_graph_runs():
    for dna in _dnas():
        ran = {segment.split(".")[0] for node in lower(dna, fuse=False).nodes for segment in node.path.split("-")}
        running = {f"S{s}" for s, wires in enumerate(live_wires(_programs(dna))) if wires is not None}
        assert running == ran - {"input", "output"}


def test_a_subprogram_no_live_instruction_calls_has_no_wires():
    dna = DNA(subprograms=(Subprogram((Instruction("S1", in1=0), Instruction("EXP", in1=0))),
                           Subprogram((Instruction("SIN", in1=0),)), Subprogram((Instruction("COS", in1=0),))))
    assert live_wires(_programs(dna)) == [((0,), (0,), (3,)), None, None]
