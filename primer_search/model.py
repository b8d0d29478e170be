"""The language model around compiled blocks, and the rule that sizes it into a parameter band.

Shape glossary: B batch, S sequence, d model width (= width_units x unit), V vocabulary.
The program covers the block only (as in the paper): token embedding, position information, final
normalization and the output projection are fixed parts of the model.

Sizing rule: every relative dimension of the DNA is multiplied by one size unit, and the block width is
`width_units` units. The unit is the largest integer in [1, max_unit] whose whole-model parameter count
(embeddings + num_layers blocks + final norm + head) is at most the band's upper end; if that count is below the
band's lower end the DNA cannot be sized into the band and a `SizingError` says so. Parameter counts grow with the
unit, so the choice is a deterministic binary search over exact counts (`Graph.parameter_count`).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from primer_search.compiler import CompiledBlock
from primer_search.config import ModelConfig
from primer_search.dna import DNA
from primer_search.graph import Graph, lower


class SizingError(ValueError):
    """No size unit puts the model inside the configured parameter band."""


def parameter_count(graph: Graph, config: ModelConfig, unit: int) -> int:
    """Exact trainable parameter count of the whole language model at this unit."""
    d = config.width_units * unit
    embedding = config.vocab_size * d
    head = 0 if config.tie_embeddings else d * config.vocab_size + config.vocab_size
    return embedding + config.num_layers * graph.parameter_count(unit) + 2 * d + head


def choose_unit(dna: DNA, config: ModelConfig) -> int:
    """The size unit that puts the model in `config.param_band` (see the module docstring)."""
    graph = lower(dna, config.width_units)
    low, high = config.param_band
    if parameter_count(graph, config, 1) > high:
        raise SizingError(f"model has {parameter_count(graph, config, 1):,} parameters at the smallest unit (1), "
                          f"above the band's upper end {high:,}; lower vocab_size or num_layers, or widen the band")
    lo, hi = 1, config.max_unit
    while lo < hi:  # largest unit with count <= high
        mid = (lo + hi + 1) // 2
        if parameter_count(graph, config, mid) <= high:
            lo = mid
        else:
            hi = mid - 1
    count = parameter_count(graph, config, lo)
    if count < low:
        raise SizingError(f"model has {count:,} parameters at unit {lo} (the largest unit allowed, max_unit="
                          f"{config.max_unit}, or the largest under {high:,}); below the band's lower end {low:,}")
    return lo


def positional_encoding(length: tf.Tensor, d: int) -> tf.Tensor:
    """Sinusoidal position signal [S, d] (Vaswani et al. 2017), defined for any length."""
    positions = tf.cast(tf.range(length), tf.float32)[:, None]                   # [S, 1]
    rates = np.exp(-math.log(10_000.0) * np.arange(0, d, 2) / d).astype(np.float32)  # [d/2]
    angles = positions * rates[None, :]                                         # [S, d/2]
    signal = tf.stack([tf.sin(angles), tf.cos(angles)], axis=-1)                 # [S, d/2, 2]
    return tf.reshape(signal, [length, 2 * len(rates)])[:, :d]                   # [S, d]


@keras.saving.register_keras_serializable(package="primer_search")
class LanguageModel(keras.Model):
    """Decoder-only LM: embedding + sinusoidal positions, N compiled blocks, final layer norm, vocab head."""

    def __init__(self, dna, unit: int, vocab_size: int, num_layers: int, width_units: int = 8,
                 tie_embeddings: bool = True, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.dna = dna if isinstance(dna, DNA) else DNA.from_dict(dna)
        self.unit, self.vocab_size, self.num_layers = unit, vocab_size, num_layers
        self.width_units, self.tie_embeddings, self.seed = width_units, tie_embeddings, seed
        self.d_model = width_units * unit
        init = keras.initializers.RandomNormal(stddev=self.d_model ** -0.5, seed=seed)
        self.embedding = keras.layers.Embedding(vocab_size, self.d_model, embeddings_initializer=init,
                                                name="embedding")
        self.blocks = [CompiledBlock(self.dna, unit=unit, width_units=width_units, seed=seed + 1 + i,
                                     name=f"block_{i}") for i in range(num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.head = None if tie_embeddings else keras.layers.Dense(
            vocab_size, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="head")

    def call(self, tokens):                                               # tokens: [B, S] int
        x = self.embedding(tokens) * math.sqrt(self.d_model)              # [B, S, d]
        x = x + positional_encoding(tf.shape(tokens)[1], self.d_model)[None]
        for block in self.blocks:
            x = block(x)                                                  # [B, S, d]
        x = self.final_norm(x)
        if self.head is not None:
            return self.head(x)                                           # [B, S, V]
        return tf.matmul(x, self.embedding.embeddings, transpose_b=True)  # [B, S, V]

    def get_config(self):
        config = super().get_config()
        config.update(dna=self.dna.to_dict(), unit=self.unit, vocab_size=self.vocab_size,
                      num_layers=self.num_layers, width_units=self.width_units,
                      tie_embeddings=self.tie_embeddings, seed=self.seed)
        return config


def build_model(dna: DNA, config: ModelConfig, seed: int = 0, unit: int | None = None) -> LanguageModel:
    """A built LanguageModel sized into the config's parameter band (or at an explicit unit)."""
    unit = choose_unit(dna, config) if unit is None else unit
    model = LanguageModel(dna, unit=unit, vocab_size=config.vocab_size, num_layers=config.num_layers,
                          width_units=config.width_units, tie_embeddings=config.tie_embeddings, seed=seed)
    model(tf.zeros([1, 1], tf.int32))
    return model
