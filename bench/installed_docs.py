"""Write a large offline corpus: the docstrings of the installed Python packages, one paragraph per line.

python_docs holds 670K training tokens at a 1K-piece vocabulary, so the discovery config's search budget reads it
about 7 times and the proxy panel's 10x target about 73 times, where the paper's LM1B is read less than once. The
packages installed beside primer-search (TensorFlow, Ray, pandas, NumPy, Keras, ...) carry 25 MB of distinct
paragraphs in their docstrings (measured with TensorFlow 2.21 and Ray 2.60), 12 times python_docs: enough for a
10x training to read its text a few times instead of 73, to see whether that repetition changes which blocks rank
first. The text depends on the installed versions (the tokenizer cache is keyed by content, so another corpus
trains its own).

Each docstring is split into paragraphs at blank lines, each paragraph's whitespace is collapsed to single spaces
(one document per line for `data.document: line`), and a paragraph seen before is left out; the paragraphs are
shuffled with a fixed seed, so the start of the file, where the tokenizer learns its vocabulary, samples every
package. Test suites and compiled caches are skipped. About 50 s on one core.

    python bench/installed_docs.py [--out ~/.cache/primer_search/installed_docs.txt]
    python bench/proxy_fidelity.py --set data.source=text_files --set data.document=line \
        --set 'data.train_files=["~/.cache/primer_search/installed_docs.txt"]' --out bench/results/... --only ...

The last line printed is the corpus size in MB.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sysconfig

from primer_search.lm.corpora import docstrings

SKIPPED = frozenset({"test", "tests", "testing", "__pycache__"})


def paragraphs() -> list[str]:
    """The distinct paragraphs of every installed package's docstrings, whitespace collapsed, in path order."""
    roots = dict.fromkeys(pathlib.Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib"))
    found = (" ".join(p.split()) for root in roots for doc in docstrings(root, SKIPPED) for p in doc.split("\n\n"))
    return [p for p in dict.fromkeys(found) if p]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="~/.cache/primer_search/installed_docs.txt")
    parser.add_argument("--seed", type=int, default=0, help="of the paragraphs' order")
    args = parser.parse_args()
    out = pathlib.Path(args.out).expanduser()
    found = paragraphs()
    random.Random(args.seed).shuffle(found)
    text = "\n".join(found) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"{len(found):,} paragraphs written to {out}")
    print(f"{len(text.encode()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
