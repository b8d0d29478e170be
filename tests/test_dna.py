import dataclasses
import json

import pytest

from primer_search.program.dna import DNA, DNAError, Instruction, Subprogram, from_dict
from primer_search.program.dna_files import dumps, load_dna, loads, save_dna
from primer_search.program.macro_options import MacroOptions
from primer_search.program.seeds import SEED_NAMES, load_seed


def _data(**changes):
    data = load_seed("transformer").to_dict()
    data.update(changes)
    return data


def _with_instruction(s, i, **fields):
    data = _data()
    data["subprograms"][s]["instructions"][i].update(fields)
    return data


@pytest.mark.parametrize("name", SEED_NAMES)
@pytest.mark.parametrize("fmt", ["yaml", "json", "listing"])
def test_round_trip(name, fmt):
    dna = load_seed(name)
    assert loads(dumps(dna, fmt), fmt) == dna


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".txt"])
def test_file_round_trip(tmp_path, suffix):
    dna = load_seed("primer").replace(macro_options=MacroOptions.from_dict({"calm": {"enabled": True}}))
    save_dna(dna, tmp_path / f"x{suffix}")
    assert load_dna(tmp_path / f"x{suffix}") == dna


def test_every_instruction_carries_the_whole_argument_set():
    written = json.loads(load_seed("transformer").to_json())
    assert all(set(ins) == {"op", "in1", "in2", "const", "dim", "branch"}
               for sp in written["subprograms"] for ins in sp["instructions"])
    assert written["format_version"] == 1 and set(written["macro_options"]) == {"mixture_of_depths", "calm",
                                                                                "megabyte"}


def test_macro_options_are_off_by_default():
    assert not load_seed("transformer").macro_options.any_enabled


@pytest.mark.parametrize("data, message", [
    (_with_instruction(1, 3, in1=9),
     r"S1 \(self_attention\) instruction 3 \(writes h5\), field in1: found 9, allowed 0\.\.4 \(h0, h1 and states "
     r"written before it\)"),
    (_with_instruction(0, 0, in2="h1"), r"S0 \(main\) instruction 0 \(writes h2\), field in2: found 'h1'"),
    (_with_instruction(2, 0, dim=6), r"S2 \(feed_forward\) instruction 0 \(writes h2\), field dim: found 6, "
                                     r"allowed 0\.\.5 \(index into the dimensions bank\)"),
    (_with_instruction(2, 0, const=2), r"field const: found 2, allowed 0\.\.1"),
    (_with_instruction(0, 1, branch=3), r"S0 \(main\) instruction 1 \(writes h3\), field branch: found 3, "
                                        r"allowed one of \[1, 2, 4, 8, 16\]"),
    (_with_instruction(3, 0, op="CONV1X1"), r"S3 \(multihead_projection\) instruction 0 \(writes h2\), field op: "
                                            r"unknown primitive 'CONV1X1'; did you mean CONV_1X1"),
    (_with_instruction(2, 2, op="S1"), r"S2 \(feed_forward\) instruction 2 \(writes h4\), field op: found call S1, "
                                       r"allowed calls of subprograms with a higher index than S2: S3\.\.S9"),
    (_with_instruction(9, 0, op="S2"), r"S9 \(relu\) instruction 0 \(writes h2\), field op: found call S2, "
                                       r"allowed .*: none"),
    (_with_instruction(0, 0, size=3), r"S0 instruction 0: unknown key 'size', allowed keys: op, in1, in2"),
    (_data(dimensions=[1, 8, 32, 2, 4, 5]), r"dimensions bank: found \[1, 8, 32, 2, 4, 5\], allowed exactly 6 "
                                            r"values from \[1, 2, 4, 8, 12, 16, 24, 32, 48, 64\]"),
    (_data(constants=[0.0]), r"constants bank: found \[0\.0\], allowed exactly 2 finite numbers"),
    (_data(format_version=2), r"format_version: found 2, this version of primer-search reads 1"),
    (_data(extra=1), r"DNA: unknown key 'extra', allowed keys: format_version, name"),
    (_data(macro_options={"calm": {"threshold": 2.0}}), r"macro_options\.calm\.threshold: found 2\.0, expected a "
                                                        r"value in \(0\.0, 1\.0\]"),
    (_data(macro_options={"megabyte": {"patch_size": 3}}), r"macro_options\.megabyte\.patch_size: found 3, "
                                                           r"expected one of \[2, 4, 8, 16\]"),
    (_data(macro_options={"mod": {}}), r"macro_options: unknown key 'mod', allowed keys: mixture_of_depths"),
])
def test_validation_messages(data, message):
    with pytest.raises(DNAError, match=message):
        from_dict(data)


def test_empty_subprogram_is_rejected():
    with pytest.raises(DNAError, match=r"S1: found no instructions, allowed one or more"):
        DNA(subprograms=(Subprogram((Instruction("S1"),)), Subprogram(())))


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("subprograms: [\n")
    with pytest.raises(DNAError, match=r"bad\.yaml: not valid YAML"):
        load_dna(bad)
    with pytest.raises(DNAError, match=r"DNA file '.*missing\.json' not found"):
        load_dna(tmp_path / "missing.json")
    with pytest.raises(DNAError, match=r"unknown extension '\.pkl', expected \.yaml"):
        load_dna(tmp_path / "x.pkl")
    (tmp_path / "typed.yaml").write_text("!!python/object/apply:os.system ['echo unsafe']\n")
    with pytest.raises(DNAError, match="not valid YAML"):  # safe loading: tags that run code are refused
        load_dna(tmp_path / "typed.yaml")


def test_validation_memo_does_not_hide_problems_at_another_index():
    calls_s2 = Subprogram((Instruction("S2"),))
    DNA(subprograms=(Subprogram((Instruction("S1"),)), calls_s2, Subprogram((Instruction("SQUARE"),))))
    with pytest.raises(DNAError, match="found call S2"):                  # S2 is not higher than S2
        DNA(subprograms=(Subprogram((Instruction("S1"),)), Subprogram((Instruction("S2"),)), calls_s2))


def test_a_subprogram_with_a_list_is_checked_every_time():
    instructions = [Instruction("SQUARE")]
    sp = Subprogram(instructions)
    DNA(subprograms=(sp,))
    instructions[0] = Instruction("SQUARE", in1=5)
    with pytest.raises(DNAError, match="field in1: found 5"):
        DNA(subprograms=(sp,))


def test_macro_options_to_dict_is_a_fresh_copy():
    options = MacroOptions.from_dict({"calm": {"enabled": True}})
    first = options.to_dict()
    first["calm"]["threshold"] = 0.5
    assert options.to_dict()["calm"]["threshold"] == 0.9 and options.to_dict() == dataclasses.asdict(options)
