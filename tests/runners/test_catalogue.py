"""The loss catalogue: discovered modules, plugin modules, and the mistakes a loss author can make."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runners import catalogue

ROOT = Path(__file__).resolve().parents[2]

MODULE = """
from runners.losses import MultiLabelLoss, register_loss
from search_spaces.declare import Range, Space


@register_loss({name!r}, space=Space(Range("w", 0.0, 1.0, doc="a weight")))
class Plugin(MultiLabelLoss):
    defaults = {{"w": 0.5, "reduction": "sum"}}
"""


@pytest.fixture(autouse=True)
def forget_registrations():
    """Leave the process's registry (and plugin modules) as found, for the tests that list every loss."""
    from runners.losses import registry

    before, modules = dict(registry._LOSSES), set(sys.modules)
    yield
    registry._LOSSES.clear()
    registry._LOSSES.update(before)
    for name in set(sys.modules) - modules:
        if name.startswith(("_lossweep_plugin_", "plugin_")):
            del sys.modules[name]


def write(folder: Path, stem: str, registers: str | None = None) -> Path:
    path = folder / f"{stem}.py"
    path.write_text(textwrap.dedent(MODULE.format(name=registers or stem)))
    return path


def test_names_are_discovered_without_importing_a_loss_module():
    code = "import sys; from runners import catalogue; print(*catalogue.loss_names()); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(ROOT)}
    )
    assert out.stdout.splitlines() == ["asl bce focal hill ral", "False"]


def test_a_plugin_file_and_a_plugin_module_join_the_catalogue(tmp_path, monkeypatch):
    from search_spaces import get_space

    write(tmp_path, "plugin_by_name")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "elsewhere").mkdir()
    path = write(tmp_path / "elsewhere", "plugin_by_path")
    monkeypatch.setenv(catalogue.ENV_VAR, f"{path}:plugin_by_name")
    assert catalogue.loss_names()[-2:] == ("plugin_by_path", "plugin_by_name")
    for name in ("plugin_by_path", "plugin_by_name"):
        space = get_space(name)
        assert [(p.name, p.low, p.high, p.default) for p in space.params] == [("w", 0.0, 1.0, 0.5)]
        assert catalogue.loss_class(name)().params == {"w": 0.5, "reduction": "sum"}


@pytest.mark.parametrize(
    "entry,match",
    [
        ("{tmp}/asl.py", "names loss 'asl', already defined by runners.losses.asl; rename the module"),
        ("{tmp}/missing.py", "loss module .*missing.py does not exist"),
        ("{tmp}/wrong_name.py", "registers no loss named 'wrong_name'"),
    ],
)
def test_plugin_mistakes_say_what_to_do(tmp_path, monkeypatch, entry, match):
    write(tmp_path, "asl")
    write(tmp_path, "wrong_name", registers="other_name_x")
    monkeypatch.setenv(catalogue.ENV_VAR, entry.format(tmp=tmp_path))
    with pytest.raises(ValueError, match=match):
        catalogue.loss_names()  # what the CLIs ask first
        catalogue.loss_class(entry.rpartition("/")[2].removesuffix(".py"))


def test_a_swept_parameter_needs_a_class_default():
    from runners.losses import MultiLabelLoss, register_loss
    from search_spaces.declare import Range, Space

    with pytest.raises(ValueError, match="sweeps 'w' but the loss class's defaults have no 'w'"):

        @register_loss("no_default_x", space=Space(Range("w", 0.0, 1.0)))
        class NoDefault(MultiLabelLoss):
            defaults = {"reduction": "sum"}


def test_a_loss_without_a_space_cannot_be_studied():
    from runners.losses import MultiLabelLoss, register_loss
    from search_spaces import get_space

    @register_loss("spaceless_x")
    class Spaceless(MultiLabelLoss):
        defaults = {"reduction": "sum"}

    with pytest.raises(ValueError, match=r"declares no search space; pass space=Space\(...\)"):
        get_space("spaceless_x")
