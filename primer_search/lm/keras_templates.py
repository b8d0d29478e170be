"""The text a Keras export is made of: the helper functions a written module may need (each with the helpers it
calls) and the templates of its header, `Block` and `LanguageModel` (`primer_search.lm.keras_export` fills them in)."""

# The module's helpers: name -> (source, helpers it calls). Only those a program uses are written.
HELPERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "weight_seed": ('''

def weight_seed(seed, identity, name, shape):
    """The initializer seed of one weight (as primer-search's compiler draws it)."""
    text = f"{seed}|{identity}|{name}|{'x'.join(map(str, shape))}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF
''', ()),
    "glorot": ('''

def glorot(shape, seed):
    """Glorot uniform over one branch's kernel: shape [m, ..., W, U]."""
    fan_in = math.prod(shape[1:-1])
    fan_out = math.prod(shape[1:-2]) * shape[-1]
    limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)
''', ()),
    "primer_dconv": ('''

def primer_dconv(shape):
    """Depthwise taps [m, k, W]: tap 0 starts at 0.5, the others at 0.5 / k."""
    taps = [[[0.5 if i == 0 else 0.5 / shape[1]] * shape[2] for i in range(shape[1])]] * shape[0]
    return keras.initializers.Constant(taps)
''', ()),
    "causal_mask": ('''

def causal_mask(queries, keys):
    """[Q, K] booleans: key j is visible from query row i (j <= i)."""
    return ops.arange(keys)[None, :] <= ops.arange(queries)[:, None]
''', ()),
    "mask_future": ('''

def mask_future(p, fill=0.0):
    """Positions [B, m, S, S] with the future keys j > t replaced by `fill` (a select: nothing leaks from there)."""
    return ops.where(causal_mask(ops.shape(p)[-2], ops.shape(p)[-1]), p, fill)
''', ("causal_mask",)),
    "causal_product": ('''

def causal_product(p, y):
    """p @ y over the keys j <= t only: y's non-finite values count as 0, and make NaN the outputs that can see them."""
    finite = ops.isfinite(y)
    out = ops.matmul(mask_future(p), ops.where(finite, y, 0.0))
    seen = ops.cumsum(ops.cast(ops.logical_not(finite), out.dtype), axis=-2)
    return ops.where(seen > 0, math.nan, out)
''', ("mask_future",)),
    "lower_triangle": ('''

def lower_triangle(x):
    """Zero the entries (i, j) with j > i of the last two axes (MASK)."""
    return ops.where(causal_mask(ops.shape(x)[-2], ops.shape(x)[-1]), x, 0.0)
''', ("causal_mask",)),
    "causal_mean": ('''

def causal_mean(p):
    """Positions [B, m, S, S] -> [B, m, S, 1]: the mean over the keys j <= t."""
    count = ops.cast(ops.arange(1, ops.shape(p)[-1] + 1), p.dtype)[:, None]  # [S, 1]
    return ops.sum(mask_future(p), axis=-1, keepdims=True) / count
''', ("mask_future",)),
    "masked_softmax": ('''

def masked_softmax(p):
    """Softmax over the keys j <= t of positions [B, m, S, S]; exactly 0 at j > t."""
    p = mask_future(p, -math.inf)
    e = ops.exp(p - ops.max(p, axis=-1, keepdims=True))
    return e / ops.sum(e, axis=-1, keepdims=True)
''', ("mask_future",)),
    "resize": ('''

def resize(x, width):
    """Cut or zero-pad the feature axis to `width`."""
    have = x.shape[-1]
    if have >= width:
        return x[..., :width]
    return ops.pad(x, [[0, 0]] * (len(x.shape) - 1) + [[0, width - have]])
''', ()),
    "scale_by_width": ('''

def scale_by_width(x, width):
    """x / sqrt(width): the scaled dot product's factor."""
    return x if width == 1 else x * (1.0 / math.sqrt(width))
''', ()),
    "shift": ('''

def shift(x, k):
    """Delay along the sequence axis by k positions, zero-filled: out[t] = x[t - k]."""
    if k == 0:
        return x
    return ops.pad(x, [[0, 0]] * (len(x.shape) - 2) + [[k, 0], [0, 0]])[..., :-k, :]
''', ()),
    "dense": ('''

def dense(x, kernel):
    """Per-branch projection: x [B, m|1, S, W], kernel [m, W, U] -> [B, m, S, U]."""
    if x.shape[1] == kernel.shape[0]:
        return ops.einsum("bmsw,mwu->bmsu", x, kernel)
    return ops.einsum("bsw,mwu->bmsu", x[:, 0], kernel)
''', ()),
    "causal_conv": ('''

def causal_conv(x, kernel):
    """Causal convolution: x [B, m|1, S, W], kernel [m, k, W, U] -> [B, m, S, U]; tap i reads position t - i."""
    return sum(shift(dense(x, kernel[:, i]), i) for i in range(kernel.shape[1]))
''', ("shift", "dense")),
    "causal_depthwise": ('''

def causal_depthwise(x, taps):
    """Causal depthwise convolution: x [B, m|1, S, W], taps [m, k, W] -> [B, m, S, W]."""
    return sum(shift(x, i) * taps[None, :, i, None, :] for i in range(taps.shape[1]))
''', ("shift",)),
    "reciprocal_no_nan": ('''

def reciprocal_no_nan(x):
    """1 / x, and 0 where x = 0."""
    zero = x == 0
    return ops.where(zero, 0.0, 1.0 / ops.where(zero, 1.0, x))
''', ()),
    "split": ('''

def split(x, k):
    """Enter a k-way branch: copies are shared (a branch axis of 1) until weights make them differ."""
    return x if x.shape[1] == 1 else ops.repeat(x, k, axis=1)
''', ()),
    "merge": ('''

def merge(x, m, k):
    """Leave a k-way branch: [B, m*k|1, S, W] -> [B, m, S, k*W], the copies side by side."""
    if x.shape[1] == 1:
        return ops.tile(x, [1, 1, 1, k])
    b, _, s, w = ops.shape(x)
    x = ops.transpose(ops.reshape(x, (b, m, k, s, w)), (0, 1, 3, 2, 4))
    return ops.reshape(x, (b, m, s, k * w))
''', ()),
    "positional_encoding": ('''

def positional_encoding(length, d):
    """Sinusoidal position signal [S, d] (Vaswani et al. 2017)."""
    positions = ops.cast(ops.arange(length), "float32")[:, None]                  # [S, 1]
    rates = ops.convert_to_tensor([math.exp(-math.log(10_000.0) * i / d) for i in range(0, d, 2)], "float32")
    angles = positions * rates[None, :]                                          # [S, d/2]
    signal = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)              # [S, d/2, 2]
    return ops.reshape(signal, (length, -1))[:, :d]                             # [S, d]
''', ()),
}

HEADER = '''"""{name}: a decoder block found by primer-search (program {hash}), as a standalone Keras 3 module.

Written by `primer-search export ... --format keras`; needs only keras (any backend). Shapes: B batch, S sequence,
m branch copies, d = {width_units} x unit model width; the block maps [B, S, d] to [B, S, d] and is causal.

    block = Block()                           # unit {unit}: d = {width_units} x {unit}
{usage}    block.set_weights(weights)                # trained weights, in primer-search's order
{extra}
The program (primer-search listing):

{listing}
"""

import hashlib
import math

import keras
from keras import ops

UNIT = {unit}
WIDTH_UNITS = {width_units}
VOCAB_SIZE = {vocab}
NUM_LAYERS = {layers}
TIE_EMBEDDINGS = {tie}
PACKAGE = "program_{hash}"   # the classes' Keras registration: keras.models.load_model reads saved models back

'''

BLOCK = '''

@keras.saving.register_keras_serializable(package=PACKAGE)
class Block(keras.layers.Layer):
    """The program's decoder block: [B, S, d] -> [B, S, d], d = WIDTH_UNITS x unit."""

    def __init__(self, unit=UNIT, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.unit, self.seed = unit, seed
        self.d_model = WIDTH_UNITS * unit

    def build(self, input_shape):
        u = self.unit
{build}

    def call(self, x):                                               # x: [B, S, d]
        u, d = self.unit, self.d_model
{call}

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {{**super().get_config(), "unit": self.unit, "seed": self.seed}}
'''

MODEL = '''

@keras.saving.register_keras_serializable(package=PACKAGE)
class LanguageModel(keras.Model):
    """Decoder-only language model: embedding + sinusoidal positions, the blocks, final layer norm, vocabulary head."""

    def __init__(self, vocab_size=VOCAB_SIZE, num_layers=NUM_LAYERS, unit=UNIT, tie_embeddings=TIE_EMBEDDINGS,
                 seed=0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.num_layers, self.unit = vocab_size, num_layers, unit
        self.tie_embeddings, self.seed = tie_embeddings, seed
        self.d_model = d = WIDTH_UNITS * unit
        self.embedding = keras.layers.Embedding(
            vocab_size, d, embeddings_initializer=keras.initializers.RandomNormal(stddev=d ** -0.5, seed=seed),
            name="embedding")
        self.blocks = [Block(unit, seed=seed + 1 + i, name=f"block_{i}") for i in range(num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.head = None if tie_embeddings else keras.layers.Dense(
            vocab_size, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="head")

    def call(self, tokens):                                          # tokens: [B, S] int
        length = ops.shape(tokens)[1]
        x = self.embedding(tokens) * math.sqrt(self.d_model)         # [B, S, d]
        x = x + positional_encoding(length, self.d_model)[None]
        for block in self.blocks:
            x = block(x)                                             # [B, S, d]
        h = self.final_norm(x)
        if self.head is not None:
            return self.head(h)                                      # [B, S, vocab]
        return ops.matmul(h, ops.transpose(self.embedding.embeddings))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "num_layers": self.num_layers,
                "unit": self.unit, "tie_embeddings": self.tie_embeddings, "seed": self.seed}
'''
