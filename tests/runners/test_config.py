"""TrialConfig / TrainConfig: plain values that round-trip through JSON, range checks that name the flag,
and an ``import runners`` that does not load torch (``study`` and ``analysis`` import it in torch-free places)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runners.config import DataConfig, TrainConfig, TrialConfig


def test_config_round_trips_through_json():
    config = TrialConfig(
        data=DataConfig(name="csv", path="m.csv", label_columns=("a", "b")),
        train=TrainConfig(head="mlp", grad_clip=1.0),
        protocol="finetune",
        loader_workers=2,
    )
    assert TrialConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        (dict(epochs=0), "--epochs"),
        (dict(batch_size=0), "--batch-size"),
        (dict(lr=0.0), "--lr"),
        (dict(weight_decay=-1.0), "--weight-decay"),
        (dict(optimizer="lamb"), "--optimizer"),
        (dict(head="transformer"), "--head"),
        (dict(grad_clip=0.0), "--grad-clip"),
        (dict(amp="fp8"), "--amp"),
        (dict(warmup_epochs=-1), "--warmup-epochs"),
    ],
)
def test_train_settings_out_of_range_name_their_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        (dict(protocol="distill"), "--protocol"),
        (dict(embed_batch_size=0), "--embed-batch-size"),
        (dict(num_threads=0), "--num-threads"),
        (dict(loader_workers=-1), "--loader-workers"),
        (dict(backbone=""), "--backbone"),
    ],
)
def test_trial_settings_out_of_range_name_their_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        TrialConfig(**kwargs)


def test_unknown_setting_in_a_stored_config_is_refused():
    with pytest.raises(ValueError, match="unknown trial settings"):
        TrialConfig.from_dict({"backbone": "resnet18", "colour": "blue"})


def test_importing_runners_does_not_load_torch():
    code = (
        "import sys, runners, runners.config, runners.result; assert callable(runners.__getattr__); print('torch' "
        "in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
