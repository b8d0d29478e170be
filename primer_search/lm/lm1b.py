"""LM1B (the One Billion Word benchmark) as a text source, read through tensorflow-datasets.

Layout. TFDS keeps everything under one data directory, `data.tfds_data_dir` (None: TFDS's default,
$TFDS_DATA_DIR or ~/tensorflow_datasets):
    <data_dir>/lm1b/1.1.0/                       the prepared dataset (about 4.4 GiB of TFRecord shards)
    <data_dir>/downloads/manual/1-billion-word-language-modeling-benchmark-r13output.tar.gz
                                                 the raw archive (1.8 GB), if you fetched it yourself
    <data_dir>/downloads/                        TFDS's own downloads and extracted archives (deletable afterwards)
`python -m primer_search.lm.lm1b [DATA_DIR]` prepares it ahead of a run (the `tfds build` command of TFDS 4.9.10 needs
apache-beam just to start).
Every document is one line of the benchmark (a tokenized English news sentence). The config's split expressions
(`train[:98%]`, `train[98%:]`, `test`, ...) pick the training and validation documents, and `data.test_split`
(e.g. `test`, LM1B's own test split) the documents `primer-search confirm` measures on.

Online and offline. A prepared dataset is read as it is, without network. Otherwise it is prepared once: from the
archive in downloads/manual/ when it is there (no network needed; TFDS checks its size and SHA-256), else by
downloading the archive from statmt.org, announced in the log first. When neither works, the archive is not there
and statmt.org cannot be reached, a ValueError says what is missing and what to do. The server is probed first
because TFDS retries a failed download for over three minutes.

Order. Training documents are read with shuffled shard order and a shuffle buffer of `data.shuffle_buffer`
documents, both seeded, and repeated forever with a new order every epoch. TensorFlow combines these seeds with its
global seed (`keras.utils.set_random_seed`, which the trainer sets first), so an order is reproduced by the same
seed under the same global seed. Validation and sample documents are read in stored order.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
from typing import Iterator

import requests
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from primer_search.config import DataConfig

NAME = "lm1b"
READ_BATCH = 1024        # documents per tf.data -> Python transfer (one element at a time is slow)
PROBE_TIMEOUT = 15       # seconds to reach the download server before giving up

log = logging.getLogger(__name__)


def source_key(version: str, train_split: str, validation_split: str) -> str:
    """A file-name-safe name of the content, e.g. lm1b-1.1.0-train_to98pct-train_98pctto."""
    def safe(split: str) -> str:
        split = split.replace("%", "pct").replace(":", "to").replace("+", "plus")
        return re.sub(r"[^A-Za-z0-9.]+", "_", split).strip("_")
    return f"{NAME}-{version}-{safe(train_split)}-{safe(validation_split)}"


@dataclasses.dataclass(frozen=True)
class Lm1bSource:
    """LM1B documents of two split expressions of a prepared TFDS builder."""

    key: str
    builder: tfds.core.DatasetBuilder
    train_split: str
    validation_split: str
    shuffle_buffer: int
    test_split: str | None = None

    def _texts(self, split: str, seed: int | None = None) -> tf.data.Dataset:
        """Scalar tf.string documents of `split`, non-empty; shards shuffled by `seed` unless it is None."""
        examples = self.builder.as_dataset(split=split, shuffle_files=seed is not None,
                                           read_config=tfds.ReadConfig(shuffle_seed=seed))
        return examples.map(lambda example: example["text"]).filter(lambda text: tf.strings.length(text) > 0)

    def train_documents(self, seed: int) -> Iterator[str]:
        texts = self._texts(self.train_split, seed).shuffle(self.shuffle_buffer, seed=seed).repeat()
        return _strings(texts)

    def sample_documents(self) -> Iterator[str]:
        return _strings(self._texts(self.train_split))

    def validation_documents(self) -> Iterator[str]:
        return _strings(self._texts(self.validation_split))

    def test_documents(self) -> Iterator[str]:
        if self.test_split is None:
            raise ValueError("LM1B: found no data.test_split, expected a TFDS split expression such as 'test'")
        return _strings(self._texts(self.test_split))


def _strings(texts: tf.data.Dataset) -> Iterator[str]:
    for batch in texts.batch(READ_BATCH).prefetch(2).as_numpy_iterator():   # batch: [<= READ_BATCH] bytes
        for text in batch:
            yield text.decode("utf-8")


def lm1b_source(config: DataConfig) -> Lm1bSource:
    """LM1B under `config.tfds_data_dir`, prepared first if needed (see the module docstring)."""
    builder = tfds.builder(NAME, data_dir=config.tfds_data_dir)
    if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):   # is_prepared(), quietly
        _prepare(builder)
    for field in ("train_split", "validation_split", "test_split"):
        split = getattr(config, field)
        if split is None:
            continue
        try:
            count = builder.info.splits[split].num_examples
        except (KeyError, ValueError, AssertionError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"data.{field}: found {split!r}, expected a TFDS split expression over LM1B's "
                             f"splits {sorted(builder.info.splits)}, such as 'train[:98%]' ({reason})") from None
        if count <= 0:
            raise ValueError(f"data.{field}: {split!r} selects no LM1B documents")
    return Lm1bSource(source_key(str(builder.version), config.train_split, config.validation_split), builder,
                      config.train_split, config.validation_split, config.shuffle_buffer, config.test_split)


def _prepare(builder: tfds.core.DatasetBuilder) -> None:
    """Build the TFDS dataset from the placed archive, or from a download; ValueError when neither can work."""
    root = os.path.dirname(os.path.dirname(builder.data_dir))        # data_dir is <root>/lm1b/<version>
    (url, expected), = builder.url_infos.items()                      # the one archive and its size and SHA-256
    archive = os.path.join(root, "downloads", "manual", expected.filename)   # where TFDS looks for it first
    todo = (f"put the archive ({expected.size / 1e9:.1f} GB, {url}) at {archive}, or run "
            f"`python -m primer_search.lm.lm1b DIR` on a machine with network and copy DIR/{NAME} to {root}/{NAME}")
    if tf.io.gfile.exists(archive):
        log.warning("LM1B: preparing %s from %s (several minutes, about 11 GB of disk)", builder.data_dir, archive)
    elif _reachable(url):
        log.warning("LM1B: downloading %s (%.1f GB) and preparing %s (about 11 GB of disk)", url,
                    expected.size / 1e9, builder.data_dir)
    else:
        raise ValueError(f"LM1B is not prepared in {root} and {url.split('/')[2]} cannot be reached: {todo}")
    try:
        builder.download_and_prepare()
    except requests.RequestException as err:
        raise ValueError(f"LM1B: download of {url} failed ({type(err).__name__}): {todo}") from None
    except NonMatchingChecksumError:
        raise ValueError(f"LM1B: the archive (at {archive} or in {root}/downloads) is not the expected file of "
                         f"{int(expected.size)} bytes with SHA-256 {expected.checksum}: delete it and {todo}") from None


def _reachable(url: str) -> bool:
    try:
        requests.head(url, timeout=PROBE_TIMEOUT, allow_redirects=True)
    except requests.RequestException:
        return False
    return True


def main(argv=None) -> int:
    """`python -m primer_search.lm.lm1b [DATA_DIR]`: prepare LM1B in DATA_DIR (default: TFDS's), say what is there."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: python -m primer_search.lm.lm1b [DATA_DIR]", file=sys.stderr)
        return 2
    try:
        source = lm1b_source(DataConfig(source="lm1b", tfds_data_dir=args[0] if args else None))
    except ValueError as err:
        print(f"primer_search.lm.lm1b: error: {err}", file=sys.stderr)
        return 2
    splits = ", ".join(f"{name} {split.num_examples:,}" for name, split in sorted(source.builder.info.splits.items()))
    print(f"LM1B {source.builder.version} is prepared in {source.builder.data_dir} (documents: {splits})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
