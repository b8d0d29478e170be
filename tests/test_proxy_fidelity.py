import json
import math
import random
import re
import pathlib
import sys

import pytest

from primer_search.program.graph import canonical_hash
from primer_search.program.seeds import load_seed

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "bench"))
from proxy_fidelity import copy_twins, fec_twins, long_results, noise_ceiling, panel, report  # noqa: E402


def test_the_panel_is_seeded_and_holds_distinct_programs():
    programs = panel(mutants=3, ez_mutants=2, seed=0)
    assert list(programs)[:5] == ["transformer", "primer_ez", "primer", "transformer+squared_relu",
                                  "transformer+mdha"]
    assert len(programs) == 10 and sum(name.startswith("transformer/") for name in programs) == 3
    assert len({canonical_hash(dna) for dna in programs.values()}) == 10
    assert list(panel(mutants=3, ez_mutants=2, seed=0)) == list(programs)
    assert list(panel(mutants=3, ez_mutants=2, seed=1)) != list(programs)


def _entry(name, fitness, curve=None, status="ok"):
    return {"name": name, "status": status, "fitness": fitness, "curve": curve or {}}


def test_the_report_ranks_by_the_long_run_and_a_failure_last(capsys):
    names = ["a", "b", "c", "d", "e"]
    long = {"a": 3.0, "b": 3.1, "c": 3.2, "d": 3.3}
    search = {"a": 3.6, "b": 3.5, "c": 3.7, "d": 3.8, "e": 3.4}      # "e" fails in its long run
    done = {f"{n}:long:0": _entry(n, long[n], {"0.1": search[n], "0.5": long[n] + 0.1}) for n in long}
    done["e:long:0"] = _entry("e", None, {"0.1": search["e"]}, status="diverged")
    report(dict.fromkeys(names), done, lambda name, kind, seed: f"{name}:{kind}:{seed}", [0], (0.1, 0.5), 10)
    lines = capsys.readouterr().out.strip().splitlines()
    ranked = [line.split()[-1] for line in lines[1:6]]
    assert ranked == ["a", "b", "c", "d", "e"]
    assert lines[1].split()[:2] == ["3.6000", "3.6000"] and math.isinf(float(lines[5].split()[-2]))
    rho = -0.1               # search ranks e, b, a, c, d; 10x ranks a, b, c, d, e: d^2 = 4 + 0 + 1 + 1 + 16
    assert lines[-2].split()[0] == f"{rho:.3f}" and lines[-2].split()[2] == "1.000"     # 5x ranks as 10x
    assert lines[-1].startswith(f"Spearman rho between the search fitness and 10x training, 5 programs: {rho:.3f}")
    assert "(95% interval" in lines[-1]


def test_the_report_pairs_seeds_against_the_transformer(capsys):
    losses = {"transformer": (3.20, 3.22), "primer_ez": (3.10, 3.13), "x": (3.25, 3.26)}      # by training seed
    done = {f"{name}:long:{seed}": _entry(name, loss, {"0.1": loss + 0.5})
            for name, pair in losses.items() for seed, loss in enumerate(pair)}
    report(dict.fromkeys(losses), done, lambda n, k, s: f"{n}:{k}:{s}", [0, 1], (0.1,), 10)
    out = capsys.readouterr().out
    assert "mean standard deviation across seeds" in out
    line = next(line for line in out.splitlines() if line.endswith("  primer_ez") and " p " in line)
    cells = re.findall(r"(search|10x) ([-+]\d\.\d{4}) \+- (\d\.\d{4}) p (\S+)", line)
    assert [cell[:3] for cell in cells] == [("search", "-0.0950", "0.0635"), ("10x", "-0.0950", "0.0635")]
    assert float(cells[0][3]) == pytest.approx(2 / math.pi * math.atan(1 / 19), abs=5e-4)   # t -19, one df


def test_the_noise_ceiling_is_one_without_noise_and_falls_with_it():
    search = [3.9, 3.5, 3.7, 3.6, 3.8, 3.4]            # its own scale and order: the ceiling re-orders it
    long = [3.00, 3.05, 3.10, 3.15, 3.20, math.inf]
    assert noise_ceiling(search, long, (0.0, 0.0), random.Random(0), draws=50) == (1.0, 1.0)
    some = noise_ceiling(search, long, (0.05, 0.05), random.Random(0), draws=400)
    more = noise_ceiling(search, long, (0.5, 0.5), random.Random(0), draws=400)
    assert 1.0 > some[0] > more[0] and some[1] <= some[0]
    assert more[0] > 0.1                                 # the failure stays last whatever the noise
    assert noise_ceiling(search, long, (0.05, 0.05), random.Random(0), draws=400) == some


def test_a_variant_reads_only_the_long_runs_of_a_panel_at_its_multiplier(tmp_path):
    stored = {"a:long:0": _entry("a", 3.0), "a:search:0": _entry("a", 3.5)}
    path = tmp_path / "panel.json"
    path.write_text(json.dumps({"fingerprint": "f", "settings": {"multiplier": 10.0}, "results": stored}))
    assert long_results(None, 10.0) is None
    assert long_results(str(path), 10.0) == {"a:long:0": stored["a:long:0"]}
    with pytest.raises(ValueError, match=r"holds 10x runs, expected this run's --multiplier 5"):
        long_results(str(path), 5.0)
    with pytest.raises(ValueError, match="expected a file written by this benchmark"):
        long_results(str(tmp_path / "missing.json"), 10.0)


def test_a_variant_ranks_its_search_budget_against_the_long_runs_and_hides_earlier_points(capsys):
    ten = {"a": 3.0, "b": 3.1, "c": 3.2}
    long = {f"{n}:long:0": _entry(n, v, {"0.05": 9.0, "0.1": 4.0 - v / 10}) for n, v in ten.items()}  # 1x: reversed
    long["a:long:0"]["curve"]["0.2"] = 3.5                                   # a point the others lack
    variant = {f"{n}:search:0": _entry(n, v + 0.3) for n, v in ten.items()}
    report(dict.fromkeys(ten), {**long, **variant}, lambda n, k, s: f"{n}:{k}:{s}", [0], (0.05, 0.1, 0.2), 10)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["search", "1x", "10x", "program"]       # no 0.5x nor 2x column
    assert lines[1].split()[:3] == ["3.3000", "3.7000", "3.0000"]
    assert lines[-2].split()[:3] == ["1.000", "-1.000", "1.000"]
    assert lines[-1].startswith("Spearman rho between the search fitness and 10x training, 3 programs: 1.000")


def test_a_program_computing_an_earlier_ones_function_is_its_twin():
    programs = {name: load_seed(name) for name in ("transformer", "primer_ez", "primer")}
    assert fec_twins(programs, width_units=8) == {"primer": "primer_ez"}      # the pseudo-variance is the variance
    assert fec_twins(dict(reversed(programs.items())), width_units=8) == {"primer_ez": "primer"}


def test_a_twin_takes_its_programs_reusable_measurements_and_keeps_its_own():
    key = lambda n, k, s: f"{n}:{k}:{s}"                                      # noqa: E731
    done = {"a:long:0": _entry("a", 3.0), "a:long:1": _entry("a", None, status="timeout"),
            "c:long:0": _entry("c", 3.2), "d:long:0": _entry("d", 3.3)}
    twins = {"b": "a", "d": "c"}
    assert copy_twins(done, twins, key, ["long"], [0, 1]) == 1
    assert done["b:long:0"] == {**_entry("b", 3.0), "copy_of": "a"}
    assert "b:long:1" not in done and "c:long:1" not in done                 # a timeout is no measurement
    assert done["d:long:0"] == _entry("d", 3.3)                               # measured itself: kept
    assert copy_twins(done, twins, key, ["long"], [0, 1]) == 0


def test_the_report_marks_copies_and_gives_rho_over_distinct_functions(capsys):
    long = {"a": 3.0, "b": 3.0, "c": 3.1, "d": 3.2, "e": 3.3}
    search = {"a": 3.6, "b": 3.6, "c": 3.5, "d": 3.7, "e": 3.8}
    done = {f"{n}:long:0": _entry(n, long[n], {"0.1": search[n]}) for n in long}
    done["b:long:0"]["copy_of"] = "a"
    report(dict.fromkeys(long), done, lambda n, k, s: f"{n}:{k}:{s}", [0], (0.1,), 10, twins={"b": "a"})
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line for line in lines if "same function as a: not trained" in line][0].endswith("b (same function "
                                                                                                "as a: not trained)")
    rho, distinct = 6.5 / 9.5, 0.8          # average ranks for the tie; without b: d^2 = 1 + 1 over 4 programs
    assert re.search(rf"5 programs: {rho:.3f} \(95% interval .*\); 4 distinct functions: {distinct:.3f} \(", lines[-1])
