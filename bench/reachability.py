"""Reachability of Primer's two main changes from the Transformer seed, under the uniform and the default priors.

Each child is one `mutations.mutate` of the Transformer seed (the project's own mutation, with its no-op
rejection; default mutation weights, `max_instructions` 40; seeded), for each of `SearchPriors(preset="uniform")`
(the paper's draw) and `SearchPriors()` (the defaults). Printed per setting:

- the probability that a child holds squared ReLU: its lowered graph (`graph.lower`) has a SQUARE whose input is
  a MAX with threshold 0 (the seed's only one is the feed-forward's ReLU);
- the probability that it holds a depthwise convolution after all of Q, K and V: every operand of every
  T_MAT_MUL (query, key) and the value operand of every attention MAT_MUL reaches its CONV_1X1 projection,
  following input 1 upwards, through a DCONV_kX1 (any k, branched or not);
- the probability that it is exactly the seed plus the Primer edit (its canonical hash equals the seed's with a
  SQUARE spliced after the ReLU, or a DCONV_3X1 after the projection instruction(s); both located on the seed's
  graph, not from a listing);
- the share of each mutation type among accepted children, and the share of insert draws (`mutations.insert`
  alone) whose child computes its parent's graph: dead code, which `mutate` rejects and draws again;
- the expected number of individuals (children of the seed) before either change is proposed, 1 / p, and the
  probability of proposing one within 40 and within 300 children.

    python bench/reachability.py [--children 40000] [--inserts 10000] [--seed 0]

The last line is the factor by which the default priors raise the probability of proposing either change (with a
95% interval from the binomial counts).
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import random
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.config import MutationWeights  # noqa: E402
from primer_search.program.dna import Instruction, Subprogram  # noqa: E402
from primer_search.program.graph import canonical_hash, lower  # noqa: E402
from primer_search.program.search_space import SearchPriors  # noqa: E402
from primer_search.program.seeds import load_seed  # noqa: E402
from primer_search.search import mutations  # noqa: E402
from primitives import POSITIONS  # noqa: E402

MAX_INSTRUCTIONS = 40
WALK = 16                     # nodes followed upwards from an attention operand to its projection
SETTINGS = {"uniform": SearchPriors(preset="uniform"), "default": SearchPriors()}


# ------------------------------------------------------------------------------------------------- detection


def _is_relu(node) -> bool:
    return node.op == "MAX" and node.const == 0.0


def squared_relu_nodes(graph) -> list:
    """The SQUARE nodes whose input is a ReLU (MAX with threshold 0)."""
    return [n for n in graph.nodes if n.op == "SQUARE" and _is_relu(graph.nodes[n.inputs[0]])]


def _projection(nodes, node_id: int):
    """From an attention operand up input 1 to its CONV_1X1 projection: (projection node, whether a DCONV lies
    between), or (None, False) when no projection is reached."""
    dconv = False
    for _ in range(WALK):
        node = nodes[node_id]
        if node.op == "CONV_1X1":
            return node, dconv
        dconv = dconv or node.op.startswith("DCONV_")
        if not node.inputs:
            break
        node_id = node.inputs[0]
    return None, False


def attention_operands(graph) -> list[int]:
    """Query and key (both inputs of every T_MAT_MUL) and value (input 2 of every MAT_MUL over positions)."""
    operands = [i for n in graph.nodes if n.op == "T_MAT_MUL" for i in n.inputs]
    values = [n.inputs[1] for n in graph.nodes if n.op == "MAT_MUL" and n.input_sigs[0].kind == POSITIONS]
    return operands + values if operands and values else []


def dconv_after_qkv(graph) -> bool:
    operands = attention_operands(graph)
    return bool(operands) and all(_projection(graph.nodes, i)[1] for i in operands)


def detect(dna) -> tuple[bool, bool]:
    graph = lower(dna)
    return bool(squared_relu_nodes(graph)), dconv_after_qkv(graph)


# ------------------------------------------------------------------------------------ the exact Primer edits


def _instruction_at(path: str) -> tuple[int, int]:
    """The instruction a node comes from: the last segment of its path, e.g. "S0.5-S2.2-S9.0" -> (9, 0)."""
    s, i = path.split("-")[-1].removeprefix("S").split(".")
    return int(s), int(i)


def _splice_after(dna, targets, op: str):
    """The DNA with `op` spliced after each instruction (s, i) in `targets`, reading it (a Primer insert)."""
    programs = [sp.instructions for sp in dna.subprograms]
    for s, i in sorted(targets, reverse=True):            # later positions first: earlier indices stay valid
        programs[s] = mutations._add(programs[s], i + 1, Instruction(op, in1=i + 2))
    subprograms = tuple(Subprogram(tuple(ins), sp.name) for ins, sp in zip(programs, dna.subprograms))
    return dna.replace(subprograms=subprograms, name="")


def primer_edits(seed) -> dict[str, str]:
    """Canonical hashes of the seed + squared ReLU and of the seed + MDHA (DCONV_3X1 after the projections)."""
    graph = lower(seed)
    relus = {_instruction_at(n.path) for n in graph.nodes if _is_relu(n)}
    projections = {_instruction_at(_projection(graph.nodes, i)[0].path) for i in attention_operands(graph)}
    if not relus or not projections:
        raise SystemExit(f"the seed has {len(relus)} ReLU and {len(projections)} Q/K/V projection instructions; "
                         f"expected at least one of each")
    squared, mdha = _splice_after(seed, relus, "SQUARE"), _splice_after(seed, projections, "DCONV_3X1")
    assert squared_relu_nodes(lower(squared)) and dconv_after_qkv(lower(mdha)), "the detectors miss the edits"
    return {"squared_relu": canonical_hash(squared), "mdha": canonical_hash(mdha)}


# ------------------------------------------------------------------------------------------------ measuring


def measure(seed, priors: SearchPriors, children: int, inserts: int, rng_seed: int) -> dict:
    parent_hash, exact = canonical_hash(seed), primer_edits(seed)
    rng, weights = random.Random(rng_seed), MutationWeights()
    kinds, seen = collections.Counter(), {}
    counts = collections.Counter()
    for _ in range(children):
        child, mutation = mutations.mutate(seed, rng, weights, MAX_INSTRUCTIONS, parent_hash=parent_hash,
                                           priors=priors)
        kinds[mutation.kind] += 1
        if mutation.child_hash not in seen:
            seen[mutation.child_hash] = detect(child)
        squared, dconv = seen[mutation.child_hash]
        counts["squared_relu"] += squared
        counts["dconv"] += dconv
        counts["either"] += squared or dconv
        counts["squared_relu_exact"] += mutation.child_hash == exact["squared_relu"]
        counts["mdha_exact"] += mutation.child_hash == exact["mdha"]
    rng = random.Random(rng_seed + 1)
    dead = sum(canonical_hash(mutations.insert(seed, rng, MAX_INSTRUCTIONS, priors)[0]) == parent_hash
               for _ in range(inserts))
    return {"counts": counts, "kinds": kinds, "dead": dead, "distinct": len(seen)}


def _one_in(count: int, n: int) -> str:
    return f"{count / n:.5f} (1 in {n / count:,.0f})" if count else "0"


def report(name: str, priors: SearchPriors, result: dict, children: int, inserts: int) -> float:
    counts, kinds = result["counts"], result["kinds"]
    print(f"\n{name}: {priors}")
    print(f"  children {children:,} ({result['distinct']:,} distinct graphs)")
    print(f"  holds squared ReLU            {_one_in(counts['squared_relu'], children)}")
    print(f"    exactly seed + squared ReLU {_one_in(counts['squared_relu_exact'], children)}")
    print(f"  holds DCONV after Q, K, V     {_one_in(counts['dconv'], children)}")
    print(f"    exactly seed + MDHA         {_one_in(counts['mdha_exact'], children)}")
    print(f"  holds either                  {_one_in(counts['either'], children)}")
    shares = ", ".join(f"{kind} {kinds[kind] / children:.1%}" for kind in mutations.MUTATIONS if kinds[kind])
    print(f"  mutation types of the children: {shares}")
    print(f"  inserts that leave the graph unchanged (dead code): {result['dead'] / inserts:.1%} of {inserts:,}")
    p = counts["either"] / children
    if p:
        print(f"  expected individuals before either change is proposed: {1 / p:,.0f}; proposed within 40 "
              f"children: {1 - (1 - p) ** 40:.1%}, within 300: {1 - (1 - p) ** 300:.1%}")
    return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--children", type=int, default=40_000, help="children of the seed per priors setting")
    parser.add_argument("--inserts", type=int, default=10_000, help="insert draws per setting for the dead share")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.children < 1 or args.inserts < 1:
        parser.error("--children and --inserts must be at least 1")
    seed = load_seed("transformer")
    probabilities, eithers = {}, {}
    for name, priors in SETTINGS.items():
        start = time.perf_counter()
        result = measure(seed, priors, args.children, args.inserts, args.seed)
        probabilities[name] = report(name, priors, result, args.children, args.inserts)
        eithers[name] = result["counts"]["either"]
        print(f"  ({time.perf_counter() - start:.0f} s)")
    if not all(eithers.values()):
        raise SystemExit(f"too few children to compare: either change proposed {eithers} times")
    factor = probabilities["default"] / probabilities["uniform"]
    spread = 1.96 * math.sqrt(sum((1 - probabilities[k]) / eithers[k] for k in SETTINGS))
    print(f"default priors raise the probability of proposing either change by {factor:.2f}x "
          f"(95% interval {factor * math.exp(-spread):.2f}-{factor * math.exp(spread):.2f})")


if __name__ == "__main__":
    main()
