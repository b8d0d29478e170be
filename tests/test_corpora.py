import itertools

import pytest

from primer_search.config import DataConfig
from primer_search.lm.corpora import hash_split, open_source, pydoc_source, python_docs_source, text_file_source


def _take(iterator, n):
    return list(itertools.islice(iterator, n))


def test_pydoc_corpus_ships_with_python():
    source = open_source(DataConfig(source="pydoc"))
    assert len(source.train) > 1000 and len(source.validation) > 50
    assert not set(source.train) & set(source.validation)
    assert sum(map(len, source.train)) > 200_000 and all(d.strip() == d and d for d in source.train)
    assert source.key.startswith("pydoc-") and source.key == pydoc_source().key   # stable across calls
    assert pydoc_source(0.2).key != source.key           # another split trains another tokenizer


def test_training_stream_is_endless_and_seeded():
    source = pydoc_source()
    first = _take(source.train_documents(seed=1), 2 * len(source.train) + 5)    # past two epochs
    assert first == _take(source.train_documents(seed=1), len(first))
    assert first[:50] != _take(source.train_documents(seed=2), 50)
    assert sorted(first[:len(source.train)]) == sorted(source.train)          # an epoch is a permutation
    assert list(source.validation_documents()) == list(source.validation)


def test_hash_split_is_stable_and_independent_of_order():
    documents = [f"document {i}" for i in range(2000)]
    train, validation = hash_split(documents, 0.1)
    assert 120 < len(validation) < 280 and len(train) + len(validation) == 2000
    assert set(hash_split(documents[::-1], 0.1)[1]) == set(validation)


def test_text_files_by_line_and_by_file(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n")
    (tmp_path / "b.txt").write_text("third line\n")
    (tmp_path / "held.txt").write_text("held out\n")
    pattern, held = str(tmp_path / "[ab].txt"), str(tmp_path / "held.txt")
    lines = text_file_source(DataConfig(source="text_files", train_files=(pattern,), validation_files=(held,)))
    assert lines.train == ("first line", "second line", "third line") and lines.validation == ("held out",)
    files = text_file_source(DataConfig(source="text_files", train_files=(pattern,), validation_files=(held,),
                                        document="file"))
    assert files.train == ("first line\n\nsecond line", "third line")
    assert files.key != lines.key


def test_text_files_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="'nothing-here/\\*.txt' matches no file"):
        text_file_source(DataConfig(source="text_files", train_files=("nothing-here/*.txt",)))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt: not UTF-8 text"):
        text_file_source(DataConfig(source="text_files", train_files=(str(tmp_path / "latin1.txt"),)))
    (tmp_path / "one.txt").write_text("only one line\n")
    with pytest.raises(ValueError, match="found 1 training and 0 validation documents"):
        text_file_source(DataConfig(source="text_files", train_files=(str(tmp_path / "one.txt"),)))


def test_a_test_split_leaves_training_and_never_meets_validation():
    plain, split = pydoc_source(0.1), pydoc_source(0.1, 0.1)
    assert split.validation == plain.validation and split.test and not set(split.test) & set(split.train)
    assert set(split.test) | set(split.train) == set(plain.train) and len(split.test) < 0.2 * len(plain.train)
    assert split.key != plain.key and list(split.test_documents()) == list(split.test)
    assert set(split.test) < set(pydoc_source(0.1, 0.2).test)             # a larger slice holds the smaller
    with pytest.raises(ValueError, match="no test documents"):
        plain.test_documents()


def test_text_files_take_a_test_fraction_or_test_files(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(f"line {i} of the training text" for i in range(200)))
    (tmp_path / "test.txt").write_text("held out one\nheld out two\n")
    base = {"source": "text_files", "train_files": (str(tmp_path / "train.txt"),)}
    files = text_file_source(DataConfig(**base, test_files=(str(tmp_path / "test.txt"),)))
    assert files.test == ("held out one", "held out two") and len(files.train) + len(files.validation) == 200
    carved = text_file_source(DataConfig(**base, test_fraction=0.2))
    assert carved.test and len(carved.train) + len(carved.validation) + len(carved.test) == 200


@pytest.mark.parametrize("data, message", [
    ({"test_split": "test"}, "data.test_split: found 'test' with source: pydoc, expected test_fraction"),
    ({"source": "lm1b", "test_fraction": 0.1}, "data.test_fraction: found 0.1 with source: lm1b, expected test_split"),
    ({"source": "text_files", "train_files": ["a"], "test_fraction": 0.1, "test_files": ["b"]},
     "data.test_files: found it together with test_fraction"),
    ({"evaluation": "test"}, "data.evaluation: found test without a test split, expected test_fraction set"),
])
def test_test_split_config_errors_name_the_key(data, message):
    from primer_search.config import config_from_dict

    with pytest.raises(ValueError, match=message):
        config_from_dict({"data": data})


def test_python_docs_adds_the_standard_librarys_docstrings():
    pydoc, docs = pydoc_source(), python_docs_source()
    assert sum(map(len, docs.train)) > 3 * sum(map(len, pydoc.train))       # about 4x the text
    assert "Return True if the queue is empty, False otherwise." in docs.train + docs.validation
    assert set(pydoc.train) - set(docs.validation) <= set(docs.train)        # pydoc's paragraphs are all in it
    assert len(set(docs.train)) == len(docs.train) and not set(docs.train) & set(docs.validation)
    assert docs.key.startswith("python-docs-") and docs.key == python_docs_source().key


def test_docstrings_are_parsed_in_path_and_source_order_leaving_out_skipped_directories(tmp_path):
    from primer_search.lm.corpora import docstrings

    (tmp_path / "pkg" / "tests").mkdir(parents=True)
    (tmp_path / "pkg" / "b.py").write_text('"""Module b."""\nclass C:\n    """Class C."""\n    def f(self):\n'
                                           '        """Method f."""\n')
    (tmp_path / "pkg" / "a.py").write_text('def g():\n    """Function g."""\n')
    (tmp_path / "pkg" / "broken.py").write_text("def (:\n")                  # not Python: left out
    (tmp_path / "pkg" / "tests" / "test_a.py").write_text('"""A test."""\n')
    assert docstrings(tmp_path) == ("Function g.", "Module b.", "Class C.", "Method f.", "A test.")
    assert docstrings(tmp_path, {"tests"}) == ("Function g.", "Module b.", "Class C.", "Method f.")
