import pytest

from primer_search.program.dna import DNA, DNAError
from primer_search.program.graph import canonical_hash
from primer_search.program.macro_options import MUTATION_GRIDS, Calm, MacroOptions, Megabyte, MixtureOfDepths, \
    mutable_knobs
from primer_search.program.seeds import load_seed


def test_defaults_are_all_disabled():
    options = MacroOptions()
    assert not options.any_enabled and options.describe() == ""


@pytest.mark.parametrize("other", ["mixture_of_depths", "calm"])
def test_megabyte_does_not_combine_with_token_level_options(other):
    data = {"megabyte": {"enabled": True}, other: {"enabled": True}}
    with pytest.raises(ValueError, match=f"macro_options: found megabyte enabled with {other}, expected megabyte "
                                         "alone"):
        MacroOptions.from_dict(data)
    dna = load_seed("transformer").to_dict()
    dna["macro_options"] = data
    with pytest.raises(DNAError, match="megabyte enabled with"):
        DNA.from_dict(dna)


def test_mod_and_calm_combine():
    options = MacroOptions.from_dict({"mixture_of_depths": {"enabled": True}, "calm": {"enabled": True}})
    assert options.describe().startswith("mixture_of_depths(capacity=0.125, ") and " calm(" in options.describe()


def test_disabled_knobs_do_not_change_the_hash():
    seed = load_seed("transformer")
    tuned = seed.replace(macro_options=MacroOptions(mixture_of_depths=MixtureOfDepths(capacity=0.5),
                                                    calm=Calm(threshold=0.5)))
    assert canonical_hash(tuned) == canonical_hash(seed)
    enabled = seed.replace(macro_options=MacroOptions(mixture_of_depths=MixtureOfDepths(enabled=True)))
    enabled_tuned = enabled.replace(macro_options=enabled.macro_options.replace("mixture_of_depths", capacity=0.5))
    assert len({canonical_hash(seed), canonical_hash(enabled), canonical_hash(enabled_tuned)}) == 3


def test_replace_validates():
    with pytest.raises(ValueError, match=r"macro_options.calm.threshold: found 2.0, expected a value in \(0.0, 1.0\]"):
        MacroOptions().replace("calm", threshold=2.0)


def test_mutable_knobs_are_those_of_enabled_sections_and_grid_values_are_valid():
    options = MacroOptions(megabyte=Megabyte(enabled=True))
    assert {section for section, _ in mutable_knobs(options)} == {"megabyte"}
    for (section, knob), values in MUTATION_GRIDS.items():
        for value in values:
            MacroOptions().replace(section, **{knob: value})       # every grid value loads


def test_seed_names_switch_options_on():
    from primer_search.program.seeds import load_seed_or_file

    dna = load_seed_or_file("primer+mod+calm")
    assert dna.name == "primer+mod+calm" and dna.subprograms == load_seed("primer").subprograms
    assert dna.macro_options.mixture_of_depths.enabled and dna.macro_options.calm.enabled
    assert not dna.macro_options.megabyte.enabled
    with pytest.raises(ValueError, match=r"seed 'transformer\+moe': unknown option \+moe, expected \+mod, \+calm"):
        load_seed("transformer+moe")
    with pytest.raises(ValueError, match=r"seed 'transformer\+mod\+megabyte': .*megabyte enabled with "):
        load_seed("transformer+mod+megabyte")


def test_megabyte_needs_bits_per_byte():
    from primer_search.config import config_from_dict
    from primer_search.search.controller import load_seeds

    with pytest.raises(ValueError, match="search.seeds: 'transformer\\+megabyte' enables megabyte"):
        load_seeds(["transformer", "transformer+megabyte"], "validation_loss")
    assert len(load_seeds(["transformer", "transformer+megabyte"], "bits_per_byte")) == 2
    with pytest.raises(ValueError, match="search.metric: found validation_loss while macro mutations may switch on "
                                         "megabyte, expected bits_per_byte"):
        config_from_dict({"search": {"mutation_weights": {"macro": 1.0}}})
    assert config_from_dict({"search": {"mutation_weights": {"macro": 1.0},
                                        "macro_options": ["mixture_of_depths"]}}).search.macro_options == (
        "mixture_of_depths",)
    with pytest.raises(ValueError, match="search.macro_options: found 'moe', expected names from"):
        config_from_dict({"search": {"macro_options": ["moe"]}})
