"""The language model around compiled blocks.

Shape glossary: B batch, S sequence, d model width (= width_units x unit), V vocabulary.
The program covers the block only (as in the paper): token embedding, position information, final
normalization and the output projection are fixed parts of the model. With the DNA's Mixture-of-Depths option the
blocks that `model_cost.routed_layers` selects are wrapped in a `mod.MixtureOfDepths` router (training routes the top-k
tokens, evaluation routes causally; see `primer_search.lm.mod`).

Training and evaluation go through two methods that every language model of the project has (this one, CALM's
and MEGABYTE's), so the trainer needs no knowledge of the macro-options:
    training_loss(inputs, targets)    the scalar to minimize (mean token cross-entropy plus any auxiliary loss)
    validation_sums(inputs, targets)  {"nll": summed NLL over non-PAD targets, "nll_late": over the second half
                                      of each window's positions, ...}: sums over a batch that the evaluation adds
                                      up (MoD adds "routed": tokens routed per routed block)
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from primer_search.config import ModelConfig
from primer_search.lm import mod
from primer_search.lm.model_cost import choose_unit, routed
from primer_search.lm.tokenizer import PAD_ID
from primer_search.program.compiler import CompiledBlock
from primer_search.program.dna import DNA


def cross_entropy(logits, targets):
    """Per-token negative log-likelihood in nats [B, L], zero where the target is padding."""
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))
    return nll * tf.cast(targets != PAD_ID, tf.float32)


def nll_sums(nll) -> dict[str, tf.Tensor]:
    """The validation sums of per-token NLL [B, S]: "nll" over all targets and "nll_late" over positions S/2 on, the
    targets that see at least half a window of context (a block that uses long context gains most there)."""
    return {"nll": tf.reduce_sum(nll), "nll_late": tf.reduce_sum(nll[:, tf.shape(nll)[1] // 2:])}


def positional_encoding(length: tf.Tensor, d: int) -> tf.Tensor:
    """Sinusoidal position signal [S, d] (Vaswani et al. 2017), defined for any length."""
    positions = tf.cast(tf.range(length), tf.float32)[:, None]                   # [S, 1]
    rates = np.exp(-math.log(10_000.0) * np.arange(0, d, 2) / d).astype(np.float32)  # [d/2]
    angles = positions * rates[None, :]                                         # [S, d/2]
    signal = tf.stack([tf.sin(angles), tf.cos(angles)], axis=-1)                 # [S, d/2, 2]
    return tf.reshape(signal, [length, 2 * len(rates)])[:, :d]                   # [S, d]


class NextTokenLosses:
    """`training_loss` and `validation_sums` of a Keras model whose call maps tokens [B, S] to next-token logits
    [B, S, V] (see the module docstring)."""

    def training_loss(self, tokens, targets) -> tf.Tensor:
        """Mean cross-entropy over all B*S positions (PAD targets count zero), plus the layers' auxiliary losses."""
        loss = tf.reduce_mean(cross_entropy(self(tokens, training=True), targets))
        return loss + tf.add_n(self.losses) if self.losses else loss

    def validation_sums(self, tokens, targets) -> dict[str, tf.Tensor]:
        return nll_sums(cross_entropy(self(tokens, training=False), targets))


@keras.saving.register_keras_serializable(package="primer_search")
class LanguageModel(NextTokenLosses, keras.Model):
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
        options = self.dna.macro_options.mixture_of_depths
        self.blocks = []
        for i, is_routed in enumerate(routed(self.dna, num_layers)):
            block = CompiledBlock(self.dna, unit=unit, width_units=width_units, seed=seed + 1 + i, name=f"block_{i}")
            if is_routed:
                block = mod.MixtureOfDepths.from_options(block, options, seed=seed + 1 + i, name=f"routed_{i}")
            self.blocks.append(block)
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.head = None if tie_embeddings else keras.layers.Dense(
            vocab_size, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="head")

    def call(self, tokens, training=None):                                # tokens: [B, S] int
        x = self.embed(tokens)                                            # [B, S, d]
        for block in self.blocks:
            x = block(x, training=training)                               # [B, S, d]
        return self.project(x)                                            # [B, S, V]

    def embed(self, tokens) -> tf.Tensor:                                  # tokens: [B, S] int
        x = self.embedding(tokens) * math.sqrt(self.d_model)              # [B, S, d]
        return x + tf.cast(positional_encoding(tf.shape(tokens)[1], self.d_model), x.dtype)[None]

    def project(self, h) -> tf.Tensor:                                     # h: [B, S, d]
        """The output projection: final norm, then the tied embedding or the head -> [B, S, V]."""
        h = self.final_norm(h)
        if self.head is not None:
            return self.head(h)
        return tf.matmul(h, tf.cast(self.embedding.embeddings, h.dtype), transpose_b=True)

    def validation_sums(self, tokens, targets) -> dict[str, tf.Tensor]:
        """Sums over the non-PAD targets of a batch: "nll" and "nll_late" (nats, `nll_sums`) and, when blocks
        route, "routed" (tokens the routed blocks pass through their block, averaged over those blocks)."""
        mask = tf.cast(targets != PAD_ID, tf.float32)                     # [B, S]
        x, routed_counts = self.embed(tokens), []
        for block in self.blocks:
            if isinstance(block, mod.MixtureOfDepths):
                x, routed_mask = block.evaluate(x)
                routed_counts.append(tf.reduce_sum(tf.cast(routed_mask, tf.float32) * mask))
            else:
                x = block(x, training=False)
        sums = nll_sums(cross_entropy(self.project(x), targets))
        if routed_counts:
            sums["routed"] = tf.add_n(routed_counts) / len(routed_counts)
        return sums

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
