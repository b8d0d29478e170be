"""Primitives that own weights: dense and causal convolutions, depthwise convolutions, SCALE and SHIFT.

Every weight carries a leading branch axis m (one copy per branch, created by the compiler), so k branched
copies of an op run as one batched op. Convolutions are causal by construction: tap i reads position t - i
(inputs shifted by up to kernel width - 1, zero-filled), never t + i. A positions input is first collapsed to
its causal mean over keys. Depthwise convolutions run as TensorFlow's native depthwise convolution, or under XLA
as fused shifted slices or banded matrix products (`causal_depthwise`): the fast form of each. Shapes: features
[B, m, S, W], positions [B, m, S, S], kernels [m, k, W, U].
"""

from __future__ import annotations

import numpy as np

from primitives import axes
from primitives.lazy_tf import tf
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
    # shared input: one matmul for all branches, [B*S, W] @ [W, m*U], then the branch axis moved forward as its own
    # transpose op, which TensorFlow's graph optimizer can cancel against a following transpose back (DCONV's)
    m, w, u = kernel.shape
    b, s = tf.shape(x)[0], tf.shape(x)[2]
    flat = tf.matmul(tf.reshape(x, [-1, w]), tf.reshape(tf.transpose(kernel, [1, 0, 2]), [w, m * u]))  # [B*S, m*U]
    return tf.transpose(tf.reshape(flat, [b, s, m, u]), [0, 2, 1, 3])                            # [B, m, S, U]


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


BANDED_MIN_TAPS = 15    # under XLA, shorter kernels run as fused slices (bench/depthwise_forms.py: as fast at 7 taps)


def causal_depthwise(x: tf.Tensor, taps: tf.Tensor) -> tf.Tensor:
    """out[t] = sum_i taps[i] * x[t - i] (zero before position 0): x [B, m|1, S, W], taps [m, k, W] -> [B, m, S, W].

    Three implementations of the same sum, picked while the op is traced. Without XLA, TensorFlow's native
    depthwise convolution on a [B, S, 1, m*W] view, whose kernels (and their gradients) beat elementwise forms.
    Under XLA (`jit_compile=True`), whose CPU depthwise convolution is an order of magnitude slower: for short
    kernels one pad and k shifted, scaled slices, which XLA fuses into one loop; for long ones (k >= BANDED_MIN_TAPS)
    a banded matrix product (`_banded_depthwise`), since the slices' k passes, and the k reductions of their
    gradient, cost far more than their FLOPs (k = 31 at d 240: 167 against 79 ms per training step)."""
    if not _in_xla_context():
        return _native_depthwise(x, taps)
    if taps.shape[1] >= BANDED_MIN_TAPS and x.shape[2] is not None:
        return _banded_depthwise(x, taps)
    return _sliced_depthwise(x, taps)


def _sliced_depthwise(x: tf.Tensor, taps: tf.Tensor) -> tf.Tensor:
    """The causal depthwise convolution as one pad and k shifted, scaled slices."""
    k, s = taps.shape[1], tf.shape(x)[2]
    padded = tf.pad(x, [[0, 0], [0, 0], [k - 1, 0], [0, 0]])                          # [B, m|1, S+k-1, W]
    return tf.add_n([padded[:, :, k - 1 - i:k - 1 - i + s] * taps[None, :, i, None, :] for i in range(k)])


def _banded_depthwise(x: tf.Tensor, taps: tf.Tensor) -> tf.Tensor:
    """The causal depthwise convolution as matrix products over chunks of C >= k - 1 positions: each chunk's
    outputs read that chunk and the one before it, through one [C, 2C] band matrix per branch and feature
    (band[t, j] = taps[t + C - j] where 0 <= t + C - j < k), so the cost per position does not grow with S."""
    m, k, w = taps.shape
    s = x.shape[2]
    c = min(s, max(8, -(-(k - 1) // 8) * 8))                  # a multiple of 8 covering k - 1 lags, at most S
    n = -(-s // c)                                            # chunks
    lag = np.arange(c)[:, None] + c - np.arange(2 * c)[None, :]            # [C, 2C]: t + C - j
    index = np.where((lag >= 0) & (lag < k), lag, k)                       # k: the zero row appended below
    band = tf.gather(tf.concat([taps, tf.zeros([m, 1, w], taps.dtype)], 1), index, axis=1)  # [m, C, 2C, W]
    chunks = tf.pad(x, [[0, 0], [0, 0], [c, n * c - s], [0, 0]])           # [B, m|1, C + n*C, W]: a zero chunk first
    chunks = tf.reshape(chunks, tf.concat([tf.shape(x)[:2], [n + 1, c, w]], 0))    # [B, m|1, n+1, C, W]
    pairs = tf.concat([chunks[:, :, :-1], chunks[:, :, 1:]], 3)            # [B, m|1, n, 2C, W]: previous, current
    if x.shape[1] == m:
        out = tf.einsum("bmnjw,mtjw->bmntw", pairs, band)                  # [B, m, n, C, W]
    else:                                                                  # shared input
        out = tf.einsum("bnjw,mtjw->bmntw", pairs[:, 0], band)             # [B, m, n, C, W]
    return tf.reshape(out, tf.concat([tf.shape(out)[:2], [n * c, w]], 0))[:, :, :s]  # [B, m, S, W]


def _native_depthwise(x: tf.Tensor, taps: tf.Tensor) -> tf.Tensor:
    m, k, w = taps.shape
    b, s = tf.shape(x)[0], tf.shape(x)[2]
    kernel = tf.transpose(taps[:, ::-1], [1, 0, 2])                       # [k, m, W]: kernel[j] reads t-(k-1)+j
    if x.shape[1] == m:                                                   # a filter per (branch, feature)
        view = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, s, 1, m * w])               # [B, S, 1, m*W]
        kernel = tf.reshape(kernel, [k, 1, m * w, 1])
    else:                                                                 # shared input: m filters per feature
        view = tf.transpose(x, [0, 2, 1, 3])                                             # [B, S, 1, W]
        kernel = tf.reshape(tf.transpose(kernel, [0, 2, 1]), [k, 1, w, m])
    causal = [[0, 0], [k - 1, 0], [0, 0], [0, 0]]                                         # zeros before position 0
    out = tf.nn.depthwise_conv2d(view, kernel, [1, 1, 1, 1], causal)                     # [B, S, 1, m*W | W*m]
    if x.shape[1] == m:
        return tf.transpose(tf.reshape(out, [b, s, m, w]), [0, 2, 1, 3])                 # [B, m, S, W]
    return tf.transpose(tf.reshape(out, [b, s, w, m]), [0, 3, 1, 2])                     # [B, m, S, W]


def _in_xla_context() -> bool:
    """Whether the op is being traced for XLA (`tf.function(jit_compile=True)`, also nested inside one)."""
    if tf.executing_eagerly():
        return False
    try:      # TensorFlow's own test for "traced for XLA" (what tf.function(jit_compile=True) enters); internal API
        from tensorflow.python.ops import control_flow_util
    except ImportError:                  # pragma: no cover - a TensorFlow without it: the native path everywhere
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _dconv(k: int):
    def fn(call: OpCall):
        x = axes.as_features(call.x, call.sig_x)            # [B, m|1, S, W]
        return causal_depthwise(x, call.weights["taps"])    # taps [m, k, W] -> [B, m, S, W]

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
