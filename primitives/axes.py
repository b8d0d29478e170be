"""Tensor helpers shared by the primitives: causal masks, kind coercion, width matching, sequence shifts.

Shapes follow the glossary in `primitives/registry.py`: features [B, m, S, W], positions [B, m, S, S].

The causal helpers also accept a rectangular positions tensor [..., Q, K] whose Q query rows are the LAST Q of
the K key positions (query row i is position K - Q + i). The square case Q = K is the full-sequence tensor; the
case Q = 1, K = t + 1 is the single row of position t that `primer_search.lm.decoding` computes per decoded token,
so every primitive's own implementation runs unchanged on such a row.
"""

from __future__ import annotations

from primitives.lazy_tf import tf
from primitives.registry import POSITIONS, Sig


def causal_mask(p: tf.Tensor) -> tf.Tensor:
    """Boolean [Q, K] mask of the entries (i, j) with key j <= query position K - Q + i, for a positions tensor
    [..., Q, K] whose queries are the last Q of K positions (square [S, S]: the lower triangle j <= t)."""
    q, k = tf.shape(p)[-2], tf.shape(p)[-1]
    return tf.linalg.band_part(tf.ones([q, k], tf.bool), -1, k - q)  # [Q, K]


def mask_future(p: tf.Tensor, fill: float = 0.0) -> tf.Tensor:
    """Replace future key positions (j > t) by `fill`. `tf.where` (not a product) so a future inf/NaN cannot leak."""
    return tf.where(causal_mask(p), p, tf.cast(fill, p.dtype))  # [B, m, Q, K]


def causal_mean(p: tf.Tensor) -> tf.Tensor:
    """Mean over the key positions j <= t: [..., Q, K] -> [..., Q, 1] (query row i divides by K - Q + i + 1)."""
    total = tf.reduce_sum(mask_future(p), axis=-1, keepdims=True)   # [..., Q, 1]
    q, k = tf.shape(p)[-2], tf.shape(p)[-1]
    count = tf.cast(tf.range(k - q + 1, k + 1), p.dtype)[:, None]   # [Q, 1]: keys seen by each query row
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
