"""timm backbones: build one offline, load a local checkpoint into it, read its input statistics.

Nothing is fetched from a hub: models are always created with ``pretrained=False`` and weights come
only from a file the user names. Images are fed with 3 channels (grayscale is repeated by the data
transform) so that ImageNet-style checkpoints load unchanged.

Default backbone (``runners.config.DEFAULT_BACKBONE``): ``mobilenetv3_small_100``, chosen by
measurement with ``python -m benchmarks.trial`` on the default synthetic set (6,000 images of 64x64,
the 26 CXR-LT 2023 classes and priors), random init, one thread, the three side by side in one run on
the shared 2-core development machine (loaded by other jobs, so absolute seconds are pessimistic; the
ratios are what matter). Linear probe: BCE, 30 epochs, mean of 2 seeds:

    backbone               dim   embed s (cold)  images/s   BCE val mAP
    mobilenetv3_small_100  1024        4.0          1483       0.277
    convnext_atto           320       11.0           548       0.190
    resnet18                512       28.2           213       0.139   (chance is about 0.09)

At random init, resnet18's zero-initialised last BatchNorm of each block (timm's ``zero_init_last``)
leaves little more than its stem, so its embeddings barely separate the classes; MobileNetV3 is
both the fastest to embed and the most informative. With a real checkpoint any timm model works.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import DEFAULT_BACKBONE  # noqa: F401  (re-exported: the default lives with the settings)

# Prefixes that wrappers add to parameter names: DistributedDataParallel / DataParallel, torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


@dataclass(frozen=True)
class DataSpec:
    """What the backbone expects as input: normalisation statistics and channel count."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int


def create_backbone(name: str, checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """A timm model without classifier (``num_classes=0``: it returns pooled features).

    ``checkpoint`` is a local ``.pth``/``.pt`` or ``.safetensors`` file; without it the weights
    are timm's random initialisation (seeded by the caller).
    """
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ValueError(f"unknown timm backbone {name!r}{hint}; see timm.list_models()")
    model = timm.create_model(name, pretrained=False, num_classes=0)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model


def data_spec(model: nn.Module) -> DataSpec:
    """Normalisation statistics from the model's ``pretrained_cfg`` (ImageNet's when it has none)."""
    cfg: Mapping[str, Any] = getattr(model, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    in_chans = int(getattr(model, "in_chans", None) or cfg.get("input_size", (3,))[0])
    return DataSpec(mean=mean, std=std, in_chans=in_chans)


def feature_dim(model: nn.Module) -> int:
    """Width of the pooled features the model returns with ``num_classes=0``."""
    # ``num_features`` is the width before timm's "head hidden" layer (e.g. MobileNetV3's conv_head), so
    # prefer ``head_hidden_size`` when the model has one.
    return int(getattr(model, "head_hidden_size", None) or model.num_features)  # type: ignore[arg-type]  # timm: an int


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from ``{"state_dict": ...}`` / ``{"model": ...}`` and prefixes."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"checkpoint file {str(path)!r} does not exist; pass the path of a local .pth or .safetensors file"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: Any = load_file(str(path), device="cpu")
    else:
        try:
            # weights_only: a checkpoint must never run code when it is read.
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors come in many types
            raise ValueError(
                f"cannot read checkpoint {str(path)!r} as a torch state dict ({type(exc).__name__}: {exc}); "
                "save it with torch.save(model.state_dict(), path) or safetensors"
            ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(raw, Mapping) and isinstance(raw.get(key), Mapping):
            raw = raw[key]
            break
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError(
            f"checkpoint {str(path)!r} does not hold a state dict of tensors; "
            "save it with torch.save(model.state_dict(), path)"
        )
    state = {}
    for key, value in raw.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    return state


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint into a classifier-free timm model, strictly, except for the classifier head.

    Head keys (``pretrained_cfg["classifier"]``) are dropped because the probe and the fine-tuned
    model get a new head for the data set's classes. Any other missing, unexpected or mis-shaped key
    is an error: silently keeping random weights would make every trial of a study meaningless.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    heads = _classifier_prefixes(model)
    state = {k: v for k, v in state.items() if k in own or not any(k == h or k.startswith(h + ".") for h in heads)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {_few(unexpected)})")
    if mismatched:
        shapes = ", ".join(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:3])
        problems.append(f"{len(mismatched)} with another shape ({shapes})")
    if problems:
        name = getattr(model, "default_cfg", {}).get("architecture", type(model).__name__)
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit backbone {name!r}: keys "
            + "; ".join(problems)
            + ". Check that --backbone names the architecture the checkpoint was trained with"
        )
    model.load_state_dict(state, strict=True)


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    heads = cfg.get("classifier") or ()
    if isinstance(heads, str):
        heads = (heads,)
    return tuple(heads) + ("head", "fc", "classifier")


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
