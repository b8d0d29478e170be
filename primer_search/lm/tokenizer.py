"""Tokenizers: a SentencePiece subword vocabulary trained once per corpus and cached, and a byte-level mode.

Both map text to int32 ids with two shared specials: 0 pads, 1 ends a document. The byte tokenizer is
`id = byte + 2` (258 ids, no unknown token, so a genuine 0x00 byte is id 2 and is never mistaken for padding).
The subword tokenizer is a SentencePiece unigram model with byte fallback, so every string is encodable and
decoding gives the text back; its vocabulary is trained from a sample of the training split only.

The trained model is cached as `<cache_dir>/<corpus key>-unigram<vocab>-<settings>.model`: the corpus key names
the training text, the settings hash covers the trainer options and the sample size.
Training happens under an exclusive file lock and the file appears by atomic rename, so parallel workers (Ray
workers on one node, or on nodes sharing `cache_dir`) train it once and all load the same vocabulary.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import pathlib
import re
import tempfile
from typing import Iterable

import numpy as np
import sentencepiece as spm

from primer_search.config import BYTE_VOCAB_SIZE

PAD_ID, EOS_ID = 0, 1
BYTE_OFFSET = 2                    # byte b is id b + 2, up to BYTE_VOCAB_SIZE - 1


# SentencePiece training settings; they are part of the cache key, so changing them trains a new model.
TRAINER_OPTIONS = dict(
    model_type="unigram", pad_id=PAD_ID, eos_id=EOS_ID, unk_id=2, bos_id=-1, byte_fallback=True,
    character_coverage=0.9995, max_sentence_length=1 << 20, input_sentence_size=0, minloglevel=2,
    normalization_rule_name="identity", remove_extra_whitespaces=False)  # so that decode(encode(t)) == t


def default_cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("PRIMER_SEARCH_CACHE", "~/.cache/primer_search")).expanduser()


class ByteTokenizer:
    """UTF-8 bytes as ids 2..257."""

    vocab_size = BYTE_VOCAB_SIZE
    name = "bytes"

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), np.uint8).astype(np.int32) + BYTE_OFFSET for t in texts]

    def decode(self, ids) -> str:
        data = bytes(int(i) - BYTE_OFFSET for i in ids if int(i) >= BYTE_OFFSET)
        return data.decode("utf-8", errors="replace")


class SentencePieceTokenizer:
    """A trained SentencePiece model (see `subword_tokenizer` for training and caching)."""

    def __init__(self, model_path):
        self.path = pathlib.Path(model_path)
        self._processor = spm.SentencePieceProcessor(model_file=str(self.path))
        self.vocab_size = self._processor.get_piece_size()
        self.name = self.path.stem

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(ids, np.int32) for ids in self._processor.encode(list(texts))]

    def decode(self, ids) -> str:
        return self._processor.decode([int(i) for i in ids if int(i) != PAD_ID])


@contextlib.contextmanager
def _exclusive(lock_path: pathlib.Path):
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sample(documents: Iterable[str], sample_bytes: int):
    """The first documents, up to `sample_bytes` of text."""
    seen = 0
    for document in documents:
        yield document
        seen += len(document.encode("utf-8"))
        if seen >= sample_bytes:
            return


def train_sentencepiece(documents: Iterable[str], vocab_size: int, sample_bytes: int, path) -> None:
    """Train a unigram model on the first `sample_bytes` of `documents` and write it to `path`."""
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=_sample(documents, sample_bytes), model_writer=model,
                                       vocab_size=vocab_size, num_threads=os.cpu_count() or 1, **TRAINER_OPTIONS)
    except RuntimeError as err:
        most, least = re.search(r"<= (\d+)", str(err)), re.search(r"required_chars\. \d+ vs (\d+)", str(err))
        if least:
            expected, why = f"at least {least.group(1)}", "its training text has more distinct characters"
        else:
            expected = f"at most {most.group(1)}" if most else "a smaller size"
            why = "SentencePiece cannot learn more pieces from its training text"
        raise ValueError(f"model.vocab_size: found {vocab_size}, expected {expected} for this corpus ({why}: "
                         f"{str(err).strip()[:200]})") from None
    path = pathlib.Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, delete=False) as tmp:
        tmp.write(model.getvalue())
    os.replace(tmp.name, path)


def subword_tokenizer(documents: Iterable[str], corpus_key: str, vocab_size: int, sample_bytes: int,
                      cache_dir=None) -> SentencePieceTokenizer:
    """The cached SentencePiece model for this corpus and size, training it first if no process has yet.

    `documents` is iterated only when the model must be trained."""
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    settings = hashlib.sha256(json.dumps([TRAINER_OPTIONS, sample_bytes], sort_keys=True).encode()).hexdigest()
    path = cache / f"{corpus_key}-unigram{vocab_size}-{settings[:8]}.model"
    if not path.exists():
        with _exclusive(path.with_suffix(".lock")):
            if not path.exists():  # another process may have trained it while we waited
                train_sentencepiece(documents, vocab_size, sample_bytes, path)
    return SentencePieceTokenizer(path)
