"""MEGABYTE (Yu et al. 2023, arXiv 2305.07185): a global stack over patches of bytes and a local stack over the
bytes of each patch, both built from the candidate's compiled block.

How it works: `MegabyteModel`.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from primer_search.lm.model import NextTokenLosses, positional_encoding
from primer_search.lm.model_cost import split_depth, widths
from primer_search.lm.tokenizer import PAD_ID
from primer_search.program.compiler import CompiledBlock
from primer_search.program.dna import DNA

def _dim(x: tf.Tensor, axis: int):
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


@keras.saving.register_keras_serializable(package="primer_search")
class MegabyteModel(NextTokenLosses, keras.Model):
    """Byte-level MEGABYTE language model: token ids [B, T] -> next-token logits [B, T, V].

    Shape glossary: B batch, T input tokens (bytes), P patch size, K = T / P patches, V vocabulary, D_G per-byte
    global width, P*D_G global stack width, D_L local stack width.

    Convention (the same as `primer_search.lm.model.LanguageModel`, so `primer_search.lm.training.Trainer` trains it
    unchanged): `model(inputs)` maps token ids [B, T] to logits [B, T, V] and logits[:, j] predict the token after
    inputs[:, j], i.e. targets[:, j] with inputs = rows[:, :-1], targets = rows[:, 1:]; they depend on inputs[:, :j+1]
    only. The model needs no knowledge of PAD_ID: the loss mask is the trainer's (`model.cross_entropy` zeroes
    targets equal to PAD_ID 0, and a genuine zero byte is id 2), the shift pads are learned vectors (never the
    embedding of an id), and right padding cannot reach earlier positions because the model is causal. T need not be
    a multiple of P: the inputs are right-padded with PAD_ID to a whole patch and the extra logits dropped.

    The algorithm is the paper's (§2, Eqs. 1-6; design notes §3.2) on the targets y (y_i = x_{i+1}, x the inputs),
    with one byte of left context x_0 = y_{-1}:
        bytes      h_i = E_G[x_i] * sqrt(D_G) + pos_i                              [B, T, D_G]  (pos: sinusoidal)
        global in  patch k holds the bytes of target patch k-1, y_{(k-1)P .. kP-1} = x_{(k-1)P+1 .. kP}, concatenated;
                   patch 0 holds P-1 learned pad vectors then x_0 (the paper: P pads; here the trainer's row gives
                   one real byte before the first target, and it is used)        [B, K, P*D_G]
        global     the global stack (L_G compiled blocks of width P*D_G) over K patches, then its final layer norm
        local in   slot p of patch k: W_GL . (global out k)[p-th D_G slice] + (E_L[x_{kP+p}] * sqrt(D_L) if p > 0
                   else a learned pad E_Lpad): the byte shift inside the patch is the paper's y_{kP+p-1}
                                                                                 [B*K, P, D_L]
        local      the local stack (L_L compiled blocks of width D_L), independently on each patch's P slots
        logits     final layer norm, then the output projection tied to E_L (Eq. 6) or an untied head  [B, T, V]
    So global output k depends on x_0..x_{kP}, local slot p adds x_{kP+1..kP+p}, and logits[:, kP+p] depend on
    x_0..x_{kP+p}: the global input is shifted by one patch and the local one by one byte, in target coordinates.
    With P = 1 there is no pad and no local context: the global stack is exactly a LanguageModel trunk over the
    inputs (same embedding, positions and blocks) and the local stack sees one slot (W_GL . g + E_Lpad) per position.

    Widths (design notes §3.4, knobs of `macro_options.Megabyte`), d = width_units x unit being the plain model's:
        global  P*D_G = width_units x global_unit with global_unit = global_width_factor x unit, rounded up to the next
                multiple that makes the width divisible by P (no rounding with width_units 8 and P <= 8)
        local   D_L = width_units x local_unit with local_unit = max(1, floor(local_width_factor x unit))
    Both stacks compile the same DNA at their own unit, so the block keeps its proportions. Depth: `split_depth`.
    Parameters: `parameter_count`; analytic FLOPs: `training_flops_per_token` (the paper's 2T(m_G/P + m_L) + heads).
    Not implemented: cached patch-by-patch generation, strided inference, the conv patch encoder, cross-patch attention.
    """

    def __init__(self, dna, unit: int, patch_size: int, global_layers: int, local_layers: int,
                 width_units: int = 8, global_width_factor: int = 1, local_width_factor: float = 1.0,
                 vocab_size: int = 258, tie_embeddings: bool = True, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.dna = dna if isinstance(dna, DNA) else DNA.from_dict(dna)
        if global_layers < 0 or local_layers < 0:
            raise ValueError(f"MegabyteModel: layer counts must be >= 0, received global_layers={global_layers}, "
                             f"local_layers={local_layers}")
        self.unit, self.patch_size, self.width_units = unit, patch_size, width_units
        self.global_layers, self.local_layers, self.vocab_size = global_layers, local_layers, vocab_size
        self.global_width_factor, self.local_width_factor = global_width_factor, local_width_factor
        self.tie_embeddings, self.seed = tie_embeddings, seed
        self.widths = w = widths(width_units, unit, patch_size, global_width_factor, local_width_factor)

        self.global_embedding = keras.layers.Embedding(
            vocab_size, w.d_byte, name="global_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=w.d_byte ** -0.5, seed=seed))
        self.global_pad = None if patch_size == 1 else self.add_weight(
            name="global_pad", shape=(patch_size - 1, w.d_byte),
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=seed + 2))
        self.global_blocks = [CompiledBlock(self.dna, unit=w.global_unit, width_units=width_units,
                                            seed=seed + 1 + i, name=f"global_block_{i}")
                              for i in range(global_layers)]
        self.global_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="global_norm")
        self.global_to_local = keras.layers.Dense(
            w.d_local, use_bias=False, name="global_to_local",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 4))
        self.local_embedding = keras.layers.Embedding(
            vocab_size, w.d_local, name="local_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=w.d_local ** -0.5, seed=seed + 1))
        self.local_pad = self.add_weight(name="local_pad", shape=(w.d_local,),
                                         initializer=keras.initializers.RandomNormal(stddev=1.0, seed=seed + 3))
        self.local_blocks = [CompiledBlock(self.dna, unit=w.local_unit, width_units=width_units,
                                           seed=seed + 1 + global_layers + i, name=f"local_block_{i}")
                             for i in range(local_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.head = None if tie_embeddings else keras.layers.Dense(
            vocab_size, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="head")

    def call(self, tokens):                                               # tokens: [B, T] int
        length = _dim(tokens, 1)
        tokens = self.pad_to_patches(tokens)                              # [B, K*P]
        g = self.global_inputs(tokens)                                    # [B, K, P*D_G]
        for block in self.global_blocks:
            g = block(g)                                                  # [B, K, P*D_G]
        x = self.local_inputs(tokens, self.global_norm(g))                # [B*K, P, D_L]
        for block in self.local_blocks:
            x = block(x)                                                  # [B*K, P, D_L]
        x = self.final_norm(x)
        if self.head is not None:
            logits = self.head(x)                                         # [B*K, P, V]
        else:
            logits = tf.matmul(x, tf.cast(self.local_embedding.embeddings, x.dtype), transpose_b=True)  # [B*K, P, V]
        logits = tf.reshape(logits, [_dim(tokens, 0), -1, self.vocab_size])           # [B, K*P, V]
        return logits[:, :length]                                         # [B, T, V]

    def pad_to_patches(self, tokens) -> tf.Tensor:
        """Right-pad [B, T] with PAD_ID to a multiple of P (causal: no earlier logit can see it)."""
        extra = (-_dim(tokens, 1)) % self.patch_size
        if isinstance(extra, int) and extra == 0:
            return tokens
        return tf.pad(tokens, [[0, 0], [0, extra]], constant_values=PAD_ID)

    def global_inputs(self, tokens) -> tf.Tensor:                          # tokens: [B, K*P]
        """Patch k holds bytes (k-1)P+1 .. kP; patch 0 the P-1 pad vectors, then byte 0."""
        p, d_byte = self.patch_size, self.widths.d_byte
        batch, length = _dim(tokens, 0), _dim(tokens, 1)
        h = self.global_embedding(tokens) * math.sqrt(d_byte)            # [B, T, D_G]
        h = h + tf.cast(positional_encoding(length, d_byte), h.dtype)[None]
        if p > 1:
            pad = tf.broadcast_to(self.global_pad[None], [batch, p - 1, d_byte])    # [B, P-1, D_G]
            h = tf.concat([pad, h[:, :length - (p - 1)]], axis=1)         # [B, T, D_G]: slot i is byte i-P+1
        return tf.reshape(h, [batch, -1, p * d_byte])                     # [B, K, P*D_G]

    def local_inputs(self, tokens, global_out) -> tf.Tensor:               # tokens: [B, K*P], global_out: [B, K, P*D_G]
        """Slot p of patch k: W_GL (global out k)[p] + the embedding of byte kP+p, or the pad at p = 0."""
        p, w = self.patch_size, self.widths
        g = self.global_to_local(tf.reshape(global_out, [-1, p, w.d_byte]))   # [B*K, P, D_L]
        e = self.local_embedding(tokens) * math.sqrt(w.d_local)           # [B, T, D_L]
        e = tf.reshape(e, [-1, p, w.d_local])[:, 1:]                      # [B*K, P-1, D_L]
        pad = tf.broadcast_to(self.local_pad[None, None], [tf.shape(e)[0], 1, w.d_local])   # [B*K, 1, D_L]
        return g + tf.concat([pad, e], axis=1)                            # [B*K, P, D_L]

    def get_config(self):
        config = super().get_config()
        config.update(dna=self.dna.to_dict(), unit=self.unit, patch_size=self.patch_size,
                      global_layers=self.global_layers, local_layers=self.local_layers,
                      width_units=self.width_units, global_width_factor=self.global_width_factor,
                      local_width_factor=self.local_width_factor, vocab_size=self.vocab_size,
                      tie_embeddings=self.tie_embeddings, seed=self.seed)
        return config


def build_megabyte_model(dna: DNA, unit: int, num_layers: int, vocab_size: int = 258, width_units: int = 8,
                         tie_embeddings: bool = True, seed: int = 0, megabyte=None) -> MegabyteModel:
    """A built MegabyteModel with the knobs of `megabyte` (a `macro_options.Megabyte`; default: the DNA's) and
    num_layers split between the stacks by its depth_split. Sizing into a parameter band is the caller's."""
    options = megabyte if megabyte is not None else dna.macro_options.megabyte
    global_layers, local_layers = split_depth(num_layers, options.depth_split)
    model = MegabyteModel(dna, unit=unit, patch_size=options.patch_size, global_layers=global_layers,
                          local_layers=local_layers, width_units=width_units,
                          global_width_factor=options.global_width_factor,
                          local_width_factor=options.local_width_factor, vocab_size=vocab_size,
                          tie_embeddings=tie_embeddings, seed=seed)
    model(tf.zeros([1, options.patch_size], tf.int32))
    return model
