"""Frozen-backbone embeddings: computed once per data set and backbone, cached on disk and in memory.

A linear-probe study runs hundreds of trials on the same embeddings, so embedding must happen once:

1. on disk, with :class:`joblib.Memory` under ``<cache_dir>/embeddings``, keyed by the data set's
   fingerprint, the backbone name, the checkpoint's SHA-256, the image size and the numeric precision.
   joblib writes each result to a temporary file and renames it, so two workers that miss the cache
   at the same moment both compute and the last rename wins with identical bytes: no corruption.
2. in memory, per process, as standardised tensors on the trial's device (:func:`load_features`),
   so that the second and later trials of a worker cost only the head's training.

A ``features`` data set (``--data features``) already holds its embeddings: they skip the backbone and
the disk cache (the file is its own cache) and get the same standardisation and in-memory cache.

A random-init backbone is initialised with a fixed seed (:data:`BACKBONE_INIT_SEED`): the frozen
feature extractor is part of the experimental setup, not of a trial's seed, and every process must
compute the same embeddings for the same key.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones import create_backbone, data_spec
from .checksum import file_sha256
from .lru import LRUCache

BACKBONE_INIT_SEED = 0
SPLITS = ("train", "val", "test")
_MEMORY_CACHE_SIZE = 2  # feature sets kept per process; a worker normally needs only one
_memory_cache: LRUCache[FeatureSet] = LRUCache(_MEMORY_CACHE_SIZE)
_sha_cache: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class SplitFeatures:
    """Standardised embeddings of one split, with its labels and label mask (None: all labels known)."""

    x: torch.Tensor  # (N, D) float32
    y: torch.Tensor  # (N, C) float32
    mask: torch.Tensor | None  # (N, C) float32 or None


@dataclass(frozen=True)
class FeatureSet:
    train: SplitFeatures
    val: SplitFeatures
    test: SplitFeatures
    key: str

    @property
    def dim(self) -> int:
        return int(self.train.x.shape[1])


def embedding_settings(config: Any) -> dict[str, Any]:
    """The embedding arguments of :func:`load_features` / :func:`compute_embeddings` a TrialConfig gives
    (one place, so the linear probe and ``runners.embed`` embed alike)."""
    return {
        "backbone": config.backbone,
        "checkpoint": config.checkpoint,
        "image_size": config.data.image_size,
        "cache_dir": config.cache_dir,
        "batch_size": config.embed_batch_size,
        "amp": config.train.amp,
        "num_workers": config.loader_workers,
    }


def checkpoint_sha256(path: str | os.PathLike | None) -> str | None:
    """SHA-256 of the checkpoint file, memoised per (path, size, mtime) because checkpoints are large."""
    if path is None:
        return None
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint file {path!r} does not exist; pass the path of a local .pth or .safetensors file")
    stat = os.stat(path)
    ident = (path, stat.st_size, stat.st_mtime_ns)
    if ident not in _sha_cache:
        _sha_cache[ident] = file_sha256(path)
    return _sha_cache[ident]


def embedding_precision(device: torch.device, amp: str = "auto") -> str:
    """``float32`` on CPU/MPS or with AMP off; ``bfloat16``/``float16`` autocast on CUDA (part of the cache key)."""
    if device.type != "cuda" or amp == "off":
        return "float32"
    if amp == "fp16":
        return "float16"
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float16"


def embedding_key(fingerprint: str, backbone: str, checkpoint_sha: str | None, image_size: int, precision: str) -> str:
    """Human-readable identity of one set of embeddings (the values joblib hashes)."""
    weights = checkpoint_sha[:16] if checkpoint_sha else f"random-init-seed{BACKBONE_INIT_SEED}"
    return f"{fingerprint[:16]}/{backbone}/{weights}/{image_size}px/{precision}"


def compute_embeddings(
    dataset: Any,
    *,
    backbone: str,
    checkpoint: str | None,
    image_size: int,
    cache_dir: str | os.PathLike,
    device: torch.device,
    batch_size: int = 128,
    amp: str = "auto",
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Raw (unstandardised) float32 embeddings of the train, val and test splits, from the disk cache when present."""
    from joblib import Memory

    memory = Memory(Path(cache_dir) / "embeddings", verbose=0)
    cached = memory.cache(
        _embed_splits, ignore=["dataset", "checkpoint", "device", "batch_size", "num_workers", "progress"]
    )
    return cached(
        dataset.fingerprint,
        backbone,
        checkpoint_sha256(checkpoint),
        int(image_size),
        embedding_precision(device, amp),
        dataset=dataset,
        checkpoint=checkpoint,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )


def load_features(
    dataset: Any,
    *,
    backbone: str,
    checkpoint: str | None,
    image_size: int,
    cache_dir: str | os.PathLike,
    device: torch.device,
    batch_size: int = 128,
    amp: str = "auto",
    num_workers: int = 0,
    progress: bool = True,
) -> FeatureSet:
    """Standardised embeddings (train-split mean and std) as tensors on ``device``, memoised per process."""
    from_file = bool(getattr(dataset, "has_features", False))
    if from_file:  # precomputed: neither backbone nor checkpoint nor precision is involved
        key = f"{dataset.fingerprint[:16]}/features-file"
    else:
        precision = embedding_precision(device, amp)
        key = embedding_key(dataset.fingerprint, backbone, checkpoint_sha256(checkpoint), int(image_size), precision)

    def build() -> FeatureSet:
        if from_file:
            raw = {name: getattr(dataset, name).features for name in SPLITS}
        else:
            raw = compute_embeddings(
                dataset,
                backbone=backbone,
                checkpoint=checkpoint,
                image_size=image_size,
                cache_dir=cache_dir,
                device=device,
                batch_size=batch_size,
                amp=amp,
                num_workers=num_workers,
                progress=progress,
            )
        mean, std = standardisation(raw["train"])
        splits = {}
        for name in SPLITS:
            part = getattr(dataset, name)
            x = torch.from_numpy(((raw[name] - mean) / std).astype(np.float32)).to(device)
            y = torch.from_numpy(np.asarray(part.labels, dtype=np.float32)).to(device)
            mask = getattr(part, "mask", None)
            mask_t = None if mask is None else torch.from_numpy(np.asarray(mask, dtype=np.float32)).to(device)
            splits[name] = SplitFeatures(x=x, y=y, mask=mask_t)
        return FeatureSet(key=key, **splits)

    return _memory_cache.get_or_make((key, str(device), os.path.abspath(cache_dir)), build)


def standardisation(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the training embeddings; constant dimensions get std 1."""
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[std < 1e-6] = 1.0  # a dead unit (e.g. a ReLU that never fires) stays 0 instead of becoming NaN
    return mean.astype(np.float32), std.astype(np.float32)


def clear_memory_cache() -> None:
    """Forget the in-process feature sets (the disk cache is untouched)."""
    _memory_cache.clear()


def _embed_splits(
    fingerprint: str,
    backbone: str,
    checkpoint_sha: str | None,
    image_size: int,
    precision: str,
    *,
    dataset: Any,
    checkpoint: str | None,
    device: torch.device,
    batch_size: int,
    num_workers: int,
    progress: bool,
) -> dict[str, np.ndarray]:
    # The first five arguments are the cache key; the rest are ignored by joblib (see compute_embeddings).
    from .data import ImageTransform, make_loader

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BACKBONE_INIT_SEED)
        model = create_backbone(backbone, checkpoint)
    model = model.eval().to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs
    spec = data_spec(model)
    transform = ImageTransform(image_size, spec.mean, spec.std, spec.in_chans)
    autocast = torch.autocast("cuda", dtype=getattr(torch, precision)) if precision != "float32" else nullcontext()
    total = sum(len(getattr(dataset, name)) for name in SPLITS)
    out = {}
    with _progress_bar(total, f"embedding ({backbone})", progress) as bar, torch.inference_mode(), autocast:
        for name in SPLITS:
            chunks = []
            loader = make_loader(getattr(dataset, name), transform, batch_size, shuffle=False, num_workers=num_workers)
            for images, _, _ in loader:
                images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                chunks.append(model(images).float().cpu().numpy())
                bar.update(len(images))
            out[name] = np.concatenate(chunks).astype(np.float32, copy=False)
            if not np.isfinite(out[name]).all():
                raise ValueError(
                    f"backbone {backbone!r} produced non-finite embeddings on the {name} split; "
                    "check the checkpoint, or use --amp off"
                )
    return out


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=not (enabled and sys.stderr.isatty()))
