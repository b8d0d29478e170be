import dataclasses
import json
import math
import statistics

import pytest
import yaml

from conftest import FAST
from primer_search.cli.main import main
from primer_search.config import SearchConfig, config_from_dict
from primer_search.search.calibration import Calibration, calibrate, expected_cost, summarize
from primer_search.search.executors import InProcessExecutor

Z = 1.6448536269514722 + 0.8416212335729143     # z_0.95 + z_0.8


# toy budgets put hurdles after a few steps: allow it where the config guards hurdle placement
TOY_SEARCH = {"executor": "in_process", "max_in_flight": 2,
              **({"min_hurdle_steps": 0} if "min_hurdle_steps" in {f.name for f in dataclasses.fields(SearchConfig)}
                 else {})}


def _config(budget=7, hurdles=2, **search):
    return config_from_dict({**FAST, "training": {**FAST["training"], "budget": budget, "warmup_steps": 1},
                             "search": {**TOY_SEARCH, "hurdles": hurdles, **search}})


def _result(status, checkpoints, final=None, steps=7):
    return {"status": status, "validation_loss": final, "steps": steps, "train_seconds": steps * 0.5,
            "canonical_hash": "abc", "error": None if status in ("ok", "stopped") else "boom",
            "checkpoints": [{"fraction": f, "step": s, "validation_loss": v, "bits_per_byte": v / 2,
                             "train_seconds": s * 0.5} for f, s, v in checkpoints]}


def test_summarize_matches_hand_computed_statistics():
    h1, h2 = 1 / 7, 3 / 7
    results = [_result("ok", [(h1, 1, 6.0), (h2, 3, 5.6)], 5.0),
               _result("ok", [(h1, 1, 6.3), (h2, 3, 5.5)], 5.4),
               _result("ok", [(h1, 1, 6.6), (h2, 3, 5.9)], 5.2),
               _result("stopped", [(h1, 2, 6.1)], 6.1, steps=2),     # counts at hurdle 1 only
               _result("timeout", [(h1, 1, 6.2)]),                    # so does a run that timed out later
               _result("error", [])]
    c = summarize({"transformer": results}, _config(), training_seeds=[1, 2, 3, 4, 5, 6])
    p = c.programs[0]
    assert p.statuses == ("ok", "ok", "ok", "stopped", "timeout", "error") and p.ok == 3
    assert p.errors == ("timeout: boom", "error: boom")
    first, second = p.hurdles
    assert first.runs == 5 and first.mean == pytest.approx(6.24)              # 6.0, 6.3, 6.6, 6.1, 6.2
    assert first.std == pytest.approx(math.sqrt((0.24 ** 2 + 0.06 ** 2 + 0.36 ** 2 + 0.14 ** 2 + 0.04 ** 2) / 4))
    assert first.steps == (1, 2) and first.step == pytest.approx(1.2)
    assert first.rank_correlation == pytest.approx(0.5)          # ranks (1, 2, 3) against (1, 3, 2)
    assert second.runs == 3 and second.mean == pytest.approx(17 / 3) and second.rank_correlation == pytest.approx(-0.5)
    assert p.final.runs == 3 and p.final.mean == pytest.approx(5.2) and p.final.std == pytest.approx(0.2)
    assert p.final.steps == (7, 7) and p.final.train_seconds == pytest.approx(3.5)
    assert c.detectable(p.final.std) == pytest.approx(Z * math.sqrt(2) * 0.2)
    assert c.detectable(p.final.std, 3) == pytest.approx(Z * math.sqrt(2 / 3) * 0.2)
    assert c.expected_cost == pytest.approx(3 / 7) and c.compute_saved == pytest.approx(7 / 3)
    assert Calibration.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_summarize_bits_per_byte_reads_that_metric():
    config = _config(budget=3, hurdles=1, metric="bits_per_byte")
    results = [_result("ok", [(1 / 3, 1, 6.0)], 5.0), _result("ok", [(1 / 3, 1, 7.0)], 5.0)]
    for r, bpb in zip(results, (2.0, 3.0)):
        r["bits_per_byte"] = bpb
    p = summarize({"t": results}, config).programs[0]
    assert p.hurdles[0].mean == pytest.approx(3.25) and p.final.mean == pytest.approx(2.5)


@pytest.mark.parametrize("hurdles, cost", [(0, 1.0), (1, 1 / 3 + (2 / 3) / 2), (2, 3 / 7), (4, 5 / 31)])
def test_expected_cost_of_halving_hurdles(hurdles, cost):
    from primer_search.search.hurdles import hurdle_fractions

    assert expected_cost(hurdle_fractions(hurdles)) == pytest.approx(cost)


def test_expected_cost_with_another_pass_rate():
    assert expected_cost([0.2, 0.5], pass_rate=0.25) == pytest.approx(0.2 + 0.3 / 4 + 0.5 / 16)
    assert expected_cost([0.2, 0.5], pass_rate=[0.5, 0.8]) == pytest.approx(0.2 + 0.3 * 0.5 + 0.5 * 0.4)
    with pytest.raises(ValueError, match="found 1 rates for 2 hurdles"):
        expected_cost([0.2, 0.5], pass_rate=[0.5])


@pytest.mark.slow
def test_calibrate_evaluates_each_seed_with_k_training_seeds_at_toy_size():
    config = _config()
    seen = []
    c = calibrate(config, k=2, executor=InProcessExecutor(), on_result=lambda *args: seen.append(args))
    assert c.training_seeds == (1, 2) and [(name, seed) for name, seed, _ in seen] == \
        [("transformer", 1), ("transformer", 2)]
    p, = c.programs
    assert p.statuses == ("ok",) * 2 and p.canonical_hash == seen[0][2]["canonical_hash"]
    finals = [r["validation_loss"] for *_, r in seen]
    assert finals[0] != finals[1]                                 # the training seed changes the outcome
    assert p.final.mean == pytest.approx(statistics.fmean(finals))
    assert p.final.std == pytest.approx(statistics.stdev(finals))
    for i, (fraction, step) in enumerate(zip((1 / 7, 3 / 7), (1, 3))):   # hurdles fall after steps 1 and 3 of 7
        at_hurdle = [r["checkpoints"][i]["validation_loss"] for *_, r in seen]
        assert p.hurdles[i].fraction == pytest.approx(fraction) and p.hurdles[i].steps == (step, step)
        assert p.hurdles[i].mean == pytest.approx(statistics.fmean(at_hurdle))
        assert p.hurdles[i].std == pytest.approx(statistics.stdev(at_hurdle))
    assert p.final.steps == (7, 7) and c.expected_cost == pytest.approx(3 / 7)
    assert c.detectable(p.final.std, 2) == pytest.approx(Z * statistics.stdev(finals))


def test_calibrate_needs_two_evaluations():
    with pytest.raises(ValueError, match="k: found 1, expected at least 2"):
        calibrate(_config(), k=1)


def _config_file(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(_config(budget=3, hurdles=1).to_dict()))))
    return path


@pytest.mark.slow
def test_calibrate_command_prints_and_writes_the_calibration(tmp_path, capsys):
    out = tmp_path / "calibration.json"
    assert main(["calibrate", str(_config_file(tmp_path)), "-k", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    saved = Calibration.from_dict(json.loads(out.read_text()))
    final = saved.programs[0].final
    assert "transformer (hash " in text and "2 of 2 evaluations ok" in text and f"{final.std:.4f}" in text
    assert "3.52 std" in text and f"{saved.compute_saved:.2f}x" in text and saved.training_seeds == (1, 2)


def test_calibrate_command_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    config = _config_file(tmp_path)
    out = tmp_path / "missing" / "c.json"
    assert main(["calibrate", str(config), "--json", str(out)]) == 2
    assert not out.exists() and "--json" in capsys.readouterr().err
    assert main(["calibrate", str(config), "--set", "training.budgt=3"]) == 2
    assert "unknown key 'budgt'" in capsys.readouterr().err
    assert main(["calibrate", str(config), "-k", "1"]) == 2
    assert "k: found 1" in capsys.readouterr().err


def test_the_promotion_margin_lets_an_equal_program_through_at_its_level():
    """A program equal to the seed beats the seed's mean by the margin with probability alpha: the t rule."""
    import numpy as np

    from primer_search.search.calibration import PROMOTION_ALPHA, promotion_margin

    assert promotion_margin(0.01, 8) == pytest.approx(4.785 * 0.01 * (1 + 1 / 8) ** 0.5, rel=1e-3)
    assert promotion_margin(0.01, 8, 4) < promotion_margin(0.01, 8, 1)          # more evaluations, smaller margin
    rng = np.random.default_rng(0)
    trials = 20_000
    seeds = rng.normal(size=(trials, 8))
    nulls = rng.normal(size=trials)
    margins = promotion_margin(1.0, 8) * seeds.std(axis=1, ddof=1)        # linear in sigma
    promoted = int(np.sum(nulls < seeds.mean(axis=1) - margins))
    assert abs(promoted - trials * PROMOTION_ALPHA) < 5 * (trials * PROMOTION_ALPHA) ** 0.5, promoted
    with pytest.raises(ValueError, match="expected at least 2 and 1"):
        promotion_margin(0.01, 1)
