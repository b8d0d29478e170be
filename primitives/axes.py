"""Tensor helpers shared by the primitives: causal masks, kind coercion, width matching, sequence shifts.

Shapes follow the glossary in `primitives/registry.py`: features [B, m, S, W], positions [B, m, S, S].
"""

from __future__ import annotations

import tensorflow as tf

from primitives.registry import POSITIONS, Sig


def causal_mask(p: tf.Tensor) -> tf.Tensor:
    """Boolean [S, S] mask of the entries (t, j) with j <= t, for a positions tensor [B, m, S, S]."""
    s = tf.shape(p)[-1]
    return tf.linalg.band_part(tf.ones([s, s], tf.bool), -1, 0)  # [S, S]


def mask_future(p: tf.Tensor, fill: float = 0.0) -> tf.Tensor:
    """Replace key positions j > t by `fill`. `tf.where` (not a product) so a future inf/NaN cannot leak."""
    return tf.where(causal_mask(p), p, tf.cast(fill, p.dtype))  # [B, m, S, S]


def causal_mean(p: tf.Tensor) -> tf.Tensor:
    """Mean over the key positions j <= t: [B, m, S, S] -> [B, m, S, 1]."""
    total = tf.reduce_sum(mask_future(p), axis=-1, keepdims=True)   # [B, m, S, 1]
    count = tf.cast(tf.range(1, tf.shape(p)[-2] + 1), p.dtype)[:, None]  # [S, 1]
    return total / count


def as_features(x: tf.Tensor, sig: Sig) -> tf.Tensor:
    """Collapse a positions tensor to a single-column features tensor by its causal mean over keys."""
    return causal_mean(x) if sig.kind == POSITIONS else x


def resize(x: tf.Tensor, width: int) -> tf.Tensor:
    """Cut or zero-pad the last axis to `width` (the deterministic dimension-mismatch rule)."""
    have = x.shape[-1]
    if have == width:
        return x
    if have > width:
        return x[..., :width]
    pad = [[0, 0]] * (len(x.shape) - 1) + [[0, width - have]]
    return tf.pad(x, pad)


def fit(x: tf.Tensor, sig: Sig, width: int) -> tf.Tensor:
    """Bring a features tensor to `width`: a single column broadcasts, anything else is cut or padded."""
    if sig.width.is_single:
        return tf.broadcast_to(x, tf.concat([tf.shape(x)[:-1], [width]], 0))
    return resize(x, width)


def shift_sequence(x: tf.Tensor, k: int) -> tf.Tensor:
    """Delay along the sequence axis by k positions, zero-filled: out[t] = x[t - k] (0 for t < k)."""
    if k == 0:
        return x
    s = tf.shape(x)[-2]
    pad = [[0, 0]] * (len(x.shape) - 2) + [[k, 0], [0, 0]]
    return tf.pad(x, pad)[..., :s, :]
