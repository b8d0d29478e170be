"""LM1B through the real TFDS builder, prepared offline from a tiny archive in the LM1B layout; network disabled."""

import io
import itertools
import re
import shutil
import tarfile

import pytest
import requests
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import checksums

from primer_search.config import DataConfig
from primer_search.lm import lm1b
from primer_search.lm.corpora import open_source

TOP = "1-billion-word-language-modeling-benchmark-r13output"
ARCHIVE = f"downloads/manual/{TOP}.tar.gz"                     # relative to the TFDS data dir
# Two training shards of 100 lines (one not ASCII, one blank) and a held-out shard, as in the real archive.
SHARDS = {
    f"{TOP}/training-monolingual.tokenized.shuffled/news.en-0000{k}-of-00100":
        [f"train {k} {i} ." for i in range(98)] + [f"Zürich café {k} .", ""]
    for k in (1, 2)
}
SHARDS[f"{TOP}/heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050"] = [
    f"held out {i} ." for i in range(10)]
TRAIN_LINES = {line for name, lines in SHARDS.items() if "training" in name for line in lines if line}


def _write_archive(root, shards=SHARDS):
    path = root / ARCHIVE
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, lines in shards.items():
            data = "".join(line + "\n" for line in lines).encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _no_network(monkeypatch):
    """Every HTTP request (the reachability probe and TFDS's downloader) fails at once, as offline."""
    def refuse(*args, **kwargs):
        raise requests.ConnectionError("network disabled in tests")
    monkeypatch.setattr(requests.sessions.Session, "request", refuse)


def _accept_archive(monkeypatch, archive):
    """Register the tiny archive's size and SHA-256 in place of the real one's, so TFDS accepts it."""
    builder_cls = tfds.builder_cls("lm1b")
    (url, real), = builder_cls.url_infos.items()
    info = checksums.compute_url_info(archive)
    monkeypatch.setattr(builder_cls, "url_infos", {url: checksums.UrlInfo(info.size, info.checksum, real.filename)})


def _config(root, **fields):
    return DataConfig(source="lm1b", tfds_data_dir=str(root), shuffle_buffer=64, **fields)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    _no_network(monkeypatch)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A TFDS data dir with LM1B prepared from the placed archive; the downloads are deleted afterwards."""
    root = tmp_path_factory.mktemp("tfds")
    archive = _write_archive(root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _no_network(monkeypatch)
        _accept_archive(monkeypatch, archive)
        lm1b.lm1b_source(_config(root))
    shutil.rmtree(root / "downloads")       # from here on only the prepared dataset is there
    return root


def test_prepares_from_placed_archive_and_reads_offline(prepared):
    assert (prepared / "lm1b" / "1.1.0" / "dataset_info.json").exists()
    source = open_source(_config(prepared))                   # through corpora's dispatch
    assert isinstance(source, lm1b.Lm1bSource)
    assert all(isinstance(document, str) and document for document in source.validation_documents())


def test_sample_and_validation_partition_the_training_lines(prepared):
    source = lm1b.lm1b_source(_config(prepared))
    sample, validation = list(source.sample_documents()), list(source.validation_documents())
    assert all(isinstance(document, str) for document in sample + validation)
    assert len(validation) >= 1 and not set(sample) & set(validation)
    assert set(sample) | set(validation) == TRAIN_LINES       # blank lines dropped, UTF-8 decoded
    assert {"Zürich café 1 .", "Zürich café 2 ."} <= TRAIN_LINES


def test_validation_and_sample_order_is_fixed(prepared):
    first, second = lm1b.lm1b_source(_config(prepared)), lm1b.lm1b_source(_config(prepared))
    assert list(first.validation_documents()) == list(second.validation_documents())
    assert list(first.sample_documents()) == list(second.sample_documents())


def test_training_stream_is_endless_and_fixed_by_the_seed(prepared):
    source = lm1b.lm1b_source(_config(prepared))
    sample = list(source.sample_documents())
    n = len(sample)
    stream = list(itertools.islice(source.train_documents(seed=1), 3 * n))
    assert len(stream) == 3 * n and all(isinstance(document, str) for document in stream)
    for epoch in range(3):                                    # every epoch is a permutation of the split
        assert sorted(stream[epoch * n:(epoch + 1) * n]) == sorted(sample)
    assert stream[:n] != sample and stream[:n] != stream[n:2 * n]
    assert list(itertools.islice(source.train_documents(seed=1), 3 * n)) == stream
    assert list(itertools.islice(source.train_documents(seed=2), 3 * n)) != stream


def test_test_split_and_key(prepared):
    source = lm1b.lm1b_source(_config(prepared, validation_split="test"))
    assert list(source.validation_documents())[:1][0].startswith("held out")
    assert source.key == "lm1b-1.1.0-train_to98pct-test"
    default = lm1b.lm1b_source(_config(prepared)).key
    assert default == "lm1b-1.1.0-train_to98pct-train_98pctto"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", default)
    assert lm1b.source_key("1.1.0", "train[98%:]", "train[:98%]") != default


@pytest.mark.parametrize("split, reason", [("validation", "expected a TFDS split expression"),
                                           ("train[98%:", "expected a TFDS split expression"),
                                           ("train[:0]", "selects no LM1B documents")])
def test_bad_split_is_named(prepared, split, reason):
    with pytest.raises(ValueError, match=r"data\.validation_split: .*" + re.escape(reason)):
        lm1b.lm1b_source(_config(prepared, validation_split=split))


def test_not_prepared_no_archive_offline_says_what_to_do(tmp_path):
    with pytest.raises(ValueError) as err:
        lm1b.lm1b_source(_config(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "cannot be reached" in message
    assert str(tmp_path / ARCHIVE) in message and "`python -m primer_search.lm.lm1b DIR`" in message
    assert not (tmp_path / "lm1b").exists()                    # nothing was started


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(lm1b, "_reachable", lambda url: True)   # the probe passes, the download itself fails
    with pytest.raises(ValueError, match=r"download of http\S+ failed \(ConnectionError\): put the archive"):
        lm1b.lm1b_source(_config(tmp_path))


def test_wrong_archive_is_rejected(tmp_path):
    _write_archive(tmp_path)                                   # not the real archive's size and SHA-256
    with pytest.raises(ValueError, match=r"not the expected file of 1792209805 bytes with SHA-256 01ba6038"):
        lm1b.lm1b_source(_config(tmp_path))


def test_prepare_command(prepared, tmp_path, capsys):
    assert lm1b.main([str(prepared)]) == 0
    assert f"prepared in {prepared / 'lm1b' / '1.1.0'} (documents: test 10, train 200)" in capsys.readouterr().out
    assert lm1b.main([str(tmp_path)]) == 2
    assert "error: LM1B is not prepared" in capsys.readouterr().err
