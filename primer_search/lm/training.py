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

The model supplies its loss and its validation statistics (`training_loss`, `validation_sums`: see
`primer_search.lm.model`), so plain, Mixture-of-Depths, CALM and MEGABYTE models train through the same loop.
`evaluate` turns the sums into per-target means: validation_loss (nats per token), bits_per_byte, and those the
model adds (`STATISTICS`).

Under a `tf.distribute` strategy (`primer_search.retrain.jobs`: several Ray Train workers, or several accelerators)
every replica trains on its slice of the same global batch and the optimizer sums their gradients, so the updates equal
one replica's on the whole batch. A trainer's state (`state_arrays`, `Progress.to_dict`) restores exactly: the
resumed run skips the batches already trained on and meets the same schedule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from primer_search.config import TrainingConfig
from primer_search.lm.data import LanguageData, ValidationSet
from primer_search.lm.tokenizer import PAD_ID


# validation sums a model may report beyond "nll" -> the per-target metric they give
STATISTICS = {"routed": "mod_routed_fraction", "layers": "calm_average_layers", "heads": "calm_exit_heads"}


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
    bits_per_byte: float
    train_seconds: float
    late_validation_loss: float | None = None

    METRICS = ("validation_loss", "bits_per_byte", "late_validation_loss")

    @classmethod
    def of(cls, fraction: float, progress: "Progress", metrics: dict) -> "Checkpoint":
        """The checkpoint of `Trainer.evaluate`'s `metrics`, taken at `fraction` of the budget."""
        return cls(fraction, progress.steps, train_seconds=progress.train_seconds,
                   **{name: metrics[name] for name in cls.METRICS})

    def metrics(self) -> dict:
        """The evaluation metrics it recorded, as `Trainer.evaluate` names them."""
        return {name: getattr(self, name) for name in self.METRICS}


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Progress":
        return cls(**{**data, "checkpoints": [Checkpoint(**c) for c in data["checkpoints"]]})


def budget_fraction(config: TrainingConfig, progress: Progress, flops_per_step: int, more_steps: int = 0) -> float:
    """The fraction of the budget spent (after `more_steps` further steps: a seconds budget cannot tell)."""
    steps = progress.steps + more_steps
    spent = {"seconds": progress.train_seconds, "steps": steps, "flops": steps * flops_per_step}[config.budget_kind]
    return spent / config.budget


def bits_per_byte(loss: float, validation: ValidationSet) -> float:
    """Bits per byte of a mean NLL per target token (nats) over a validation set (see `primer_search.lm.data`)."""
    return loss * validation.num_targets / (math.log(2) * validation.num_bytes)


class Trainer:
    """Trains one model on one dataset under one budget; with `strategy`, on its replicas (the model built in its
    scope)."""

    def __init__(self, model: keras.Model, data: LanguageData, config: TrainingConfig, flops_per_step: int,
                 strategy: tf.distribute.Strategy | None = None):
        self.model, self.data, self.config, self.flops_per_step = model, data, config, flops_per_step
        self.strategy = strategy
        with strategy.scope() if strategy else contextlib.nullcontext():
            self.optimizer = keras.optimizers.Adafactor(
                learning_rate=WarmupRsqrt(config.peak_learning_rate, config.warmup_steps))
            self.optimizer.build(model.trainable_variables)
        several = config.steps_per_call > 1
        if strategy is None:
            self._train_step = tf.function(self._steps if several else self._step, jit_compile=config.jit_compile)
        else:   # collectives stay outside XLA: only the replicas' gradients are compiled
            self._gradients = tf.function(self._loss_and_gradients, jit_compile=config.jit_compile)
            self._train_step = tf.function(self._replicated_steps if several else self._replicated_step)
        self._eval_step = tf.function(model.validation_sums, jit_compile=config.jit_compile)
        self.progress = Progress()

    def _loss_and_gradients(self, inputs, targets, scale=1.0):   # inputs, targets: [B, L]
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.model.training_loss(inputs, targets) * scale
        return loss, tape.gradient(loss, variables)

    def _step(self, inputs, targets):                            # inputs, targets: [B, L]
        loss, gradients = self._loss_and_gradients(inputs, targets)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return loss

    def _replicated_step(self, inputs, targets):                 # per replica: [B / replicas, L]
        def replica_step(inputs, targets):
            # the replicas' mean losses, each over an equal slice, average to the whole batch's mean loss
            loss, gradients = self._gradients(inputs, targets, 1.0 / self.strategy.num_replicas_in_sync)
            self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))   # sums across replicas
            return loss
        losses = self.strategy.run(replica_step, args=(inputs, targets))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def _steps(self, inputs, targets, n):                         # inputs, targets: [K, B, L]; runs the first n
        losses = tf.zeros([inputs.shape[0]])                     # [K]: the steps' losses, 0 after the n-th
        for i in tf.range(n):
            losses = tf.tensor_scatter_nd_update(losses, [[i]], [self._step(inputs[i], targets[i])])
        return losses

    def _replicated_steps(self, inputs, targets, n):              # per replica: [K, B / replicas, L]
        losses = tf.zeros([self.config.steps_per_call])
        for i in tf.range(n):
            step = self._replicated_step(*self.strategy.run(lambda x, y: (x[i], y[i]), args=(inputs, targets)))
            losses = tf.tensor_scatter_nd_update(losses, [[i]], [step])
        return losses

    def _distribute(self, batch: np.ndarray):
        """A global batch [(K,) B, L] as the replicas' slices (replica r of R takes rows r B/R ... (r+1) B/R - 1)."""
        replicas, total = self.strategy.num_replicas_in_sync, batch.shape[-2]
        if total % replicas:
            raise ValueError(f"batch of {total} rows does not split evenly over {replicas} replicas: make "
                             f"data.batch_tokens / data.sequence_length a multiple of the replica count")
        rows = total // replicas

        def rows_of(context):
            start = context.replica_id_in_sync_group * rows
            return tf.constant(batch[..., start:start + rows, :])
        return self.strategy.experimental_distribute_values_from_function(rows_of)

    def _run_steps(self, batches, n: int) -> list[float]:
        """Train on the next n batches in one host call (`steps_per_call` > 1) or one; their losses."""
        if self.config.steps_per_call == 1:
            inputs, targets = next(batches)
        else:   # K batches stacked, the last repeated after the n-th (not trained on): one shape, one trace
            pairs = [next(batches) for _ in range(n)]
            pairs += pairs[-1:] * (self.config.steps_per_call - n)
            inputs, targets = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        if self.strategy is not None:
            inputs, targets = self._distribute(inputs), self._distribute(targets)
        if self.config.steps_per_call == 1:
            return [float(self._train_step(inputs, targets))]
        return self._train_step(inputs, targets, tf.constant(n)).numpy()[:n].tolist()

    def _steps_to_next(self, progress: Progress, target: float) -> int:
        """How many steps one call runs: up to `steps_per_call`, never past the next checkpoint or the budget."""
        n = 1
        while (n < self.config.steps_per_call
               and budget_fraction(self.config, progress, self.flops_per_step, n) < target):
            n += 1
        return n

    def state_arrays(self) -> list[np.ndarray]:
        """The model's weights, then the optimizer's variables (its step count included)."""
        return [*self.model.get_weights(), *(np.asarray(v.numpy()) for v in self.optimizer.variables)]

    def load_state(self, arrays: list[np.ndarray], progress: Progress) -> None:
        """Resume from `state_arrays()` and the progress saved with them."""
        weights = len(self.model.get_weights())
        self.model.set_weights(arrays[:weights])
        for variable, value in zip(self.optimizer.variables, arrays[weights:], strict=True):
            variable.assign(value)
        self.progress = progress

    def validation_sums(self, validation: ValidationSet) -> dict[str, float]:
        """The model's validation sums ("nll" in nats, ...) over the validation targets, in batches of the training
        shape."""
        batch = self.data.config.batch_size
        totals: dict[str, float] = {}
        for start in range(0, len(validation.inputs), batch):
            inputs, targets = validation.inputs[start:start + batch], validation.targets[start:start + batch]
            pad = batch - len(inputs)                        # keep one static shape for XLA
            if pad:
                inputs = np.concatenate([inputs, np.full([pad, inputs.shape[1]], PAD_ID, np.int32)])
                targets = np.concatenate([targets, np.full([pad, targets.shape[1]], PAD_ID, np.int32)])
            for key, value in self._eval_step(tf.constant(inputs), tf.constant(targets)).items():
                totals[key] = totals.get(key, 0.0) + float(value)
        return totals

    def evaluate(self, progress: Progress) -> dict[str, float]:
        """Validation metrics: validation_loss (mean NLL per target token), bits_per_byte, late_validation_loss (over
        the second half of each window's positions) and the model's further statistics per target (`STATISTICS`);
        the time goes to `progress.eval_seconds`."""
        start = time.perf_counter()
        validation = self.data.validation
        sums = self.validation_sums(validation)
        metrics = {"validation_loss": sums.pop("nll") / validation.num_targets}
        metrics["bits_per_byte"] = bits_per_byte(metrics["validation_loss"], validation)
        metrics["late_validation_loss"] = sums.pop("nll_late") / validation.num_late_targets
        metrics.update({STATISTICS[key]: value / validation.num_targets for key, value in sums.items()})
        progress.eval_seconds += time.perf_counter() - start
        return metrics

    def train(self, seed: int, on_checkpoint: Callable[[Checkpoint], bool] | None = None,
              on_step: Callable[[Progress, float], None] | None = None,
              deadline: float | None = None) -> Progress:
        """Run the loop until the budget is spent or a checkpoint callback returns False.

        Raises `Diverged` on a non-finite loss and `EvaluationTimeout` past `deadline` (a perf_counter time);
        `self.progress` holds the counters either way."""
        progress = self.progress
        fraction = budget_fraction(self.config, progress, self.flops_per_step)
        pending = [f for f in self.config.checkpoints if f > fraction]
        with self.data.prefetched_batches(seed, skip=progress.steps) as batches:
            self._loop(progress, batches, pending, fraction, on_checkpoint, on_step, deadline)
        return progress

    def _loop(self, progress: Progress, batches, pending: list, fraction: float, on_checkpoint, on_step,
              deadline) -> None:
        first = True          # this run's first step traces and compiles (again, when resumed)
        while fraction < 1.0:
            start = time.perf_counter()
            losses = self._run_steps(batches, self._steps_to_next(progress, pending[0] if pending else 1.0))
            elapsed = time.perf_counter() - start
            if first:
                progress.compile_seconds += elapsed
                first = False
            else:
                progress.train_seconds += elapsed
            for loss in losses:
                progress.steps += 1
                progress.last_loss = loss
                if not math.isfinite(loss):
                    raise Diverged(progress.steps, loss)
            fraction = budget_fraction(self.config, progress, self.flops_per_step)
            if on_step is not None:
                on_step(progress, fraction)
            while pending and fraction >= pending[0]:
                metrics = self.evaluate(progress)
                checkpoint = Checkpoint.of(pending.pop(0), progress, metrics)
                progress.checkpoints.append(checkpoint)
                if on_checkpoint is not None and not on_checkpoint(checkpoint):
                    progress.stopped = True
                    return
            if deadline is not None and time.perf_counter() > deadline:
                raise EvaluationTimeout(f"evaluation passed its hard limit of training.timeout_seconds after "
                                        f"{progress.steps} steps ({fraction:.0%} of the budget)")
