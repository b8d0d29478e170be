from primer_search.cli import main
from primer_search.dna import load_dna
from primer_search.seeds import load_seed


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
    assert main(["show", "transformer", "--config", "search_configs/lm1b_paper.yaml"]) == 0
    out = capsys.readouterr().out
    assert "model parameters (6 layers, vocab 32000)" in out and "(band 32,000,000..38,000,000)" in out


def test_bad_config_key_is_named(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  num_layer: 2\n")
    assert main(["show", "transformer", "--config", str(config)]) == 2
    assert "model.num_layer: unknown key, allowed keys: vocab_size" in capsys.readouterr().err
