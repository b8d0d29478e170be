import json
import os
import signal
import subprocess
import threading
import time

import keras
import numpy as np
import pytest
import yaml

from conftest import FAST
from primer_search.cli.main import main
from primer_search.config import config_from_dict
from primer_search.program.seeds import load_seed
from primer_search.retrain.config import RetrainConfig
from primer_search.retrain.jobs import MODEL, Program, plan, prepare, retrain

RETRAIN = {**FAST, "training": {"warmup_steps": 2, "jit_compile": False},
           "retrain": {"units": [2], "budget_kind": "steps", "budgets": [6], "seeds": 1, "curve_points": 3,
                       "max_failures": 0}}


def _config(**retrain) -> RetrainConfig:
    return config_from_dict({**RETRAIN, "retrain": {**RETRAIN["retrain"], **retrain}}, cls=RetrainConfig)


def _programs(*names):
    return [Program(name, load_seed(name), baseline=name == "transformer") for name in names]


def test_plan_has_one_job_per_program_size_and_seed_with_distinct_names():
    jobs = plan(_config(units=[2, 3], seeds=2), _programs("transformer", "primer_ez"))
    assert len(jobs) == 8 and len({job.name for job in jobs}) == 8
    assert [job.size for job in jobs] == [0] * 4 + [1] * 4                 # the small size first
    assert {job.unit for job in jobs if job.size == 1} == {3}
    assert {job.config.training.seed for job in jobs} == {0, 1}


def test_a_directory_holds_one_plan(tmp_path):
    prepare(tmp_path / "r", _config(), _programs("transformer"))
    prepare(tmp_path / "r", _config(), _programs("transformer"))           # the same plan: resumed
    with pytest.raises(ValueError, match="retrain.json.*the same command to resume it, or a new directory"):
        prepare(tmp_path / "r", _config(seeds=2), _programs("transformer"))


def _losses(result):
    return [point["validation_loss"] for point in result["curve"]]


@pytest.fixture(scope="module")
def one_worker(ray_session, tmp_path_factory):
    """40-step jobs of the Transformer and Primer-EZ on one worker each, a curve point every 8 steps."""
    out = tmp_path_factory.mktemp("one_worker")
    [(job, result), (_, ez)] = retrain(_config(budgets=[40], curve_points=5), _programs("transformer", "primer_ez"),
                                       out)
    assert result["status"] == ez["status"] == "ok" and result["steps"] == 40 and len(result["curve"]) == 5
    return out, job, result


@pytest.mark.slow
def test_two_workers_train_as_one_with_the_same_global_batch(one_worker, tmp_path):
    _, _, one = one_worker      # and 3 steps per call (2 before each curve point) train as one at a time
    config = config_from_dict({**RETRAIN, "training": {**RETRAIN["training"], "steps_per_call": 3},
                               "retrain": {**RETRAIN["retrain"], "budgets": [40], "curve_points": 5, "workers": 2}},
                              cls=RetrainConfig)
    [(_, two)] = retrain(config, _programs("transformer"), tmp_path)
    assert two["status"] == "ok" and two["steps"] == 40
    np.testing.assert_allclose(_losses(two), _losses(one), atol=1e-5)


@pytest.mark.slow
def test_a_finished_job_leaves_a_keras_model_that_reads_back(one_worker):
    from primer_search.lm.architecture import Architecture
    from primer_search.lm.training import Progress, Trainer

    out, job, result = one_worker
    model = keras.models.load_model(out / "jobs" / job.name / MODEL)
    _, data = Architecture.resolve(job.program.dna, job.config)
    metrics = Trainer(model, data, job.config.training, 0).evaluate(Progress())
    assert metrics["validation_loss"] == pytest.approx(result["curve"][-1]["validation_loss"], abs=1e-5)


@pytest.mark.slow
def test_mixed_precision_trains_close_to_float32_and_saves_a_float32_model(one_worker, tmp_path):
    from primer_search.lm.architecture import Architecture
    from primer_search.lm.training import Progress, Trainer

    _, job, float32 = one_worker
    [(_, mixed)] = retrain(_config(budgets=[40], curve_points=5, mixed_precision=True), _programs("transformer"),
                           tmp_path)
    assert mixed["status"] == "ok" and mixed["steps"] == 40
    np.testing.assert_allclose(_losses(mixed), _losses(float32), atol=0.05)      # bfloat16 keeps ~3 digits
    assert _losses(mixed) != _losses(float32)                                     # it did compute in bfloat16
    model = keras.models.load_model(tmp_path / "jobs" / job.name / MODEL)
    assert model.dtype_policy.name == "float32"
    _, data = Architecture.resolve(job.program.dna, job.config)
    loss = Trainer(model, data, job.config.training, 0).evaluate(Progress())["validation_loss"]
    assert loss == pytest.approx(_losses(mixed)[-1], abs=0.05)


def _kill_the_worker_once_a_checkpoint_is_registered(run) -> None:
    """SIGKILL the Ray Train worker once the job's controller has registered a checkpoint (it polls its workers
    every 2 s; a checkpoint written but not yet registered is lost with the worker)."""
    snapshot, deadline = run / "checkpoint_manager_snapshot.json", time.time() + 300
    while time.time() < deadline:
        if snapshot.exists() and json.loads(snapshot.read_text()).get("latest_checkpoint_result"):
            break
        time.sleep(0.05)
    pids = subprocess.run(["pgrep", "-f", "ray::RayTrainWorker"], capture_output=True, text=True).stdout.split()
    assert pids, "no Ray Train worker to kill"
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_job_resumes_to_the_uninterrupted_result(one_worker, tmp_path):
    _, job, uninterrupted = one_worker
    config = _config(budgets=[40], curve_points=5)
    killer = threading.Thread(target=_kill_the_worker_once_a_checkpoint_is_registered,
                              args=(tmp_path / "ray" / job.name,))
    killer.start()
    [(_, failed)] = retrain(config, _programs("transformer"), tmp_path)      # max_failures 0: the job fails
    killer.join()
    assert failed["status"] == "error"
    [(_, resumed)] = retrain(config, _programs("transformer"), tmp_path)     # the same command again
    assert resumed["status"] == "ok" and 0 < resumed["resumed_from"] < 40
    assert resumed["steps"] == uninterrupted["steps"] == 40
    np.testing.assert_allclose(_losses(resumed), _losses(uninterrupted), atol=1e-5)


@pytest.mark.slow
def test_the_retrain_command_reports_a_finished_directory_without_training_again(one_worker, tmp_path, capsys):
    out, _, _ = one_worker
    config = tmp_path / "retrain.yaml"
    config.write_text(yaml.safe_dump(_config(budgets=[40], curve_points=5).to_dict()))
    assert main(["retrain", str(config), "--out", str(out), "--program", "primer_ez"]) == 0
    printed = capsys.readouterr()
    assert "retrain:" not in printed.err                                   # nothing trained again
    report = json.loads((out / "report.json").read_text())
    [ez] = [row for row in report["sizes"] if row["program"] == "primer_ez"]
    assert ez["seeds"] == 1 and ez["speedups"][0]["baseline"] == "transformer" and ez["speedups"][0]["pairs"] == 1
    assert "primer_ez" in printed.out and "x vs transformer" in printed.out
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.csv", "curves.png", "scaling.png", "speedup.png"}


@pytest.mark.parametrize("spec, message", [
    ("no_such_seed_or_file", "no_such_seed_or_file"),
    ("{run}:top", "found 'top' after the run directory, expected an individual's id or topK"),
    ("{run}:99", "99"),
])
def test_the_retrain_command_names_a_bad_program(spec, message, tmp_path, capsys):
    from primer_search.search.store import RunStore

    RunStore.create(tmp_path / "run", {}).close()
    spec = spec.format(run=tmp_path / "run")
    code = main(["retrain", "search_configs/retrain_tiny.yaml", "--out", str(tmp_path / "out"), "--program", spec])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sample_generates_from_a_retrained_job_reproducibly(one_worker, capsys):
    out, job, _ = one_worker
    args = ["sample", str(out / "jobs" / job.name), "--prompt", "def ", "-n", "12", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("def ") and len(first.strip()) > len("def")


def test_sample_names_a_missing_checkpoint(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nothing")]) == 2
    assert "found no model.keras, expected a retrain job's directory" in capsys.readouterr().err
