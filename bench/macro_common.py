"""What the macro-option benchmarks share: the corpus, training one DNA for a budget, and timing generation.

Corpus: WikiText-2 from <repo>/../shared/data/wikitext-2 when present (valid.txt trains, test.txt validates, one
document per line, as bench/primer_vs_transformer.py), else the pydoc text that ships with Python. The model and
training settings are search_configs/tiny.yaml's with the overrides a benchmark passes (XLA on, since these runs
are long enough to repay its compile).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from primer_search.config import load_config  # noqa: E402
from primer_search.lm.architecture import Architecture  # noqa: E402
from primer_search.lm.tokenizer import EOS_ID  # noqa: E402
from primer_search.lm.training import Trainer  # noqa: E402
from bench_cli import CONFIGS, REPO  # noqa: E402

WIKITEXT = REPO.parent / "shared" / "data" / "wikitext-2"


@functools.cache
def corpus_overrides() -> tuple[str, ...]:
    """Config overrides that select the benchmark corpus (printed once)."""
    train, valid = WIKITEXT / "valid.txt", WIKITEXT / "test.txt"
    if train.is_file() and valid.is_file():
        print("corpus: WikiText-2")
        return ("data.source=text_files", f"data.train_files={json.dumps([str(train)])}",
                f"data.validation_files={json.dumps([str(valid)])}", "data.document=line", "model.vocab_size=4096")
    print("corpus: pydoc (WikiText-2 not found)")
    return "data.source=pydoc", "model.vocab_size=4096"


def parse_args(doc: str, budget: float, **options) -> argparse.Namespace:
    """--budget (seconds of training per model), --layers (default 8), --set section.key=value, and `options`
    given as name=default (e.g. tokens=256 adds --tokens)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--budget", type=float, default=budget)
    parser.add_argument("--layers", type=int, default=8)
    for name, default in options.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    parser.add_argument("--set", action="append", default=[])
    return parser.parse_args()


def config(args: argparse.Namespace, overrides=()):
    """search_configs/tiny.yaml on the benchmark corpus with XLA, a budget of `args.budget` seconds and no time
    limit, a 4M-8M parameter band, the layers of `args`, then `overrides`, then --set."""
    return load_config(CONFIGS / "tiny.yaml",
                       [*corpus_overrides(), "training.jit_compile=true", "training.timeout_seconds=null",
                        "training.budget_kind=seconds", f"training.budget={args.budget}",
                        "model.param_band=[4000000, 8000000]", f"model.num_layers={args.layers}", *overrides,
                        *args.set])


def train(dna, cfg, label: str):
    """Train `dna` for the config's budget; (model, architecture, validation metrics)."""
    arch, data = Architecture.resolve(dna, cfg)
    unit = arch.choose_unit()
    memory = arch.training_memory_bytes(unit, data.config.batch_tokens)
    print(f"{label}: estimated training memory {memory / 2**30:.1f} GiB")
    keras.utils.set_random_seed(cfg.training.seed)
    model = arch.build(unit, seed=cfg.training.seed)
    trainer = Trainer(model, data, cfg.training, arch.training_flops_per_token(unit) * data.config.batch_tokens)
    progress = trainer.train(cfg.training.seed)
    metrics = trainer.evaluate(progress)
    metrics.update(unit=unit, parameters=arch.parameter_count(unit), steps=progress.steps)
    print(f"{label}: {arch.kind}, {metrics['parameters']:,} parameters (unit {unit}), {progress.steps} steps in "
          f"{progress.train_seconds:.0f} s, validation loss {metrics['validation_loss']:.4f}, "
          f"{metrics['bits_per_byte']:.4f} bits/byte")
    return model, arch, metrics


def paired_step_seconds(samplers: dict, num_tokens: int, rounds: int = 5, seed: int = 0) -> dict:
    """{label: (median seconds per generated token, the last generation)} for generating `num_tokens` after an
    end-of-document id with each sampler, the samplers taking turns in every round so that a change in the
    machine's load hits them alike (a first short generation traces each one's steps)."""
    for sampler in samplers.values():
        sampler.generate([EOS_ID], 4, np.random.default_rng(seed))
    times = {label: [] for label in samplers}
    last = {}
    for r in range(rounds):
        for label, sampler in samplers.items():
            last[label] = sampler.generate([EOS_ID], num_tokens, np.random.default_rng(seed + r))
            times[label].append(last[label].seconds / last[label].generated)
    return {label: (statistics.median(times[label]), last[label]) for label in samplers}
