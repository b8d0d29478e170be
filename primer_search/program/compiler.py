"""DNA -> Keras 3 layer. The compiled block maps [B, S, d] to [B, S, d] with d = width_units x unit.

How it works: `CompiledBlock`.
"""

from __future__ import annotations

import hashlib
import math

import keras
import numpy as np
import tensorflow as tf

import primitives
from primitives import FEATURES, OpCall, axes
from primer_search.program.dna import DNA
from primer_search.program.graph import Graph, Node, lower, used_inputs_and_live


def _initializer(spec: primitives.WeightSpec, shape: tuple[int, ...], seed: int):
    if spec.init == "ones":
        return keras.initializers.Ones()
    if spec.init == "zeros":
        return keras.initializers.Zeros()
    if spec.init == "primer_dconv":  # Primer's T5 code: tap 0 starts at 0.5, the others at 0.5 / k
        taps = shape[1]
        value = np.full(shape, 0.5 / taps, np.float32)
        value[:, 0] = 0.5
        return keras.initializers.Constant(value)
    per_branch = shape[1:]  # glorot uniform over one branch's kernel [..., W, U]
    fan_in = math.prod(per_branch[:-1])
    fan_out = math.prod(per_branch[:-2]) * per_branch[-1]
    limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)


def _instruction_names(dna: DNA) -> list[dict[int, str]]:
    """For each subprogram, its live instructions' stable names "op/dim/branch/ordinal" by position."""
    _, live = used_inputs_and_live(dna)
    names = []
    for s, subprogram in enumerate(dna.subprograms):
        seen: dict[tuple, int] = {}
        by_position = {}
        for i in sorted(live[s]):
            ins = subprogram.instructions[i]
            reads_dim = primitives.is_primitive(ins.op) and primitives.DIM in primitives.get(ins.op).reads
            key = (ins.op, dna.dimensions[ins.dim] if reads_dim else "-", ins.branch)
            by_position[i] = "/".join(map(str, key + (seen.get(key, 0),)))
            seen[key] = seen.get(key, 0) + 1
        names.append(by_position)
    return names


def node_identity(dna: DNA, path: str, names: list[dict[int, str]] | None = None) -> str:
    """The stable identity of the graph node at `path` ("S0.1-S1.2-S3.0"), e.g. "S1/-/8/0 > S3/-/1/2 >
    CONV_1X1/1/1/0": what its weights' initial values depend on (`CompiledBlock`). `names` caches
    `_instruction_names(dna)`."""
    names = _instruction_names(dna) if names is None else names
    parts = []
    for step in path.split("-"):
        s, _, i = step[1:].partition(".")
        parts.append(names[int(s)][int(i)])
    return " > ".join(parts)


def weight_seed(seed: int, identity: str, name: str, shape: tuple[int, ...]) -> int:
    """The initializer seed of one weight: a hash of the block seed, node identity, weight name and shape."""
    text = f"{seed}|{identity}|{name}|{'x'.join(map(str, shape))}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def _dims(x: tf.Tensor) -> list:
    """Static sizes where known, dynamic scalars elsewhere (keeps static shapes through reshapes)."""
    dynamic = tf.shape(x)
    return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape)]


def _merge(x: tf.Tensor, node: Node, source_sig) -> tf.Tensor:
    x = axes.as_features(x, source_sig)                          # [B, m*k|1, S, W]
    if x.shape[1] == 1:                                          # identical copies: repeat the features
        return tf.tile(x, [1, 1, 1, node.k])                     # [B, 1, S, k*W]
    b, _, s, w = _dims(x)
    x = tf.reshape(x, [b, node.mult, node.k, s, w])              # [B, m, k, S, W]
    x = tf.transpose(x, [0, 1, 3, 2, 4])                         # [B, m, S, k, W]
    return tf.reshape(x, [b, node.mult, s, node.k * w])          # [B, m, S, k*W]


@keras.saving.register_keras_serializable(package="primer_search")
class CompiledBlock(keras.layers.Layer):
    """A decoder block compiled from a DNA. `get_config()` holds the DNA, so the block saves and reloads.

    Shape glossary: B batch, S sequence (any length; nothing is tied to it), d block width, m branch copies.
    Inside the block every tensor carries a branch axis: features [B, m|1, S, W], positions [B, m|1, S, S].
    A branch axis of size 1 means "identical in every copy" and broadcasts, so entering an 8-way branch copies
    nothing and the 8 per-branch projections of a shared input run as one fused matmul (`primitives.parametric.dense`),
    so a branched self-attention trains as fast as Keras' fused MultiHeadAttention (bench/compiler_speed.py).

    Rules (also in the README and primitives/README.md):
    - Only live instructions are built and run (`graph.lower` inlines calls and drops dead code).
    - Dimension mismatches: see `primitives.elementwise` (a single column broadcasts, else input 2 is cut or
      zero-padded to input 1's width); the final state is brought to width d the same way (a positions tensor is
      first collapsed to its causal mean over keys).
    - Causality is enforced by the primitives for every program, whatever the DNA contains.
    - T_MAT_MUL over features is the scaled dot product x @ y^T / sqrt(W), a stated deviation from the paper's plain
      matmul so attention's temperature does not change with the unit (`primitives.sequence`).
    - Rewrite: DIVIDE(MASK(EXP(x)), RED_SUM(MASK(EXP(x)))) on a positions tensor runs as a max-subtracted softmax over
      keys j <= t (`primitives.masked_softmax`); mathematically identical, and it cannot overflow.

    Weight initialization (common random numbers): a weight's initial value depends only on the block seed, the weight's
    name and shape, and its node's identity (`node_identity`): along the node's call path, each instruction is named
    by (op, resolved relative dimension if the op reads one, branching, ordinal among the live instructions of its
    subprogram with that same op, dimension and branching), so "S0.1-S1.2-S3.0" is "S1/-/8/0 > S3/-/1/2 >
    CONV_1X1/1/1/0" (value projection). These are hashed (SHA-256, stable across processes) into the initializer's
    seed. An edit thus re-draws only the weights it adds or changes: a weight keeps its value when instructions are
    inserted or deleted around it, when constants change, and across programs that share the instruction (the
    Transformer and Primer-EZ seeds share all their projection and feed-forward kernels). Limits: a new shape
    re-draws (a changed dimension, or a new input width); inserting, deleting or moving an instruction with the same
    op, dimension and branching before another in the same subprogram (also by making one live or dead) re-deals the
    later ones' values in order; a constant-initialized weight (SCALE 1, SHIFT 0, DCONV taps) is the same anyway.
    """

    def __init__(self, dna, unit: int, width_units: int = 8, seed: int = 0, fuse: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.dna = dna if isinstance(dna, DNA) else DNA.from_dict(dna)
        if isinstance(unit, bool) or not isinstance(unit, int) or unit < 1:
            raise ValueError(f"CompiledBlock: unit must be a positive integer, received unit={unit!r}")
        self.unit, self.width_units, self.seed, self.fuse = unit, width_units, seed, fuse
        self.graph: Graph = lower(self.dna, width_units, fuse=fuse)
        self.d_model = width_units * unit
        self._weights: dict[int, dict[str, keras.Variable]] = {}

    def build(self, input_shape):
        if input_shape[-1] != self.d_model:
            raise ValueError(f"CompiledBlock: input width {input_shape[-1]} does not match the block width "
                             f"d = width_units x unit = {self.width_units} x {self.unit} = {self.d_model}")
        names = _instruction_names(self.dna)
        for node in self.graph.nodes:
            specs = node.weight_specs()
            identity = node_identity(self.dna, node.path, names) if specs else ""
            for name, spec in specs.items():
                shape = (node.mult,) + spec.absolute_shape(self.unit)
                self._weights.setdefault(node.id, {})[name] = self.add_weight(
                    name=f"{node.path}.{name}", shape=shape,
                    initializer=_initializer(spec, shape, weight_seed(self.seed, identity, name, shape)))

    def call(self, x):                                           # x: [B, S, d]
        values: dict[int, tf.Tensor] = {}
        for node in self.graph.nodes:
            values[node.id] = self.run_node(node, values, x)
        return values[self.graph.output.id]                     # [B, S, d]

    def node_weights(self, node_id: int) -> dict[str, keras.Variable]:
        """The weights of one graph node by name (empty for a node without weights)."""
        return self._weights.get(node_id, {})

    def run_node(self, node: Node, values, x) -> tf.Tensor:
        """One graph node's output from its inputs' `values` (by node id) and the block input x; the whole-block
        pass runs every node in order, `primer_search.lm.decoding` runs them on one position's rows."""
        args = [values[i] for i in node.inputs]
        if node.op == "INPUT":
            return x[:, None]                                    # [B, 1, S, d]
        if node.op == "SPLIT":                                   # copies differ only once weights make them
            return args[0] if args[0].shape[1] == 1 else tf.repeat(args[0], node.k, axis=1)
        if node.op == "MERGE":
            return _merge(args[0], node, node.input_sigs[0])
        if node.op == "SOFTMAX":
            return primitives.masked_softmax(args[0])            # [B, m, S, S]
        if node.op == "OUTPUT":
            out, sig = args[0][:, 0], node.input_sigs[0]         # [B, S, W] or [B, S, S]
            if sig.kind != FEATURES:
                out, sig = axes.causal_mean(out), primitives.features(primitives.SINGLE)  # [B, S, 1]
            return axes.fit(out, sig, self.d_model)              # [B, S, d]
        call = OpCall(x=args[0], sig_x=node.input_sigs[0],
                      y=args[1] if len(args) > 1 else None,
                      sig_y=node.input_sigs[1] if len(args) > 1 else None,
                      out=node.sig, const=node.const if node.const is not None else 0.0,
                      weights=self.node_weights(node.id), unit=self.unit)
        return primitives.get(node.op).fn(call)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dna=self.dna.to_dict(), unit=self.unit, width_units=self.width_units, seed=self.seed,
                      fuse=self.fuse)
        return config


def compile_block(dna: DNA, unit: int, width_units: int = 8, seed: int = 0, **kwargs) -> CompiledBlock:
    """Compile a DNA into a Keras layer mapping [B, S, width_units * unit] to the same shape."""
    return CompiledBlock(dna, unit=unit, width_units=width_units, seed=seed, **kwargs)
