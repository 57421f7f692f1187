"""Command-line parsing of the External-job contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from relion_cryopares.relion import Input, JobSpec, Param, ParameterError, parse_args

SPEC = JobSpec(
    name="cryopares_reconstruct",
    params=(
        Param("sym", "str", "C1", "symmetry"),
        Param("batch_size", "int", 32, minimum=1),
        Param("lowpass", "float", 6.0, maximum=100.0),
        Param("fast", "bool"),
        Param("device", "choice", "auto", choices=("auto", "cpu", "cuda")),
    ),
    inputs=(Input("in_parts", required=True), Input("in_3dref"), Input("in_mask")),
)


def parse(*words: str):
    return parse_args(SPEC, ["--o", "External/job003/", "--in_parts", "p.star", *words])


def test_relion_31_command_line():
    argv = ("--o External/job003/ --in_parts Extract/job002/particles.star --in_3dref m.mrc --in_mask k.mrc "
            "--sym D7 --fast --batch_size 64 --j 4 --pipeline_control External/job003/").split()
    args = parse_args(SPEC, argv)
    assert args.output_dir == Path("External/job003")
    assert args.in_parts == Path("Extract/job002/particles.star")
    assert args.in_3dref == Path("m.mrc") and args.in_mask == Path("k.mrc") and args.in_mics is None
    assert args.threads == 4
    assert dict(args.params) == {"sym": "D7", "batch_size": 64, "lowpass": 6.0, "fast": True, "device": "auto"}
    assert list(args.params) == ["sym", "batch_size", "lowpass", "fast", "device"]


def test_defaults_and_threads_default_to_one():
    args = parse()
    assert args.threads == 1 and args.verbose is False
    assert args.params["fast"] is False and args.params["sym"] == "C1"


def test_ccpem_capital_d_spelling_and_singular_aliases():
    args = parse_args(SPEC, ["--o", "x/", "--in_part", "p.star", "--in_3Dref", "ref.mrc"])
    assert args.in_3dref == Path("ref.mrc") and args.in_parts == Path("p.star")
    assert args.input("in_3Dref") == Path("ref.mrc")


def test_multi_word_value_is_joined():
    assert parse("--sym", "C1", "x", "y").params["sym"] == "C1 x y"


def test_bare_flag_is_true_and_bool_words():
    assert parse("--fast").params["fast"] is True
    assert parse("--fast", "No").params["fast"] is False
    assert parse("--fast", "yes").params["fast"] is True
    with pytest.raises(ParameterError, match="--fast expects yes/no"):
        parse("--fast", "maybe")


def test_bare_flag_for_a_valued_parameter_is_an_error():
    with pytest.raises(ParameterError, match="--sym needs a value"):
        parse("--sym", "--fast")


def test_negative_numbers_are_values_and_equals_form():
    spec = JobSpec("t", params=(Param("shift", "float", 0.0),))
    assert parse_args(spec, ["--o", "a/", "--shift", "-2.5"]).params["shift"] == -2.5
    assert parse_args(spec, ["--o", "a/", "--shift=-3"]).params["shift"] == -3.0


def test_unknown_parameter_is_one_clear_line():
    with pytest.raises(ParameterError) as info:
        parse("--foo", "3")
    message = str(info.value)
    assert message.startswith("unknown parameter --foo for cryopares_reconstruct; known: --sym, --batch_size")
    assert "\n" not in message


def test_undeclared_input_is_an_error():
    with pytest.raises(ParameterError, match="does not read --in_mics"):
        parse("--in_mics", "mics.star")


def test_missing_required_input():
    with pytest.raises(ParameterError, match="needs --in_parts"):
        parse_args(SPEC, ["--o", "x/"])


def test_missing_output_dir():
    with pytest.raises(ParameterError, match="--o"):
        parse_args(SPEC, ["--in_parts", "p.star"])


@pytest.mark.parametrize("words, match", [
    (["--batch_size", "3.5"], "--batch_size expects an integer"),
    (["--batch_size", "0"], "--batch_size must be >= 1"),
    (["--lowpass", "abc"], "--lowpass expects a number"),
    (["--lowpass", "nan"], "--lowpass expects a finite number"),
    (["--lowpass", "200"], "--lowpass must be <= 100"),
    (["--device", "tpu"], "--device expects one of auto, cpu, cuda"),
    (["--j", "0"], "--j expects a positive number"),
])
def test_conversion_errors(words, match):
    with pytest.raises(ParameterError, match=match):
        parse(*words)


def test_choice_is_case_insensitive():
    assert parse("--device", "CUDA").params["device"] == "cuda"


def test_verbose_and_hyphenated_names():
    args = parse("--verbose", "--batch-size", "8")
    assert args.verbose and args.params["batch_size"] == 8


def test_a_repeated_flag_takes_the_last_value():
    assert parse("--j", "2", "--j", "5").threads == 5


def test_stray_leading_value_is_an_error():
    with pytest.raises(ParameterError, match="unexpected argument"):
        parse_args(SPEC, ["oops", "--o", "x/"])


def test_spec_rejects_bad_declarations():
    with pytest.raises(ValueError):
        Param("o", "str")
    with pytest.raises(ValueError):
        Param("x", "complex")
    with pytest.raises(ValueError):
        Param("x", "choice")
    with pytest.raises(ValueError):
        Param("x", "int", "abc")
    with pytest.raises(ValueError):
        JobSpec("t", params=(Param("a", "int"), Param("a", "str")))
    with pytest.raises(ValueError):
        Input("in_particles")


def test_help_text_lists_params():
    text = SPEC.help_text()
    assert "--sym <str> (default C1)" in text and "--in_parts <file> (required)" in text
