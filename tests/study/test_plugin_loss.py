"""A sixth loss is one module: its class, its registration and its space's ranges, nothing else.

The module is written to a temporary folder and named in ``LOSSWEEP_LOSS_MODULES`` (what a user does
for a loss kept outside the package); a real 3-trial study then runs with it through
``python -m study.run`` (spawned workers, SQLite), and the study's attributes, trials and analysis
frame show the loss, its space and the defaults taken from its class.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from .conftest import ROOT

pytestmark = pytest.mark.slow

# Exactly what README's "Adding a loss" shows.
PLUGIN = '''
"""Binary cross-entropy with label smoothing: targets y (1 - s) + s / 2."""

import torch
import torch.nn.functional as F

from runners.losses import MultiLabelLoss, register_loss
from search_spaces.declare import Range, Space


@register_loss("smooth_bce", space=Space(Range("smoothing", 0.0, 0.3, doc="label smoothing s", limits=(0.0, 1.0))))
class SmoothBCELoss(MultiLabelLoss):
    defaults = {"smoothing": 0.1, "reduction": "sum"}

    def check_params(self, params):
        params = super().check_params(params)
        if not 0.0 <= params["smoothing"] <= 1.0:
            raise ValueError(f"smooth_bce: smoothing must be in [0, 1], got {params['smoothing']!r}")
        return params

    def _chunk(self, x, y, mask, grad_out, loss_out):
        target = y * (1 - self.smoothing) + self.smoothing / 2
        if grad_out is not None:  # d/dx [softplus(x) - t x] = sigmoid(x) - t
            torch.sub(torch.sigmoid(x), target, out=grad_out)
            if mask is not None:
                grad_out.mul_(mask)
        terms = F.softplus(x) - target * x
        if mask is not None:
            terms = terms * mask
        if loss_out is not None:
            loss_out.copy_(terms)
            return None
        return terms.sum()
'''


def test_a_sixth_loss_from_one_module_runs_a_study(tmp_path, monkeypatch, cli, tiny):
    module = tmp_path / "plugins" / "smooth_bce.py"
    module.parent.mkdir()
    module.write_text(textwrap.dedent(PLUGIN))
    monkeypatch.setenv("LOSSWEEP_LOSS_MODULES", str(module))  # run_cli passes the environment on

    # The CLI's help lists it without importing torch (names are discovered, modules not imported).
    code = (
        "import sys, study.run; help = study.run.build_parser().format_help(); "
        "print('smooth_bce' in help, 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]

    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = cli(["--loss", "smooth_bce", "--trials", "3", "--storage", url, *tiny], tmp_path)
    assert result.returncode == 0, result.stderr

    study = optuna.load_study(study_name="smooth_bce-synthetic-linear-probe-full", storage=url)
    attrs = study.user_attrs
    assert attrs["loss"] == "smooth_bce" and attrs["config"]["loss"] == "smooth_bce"
    space = attrs["search_space"]
    assert space["loss"] == "smooth_bce" and space["fixed"] == {}
    assert [(p["name"], p["low"], p["high"], p["log"], p["default"], p["limits"]) for p in space["params"]] == [
        ("smoothing", 0.0, 0.3, False, 0.1, [0.0, 1.0])  # the default comes from the class
    ]
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["design_index"] for t in done) == [0, 1, 2]
    values = [t.params["smoothing"] for t in done]
    assert len(set(values)) == 3 and all(0.0 <= v <= 0.3 for v in values)
    assert all(0.0 < t.value <= 1.0 for t in done)  # a validation mAP

    # analysis reads the loss from the study's attributes (it knows no list of loss names).
    from analysis.load import read_studies

    frame, loaded, _ = read_studies(url)
    assert set(frame["loss"]) == {"smooth_bce"} and loaded[study.study_name].loss == "smooth_bce"


def test_a_missing_plugin_module_is_one_line_and_exit_code_2(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("LOSSWEEP_LOSS_MODULES", str(tmp_path / "nope.py"))
    result = cli(["--loss", "asl", "--trials", "3", "--storage", f"sqlite:///{tmp_path / 's.db'}"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"python -m study.run: error: LOSSWEEP_LOSS_MODULES: loss module {tmp_path / 'nope.py'} does not exist; "
        "give the path of a .py file"
    ]
    assert not (tmp_path / "s.db").exists()


def test_readme_adding_a_loss_shows_exactly_this_module():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Adding a loss", 1)[1]
    shown = section.split("# smooth_bce.py\n", 1)[1].split("```", 1)[0]
    assert shown.strip() == textwrap.dedent(PLUGIN).strip()
