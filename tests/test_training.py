import math

import numpy as np
import pytest

from primer_search.lm.data import load_data
from primer_search.lm.model import build_model
from primer_search.lm.training import Diverged, EvaluationTimeout, Trainer, WarmupRsqrt
from primer_search.program.dna import DNA, Instruction, Subprogram
from primer_search.program.seeds import load_seed


def test_schedule_warms_up_linearly_then_decays_as_rsqrt():
    schedule = WarmupRsqrt(peak=0.01, warmup_steps=100)
    lr = {step + 1: float(schedule(step)) for step in (0, 49, 99, 399, 9999)}
    assert lr[1] == pytest.approx(1e-4) and lr[50] == pytest.approx(0.005) and lr[100] == pytest.approx(0.01)
    assert lr[400] == pytest.approx(0.005) and lr[10000] == pytest.approx(0.001)


def exploding_dna():
    """exp(exp(100 x)): infinite activations, so the loss is NaN at the first step."""
    program = (Instruction("C_MUL", in1=0, const=1), Instruction("EXP", in1=2), Instruction("EXP", in1=3))
    return DNA(subprograms=(Subprogram(program),), constants=(0.0, 100.0), dimensions=(1, 2, 4, 8, 12, 16))


def _trainer(config, dna=None, **training):
    config = config.replace(training=training) if training else config
    data = load_data(config.data, config.model.vocab_size)
    model = build_model(dna or load_seed("transformer"), config.model)
    return Trainer(model, data, config.training, flops_per_step=1000)


def test_steps_budget_stops_at_the_step(fast_config):
    trainer = _trainer(fast_config, budget=5)
    progress = trainer.train(seed=0)
    assert progress.steps == 5 and not progress.stopped and math.isfinite(progress.last_loss)
    assert progress.compile_seconds > 0 and progress.train_seconds > 0 and progress.eval_seconds == 0


def test_flops_budget_is_steps_times_flops_per_step(fast_config):
    progress = _trainer(fast_config, budget_kind="flops", budget=3500).train(seed=0)
    assert progress.steps == 4                         # the step that reaches 3,500 FLOPs at 1,000 per step


def test_seconds_budget_counts_step_time_only(fast_config):
    progress = _trainer(fast_config, budget_kind="seconds", budget=1.0).train(seed=0)
    assert 1.0 <= progress.train_seconds < 1.0 + 3 * progress.mean_step_seconds + 0.5
    assert progress.steps > 2


def test_checkpoints_report_and_can_stop(fast_config):
    seen = []
    trainer = _trainer(fast_config, budget=8, checkpoints=(0.25, 0.5, 0.75))
    progress = trainer.train(seed=0, on_checkpoint=lambda c: seen.append(c) or len(seen) < 2)
    assert [c.fraction for c in seen] == [0.25, 0.5] and [c.step for c in seen] == [2, 4]
    assert progress.stopped and progress.steps == 4 and progress.checkpoints == seen
    assert all(0 < c.validation_loss < 10 for c in seen) and progress.eval_seconds > 0


def test_validation_loss_is_mean_nll_of_real_targets(fast_config):
    trainer = _trainer(fast_config)
    validation = trainer.data.validation
    logits = trainer.model(validation.inputs).numpy().astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, validation.targets[..., None], -1)[..., 0]
    expected = -picked[validation.targets != 0].sum() / validation.num_targets
    half = validation.targets.shape[1] // 2
    late = picked[:, half:][validation.targets[:, half:] != 0]             # the second half of each window
    assert validation.num_late_targets == len(late) < validation.num_targets
    assert trainer.validation_sums(validation)["nll"] / validation.num_targets == pytest.approx(expected, rel=1e-5)
    metrics = trainer.evaluate(trainer.progress)
    assert metrics == pytest.approx({"validation_loss": expected,
                                     "bits_per_byte": expected * validation.num_targets / (
                                         math.log(2) * validation.num_bytes),
                                     "late_validation_loss": -late.mean()}, rel=1e-5)
    assert metrics["late_validation_loss"] != pytest.approx(expected, rel=1e-5)


def test_non_finite_loss_and_deadline_raise(fast_config):
    trainer = _trainer(fast_config, exploding_dna())
    with pytest.raises(Diverged, match="training loss became nan at step 1") as err:
        trainer.train(seed=0)
    assert err.value.step == trainer.progress.steps == 1
    with pytest.raises(EvaluationTimeout, match="after 1 steps"):
        _trainer(fast_config, budget=3).train(seed=0, deadline=0.0)


@pytest.mark.parametrize("jit", [False, True])
def test_several_steps_per_call_train_as_one_at_a_time(fast_config, jit):
    runs = {}
    for k in (1, 5):
        trainer = _trainer(fast_config, budget=11, checkpoints=(0.5,), steps_per_call=k, jit_compile=jit)
        progress = trainer.train(seed=0)
        runs[k] = (progress, trainer.model.get_weights())
    (one, weights_one), (five, weights_five) = runs[1], runs[5]
    assert five.steps == one.steps == 11 and [c.step for c in five.checkpoints] == [c.step for c in one.checkpoints]
    assert five.checkpoints[0].step == 6                 # a call stops at the checkpoint, not past it
    assert [c.validation_loss for c in five.checkpoints] == pytest.approx(
        [c.validation_loss for c in one.checkpoints], abs=1e-5)
    assert five.last_loss == pytest.approx(one.last_loss, abs=1e-5)
    for a, b in zip(weights_five, weights_one):      # another graph's rounding; a ReLU at 0 can amplify it
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_several_steps_per_call_stop_at_the_diverged_step(fast_config):
    trainer = _trainer(fast_config, exploding_dna(), steps_per_call=4)
    with pytest.raises(Diverged, match="at step 1"):
        trainer.train(seed=0)
