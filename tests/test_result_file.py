import json
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
