"""The search config: one YAML file with typed sections `model`, `data`, `training` and `search`.

Every key has a default, so a config names only what it changes; `--set section.key=value` overrides any key
from the command line (the value is read as YAML: `--set training.budget=30`, `--set data.train_files=[a.txt]`).
Loading is strict (see `primer_search.program.schema`): a misspelt key or a wrong value is a one-line error naming it.
This module imports no TensorFlow, so configs can be checked anywhere.
"""

from __future__ import annotations

import dataclasses

import yaml

from primer_search.program.macro_options import SECTIONS as MACRO_SECTIONS
from primer_search.program.schema import between, choice, from_mapping, read_text
from primer_search.program.search_space import SearchPriors

BYTE_VOCAB_SIZE = 258     # the byte tokenizer's ids: PAD, EOS, then the 256 byte values (primer_search.lm.tokenizer)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The language model around the searched block, and the parameter band every candidate is sized into."""

    vocab_size: int = between(8192, 2)   # subword vocabulary size; with `data.tokenizer: bytes` it must be 258
    num_layers: int = between(2, 1)
    width_units: int = between(8, 1)     # block width in size units (the seeds use 8: d_model = 8 x head size)
    param_band: tuple[int, int] = (1_000_000, 3_000_000)
    max_unit: int = between(1024, 1)
    tie_embeddings: bool = True

    def __post_init__(self):
        low, high = self.param_band
        if not 0 < low <= high:
            raise ValueError(f"param_band: found {list(self.param_band)}, expected [low, high] with 0 < low <= high")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the text comes from, how it is tokenized, and how it is packed into batches."""

    source: str = choice("pydoc", "pydoc", "python_docs", "text_files", "lm1b")
    # text_files: glob patterns; without validation_files, `validation_fraction` of the documents are held out
    train_files: tuple[str, ...] = ()
    validation_files: tuple[str, ...] = ()
    document: str = choice("line", "line", "file")             # text_files: one document per line or per file
    validation_fraction: float = between(0.05, 0.0, 0.5, low_open=True)
    # lm1b: TFDS data directory (None: TFDS's default, ~/tensorflow_datasets) and split expressions
    tfds_data_dir: str | None = None
    train_split: str = "train[:98%]"
    validation_split: str = "train[98%:]"
    tokenizer: str = choice("sentencepiece", "sentencepiece", "bytes")
    tokenizer_sample_bytes: int = between(20_000_000, 1)       # training text read to learn the subword vocabulary
    cache_dir: str | None = None                              # None: $PRIMER_SEARCH_CACHE or ~/.cache/primer_search
    sequence_length: int = between(64, 2)
    batch_tokens: int = between(4096, 2)                      # tokens per batch (a multiple of sequence_length)
    validation_tokens: int = between(65_536, 1)               # at least this many, in whole validation documents
    shuffle_buffer: int = between(10_000, 1)                  # documents (streamed sources such as lm1b)
    # A test split, held out for `primer-search confirm` (never ranked on by a search; off by default). pydoc and
    # text_files: `test_fraction` of the training documents (those whose text's CRC32 falls in the top fraction of
    # its range) are taken out of training, or text_files reads `test_files`; lm1b: `test_split`, e.g. 'test'.
    test_fraction: float = between(0.0, 0.0, 0.5)
    test_files: tuple[str, ...] = ()
    test_split: str | None = None
    evaluation: str = choice("validation", "validation", "test")   # the held-out set measured; confirm sets test

    def __post_init__(self):
        if self.batch_tokens % self.sequence_length:
            raise ValueError(f"batch_tokens: found {self.batch_tokens}, expected a multiple of sequence_length "
                             f"({self.sequence_length})")
        if self.source == "text_files" and not self.train_files:
            raise ValueError("train_files: found none, expected at least one glob pattern with source: text_files")
        self._check_test_split()

    TEST_SPLIT_KEYS = {"pydoc": ("test_fraction",), "python_docs": ("test_fraction",),
                       "text_files": ("test_fraction", "test_files"), "lm1b": ("test_split",)}

    def _check_test_split(self) -> None:
        given = [key for key in ("test_fraction", "test_files", "test_split") if getattr(self, key)]
        allowed = self.TEST_SPLIT_KEYS[self.source]
        for key in given:
            if key not in allowed:
                raise ValueError(f"{key}: found {getattr(self, key)!r} with source: {self.source}, expected "
                                 f"{' or '.join(allowed)} to name its test split")
        if len(given) > 1:
            raise ValueError(f"{given[1]}: found it together with {given[0]}, expected one of them")
        if self.evaluation == "test" and not given:
            raise ValueError(f"evaluation: found test without a test split, expected {' or '.join(allowed)} set "
                             f"(source: {self.source})")

    @property
    def has_test_split(self) -> bool:
        return bool(self.test_fraction or self.test_files or self.test_split)

    @property
    def batch_size(self) -> int:
        return self.batch_tokens // self.sequence_length


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The fixed training budget of one fitness evaluation, its schedule and its checkpoints."""

    budget_kind: str = choice("seconds", "seconds", "steps", "flops")
    budget: float = between(60.0, 0.0, low_open=True)         # seconds of training steps, steps, or training FLOPs
    peak_learning_rate: float = between(0.01, 0.0, low_open=True)
    warmup_steps: int = between(10_000, 0)                   # linear warmup, then reciprocal square-root decay
    jit_compile: bool = True                                  # XLA
    steps_per_call: int = between(1, 1)                       # training steps per host call: on an accelerator,
                                                              # no host sync between them (checkpoints stay exact)
    checkpoints: tuple[float, ...] = ()                       # budget fractions in (0, 1) where a callback is asked
    seed: int = 0
    timeout_seconds: float | None = None                      # hard wall-clock limit of the whole evaluation
    memory_limit_gb: float | None = None                      # refuse (status oom) models estimated above this
    sampling_tokens: int = between(0, 0)                      # after training, time sampling this many tokens
                                                              # with a cache (tokens/s); 0: skip

    def __post_init__(self):
        fractions = list(self.checkpoints)
        if any(not 0 < f < 1 for f in fractions) or fractions != sorted(set(fractions)):
            raise ValueError(f"checkpoints: found {fractions}, expected increasing budget fractions in (0, 1)")


@dataclasses.dataclass(frozen=True)
class MutationWeights:
    """Relative probabilities of the mutation types: the paper's six (So et al. 2021, appendix A.4; uniform by
    default) and `macro`, which toggles and tunes the macro-options (off by default, as in the paper)."""

    delete: float = between(1.0, 0.0)
    insert: float = between(1.0, 0.0)
    delete_insert: float = between(1.0, 0.0)
    mutate_field: float = between(1.0, 0.0)
    swap: float = between(1.0, 0.0)
    mutate_bank: float = between(1.0, 0.0)
    macro: float = between(0.0, 0.0)

    def __post_init__(self):
        if not any(dataclasses.astuple(self)):
            raise ValueError(": found all weights zero, expected at least one positive weight")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Regularized evolution (Real et al. 2019) with halving hurdles, as in the Primer paper's search."""

    mode: str = choice("evolution", "evolution", "random", "hill_climb")   # baselines: search.evolution
    num_individuals: int = between(1000, 1)                   # evaluations in the whole run (seeds included)
    population_size: int = between(100, 2)
    tournament_size: int = between(10, 1)
    max_in_flight: int = between(8, 1)                        # W: evaluations running at once
    seeds: tuple[str, ...] = ("transformer",)                 # seed names or DNA files; the initial population
    random_mutations: int = between(10, 1)                    # random mode: mutations applied to a seed per child
    mutation_weights: MutationWeights = MutationWeights()
    priors: SearchPriors = SearchPriors()                     # how inserts draw (`{preset: uniform}`: the paper)
    max_instructions: int = between(40, 1)                    # per subprogram, a limit on insert mutations
    hurdles: int = between(4, 0)                              # H halving hurdles at (2^i - 1)/(2^(H+1) - 1)
    hurdle_window: int = between(100, 1)                      # the first hurdle compares with this many recent
                                                              # records, each next one with half as many
    hurdle_gain: float = between(0.0, 0.0)                    # 0: pass the better half of those records; g > 0:
                                                              # steer each hurdle to pass half of all it judged
                                                              # (primer_search.search.hurdles.quantile)
    min_hurdle_steps: int = between(10, 0)                    # no hurdle before this many steps (nor before
                                                              # training.warmup_steps): earlier is noise
    seed_evaluations: int = between(1, 1)                     # each seed is trained this many times first
                                                              # (fresh training seeds): the run's noise
                                                              # calibration, and the seed's fitness is the mean
    reevaluations: int = between(2, 0)                        # a program proposed again trains again with a
                                                              # fresh seed, up to this many times; its fitness
                                                              # is the mean (primer_search.search.cache)
    fec: bool = True                                          # functional-equivalence cache
    metric: str = choice("validation_loss", "validation_loss", "bits_per_byte")   # quality, lower is better
    # macro-options the `macro` mutation may switch on (mixture_of_depths, calm, megabyte)
    macro_options: tuple[str, ...] = ("mixture_of_depths", "calm", "megabyte")
    # quality: fitness = metric (the paper); inference: fitness = metric + inference_weight x
    # log2(sampling FLOPs per token / 1e6), i.e. each doubling of the sampling cost costs inference_weight
    objective: str = choice("quality", "quality", "inference")
    inference_weight: float = between(0.05, 0.0)
    seed: int = 0
    # execution
    address: str | None = None                                # None: local Ray; "auto" or "ray://host:port"
    executor: str = choice("ray", "ray", "in_process")
    num_cpus: int | None = None                               # local Ray: CPUs to use (None: all)
    cpus_per_trial: float = between(1.0, 0.0)
    gpus_per_trial: float = between(0.0, 0.0)
    evaluations_per_worker: int = between(10, 1)              # recycle worker processes (TF leaks per model)
    trial_timeout_seconds: float | None = None                # hard limit per trial (None: none)
    max_retries: int = between(2, 0)                          # of a trial whose worker or node died

    def __post_init__(self):
        if self.tournament_size > self.population_size:
            raise ValueError(f"tournament_size: found {self.tournament_size}, expected at most population_size "
                             f"({self.population_size})")
        if not self.seeds:
            raise ValueError("seeds: found none, expected at least one seed name or DNA file")
        unknown = [name for name in self.macro_options if name not in MACRO_SECTIONS]
        if unknown:
            raise ValueError(f"macro_options: found {unknown[0]!r}, expected names from {list(MACRO_SECTIONS)}")
        if (self.metric == "validation_loss" and self.mutation_weights.macro > 0
                and "megabyte" in self.macro_options):
            raise ValueError("metric: found validation_loss while macro mutations may switch on megabyte, expected "
                             "bits_per_byte (MEGABYTE candidates predict bytes, not tokens); or drop megabyte "
                             "from search.macro_options")


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    search: SearchConfig = SearchConfig()

    def __post_init__(self):
        if self.data.tokenizer == "bytes" and self.model.vocab_size != BYTE_VOCAB_SIZE:
            raise ValueError(f"model.vocab_size: found {self.model.vocab_size}, expected {BYTE_VOCAB_SIZE} with "
                             f"data.tokenizer: bytes (256 byte values, padding and end of document)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections) -> "Config":
        """A copy with some keys changed: `config.replace(training={"budget": 5})`."""
        data = self.to_dict()
        for section, values in sections.items():
            data[section].update(values)
        return config_from_dict(data)


def apply_overrides(data: dict, overrides) -> dict:
    """A copy of a config mapping with `section.key=value` assignments applied (values read as YAML)."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in (data or {}).items()}
    for item in overrides:
        path, sep, text = item.partition("=")
        keys = path.strip().split(".")
        if not sep or len(keys) != 2 or not all(keys):
            raise ValueError(f"--set {item!r}: expected section.key=value, e.g. training.budget=30")
        section = data.setdefault(keys[0], {})
        if not isinstance(section, dict):
            raise ValueError(f"--set {item!r}: config section {keys[0]!r} is not a mapping")
        try:
            section[keys[1]] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({str(err).splitlines()[0]})") from None
    return data


def config_from_dict(data, overrides=(), cls=None):
    """A `Config` (or another config dataclass `cls`) from a mapping, with `section.key=value` overrides."""
    return from_mapping(cls or Config, apply_overrides(data, overrides))


def load_config(path=None, overrides=(), cls=None):
    """The `Config` (or `cls`) in a YAML file (None: all defaults), with `section.key=value` overrides applied."""
    cls = cls or Config
    data = {}
    if path is not None:
        try:
            data = yaml.safe_load(read_text(path, "config")) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict):
            sections = ", ".join(field.name for field in dataclasses.fields(cls))
            raise ValueError(f"{path}: found {type(data).__name__}, expected a mapping of sections ({sections})")
    try:
        return config_from_dict(data, overrides, cls)
    except ValueError as err:
        raise ValueError(f"{path}: {err}" if path else str(err)) from None
