"""primer-search: evolutionary search over TensorFlow primitives for efficient decoder blocks.

The layers, lowest first (a module imports only from its own layer or those below; README, "Layout"):

    primitives              the op vocabulary (a separate package)
    primer_search.program   the DNA, its listing, lowering, compiling and cost
    primer_search.config    the YAML config
    primer_search.lm        language models, their data, training, decoding and fitness
    primer_search.search    the evolutionary search and its run store
    primer_search.retrain   retraining winners at scale
    primer_search.cli       the command line
"""

__version__ = "0.1.0"
