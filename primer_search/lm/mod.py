"""Mixture-of-Depths routing (Raposo et al. 2024) around one decoder block: [B, S, d] -> [B, S, d].

How it works: `MixtureOfDepths`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from primer_search.lm import model_cost
from primer_search.program import macro_options

WEIGHT_FNS = ("identity", "sigmoid")
CAUSAL_FIXES = ("predictor", "aux_bce", "both")
AUX_BCE_WEIGHT = 0.01  # the paper gives no coefficient; community code uses 0.01


def capacity_k(capacity: float, length):
    """`model_cost.capacity_k` for a Python int length, else for an int32 scalar tensor (the same float64
    arithmetic, as an int32 scalar tensor)."""
    if isinstance(length, int):
        return model_cost.capacity_k(capacity, length)
    length = tf.cast(length, tf.float64)
    k = tf.maximum(1.0, tf.math.ceil(capacity * length - 1e-9))
    return tf.cast(tf.minimum(length, k), tf.int32)


def _bce(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy with logits over all tokens, in float32."""
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32), logits=logits))


def _scatter_add_rows(x: tf.Tensor, idx: tf.Tensor, updates: tf.Tensor) -> tf.Tensor:
    """x[b, idx[b, j]] += updates[b, j]; every other row of x is returned untouched."""
    batch = tf.broadcast_to(tf.range(tf.shape(idx)[0])[:, None], tf.shape(idx))  # [B, k]
    indices = tf.stack([batch, idx], axis=-1)                                     # [B, k, 2]
    return tf.tensor_scatter_nd_add(x, indices, updates)                         # [B, S, d]


def _seed(seed: int, count: int) -> int:
    return (seed * 1_000_003 + count) % 2**31


@keras.saving.register_keras_serializable(package="primer_search")
class MixtureOfDepths(keras.layers.Layer):
    """Route the top `capacity` fraction of each sequence through `block` (training), causally at evaluation.

    Shape glossary: B batch, S sequence, d block width, k routed tokens per sequence, h predictor width.

    `MixtureOfDepths(block, capacity, weight_fn, causal_fix, seed)` wraps any causal residual block (a `CompiledBlock`
    or any Keras layer [B, n, d] -> [B, n, d] that works for every length n). Knobs follow the DNA's
    `macro_options.MixtureOfDepths`; which blocks of a stack route (`route_pattern`) is the model's business, see
    `routed_layers`.

    Conventions:
    - Router: a scalar linear map of the residual stream entering the block, r = w.x + b [B, S] (one per wrapped
      block). The paper writes r = w.x; the bias (zero at init) lets the causal threshold `r > 0` of `aux_bce` settle
      at the capacity fraction whatever the mean of x.
    - k = capacity_k(capacity, S) = min(S, max(1, ceil(capacity * S))): rounding up routes at least the capacity
      fraction and at least one token; capacity 1 routes every token. k is a Python int when S is static (needed by
      XLA).
    - Residual: the block is a full residual block, blk(x) = x + f(x), so its update is f = blk(x_sel) - x_sel and
      out = x + weight(r) * f on routed rows, out = x (bit for bit) elsewhere. weight is the raw r ("identity", the
      paper) or sigmoid(r).
    - Positions: the block receives no position input; position information travels in x (the model adds it to the
      embeddings), so a gathered token keeps its own. Local mixers (causal convs) see the previous *routed* tokens.

    Training (training=True): expert-choice top-k over each sequence (never over the batch). The k indices are sorted
    ascending so the block's causal mask sees the routed tokens in their original order, the block runs on [B, k, d]
    only, and the weighted updates are scattered back. Top-k is NOT causal: whether token t is routed depends on the
    router scores of later tokens, so it is used for training only.

    Evaluation (training=False or None, the default; this is what fitness must use): a causal per-token decision,
    routed iff logit > 0, where the logit is the auxiliary predictor's (causal_fix "predictor" or "both") or the
    router's own (causal_fix "aux_bce"). The routed count then varies per sequence, so the layer runs the block once on
    a packed [B, S, d] sequence: the routed tokens first, in their original order, then the others. A causal block
    cannot let the tail reach the routed rows, so each routed token sees exactly the earlier routed tokens (the same
    function as training and as token-by-token decoding where unrouted tokens write no K/V); the tail's outputs are
    discarded. This costs a full S per block: it is exact for scoring, not a speed-up.

    Auxiliary losses (training mode only), both binary cross-entropy with the top-k membership as target:
    - "aux_bce": `aux_weight` x BCE(router logits, top-k mask); trains the router (and, through x, the layers below)
      so that sigmoid(r) > 0.5 on the routed tokens. The paper reports ~0.2-0.3% LM cost; coefficient 0.01 by default.
    - "predictor": BCE(predictor(stop_gradient(x)), top-k mask); a small MLP d -> h = d/2 (SiLU) -> 1. The
      stop-gradient means this loss reaches the predictor's weights only, never the backbone or the router.
    - "both": both losses; the predictor makes the evaluation decision.
    They are registered with Keras' `self.add_loss`, so a trainer reads them from `model.losses` after the forward pass,
    inside the same GradientTape (and tf.function):

        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            loss = lm_loss(logits, targets)
            if model.losses:
                loss = loss + tf.add_n(model.losses)

    Keras clears them at the start of every outermost call; `model.fit` adds them by itself. Without them the predictor
    never trains and the causal evaluation routes at random.
    """

    def __init__(self, block: keras.layers.Layer, capacity: float = 0.125, weight_fn: str = "identity",
                 causal_fix: str = "predictor", seed: int = 0, aux_weight: float = AUX_BCE_WEIGHT,
                 predictor_width: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < capacity <= 1.0:
            raise ValueError(f"MoD capacity must be in (0, 1], received {capacity!r}")
        if weight_fn not in WEIGHT_FNS:
            raise ValueError(f"unknown MoD weight_fn {weight_fn!r}, expected one of {', '.join(WEIGHT_FNS)}")
        if causal_fix not in CAUSAL_FIXES:
            raise ValueError(f"unknown MoD causal_fix {causal_fix!r}, expected one of {', '.join(CAUSAL_FIXES)}")
        self.block, self.capacity, self.weight_fn, self.causal_fix = block, float(capacity), weight_fn, causal_fix
        self.seed, self.aux_weight, self.predictor_width = seed, float(aux_weight), predictor_width
        self.router = keras.layers.Dense(
            1, kernel_initializer=keras.initializers.GlorotUniform(seed=_seed(seed, 0)), name="router")
        self.predictor_hidden = self.predictor = None                  # built in `build` (h depends on d)

    @classmethod
    def from_options(cls, block: keras.layers.Layer, options: macro_options.MixtureOfDepths, seed: int = 0,
                     **kwargs) -> "MixtureOfDepths":
        """The wrapper a DNA's `macro_options.mixture_of_depths` asks for (its `enabled` and `route_pattern` are
        for the model: whether and where to wrap)."""
        return cls(block, capacity=options.capacity, weight_fn=options.weight_fn, causal_fix=options.causal_fix,
                   seed=seed, **kwargs)

    @property
    def uses_predictor(self) -> bool:
        return self.causal_fix in ("predictor", "both")

    def build(self, input_shape):
        d = input_shape[-1]
        self.router.build(input_shape)
        if self.uses_predictor:
            width = self.predictor_width or max(1, d // 2)
            self.predictor_hidden = keras.layers.Dense(
                width, activation="silu", kernel_initializer=keras.initializers.GlorotUniform(seed=_seed(self.seed, 1)),
                name="predictor_hidden")
            self.predictor = keras.layers.Dense(
                1, kernel_initializer=keras.initializers.GlorotUniform(seed=_seed(self.seed, 2)), name="predictor")
            self.predictor_hidden.build(input_shape)
            self.predictor.build(tuple(input_shape[:-1]) + (width,))
        if not self.block.built:
            self.block.build((input_shape[0], None, d))

    def call(self, x, training=None):                            # x: [B, S, d]
        return self._train_call(x) if training else self._eval_call(x)

    def routing_mask(self, x, training: bool = False) -> tf.Tensor:
        """Which tokens go through the block [B, S] bool: top-k in training mode, the causal decision otherwise."""
        x = tf.convert_to_tensor(x)
        if training:
            return self._top_k_mask(self._top_k(self._router_logits(x)), tf.shape(x)[1]) > 0
        return self.decide(x)[0]

    def decide(self, x) -> tuple[tf.Tensor, tf.Tensor]:
        """The causal decision for tokens x [B, S, d]: (routed [B, S] bool, gate [B, S], the weight of the block's
        update on a routed token). What evaluation uses, and what a sampler uses one token at a time."""
        r = self._router_logits(x)                                # [B, S]
        return self._causal_logits(x, r) > 0, self._weight(r)

    # -- training: top-k over the sequence --------------------------------------------------------------------------

    def _train_call(self, x):
        r = self._router_logits(x)                                # [B, S]
        idx = self._top_k(r)                                      # [B, k] ascending
        x_sel = tf.gather(x, idx, batch_dims=1)                   # [B, k, d]
        update = self.block(x_sel) - x_sel                        # [B, k, d]
        gate = self._weight(tf.gather(r, idx, batch_dims=1))      # [B, k]
        self._add_aux_losses(x, r, self._top_k_mask(idx, tf.shape(x)[1]))
        return _scatter_add_rows(x, idx, gate[..., None] * update)  # [B, S, d]

    def _top_k(self, r):                                          # r: [B, S]
        length = r.shape[1] if r.shape[1] is not None else tf.shape(r)[1]
        _, idx = tf.math.top_k(r, k=capacity_k(self.capacity, length))  # [B, k] per sequence
        return tf.sort(idx, axis=-1)                              # [B, k] original order

    @staticmethod
    def _top_k_mask(idx, length):                                 # idx: [B, k]
        return tf.stop_gradient(tf.reduce_sum(tf.one_hot(idx, length), axis=1))  # [B, S] exactly k ones

    def _add_aux_losses(self, x, r, target):                      # target: [B, S] in {0, 1}
        if self.causal_fix in ("aux_bce", "both"):
            self.add_loss(self.aux_weight * _bce(r, target))
        if self.uses_predictor:
            self.add_loss(_bce(self._predictor_logits(x), target))

    # -- evaluation: causal per-token decision, packed ---------------------------------------------------------------

    def _eval_call(self, x):
        return self.evaluate(x)[0]

    def evaluate(self, x) -> tuple[tf.Tensor, tf.Tensor]:
        """The evaluation-mode output [B, S, d] and the causal routing mask [B, S] it used (what `call` computes
        with training off, plus which tokens went through the block)."""
        x = tf.convert_to_tensor(x)
        routed, gate = self.decide(x)                             # [B, S] depend on token t only
        length = tf.shape(x)[1]
        positions = tf.range(length)[None]                        # [1, S]
        perm = tf.argsort(tf.where(routed, positions, positions + length), axis=-1)  # [B, S] routed first
        x_packed = tf.gather(x, perm, batch_dims=1)               # [B, S, d]
        update = tf.gather(self.block(x_packed) - x_packed, tf.argsort(perm, axis=-1), batch_dims=1)  # [B, S, d]
        return tf.where(routed[..., None], x + gate[..., None] * update, x), routed  # [B, S, d], [B, S]

    def _causal_logits(self, x, r):
        return self._predictor_logits(x) if self.uses_predictor else r  # [B, S]

    # -- shared ------------------------------------------------------------------------------------------------------

    def _router_logits(self, x):
        return tf.squeeze(self.router(x), -1)                     # [B, S]

    def _predictor_logits(self, x):
        hidden = self.predictor_hidden(tf.stop_gradient(x))      # [B, S, h]
        return tf.squeeze(self.predictor(hidden), -1)             # [B, S]

    def _weight(self, r):
        return tf.sigmoid(r) if self.weight_fn == "sigmoid" else r

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(block=keras.saving.serialize_keras_object(self.block), capacity=self.capacity,
                      weight_fn=self.weight_fn, causal_fix=self.causal_fix, seed=self.seed,
                      aux_weight=self.aux_weight, predictor_width=self.predictor_width)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        block = keras.saving.deserialize_keras_object(config.pop("block"))
        return cls(block, **config)
