import subprocess
import sys
import textwrap

import numpy as np
import pytest

from primer_search.lm.corpora import pydoc_source
from primer_search.lm.tokenizer import BYTE_VOCAB_SIZE, EOS_ID, PAD_ID, ByteTokenizer, subword_tokenizer


def test_bytes_are_offset_past_the_specials():
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(["a\x00é"])[0]
    assert ids.tolist() == [ord("a") + 2, 2, 0xC3 + 2, 0xA9 + 2]         # a genuine zero byte is id 2
    assert PAD_ID not in ids and EOS_ID not in ids and ids.max() < BYTE_VOCAB_SIZE == tokenizer.vocab_size
    assert tokenizer.decode(ids) == "a\x00é"


def _never(documents):
    raise AssertionError("the cached tokenizer must not read the corpus again")
    yield  # pragma: no cover


def test_subword_vocabulary_is_trained_once_and_cached(tmp_path):
    source = pydoc_source()
    tokenizer = subword_tokenizer(source.sample_documents(), source.key, 1000, 200_000, tmp_path)
    assert tokenizer.vocab_size == 1000 and tokenizer.path.parent == tmp_path
    text = source.validation[0]
    ids = tokenizer.encode([text])[0]
    assert ids.dtype == np.int32 and PAD_ID not in ids and tokenizer.decode(ids) == text
    again = subword_tokenizer(_never(None), source.key, 1000, 200_000, tmp_path)
    assert again.path == tokenizer.path and again.encode([text])[0].tolist() == ids.tolist()
    other = subword_tokenizer(source.sample_documents(), source.key, 800, 200_000, tmp_path)
    assert other.path != tokenizer.path and other.vocab_size == 800    # keyed by vocabulary size


def test_unseen_characters_fall_back_to_bytes(tmp_path):
    source = pydoc_source()
    tokenizer = subword_tokenizer(source.sample_documents(), source.key, 600, 100_000, tmp_path)
    text = "naïve 日本語 ∑"
    assert tokenizer.decode(tokenizer.encode([text])[0]) == text


def test_too_large_a_vocabulary_says_how_large_it_may_be(tmp_path):
    with pytest.raises(ValueError, match=r"model.vocab_size: found 5000, expected at most \d+ for this corpus"):
        subword_tokenizer(iter(["a small corpus", "of two lines"]), "tiny", 5000, 1000, tmp_path)


def test_too_small_a_vocabulary_says_how_large_it_must_be(tmp_path):
    source = pydoc_source()
    with pytest.raises(ValueError, match=r"model.vocab_size: found 256, expected at least \d+ for this corpus "
                                         r"\(its training text has more distinct characters"):
        subword_tokenizer(source.sample_documents(), source.key, 256, 2_000_000, tmp_path)


def test_parallel_workers_train_once(tmp_path):
    """Two processes asking at once: one trains (slowly, holding the lock), the other waits and loads."""
    script = textwrap.dedent(f"""
        import sys, time
        from primer_search.lm.corpora import pydoc_source
        from primer_search.lm.tokenizer import subword_tokenizer
        source = pydoc_source()
        def documents():
            with open({str(tmp_path / 'trained.log')!r}, 'a') as log:
                log.write(sys.argv[1] + '\\n')
            time.sleep(1.0)
            yield from source.sample_documents()
        tokenizer = subword_tokenizer(documents(), source.key, 700, 100_000, {str(tmp_path)!r})
        print(tokenizer.path.read_bytes().hex()[:64])
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, text=True)
               for i in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert len((tmp_path / "trained.log").read_text().split()) == 1
    assert outputs[0] == outputs[1]
