"""CALM early exit (Schuster et al. 2022, arXiv 2207.07061) around a stack of compiled blocks.

How it works: `CalmLanguageModel`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from primer_search.config import ModelConfig
from primer_search.lm.mod import MixtureOfDepths
from primer_search.lm.model import LanguageModel, cross_entropy, nll_sums
from primer_search.lm.model_cost import choose_unit, exit_layers
from primer_search.lm.tokenizer import PAD_ID
from primer_search.program.dna import DNA
from primer_search.program.macro_options import Calm
from primer_search.program.schema import from_mapping

LOSS_WEIGHTS = ("linear", "uniform", "geometric", "last_only")
CONFIDENCES = ("softmax_diff", "softmax_max", "state_cos", "classifier")


def exit_loss_weights(exits: Sequence[int], loss_weights: str) -> np.ndarray:
    """Normalized weights [E] of the per-exit losses (see the module docstring)."""
    depth = np.asarray(exits, np.float64) + 1.0                                 # blocks run at each exit
    raw = {"linear": lambda: depth,
           "uniform": lambda: np.ones_like(depth),
           "geometric": lambda: 2.0 ** np.arange(len(depth)),
           "last_only": lambda: np.eye(len(depth))[-1]}
    if loss_weights not in raw:
        raise ValueError(f"loss_weights: found {loss_weights!r}, expected one of {list(LOSS_WEIGHTS)}")
    weights = raw[loss_weights]()
    return (weights / weights.sum()).astype(np.float32)


def calm_loss(exit_logits, targets, weights) -> tf.Tensor:
    """Weighted average of the per-exit training losses: exit_logits [E, B, S, V] (or E tensors [B, S, V]),
    targets [B, S] (PAD_ID positions count zero), weights [E] summing to 1. Returns a scalar."""
    if isinstance(exit_logits, tf.Tensor):
        exit_logits = tf.unstack(exit_logits)
    losses = tf.stack([tf.reduce_mean(cross_entropy(logits, targets)) for logits in exit_logits])  # [E]
    return tf.reduce_sum(tf.constant(weights, tf.float32) * losses)


def confidence(method: str, logits, previous, current) -> tf.Tensor:
    """Exit confidence [B, S] from an exit's logits [B, S, V] and the hidden states [B, S, d] entering (previous)
    and leaving (current) the block just run (the measures without weights; "classifier" is the model's:
    `CalmLanguageModel.exit_confidence`)."""
    if method in ("softmax_diff", "softmax_max"):
        probs = tf.nn.softmax(tf.cast(logits, tf.float32))                      # [B, S, V]
        if method == "softmax_max":
            return tf.reduce_max(probs, axis=-1)
        top = tf.math.top_k(probs, k=2).values                                  # [B, S, 2]
        return top[..., 0] - top[..., 1]
    if method == "state_cos":
        a, b = tf.cast(previous, tf.float32), tf.cast(current, tf.float32)
        dot = tf.reduce_sum(a * b, axis=-1)                                     # [B, S]
        return dot / tf.maximum(tf.norm(a, axis=-1) * tf.norm(b, axis=-1), 1e-12)
    raise ValueError(f"confidence: found {method!r}, expected one of {list(CONFIDENCES[:-1])}")


def average_layers(exit_layer, mask=None) -> tf.Tensor:
    """Mean number of blocks used per token: mean of exit_layer + 1 over positions where mask [B, S] is true."""
    used = tf.cast(exit_layer, tf.float32) + 1.0                                # [B, S]
    if mask is None:
        return tf.reduce_mean(used)
    mask = tf.cast(mask, tf.float32)
    return tf.reduce_sum(used * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def _as_calm(calm) -> Calm:
    if calm is None or isinstance(calm, Calm):
        return calm
    return from_mapping(Calm, calm, "calm")


@keras.saving.register_keras_serializable(package="primer_search")
class CalmLanguageModel(LanguageModel):
    """A LanguageModel with CALM exits. `call` is the plain model (all blocks); `exit_logits` and `training_loss`
    train every exit; `early_exit_logits` evaluates with early exit. The knobs come from `calm` (a `Calm`, or its
    dict) or, when it is None, from the DNA's macro-options; variables are exactly those of LanguageModel.

    Shape glossary: B batch, S sequence, d model width, V vocabulary, L number of blocks, E number of exits.
    Layers are counted from 0: "layer l" is the output of block l, so a token that exits at layer l used l + 1 blocks.

    Exits sit after blocks first_exit, first_exit + exit_interval, ... and always after the last block (L - 1); a
    first_exit beyond the stack leaves only the last exit. Every exit reads the shared output projection (final layer
    norm + tied embedding, or the untied head), so CALM adds no parameters but the classifier's (d + 1, see below).

    Training: loss = sum_i w_i * CE_i over exits, CE_i the trainer's per-token cross-entropy (PAD targets count zero,
    averaged over all B*S positions, like `Trainer._step`), with weights normalized to sum to 1:
        linear     w_i proportional to the exit's depth l_i + 1 (the paper's w_i = i / sum_j j when every layer exits)
        uniform    w_i = 1 / E
        geometric  w_i proportional to 2**i, i the exit's index (each exit weighs twice the previous one, as t5x)
        last_only  the last exit only (the standard loss)

    Evaluation and sampling: a token exits at the first exit layer whose confidence reaches the threshold
    (`conf >= threshold`, as t5x; +inf never exits, -inf always exits at the first exit); tokens that reach the last
    layer use it. Confidence of token t at exit layer l:
        softmax_diff  top-1 minus top-2 probability of the exit's softmax (the paper's "softmax response")
        softmax_max   top-1 probability (the official code's default)
        state_cos     cos(h_t^{l-1}, h_t^l) of consecutive layers' hidden states (the paper's "hidden-state saturation";
                      h^{-1} is the embedded input; t5x instead compares consecutive exits and gives the first 0)
        classifier    sigmoid(w . h_t^l + b), the paper's "early-exit classifier": one linear classifier shared by the
                      exits, trained beside the model on the stop-gradient hidden states with binary cross-entropy
                      against the oracle label "this exit's top-1 token equals the last layer's" (the paper's
                      consistency target), so its loss reaches the classifier only
    State propagation: once token t has exited at layer e, its hidden state at every later layer is its layer-e state,
    so each later block computes that token's keys and values from the copied state with its own weights (never a copy
    of keys/values). `early_exit_logits` simulates this for a whole sequence in one causal pass: every block still runs
    on every position (no compute is saved), but exited positions keep their frozen state, so the logits and the exit
    layers equal token-by-token decoding with a KV cache, and each decision depends only on positions <= t.
    """

    def __init__(self, dna, unit: int, vocab_size: int, num_layers: int, width_units: int = 8,
                 tie_embeddings: bool = True, seed: int = 0, calm=None, **kwargs):
        super().__init__(dna, unit=unit, vocab_size=vocab_size, num_layers=num_layers, width_units=width_units,
                         tie_embeddings=tie_embeddings, seed=seed, **kwargs)
        self.calm = _as_calm(calm) or self.dna.macro_options.calm
        self.exits = exit_layers(num_layers, self.calm.first_exit, self.calm.exit_interval)
        self.exit_weights = exit_loss_weights(self.exits, self.calm.loss_weights)
        if self.calm.confidence not in CONFIDENCES:
            raise ValueError(f"calm.confidence: found {self.calm.confidence!r}, "
                             f"expected one of {list(CONFIDENCES)}")
        self.exit_classifier = None
        if self.calm.confidence == "classifier":
            self.exit_classifier = keras.layers.Dense(
                1, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 7), name="exit_classifier")
            self.exit_classifier.build((None, None, self.d_model))

    def exit_confidence(self, logits, previous, current) -> tf.Tensor:
        """The confidence [B, S] of the tokens at an exit (see `confidence`; "classifier" uses this model's)."""
        if self.exit_classifier is None:
            return confidence(self.calm.confidence, logits, previous, current)
        return tf.sigmoid(tf.squeeze(self.exit_classifier(tf.stop_gradient(current)), -1))       # [B, S]

    def exit_logits(self, tokens, training=None) -> list[tf.Tensor]:
        """Logits [B, S, V] at every exit (in `self.exits` order) of one full forward pass."""
        return [logits for _, logits in self._exit_states(tokens, training)]

    def _exit_states(self, tokens, training=None) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """(hidden state [B, S, d], logits [B, S, V]) at every exit of one full forward pass."""
        h, out = self.embed(tokens), []
        for layer, block in enumerate(self.blocks):
            h = block(h, training=training)                                # [B, S, d]
            if layer in self.exits:
                out.append((h, self.project(h)))
        return out

    def training_loss(self, tokens, targets) -> tf.Tensor:
        """The CALM training loss (scalar) of one batch: tokens, targets [B, S]; plus the early-exit classifier's
        loss and any MoD auxiliary loss."""
        states = self._exit_states(tokens, training=True)
        loss = calm_loss([logits for _, logits in states], targets, self.exit_weights)
        if self.exit_classifier is not None:
            loss += self._classifier_loss(states)
        return loss + tf.add_n(self.losses) if self.losses else loss

    def _classifier_loss(self, states) -> tf.Tensor:
        """Binary cross-entropy of the classifier at the early exits against "top-1 equals the last exit's"."""
        final = tf.argmax(states[-1][1], axis=-1)                          # [B, S]
        losses = []
        for h, logits in states[:-1]:
            label = tf.cast(tf.equal(tf.argmax(logits, axis=-1), final), tf.float32)       # [B, S]
            score = tf.squeeze(self.exit_classifier(tf.stop_gradient(h)), -1)               # [B, S]
            losses.append(tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=label, logits=score)))
        return tf.add_n(losses) / len(losses) if losses else tf.constant(0.0)

    def validation_sums(self, tokens, targets) -> dict[str, tf.Tensor]:
        """Sums over the non-PAD targets of a batch under early exit: "nll" and "nll_late" (`nll_sums`), "layers"
        (blocks used) and "heads" (exit projections computed, the final one included). With Mixture-of-Depths,
        "routed" counts the tokens a routed block passes through while they are active, averaged over the routed
        blocks."""
        sums = self._early_exit_sums(tokens, targets)
        del sums["count"]
        return sums

    def early_exit_logits(self, tokens, threshold=None) -> tuple[tf.Tensor, tf.Tensor]:
        """Logits [B, S, V] under early exit and the exit layer [B, S] int32 of every token (see the module
        docstring). `threshold` (a float or scalar tensor) defaults to the knob; a tensor avoids retracing."""
        logits, exit_layer, _ = self._early_exit(tokens, threshold)
        return logits, exit_layer

    def _early_exit(self, tokens, threshold=None) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        """`early_exit_logits` and, per routed block, its routing mask [B, S] over the tokens still active."""
        threshold = tf.cast(self.calm.threshold if threshold is None else threshold, tf.float32)
        h = self.embed(tokens)                                             # [B, S, d]
        shape = tf.shape(tokens)
        active = tf.ones(shape, tf.bool)                                   # [B, S] not exited yet
        exit_layer = tf.fill(shape, len(self.blocks) - 1)                  # [B, S]
        logits, routed = None, []
        for layer, block in enumerate(self.blocks):
            if isinstance(block, MixtureOfDepths):
                out, routed_mask = block.evaluate(h)
                routed.append(routed_mask & active)
            else:
                out = block(h)
            new = tf.where(active[..., None], out, h)                      # exited tokens keep their state
            if layer in self.exits[:-1]:
                exit_logits = self.project(new)                            # [B, S, V]
                leave = active & (self.exit_confidence(exit_logits, h, new) >= threshold)
                logits = exit_logits if logits is None else tf.where(leave[..., None], exit_logits, logits)
                exit_layer = tf.where(leave, layer, exit_layer)
                active = active & ~leave
            h = new
        final = self.project(h)
        logits = final if logits is None else tf.where(active[..., None], final, logits)
        return logits, exit_layer, routed

    def early_exit_sums(self, tokens, targets, threshold=None) -> tuple[tf.Tensor, ...]:
        """(summed NLL, summed blocks used, summed exit projections computed, number of targets) over the non-PAD
        targets of a batch under early exit."""
        sums = self._early_exit_sums(tokens, targets, threshold)
        return sums["nll"], sums["layers"], sums["heads"], sums["count"]

    def _early_exit_sums(self, tokens, targets, threshold=None) -> dict[str, tf.Tensor]:
        logits, exit_layer, routed = self._early_exit(tokens, threshold)
        mask = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)          # [B, S]
        heads_at = np.searchsorted(self.exits, np.arange(len(self.blocks)), side="right")  # [L] exits up to l
        sums = {**nll_sums(cross_entropy(logits, targets)),
                "layers": tf.reduce_sum((tf.cast(exit_layer, tf.float32) + 1.0) * mask),
                "heads": tf.reduce_sum(tf.gather(tf.constant(heads_at, tf.float32), exit_layer) * mask),
                "count": tf.reduce_sum(mask)}
        if routed:
            sums["routed"] = tf.add_n([tf.reduce_sum(tf.cast(r, tf.float32) * mask) for r in routed]) / len(routed)
        return sums

    def get_config(self):
        config = super().get_config()
        config.update(calm=dataclasses.asdict(self.calm))
        return config


def build_calm_model(dna: DNA, config: ModelConfig, seed: int = 0, unit: int | None = None,
                     calm: Calm | None = None) -> CalmLanguageModel:
    """A built CalmLanguageModel sized like `primer_search.lm.model.build_model` (an early-exit classifier's d + 1
    parameters are left out of this sizing; `primer_search.lm.architecture` counts them)."""
    unit = choose_unit(dna, config) if unit is None else unit
    model = CalmLanguageModel(dna, unit=unit, vocab_size=config.vocab_size, num_layers=config.num_layers,
                              width_units=config.width_units, tie_embeddings=config.tie_embeddings, seed=seed,
                              calm=calm)
    model(tf.zeros([1, 1], tf.int32))
    return model
