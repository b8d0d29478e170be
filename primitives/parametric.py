"""Primitives that own weights: dense and causal convolutions, depthwise convolutions, SCALE and SHIFT.

Every weight carries a leading branch axis m (one copy per branch, created by the compiler), so k branched
copies of an op run as one batched op. Convolutions are causal by construction: tap i reads position t - i
(inputs shifted by up to kernel width - 1, zero-filled), never t + i. A positions input is first collapsed to
its causal mean over keys. Shapes: features [B, m, S, W], positions [B, m, S, S], kernels [m, k, W, U].
"""

from __future__ import annotations

import tensorflow as tf

from primitives import axes
from primitives.registry import (DIM, FEATURES, IN1, SINGLE, OpCall, OpSpec, Sig, WeightSpec, features,
                                 register)


def _in_width(sig: Sig):
    return sig.width if sig.kind == FEATURES else SINGLE


def dense(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Per-branch projection: x [B, m|1, S, W], kernel [m, W, U] -> [B, m, S, U]."""
    if x.shape[1] == kernel.shape[0] == 1:
        return tf.tensordot(x, kernel[0], 1)             # plain matmul (its gradients are the fast ones)
    if x.shape[1] == kernel.shape[0]:
        return tf.einsum("bmsw,mwu->bmsu", x, kernel)
    return tf.einsum("bsw,mwu->bmsu", tf.squeeze(x, 1), kernel)  # shared input: one projection for all branches


def _conv_1x1(call: OpCall):
    return dense(axes.as_features(call.x, call.sig_x), call.weights["kernel"])  # [B, m, S, U]


register(OpSpec(
    name="CONV_1X1", arity=1, reads=(IN1, DIM), shape=lambda a, b=None, dim=None: features(dim),
    weights=lambda a, dim: {"kernel": WeightSpec((_in_width(a), dim), "glorot")},
    fn=_conv_1x1, tf_name="tf.layers.dense", shape_doc="[S, dim]",
    doc="dense projection to dim features (no bias)"))


def _conv(k: int):
    def fn(call: OpCall):
        x = axes.as_features(call.x, call.sig_x)            # [B, m|1, S, W]
        kernel = call.weights["kernel"]                     # [m, k, W, U]
        m, _, w, u = kernel.shape
        taps = tf.reshape(tf.transpose(kernel, [0, 2, 1, 3]), [m, w, k * u])
        y = dense(x, taps)                                  # [B, m, S, k*U]
        y = tf.reshape(y, tf.concat([tf.shape(y)[:-1], [k, u]], 0))  # [B, m, S, k, U]
        return tf.add_n([axes.shift_sequence(y[..., i, :], i) for i in range(k)])  # [B, m, S, U]

    register(OpSpec(
        name=f"CONV_{k}X1", arity=1, reads=(IN1, DIM), shape=lambda a, b=None, dim=None: features(dim),
        weights=lambda a, dim: {"kernel": WeightSpec((k, _in_width(a), dim), "glorot")},
        fn=fn, tf_name="tf.nn.conv1d", shape_doc="[S, dim]", sequence=f"causal: reads t-{k - 1}..t",
        doc=f"causal {k}-tap convolution to dim features"))


def _dconv(k: int):
    def fn(call: OpCall):
        x = axes.as_features(call.x, call.sig_x)            # [B, m|1, S, W]
        taps = call.weights["taps"]                         # [m, k, W]
        return tf.add_n([axes.shift_sequence(x, i) * taps[None, :, i, None, :] for i in range(k)])

    register(OpSpec(
        name=f"DCONV_{k}X1", arity=1, reads=(IN1,),
        shape=lambda a, b=None, dim=None: features(_in_width(a)),
        weights=lambda a, dim: {"taps": WeightSpec((k, _in_width(a)), "primer_dconv")},
        fn=fn, tf_name="tf.nn.depthwise_conv2d", shape_doc="same width as in1",
        sequence=f"causal: reads t-{k - 1}..t", doc=f"causal {k}-tap depthwise convolution, one filter per feature"))


for _k in (3, 7, 15, 31):
    _conv(_k)
for _k in (3, 7, 15, 31):
    _dconv(_k)


def _vector_shape(a: Sig, dim=None):
    # A positions tensor's last axis is the key axis, whose length is not fixed: one learned scalar.
    return {"vector": WeightSpec((_in_width(a),), "ones")}


def _vector(m_vector: tf.Tensor) -> tf.Tensor:
    return m_vector[None, :, None, :]  # [m, W] -> [1, m, 1, W]


register(OpSpec(
    name="SCALE", arity=1, reads=(IN1,), shape=lambda a, b=None, dim=None: a,
    weights=_vector_shape, fn=lambda call: call.x * _vector(call.weights["vector"]),
    tf_name="x * tf.Variable", shape_doc="same as in1",
    doc="x times a learned vector (init 1; one scalar on positions)"))
register(OpSpec(
    name="SHIFT", arity=1, reads=(IN1,), shape=lambda a, b=None, dim=None: a,
    weights=lambda a, dim: {"vector": WeightSpec((_in_width(a),), "zeros")},
    fn=lambda call: call.x + _vector(call.weights["vector"]),
    tf_name="x + tf.Variable", shape_doc="same as in1",
    doc="x plus a learned vector (init 0; one scalar on positions)"))
