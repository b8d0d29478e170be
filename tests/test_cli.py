import json
import re

import pytest
import yaml

from primer_search.cli.main import main
from primer_search.program.dna_files import load_dna
from primer_search.program.seeds import load_seed


def test_show_prints_listing_hash_and_size(capsys):
    assert main(["show", "transformer", "--unit", "64"]) == 0
    out = capsys.readouterr().out
    assert "(3) S1 in1=2 in2=2 branch=8 -> h3" in out
    assert "block parameters at unit 64 (d = 512): 3,150,336" in out and "hash: " in out


def test_export_then_validate_and_show_the_file(tmp_path, capsys):
    path = tmp_path / "ez.txt"
    assert main(["export", "primer_ez", str(path)]) == 0
    assert load_dna(path) == load_seed("primer_ez")
    assert main(["validate", str(path)]) == 0
    assert main(["show", str(path), "--graph"]) == 0
    assert "DCONV_3X1" in capsys.readouterr().out


def test_bad_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("subprograms:\n- instructions:\n  - {op: SIN, in1: 4}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("primer-search validate: error: ") and "field in1: found 4, allowed 0..1" in err


def test_show_with_a_config_sizes_the_model(capsys):
    assert main(["show", "transformer", "--config", "search_configs/lm1b_primer.yaml"]) == 0
    out = capsys.readouterr().out
    assert "model parameters (token, 6 layers, vocab 32000)" in out and "(band 32,000,000..38,000,000)" in out
    assert main(["show", "transformer+megabyte", "--config", "search_configs/lm1b_primer.yaml"]) == 0
    out = capsys.readouterr().out
    assert "model parameters (megabyte, 6 layers, vocab 258)" in out and "FLOPs per byte: training " in out


def test_bad_config_key_is_named(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  num_layer: 2\n")
    assert main(["show", "transformer", "--config", str(config)]) == 2
    assert "model: unknown key 'num_layer', allowed keys: vocab_size" in capsys.readouterr().err


def _write_fast_config(tmp_path):
    from conftest import FAST

    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(FAST))
    return str(path)


def test_train_prints_metrics_and_writes_json(tmp_path, capsys):
    out = tmp_path / "result.json"
    code = main(["train", "primer_ez", "--config", _write_fast_config(tmp_path), "--set", "training.budget=3",
                 "--set", "training.checkpoints=[0.5]", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and re.search(r"^status +ok$", captured.out, re.M) and "bits_per_byte" in captured.out
    assert "checkpoint 50%: step 2" in captured.err and "train 100.0% of 3 steps" in captured.err
    result = json.loads(out.read_text())
    assert result["status"] == "ok" and result["steps"] == 3 and len(result["checkpoints"]) == 1


def test_train_of_a_failing_program_exits_1(tmp_path, capsys):
    code = main(["train", "transformer", "--config", _write_fast_config(tmp_path),
                 "--set", "model.param_band=[10, 20]"])
    assert code == 1 and re.search(r"^status +invalid$", capsys.readouterr().out, re.M)


def test_train_bad_override_is_one_line(tmp_path, capsys):
    assert main(["train", "transformer", "--config", _write_fast_config(tmp_path), "--set", "training.budgt=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training: unknown key 'budgt', allowed keys: budget_kind, budget" in err


def test_run_then_read_the_run(tmp_path, capsys):
    from conftest import FAST

    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({**FAST, "search": {"executor": "in_process", "num_individuals": 4,
                                                         "population_size": 3, "tournament_size": 2,
                                                         "hurdles": 1, "min_hurdle_steps": 0}}))
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir), "--progress-every", "0"]) == 0
    captured = capsys.readouterr()
    assert "individuals done    4 of 4 (0 in flight)" in captured.out and "search: done" in captured.err
    assert main(["status", str(run_dir)]) == 0 and "best fitness" in capsys.readouterr().out
    assert main(["top", str(run_dir), "-n", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert re.split(r"  +", table[0]) == ["id", "fitness", "loss", "bits/byte", "params", "model",
                                          "sample MFLOP/tok", "tok/s", "step ms", "hurdles", "mutation", "parent"]
    assert re.split(r"  +", table[1])[5] == "token"
    assert 2 <= len(table) <= 4
    assert main(["show", str(run_dir), "2"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("individual 2: status") and "versus parent 1:" in shown and "S0 main:" in shown
    assert re.search(r"^model token, [\d,]+ parameters; validation loss [\d.]+, [\d.]+ bits/byte; sampling "
                     r"[\d.]+ MFLOPs/token$", shown, re.M)
    assert main(["show", f"{run_dir}:2"]) == 0                      # as retrain and confirm name it
    assert capsys.readouterr().out == shown
    assert main(["show", f"{run_dir}:2", "--lineage"]) == 0
    assert capsys.readouterr().out.startswith("individual 2: 1 mutation from seed 1 ")
    assert main(["show", "transformer", "--lineage"]) == 2
    assert "expected an individual of a run (RUN_DIR:ID)" in capsys.readouterr().err
    out = tmp_path / "best.yaml"
    assert main(["export", str(run_dir), "2", "-o", str(out)]) == 0
    assert load_dna(out).subprograms and main(["validate", str(out)]) == 0
    assert main(["export", f"{run_dir}:2", str(tmp_path / "same.yaml")]) == 0
    assert (tmp_path / "same.yaml").read_text() == out.read_text()
    assert main(["export", f"{run_dir}:2", "x.yaml", "-o", str(out)]) == 2
    assert "expected only an output path" in capsys.readouterr().err
    assert main(["show", str(run_dir)]) == 2 and f"(e.g. {run_dir}:1)" in capsys.readouterr().err
    assert main(["resume", str(run_dir)]) == 0                       # nothing left to do: it just reports
    assert "individuals done    4 of 4" in capsys.readouterr().out
    copy = ["run", str(config), "--run-dir", str(tmp_path / "copy"), "--reuse", str(run_dir), "--progress-every", "0"]
    assert main(copy) == 0 and "(1 of the seed's evaluations copied from other runs" in capsys.readouterr().out
    assert main([*copy[:3], str(tmp_path / "other"), *copy[4:], "--set", "training.budget=5"]) == 2
    assert "its evaluations were measured with other model, data and training" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_run_errors_are_one_line(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "no run in" in capsys.readouterr().err
    assert main(["export", "transformer"]) == 2
    assert "expected an output path" in capsys.readouterr().err


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(needle in err for needle in needles), err
    return err


def test_yaml_errors_in_overrides_are_one_line(tmp_path, capsys):
    config = _write_fast_config(tmp_path)
    assert main(["train", "transformer", "--config", config, "--set", "training.budget=[1"]) == 2
    _one_line_error(capsys, "--set 'training.budget=[1': the value is not valid YAML")
    assert main(["train", "transformer", "--config", config, "--set", "training.budget=.nan"]) == 2
    _one_line_error(capsys, "training.budget: found nan, expected a finite number")


def test_oversized_and_undecodable_files_are_named(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text("model: {}\n" + "#" * (2 << 20))
    assert main(["show", "transformer", "--config", str(big)]) == 2
    _one_line_error(capsys, "big.yaml: 2,097,162 bytes, expected a config of at most 1,048,576 bytes")
    for name, data in (("binary.yaml", bytes(range(256))), ("utf16.txt", "name: x".encode("utf-16"))):
        (tmp_path / name).write_bytes(data)
        assert main(["validate", str(tmp_path / name)]) == 2
        _one_line_error(capsys, f"{name}: not UTF-8 text", "expected a DNA file in UTF-8")
    (tmp_path / "c.yaml").write_bytes(b"model: {vocab_size: 2\xff}")
    assert main(["show", "transformer", "--config", str(tmp_path / "c.yaml")]) == 2
    _one_line_error(capsys, "c.yaml: not UTF-8 text (byte 21), expected a config in UTF-8")


def test_a_deep_program_shows(tmp_path, capsys):
    from primer_search.program.dna import DNA, Instruction, Subprogram
    from primer_search.program.dna_files import save_dna

    chain = [Instruction("ADD", in1=0, in2=1)] + [Instruction("ADD", in1=i + 2, in2=i + 1) for i in range(2999)]
    save_dna(DNA(subprograms=(Subprogram(tuple(chain)),)), tmp_path / "deep.yaml")
    assert main(["show", str(tmp_path / "deep.yaml")]) == 0
    assert "instructions: 3000 in 1 subprograms; 3000 live ops" in capsys.readouterr().out


def _snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_refused_commands_leave_the_run_directory_as_it_was(tmp_path, capsys):
    from primer_search.config import load_config
    from primer_search.search.store import RunStore

    config = _write_fast_config(tmp_path)
    run = tmp_path / "run"
    RunStore.create(run, load_config(config).to_dict()).close()
    before = _snapshot(run)
    assert main(["run", config, "--run-dir", str(run), "--set", "search.hurdles=0"]) == 2
    _one_line_error(capsys, "already holds a run")
    assert main(["resume", str(run), "--set", "search.num_individuals=many"]) == 2
    _one_line_error(capsys, "search.num_individuals: found 'many', expected an integer")
    assert main(["resume", str(run), "--set", "training.budget=3"]) == 2
    _one_line_error(capsys, "training.budget cannot change when resuming")
    assert _snapshot(run) == before
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "run.sqlite").write_text("not a database")
    assert main(["resume", str(fake)]) == 2
    _one_line_error(capsys, "is not a primer-search run store")
    assert _snapshot(fake) == {"run.sqlite": b"not a database"}


def test_run_refuses_a_glob_that_matches_nothing_before_writing(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(open(_write_fast_config(tmp_path))),
                                      "data": {"source": "text_files", "train_files": [str(tmp_path / "no/*.txt")]}}))
    assert main(["run", str(config), "--run-dir", str(tmp_path / "run"), "--set", "search.hurdles=0"]) == 2
    _one_line_error(capsys, "data.train_files: '", "no/*.txt' matches no file")
    assert not (tmp_path / "run").exists()


def test_show_refuses_a_unit_beside_a_config(capsys):
    assert main(["show", "transformer", "--unit", "8", "--config", "search_configs/tiny.yaml"]) == 2
    _one_line_error(capsys, "expected either --config or --unit/--width-units, not both")


def test_an_internal_failure_exits_1_with_one_line_and_a_log(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no mutation changed any of 10 parents")

    monkeypatch.setattr("primer_search.cli.inspection.describe", broken)
    assert main(["show", "transformer"]) == 1
    err = _one_line_error(capsys, "primer-search show: failed: RuntimeError: no mutation changed", "traceback in ")
    log = err.strip().rsplit("traceback in ", 1)[1].rstrip(")")
    assert "Traceback" in open(log).read() and "broken" in open(log).read()


def test_reading_commands_neither_load_tensorflow_nor_print_its_noise(tmp_path):
    import subprocess
    import sys

    from primer_search.config import Config
    from primer_search.search.store import RunStore

    RunStore.create(tmp_path / "run", Config().to_dict()).close()
    script = ("import sys\nfrom primer_search.cli.main import main\n"
              f"codes = [main(['show', 'transformer']), main(['status', {str(tmp_path / 'run')!r}]),\n"
              f"         main(['top', {str(tmp_path / 'run')!r}]), main(['validate', 'primer_ez']),\n"
              "         main(['show', 'primer_ez+calm', '--config', 'search_configs/discovery.yaml'])]\n"
              "tf = sys.modules.get('tensorflow')\n"
              "print(codes, tf is not None and type(tf).__name__ != '_LazyModule', 'keras' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0, 0, 0] False False", done.stdout[-500:]
    assert done.stderr == ""


def test_training_commands_keep_tensorflow_start_up_noise_off_stderr(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "primer_search.cli.main", "train", "transformer", "--config",
                           _write_fast_config(tmp_path), "--set", "training.budget=1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "status" in done.stdout and "cudart_stub" not in done.stderr and "absl" not in done.stderr
    assert not re.search(r"^[IW]\d{4} ", done.stderr, re.MULTILINE), done.stderr     # TF's C++ info and warning lines


def test_the_installed_command_runs():
    """The `primer-search` console script (setup.cfg's entry point), as a user calls it."""
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(sys.executable).parent / "primer-search"
    if not script.exists():
        pytest.skip(f"primer-search is not installed beside {sys.executable}")
    done = subprocess.run([str(script), "show", "transformer"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "hash: 4a82d7f5f5d6d6ef" in done.stdout, done.stderr[-2000:]
