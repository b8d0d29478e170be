import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from primer_search.config import ModelConfig
from primer_search.lm.calm import CalmLanguageModel, average_layers, build_calm_model, calm_loss, confidence
from primer_search.lm.calm import exit_loss_weights
from primer_search.lm.model import LanguageModel
from primer_search.lm.model import cross_entropy
from primer_search.lm.model_cost import exit_head_flops
from primer_search.program.macro_options import Calm, MacroOptions
from primer_search.program.seeds import load_seed

V, L, UNIT = 64, 3, 2
DNA = load_seed("transformer")


def _model(first_exit=0, exit_interval=1, confidence_="softmax_max", loss_weights="linear", seed=1):
    calm = Calm(enabled=True, first_exit=first_exit, exit_interval=exit_interval, loss_weights=loss_weights,
                confidence=confidence_)
    model = CalmLanguageModel(DNA, unit=UNIT, vocab_size=V, num_layers=L, seed=seed, calm=calm)
    model(tf.zeros([1, 1], tf.int32))
    return model


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(2, V, size=(2, 10)).astype(np.int32)


def _mixed_threshold(model, tokens):
    """A threshold midway between two first-exit confidences near their median: some tokens exit there, some
    do not, and no confidence sits close to it."""
    logits = model.exit_logits(tokens)[0]
    entering = model.embed(tokens)
    conf = np.sort(model.exit_confidence(logits, entering, model.blocks[0](entering)).numpy().ravel())
    middle = len(conf) // 2
    return float(conf[middle - 1] + conf[middle]) / 2


def _token_by_token(model, tokens, threshold):
    """Reference: decode each sequence one token at a time. states[l] holds the inputs of block l of the tokens
    seen so far; an exited token's state is carried upward unchanged, and each block runs on the prefix (the
    blocks are causal, so its last row is what a KV-cached step computes)."""
    all_logits, all_exits = [], []
    for row in tokens:
        x = model.embed(row[None])[0]                                    # [S, d]
        states = [[] for _ in range(L + 1)]
        logits, exits = [], []
        for t in range(len(row)):
            h, exited, out = x[t], None, None
            states[0].append(h)
            for layer, block in enumerate(model.blocks):
                if exited is None:
                    new = block(tf.stack(states[layer])[None])[0, -1]    # [d]
                    if layer in model.exits[:-1]:
                        lg = model.project(new[None, None])
                        if model.exit_confidence(lg, h[None, None], new[None, None])[0, 0] >= threshold:
                            exited, out = layer, lg[0, 0]
                    h = new
                states[layer + 1].append(h)
            if exited is None:
                exited, out = L - 1, model.project(h[None, None])[0, 0]
            logits.append(out)
            exits.append(exited)
        all_logits.append(tf.stack(logits))
        all_exits.append(exits)
    return np.stack(all_logits), np.array(all_exits)





def test_loss_weights_hand_checked():
    np.testing.assert_allclose(exit_loss_weights((0, 1, 2, 3), "linear"), [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(exit_loss_weights((1, 3, 5), "linear"), [2 / 12, 4 / 12, 6 / 12], rtol=1e-6)
    np.testing.assert_allclose(exit_loss_weights((1, 3, 5), "uniform"), [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(exit_loss_weights((0, 1, 2), "geometric"), [1 / 7, 2 / 7, 4 / 7], rtol=1e-6)
    np.testing.assert_allclose(exit_loss_weights((1, 3, 5), "geometric"), [1 / 7, 2 / 7, 4 / 7], rtol=1e-6)
    np.testing.assert_array_equal(exit_loss_weights((0, 1, 2), "last_only"), [0, 0, 1])
    with pytest.raises(ValueError, match="loss_weights"):
        exit_loss_weights((0, 1), "cubic")


def test_calm_loss_on_known_per_exit_losses():
    # exit i puts logit c_i on the target and 0 on the 3 other classes: CE_i = log(e^c_i + 3) - c_i
    # c = 0, log 3, log 9 give CE = log 4, log 2, log 4/3; the last target is PAD, so each exit's mean is 3/4 CE_i
    targets = tf.constant([[1, 2, 3, 0]])
    logits = [tf.one_hot(targets, 4) * c for c in (0.0, math.log(3), math.log(9))]
    ce = np.array([math.log(4), math.log(2), math.log(4 / 3)]) * 3 / 4
    for kind, weights in [("linear", [1, 2, 3]), ("uniform", [1, 1, 1]), ("geometric", [1, 2, 4]),
                          ("last_only", [0, 0, 1])]:
        expected = float(np.dot(weights, ce) / sum(weights))
        w = exit_loss_weights((0, 1, 2), kind)
        assert float(calm_loss(logits, targets, w)) == pytest.approx(expected, rel=1e-5)
        assert float(calm_loss(tf.stack(logits), targets, w)) == pytest.approx(expected, rel=1e-5)
    last_only = exit_loss_weights((0, 1, 2), "last_only")
    assert float(calm_loss(logits, targets, last_only)) == pytest.approx(0.75 * math.log(4 / 3), rel=1e-5)


def test_confidence_ranges():
    one_hot = tf.one_hot([[3]], 8) * 100.0
    uniform = tf.zeros([1, 1, 8])
    assert float(confidence("softmax_diff", one_hot, None, None)[0, 0]) == pytest.approx(1.0)
    assert float(confidence("softmax_diff", uniform, None, None)[0, 0]) == pytest.approx(0.0)
    assert float(confidence("softmax_max", uniform, None, None)[0, 0]) == pytest.approx(1 / 8)
    h = tf.constant([[[1.0, 2.0, -3.0]]])
    assert float(confidence("state_cos", None, h, 2 * h)[0, 0]) == pytest.approx(1.0)
    assert float(confidence("state_cos", None, h, -h)[0, 0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="confidence"):
        confidence("entropy", uniform, None, None)


def test_never_exit_equals_the_full_model(tokens):
    model = _model()
    plain = LanguageModel(DNA, unit=UNIT, vocab_size=V, num_layers=L, seed=99)
    plain(tf.zeros([1, 1], tf.int32))
    plain.set_weights(model.get_weights())
    logits, exit_layer = model.early_exit_logits(tokens, threshold=float("inf"))
    np.testing.assert_allclose(logits.numpy(), plain(tokens).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(exit_layer.numpy(), L - 1)
    assert float(average_layers(exit_layer)) == L
    np.testing.assert_allclose(model.exit_logits(tokens)[-1].numpy(), plain(tokens).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("first_exit", [0, 1])
def test_always_exit_uses_the_blocks_up_to_the_first_exit(tokens, first_exit):
    model = _model(first_exit=first_exit)
    truncated = LanguageModel(DNA, unit=UNIT, vocab_size=V, num_layers=first_exit + 1, seed=99)
    truncated(tf.zeros([1, 1], tf.int32))
    for mine, theirs in [(model.embedding, truncated.embedding), (model.final_norm, truncated.final_norm),
                         *zip(model.blocks, truncated.blocks)]:
        theirs.set_weights(mine.get_weights())
    logits, exit_layer = model.early_exit_logits(tokens, threshold=-float("inf"))
    np.testing.assert_allclose(logits.numpy(), truncated(tokens).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(exit_layer.numpy(), first_exit)
    assert float(average_layers(exit_layer)) == first_exit + 1
    nll, used, heads, count = model.early_exit_sums(tokens, tokens, threshold=-float("inf"))
    assert float(count) == tokens.size and float(used) == (first_exit + 1) * tokens.size
    assert float(heads) == tokens.size                                # one exit projection per token
    assert float(nll) == pytest.approx(float(tf.reduce_sum(cross_entropy(truncated(tokens), tokens))), rel=1e-5)


@pytest.mark.parametrize("method", ["softmax_diff", "softmax_max", "state_cos", "classifier"])
def test_early_exit_is_causal_and_equals_token_by_token_decoding(tokens, method):
    model = _model(confidence_=method)
    threshold = _mixed_threshold(model, tokens)
    logits, exit_layer = model.early_exit_logits(tokens, threshold)
    assert len(np.unique(exit_layer.numpy())) > 1                  # some tokens exit early, some do not
    ref_logits, ref_exits = _token_by_token(model, tokens, threshold)
    np.testing.assert_array_equal(exit_layer.numpy(), ref_exits)
    np.testing.assert_allclose(logits.numpy(), ref_logits, rtol=1e-5, atol=1e-5)
    for t in (3, 7):
        changed = tokens.copy()
        changed[:, t] = (changed[:, t] + 1 - 2) % (V - 2) + 2
        new_logits, new_exits = model.early_exit_logits(changed, threshold)
        np.testing.assert_array_equal(new_exits.numpy()[:, :t], exit_layer.numpy()[:, :t])
        np.testing.assert_allclose(new_logits.numpy()[:, :t], logits.numpy()[:, :t], rtol=1e-6, atol=1e-6)
        assert not np.allclose(new_logits.numpy()[:, t], logits.numpy()[:, t])


def test_the_classifier_learns_consistency_with_the_last_exit_and_nothing_else(tokens):
    model = _model(confidence_="classifier")
    assert model.count_params() == _model().count_params() + model.d_model + 1
    confidences = model.exit_confidence(None, None, model.embed(tokens)).numpy()
    assert confidences.shape == tokens.shape and ((0 < confidences) & (confidences < 1)).all()
    with tf.GradientTape() as tape:
        states = model._exit_states(tokens)
        loss = model._classifier_loss(states)
    grads = dict(zip([v.path for v in model.trainable_variables], tape.gradient(loss, model.trainable_variables)))
    assert float(loss) > 0
    assert all((g is not None) == ("exit_classifier" in path) for path, g in grads.items())
    finals = tf.argmax(states[-1][1], -1)
    labels = [tf.equal(tf.argmax(logits, -1), finals) for _, logits in states[:-1]]
    assert any(bool(tf.reduce_any(label)) for label in labels)          # the oracle label is not constant


def test_average_layers_on_a_constructed_case():
    exit_layer = tf.constant([[0, 2, 1], [3, 3, 0]])
    assert float(average_layers(exit_layer)) == pytest.approx(15 / 6)
    mask = tf.constant([[1, 1, 0], [1, 0, 1]])
    assert float(average_layers(exit_layer, mask)) == pytest.approx(9 / 4)


def test_early_exit_sums_skip_padding(tokens):
    model = _model()
    threshold = _mixed_threshold(model, tokens)
    targets = tokens.copy()
    targets[:, -3:] = 0                                          # PAD_ID
    logits, exit_layer = model.early_exit_logits(tokens, threshold)
    nll, used, heads, count = model.early_exit_sums(tokens, targets, threshold)
    mask = targets != 0
    assert float(count) == mask.sum()
    exits_passed = np.searchsorted(model.exits, exit_layer.numpy(), side="right")   # exits at or before the exit
    assert float(heads) == exits_passed[mask].sum()
    assert float(used) / float(count) == pytest.approx(float(average_layers(exit_layer, mask)))
    assert float(nll) == pytest.approx(float(tf.reduce_sum(cross_entropy(logits, targets))), rel=1e-6)


def test_works_under_tf_function(tokens):
    model = _model(confidence_="softmax_diff")
    threshold = _mixed_threshold(model, tokens)
    eager = model.early_exit_logits(tokens, threshold)
    for jit in (False, True):
        traced = tf.function(model.early_exit_logits, jit_compile=jit)(tf.constant(tokens), tf.constant(threshold))
        np.testing.assert_array_equal(traced[1].numpy(), eager[1].numpy())
        np.testing.assert_allclose(traced[0].numpy(), eager[0].numpy(), rtol=1e-5, atol=1e-5)

    @tf.function
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            loss = model.training_loss(inputs, targets)
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, grads = step(tf.constant(tokens[:, :-1]), tf.constant(tokens[:, 1:]))
    assert float(loss) == pytest.approx(float(model.training_loss(tokens[:, :-1], tokens[:, 1:])), rel=1e-5)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_last_only_loss_is_the_standard_loss(tokens):
    model = _model(loss_weights="last_only")
    standard = tf.reduce_mean(cross_entropy(model(tokens[:, :-1]), tokens[:, 1:]))
    assert float(model.training_loss(tokens[:, :-1], tokens[:, 1:])) == pytest.approx(float(standard), rel=1e-6)


def test_knobs_come_from_the_dna_and_survive_saving(tmp_path, tokens):
    calm = Calm(enabled=True, first_exit=1, exit_interval=2, loss_weights="uniform", confidence="state_cos",
                threshold=0.5)
    dna = DNA.replace(macro_options=MacroOptions(calm=calm))
    model = build_calm_model(dna, ModelConfig(vocab_size=V, num_layers=5), seed=2, unit=UNIT)
    assert model.calm == calm and model.exits == (1, 3, 4)
    path = tmp_path / "calm.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, CalmLanguageModel) and loaded.calm == calm and loaded.exits == (1, 3, 4)
    for a, b in zip(loaded.early_exit_logits(tokens), model.early_exit_logits(tokens)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert exit_head_flops(model.d_model, V, len(model.exits)) == 2 * 16 * V * 2
