import json
import math
import types

import pytest
import tensorflow as tf

from primer_search.lm import fitness
from primer_search.lm.fitness import FitnessResult, evaluate
from primer_search.lm.training import bits_per_byte
from primer_search.program.graph import canonical_hash
from primer_search.program.seeds import load_seed
from test_training import exploding_dna


def test_seeded_evaluation_is_reproducible_and_complete(fast_config):
    dna = load_seed("primer_ez")
    first, second = evaluate(dna, fast_config), evaluate(dna, fast_config)
    assert first.status == "ok" and first.error is None
    assert first.validation_loss == second.validation_loss and first.steps == second.steps == 4
    assert first.fitness == first.validation_loss and first.perplexity == pytest.approx(math.exp(first.fitness))
    # byte-level: one target per byte, so bits per byte is the loss in bits
    assert first.bits_per_byte == pytest.approx(first.validation_loss / math.log(2))
    assert first.tokens_seen == 4 * 128 and first.budget_fraction == 1.0
    assert 20_000 <= first.parameter_count <= 60_000 and first.flops_per_token > 6 * first.parameter_count / 2
    assert first.canonical_hash == canonical_hash(dna)
    assert first.total_seconds >= first.train_seconds + first.compile_seconds + first.eval_seconds
    assert evaluate(dna, fast_config.replace(training={"seed": 1})).validation_loss != first.validation_loss


def test_bits_per_byte_by_hand():
    # 3 targets ("hello", "world", end of document) over "hello world" + 1 byte for the end: 12 bytes
    data = types.SimpleNamespace(validation=types.SimpleNamespace(num_targets=3, num_bytes=12))
    expected = 3 * 1.5 / (math.log(2) * 12)
    assert bits_per_byte(1.5, data.validation) == pytest.approx(expected) == pytest.approx(0.541011, 1e-5)


def test_a_program_that_cannot_be_sized_is_invalid(fast_config):
    result = evaluate(load_seed("transformer"), fast_config.replace(model={"param_band": [10, 20]}))
    assert result.status == "invalid" and "SizingError" in result.error and "band's upper end" in result.error
    assert result.steps == 0 and result.fitness is None


def test_nan_loss_is_diverged_at_its_step(fast_config):
    result = evaluate(exploding_dna(), fast_config)
    assert result.status == "diverged" and result.failed_step == 1 and "loss became nan" in result.error
    assert result.fitness is None


def test_memory_limit_refuses_before_building(fast_config):
    result = evaluate(load_seed("transformer"), fast_config.replace(training={"memory_limit_gb": 1e-4}))
    assert result.status == "oom" and "above training.memory_limit_gb" in result.error and result.steps == 0


def test_allocation_failure_is_oom(fast_config, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[1048576,524288]")
    monkeypatch.setattr(fitness.Architecture, "build", out_of_memory)
    result = evaluate(load_seed("transformer"), fast_config)
    assert result.status == "oom" and "OOM when allocating" in result.error


def test_hard_time_limit_is_timeout(fast_config):
    result = evaluate(load_seed("transformer"), fast_config.replace(training={"timeout_seconds": 1e-3}))
    assert result.status == "timeout" and result.steps == 1 and "timeout_seconds" in result.error


def test_checkpoint_callback_can_stop_with_the_fitness_reached(fast_config):
    config = fast_config.replace(training={"checkpoints": [0.5], "sampling_tokens": 8})
    result = evaluate(load_seed("transformer"), config, on_checkpoint=lambda checkpoint: False)
    assert result.status == "stopped" and result.steps == 2 and result.budget_fraction == 0.5
    assert result.fitness == result.checkpoints[0]["validation_loss"]
    assert result.bits_per_byte == result.checkpoints[0]["bits_per_byte"]
    assert result.sampling_tokens_per_second is None and result.sampling_flops_per_token > 0


def test_data_problems_raise_instead_of_blaming_the_program(fast_config):
    config = fast_config.replace(data={"source": "text_files", "train_files": ["no/such/*.txt"]})
    with pytest.raises(ValueError, match="matches no file"):
        evaluate(load_seed("transformer"), config)


def test_result_round_trips_through_json(fast_config):
    result = evaluate(load_seed("transformer"), fast_config.replace(training={"checkpoints": [0.5]}))
    assert FitnessResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
