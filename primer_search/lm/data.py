"""Language-model data: a text source and a tokenizer packed into fixed-shape batches.

Training batches are built in Python (tokenizing and packing are fast: millions of tokens per second) and
prepared ahead of the training step by a background thread (`Prefetcher`).

Packing. Documents are tokenized, each followed by the end-of-document id, and concatenated into one stream.
Row r of the stream is tokens [r*L, r*L + L] (L + 1 tokens): inputs are its first L, targets its last L. Rows
overlap by one token, so every token of the stream after the first is a target exactly once and no document
boundary is padded. A training batch is `batch_tokens / L` rows, so every step sees exactly `batch_tokens`
targets.

Validation. The first validation documents, whole, until at least `validation_tokens` tokens; the stream starts
with an end-of-document id, so the first real token is predicted too; the last row is padded (id 0, ignored by the
loss). `num_bytes` is the UTF-8 size of that text counting one byte per document end (a newline), so

    bits per byte = (sum of target NLL in nats) / (ln 2 * num_bytes)

compares models across tokenizers: every tokenizer predicts the same text, documents ends included.
With `data.evaluation: test` (set by `primer-search confirm`) the same is built from the source's test documents
instead, so every metric called "validation" is measured on the test split.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import queue
import threading
from typing import Iterator

import numpy as np

from primer_search.config import DataConfig
from primer_search.lm.corpora import open_source
from primer_search.lm.tokenizer import EOS_ID, PAD_ID, ByteTokenizer, subword_tokenizer

ENCODE_CHUNK = 512  # documents tokenized per call
PREFETCH = 8        # training batches prepared ahead


def _token_stream(documents: Iterator[str], tokenizer) -> Iterator[np.ndarray]:
    """Chunks of the packed stream: token ids of whole documents, each followed by EOS."""
    eos = np.array([EOS_ID], np.int32)
    while chunk := list(itertools.islice(documents, ENCODE_CHUNK)):
        pieces = []
        for ids in tokenizer.encode(chunk):
            pieces += [ids, eos]
        yield np.concatenate(pieces)


def packed_batches(chunks: Iterator[np.ndarray], batch_size: int, length: int) -> Iterator[np.ndarray]:
    """[batch_size, length + 1] windows of the stream with stride `length` (see the module docstring)."""
    need = batch_size * length + 1
    buffer = np.zeros([0], np.int32)
    for chunk in chunks:
        buffer = np.concatenate([buffer, chunk])
        while len(buffer) >= need:
            block = buffer[:need]
            yield np.lib.stride_tricks.sliding_window_view(block, length + 1)[::length].copy()  # [B, L+1]
            buffer = buffer[need - 1:]


@dataclasses.dataclass(frozen=True)
class ValidationSet:
    inputs: np.ndarray     # [N, L] int32
    targets: np.ndarray    # [N, L] int32, PAD_ID where there is nothing to predict
    num_bytes: int         # UTF-8 bytes of the documents, plus one per document end
    num_documents: int

    @property
    def num_targets(self) -> int:
        return int((self.targets != PAD_ID).sum())

    @property
    def num_late_targets(self) -> int:
        """Targets at positions L/2 on: those `late_validation_loss` averages over."""
        return int((self.targets[:, self.targets.shape[1] // 2:] != PAD_ID).sum())


def validation_set(documents: Iterator[str], tokenizer, length: int, min_tokens: int,
                   num_documents: int | None = None) -> ValidationSet:
    """The first documents, whole, until at least `min_tokens` tokens, or exactly `num_documents` when given."""
    eos = np.array([EOS_ID], np.int32)
    ids, num_targets, num_bytes = [eos], 0, 0
    for document in documents:
        ids += [tokenizer.encode([document])[0], eos]
        num_targets += len(ids[-2]) + 1
        num_bytes += len(document.encode("utf-8")) + 1
        if len(ids) // 2 == num_documents or (num_documents is None and num_targets >= min_tokens):
            break
    rows = -(-num_targets // length)
    stream = np.full([rows * length + 1], PAD_ID, np.int32)       # tokenizers never emit PAD_ID
    stream[:num_targets + 1] = np.concatenate(ids)
    windows = np.lib.stride_tricks.sliding_window_view(stream, length + 1)[::length]   # [N, L+1]
    return ValidationSet(windows[:, :-1].copy(), windows[:, 1:].copy(), num_bytes, len(ids) // 2)


@dataclasses.dataclass(frozen=True)
class LanguageData:
    """A tokenized corpus: training batches on demand and a fixed validation set."""

    config: DataConfig
    source: object
    tokenizer: object
    validation: ValidationSet

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def train_batches(self, seed: int) -> Iterator[np.ndarray]:
        """Endless [B, L+1] int32 batches in an order fixed by the seed."""
        chunks = _token_stream(self.source.train_documents(seed), self.tokenizer)
        return packed_batches(chunks, self.config.batch_size, self.config.sequence_length)

    def prefetched_batches(self, seed: int, depth: int = PREFETCH, skip: int = 0) -> "Prefetcher":
        """The same batches after the first `skip`, prepared `depth` ahead in a background thread, as
        (inputs, targets) [B, L] each."""
        batches = itertools.islice(self.train_batches(seed), skip, None)
        return Prefetcher(((rows[:, :-1], rows[:, 1:]) for rows in batches), depth)


class Prefetcher:
    """Iterates `items` in a daemon thread, up to `depth` items ahead of the consumer; `close()` stops and joins it.

    Tokenizing and packing run in Python, so they overlap the training step (which releases the GIL) here
    rather than inside tf.data: a `from_generator` iterator can take about a second to tear down, which would be
    charged to every evaluation."""

    _END = object()

    def __init__(self, items: Iterator, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(items,), daemon=True, name="prefetch")
        self._thread.start()

    def _fill(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
        except Exception as err:  # noqa: BLE001 -- handed to the consumer, raised there
            self._put(err)
            return
        self._put(self._END)

    def _put(self, item) -> bool:
        """Queue an item unless the consumer closed first (then False)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._END:
            raise StopIteration
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        """Stop the thread and wait for it: a thread left inside native code at interpreter exit aborts Python."""
        self._stop.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def held_out_documents(config: DataConfig, source) -> Iterator[str]:
    """The documents `data.evaluation` names: the validation documents, or the test documents."""
    return source.test_documents() if config.evaluation == "test" else source.validation_documents()


def make_tokenizer(config: DataConfig, source, vocab_size: int):
    if config.tokenizer == "bytes":
        return ByteTokenizer()
    return subword_tokenizer(source.sample_documents(), source.key, vocab_size, config.tokenizer_sample_bytes,
                             config.cache_dir)


@functools.lru_cache(maxsize=4)
def load_data(config: DataConfig, vocab_size: int) -> LanguageData:
    """Open the source, load (or train once) its tokenizer and build the validation set; cached per process."""
    source = open_source(config)
    tokenizer = make_tokenizer(config, source, vocab_size)
    validation = validation_set(held_out_documents(config, source), tokenizer, config.sequence_length,
                                config.validation_tokens)
    return LanguageData(config, source, tokenizer, validation)


@functools.lru_cache(maxsize=4)
def load_byte_data(config: DataConfig, vocab_size: int, bytes_per_position: int) -> LanguageData:
    """The text of `load_data(config, vocab_size)` read as bytes, for byte-level models that compete with token
    models in one search: rows of `bytes_per_position x sequence_length` bytes (so a MEGABYTE model with that
    patch size has `sequence_length` global positions), batches of as many rows as the token batches, and the
    validation set over exactly the same documents, so bits per byte compare."""
    tokens = load_data(config, vocab_size)
    config = dataclasses.replace(config, tokenizer="bytes",
                                 sequence_length=config.sequence_length * bytes_per_position,
                                 batch_tokens=config.batch_tokens * bytes_per_position)
    validation = validation_set(held_out_documents(config, tokens.source), ByteTokenizer(), config.sequence_length,
                                config.validation_tokens, num_documents=tokens.validation.num_documents)
    return LanguageData(config, tokens.source, ByteTokenizer(), validation)
