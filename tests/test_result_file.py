import json
import os
import pathlib
import sys

import pytest

from primer_search.config import load_config

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "bench"))
from result_file import ResultFile  # noqa: E402


def test_a_benchmark_resumes_its_own_results_and_refuses_other_settings(tmp_path, capsys):
    path, config = tmp_path / "results.json", load_config("search_configs/tiny.yaml")
    first = ResultFile(path, config, multiplier=10.0)
    first.results["a"] = {"fitness": 1.5}
    first.save()
    assert ResultFile(path, config, multiplier=10.0).results == {"a": {"fitness": 1.5}}
    assert json.loads(path.read_text())["settings"]["config"]["training"]["budget"] == config.training.budget
    for other in ((config, {"multiplier": 3.0}), (config.replace(training={"budget": 7}), {"multiplier": 10.0})):
        with pytest.raises(SystemExit) as stop:
            ResultFile(path, other[0], **other[1])
        assert stop.value.code == 2 and "holds measurements taken under other settings" in capsys.readouterr().err
    assert ResultFile(path, config, multiplier=10.0).results == {"a": {"fitness": 1.5}}   # left as it was


def test_a_config_key_added_since_at_its_default_does_not_orphan_a_file(tmp_path, capsys):
    path, config = tmp_path / "results.json", load_config("search_configs/tiny.yaml")
    first = ResultFile(path, config)
    first.results["a"] = {"fitness": 1.5}
    first.save()
    stored = json.loads(path.read_text())
    del stored["settings"]["config"]["search"]["hurdle_gain"]             # written before the key existed
    stored["fingerprint"] = "older"
    path.write_text(json.dumps(stored))
    assert ResultFile(path, config).results == {"a": {"fitness": 1.5}}
    with pytest.raises(SystemExit):
        ResultFile(path, config.replace(search={"hurdle_gain": 2.0}))      # not the default: other settings
    stored["settings"]["config"]["search"]["no_such_key"] = 1                  # unreadable today
    path.write_text(json.dumps(stored))
    with pytest.raises(SystemExit):
        ResultFile(path, config)
    assert "holds measurements taken under other settings" in capsys.readouterr().err


def test_saving_replaces_the_file_whole(tmp_path, monkeypatch):
    path, config = tmp_path / "results.json", load_config("search_configs/tiny.yaml")
    first = ResultFile(path, config)
    first.results["a"] = {"fitness": 1.5}
    first.save()
    first.results["b"] = {"fitness": 2.5}

    def killed(*args):                          # the process dies after writing, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        first.save()
    assert ResultFile(path, config).results == {"a": {"fitness": 1.5}}
