import re

from conftest import EMPTY_DNA, metrics

from primer_search.search.reports import lineage_text
from primer_search.search.store import RunStore


def _line(store):
    """A seed, two children, a stopped grandchild and its child, which is then confirmed with the seed."""
    for parent, mutation, detail, status, fitness in [
            (None, None, None, "ok", 3.75), (1, "insert", "insert S0.0 SCALE in1=0", "ok", 3.70),
            (1, "swap", "swap S0.1<->S0.2", "ok", 3.80), (2, "delete", "delete S2.1 SHIFT", "stopped", 3.90),
            (4, "mutate_bank", None, "ok", 3.60)]:
        ind = store.add_proposal(parent, mutation, detail, EMPTY_DNA, f"h{parent}{mutation}")
        store.record_result(ind, status, fitness, metrics(status, fitness))
    store.record_hurdle(4, 0, 0.1, 3.90, False, 3.85)


def _rows(text):
    return [re.split(r"  +", row.strip()) for row in text.splitlines()[1:]]


def test_lineage_lists_the_line_of_descent_from_the_seed(tmp_path):
    with RunStore.create(tmp_path / "run", {}) as store:
        _line(store)
        text = lineage_text(store, 5)
    assert text.splitlines()[0].startswith("individual 5: 3 mutations from seed 1")
    assert _rows(text) == [["id", "status", "fitness", "change", "hurdles", "mutation"],
                           ["1", "ok", "3.7500", "-", "-", "seed"],
                           ["2", "ok", "3.7000", "-0.0500", "-", "insert S0.0 SCALE in1=0"],
                           ["4", "stopped", "3.9000", "-", "0/1 stop", "delete S2.1 SHIFT"],
                           ["5", "ok", "3.6000", "-", "-", "mutate_bank"]]     # a stopped parent: no change
    with RunStore.open(tmp_path / "run", lock=True) as store:
        assert _rows(lineage_text(store, 1)) == [_rows(text)[0], _rows(text)[1]]
        again = store.add_proposal(5, "insert", "insert a no-op", EMPTY_DNA, "h4mutate_bank", training_seed=1,
                                   repeat_of=5)
        store.record_result(again, "ok", 3.65, metrics("ok", 3.7))         # program 5 again: the mean
        assert _rows(lineage_text(store, again))[-1] == [str(again), "ok (= #5)", "3.6500", "-", "-",
                                                         "insert a no-op"]


def test_lineage_shows_confirmed_figures_once_confirmed(tmp_path):
    with RunStore.create(tmp_path / "run", {}) as store:
        _line(store)
        setup = "s"
        store.meta_set(f"confirmation:{setup}:1", {"training_seeds": [1, 2], "test_split": "test", "budget": 8,
                                                   "budget_kind": "steps", "metric": "validation_loss"})
        for ind, losses in ((1, (3.5, 3.4)), (5, (3.3, 3.2))):
            for seed, loss in zip((1, 2), losses):
                curve = [{"step": step, "flops": step * 10.0, "train_seconds": step, "validation_loss": loss + 1 / step,
                          "bits_per_byte": 1.0} for step in (2, 4, 8)]
                store.record_confirmation(ind, seed, 1.0, setup, metrics("ok", loss), curve)
        rows = _rows(lineage_text(store, 5))
    assert rows[0] == ["id", "status", "fitness", "change", "hurdles", "confirmed", "speedup", "mutation"]
    assert rows[1][5].startswith("3.4500 ±") and rows[1][6] == "-"          # the seed: no speedup against itself
    assert rows[2][5:7] == ["-", "-"] and rows[3][5:7] == ["-", "-"]
    # the seed ends at 3.625 (80 FLOPs); the program passes it between 3.8 (20) and 3.55 (40): at 34, 80 / 34
    assert rows[4][5].startswith("3.2500 ±") and rows[4][6] == "2.35 [2.35, 2.35]"
