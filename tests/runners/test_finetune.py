"""The finetune protocol on CPU with tiny inputs: it trains the whole network, repeats, and diverges cleanly."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import runners
from runners.config import TrainConfig
from runners.protocols.finetune import build_model


def test_finetune_completes_and_repeats_bit_for_bit(finetune_config, prepared):
    first = runners.run_trial(finetune_config, "asl", {}, seed=1)
    again = runners.run_trial(finetune_config, "asl", {}, seed=1)
    assert first.status == "complete", first.fail_reason
    assert 0 < first.value <= 1 and len(first.test["per_class_ap"]) == finetune_config.data.num_classes
    assert again.value == first.value and again.test["per_class_ap"] == first.test["per_class_ap"]


def test_finetune_trains_the_backbone_not_only_the_head(finetune_config, prepared, monkeypatch):
    from runners.losses import create_loss
    from runners.protocols import finetune

    before = build_model(finetune_config, 5, seed=0).backbone.state_dict()
    trained = {}

    def keep(*args, **kwargs):  # a spy: builds the real model and keeps a reference to it
        trained["model"] = build_model(*args, **kwargs)
        return trained["model"]

    monkeypatch.setattr(finetune, "build_model", keep)
    finetune.run(finetune_config, prepared.dataset, create_loss("bce"), 0, torch.device("cpu"))
    after = trained["model"].backbone.state_dict()
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert any("conv" in k or "weight" in k for k in changed), "no backbone weight moved"


def test_finetune_with_clipping_warmup_and_sgd_runs(finetune_config, prepared):
    config = dataclasses.replace(
        finetune_config,
        train=TrainConfig(epochs=2, batch_size=48, lr=1e-2, optimizer="sgd", grad_clip=1.0, warmup_epochs=1),
    )
    result = runners.run_trial(config, "ral", {}, seed=2)
    assert result.status == "complete" and math.isfinite(result.value)


def test_finetune_divergence_is_a_result(finetune_config, prepared):
    config = dataclasses.replace(finetune_config, train=TrainConfig(epochs=2, batch_size=64, lr=1e30, optimizer="sgd"))
    result = runners.run_trial(config, "bce", {}, seed=0)
    assert result.status == "diverged" and result.diverged_step is not None
    assert not math.isfinite(result.diverged_value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
def test_finetune_on_cuda_with_each_precision(finetune_config, prepared, amp):
    config = dataclasses.replace(
        finetune_config, device="cuda", train=dataclasses.replace(finetune_config.train, amp=amp)
    )
    result = runners.run_trial(config, "asl", {}, seed=0)
    assert result.status == "complete" and 0 < result.value <= 1


def test_prepare_for_finetune_checks_the_backbone_without_embedding(finetune_config, tmp_path):
    prepared = runners.prepare(finetune_config, progress=False)
    assert prepared.embedding_key is None and prepared.embed_seconds == 0.0
    assert len(prepared.class_names) == finetune_config.data.num_classes
    bad = tmp_path / "bad.pth"
    torch.save({"not.a.resnet.weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="does not fit backbone"):
        runners.prepare(dataclasses.replace(finetune_config, checkpoint=str(bad)), progress=False)
