import keras
import numpy as np
import tensorflow as tf

from primer_search.config import ModelConfig
from primer_search.lm.model import build_model
from primer_search.lm.model_cost import parameter_count
from primer_search.program.graph import lower
from primer_search.program.seeds import load_seed

TINY = ModelConfig(vocab_size=256, num_layers=2, param_band=(60_000, 120_000))


def test_counted_parameters_equal_built_parameters():
    for tie in (True, False):
        config = ModelConfig(vocab_size=100, num_layers=2, param_band=(10_000, 60_000), tie_embeddings=tie)
        dna = load_seed("primer_ez")
        model = build_model(dna, config)
        assert model.count_params() == parameter_count(lower(dna), config, model.unit)


def test_language_model_forward_is_causal_and_saves(tmp_path):
    model = build_model(load_seed("transformer"), TINY, seed=1)
    tokens = np.random.default_rng(0).integers(0, 256, size=(2, 12)).astype(np.int32)
    logits = model(tokens).numpy()
    assert logits.shape == (2, 12, 256)
    changed = tokens.copy()
    changed[:, 6] = (changed[:, 6] + 1) % 256
    np.testing.assert_allclose(model(changed).numpy()[:, :6], logits[:, :6], rtol=1e-5, atol=1e-5)
    path = tmp_path / "lm.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(tokens).numpy(), logits)


def test_same_seed_same_model():
    a, b = build_model(load_seed("primer"), TINY, seed=3), build_model(load_seed("primer"), TINY, seed=3)
    tokens = tf.constant([[1, 2, 3]])
    np.testing.assert_array_equal(a(tokens).numpy(), b(tokens).numpy())
