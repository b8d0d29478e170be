import collections
import importlib.util
import random
import subprocess
import sys

import keras
import numpy as np
import pytest

import primitives
from primer_search.cli.main import main
from primer_search.config import ModelConfig
from primer_search.lm.keras_export import module_source, width_code, write_module
from primer_search.lm.model import LanguageModel, build_model
from primer_search.program.compiler import compile_block
from primer_search.program.dna import DNA, Instruction, Subprogram
from primer_search.program.search_space import random_dna
from primer_search.program.seeds import SEED_NAMES, load_seed
from primitives import Width

WIDTH = 4


def _import_path(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import(dna, tmp_path, unit, model=ModelConfig(width_units=WIDTH), name="exported"):
    write_module(dna, tmp_path / f"{name}.py", unit, model)
    return _import_path(tmp_path / f"{name}.py")


def _input(unit, width_units=WIDTH, seed=0, length=10):
    return np.random.default_rng(seed).normal(size=(2, length, width_units * unit)).astype(np.float32)


def _assert_same_block(dna, tmp_path, unit, seed, width_units=WIDTH, name="exported"):
    """The exported Block starts equal to the compiled block, and stays equal with the compiled block's weights;
    returns the exported module and the finite share of the block's output (the share compared)."""
    module = _import(dna, tmp_path, unit, ModelConfig(width_units=width_units), name)
    compiled = compile_block(dna, unit=unit, width_units=width_units, seed=seed)
    exported = module.Block(seed=seed)
    x = _input(unit, width_units, seed)
    np.testing.assert_allclose(exported(x), compiled(x), rtol=1e-5, atol=1e-5, equal_nan=True)
    rng = np.random.default_rng(seed)
    compiled.set_weights([w + rng.normal(scale=0.1, size=w.shape).astype(np.float32) for w in compiled.get_weights()])
    exported.set_weights(compiled.get_weights())
    out = compiled(x).numpy()
    np.testing.assert_allclose(exported(x), out, rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=compiled.graph.listing())
    return module, float(np.isfinite(out).mean())


@pytest.mark.parametrize("name", SEED_NAMES)
def test_seed_blocks_equal_the_compiled_ones(name, tmp_path):
    module, finite = _assert_same_block(load_seed(name), tmp_path, unit=3, seed=5, width_units=8)
    assert finite == 1.0
    assert load_seed(name).name in module.__doc__ and "S1 self_attention:" in module.__doc__


def test_random_programs_equal_the_compiled_ones(tmp_path):
    rng, used, compared = random.Random(3), collections.Counter(), 0
    for index in range(40):
        dna = random_dna(rng, num_subprograms=rng.randint(1, 4), max_instructions=10, dimensions=(1, 2, 4),
                         branch_probability=0.25, chain_probability=0.6)
        _, finite = _assert_same_block(dna, tmp_path, unit=rng.randint(2, 3), seed=index, name=f"random_{index}")
        compared += finite > 0.5
        used.update(ins.op for sp in dna.subprograms for ins in sp.instructions)
    assert len(used) > 25 and compared >= 36, (used, compared)


@pytest.mark.parametrize("op", primitives.names())
def test_every_primitive_on_features_and_positions(op, tmp_path):
    # h2 positions; h3 op(features, positions), h4 op(positions, features): both kinds reach every rule
    dna = DNA(subprograms=(Subprogram((
        Instruction("T_MAT_MUL", in1=0, in2=0),
        Instruction(op, in1=0, in2=2, const=1, dim=1),
        Instruction(op, in1=2, in2=0, const=0, dim=2),
        Instruction("ADD", in1=3, in2=4),
        Instruction("ADD", in1=5, in2=0))),), constants=(0.0, 0.5), dimensions=(1, 2, 4, 8, 12, 16))
    _, finite = _assert_same_block(dna, tmp_path, unit=2, seed=1, name=f"op_{op.lower()}")
    assert finite > 0.5


@pytest.mark.parametrize("tie", [True, False])
def test_language_model_equals_the_project_one(tie, tmp_path):
    dna, config = load_seed("primer_ez"), ModelConfig(vocab_size=64, num_layers=2, width_units=8, tie_embeddings=tie)
    module = _import(dna, tmp_path, 2, config)
    ours = LanguageModel(dna, unit=2, vocab_size=64, num_layers=2, tie_embeddings=tie, seed=4)
    theirs = module.LanguageModel(seed=4)
    tokens = np.random.default_rng(0).integers(0, 64, size=(2, 12))
    np.testing.assert_allclose(theirs(tokens), ours(tokens), rtol=1e-5, atol=1e-5)
    theirs.set_weights([w * 1.5 for w in ours.get_weights()])
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(theirs(tokens), ours(tokens), rtol=1e-5, atol=1e-5)


def test_saved_and_loaded_with_keras(tmp_path):
    module = _import(load_seed("transformer"), tmp_path, 2, ModelConfig(vocab_size=32, num_layers=1))
    model, tokens = module.LanguageModel(), np.arange(16).reshape(2, 8) % 32
    model(tokens)
    model.set_weights([w + 0.5 for w in model.get_weights()])        # not what a fresh model starts with
    model.save(tmp_path / "model.keras")
    again = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(again(tokens), model(tokens), rtol=1e-6, atol=1e-6)


def test_macro_option_program_gets_its_block_only(tmp_path):
    dna = load_seed("transformer+mod")
    text = module_source(dna, 2)
    assert "class Block(" in text and "class LanguageModel(" not in text and "mixture_of_depths(" in text


def test_runs_without_primer_search(tmp_path):
    path = tmp_path / "block.py"
    write_module(load_seed("primer_ez"), path, 2)
    script = (
        "import sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('primer_search', 'primitives'):\n"
        "            raise ImportError(f'{name} must not be imported')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import numpy as np, block\n"
        "y = block.Block()(np.ones((1, 5, 16), 'float32'))\n"
        "logits = block.LanguageModel(vocab_size=10, num_layers=1)(np.zeros((1, 5), 'int32'))\n"
        "print(tuple(y.shape), tuple(logits.shape))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "(1, 5, 16) (1, 5, 10)"


def test_width_code():
    assert [width_code(w) for w in (Width(1, 0), Width(2, 1), Width(0, 1), Width(0, 0), Width(8, 0))] == \
        ["u", "2 * u + 1", "1", "0", "8 * u"]


def test_cli_writes_a_module_sized_by_a_config(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model: {vocab_size: 300, num_layers: 3, param_band: [50000, 90000]}\n")
    assert main(["export", "primer_ez", str(tmp_path / "m.py"), "--config", str(config)]) == 0
    text = (tmp_path / "m.py").read_text()
    assert "VOCAB_SIZE = 300" in text and "NUM_LAYERS = 3" in text and "wrote" in capsys.readouterr().out
    assert main(["export", "transformer", str(tmp_path / "t.py"), "--unit", "5"]) == 0
    assert "UNIT = 5" in (tmp_path / "t.py").read_text()


def test_cli_refuses_a_keras_export_to_a_non_python_file(tmp_path, capsys):
    assert main(["export", "transformer", str(tmp_path / "t.yaml"), "--format", "keras"]) == 2
    assert ".py" in capsys.readouterr().err and not (tmp_path / "t.yaml").exists()


def test_a_trained_model_exports_with_its_weights(tmp_path, capsys):
    model = build_model(load_seed("primer_ez"), ModelConfig(vocab_size=40, num_layers=2), unit=2, seed=3)
    rng = np.random.default_rng(0)                                     # as if trained
    model.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype(np.float32) for w in model.get_weights()])
    (tmp_path / "job").mkdir()
    model.save(tmp_path / "job" / "model.keras")
    assert main(["export", str(tmp_path / "job"), str(tmp_path / "winner.py")]) == 0
    assert "winner.weights.h5" in capsys.readouterr().out
    module = _import_path(tmp_path / "winner.py")
    exported = module.LanguageModel()
    tokens = np.arange(20).reshape(2, 10) % 40
    exported(tokens)
    exported.load_weights(tmp_path / "winner.weights.h5")
    np.testing.assert_allclose(exported(tokens), model(tokens), rtol=1e-5, atol=1e-5)


def test_a_trained_macro_option_model_is_refused(tmp_path, capsys):
    model = build_model(load_seed("transformer+mod"), ModelConfig(vocab_size=40, num_layers=2), unit=2)
    model.save(tmp_path / "model.keras")
    assert main(["export", str(tmp_path / "model.keras"), str(tmp_path / "w.py")]) == 2
    assert "macro-options" in capsys.readouterr().err and not (tmp_path / "w.py").exists()
