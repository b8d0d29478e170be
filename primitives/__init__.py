"""The TensorFlow op vocabulary of primer-search: Primer's 39 primitives as one closed registry.

    import primitives
    primitives.get("CONV_1X1")      # -> OpSpec
    primitives.names()              # all 39 names, catalogue order

See primitives/README.md for the catalogue (generated from the registry and checked by a test).
"""

from primitives.registry import (CONST, DIM, FEATURES, IN1, IN2, POSITIONS, POSITIONS_SIG, SINGLE, OpCall,
                                 OpSpec, Sig, WeightSpec, Width, catalogue_markdown, features, get,
                                 is_primitive, names, ops)
from primitives import elementwise, sequence, parametric  # noqa: F401,E402  (registration order = catalogue)
from primitives.sequence import masked_softmax  # noqa: E402

__all__ = ["CONST", "DIM", "FEATURES", "IN1", "IN2", "POSITIONS", "POSITIONS_SIG", "SINGLE", "OpCall", "OpSpec",
           "Sig", "WeightSpec", "Width", "catalogue_markdown", "features", "get", "is_primitive", "masked_softmax",
           "names", "ops"]
