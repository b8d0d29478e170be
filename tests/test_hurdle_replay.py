import pathlib
import sys

from primer_search.search import hurdles
from primer_search.search.store import RunStore
from test_controller import _simulate, _simulated_config

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "bench"))
from hurdle_replay import main, replay  # noqa: E402


def test_replaying_a_run_under_its_own_rule_gives_its_recorded_verdicts(tmp_path, monkeypatch, capsys):
    for gain in (0.0, 2.0):
        config = _simulated_config().replace(search={"hurdle_gain": gain, "num_individuals": 24})
        _simulate(tmp_path / str(gain), monkeypatch, config=config)
        with RunStore.open(tmp_path / str(gain)) as store:
            for i in range(config.search.hurdles):
                history = store.hurdle_history(i)
                recorded = [r.passed for _, parent, _, r in history if parent is not None and r.threshold is not None]
                window = hurdles.window_at(i, config.search.hurdle_window)
                assert recorded and replay(history, window, config.training.seed, gain) == recorded, (gain, i)
        main([str(tmp_path / str(gain)), "--gains", str(gain), "1"])
        lines = capsys.readouterr().out.splitlines()
        recorded, same = (line.split(maxsplit=3 if line.startswith("replayed") else 1)[-1] for line in lines[1:3])
        assert lines[0].endswith(f"recorded gain {gain:g}") and recorded == same and "x compute saved" in same
