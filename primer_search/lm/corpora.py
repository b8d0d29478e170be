"""Text sources: where training and validation documents come from (before tokenization).

A source gives three views of one corpus:
    train_documents(seed)   an endless stream of training documents, in an order fixed by the seed
    sample_documents()      the training documents in stored order (the tokenizer learns from its start)
    validation_documents()  the held-out documents, always in the same order
and a `key` that names its content, so caches (the subword vocabulary) are shared exactly when the text is the
same. Four kinds exist:
    pydoc       the English reference text shipped with every Python (`pydoc_data.topics`), split into paragraphs;
                needs no download, read at run time, so a first run works offline
    python_docs pydoc's paragraphs and those of the standard library's docstrings: about 4x the text, as offline
    text_files  the user's own files (glob patterns); one document per line or per file
    lm1b        the One Billion Word benchmark through tensorflow-datasets (`primer_search.lm.lm1b`)
Without a separate validation set, a document is held out when a hash of its text falls under
`validation_fraction`: the split is stable, independent of document order, and never shares a document.
A test split (`primer-search confirm` measures on it; none by default): the documents whose CRC32 falls in the top
`test_fraction` of its range leave training (disjoint from the validation slice at the bottom), or `test_files`;
LM1B names a TFDS split. `test_documents()` reads it, in stored order.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import glob
import hashlib
import os
import pathlib
import sysconfig
import zlib
from typing import Callable, Iterator

import numpy as np

from primer_search.config import DataConfig


@dataclasses.dataclass(frozen=True)
class InMemorySource:
    """A corpus small enough to hold in memory (pydoc, the user's files)."""

    key: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.train or not self.validation:
            raise ValueError(f"corpus {self.key}: found {len(self.train)} training and {len(self.validation)} "
                             f"validation documents, expected at least one of each")

    def train_documents(self, seed: int) -> Iterator[str]:
        rng = np.random.default_rng(seed)
        while True:  # a fresh permutation every epoch
            for i in rng.permutation(len(self.train)):
                yield self.train[i]

    def sample_documents(self) -> Iterator[str]:
        return iter(self.train)

    def validation_documents(self) -> Iterator[str]:
        return iter(self.validation)

    def test_documents(self) -> Iterator[str]:
        if not self.test:
            raise ValueError(f"corpus {self.key}: found no test documents, expected data.test_fraction large enough "
                             f"to hold out at least one, or data.test_files")
        return iter(self.test)


def _content_key(prefix: str, documents) -> str:
    digest = hashlib.sha256()
    for document in documents:
        digest.update(document.encode("utf-8"))
        digest.update(b"\0")
    return f"{prefix}-{digest.hexdigest()[:12]}"


def hash_split(documents, fraction: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train, validation): a document is held out when the CRC32 of its text falls under `fraction`."""
    train, validation = [], []
    for document in documents:
        held_out = zlib.crc32(document.encode("utf-8")) < fraction * 2 ** 32
        (validation if held_out else train).append(document)
    return tuple(train), tuple(validation)


def split_off_test(documents, fraction: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(rest, test): a document is a test document when the CRC32 of its text falls in the top `fraction` of its
    range (so never one `hash_split` holds out for validation, whose fraction is at most one half)."""
    rest, test = [], []
    for document in documents:
        held_out = zlib.crc32(document.encode("utf-8")) >= (1.0 - fraction) * 2 ** 32
        (test if held_out else rest).append(document)
    return tuple(rest), tuple(test)


def _paragraphs(texts) -> list[str]:
    return [p.strip() for text in texts for p in text.split("\n\n") if p.strip()]


def _pydoc_topics() -> list[str]:
    from pydoc_data.topics import topics
    return [topics[name] for name in sorted(topics)]


STDLIB_SKIPPED = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"}


@functools.lru_cache(maxsize=1)
def stdlib_docstrings() -> tuple[str, ...]:
    """The standard library's docstrings (test suites and IDLE left out). About 5 s; cached per process."""
    return docstrings(pathlib.Path(sysconfig.get_paths()["stdlib"]), STDLIB_SKIPPED)


def docstrings(root: pathlib.Path, skipped=frozenset()) -> tuple[str, ...]:
    """The docstrings of the modules, classes and functions of the `.py` files under `root`, in path and source
    order (parsed, never imported), leaving out files under a directory named in `skipped`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if set(skipped) & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):      # a template or a file for another Python version
            continue
        found.extend(doc for node in ast.walk(tree)
                     if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                     and (doc := ast.get_docstring(node)))
    return tuple(found)


def _split_source(prefix: str, paragraphs, validation_fraction: float, test_fraction: float) -> InMemorySource:
    train, validation = hash_split(paragraphs, validation_fraction)
    train, test = split_off_test(train, test_fraction) if test_fraction else (train, ())
    return InMemorySource(_content_key(prefix, train), train, validation, test)


def pydoc_source(validation_fraction: float = 0.05, test_fraction: float = 0.0) -> InMemorySource:
    """Paragraphs of the standard library's pydoc topics (about 0.47 MB of English in CPython 3.12)."""
    return _split_source("pydoc", _paragraphs(_pydoc_topics()), validation_fraction, test_fraction)


def python_docs_source(validation_fraction: float = 0.05, test_fraction: float = 0.0) -> InMemorySource:
    """Paragraphs of the pydoc topics and of the standard library's docstrings (about 2.0 MB in CPython 3.11)."""
    paragraphs = _paragraphs([*_pydoc_topics(), *stdlib_docstrings()])
    return _split_source("python-docs", list(dict.fromkeys(paragraphs)), validation_fraction, test_fraction)


def _expand(patterns, key: str = "data files") -> list[str]:
    paths = []
    for pattern in patterns:
        found = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not found:
            raise ValueError(f"{key}: {pattern!r} matches no file, expected a glob pattern of text files")
        paths.extend(p for p in found if os.path.isfile(p))
    return paths


def check_files(config: DataConfig) -> None:
    """Refuse `text_files` globs that match no file, naming the key (cheap: nothing is read)."""
    if config.source == "text_files":
        for key in ("train_files", "validation_files", "test_files"):
            _expand(getattr(config, key), f"data.{key}")


def _read_documents(paths, per: str) -> list[str]:
    documents = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        if per == "file":
            documents.append(text.strip())
        else:
            documents.extend(line.strip() for line in text.splitlines())
    return [d for d in documents if d]


def text_file_source(config: DataConfig) -> InMemorySource:
    """The user's files: `train_files` and `validation_files` globs, or a hash split of `train_files`."""
    documents = _read_documents(_expand(config.train_files, "data.train_files"), config.document)
    if config.validation_files:
        train, validation = tuple(documents), tuple(_read_documents(
            _expand(config.validation_files, "data.validation_files"), config.document))
    else:
        train, validation = hash_split(documents, config.validation_fraction)
    test: tuple[str, ...] = ()
    if config.test_files:
        test = tuple(_read_documents(_expand(config.test_files, "data.test_files"), config.document))
    elif config.test_fraction:
        train, test = split_off_test(train, config.test_fraction)
    return InMemorySource(_content_key("files", train), train, validation, test)


def _lm1b(config: DataConfig):
    from primer_search.lm.lm1b import lm1b_source
    return lm1b_source(config)


_SOURCES: dict[str, Callable[[DataConfig], object]] = {
    "pydoc": lambda config: pydoc_source(config.validation_fraction, config.test_fraction),
    "python_docs": lambda config: python_docs_source(config.validation_fraction, config.test_fraction),
    "text_files": text_file_source,
    "lm1b": _lm1b,
}


def open_source(config: DataConfig):
    """The text source the data config names."""
    return _SOURCES[config.source](config)
