"""The package's layers: a module imports only from its own layer or the layers below it (lazy imports count)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

LAYERS = (                      # lowest first
    "primitives",               # the op vocabulary
    "primer_search.program",    # DNA, listing, lowering, compiling, cost, seeds, search space
    "primer_search.config",     # the YAML config's sections
    "primer_search.lm",         # data, tokenizers, language models, training, decoding and sampling, fitness
    "primer_search.search",     # mutations, evolution, hurdles, cache, run store, executors, controller, reports
    "primer_search.retrain",    # retraining winners at scale on Ray Train, and its report
    "primer_search.cli",        # the command line
)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of a dotted module name; None outside the layers (the standard library, TensorFlow...)."""
    for index in reversed(range(len(LAYERS))):
        if module == LAYERS[index] or module.startswith(LAYERS[index] + "."):
            return index
    return None


def imported_modules(path: pathlib.Path, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a source file, relative ones resolved against `module`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join(package + ([base] if base else []))
            found.append((node.lineno, base))
            # `from primer_search import lm`: the names may be modules of their own
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                      if layer_of(f"{base}.{alias.name}") is not None and layer_of(base) is None]
    return found


def violations(root: pathlib.Path) -> list[str]:
    """Every import in `primitives/` and `primer_search/` under `root` that points up the layers."""
    found = []
    for package in ("primitives", "primer_search"):
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            own = layer_of(module)
            if own is None:
                continue
            for line, name in imported_modules(path, module):
                other = layer_of(name)
                if other is not None and other > own:
                    found.append(f"{path.relative_to(root)}:{line} ({LAYERS[own]}) imports {name} ({LAYERS[other]})")
    return found


def test_every_module_is_in_a_layer():
    for package in ("primitives", "primer_search"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts in (("primer_search", "__init__"),):
                continue
            assert layer_of(".".join(parts)) is not None, f"{path} is in no layer of {LAYERS}"


def test_imports_point_down_the_layers():
    assert violations(ROOT) == []


@pytest.mark.parametrize("planted, expected", [
    ("from primer_search.search.store import RunStore\n", "primer_search/lm/model.py:1 (primer_search.lm) imports "
                                                            "primer_search.search.store (primer_search.search)"),
    ("def f():\n    from primer_search.cli import main\n", "primer_search/lm/model.py:2"),
    ("from primer_search import retrain\n", "imports primer_search.retrain (primer_search.retrain)"),
    ("from ..search import store\n", "imports primer_search.search"),
])
def test_an_upward_import_is_found(tmp_path, planted, expected):
    for package in ("primitives", "primer_search/lm", "primer_search/search", "primer_search/cli"):
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "primer_search/lm/model.py").write_text(planted)
    (tmp_path / "primer_search/search/store.py").write_text("from primer_search.lm.model import x\n")
    found = violations(tmp_path)
    assert len(found) == 1 and expected in found[0]
