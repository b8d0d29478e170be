from primer_search.program import cost
from primer_search.program.graph import lower
from primer_search.program.seeds import load_seed

D, S = 512, 64   # the paper's seed: unit 64, 8 heads of 64


def test_transformer_flops_by_hand():
    graph = lower(load_seed("transformer"))
    by_op = {}
    for node in graph.nodes:
        by_op[node.op] = by_op.get(node.op, 0) + cost.node_flops(node, 64, S)
    assert by_op["CONV_1X1"] == 2 * (4 * D * D + 2 * D * 4 * D)        # Q, K, V, O and the feed-forward
    assert by_op["MAT_MUL"] == 2 * S * D                                # weighted values, 8 heads
    assert by_op["T_MAT_MUL"] == 2 * S * D + D                          # scores, and q / sqrt(64)
    assert by_op["SOFTMAX"] == 5 * S * 8
    assert by_op["SPLIT"] == by_op["MERGE"] == 0
    total = cost.block_flops(graph, 64, S)
    assert 0 < total - sum(by_op[k] for k in ("CONV_1X1", "T_MAT_MUL", "MAT_MUL", "SOFTMAX")) < 40 * D
    assert "C_MUL" not in by_op                                         # the scale is T_MAT_MUL's


def test_positions_t_mat_mul_is_not_scaled():
    from primer_search.program.dna import DNA, Instruction, Subprogram

    dna = DNA(subprograms=(Subprogram((Instruction("T_MAT_MUL", in1=0, in2=0), Instruction("T_MAT_MUL", in1=2,
                                                                                           in2=2))),),
              constants=(0.0, 0.0), dimensions=(1, 2, 4, 8, 12, 16))
    features_product, positions_product = [n for n in lower(dna).nodes if n.op == "T_MAT_MUL"]
    assert cost.node_flops(features_product, 64, S) == 2 * S * D + D
    assert cost.node_flops(positions_product, 64, S) == 2 * S * S


def test_model_and_training_flops():
    graph = lower(load_seed("primer_ez"))
    block = cost.block_flops(graph, 16, S)
    assert cost.model_flops(graph, 16, S, 6, 1000) == 6 * block + 2 * 128 * 1000
    assert cost.training_flops_per_token(graph, 16, S, 6, 1000) == 3 * (6 * block + 2 * 128 * 1000)
    assert cost.block_flops(graph, 16, 2 * S) > block                   # attention grows with the sequence


def test_depthwise_convolution_costs_its_taps():
    node = next(n for n in lower(load_seed("primer_ez")).nodes if n.op == "DCONV_3X1")
    assert cost.node_flops(node, 64, S) == node.mult * 2 * 3 * 64


def test_memory_estimate_grows_with_batch_and_vocabulary():
    graph = lower(load_seed("transformer"))
    small = cost.training_memory_bytes(graph, 16, S, 2, 1000, 1_000_000, 4096)
    assert small > 4 * 4 * 1_000_000
    assert cost.training_memory_bytes(graph, 16, S, 2, 1000, 1_000_000, 8192) > small
    assert cost.training_memory_bytes(graph, 16, S, 2, 32000, 1_000_000, 4096) > small
