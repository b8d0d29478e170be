"""The sizes and FLOPs of the model kinds: the sizing rule, routing, exits and MEGABYTE's stacks."""

import subprocess
import sys

import pytest

from primer_search.config import ModelConfig
from primer_search.lm.model_cost import SizingError, choose_unit, exit_layers, parameter_count, routed_layers, \
    split_depth, widths
from primer_search.program.graph import lower
from primer_search.program.seeds import SEED_NAMES, load_seed

TINY = ModelConfig(vocab_size=256, num_layers=2, param_band=(60_000, 120_000))


@pytest.mark.parametrize("name", SEED_NAMES)
def test_unit_puts_the_model_in_the_band(name):
    dna = load_seed(name)
    unit = choose_unit(dna, TINY)
    graph = lower(dna, TINY.width_units)
    assert TINY.param_band[0] <= parameter_count(graph, TINY, unit) <= TINY.param_band[1]
    assert parameter_count(graph, TINY, unit + 1) > TINY.param_band[1]  # the largest such unit


def test_band_that_cannot_be_met_is_a_clear_error():
    with pytest.raises(SizingError, match=r"below the band's lower end 100,000,000"):
        choose_unit(load_seed("transformer"), ModelConfig(vocab_size=256, param_band=(100_000_000, 100_000_001),
                                                          max_unit=8))
    with pytest.raises(SizingError, match=r"above the band's upper end 1,000"):
        choose_unit(load_seed("transformer"), ModelConfig(vocab_size=256, param_band=(10, 1_000)))


def test_routed_layers():
    assert routed_layers("every_other_odd", 5) == [False, True, False, True, False]
    assert routed_layers("every_other_even", 4) == [True, False, True, False]
    assert routed_layers("every_3rd", 7) == [False, False, True, False, False, True, False]
    assert routed_layers("all", 3) == [True] * 3
    assert routed_layers("all", 0) == []
    with pytest.raises(ValueError, match="route_pattern"):
        routed_layers("every_4th", 4)


def test_exit_layers():
    assert exit_layers(4, 0, 1) == (0, 1, 2, 3)
    assert exit_layers(6, 1, 2) == (1, 3, 5)
    assert exit_layers(5, 1, 2) == (1, 3, 4)                   # the last layer is always an exit
    assert exit_layers(3, 10, 1) == (2,)                       # first_exit beyond the stack: last exit only
    with pytest.raises(ValueError):
        exit_layers(3, 0, 0)


@pytest.mark.parametrize("num_layers,depth_split,expected", [
    (2, "1:1", (1, 1)), (4, "1:1", (2, 2)), (5, "3:2", (3, 2)), (6, "2:1", (4, 2)), (4, "3:1", (3, 1)),
    (6, "3:1", (5, 1)), (2, "3:1", (1, 1)), (1, "1:1", (1, 0)), (0, "2:1", (0, 0)), (24, "3:2", (14, 10)),
])
def test_split_depth(num_layers, depth_split, expected):
    assert split_depth(num_layers, depth_split) == expected


def test_split_depth_rejects_bad_input():
    for bad in ("2", "a:b", "0:0", None):
        with pytest.raises(ValueError):
            split_depth(4, bad)
    with pytest.raises(ValueError):
        split_depth(-1, "1:1")


def test_widths_follow_the_knobs():
    assert widths(8, 4, 4) == widths(8, 4, 4, 1, 1.0)
    w = widths(8, 4, 8, global_width_factor=2, local_width_factor=0.5)
    assert (w.global_unit, w.d_global, w.d_byte, w.local_unit, w.d_local) == (8, 64, 8, 2, 16)
    w = widths(8, 3, 16)                            # 8 x 3 = 24 is not divisible by 16: unit rounded up to 4
    assert (w.global_unit, w.d_global, w.d_byte) == (4, 32, 2)
    assert widths(8, 3, 4, local_width_factor=0.5).local_unit == 1     # floor(1.5)


def test_the_cost_of_a_model_needs_no_tensorflow():
    code = ("import sys, primer_search.lm.model_cost; "
            "print(sorted(m for m in sys.modules if m.startswith(('tensorflow.', 'keras'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
