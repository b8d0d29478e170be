"""Fitness of a program: build the language model from a DNA, train it for the fixed budget, measure it.

`evaluate(dna, config)` is a plain function (no Ray), so tests, notebooks, the CLI and search workers call the
same thing. It returns a `FitnessResult` in every case; a program that fails is a result with a status:
    ok        trained for the whole budget
    stopped   a checkpoint callback (a search hurdle) stopped it; the metrics are those of that checkpoint
    invalid   the program cannot be built, sized or traced (the message says why)
    diverged  the training loss became NaN or infinite (`failed_step` says when)
    oom       out of memory, or estimated above `training.memory_limit_gb` before building
    timeout   past `training.timeout_seconds` of wall-clock time for the whole evaluation
    error     anything else a program triggered (the message holds the exception)
Problems with the config or the data (a missing dataset, a bad path) are not a program's fault: they raise.

The DNA's macro-options decide the model, its data and its cost (`primer_search.lm.architecture`). Quality is the
validation loss (mean NLL per token in nats) or bits per byte, which compares models that tokenize differently
(MEGABYTE reads bytes): `search.metric` says which. Fitness (lower is better) is that quality, or with
`search.objective: inference` the quality plus `search.inference_weight` x log2(sampling FLOPs per token / 1e6):
each doubling of the cost of generating a token costs that much quality. A CALM model is measured as it samples,
exiting early at its threshold (`calm_average_layers` blocks per token); a MoD model routes causally, as it
samples (`mod_routed_fraction` of the tokens per routed block). With `training.sampling_tokens` the trained model
also generates that many tokens with a cache (`primer_search.lm.sampling`) and reports its tokens per second (not
when a hurdle stopped it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import keras
import tensorflow as tf

from primer_search.config import Config, SearchConfig
from primer_search.lm.architecture import Architecture
from primer_search.lm.training import Checkpoint, Diverged, EvaluationTimeout, Progress, Trainer, budget_fraction
from primer_search.program.dna import DNA


@dataclasses.dataclass
class FitnessResult:
    status: str
    fitness: float | None = None              # lower is better: the quality metric, or with the inference cost
    validation_loss: float | None = None      # nats per token
    perplexity: float | None = None           # per token
    bits_per_byte: float | None = None
    late_validation_loss: float | None = None  # nats per token over the second half of each window's positions
    steps: int = 0
    tokens_seen: int = 0
    mean_step_seconds: float | None = None
    train_seconds: float = 0.0
    compile_seconds: float = 0.0
    eval_seconds: float = 0.0
    total_seconds: float = 0.0
    parameter_count: int | None = None
    unit: int | None = None
    architecture: str | None = None           # token, calm or megabyte (`model_cost.COSTS`)
    flops_per_token: int | None = None        # training FLOPs (3 x forward) per target (a byte for MEGABYTE)
    sampling_flops_per_token: int | None = None   # forward FLOPs of one generated token, with a cache
    sampling_tokens_per_second: float | None = None   # measured when training.sampling_tokens > 0
    mod_routed_fraction: float | None = None  # tokens a routed block passes through, per routed block
    calm_average_layers: float | None = None  # blocks run per token under early exit
    calm_exit_heads: float | None = None      # exit projections computed per token
    budget_fraction: float = 0.0              # fraction of the budget spent
    checkpoints: list = dataclasses.field(default_factory=list)   # [{fraction, step, validation_loss, ...}]
    failed_step: int | None = None
    error: str | None = None
    canonical_hash: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FitnessResult":
        return cls(**data)


INFERENCE_REFERENCE_FLOPS = 1e6


def score(metrics: dict, search: SearchConfig) -> float:
    """The fitness of measured metrics under the search's metric and objective (see the module docstring)."""
    quality = metrics[search.metric]
    if search.objective == "quality":
        return quality
    return quality + search.inference_weight * math.log2(metrics["sampling_flops_per_token"] /
                                                         INFERENCE_REFERENCE_FLOPS)


def _failure(status: str, err: BaseException) -> dict:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return {"status": status, "error": f"{type(err).__name__}: {message}"[:2000]}


def evaluate(dna: DNA, config: Config,
             on_checkpoint: Callable[[Checkpoint], bool] | None = None,
             on_step: Callable[[Progress, float], None] | None = None) -> FitnessResult:
    """Train a model built from `dna` under `config`'s budget and measure it (see the module docstring).

    `on_checkpoint(checkpoint) -> bool` is called at each `training.checkpoints` fraction; returning False stops
    the run with status `stopped`. `on_step(progress, budget_fraction)` is called after every step (progress
    displays)."""
    start = time.perf_counter()
    training = config.training
    arch, data = Architecture.resolve(dna, config)            # config and data errors raise: not the program's
    batch_tokens = data.config.batch_tokens
    deadline = start + training.timeout_seconds if training.timeout_seconds else None
    fields: dict = {"architecture": arch.kind}
    progress = Progress()
    try:
        fields["canonical_hash"] = arch.graph.canonical_hash()
        unit = fields["unit"] = arch.choose_unit()
        fields["parameter_count"] = arch.parameter_count(unit)
        per_token = fields["flops_per_token"] = arch.training_flops_per_token(unit)
        if training.memory_limit_gb is not None:
            need = arch.training_memory_bytes(unit, batch_tokens)
            if need > training.memory_limit_gb * 2 ** 30:
                raise MemoryError(f"estimated {need / 2 ** 30:.1f} GiB to train, above training.memory_limit_gb "
                                  f"= {training.memory_limit_gb}")
        keras.utils.set_random_seed(training.seed)
        model = arch.build(unit, seed=training.seed)
        trainer = Trainer(model, data, training, per_token * batch_tokens)
    except (MemoryError, tf.errors.ResourceExhaustedError) as err:
        fields.update(_failure("oom", err))
    except Exception as err:  # noqa: BLE001 -- any failure to build is the program's: record it
        fields.update(_failure("invalid", err))
    else:
        try:
            progress = trainer.progress
            trainer.train(training.seed, on_checkpoint, on_step, deadline)
            if progress.stopped:
                metrics = progress.checkpoints[-1].metrics()
            else:
                metrics = trainer.evaluate(progress)
            loss = metrics["validation_loss"]
            if not math.isfinite(loss):            # finite training losses, yet the last update broke the model
                raise Diverged(progress.steps, loss, "validation loss")
            metrics["perplexity"] = math.exp(min(loss, 700.0))
            metrics["sampling_flops_per_token"] = arch.sampling_flops_per_token(unit, metrics)
            if training.sampling_tokens and not progress.stopped:
                from primer_search.lm.sampling import sampling_speed     # the decoders: only when asked
                metrics["sampling_tokens_per_second"] = sampling_speed(model, training.sampling_tokens,
                                                                       training.seed)
            fields.update(status="stopped" if progress.stopped else "ok", **metrics,
                          fitness=score(metrics, config.search))
        except Diverged as err:
            fields.update(_failure("diverged", err), failed_step=err.step)
        except EvaluationTimeout as err:
            fields.update(_failure("timeout", err))
        except (tf.errors.ResourceExhaustedError, MemoryError) as err:
            fields.update(_failure("oom", err))
        except Exception as err:  # noqa: BLE001
            status = "invalid" if progress.steps == 0 else "error"   # failing to trace is failing to build
            fields.update(_failure(status, err))
        fields["budget_fraction"] = budget_fraction(training, progress, fields["flops_per_token"] * batch_tokens)
    return FitnessResult(
        steps=progress.steps, tokens_seen=progress.steps * batch_tokens,
        mean_step_seconds=progress.mean_step_seconds if progress.steps else None,
        train_seconds=progress.train_seconds, compile_seconds=progress.compile_seconds,
        eval_seconds=progress.eval_seconds, total_seconds=time.perf_counter() - start,
        checkpoints=[dataclasses.asdict(c) for c in progress.checkpoints], **fields)
