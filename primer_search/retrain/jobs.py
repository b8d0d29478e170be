"""Retrain programs at several sizes with several training seeds, each job on Ray Train.

`retrain(config, programs, out_dir)` plans one job per (program, size, training seed) and runs each as a Ray Train
`TensorflowTrainer`: `retrain.workers` workers under `MultiWorkerMirroredStrategy` (or one worker, with
`MirroredStrategy` over its GPUs when it has several), training with the project's own step (`training.Trainer`;
Keras 3's `Model.fit` breaks under the multi-worker strategy). At every curve point the workers report the
validation metrics and a checkpoint (weights, optimizer state, progress) to Ray Train, which restarts failed
workers from it (`retrain.max_failures`) and, when the same command runs again into the same directory, resumes
the unfinished (or failed) jobs from it. A finished job leaves `jobs/NAME/model.keras` and `jobs/NAME/result.json` (its
curve); `primer_search.retrain.report` turns the results into the speedup and scaling report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import tempfile
from typing import Callable, Sequence

import numpy as np

from primer_search.config import Config, config_from_dict
from primer_search.program.dna import DNA
from primer_search.retrain.config import RetrainConfig, job_config
from primer_search.search.executors import connect_ray

STATE = "state.npz"          # in a checkpoint: the trainer's arrays (no pickle)
PROGRESS = "progress.json"   # in a checkpoint: the trainer's progress
RESULT = "result.json"       # in a finished job's directory: its curve and final metrics
MODEL = "model.keras"
TOKENIZER = "tokenizer.model"  # beside the model: its SentencePiece vocabulary (none: bytes)
FINAL = ("ok", "diverged")   # a job's statuses that a rerun keeps; a failed job is run again from its checkpoint


@dataclasses.dataclass(frozen=True)
class Program:
    label: str               # as given: a seed name, a file, RUN_DIR:ID
    dna: DNA
    baseline: bool = False

    @property
    def slug(self) -> str:
        """A directory-safe name: the label's tail and the program's hash."""
        from primer_search.program.graph import canonical_hash

        tail = re.sub(r"[^A-Za-z0-9_+.-]+", "-", pathlib.Path(self.label.rstrip("/")).name)[-40:].strip("-")
        return f"{tail}-{canonical_hash(self.dna)[:8]}"


def load_program(spec: str) -> list[Program]:
    """The programs a spec names: a seed name (with +mod, +calm, +megabyte), a DNA file, RUN_DIR:ID (an individual
    of a run) or RUN_DIR:topK (the run's K best programs other than its seeds)."""
    from primer_search.program.seeds import load_seed_or_file
    from primer_search.search.run_database import split_run_spec
    from primer_search.search.store import RunStore

    split = split_run_spec(spec)
    if split is None:
        return [Program(spec, load_seed_or_file(spec))]
    run_dir, which = split
    with RunStore.open(run_dir) as store:
        if re.fullmatch(r"top[1-9][0-9]*", which):
            from primer_search.search.confirmation import select_programs

            seeds = {ind.id for ind in store.individuals_without_parent()}
            chosen = [ind for ind in select_programs(store, int(which[3:])) if ind.id not in seeds]
        elif which.isdigit():
            chosen = [store.individual(int(which))]
        else:
            raise ValueError(f"{spec}: found {which!r} after the run directory, expected an individual's id or "
                             f"topK (e.g. {run_dir}:top3)")
        return [Program(f"{run_dir}:{ind.id}", DNA.from_dict(ind.dna)) for ind in chosen]


def load_programs(programs: Sequence[str], baselines: Sequence[str]) -> list[Program]:
    """Baselines first, then the programs; a program whose hash repeats an earlier one is dropped."""
    from primer_search.program.graph import canonical_hash

    chosen, seen = [], set()
    for spec, baseline in [(b, True) for b in baselines] + [(p, False) for p in programs]:
        for program in load_program(spec):
            key = canonical_hash(program.dna)
            if key not in seen:
                seen.add(key)
                chosen.append(dataclasses.replace(program, baseline=baseline))
    return chosen


@dataclasses.dataclass(frozen=True)
class Job:
    program: Program
    size: int                # index into the config's sizes
    seed: int                # training seed offset: 0 .. retrain.seeds - 1
    unit: int
    parameter_count: int
    config: Config           # the job's

    @property
    def name(self) -> str:
        return f"{self.program.slug}-size{self.size}-seed{self.seed}"


def plan(config: RetrainConfig, programs: Sequence[Program]) -> list[Job]:
    """Every (program, size, seed) job, sizes outermost so the small ones finish first. A program that cannot be
    sized into a band raises `model_cost.SizingError` naming it."""
    from primer_search.lm.architecture import Architecture
    from primer_search.lm.model_cost import SizingError

    baseline = next(p for p in programs if p.baseline)
    jobs = []
    for size in range(config.retrain.size_count):
        reference = None
        if config.retrain.budget_kind == "compute_optimal":
            arch = Architecture.of(baseline.dna, job_config(config, size, 0, 1))
            reference = arch.parameter_count(_unit(arch, config, size))
        for program in programs:
            for seed in range(config.retrain.seeds):
                job = job_config(config, size, seed, reference)
                arch = Architecture.of(program.dna, job)
                try:
                    unit = _unit(arch, config, size)
                except SizingError as err:
                    raise SizingError(f"{program.label} at size {size}: {err}") from None
                jobs.append(Job(program, size, seed, unit, arch.parameter_count(unit), job))
    return jobs


def _unit(arch, config: RetrainConfig, size: int) -> int:
    return config.retrain.units[size] if config.retrain.units else arch.choose_unit()


# -- one job, on each of its Ray Train workers ------------------------------------------------------------------

def _strategy(world_size: int, gpus: int):
    import tensorflow as tf

    if world_size > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()     # reads TF_CONFIG, which Ray Train sets
    if gpus > 1:
        return tf.distribute.MirroredStrategy()
    return None


def point_of(checkpoint, per_step: int) -> dict:
    """A curve point from a `training.Checkpoint`: step, training FLOPs, seconds and the metrics."""
    return {"step": checkpoint.step, "flops": checkpoint.step * per_step, "train_seconds": checkpoint.train_seconds,
            "validation_loss": checkpoint.validation_loss, "bits_per_byte": checkpoint.bits_per_byte}


def train_job(payload: dict) -> None:
    """The Ray Train loop of one job (every worker runs it): build, restore, train, report (see the module
    docstring). A diverged run is a result, not a failure to retry."""
    import keras
    import ray.train

    from primer_search.lm.architecture import Architecture
    from primer_search.lm.training import Checkpoint, Diverged, Progress, Trainer
    from primer_search.search.trial import limit_threads

    limit_threads(payload["threads"])
    context = ray.train.get_context()
    strategy = _strategy(context.get_world_size(), payload["gpus"])
    config = config_from_dict(payload["config"])
    arch, data = Architecture.resolve(DNA.from_dict(payload["dna"]), config)
    unit = payload["unit"]
    per_step = arch.training_flops_per_token(unit) * config.data.batch_tokens
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if payload["mixed_precision"] else "float32")
    with strategy.scope() if strategy else contextlib.nullcontext():
        keras.utils.set_random_seed(config.training.seed)
        model = arch.build(unit, seed=config.training.seed)
    trainer = Trainer(model, data, config.training, per_step, strategy)
    resumed, resumed_from = ray.train.get_checkpoint(), None
    if resumed:
        with resumed.as_directory() as directory:
            with np.load(os.path.join(directory, STATE), allow_pickle=False) as state:
                arrays = [state[f"a{i}"] for i in range(len(state.files))]
            progress = Progress.from_dict(json.loads(pathlib.Path(directory, PROGRESS).read_text()))
        trainer.load_state(arrays, progress)
        resumed_from = progress.steps
    writer = context.get_world_rank() == 0

    def report(metrics: dict, final: dict | None = None) -> None:
        with tempfile.TemporaryDirectory() as directory:
            if writer:
                arrays = trainer.state_arrays()
                np.savez(os.path.join(directory, STATE), **{f"a{i}": a for i, a in enumerate(arrays)})
                pathlib.Path(directory, PROGRESS).write_text(json.dumps(trainer.progress.to_dict()))
                if final is not None:
                    pathlib.Path(directory, RESULT).write_text(json.dumps(final))
                    if final["status"] == "ok":
                        float32_model(arch, unit, model).save(os.path.join(directory, MODEL))
                        if hasattr(data.tokenizer, "path"):
                            shutil.copyfile(data.tokenizer.path, os.path.join(directory, TOKENIZER))
            checkpoint = ray.train.Checkpoint.from_directory(directory) if writer else None
            ray.train.report(metrics, checkpoint=checkpoint)

    def on_checkpoint(point: Checkpoint) -> bool:
        report({"step": point.step, "validation_loss": point.validation_loss})
        return True

    final = {"status": "ok", "unit": unit, "parameter_count": payload["parameter_count"],
             "flops_per_token": arch.training_flops_per_token(unit), "batch_tokens": config.data.batch_tokens,
             "resumed_from": resumed_from}      # the step this run last resumed at (None: never resumed)
    try:
        trainer.train(config.training.seed, on_checkpoint)
        metrics = trainer.evaluate(trainer.progress)
        end = Checkpoint.of(1.0, trainer.progress, metrics)
        final["curve"] = [point_of(c, per_step) for c in (*trainer.progress.checkpoints, end)]
    except Diverged as err:
        final.update(status="diverged", error=str(err),
                     curve=[point_of(c, per_step) for c in trainer.progress.checkpoints])
    final["steps"] = trainer.progress.steps
    report({"step": trainer.progress.steps, "done": True}, final)


def float32_model(arch, unit: int, model):
    """The model itself, or for one trained in mixed precision a float32 copy (its weights are float32 already), so
    the saved model samples and exports like any other."""
    import keras

    if keras.mixed_precision.global_policy().name == "float32":
        return model
    keras.mixed_precision.set_global_policy("float32")
    copy = arch.build(unit)
    copy.set_weights(model.get_weights())
    return copy


# -- the driver ---------------------------------------------------------------------------------------------------

def _fit(payload: dict, name: str, storage: str, workers: int, resources: dict, max_failures: int) -> str:
    """Run one job's `TensorflowTrainer` to the end (a Ray task); returns the path of its last checkpoint."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    trainer = TensorflowTrainer(
        train_job, train_loop_config=payload,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=resources.get("GPU", 0) > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=storage, failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))
    return trainer.fit().checkpoint.path


def payload_of(job: Job, config: RetrainConfig) -> dict:
    section = config.retrain
    return {"dna": job.program.dna.to_dict(), "config": job.config.to_dict(), "unit": job.unit,
            "parameter_count": job.parameter_count, "threads": section.cpus_per_worker, "gpus": section.gpus_per_worker,
            "mixed_precision": section.mixed_precision}


def _describe(config: RetrainConfig, programs: Sequence[Program]) -> dict:
    return {"config": config.to_dict(),
            "programs": [{"label": p.label, "slug": p.slug, "baseline": p.baseline, "dna": p.dna.to_dict()}
                         for p in programs]}


def prepare(out_dir, config: RetrainConfig, programs: Sequence[Program]) -> pathlib.Path:
    """Write (or check) `retrain.json` in `out_dir`: a directory retrains one plan, so running the same command
    again resumes it and a different one is refused."""
    out = pathlib.Path(out_dir)
    described = json.loads(json.dumps(_describe(config, programs)))
    record = out / "retrain.json"
    if record.exists():
        stored = json.loads(record.read_text())
        try:                  # read through today's schema: a key added since then takes its default
            stored["config"] = config_from_dict(stored["config"], cls=RetrainConfig).to_dict()
        except ValueError:
            stored = None
        if json.loads(json.dumps(stored)) != described:
            raise ValueError(f"{out} holds a retrain of other programs or another config (retrain.json): expected "
                             f"the same command to resume it, or a new directory")
    else:
        out.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(described, indent=1))
    return out


def retrain(config: RetrainConfig, programs: Sequence[Program], out_dir,
            on_result: Callable[[Job, dict], None] | None = None) -> list[tuple[Job, dict]]:
    """Run every job not yet finished in `out_dir` (see the module docstring); returns every job with its result.
    `on_result(job, result)` is called as each job finishes."""
    import ray

    from primer_search.lm.architecture import Architecture

    jobs = plan(config, programs)
    for job in jobs:          # data and tokenizer problems raise here, before anything is written or launched
        Architecture.resolve(job.program.dna, job.config)
    out = prepare(out_dir, config, programs)
    todo = [job for job in jobs if load_result(out, job)["status"] not in FINAL]
    section = config.retrain
    resources = {"CPU": section.cpus_per_worker}
    if section.gpus_per_worker:
        resources["GPU"] = section.gpus_per_worker
    if not todo:
        return [(job, load_result(out, job)) for job in jobs]
    owns = not ray.is_initialized()
    if owns:
        connect_ray(section.address, section.num_cpus)
    try:
        fit = ray.remote(num_cpus=0)(_fit)
        slots = concurrent_jobs(ray.cluster_resources(), section.workers, resources)
        queue, running = list(todo), {}
        while queue or running:
            while queue and len(running) < slots:
                job = queue.pop(0)
                running[fit.remote(payload_of(job, config), job.name, str((out / "ray").resolve()), section.workers,
                                   resources, section.max_failures)] = job
            done, _ = ray.wait(list(running), num_returns=1)
            job = running.pop(done[0])
            target = out / "jobs" / job.name
            target.mkdir(parents=True, exist_ok=True)
            try:
                path = ray.get(done[0])
                for name in (MODEL, TOKENIZER, RESULT):     # the result last: its presence means done
                    if os.path.exists(os.path.join(path, name)):
                        _copy(os.path.join(path, name), target / name)
            except Exception as err:  # noqa: BLE001 -- a job that failed past its retries is a recorded result
                message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                (target / RESULT).write_text(json.dumps({"status": "error", "error": message[:2000]}))
            if on_result:
                on_result(job, load_result(out, job))
    finally:
        if owns and ray.is_initialized():
            ray.shutdown()
    return [(job, load_result(out, job)) for job in jobs]


def concurrent_jobs(cluster: dict, workers: int, per_worker: dict) -> int:
    """How many jobs the cluster's resources run at once (at least 1: Ray queues the rest, or scales up)."""
    return max(1, min(int(cluster.get(key, 0) // (amount * workers)) for key, amount in per_worker.items()))


def _copy(source: str, target: pathlib.Path) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def load_result(out_dir, job: Job) -> dict:
    path = pathlib.Path(out_dir) / "jobs" / job.name / RESULT
    return json.loads(path.read_text()) if path.exists() else {"status": "pending"}
