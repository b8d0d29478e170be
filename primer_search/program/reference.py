"""Hand-written Keras 3 reference decoder blocks: the baseline used by tests and bench/compiler_speed.py.

`ReferenceTransformerBlock` computes what the `transformer` seed DNA computes (and, with `primer_ez=True`, what
the `primer_ez` seed computes), but from standard Keras pieces, so the tests can check the compiler's output
against it and the benchmark can compare the compiled block's speed with a conventional implementation.

    h = x + out_proj(attention(norm1(x)))        pre-norm, heads concatenated in head order, no biases
    y = h + dense2(act(dense1(norm2(h))))        act = relu (squared relu for Primer-EZ)

Seed semantics reproduced exactly:
- layer norm with its epsilon as a floor: (x - mean) / sqrt(max(mean((x - mean)^2), 1e-6)) * gamma + beta;
- attention scores q k^T / sqrt(head_dim), the standard scale (T_MAT_MUL's, at every size unit);
- Primer-EZ: a causal depthwise 3-tap conv over positions after each of the Q, K and V projections.

B batch, S sequence, D model width, N heads, H head size, F feed-forward width.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def squared_relu(x):
    return ops.square(ops.relu(x))


@keras.saving.register_keras_serializable(package="primer_search")
class FlooredLayerNorm(keras.layers.Layer):
    """Layer norm over the last axis whose variance is floored at `epsilon` (the seeds' form) rather than shifted."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=input_shape[-1:], initializer="ones")
        self.beta = self.add_weight(name="beta", shape=input_shape[-1:], initializer="zeros")

    def call(self, x):                                           # x: [..., D]
        centered = x - ops.mean(x, axis=-1, keepdims=True)
        variance = ops.maximum(ops.mean(ops.square(centered), axis=-1, keepdims=True), self.epsilon)
        return centered / ops.sqrt(variance) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="primer_search")
class ReferenceTransformerBlock(keras.layers.Layer):
    """Pre-norm decoder block [B, S, D] -> [B, S, D]; `primer_ez=True` adds the Primer-EZ changes."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int, d_ff: int, primer_ez: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_heads, self.head_dim, self.d_ff = d_model, num_heads, head_dim, d_ff
        self.primer_ez = primer_ez
        self.norm1, self.norm2 = FlooredLayerNorm(), FlooredLayerNorm()
        inner = num_heads * head_dim
        if primer_ez:
            self.q, self.k, self.v = (keras.layers.Dense(inner, use_bias=False) for _ in range(3))
            # causal depthwise conv: pad 2 positions on the left, then a 'valid' 3-tap conv
            self.dconv_q, self.dconv_k, self.dconv_v = (
                keras.Sequential([keras.layers.ZeroPadding1D((2, 0)),
                                  keras.layers.DepthwiseConv1D(3, use_bias=False)]) for _ in range(3))
            self.out_proj = keras.layers.Dense(d_model, use_bias=False)
        else:
            self.mha = keras.layers.MultiHeadAttention(num_heads, key_dim=head_dim, use_bias=False)  # 1/sqrt(H)
        self.dense1 = keras.layers.Dense(d_ff, activation=squared_relu if primer_ez else "relu")
        self.dense2 = keras.layers.Dense(d_model)

    def build(self, input_shape):                                # input_shape: (B, S, D)
        inner = (None, None, self.num_heads * self.head_dim)
        for norm in (self.norm1, self.norm2):
            norm.build(input_shape)
        if self.primer_ez:
            for proj, dconv in ((self.q, self.dconv_q), (self.k, self.dconv_k), (self.v, self.dconv_v)):
                proj.build(input_shape)
                dconv.build(inner)
            self.out_proj.build(inner)
        else:
            self.mha.build(input_shape, input_shape, input_shape)
        self.dense1.build(input_shape)
        self.dense2.build((None, None, self.d_ff))

    def _attention(self, x):                                     # x: [B, S, D]
        if not self.primer_ez:
            return self.mha(x, x, x, use_causal_mask=True)                       # [B, S, D]
        heads = (-1, ops.shape(x)[1], self.num_heads, self.head_dim)
        q = ops.reshape(self.dconv_q(self.q(x)), heads)          # [B, S, N, H]
        k = ops.reshape(self.dconv_k(self.k(x)), heads)          # [B, S, N, H]
        v = ops.reshape(self.dconv_v(self.v(x)), heads)          # [B, S, N, H]
        o = ops.dot_product_attention(q, k, v, is_causal=True)  # [B, S, N, H]; scale 1/sqrt(H)
        return self.out_proj(ops.reshape(o, heads[:2] + (self.num_heads * self.head_dim,)))  # [B, S, D]

    def call(self, x):                                           # x: [B, S, D]
        h = x + self._attention(self.norm1(x))                   # [B, S, D]
        return h + self.dense2(self.dense1(self.norm2(h)))       # [B, S, D]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(d_model=self.d_model, num_heads=self.num_heads, head_dim=self.head_dim, d_ff=self.d_ff,
                      primer_ez=self.primer_ez)
        return config


def reference_for(compiled_block, primer_ez: bool | None = None) -> ReferenceTransformerBlock:
    """A built reference block of the same shapes as a compiled transformer / primer_ez seed block."""
    if primer_ez is None:
        primer_ez = any(n.op == "DCONV_3X1" for n in compiled_block.graph.nodes)
    heads = next(n.mult for n in compiled_block.graph.nodes if n.op == "SPLIT")
    d_ff = next(n.dim.absolute(compiled_block.unit) for n in compiled_block.graph.nodes
                if n.op == "CONV_1X1" and n.path.startswith("S0.5-"))
    block = ReferenceTransformerBlock(compiled_block.d_model, heads, compiled_block.unit, d_ff, primer_ez=primer_ez)
    block.build((None, None, compiled_block.d_model))
    return block


# Compiled seed node (path, op) -> reference weight. Paths name the seed's instructions: S0.i is instruction i of
# `main` (0 norm1, 1 attention, 2 output projection, 4 norm2, 5 feed-forward); inside attention S1.0 / S1.1 / S1.2
# are key / query / value, whose S3.0 is the CONV_1X1 projection and S3.1 the DCONV_3X1.
_NORMS = {"S0.0-S5.1-S7.0": ("norm1", "gamma"), "S0.0-S5.1-S7.1": ("norm1", "beta"),
          "S0.4-S5.1-S7.0": ("norm2", "gamma"), "S0.4-S5.1-S7.1": ("norm2", "beta")}
_FFN = {("S0.5-S2.0", "CONV_1X1"): ("dense1", "kernel"), ("S0.5-S2.1", "SHIFT"): ("dense1", "bias"),
        ("S0.5-S2.3", "CONV_1X1"): ("dense2", "kernel"), ("S0.5-S2.4", "SHIFT"): ("dense2", "bias")}
_QKV = {"S0.1-S1.0": "k", "S0.1-S1.1": "q", "S0.1-S1.2": "v"}


def copy_weights(compiled_block, reference_block: ReferenceTransformerBlock) -> None:
    """Set the reference block's weights from a built compiled transformer / primer_ez seed block.

    Compiled weights have a leading branch axis (8 heads, else 1):
      SCALE / SHIFT vector [1, W]       -> FlooredLayerNorm gamma / beta, Dense bias   [W]
      FFN CONV_1X1 kernel [1, W, U]     -> Dense kernel [W, U]
      Q/K/V CONV_1X1 kernel [N, D, H]   -> MHA EinsumDense kernel [D, N, H]  (Primer-EZ: Dense [D, N*H])
      output CONV_1X1 [1, N*H, D]       -> MHA output kernel [N, H, D]        (Primer-EZ: Dense [N*H, D])
      DCONV_3X1 taps [N, 3, H], taps[:, i] on x[t - i]
                                        -> DepthwiseConv1D kernel [3, N*H, 1], kernel[j] on x[t - 2 + j]
    """
    ref = reference_block
    if not ref.built:
        ref.build((None, None, ref.d_model))
    n, h = ref.num_heads, ref.head_dim
    pairs = []                                                   # (reference variable, value)
    for node in compiled_block.graph.nodes:
        weights = compiled_block.node_weights(node.id)
        if not weights:
            continue
        w = np.asarray(next(iter(weights.values())))
        prefix, _, leaf = node.path.rpartition("-")
        if node.path in _NORMS:
            layer, attr = _NORMS[node.path]
            pairs.append((getattr(getattr(ref, layer), attr), w[0]))
        elif (node.path, node.op) in _FFN:
            layer, attr = _FFN[(node.path, node.op)]
            pairs.append((getattr(getattr(ref, layer), attr), w[0]))
        elif node.path == "S0.2" and node.op == "CONV_1X1":     # output projection [1, N*H, D]
            dense = ref.out_proj if ref.primer_ez else ref.mha.output_dense
            pairs.append((dense.kernel, w[0].reshape(dense.kernel.shape)))
        elif prefix in _QKV and leaf == "S3.0" and node.op == "CONV_1X1":   # [N, D, H]
            which = _QKV[prefix]
            dense = getattr(ref, which) if ref.primer_ez else getattr(
                ref.mha, dict(q="query_dense", k="key_dense", v="value_dense")[which])
            pairs.append((dense.kernel, np.transpose(w, (1, 0, 2)).reshape(dense.kernel.shape)))
        elif prefix in _QKV and leaf == "S3.1" and node.op == "DCONV_3X1" and ref.primer_ez:  # [N, 3, H]
            conv = getattr(ref, f"dconv_{_QKV[prefix]}").layers[-1]
            pairs.append((conv.kernel, np.transpose(w[:, ::-1, :], (1, 0, 2)).reshape(3, n * h, 1)))
        else:
            raise ValueError(f"copy_weights: unexpected weight node {node.op} at {node.path}")
    expected = len(ref.weights)
    if len(pairs) != expected or len({id(v) for v, _ in pairs}) != expected:
        raise ValueError(f"copy_weights: matched {len(pairs)} weight nodes, expected {expected}")
    for variable, value in pairs:
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"copy_weights: {variable.path} has shape {tuple(variable.shape)}, "
                             f"the compiled block gives {value.shape}")
        variable.assign(value)
