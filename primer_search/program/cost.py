"""Analytic cost of a language model built from a DNA: FLOPs per token and a training-memory estimate.

Both are deterministic and machine-independent.

Counted per token, forward pass, from the lowered graph at a size unit and sequence length S:
    an op with a kernel (CONV_*, DCONV_*)   2 x kernel elements (one multiply-add per weight)
    MAT_MUL  [S, S] x [S, W] -> [S, W]       2 x S x W
    T_MAT_MUL [S, W] x [S, W]^T -> [S, S]    2 x S x W + W  (W: the contracted width; the + W scales x by
                                            1/sqrt(W)); two positions inputs: 2 x S x S, unscaled
    fused SOFTMAX over [S, S]               5 x S
    any other primitive                     1 x its largest operand (W for features, S for positions)
each times the node's branch multiplicity; SPLIT, MERGE, INPUT and OUTPUT are free. The model adds the output
projection (2 x d x V); embedding lookups, positions and the final norm are not counted. A training step costs
3 x forward (the backward pass is about twice the forward), the usual convention (Kaplan et al. 2020).
Quadratic sequence ops are counted in full even though causal masking wastes half of them: the count measures
what the compiled program computes.

Memory (an estimate to refuse hopeless models before they take a worker down, not a measurement): 4-byte floats
for weights, gradients and optimizer state (4 x parameters), every node's output kept for the backward pass
(twice, for its gradient) over a batch, and the logits with their softmax and gradient (3 x batch tokens x V).
"""

from __future__ import annotations

from primitives import FEATURES
from primer_search.program.graph import Graph, Node

FREE = {"INPUT", "OUTPUT", "SPLIT", "MERGE"}
TRAINING_MULTIPLIER = 3


def _elements(sig, unit: int, length: int) -> int:
    return sig.width.absolute(unit) if sig.kind == FEATURES else length


def node_flops(node: Node, unit: int, length: int) -> int:
    """Forward FLOPs per token of one graph node."""
    if node.op in FREE:
        return 0
    if node.op in ("MAT_MUL", "T_MAT_MUL"):
        contracted = node.sig if node.op == "MAT_MUL" else node.input_sigs[0]
        per_token = 2 * length * _elements(contracted, unit, length)
        if node.op == "T_MAT_MUL" and any(sig.kind == FEATURES for sig in node.input_sigs):
            per_token += _elements(contracted, unit, length)          # x / sqrt(W), the scaled dot product
    elif node.op == "SOFTMAX":
        per_token = 5 * length
    elif node.op.startswith(("CONV_", "DCONV_")):
        spec = next(iter(node.weight_specs().values()))
        per_token = 2
        for d in spec.absolute_shape(unit):
            per_token *= d
    else:
        per_token = max(_elements(sig, unit, length) for sig in (node.sig, *node.input_sigs))
    return node.mult * per_token


def block_flops(graph: Graph, unit: int, length: int) -> int:
    """Forward FLOPs per token of one block."""
    return sum(node_flops(node, unit, length) for node in graph.nodes)


def nodes_flops(graph: Graph, node_ids, unit: int, length: int) -> int:
    """Forward FLOPs per token of some nodes of a block (e.g. those a cache needs)."""
    return sum(node_flops(graph.nodes[i], unit, length) for i in node_ids)


def model_flops(graph: Graph, unit: int, length: int, num_layers: int, vocab_size: int) -> int:
    """Forward FLOPs per token of the whole language model."""
    d = graph.width_units * unit
    return num_layers * block_flops(graph, unit, length) + 2 * d * vocab_size


def training_flops_per_token(graph: Graph, unit: int, length: int, num_layers: int, vocab_size: int) -> int:
    return TRAINING_MULTIPLIER * model_flops(graph, unit, length, num_layers, vocab_size)


def training_memory_bytes(graph: Graph, unit: int, length: int, num_layers: int, vocab_size: int,
                          parameters: int, batch_tokens: int, output_heads: int = 1) -> int:
    """Estimated peak memory of a training step (see the module docstring); `output_heads` vocabulary
    projections (CALM exits) each keep their logits."""
    per_token = sum(node.mult * _elements(node.sig, unit, length) for node in graph.nodes)
    activations = 2 * num_layers * per_token * batch_tokens
    return 4 * (4 * parameters + activations + 3 * output_heads * batch_tokens * vocab_size)
