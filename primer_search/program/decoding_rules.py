"""Which rule decodes each node of a lowered graph one token at a time (`primer_search.lm.decoding`), from the
graph alone: the cost model counts a cached token's FLOPs with it, without building the block.
"""

from __future__ import annotations

import re

import primitives
from primitives import FEATURES, POSITIONS
from primer_search.program.graph import Graph, Node

PSEUDO_OPS = frozenset({"INPUT", "SPLIT", "MERGE", "SOFTMAX", "OUTPUT"})
# Sequence-reaching primitives that are row-local as they stand: they mask keys j > t themselves.
ROW_LOCAL_SEQUENCE_OPS = frozenset({"RED_MEAN", "RED_SUM", "RED_MIN", "RED_MAX", "RED_PROD"})
CUMULATIVE_OPS = frozenset({"CUM_SUM", "CUM_PROD"})
_CONV = re.compile(r"^D?CONV_(\d+)X1$")

# How a node computes its row (primer_search.lm.decoding says how each is run).
ROW, MASK, KEYS, VALUES, WINDOW, RUNNING = "row", "mask", "keys", "values", "window", "running"


def conv_taps(op: str) -> int:
    """The kernel width k of CONV_kX1 / DCONV_kX1 (k > 1); 0 for anything else (CONV_1X1 is pointwise)."""
    match = _CONV.match(op)
    return int(match.group(1)) if match and int(match.group(1)) > 1 else 0


def decoding_rule(node: Node) -> tuple[str | None, str]:
    """(rule, reason): how the decoder computes the node's row, or (None, why it cannot be row-local).

    Why this is exact: every node's row at t, restricted to keys j <= t, is a function of its inputs' rows at t
    (keys <= t) and of the rows at s < t (keys <= s) of the inputs that the decoder keeps; by induction over the
    topological order this gives the full pass's row t. It holds for an op iff it never reads a positions entry
    (s, j) with j > s, i.e. the future keys of a row (the full pass computes them, the decoder never does):
    - pointwise unary/binary ops, SCALE, SHIFT, CONV_1X1: entry by entry; a positions input meeting features enters
      by its causal mean over keys j <= t (`axes.as_features`); MERGE and OUTPUT collapse positions the same way.
    - RED_* and SOFTMAX on positions mask keys j > t before reducing; on features they reduce the feature axis.
    - MAT_MUL with a features x is pointwise; with a positions x it contracts x's keys j <= t (masked) against rows
      j <= t of a features y: the values history.
    - T_MAT_MUL: entry (t, s), s <= t, reads x's row t and y's row s; a positions x or y is masked to keys <= t
      resp. <= s, or enters by its causal mean: the keys history holds exactly those entries.
    - CONV_kX1 / DCONV_kX1 read rows t-k+1..t of the causal-mean features (a projection of each row, for CONV): the
      window. CUM ops on features: the previous output row.
    Not row-local, so such a graph falls back (see `fallback_reason`):
    - CUM_SUM / CUM_PROD over a positions tensor: entry (t, j) sums entries (s, j) for s < j <= t, the future keys of
      earlier rows s.
    - MAT_MUL(positions x, positions y): entry (t, k) contracts y[j, k] for j <= t, including y's future keys k > j.
    - any primitive that reaches along the sequence and that this module does not know (a future vocabulary entry):
      safe by default.
    Nothing else reads a future key: MASK, RED_*, SOFTMAX, MAT_MUL, T_MAT_MUL and the causal mean all mask them.
    """
    op = node.op
    if op in PSEUDO_OPS:
        return ROW, ""
    kinds = [sig.kind for sig in node.input_sigs]
    if op in CUMULATIVE_OPS:
        if kinds[0] == POSITIONS:
            return None, (f"n{node.id} = {op}(n{node.inputs[0]}) runs over a positions tensor: its entry (t, j) "
                          f"sums the future keys j > s of earlier rows s")
        return RUNNING, ""
    if op == "MAT_MUL":
        if kinds[0] == FEATURES:
            return ROW, ""                                      # the pointwise product
        if kinds[1] == POSITIONS:
            return None, (f"n{node.id} = MAT_MUL(n{node.inputs[0]}, n{node.inputs[1]}) multiplies two positions "
                          f"tensors: it reads y's future keys k > j of earlier rows j")
        return VALUES, ""
    if op == "T_MAT_MUL":
        return KEYS, ""
    if op == "MASK":
        return MASK, ""
    if conv_taps(op):
        return WINDOW, ""
    spec = primitives.get(op)
    if spec.sequence == "none" or op in ROW_LOCAL_SEQUENCE_OPS:
        return ROW, ""
    return None, (f"n{node.id} = {op} reaches along the sequence ({spec.sequence}) and has no decoding rule in "
                  f"primer_search.program.decoding_rules")


def fallback_reason(graph: Graph) -> str | None:
    """Why the graph cannot be decoded row by row (the first node that breaks row-locality), or None if it can."""
    for node in graph.nodes:
        rule, reason = decoding_rule(node)
        if rule is None:
            return reason
    return None


def cacheable(graph: Graph) -> bool:
    """Whether `BlockDecoder` decodes the graph with per-op caches (True) or by re-running the prefix (False)."""
    return fallback_reason(graph) is None


def cache_nodes(graph: Graph) -> frozenset[int]:
    """Ids of the nodes a position must compute for the cache alone (what `BlockDecoder.extend` runs): the nodes
    whose rows a cache keeps (keys, values, a convolution's input, a running sum) and all their ancestors. From the
    graph alone, so costs can be counted without building the block."""
    targets = []
    for node in graph.nodes:
        rule = decoding_rule(node)[0]
        if rule in (KEYS, VALUES):
            targets.append(node.inputs[1])
        elif rule == WINDOW:
            targets.append(node.inputs[0])
        elif rule == RUNNING:
            targets.append(node.id)
    needed = set()
    while targets:
        node_id = targets.pop()
        if node_id not in needed:
            needed.add(node_id)
            targets.extend(graph.nodes[node_id].inputs)
    return frozenset(needed)
