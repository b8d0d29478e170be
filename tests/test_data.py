import dataclasses
import itertools
import threading
import time

import numpy as np
import pytest

from primer_search.config import DataConfig
from primer_search.lm.data import Prefetcher, load_data, packed_batches, validation_set
from primer_search.lm.tokenizer import EOS_ID, PAD_ID, ByteTokenizer


class WordTokenizer:
    """One id per word: ids are easy to check by hand."""

    vocab_size = 100

    def encode(self, texts):
        return [np.array([10 + len(w) for w in t.split()], np.int32) for t in texts]


def test_rows_overlap_by_one_token_so_every_token_is_a_target_once():
    stream = np.arange(2, 60, dtype=np.int32)
    chunks = [stream[:7], stream[7:30], stream[30:]]
    batches = list(packed_batches(iter(chunks), batch_size=2, length=5))
    assert [b.shape for b in batches] == [(2, 6)] * 5              # (58 - 1) // 10 full batches
    rows = np.concatenate(batches)
    assert (rows[1:, 0] == rows[:-1, -1]).all()                      # consecutive rows share one token
    targets = rows[:, 1:].ravel()
    assert targets.tolist() == stream[1:1 + len(targets)].tolist()


def test_validation_set_by_hand():
    documents = iter(["one three", "four", "never read"])
    v = validation_set(documents, WordTokenizer(), length=2, min_tokens=5)
    # stream: EOS 13 15 EOS 14 EOS -> 5 targets in 3 rows of 2, the last padded
    assert v.inputs.tolist() == [[EOS_ID, 13], [15, EOS_ID], [14, EOS_ID]]
    assert v.targets.tolist() == [[13, 15], [EOS_ID, 14], [EOS_ID, PAD_ID]]
    assert v.num_targets == 5 and v.num_documents == 2
    assert v.num_bytes == len("one three") + 1 + len("four") + 1


def test_bytes_validation_counts_every_byte_once():
    v = validation_set(iter(["hé", "x\x00"]), ByteTokenizer(), length=4, min_tokens=1000)
    assert v.num_bytes == 3 + 1 + 2 + 1 == v.num_targets


def test_train_batches_shapes_and_determinism():
    config = DataConfig(source="pydoc", tokenizer="bytes", sequence_length=16, batch_tokens=128,
                        validation_tokens=300)
    data = load_data(config, 258)
    first = list(itertools.islice(data.train_batches(seed=3), 4))
    assert all(b.shape == (8, 17) and b.dtype == np.int32 for b in first)
    again = list(itertools.islice(data.train_batches(seed=3), 4))
    other = next(data.train_batches(seed=4))
    assert all((a == b).all() for a, b in zip(first, again)) and not (other == first[0]).all()
    with data.prefetched_batches(seed=3) as prefetched:
        pairs = list(itertools.islice(prefetched, 4))
    assert all(inputs.shape == targets.shape == (8, 16) for inputs, targets in pairs)
    assert all((i == b[:, :-1]).all() and (t == b[:, 1:]).all() for (i, t), b in zip(pairs, first))
    assert data.validation.num_targets >= 300 and data.validation.inputs.shape[1] == 16
    assert load_data(config, 258) is data                              # cached per process


def test_subword_data_uses_the_cache_dir(tmp_path):
    config = DataConfig(source="pydoc", cache_dir=str(tmp_path), sequence_length=32, batch_tokens=64,
                        validation_tokens=100)
    data = load_data(config, 512)
    assert data.vocab_size == 512 and list(tmp_path.glob("pydoc-*-unigram512-*.model"))
    batch = next(data.train_batches(seed=0))
    assert batch.shape == (2, 33) and batch.max() < 512 and PAD_ID not in batch


def test_prefetcher_hands_over_errors_and_stops():
    def failing():
        yield 1
        raise ValueError("corpus went away")

    prefetcher = Prefetcher(failing(), depth=2)
    assert next(prefetcher) == 1
    with pytest.raises(ValueError, match="corpus went away"):
        next(prefetcher)
    endless = Prefetcher(itertools.count(), depth=2)
    assert [next(endless) for _ in range(3)] == [0, 1, 2]
    endless.close()
    assert not endless._thread.is_alive()


def test_closing_a_prefetcher_ends_its_thread_even_with_a_full_queue():
    finished = Prefetcher(iter([1]), depth=1)          # 1 fills the queue; the end marker then waits for room
    time.sleep(0.3)
    finished.close()
    assert not finished._thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name == "prefetch"]


def test_evaluation_on_the_test_split_measures_the_test_documents():
    from primer_search.lm.corpora import pydoc_source

    config = DataConfig(tokenizer="bytes", sequence_length=16, batch_tokens=128, validation_tokens=10**9,
                        test_fraction=0.05, evaluation="test")
    data = load_data(config, 258)
    test = pydoc_source(config.validation_fraction, 0.05).test
    assert data.validation.num_documents == len(test)
    assert data.validation.num_bytes == sum(len(d.encode()) + 1 for d in test)
    assert load_data(dataclasses.replace(config, evaluation="validation"), 258).validation.num_bytes != \
        data.validation.num_bytes
