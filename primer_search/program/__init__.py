"""Programs: the DNA, its paper-style listing, lowering to a live graph, compiling to a Keras block, and its cost."""
