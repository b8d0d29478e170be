"""Autoregressive generation with a cache in every block, for each kind of model the search builds.

    sampler = Sampler(model)              # a LanguageModel (with MoD routers or not), CalmLanguageModel or
                                          # MegabyteModel, built and trained
    result = sampler.generate(prompt, 64, np.random.default_rng(0))
    result.tokens, result.seconds, result.layers_run, result.blocks_run

One sequence (batch 1, the latency setting where Mixture-of-Depths and CALM save work). Each position runs once
through the blocks' `decoding.BlockDecoder`s (traced once, caches grow by one row per step): the prompt's
positions are fed (teacher forcing, the logits kept for tests), then tokens are drawn from the softmax with the
generator passed in (or greedily with temperature 0). The logits a sampler computes are the model's evaluation
logits position by position:
    token     every block steps on the new position.
    MoD       a routed block decides causally (`MixtureOfDepths.decide`); an unrouted token skips the block and
              leaves no entry in its cache (so later tokens attend over routed tokens only), a routed one adds the
              block's update times its gate. This is the model's evaluation mode, token by token.
    CALM      after each exit layer the token leaves once its confidence reaches the threshold; every later block
              then only writes the token's cache entries from its frozen state (`BlockDecoder.extend`), as the
              evaluation's state propagation (`calm.CalmLanguageModel.early_exit_logits`).
    MEGABYTE  at the first byte of a patch the global stack steps once on the previous patch's bytes; each byte
              is one step of the local stack, whose cache restarts at every patch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import numpy as np
import tensorflow as tf

from primer_search.lm.calm import CalmLanguageModel
from primer_search.lm.decoding import BlockDecoder, traced
from primer_search.lm.megabyte import MegabyteModel
from primer_search.lm.mod import MixtureOfDepths
from primer_search.lm.model import LanguageModel, positional_encoding
from primer_search.lm.tokenizer import EOS_ID


@dataclasses.dataclass
class Generation:
    tokens: list[int]             # the prompt, then the generated tokens
    logits: list[np.ndarray]      # [V] per position: the prediction of the token after it
    seconds: float                # wall-clock time of the generated positions (the prompt's excluded)
    generated: int
    blocks_run: int = 0           # block steps (not extends) over the generated positions
    layers_run: list = dataclasses.field(default_factory=list)   # CALM: blocks used per generated token

    @property
    def tokens_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else math.inf


def _traced(fn, width: int):
    """`fn` of one position [1, 1, width] as a `tf.function` traced once."""
    return traced(fn, tf.TensorSpec([1, 1, width], tf.float32))


class _Stack:
    """Decoders of a list of blocks (a MoD wrapper's through its inner block) and their caches."""

    def __init__(self, blocks):
        self.blocks = list(blocks)
        self.decoders = [BlockDecoder(b.block if isinstance(b, MixtureOfDepths) else b) for b in self.blocks]
        self.decide, self.routed_steps = [], []
        for block, decoder in zip(self.blocks, self.decoders):
            routed = isinstance(block, MixtureOfDepths)
            self.decide.append(_traced(functools.partial(_decision, block), decoder.d_model) if routed else None)
            self.routed_steps.append(traced(
                functools.partial(_gated_step, decoder), tf.TensorSpec([1, 1, decoder.d_model], tf.float32),
                tf.TensorSpec([], tf.float32), decoder.cache_spec()) if routed else None)
        self.reset()

    def reset(self) -> None:
        self.caches = [decoder.init_cache(1) for decoder in self.decoders]

    def step(self, i: int, x: tf.Tensor) -> tuple[tf.Tensor, bool]:
        """Block i on one position x [1, 1, d] -> (its output [1, 1, d], whether the block ran)."""
        if self.decide[i] is None:
            y, self.caches[i] = self.decoders[i].traced_step(x, self.caches[i])
            return y, True
        routed, gate = self.decide[i](x)                                 # scalars
        if not bool(routed):                                             # skipped: no cache entry
            return x, False
        y, self.caches[i] = self.routed_steps[i](x, gate, self.caches[i])
        return y, True

    def extend(self, i: int, x: tf.Tensor) -> None:
        """Write position x's cache entries in block i without computing its output (CALM state propagation)."""
        if self.decide[i] is not None and not bool(self.decide[i](x)[0]):
            return                                                     # an unrouted token writes nothing
        self.caches[i] = self.decoders[i].traced_extend(x, self.caches[i])


def _decision(block: MixtureOfDepths, x) -> tuple[tf.Tensor, tf.Tensor]:
    routed, gate = block.decide(x)                                       # [1, 1]
    return routed[0, 0], gate[0, 0]


def _gated_step(decoder: BlockDecoder, x, gate, cache) -> tuple[tf.Tensor, dict]:
    """A routed token: x plus the gate times the block's update [1, 1, d]."""
    y, cache = decoder.step(x, cache)
    return x + gate * (y - x), cache


class _TokenSteps:
    """One position of a token model (Mixture-of-Depths routers included): every block steps on it."""

    def __init__(self, model: LanguageModel, max_length: int):
        self.model = model
        self.stack = _Stack(model.blocks)
        self.stacks = [self.stack]
        self.positions = positional_encoding(max_length, model.d_model)                  # [T, d]
        d = model.d_model
        self._embed = traced(lambda token, t: model.embedding(token) * math.sqrt(d) + tf.gather(self.positions, t),
                             tf.TensorSpec([1, 1], tf.int32), tf.TensorSpec([], tf.int32))
        self._project = _traced(model.project, d)

    def reset(self) -> None:
        for stack in self.stacks:
            stack.reset()

    def position(self, t: int, tokens: list[int]) -> tuple[np.ndarray, int, int | None]:
        """Logits [V] predicting token t + 1, the block steps run, and the blocks used (CALM's; else None)."""
        x = self._embed(tf.constant([[tokens[t]]], tf.int32), tf.constant(t, tf.int32))      # [1, 1, d]
        ran = 0
        for i in range(len(self.model.blocks)):
            x, did = self.stack.step(i, x)
            ran += did
        return self._project(x)[0, 0].numpy(), ran, None


class _CalmSteps(_TokenSteps):
    """One position of a CALM model: the token leaves at the first exit whose confidence reaches the threshold."""

    def __init__(self, model: CalmLanguageModel, max_length: int, threshold: float | None = None):
        super().__init__(model, max_length)
        self.threshold = model.calm.threshold if threshold is None else threshold
        one = tf.TensorSpec([1, 1, model.d_model], tf.float32)
        self._exit = traced(self._exit_confidence, one, one)

    def position(self, t: int, tokens: list[int]) -> tuple[np.ndarray, int, int]:
        x = self._embed(tf.constant([[tokens[t]]], tf.int32), tf.constant(t, tf.int32))      # [1, 1, d]
        return self._calm_position(x)

    def _exit_confidence(self, previous, new) -> tuple[tf.Tensor, tf.Tensor]:
        """An exit's logits [1, 1, V] and the token's confidence [1, 1] there."""
        logits = self.model.project(new)
        return logits, self.model.exit_confidence(logits, previous, new)

    def _calm_position(self, x) -> tuple[np.ndarray, int, int]:
        model = self.model
        exits = model.exits[:-1]
        ran, used, logits = 0, len(model.blocks), None
        for i in range(len(model.blocks)):
            if logits is not None:                                       # exited: propagate the frozen state
                self.stack.extend(i, x)
                continue
            new, did = self.stack.step(i, x)
            ran += did
            if i in exits:
                exit_logits, score = self._exit(x, new)                  # [1, 1, V], [1, 1]
                if float(score[0, 0]) >= self.threshold:
                    logits, used = exit_logits, i + 1
            x = new
        if logits is None:
            logits = self._project(x)
        return logits[0, 0].numpy(), ran, used


class _MegabyteSteps:
    """One byte of a MEGABYTE model: a global step at the first byte of a patch, then one local step."""

    def __init__(self, model: MegabyteModel, max_length: int):
        self.model = model
        self.global_stack, self.local_stack = _Stack(model.global_blocks), _Stack(model.local_blocks)
        self.stacks = [self.global_stack, self.local_stack]
        self.positions = positional_encoding(max_length, model.widths.d_byte)            # [T, D_G]
        self._trace()

    def reset(self) -> None:
        for stack in self.stacks:
            stack.reset()

    def position(self, t: int, tokens: list[int]) -> tuple[np.ndarray, int, None]:
        model, p = self.model, self.model.patch_size
        k, slot = divmod(t, p)
        ran = 0
        if slot == 0:                                                    # a new patch: one global step
            first = k * p - p + 1                                        # its bytes: positions first .. kP
            ids = [tokens[i] if i >= 0 else 0 for i in range(first, k * p + 1)]
            g = self._patch_in(tf.constant(ids, tf.int32), tf.constant(first, tf.int32))    # [1, 1, P*D_G]
            for i in range(len(model.global_blocks)):
                g, _ = self.global_stack.step(i, g)
                ran += 1
            self.condition = self._patch_out(g)                          # [1, P, D_L]
            self.local_stack.reset()
        x = self._local_in(tf.constant([[tokens[t]]], tf.int32), tf.constant(slot, tf.int32), self.condition)
        for i in range(len(model.local_blocks)):
            x, _ = self.local_stack.step(i, x)                           # [1, 1, D_L]
            ran += 1
        return self._local_out(x)[0, 0].numpy(), ran, None

    def _trace(self) -> None:
        """The per-patch and per-byte pieces of MEGABYTE generation as `tf.function`s traced once."""
        model, p, w = self.model, self.model.patch_size, self.model.widths
        pads = (tf.concat([model.global_pad, tf.zeros([1, w.d_byte])], axis=0) if p > 1
                else tf.zeros([1, w.d_byte]))                            # [P, D_G]: slot i < P-1 may be a pad

        def patch_in(ids, first):                                        # ids: [P] bytes of positions first..
            positions = first + tf.range(p)                              # [P]
            embedded = (model.global_embedding(ids) * math.sqrt(w.d_byte)
                        + tf.gather(self.positions, tf.maximum(positions, 0)))          # [P, D_G]
            rows = tf.where((positions < 0)[:, None], pads, embedded)    # learned pads before position 0
            return tf.reshape(rows, [1, 1, p * w.d_byte])                # [1, 1, P*D_G]

        def patch_out(g):                                                # g: [1, 1, P*D_G]
            return model.global_to_local(tf.reshape(model.global_norm(g), [1, p, w.d_byte]))  # [1, P, D_L]

        def local_in(token, slot, condition):                            # token: [1, 1], slot: the byte's index
            embedded = model.local_embedding(token) * math.sqrt(w.d_local)                   # [1, 1, D_L]
            shifted = tf.where(slot > 0, embedded, tf.reshape(model.local_pad, [1, 1, w.d_local]))
            return condition[:, slot][:, None] + shifted                 # [1, 1, D_L]

        def local_out(x):                                                # x: [1, 1, D_L] -> logits [1, 1, V]
            x = model.final_norm(x)
            if model.head is not None:
                return model.head(x)
            return tf.matmul(x, model.local_embedding.embeddings, transpose_b=True)

        scalar = tf.TensorSpec([], tf.int32)
        self._patch_in = traced(patch_in, tf.TensorSpec([p], tf.int32), scalar)
        self._patch_out = _traced(patch_out, p * w.d_byte)
        self._local_in = traced(local_in, tf.TensorSpec([1, 1], tf.int32), scalar,
                                tf.TensorSpec([1, p, w.d_local], tf.float32))
        self._local_out = _traced(local_out, w.d_local)


# The steps of each model kind, the most specific class first (a CalmLanguageModel is a LanguageModel).
_STEPS = ((MegabyteModel, _MegabyteSteps), (CalmLanguageModel, _CalmSteps), (LanguageModel, _TokenSteps))


class Sampler:
    """Generate from a trained model with caches (see the module docstring)."""

    def __init__(self, model, max_length: int = 4096, threshold: float | None = None):
        """`threshold` overrides a CALM model's exit threshold (e.g. to sweep it after training)."""
        steps = next((steps for kind, steps in _STEPS if isinstance(model, kind)), None)
        if steps is None:
            raise TypeError(f"Sampler: expected a LanguageModel, CalmLanguageModel or MegabyteModel, received "
                            f"{type(model).__name__}")
        self.model, self.max_length = model, max_length
        self.steps = steps(model, max_length, threshold) if steps is _CalmSteps else steps(model, max_length)

    def generate(self, prompt, num_tokens: int, rng: np.random.Generator | None = None,
                 temperature: float = 1.0) -> Generation:
        """The prompt (token ids; empty means one end-of-document id) followed by `num_tokens` drawn tokens.
        `rng` draws them (required unless temperature is 0, which picks the most likely token)."""
        tokens = [int(t) for t in prompt] or [EOS_ID]
        if temperature > 0 and rng is None:
            raise ValueError("Sampler.generate: pass a seeded numpy Generator as rng, or temperature=0 (greedy)")
        if len(tokens) + num_tokens > self.max_length:
            raise ValueError(f"Sampler.generate: prompt ({len(tokens)}) + num_tokens ({num_tokens}) exceeds "
                             f"max_length {self.max_length}")
        self.steps.reset()
        out, last_prompt = Generation(tokens, [], 0.0, num_tokens), len(tokens) - 1
        start = time.perf_counter()
        for t in range(last_prompt + num_tokens):
            if t == last_prompt:
                start = time.perf_counter()
            logits, blocks, layers = self.steps.position(t, tokens)
            out.logits.append(logits)
            if t >= last_prompt:                                         # predicts a generated token
                out.blocks_run += blocks
                if layers is not None:
                    out.layers_run.append(layers)
                tokens.append(_draw(logits, rng, temperature))
        out.seconds = time.perf_counter() - start
        return out


def _draw(logits: np.ndarray, rng, temperature: float) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    probs = np.exp(z - z.max())
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def sampling_speed(model, num_tokens: int, seed: int = 0) -> float:
    """Tokens (bytes for MEGABYTE) per second of generating `num_tokens` after an end-of-document id, with a warm
    trace (a first short generation traces the block steps)."""
    sampler = Sampler(model, max_length=num_tokens + 1)
    sampler.generate([EOS_ID], min(num_tokens, 4), np.random.default_rng(seed))
    return sampler.generate([EOS_ID], num_tokens, np.random.default_rng(seed)).tokens_per_second


def load_retrained(path):
    """(model, tokenizer) of a retrained model: a retrain job's directory or its model.keras, with the SentencePiece
    vocabulary saved beside it (`tokenizer.model`; without one the model reads bytes)."""
    import pathlib

    import keras

    from primer_search.lm.tokenizer import ByteTokenizer, SentencePieceTokenizer

    path = pathlib.Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    if not model_path.is_file() or model_path.suffix != ".keras":
        raise ValueError(f"{path}: found no model.keras, expected a retrain job's directory (RETRAIN_DIR/jobs/NAME) "
                         f"or a .keras file")
    vocabulary = model_path.parent / "tokenizer.model"
    tokenizer = SentencePieceTokenizer(vocabulary) if vocabulary.is_file() else ByteTokenizer()
    return keras.models.load_model(model_path), tokenizer


def sample_text(path, prompt: str, num_tokens: int, temperature: float = 1.0, seed: int = 0) -> str:
    """`num_tokens` tokens generated after `prompt` (as a new document) by a retrained model (`load_retrained`);
    the text of the generated tokens."""
    model, tokenizer = load_retrained(path)
    if model.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"{path}: the model predicts {model.vocab_size} ids but its tokenizer has "
                         f"{tokenizer.vocab_size}, expected the tokenizer it was trained with")
    ids = [EOS_ID, *tokenizer.encode([prompt])[0].tolist()] if prompt else [EOS_ID]
    sampler = Sampler(model, max_length=len(ids) + num_tokens)
    generation = sampler.generate(ids, num_tokens, np.random.default_rng(seed), temperature)
    return tokenizer.decode(generation.tokens[len(ids):])
