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
Fitness is the validation loss (mean NLL per token in nats, lower is better); bits per byte compare runs that
tokenize differently.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import keras
import tensorflow as tf

from primer_search import cost
from primer_search.config import Config
from primer_search.data import load_data
from primer_search.dna import DNA
from primer_search.graph import lower
from primer_search.model import build_model, choose_unit, parameter_count
from primer_search.training import Checkpoint, Diverged, EvaluationTimeout, Progress, Trainer, budget_fraction


@dataclasses.dataclass
class FitnessResult:
    status: str
    fitness: float | None = None              # = validation_loss when measured
    validation_loss: float | None = None      # nats per token
    perplexity: float | None = None           # per token
    bits_per_byte: float | None = None
    steps: int = 0
    tokens_seen: int = 0
    mean_step_seconds: float | None = None
    train_seconds: float = 0.0
    compile_seconds: float = 0.0
    eval_seconds: float = 0.0
    total_seconds: float = 0.0
    parameter_count: int | None = None
    unit: int | None = None
    flops_per_token: int | None = None        # training FLOPs (3 x forward)
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


def _measure(loss: float, data) -> dict:
    """Loss-derived metrics of a validation loss (nats per target token)."""
    validation = data.validation
    bits = loss * validation.num_targets / (math.log(2) * validation.num_bytes)
    return {"fitness": loss, "validation_loss": loss, "perplexity": math.exp(min(loss, 700.0)),
            "bits_per_byte": bits}


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
    data = load_data(config.data, config.model.vocab_size)    # config and data errors raise: not the program's
    model_config = dataclasses.replace(config.model, vocab_size=data.vocab_size)
    length, batch_tokens = config.data.sequence_length, config.data.batch_tokens
    deadline = start + training.timeout_seconds if training.timeout_seconds else None
    fields: dict = {}
    progress = Progress()
    try:
        graph = lower(dna, model_config.width_units)
        fields["canonical_hash"] = graph.canonical_hash()
        unit = fields["unit"] = choose_unit(dna, model_config)
        params = fields["parameter_count"] = parameter_count(graph, model_config, unit)
        per_token = cost.training_flops_per_token(graph, unit, length, model_config.num_layers, data.vocab_size)
        fields["flops_per_token"] = per_token
        if training.memory_limit_gb is not None:
            need = cost.training_memory_bytes(graph, unit, length, model_config.num_layers, data.vocab_size,
                                              params, batch_tokens)
            if need > training.memory_limit_gb * 2 ** 30:
                raise MemoryError(f"estimated {need / 2 ** 30:.1f} GiB to train, above training.memory_limit_gb "
                                  f"= {training.memory_limit_gb}")
        keras.utils.set_random_seed(training.seed)
        model = build_model(dna, model_config, seed=training.seed, unit=unit)
        trainer = Trainer(model, data, training, per_token * batch_tokens)
    except (MemoryError, tf.errors.ResourceExhaustedError) as err:
        fields.update(_failure("oom", err))
    except Exception as err:  # noqa: BLE001 -- any failure to build is the program's: record it
        fields.update(_failure("invalid", err))
    else:
        try:
            progress = trainer.progress
            trainer.train(training.seed, on_checkpoint, on_step, deadline)
            loss = progress.checkpoints[-1].validation_loss if progress.stopped else trainer.evaluate(progress)
            if not math.isfinite(loss):            # finite training losses, yet the last update broke the model
                raise Diverged(progress.steps, loss, "validation loss")
            fields.update(status="stopped" if progress.stopped else "ok", **_measure(loss, data))
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
