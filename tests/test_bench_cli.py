import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "bench"))
import proxy_fidelity  # noqa: E402
from bench_cli import CONFIGS, RESULTS  # noqa: E402


def test_the_defaults_name_the_repositorys_files_whatever_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (CONFIGS / "discovery.yaml").is_file() and RESULTS.is_dir()
    assert RESULTS.parent.name == "bench" and RESULTS.parent.parent == CONFIGS.parent


@pytest.mark.parametrize("argv, expected", [
    (["--config", "no/such.yaml"], "config 'no/such.yaml' not found"),
    (["--set", "training.nope=1"], "discovery.yaml: training: unknown key 'nope'"),
])
def test_a_config_that_cannot_load_is_one_line_and_exit_2_from_any_directory(argv, expected, tmp_path,
                                                                             monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["proxy_fidelity.py", "--out", str(tmp_path / "out.json"), *argv])
    with pytest.raises(SystemExit) as stop:
        proxy_fidelity.main()
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and error.startswith("proxy_fidelity.py: error: ") and expected in error
    assert list(tmp_path.iterdir()) == []                                                   # nothing written
