"""The command line: --help, and bad input ending in one line, exit code 2 and an untouched store."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners.config import TrialConfig
from study.config import _flag, trial_fields
from study.run import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_every_trial_setting_has_a_flag_with_its_default():
    text = " ".join(build_parser().format_help().split())  # argparse wraps lines where it likes
    for path, _, _ in trial_fields():
        assert _flag(path) in text, path
    default = TrialConfig()
    # a few defaults as printed
    assert f"(default: {default.train.epochs})" in text
    assert f"(default: {default.backbone})" in text
    for flag in (
        "--loss",
        "--trials",
        "--storage",
        "--study-name",
        "--sampler",
        "--seed",
        "--space",
        "--space-mode",
        "--nuisance",
        "--n-alpha",
        "--n-beta",
        "--replicates",
        "--devices",
        "--workers",
        "--timeout",
        "--report",
        "--quiet",
    ):
        assert flag in text
    assert "seed + k" in text  # the seed rule is documented


def test_flags_build_the_trial_config():
    args = build_parser().parse_args(
        [
            "--loss",
            "ral",
            "--trials",
            "3",
            "--epochs",
            "7",
            "--data-num-images",
            "300",
            "--grad-clip",
            "none",
            "--data-label-columns",
            "a,b",
            "--data",
            "csv",
            "--data-path",
            "x.csv",
        ]
    )
    from study.config import trial_config_from_args

    config = trial_config_from_args(args)
    assert config.train.epochs == 7 and config.data.num_images == 300 and config.train.grad_clip is None
    assert config.data.label_columns == ("a", "b")
    assert dataclasses.replace(config, train=TrialConfig().train, data=TrialConfig().data) == TrialConfig()


def test_import_and_help_do_not_import_torch():
    code = "import sys, study.run; study.run.build_parser().format_help(); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--loss", "lovasz", "--trials", "5"], "unknown loss 'lovasz'"),
        (["--loss", "ral", "--trials", "0"], "--trials must be at least 1"),
        (["--loss", "ral", "--trials", "5", "--storage", "sqlite://///no/such/dir/x.db"], "does not exist"),
        (["--loss", "ral", "--trials", "5", "--storage", "mongodb://h/x"], "unsupported storage"),
        (
            ["--loss", "ral", "--trials", "5", "--storage", "postgresql://alice:s3cret@127.0.0.1:1/db"],
            "cannot open the study store",
        ),
        (["--loss", "ral", "--trials", "5", "--devices", "gpu0"], "--devices: 'gpu0' is not a device"),
        (["--loss", "ral", "--trials", "5", "--devices", "cuda:7"], "--devices cuda:7"),
        (["--loss", "ral", "--trials", "5", "--sampler", "grid"], "--sampler grid"),
        (["--loss", "ral", "--trials", "5", "--space-mode", "seeds", "--nuisance"], "seeds"),
        (["--loss", "ral", "--trials", "5", "--data-num-images", "3"], "num_images must be >= 10"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, cli):
    result = cli(args, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m study.run: error:"), result.stderr
    assert message in lines[0]
    assert "s3cret" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []  # no store file, no cache


def test_bad_toml_is_refused_before_the_store_is_created(tmp_path, cli):
    space = tmp_path / "space.toml"
    space.write_text("[gamma_neg\nlow = 1\n")
    result = cli(["--loss", "asl", "--trials", "5", "--space", str(space)], tmp_path)
    assert result.returncode == 2 and "space.toml" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "lossweep.db").exists()


def test_an_argparse_error_is_one_usage_line_and_the_error(tmp_path, cli):
    result = cli(["--loss", "asl", "--no-such-flag"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "usage: python -m study.run --loss LOSS --trials N [options] (see --help)",
        "python -m study.run: error: the following arguments are required: --trials",
    ]
    result = cli(["--loss", "asl", "--trials", "x"], tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 2
    assert "argument --trials: invalid int value: 'x'" in result.stderr
    for flag in ("--workers", "--pack-size"):
        for bad in ("0", "two"):
            result = cli(["--loss", "asl", "--trials", "3", flag, bad], tmp_path)
            assert result.returncode == 2 and len(result.stderr.splitlines()) == 2
            assert f"argument {flag}: expected a positive integer or auto, got '{bad}'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_workers_auto_is_one_single_threaded_worker_per_cpu_core_and_one_per_gpu():
    from study.config import ExecutionConfig, available_cores, physical_memory
    from study.run import options_from_args

    def execution(*flags):
        return options_from_args(build_parser().parse_args(["--loss", "ral", "--trials", "3", *flags])).execution

    cores = available_cores()
    assert execution("--devices", "cpu").slots() == ["cpu"] * cores  # the default: auto
    assert execution("--devices", "cpu", "--workers", "auto").slots(threads=2) == ["cpu"] * max(1, cores // 2)
    assert execution("--devices", "cpu", "--workers", "3").slots() == ["cpu"] * 3
    assert execution("--devices", "cpu", "--sampler", "tpe").slots() == ["cpu"]  # tpe: one in all
    assert execution("--devices", "cpu", "--sampler", "tpe", "--workers", "2").slots() == ["cpu"] * 2
    auto = ExecutionConfig(devices=("cuda:0", "cuda:1", "cpu"), workers=None)
    assert auto.slots() == ["cuda:0", "cuda:1", *["cpu"] * cores]
    assert ExecutionConfig(devices=("cuda:0", "cuda:1"), workers=2).slots() == ["cuda:0"] * 2 + ["cuda:1"] * 2
    # and no more workers than half the memory holds
    half = physical_memory() // 2
    assert ExecutionConfig(workers=None).slots(worker_bytes=half // 2) == ["cpu"] * min(cores, 2)
    assert ExecutionConfig(workers=None).slots(worker_bytes=2 * half) == ["cpu"]  # at least one
    assert ExecutionConfig(workers=None).slots(worker_bytes=1) == ["cpu"] * cores
    assert ExecutionConfig(workers=3).slots(worker_bytes=2 * half) == ["cpu"] * 3  # a count given is kept
    with pytest.raises(ValueError, match="--workers"):
        ExecutionConfig(workers=0)
