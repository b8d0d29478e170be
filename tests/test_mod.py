import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from primer_search.lm.mod import CAUSAL_FIXES, WEIGHT_FNS, MixtureOfDepths, capacity_k
from primer_search.lm.model_cost import ROUTE_PATTERNS, routed_layers
from primer_search.program import macro_options
from primer_search.program.compiler import CompiledBlock
from primer_search.program.seeds import load_seed

B, S, D = 3, 12, 8


class SpyBlock(keras.layers.Layer):
    """A causal residual block x + tanh(W cumsum(x)) that records the static shapes it is called on."""

    def __init__(self, d=D, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(d, kernel_initializer=keras.initializers.GlorotUniform(seed=3))
        self.shapes = []

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):                                           # x: [B, n, d]
        self.shapes.append(tuple(x.shape))
        return x + tf.tanh(self.dense(tf.cumsum(x, axis=1)))


def _x(seed=0, shape=(B, S, D)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _mod(capacity=0.25, causal_fix="predictor", weight_fn="identity", block=None, d=D, **kwargs):
    layer = MixtureOfDepths(block or SpyBlock(d), capacity=capacity, weight_fn=weight_fn, causal_fix=causal_fix,
                            seed=1, **kwargs)
    layer.build((None, None, d))
    return layer


def _perturbed(x, t, seed=0):
    y = x.copy()
    y[:, t] += np.random.default_rng(100 + seed).normal(size=y[:, t].shape).astype(np.float32)
    return y


@pytest.mark.parametrize("capacity, length, k", [(0.125, 16, 2), (0.3, 10, 3), (0.01, 8, 1), (1.0, 8, 8),
                                                 (0.5, 9, 5), (0.25, 12, 3), (0.26, 12, 4)])
def test_capacity_k_rounds_up_and_routes_at_least_one(capacity, length, k):
    assert capacity_k(capacity, length) == k
    assert int(capacity_k(capacity, tf.constant(length))) == k





@pytest.mark.parametrize("kwargs, message", [({"capacity": 0.0}, "capacity"), ({"capacity": 1.5}, "capacity"),
                                             ({"weight_fn": "softmax"}, "weight_fn"),
                                             ({"causal_fix": "topk"}, "causal_fix")])
def test_invalid_knobs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MixtureOfDepths(SpyBlock(), **{"capacity": 0.25, **kwargs})


def test_knob_values_match_the_dna_macro_options():
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(macro_options.MixtureOfDepths)}
    assert set(choices["route_pattern"]) == set(ROUTE_PATTERNS)
    assert set(choices["weight_fn"]) == set(WEIGHT_FNS)
    assert set(choices["causal_fix"]) == set(CAUSAL_FIXES)
    for pattern in ROUTE_PATTERNS:                             # each routes some of 6 blocks; only "all" every one
        routed = routed_layers(pattern, 6)
        assert any(routed) and all(routed) == (pattern == "all")


def test_from_options():
    options = macro_options.MixtureOfDepths(enabled=True, capacity=0.5, weight_fn="sigmoid", causal_fix="both")
    layer = MixtureOfDepths.from_options(SpyBlock(), options, seed=4)
    assert (layer.capacity, layer.weight_fn, layer.causal_fix, layer.seed) == (0.5, "sigmoid", "both", 4)


@pytest.mark.parametrize("training", [True, False])
def test_output_shape(training):
    layer = _mod()
    for length in (1, 5, S):
        x = _x(shape=(B, length, D))
        assert layer(x, training=training).shape == (B, length, D)


@pytest.mark.parametrize("causal_fix", ["predictor", "aux_bce", "both"])
def test_training_routes_exactly_k_and_leaves_the_rest_unchanged(causal_fix):
    layer = _mod(capacity=0.25, causal_fix=causal_fix)
    k = capacity_k(0.25, S)
    for x in (np.zeros((B, S, D), np.float32), np.ones((B, S, D), np.float32), _x()):  # the first two: all ties
        mask = layer.routing_mask(x, training=True).numpy()
        out = layer(x, training=True).numpy()
        assert (mask.sum(axis=1) == k).all()
        np.testing.assert_array_equal(out[~mask], x[~mask])      # bit-identical pass-through
    assert not np.allclose(out[mask], x[mask])                   # the routed rows did change
    r = layer._router_logits(x).numpy()                           # no ties in the random x
    top = np.argsort(-r, axis=1)[:, :k]
    np.testing.assert_array_equal(mask, np.eye(S, dtype=bool)[top].any(axis=1))  # each sequence's own top k


@pytest.mark.parametrize("causal_fix", ["predictor", "aux_bce"])
def test_evaluation_routes_by_causal_decision_and_leaves_the_rest_unchanged(causal_fix):
    layer = _mod(causal_fix=causal_fix)
    x = _x()
    mask = layer.routing_mask(x).numpy()
    assert 0 < mask.sum() < mask.size                            # some routed, some not: the test means something
    logits = (layer._predictor_logits(x) if causal_fix == "predictor" else layer._router_logits(x)).numpy()
    np.testing.assert_array_equal(mask, logits > 0)
    out = layer(x, training=False).numpy()
    np.testing.assert_array_equal(out[~mask], x[~mask])
    assert not np.allclose(out[mask], x[mask])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("weight_fn", ["identity", "sigmoid"])
def test_routed_tokens_see_only_the_routed_tokens(training, weight_fn):
    """Reference, one sequence at a time: the block run on that sequence's routed tokens alone, in order (in
    evaluation this is token-by-token decoding where unrouted tokens write no K/V)."""
    layer = _mod(capacity=0.5, weight_fn=weight_fn)
    x = _x(seed=5)
    mask = layer.routing_mask(x, training=training).numpy()
    out = layer(x, training=training).numpy()
    for b in range(B):
        chosen = x[b:b + 1, mask[b]]                             # [1, n, d]
        r = layer._router_logits(chosen).numpy()[..., None]
        weight = 1 / (1 + np.exp(-r)) if weight_fn == "sigmoid" else r
        expected = chosen + weight * (layer.block(chosen).numpy() - chosen)
        np.testing.assert_allclose(out[b:b + 1, mask[b]], expected, rtol=1e-5, atol=1e-6)


def test_evaluation_is_the_default_mode():
    layer = _mod()
    x = _x()
    np.testing.assert_array_equal(layer(x).numpy(), layer(x, training=False).numpy())


def test_block_runs_on_routed_tokens_only():
    block = SpyBlock()
    layer = _mod(capacity=0.25, block=block)
    block.shapes.clear()
    layer(_x(), training=True)
    assert block.shapes == [(B, capacity_k(0.25, S), D)]


@pytest.mark.parametrize("training", [True, False])
def test_batch_rows_are_independent(training):
    layer = _mod()
    x = _x()
    a = layer(x, training=training).numpy()
    for row in range(B):
        y = x.copy()
        y[row] = _x(seed=9 + row, shape=(S, D))
        b = layer(y, training=training).numpy()
        others = [i for i in range(B) if i != row]
        np.testing.assert_allclose(a[others], b[others], rtol=0, atol=1e-6)
        assert not np.allclose(a[row], b[row])


@pytest.mark.parametrize("causal_fix", ["predictor", "aux_bce", "both"])
@pytest.mark.parametrize("weight_fn", ["identity", "sigmoid"])
def test_evaluation_is_causal(causal_fix, weight_fn):
    layer = _mod(causal_fix=causal_fix, weight_fn=weight_fn)
    x = _x(seed=2)
    out = layer(x, training=False).numpy()
    for t in (1, 4, 7, S - 1):
        changed = layer(_perturbed(x, t), training=False).numpy()
        np.testing.assert_allclose(changed[:, :t], out[:, :t], rtol=0, atol=1e-6, err_msg=f"future leak at t={t}")
        assert not np.allclose(changed[:, t:], out[:, t:])


def test_training_top_k_is_not_causal():
    """Known and intended: a later token with a huge router score pushes an earlier token out of the top k.
    This is why evaluation must never use top-k routing (and shows the causality test can fail)."""
    layer = _mod(capacity=0.25)
    layer.router.kernel.assign(np.eye(D, 1, dtype=np.float32))  # r = x[..., 0]
    x = _x(seed=3)
    x[..., 0] = np.clip(x[..., 0], -1.0, 1.0)
    x[:, S - 1, 0] = -100.0
    perturbed = x.copy()
    perturbed[:, S - 1, 0] = 100.0                                # only the last token changes
    before, after = layer(x, training=True).numpy(), layer(perturbed, training=True).numpy()
    assert not np.allclose(before[:, :S - 1], after[:, :S - 1])
    # the same perturbation in evaluation mode leaves every earlier position alone
    np.testing.assert_allclose(layer(x).numpy()[:, :S - 1], layer(perturbed).numpy()[:, :S - 1], rtol=0, atol=1e-6)


def test_predictor_loss_does_not_change_backbone_gradients():
    below = keras.layers.Dense(D, kernel_initializer=keras.initializers.GlorotUniform(seed=5))  # the stack below
    below.build((None, None, D))
    layer = _mod(causal_fix="predictor")
    x = tf.constant(_x())
    with tf.GradientTape(persistent=True) as tape:
        out = layer(below(x), training=True)
        lm = tf.reduce_mean(tf.square(out))
        (predictor_loss,) = layer.losses
        total = lm + predictor_loss
    backbone = below.trainable_variables + layer.router.trainable_variables + layer.block.trainable_variables
    for with_aux, plain in zip(tape.gradient(total, backbone), tape.gradient(lm, backbone)):
        np.testing.assert_array_equal(with_aux.numpy(), plain.numpy())
    assert all(g is None for g in tape.gradient(predictor_loss, backbone))
    predictor = layer.predictor_hidden.trainable_variables + layer.predictor.trainable_variables
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in tape.gradient(predictor_loss, predictor))


@pytest.mark.parametrize("causal_fix, count", [("aux_bce", 1), ("both", 2)])
def test_aux_bce_trains_the_router(causal_fix, count):
    layer = _mod(causal_fix=causal_fix)
    with tf.GradientTape() as tape:
        layer(_x(), training=True)
        losses = layer.losses
    assert len(losses) == count
    grad = tape.gradient(losses[0], layer.router.kernel)
    assert float(tf.reduce_max(tf.abs(grad))) > 0


def test_no_auxiliary_loss_in_evaluation():
    layer = _mod(causal_fix="both")
    layer(_x(), training=True)
    assert len(layer.losses) == 2
    layer(_x(), training=False)
    assert layer.losses == []


@pytest.mark.parametrize("weight_fn", ["identity", "sigmoid"])
def test_router_is_on_the_gradient_path(weight_fn):
    layer = _mod(weight_fn=weight_fn)
    with tf.GradientTape() as tape:
        lm = tf.reduce_mean(tf.square(layer(_x(), training=True)))
    assert float(tf.reduce_max(tf.abs(tape.gradient(lm, layer.router.kernel)))) > 0


def test_full_capacity_is_the_router_weighted_block():
    layer = _mod(capacity=1.0)
    x = _x()
    r = layer._router_logits(x)[..., None].numpy()
    block = layer.block(x).numpy()
    np.testing.assert_allclose(layer(x, training=True).numpy(), x + r * (block - x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_xla_matches_eager(training):
    layer = _mod(causal_fix="both")
    x = tf.constant(_x())
    eager = layer(x, training=training).numpy()

    @tf.function(jit_compile=True)
    def forward(x):
        return layer(x, training=training)

    assert "sort" in forward.experimental_get_compiler_ir(x)(stage="hlo")  # really compiled by XLA
    out = forward(x)
    np.testing.assert_allclose(out.numpy(), eager, rtol=1e-5, atol=1e-5)


def test_xla_training_step_with_gradients():
    layer = _mod(causal_fix="both")
    variables = layer.trainable_variables

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            out = layer(x, training=True)
            loss = tf.reduce_mean(tf.square(out)) + tf.add_n(layer.losses)
        return out, tape.gradient(loss, variables)

    out, grads = step(tf.constant(_x()))
    assert out.shape == (B, S, D)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_wraps_a_compiled_transformer_block():
    unit = 2
    d = 8 * unit
    block = CompiledBlock(load_seed("transformer"), unit=unit)
    layer = _mod(capacity=0.25, causal_fix="both", block=block, d=d)
    x = _x(seed=4, shape=(2, S, d))
    with tf.GradientTape() as tape:
        out = layer(x, training=True)
        loss = tf.reduce_mean(tf.square(out)) + tf.add_n(layer.losses)
    assert out.shape == (2, S, d)
    grads = tape.gradient(loss, layer.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    reference = layer(x, training=False).numpy()
    for t in (3, 9):
        changed = layer(_perturbed(x, t), training=False).numpy()
        np.testing.assert_allclose(changed[:, :t], reference[:, :t], rtol=0, atol=1e-5)


def test_config_round_trip():
    layer = _mod(block=keras.layers.Dense(D), causal_fix="both", capacity=0.5, weight_fn="sigmoid")
    clone = MixtureOfDepths.from_config(layer.get_config())
    clone.build((None, None, D))
    clone.set_weights(layer.get_weights())
    x = _x()
    for training in (True, False):
        np.testing.assert_allclose(clone(x, training=training).numpy(), layer(x, training=training).numpy())


class Stack(keras.Model):
    """How a model wires it: some blocks wrapped per `routed_layers`, `training` reaching them via Keras."""

    def __init__(self, pattern="every_other_odd", num_layers=2):
        super().__init__()
        self.blocks = [MixtureOfDepths(SpyBlock(), capacity=0.25, causal_fix="both", seed=i) if routed else SpyBlock()
                       for i, routed in enumerate(routed_layers(pattern, num_layers))]

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_a_trainer_collects_the_auxiliary_losses_from_model_losses():
    model = Stack()
    model(_x())
    assert any("predictor" in v.path for v in model.trainable_variables)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
            aux = list(model.losses)
            loss = loss + tf.add_n(aux)
        grads = tape.gradient(loss, model.trainable_variables)
        return len(aux), grads

    count, grads = step(tf.constant(_x()))
    assert count == 2                                             # router BCE + predictor BCE of the one routed block
    assert all(g is not None for g in grads)
    model(_x(), training=False)
    assert model.losses == []
