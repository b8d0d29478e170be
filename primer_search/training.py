"""Fixed-budget training of a language model: the schedule, the budget, checkpoints and the step loop.

The budget is one of
    seconds  wall-clock seconds spent in training steps (the paper's choice: a slower block gets fewer steps)
    steps    training steps
    flops    training FLOPs, counted analytically per step (`primer_search.flops`): deterministic, and like
             `seconds` it gives a cheaper block more steps, but the same count on every machine.
The first step traces and compiles the step function; its time is `compile_seconds` and is not spent from a
seconds budget (the step itself counts). Evaluation time is never spent from the budget. The loop stops after the
step that reaches the budget, so a run slightly overshoots rather than undershoots it.

At each configured checkpoint fraction the trainer evaluates the validation set and asks a callback whether to go
on (the search's hurdles); the final evaluation happens at fraction 1.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from primer_search.config import TrainingConfig
from primer_search.data import LanguageData, ValidationSet
from primer_search.tokenizer import PAD_ID


class Diverged(ArithmeticError):
    def __init__(self, step: int, loss: float, what: str = "training loss"):
        super().__init__(f"{what} became {loss} at step {step}")
        self.step = step


class EvaluationTimeout(TimeoutError):
    pass


@keras.saving.register_keras_serializable(package="primer_search")
class WarmupRsqrt(keras.optimizers.schedules.LearningRateSchedule):
    """peak * min(step / warmup, sqrt(warmup / step)): linear warmup, then reciprocal square-root decay."""

    def __init__(self, peak: float, warmup_steps: int):
        self.peak, self.warmup_steps = peak, warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        warmup = float(max(self.warmup_steps, 1))
        return self.peak * tf.minimum(step / warmup, tf.sqrt(warmup / step))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The state of training when a budget fraction was reached."""

    fraction: float
    step: int
    validation_loss: float
    train_seconds: float


@dataclasses.dataclass
class Progress:
    """Counters of a training run (updated in place; the result copies them)."""

    steps: int = 0
    train_seconds: float = 0.0      # step time, the first (compiling) step excluded
    compile_seconds: float = 0.0    # the first step: trace, compile and run
    eval_seconds: float = 0.0
    last_loss: float = math.nan
    checkpoints: list = dataclasses.field(default_factory=list)
    stopped: bool = False           # a checkpoint callback said stop

    @property
    def mean_step_seconds(self) -> float:
        return self.train_seconds / (self.steps - 1) if self.steps > 1 else self.compile_seconds


def budget_fraction(config: TrainingConfig, progress: Progress, flops_per_step: int) -> float:
    spent = {"seconds": progress.train_seconds, "steps": progress.steps,
             "flops": progress.steps * flops_per_step}[config.budget_kind]
    return spent / config.budget


def cross_entropy(logits, targets):
    """Per-token negative log-likelihood in nats [B, L], zero where the target is padding."""
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))
    return nll * tf.cast(targets != PAD_ID, tf.float32)


class Trainer:
    """Trains one model on one dataset under one budget."""

    def __init__(self, model: keras.Model, data: LanguageData, config: TrainingConfig, flops_per_step: int):
        self.model, self.data, self.config, self.flops_per_step = model, data, config, flops_per_step
        self.optimizer = keras.optimizers.Adafactor(
            learning_rate=WarmupRsqrt(config.peak_learning_rate, config.warmup_steps))
        self.optimizer.build(model.trainable_variables)
        self._train_step = tf.function(self._step, jit_compile=config.jit_compile)
        self._eval_step = tf.function(self._nll_sum, jit_compile=config.jit_compile)
        self.progress = Progress()

    def _step(self, inputs, targets):                            # inputs, targets: [B, L]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(cross_entropy(self.model(inputs, training=True), targets))
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def _nll_sum(self, inputs, targets):
        return tf.reduce_sum(cross_entropy(self.model(inputs, training=False), targets))

    def validation_nll(self, validation: ValidationSet) -> float:
        """Summed NLL (nats) over the validation targets, in batches of the training shape."""
        batch = self.data.config.batch_size
        total = 0.0
        for start in range(0, len(validation.inputs), batch):
            inputs, targets = validation.inputs[start:start + batch], validation.targets[start:start + batch]
            pad = batch - len(inputs)                        # keep one static shape for XLA
            if pad:
                inputs = np.concatenate([inputs, np.full([pad, inputs.shape[1]], PAD_ID, np.int32)])
                targets = np.concatenate([targets, np.full([pad, targets.shape[1]], PAD_ID, np.int32)])
            total += float(self._eval_step(tf.constant(inputs), tf.constant(targets)))
        return total

    def evaluate(self, progress: Progress) -> float:
        """Mean validation NLL per target token; the time goes to `progress.eval_seconds`."""
        start = time.perf_counter()
        loss = self.validation_nll(self.data.validation) / self.data.validation.num_targets
        progress.eval_seconds += time.perf_counter() - start
        return loss

    def train(self, seed: int, on_checkpoint: Callable[[Checkpoint], bool] | None = None,
              on_step: Callable[[Progress, float], None] | None = None,
              deadline: float | None = None) -> Progress:
        """Run the loop until the budget is spent or a checkpoint callback returns False.

        Raises `Diverged` on a non-finite loss and `EvaluationTimeout` past `deadline` (a perf_counter time);
        `self.progress` holds the counters either way."""
        progress = self.progress
        pending = list(self.config.checkpoints)
        with self.data.prefetched_batches(seed) as batches:
            self._loop(progress, batches, pending, on_checkpoint, on_step, deadline)
        return progress

    def _loop(self, progress: Progress, batches, pending: list, on_checkpoint, on_step, deadline) -> None:
        fraction = 0.0
        while fraction < 1.0:
            start = time.perf_counter()
            inputs, targets = next(batches)
            loss = float(self._train_step(inputs, targets))
            elapsed = time.perf_counter() - start
            if progress.steps == 0:
                progress.compile_seconds = elapsed
            else:
                progress.train_seconds += elapsed
            progress.steps += 1
            progress.last_loss = loss
            if not math.isfinite(loss):
                raise Diverged(progress.steps, loss)
            fraction = budget_fraction(self.config, progress, self.flops_per_step)
            if on_step is not None:
                on_step(progress, fraction)
            while pending and fraction >= pending[0]:
                checkpoint = Checkpoint(pending.pop(0), progress.steps, self.evaluate(progress),
                                        progress.train_seconds)
                progress.checkpoints.append(checkpoint)
                if on_checkpoint is not None and not on_checkpoint(checkpoint):
                    progress.stopped = True
                    return
            if deadline is not None and time.perf_counter() > deadline:
                raise EvaluationTimeout(f"evaluation passed its hard limit of training.timeout_seconds after "
                                        f"{progress.steps} steps ({fraction:.0%} of the budget)")
