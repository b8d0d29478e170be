import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from primer_search.lm.data import load_data
from primer_search.lm.megabyte import MegabyteModel, build_megabyte_model
from primer_search.lm.model import LanguageModel, cross_entropy, positional_encoding
from primer_search.lm.model_cost import megabyte_flops, megabyte_parameter_count
from primer_search.lm.tokenizer import PAD_ID
from primer_search.lm.training import Trainer
from primer_search.program import cost
from primer_search.program.graph import lower
from primer_search.program.macro_options import Megabyte
from primer_search.program.seeds import load_seed

V = 20          # a small vocabulary keeps the heads cheap; ids 0 (PAD) and 2 (a zero byte) keep their meaning


@pytest.fixture(scope="module")
def dna():
    return load_seed("transformer")


def tiny(dna, patch_size=4, global_layers=1, local_layers=1, **kwargs):
    kwargs = {"unit": 1, "vocab_size": V, "seed": 0, **kwargs}
    return MegabyteModel(dna, patch_size=patch_size, global_layers=global_layers, local_layers=local_layers,
                         **kwargs)


def random_tokens(shape, seed=0):
    return np.random.default_rng(seed).integers(3, V, size=shape).astype(np.int32)


def perturbed(tokens, t):
    changed = tokens.copy()
    changed[:, t] = 3 + (changed[:, t] - 3 + 1) % (V - 3)
    return changed


def max_change(model, tokens, t):
    """(change of logits[:, :t], change of logits[:, t]) when input byte t changes."""
    before, after = model(tokens).numpy(), model(perturbed(tokens, t)).numpy()
    return np.abs(after[:, :t] - before[:, :t]).max(initial=0.0), np.abs(after[:, t] - before[:, t]).max()


def test_shapes(dna):
    model = tiny(dna, patch_size=4, global_width_factor=2, local_width_factor=0.5, unit=2)
    tokens = random_tokens([3, 16])
    assert model(tokens).shape == (3, 16, V)
    w = model.widths
    global_in = model.global_inputs(tokens)
    assert global_in.shape == (3, 4, w.d_global) and w.d_global == 2 * 8 * 2
    assert model.local_inputs(tokens, global_in).shape == (12, 4, w.d_local) and w.d_local == 8
    # any length: right-padded to whole patches inside, and the padding cannot reach earlier positions
    np.testing.assert_allclose(model(tokens[:, :13]).numpy(), model(tokens).numpy()[:, :13], atol=1e-5)
    assert model(tokens[:, :1]).shape == (3, 1, V)


@pytest.mark.parametrize("global_layers,local_layers", [(1, 1), (0, 1), (1, 0)])
def test_causal_and_sensitive(dna, global_layers, local_layers):
    """logits[:, j] depend on bytes 0..j exactly: byte t never reaches logits[:, :t] but always reaches logits[:, t].
    An identity stack (0 layers) on either side still must not leak, which catches a missing shift on the other."""
    model = tiny(dna, patch_size=4, global_layers=global_layers, local_layers=local_layers)
    tokens = random_tokens([2, 16])
    for t in range(16):                            # every offset in a patch, first and last patch included
        earlier, at_t = max_change(model, tokens, t)
        assert earlier < 1e-5, (t, earlier)
        assert at_t > 1e-3, (t, at_t)


class _LeakyGlobal(MegabyteModel):
    """Broken by one byte: P-2 pad slots, so global patch k ends with byte kP+1, the target of position kP."""

    def global_inputs(self, tokens):
        p, d_byte, length = self.patch_size, self.widths.d_byte, tokens.shape[1]
        h = self.global_embedding(tokens)                               # [B, T, D_G]
        pad = tf.broadcast_to(self.global_pad[None, :p - 2], [tf.shape(tokens)[0], p - 2, d_byte])
        h = tf.concat([pad, h[:, :length - (p - 2)]], axis=1)
        return tf.reshape(h, [tf.shape(tokens)[0], -1, p * d_byte])


class _LeakyLocal(MegabyteModel):
    """Broken: local slot p sees byte kP+p+1 (its own target) instead of kP+p."""

    def local_inputs(self, tokens, global_out):
        return super().local_inputs(tf.concat([tokens[:, 1:], tokens[:, :1]], axis=1), global_out)


@pytest.mark.parametrize("leaky", [_LeakyGlobal, _LeakyLocal])
def test_the_causality_check_catches_a_broken_shift(dna, leaky):
    model = leaky(dna, unit=1, patch_size=4, global_layers=1, local_layers=1, vocab_size=V)
    tokens = random_tokens([2, 16])
    assert max(max_change(model, tokens, t)[0] for t in range(16)) > 1e-3


def test_global_and_local_shifts(dna):
    """Design notes §3.5 invariants 3 and 4, in the trainer's coordinates (module docstring)."""
    p, model = 4, tiny(dna, patch_size=4)
    tokens = random_tokens([2, 12])
    tokens[:, 0] = 2                                                    # a genuine zero byte is a real byte
    model(tokens)
    w = model.widths
    h = model.global_embedding(tokens).numpy() * math.sqrt(w.d_byte)
    h += positional_encoding(12, w.d_byte).numpy()[None]
    patches = model.global_inputs(tokens).numpy().reshape(2, 3, p, w.d_byte)
    pad = model.global_pad.numpy()                                      # [P-1, D_G]
    np.testing.assert_allclose(patches[:, 0, :p - 1], np.broadcast_to(pad, (2, p - 1, w.d_byte)))
    np.testing.assert_allclose(patches[:, 0, p - 1], h[:, 0], atol=1e-6)            # byte 0 ends the pad patch
    for k in (1, 2):
        np.testing.assert_allclose(patches[:, k], h[:, (k - 1) * p + 1:k * p + 1], atol=1e-6)

    global_out = np.random.default_rng(1).normal(size=(2, 3, p * w.d_byte)).astype(np.float32)
    local = model.local_inputs(tokens, global_out).numpy().reshape(2, 3, p, w.d_local)
    projected = (global_out.reshape(2, 3, p, w.d_byte) @ model.global_to_local.kernel.numpy())
    e = model.local_embedding(tokens).numpy().reshape(2, 3, p, w.d_local) * math.sqrt(w.d_local)
    np.testing.assert_allclose(local[:, :, 0], projected[:, :, 0] + model.local_pad.numpy(), atol=1e-5)
    np.testing.assert_allclose(local[:, :, 1:], projected[:, :, 1:] + e[:, :, 1:], atol=1e-5)


def test_pads_are_learned_vectors_not_a_token_id(dna):
    """Shift pads never come from the embedding table, so no id (PAD_ID 0, zero byte 2) is reserved for them."""
    model = tiny(dna, patch_size=4)
    tokens = random_tokens([1, 8])
    model(tokens)
    before = model.global_inputs(tokens).numpy()[:, 0, :-model.widths.d_byte]
    table = model.global_embedding.embeddings
    table.assign(table.numpy() + 5.0)
    np.testing.assert_array_equal(model.global_inputs(tokens).numpy()[:, 0, :-model.widths.d_byte], before)


def test_patch_size_one_is_the_plain_byte_model(dna):
    """P = 1: the global stack is a LanguageModel trunk over the inputs. With no local layers, W_GL = I, a zero
    local pad and the same embedding, blocks and final norm, the logits equal the LanguageModel's."""
    lm = LanguageModel(dna, unit=2, vocab_size=V, num_layers=2, seed=5)
    mb = tiny(dna, patch_size=1, global_layers=2, local_layers=0, unit=2, seed=9)
    tokens = random_tokens([2, 10])
    lm(tokens), mb(tokens)
    table = lm.embedding.embeddings.numpy()
    mb.global_embedding.embeddings.assign(table)
    mb.local_embedding.embeddings.assign(table)
    for ours, theirs in zip(mb.global_blocks, lm.blocks):
        ours.set_weights(theirs.get_weights())
    mb.global_to_local.kernel.assign(np.eye(lm.d_model, dtype=np.float32))
    mb.local_pad.assign(np.zeros(lm.d_model, np.float32))
    lm.final_norm.set_weights([np.linspace(0.5, 1.5, lm.d_model), np.linspace(-0.1, 0.1, lm.d_model)])
    mb.final_norm.set_weights(lm.final_norm.get_weights())
    assert mb.global_pad is None
    np.testing.assert_allclose(mb(tokens).numpy(), lm(tokens).numpy(), atol=2e-4)
    assert not np.allclose(mb(perturbed(tokens, 3)).numpy()[:, 3], mb(tokens).numpy()[:, 3])


def test_loss_matches_a_hand_computation(dna):
    """The trainer's loss on MEGABYTE logits: mean NLL over all B*T positions, PAD_ID targets count zero, a genuine
    zero byte (id 2) counts like any byte."""
    model = tiny(dna, patch_size=2)
    rows = np.array([[5, 2, 7, 2, 9], [2, 2, 4, 8, 0]], np.int32)     # the second row ends in padding
    inputs, targets = rows[:, :-1], rows[:, 1:]
    logits = model(inputs).numpy().astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    by_hand = 0.0
    for b in range(2):
        for j in range(4):
            if targets[b, j] != PAD_ID:
                by_hand -= log_probs[b, j, targets[b, j]]
    loss = float(tf.reduce_mean(cross_entropy(model(inputs), targets)))
    assert loss == pytest.approx(by_hand / 8, rel=1e-5)
    nll = cross_entropy(model(inputs), targets).numpy()
    assert nll[1, 3] == 0.0 and (nll[targets == 2] > 0).all()


def test_trains_under_xla(dna):
    """The trainer's step under tf.function(jit_compile=True): same logits as eager, every weight gets a gradient."""
    model = tiny(dna, patch_size=4, tie_embeddings=False)
    rows = random_tokens([2, 17])
    inputs, targets = tf.constant(rows[:, :-1]), tf.constant(rows[:, 1:])
    eager = model(inputs).numpy()

    @tf.function(jit_compile=True)
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            loss = tf.reduce_mean(cross_entropy(logits, targets))
        return logits, loss, tape.gradient(loss, model.trainable_variables)

    logits, loss, grads = step(inputs, targets)
    np.testing.assert_allclose(logits.numpy(), eager, atol=1e-4)
    assert np.isfinite(float(loss))
    for variable, grad in zip(model.trainable_variables, grads):
        assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, variable.path


@pytest.mark.parametrize("kwargs", [
    {"patch_size": 4},
    {"patch_size": 1, "global_layers": 2, "local_layers": 0},
    {"patch_size": 8, "global_width_factor": 2, "local_width_factor": 0.5, "unit": 2, "tie_embeddings": False},
    {"patch_size": 16, "unit": 3, "global_layers": 2},
])
def test_counted_parameters_equal_built_parameters(dna, kwargs):
    model = tiny(dna, **kwargs)
    model(random_tokens([1, 16]))
    settings = {"unit": 1, "global_layers": 1, "local_layers": 1, **kwargs}
    assert model.count_params() == megabyte_parameter_count(lower(dna), vocab_size=V, **settings)


def test_flops(dna):
    graph, length = lower(dna), 32
    d = graph.width_units * 2
    plain = cost.model_flops(graph, 2, length, 2, V)
    assert megabyte_flops(graph, 2, length, 1, 2, 0, V) == plain + 2 * d * d          # P = 1: plus W_GL
    expected = (-(-2 * cost.block_flops(graph, 2, 8) // 4) + cost.block_flops(graph, 2, 4)
                + 2 * (d // 4) * d + 2 * d * V)
    assert megabyte_flops(graph, 2, length, 4, 2, 1, V) == expected


def test_config_round_trip_and_builder(dna):
    model = tiny(dna, patch_size=2, seed=3)
    tokens = random_tokens([1, 6])
    clone = MegabyteModel.from_config(model.get_config())
    np.testing.assert_array_equal(clone(tokens).numpy(), model(tokens).numpy())
    options = dataclasses.replace(dna.macro_options, megabyte=Megabyte(enabled=True, patch_size=2, depth_split="3:1"))
    built = build_megabyte_model(dataclasses.replace(dna, macro_options=options), unit=1, num_layers=4,
                                 vocab_size=V)
    assert (built.patch_size, built.global_layers, built.local_layers) == (2, 3, 1)
    assert isinstance(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(built)),
                      MegabyteModel)


def test_the_trainer_trains_it_unchanged(fast_config):
    """`Trainer` (inputs = rows[:, :-1], targets = rows[:, 1:], PAD targets masked) needs no change."""
    config = fast_config.replace(training={"budget": 4, "checkpoints": (0.5,)})
    data = load_data(config.data, config.model.vocab_size)
    model = build_megabyte_model(load_seed("primer"), unit=2, num_layers=2, vocab_size=data.vocab_size,
                                 megabyte=Megabyte(enabled=True, patch_size=4))
    progress = Trainer(model, data, config.training, flops_per_step=1000).train(seed=0)
    assert progress.steps == 4 and math.isfinite(progress.last_loss)
    assert 0 < progress.checkpoints[0].validation_loss < math.log(data.vocab_size) + 1
