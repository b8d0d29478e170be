"""Primitives that can reach along the sequence axis: MASK, cumulative ops, reductions, matrix products.

Causality is built in, for every program: cumulative ops run forward along the sequence; reductions reduce the
feature axis of features tensors and the key axis of positions tensors with future keys (j > t) replaced by the
reduction's identity; matrix products mask the future keys of a positions operand before contracting over them.
T_MAT_MUL over features is the scaled dot product x @ y^T / sqrt(W), W the contracted width: a stated deviation
from Table 2's plain tf.matmul, so a program's attention temperature does not change with the size unit (the
paper's seed multiplies Q by a constant 0.125 = 1/sqrt(64), right only at heads of 64).
Shapes: features [B, m, S, W], positions [B, m, S, S].
"""

from __future__ import annotations

import math

import numpy as np

from primitives import axes
from primitives.elementwise import align_binary, binary_shape, same_shape
from primitives.lazy_tf import tf
from primitives.registry import (FEATURES, IN1, IN2, POSITIONS, POSITIONS_SIG, SINGLE, OpCall, OpSpec, Sig,
                                 features, register)

register(OpSpec(
    name="MASK", arity=1, reads=(IN1,), shape=same_shape, shape_doc="same as in1",
    fn=lambda call: tf.linalg.band_part(call.x, -1, 0), tf_name="tf.linalg.band_part(x, -1, 0)",
    sequence="positions: zeroes keys j > t (the causal mask)",
    doc="keep the lower triangle of the last two axes"))

for _name, _fn in (("CUM_PROD", "cumprod"), ("CUM_SUM", "cumsum")):
    register(OpSpec(
        name=_name, arity=1, reads=(IN1,), shape=same_shape, shape_doc="same as in1",
        fn=lambda call, f=_fn: getattr(tf.math, f)(call.x, axis=-2), tf_name=f"tf.math.{_fn}(x, axis=-2)",
        sequence="running, forward along the sequence (causal)",
        doc=f"running {'product' if _name == 'CUM_PROD' else 'sum'} over positions 0..t"))


def _reduction(name, tf_name, identity, doc):
    def fn(call: OpCall):
        x = call.x
        if call.sig_x.kind == POSITIONS:
            if name == "RED_MEAN":
                return axes.causal_mean(x)
            x = axes.mask_future(x, identity)  # [B, m, S, S]
        return getattr(tf, tf_name)(x, axis=-1, keepdims=True)  # [B, m, S, 1]

    register(OpSpec(
        name=name, arity=1, reads=(IN1,), shape=lambda a, b=None, dim=None: features(SINGLE),
        shape_doc="[S, 1]", fn=fn, tf_name=f"tf.{tf_name}(x, axis=-1)",
        sequence="positions: over keys j <= t only", doc=doc))


_reduction("RED_MEAN", "reduce_mean", 0.0, "mean over the last axis")
_reduction("RED_SUM", "reduce_sum", 0.0, "sum over the last axis")
_reduction("RED_MIN", "reduce_min", np.inf, "minimum over the last axis")
_reduction("RED_MAX", "reduce_max", -np.inf, "maximum over the last axis")
_reduction("RED_PROD", "reduce_prod", 1.0, "product over the last axis")


def _mat_mul_shape(a: Sig, b: Sig, dim=None) -> Sig:
    return b if a.kind == POSITIONS else binary_shape(a, b)


def _mat_mul(call: OpCall):
    if call.sig_x.kind == FEATURES:  # no key axis to contract: the pointwise product
        x, y = align_binary(call)
        return x * y
    return causal_product(call.x, call.y)


def causal_product(p: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """p @ y contracting only the keys j <= t: p [B, m, Q, K] (queries the last Q of K positions), y [B, m, K, W|K].

    A plain product with p's future keys zeroed still multiplies them with y's later rows, and 0 x inf is NaN: a
    non-finite value at a later position would reach earlier outputs. Here y's non-finite values are replaced by 0
    before the product, and an output entry whose visible rows j <= t held one becomes NaN (exactly the entries a
    non-finite value can reach). Only a y with a non-finite value takes that path (its running count along the
    sequence costs as much as the product under XLA); a finite y is the plain product."""
    masked = axes.mask_future(p)                                                   # [B, m, Q, K]

    def guarded():
        finite = tf.math.is_finite(y)
        out = tf.matmul(masked, tf.where(finite, y, tf.zeros_like(y)))              # [B, m, Q, W|K]
        seen = tf.cumsum(tf.cast(tf.logical_not(finite), out.dtype), axis=-2)      # [B, m, K, W|K]: rows <= j
        seen = seen[..., tf.shape(seen)[-2] - tf.shape(p)[-2]:, :]                  # the queries' rows
        return tf.where(seen > 0, tf.constant(np.nan, out.dtype), out)

    return tf.cond(tf.reduce_all(tf.math.is_finite(y)), lambda: tf.matmul(masked, y), guarded)


register(OpSpec(
    name="MAT_MUL", arity=2, reads=(IN1, IN2), shape=_mat_mul_shape, fn=_mat_mul, tf_name="tf.matmul",
    shape_doc="positions @ y -> y's shape; features in1: pointwise product",
    sequence="contracts in1's keys j <= t", doc="attention-weighted sum: x @ y"))


def _t_mat_mul(call: OpCall):
    x, y = call.x, call.y
    if call.sig_x.kind == POSITIONS and call.sig_y.kind == POSITIONS:   # contracts keys: not scaled
        return tf.matmul(axes.mask_future(x), axes.mask_future(y), transpose_b=True)  # [B, m, S, S]
    x, sig_x = axes.as_features(x, call.sig_x), _as_features_sig(call.sig_x)
    y, sig_y = axes.as_features(y, call.sig_y), _as_features_sig(call.sig_y)
    if sig_x.width.is_single and not sig_y.width.is_single:
        width = y.shape[-1]
        x = axes.fit(x, sig_x, width)                   # [B, m|1, S, W]
    else:
        width = x.shape[-1]
        y = axes.fit(y, sig_y, width)                   # [B, m|1, S, W]
    return tf.matmul(scale_by_width(x, width), y, transpose_b=True)  # [B, m, S, W] @ [B, m, W, S] -> [B, m, S, S]


def scale_by_width(x: tf.Tensor, width) -> tf.Tensor:
    """x / sqrt(width), the scaled dot product's factor on the contracted width (static when known)."""
    if width is None:
        return x * tf.math.rsqrt(tf.cast(tf.shape(x)[-1], x.dtype))
    return x if width == 1 else x * tf.cast(1.0 / math.sqrt(width), x.dtype)


def _as_features_sig(sig: Sig) -> Sig:
    return features(SINGLE) if sig.kind == POSITIONS else sig


register(OpSpec(
    name="T_MAT_MUL", arity=2, reads=(IN1, IN2), shape=lambda a, b, dim=None: POSITIONS_SIG, fn=_t_mat_mul,
    tf_name="tf.matmul(transpose_b=True)", shape_doc="[S, S] (y cut/padded to x's width)",
    sequence="makes positions; positions inputs contract keys j <= t",
    doc="position-by-position scores: x @ y^T / sqrt(W) on features, W the contracted width (the scaled dot "
        "product; Table 2 has the plain matmul: see Rules); two positions inputs: x @ y^T, unscaled"))


def masked_softmax(x: tf.Tensor) -> tf.Tensor:
    """Fused, stable form of DIVIDE(MASK(EXP(x)), RED_SUM(MASK(EXP(x)))) on positions [B, m, S, S].

    The max is taken over keys j <= t only, so the rewrite is exactly as causal as the unfused form.
    """
    return tf.nn.softmax(axes.mask_future(x, -np.inf), axis=-1)  # [B, m, S, S]; exactly 0 at j > t
