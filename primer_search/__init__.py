"""primer-search: evolutionary search over TensorFlow primitives for efficient decoder blocks.

The pieces, in the order data flows through them:

    dna.DNA, dna.load_dna, dna.save_dna      the program representation and its files
    listing.to_listing / from_listing        the paper-style text form
    graph.lower, graph.canonical_hash        live graph, computation hash, parameter counts
    compiler.compile_block                   DNA -> Keras layer [B, S, d] -> [B, S, d]
    model.build_model                        the language model around the blocks
    model_cost.choose_unit                   its size unit in a parameter band
    seeds.load_seed                          transformer, primer_ez, primer

The op vocabulary is the separate package `primitives`.
"""

__version__ = "0.1.0"
