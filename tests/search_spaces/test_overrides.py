"""--space FILE: TOML overrides of a search space, and every way such a file can be wrong."""

from __future__ import annotations

import json
import textwrap

import pytest

from search_spaces import SearchSpace, get_space


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "space.toml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


def test_override_changes_ranges_scale_default_and_fixes_a_parameter(write):
    path = write(
        """
        loss = "ral"
        [gamma_neg]
        low = 0.0
        high = 8.0
        [clip]
        low = 0.01
        high = 0.3
        log = true
        [lam]
        fixed = 2.0
        [alpha_2]
        default = -1.0
        """
    )
    space = get_space("ral", "full", overrides=path)
    assert "lam" not in space.names and space.fixed == {"lam": 2.0}
    assert (space["gamma_neg"].low, space["gamma_neg"].high, space["gamma_neg"].default) == (0.0, 8.0, 4.0)
    assert space["clip"].log and space.from_unit([0.5] * space.dim)["clip"] == pytest.approx((0.01 * 0.3) ** 0.5)
    assert space.defaults()["alpha_2"] == -1.0
    assert space.loss_params(space.defaults())["lam"] == 2.0
    # Untouched parameters keep the declaration.
    assert space["gamma_pos"] == get_space("ral")["gamma_pos"]
    # The overridden space survives the store round-trip.
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_override_default_is_the_held_value_in_matched_and_seeds_modes(write):
    path = write("[lam]\ndefault = 2.5\n[gamma_neg]\ndefault = 3.0\n")
    assert get_space("ral", "matched", overrides=path).fixed["lam"] == 2.5
    assert get_space("ral", "seeds", overrides=path).fixed["gamma_neg"] == 3.0


def test_fixed_outside_the_sampling_range_but_inside_limits_is_allowed(write):
    # lam <= 1 is pathological but legal: a user may hold it there to study that region.
    space = get_space("hill", overrides=write("[lam]\nfixed = 0.9\n"))
    assert space.fixed == {"lam": 0.9}


def test_nuisance_parameters_can_be_overridden_in_nuisance_mode(write):
    space = get_space("asl", nuisance=True, overrides=write("[lr]\nlow = 1e-5\nhigh = 1e-2\n"))
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (1e-5, 1e-2, True)


@pytest.mark.parametrize(
    "text,loss,match",
    [
        ("[gamma_neg]\nlow = 1.0\nhigh = \n", "asl", r"invalid TOML: .*line 3"),
        ("[gamma_neg]\nlow = 5.0\nhigh = 5.0\n", "asl", r"\[gamma_neg\] low \(5\) must be smaller than high \(5\)"),
        ("[gamma_neg]\nlow = 7.0\n", "asl", r"\[gamma_neg\] low \(7\) must be smaller than high \(6\)"),
        ("[clip]\nlog = true\n", "asl", r"\[clip\] a log-scale range needs low > 0"),
        (
            "[gamma_neg]\nlow = -1.0\nhigh = 2.0\nlog = true\ndefault = 1.0\n",
            "asl",
            r"\[gamma_neg\] a log-scale range needs low > 0",
        ),
        ("[lamda]\nfixed = 2.0\n", "ral", r"\[lamda\] is not a parameter of the 'ral' space"),
        ("[alpha_3]\nlow = 0.0\n", "ral", r"\[alpha_3\] is not a parameter of the 'ral' space"),
        ('loss = "asl"\n[lam]\nfixed = 2.0\n', "ral", r"the file is for loss 'asl' but the study's loss is 'ral'"),
        ("[gamma_neg]\nhigh = 6.0\nstep = 0.5\n", "asl", r"\[gamma_neg\] unknown key\(s\) step"),
        ("sampler = 'tpe'\n", "asl", r"unknown top-level key 'sampler'"),
        ("gamma_neg = 3.0\n", "asl", r"gamma_neg = 3.0 must be a table: write \[gamma_neg\]"),
        ("[gamma_neg]\ndefault = 7.0\n", "asl", r"\[gamma_neg\] default 7 lies outside the range \[0, 6\]"),
        ("[gamma_neg]\nhigh = 3.0\n", "asl", r"\[gamma_neg\] default 4 lies outside the range \[0, 3\]"),
        ("[lam]\nfixed = 2.0\nlow = 1.2\n", "hill", r"\[lam\] 'fixed' holds the parameter at one value; remove low"),
        ("[alpha_1]\nhigh = 6.0\n", "ral", r"\[alpha_1\] range \[-2, 6\] leaves the allowed \[-5, 5\]"),
        ("[clip]\nfixed = 1.5\n", "asl", r"\[clip\] fixed = 1.5 is outside the allowed \[0, 1\]"),
        ("[gamma_neg]\nlow = true\n", "asl", r"\[gamma_neg\] low must be a number, got True"),
        ("[gamma_neg]\nlog = 1\n", "asl", r"\[gamma_neg\] log must be true or false"),
        ("[lr]\nlow = 1e-5\n", "asl", r"\[lr\] is not a parameter .*--nuisance"),
    ],
)
def test_invalid_files_name_the_file_and_the_parameter(write, text, loss, match):
    path = write(text)
    with pytest.raises(ValueError, match=match) as info:
        get_space(loss, overrides=path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


def test_missing_file_is_a_value_error_naming_it(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ValueError, match=f"{path}: search-space file not found"):
        get_space("asl", overrides=path)


def test_cli_prints_the_space_and_checks_an_override_file(write, capsys):
    from search_spaces.__main__ import main

    assert main(["ral", "--mode", "matched"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "ral (matched): 3 swept"
    assert any(line.split()[:4] == ["gamma_neg", "0", "6", "linear"] for line in out.splitlines())
    assert any(line.split() == ["lam", "fixed", "1.5"] for line in out.splitlines())

    bad = write("[gamma_neg]\nlow = 9.0\n")
    assert main(["asl", "--space", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m search_spaces: error: {bad}: [gamma_neg] low (9)") and err.count("\n") == 1

    assert main(["asl", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == get_space("asl").to_dict()
