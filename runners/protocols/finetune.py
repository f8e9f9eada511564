"""``finetune``: train the whole timm network (backbone + a new linear head) with the loss under study.

On CUDA the network runs channels-last under autocast (bf16 where supported, else fp16 with a
GradScaler; ``TrainConfig.amp`` overrides); on CPU it runs in float32 so tests can cover it on tiny
inputs. The schedule is per-step cosine with optional linear warm-up, gradients are optionally
clipped, and the network is scored once after the last epoch, as in the linear probe.

Initialisation: without a checkpoint the backbone starts from timm's random init drawn with the
fixed :data:`runners.features.BACKBONE_INIT_SEED` — the backbone stands in for a pretrained network,
part of the setup shared by every trial — while the trial's seed draws the head and the batch order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones import create_backbone, data_spec, feature_dim
from ..config import TrialConfig
from ..features import BACKBONE_INIT_SEED
from ._training import (
    Predictions,
    amp_dtype,
    autocast,
    batch_loss,
    clip_gradients,
    cosine_schedule,
    make_optimizer,
    probabilities,
    seed_everything,
)


class Classifier(nn.Module):
    """A classifier-free timm backbone followed by a linear head over the data set's classes."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim(backbone), num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def build_model(config: TrialConfig, num_classes: int, seed: int) -> Classifier:
    """Backbone from the fixed init seed (or the checkpoint), head from the trial's seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BACKBONE_INIT_SEED)
        backbone = create_backbone(config.backbone, config.checkpoint)
    seed_everything(seed)
    return Classifier(backbone, num_classes)


def run(config: TrialConfig, dataset: Any, loss_fn: nn.Module, seed: int, device: torch.device) -> Predictions:
    """Fine-tune from ``seed`` with ``loss_fn`` and predict the val and test splits.

    Raises :class:`~runners.protocols._training.Diverged` on a non-finite loss or prediction.
    """
    from ..data import ImageTransform, make_loader

    train = config.train
    model = build_model(config, dataset.num_classes, seed)
    spec = data_spec(model.backbone)
    transform = ImageTransform(config.data.image_size, spec.mean, spec.std, spec.in_chans)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)  # type: ignore[call-overload]  # stubs lack it
    dtype = amp_dtype(device, train.amp)
    # fp16 needs loss scaling against gradient underflow; bf16 has float32's range and does not.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    optimizer = make_optimizer(model, train)
    loader = make_loader(
        dataset.train, transform, train.batch_size, shuffle=True, seed=seed, num_workers=config.loader_workers
    )
    steps_per_epoch = len(loader)
    schedule = cosine_schedule(optimizer, train.epochs * steps_per_epoch, train.warmup_epochs * steps_per_epoch)
    has_mask = dataset.train.mask is not None

    step = 0
    model.train()
    for _ in range(train.epochs):
        for images, labels, mask in loader:
            if images.shape[0] < 2:
                # BatchNorm cannot normalise a batch of one in training mode; dropping the odd last image is harmless.
                continue
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            labels = labels.to(device, non_blocking=True)
            mask = mask.to(device, non_blocking=True) if has_mask else None
            with autocast(device, dtype):
                logits = model(images)
            loss = batch_loss(loss_fn, logits, labels, mask, step)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if train.grad_clip is not None:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                clip_gradients(model, train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            step += 1

    model.eval()
    val = probabilities(_logits(model, dataset.val, transform, config, device, dtype, memory_format), "val", step)
    test = probabilities(_logits(model, dataset.test, transform, config, device, dtype, memory_format), "test", step)
    return Predictions(val=val, test=test, steps=step)


def _logits(
    model: nn.Module, split: Any, transform: Any, config: TrialConfig, device: torch.device, dtype, memory_format
) -> torch.Tensor:
    from ..data import make_loader

    chunks = []
    loader = make_loader(split, transform, config.embed_batch_size, shuffle=False, num_workers=config.loader_workers)
    with torch.inference_mode(), autocast(device, dtype):
        for images, _, _ in loader:
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            chunks.append(model(images).float())
    return torch.cat(chunks)


def images_per_second(
    config: TrialConfig, dataset: Any, loss_fn: nn.Module, device: torch.device, steps: int = 5
) -> float:
    """Training throughput of this protocol (for ``benchmarks.trial``).

    Images per second over ``steps`` steps after one warm-up.
    """
    import time

    from ..data import ImageTransform, make_loader

    model = build_model(config, dataset.num_classes, 0)
    spec = data_spec(model.backbone)
    transform = ImageTransform(config.data.image_size, spec.mean, spec.std, spec.in_chans)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format).train()  # type: ignore[call-overload]  # stubs lack it
    dtype = amp_dtype(device, config.train.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    optimizer = make_optimizer(model, config.train)
    batch = next(iter(make_loader(dataset.train, transform, config.train.batch_size)))
    images = batch[0].to(device).contiguous(memory_format=memory_format)
    labels = batch[1].to(device)
    timings = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        with autocast(device, dtype):
            logits = model(images)
        loss = batch_loss(loss_fn, logits, labels, None, i)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - started)
    return float(images.shape[0] / np.median(timings[1:]))
