"""Torch loaders: uint8 images -> normalised float batches of the backbone's input size.

In-memory splits (synthetic, npz) are served a whole batch at a time: the sampler yields index lists,
the batch is one fancy-index into the uint8 array and one ``torch.nn.functional.interpolate`` call,
which is an order of magnitude faster than a per-image Python pipeline. File-backed splits (csv) read
and transform one image per item (Pillow decoding is per file anyway) and are batched by the loader.
Both paths apply the same :class:`ImageTransform`, so a data set gives the same tensors either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .base import Split

# ITU-R 601 luma weights, as Pillow's convert("L") uses, to turn RGB images into one channel.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ImageTransform:
    """Resize to ``image_size`` squared (bilinear, antialiased), convert to ``in_chans`` channels (gray
    is repeated, RGB -> luma), scale to [0, 1] and normalise with ``mean`` / ``std``.

    ``mean`` and ``std`` come from the timm backbone's ``pretrained_cfg``; they may have one value or
    ``in_chans`` values (three values with ``in_chans=1`` are averaged, as timm's 3-channel statistics
    apply to a gray image).
    """

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int = 3

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if self.in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3, got {self.in_chans}")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) not in (1, 3):
                raise ValueError(f"{name} must have 1 or 3 values, got {values}")
            object.__setattr__(self, name, values)
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def _stat(self, values: tuple[float, ...]) -> torch.Tensor:
        if len(values) == 3 and self.in_chans == 1:
            values = (sum(values) / 3,)
        return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W) or (B, H, W, 3) -> float32 (B, in_chans, image_size, image_size)."""
        x = torch.as_tensor(images)
        if x.ndim == 3:
            x = x.unsqueeze(1)
        elif x.ndim == 4 and x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)
        else:
            raise ValueError(f"expected images (B, H, W) or (B, H, W, 3), got shape {tuple(x.shape)}")
        x = x.float().div_(255.0)
        if x.shape[1] == 3 and self.in_chans == 1:
            x = (x * torch.tensor(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            )
        if x.shape[1] == 1 and self.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        return ((x - self._stat(self.mean)) / self._stat(self.std)).contiguous()


def _targets(split: Split, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.from_numpy(split.labels[rows].astype(np.float32))
    mask = torch.ones_like(labels) if split.mask is None else torch.from_numpy(split.mask[rows].astype(np.float32))
    return labels, mask


class _ArrayBatches(Dataset):
    """Indexed by a list of positions; returns the whole batch (used with a BatchSampler, batch_size=None)."""

    def __init__(self, split: Split, transform: ImageTransform, rows: np.ndarray):
        self.split, self.transform, self.rows = split, transform, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: Sequence[int]):
        rows = self.rows[np.asarray(positions)]
        labels, mask = _targets(self.split, rows)
        images = self.split.images[rows]  # type: ignore[index]  # only built for in-memory splits
        return self.transform(torch.from_numpy(images)), labels, mask


class _FileImages(Dataset):
    """One image file per item, decoded with Pillow."""

    def __init__(self, split: Split, transform: ImageTransform, rows: np.ndarray):
        self.split, self.transform, self.rows = split, transform, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int):
        row = self.rows[position]
        labels, mask = _targets(self.split, np.array([row]))
        image = self.transform(torch.from_numpy(np.ascontiguousarray(self.split.image(int(row))))[None])
        return image[0], labels[0], mask[0]


def make_loader(
    split: Split,
    transform: ImageTransform,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    indices: Sequence[int] | np.ndarray | None = None,
) -> DataLoader:
    """A DataLoader over ``split`` (or its rows ``indices``) yielding ``(images, labels, mask)``:
    float32 (B, in_chans, S, S), (B, C) and (B, C) with mask 1 where the label is known.

    ``shuffle`` draws a new order every epoch from a generator seeded with ``seed``, so two loaders
    with the same seed yield the same batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = np.arange(len(split)) if indices is None else np.asarray(indices, dtype=np.int64)
    if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= len(split))):
        raise ValueError(f"indices must be a 1-D list of rows in [0, {len(split)}) of the {split.name} split")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    order = RandomSampler(range(len(rows)), generator=generator) if shuffle else SequentialSampler(range(len(rows)))
    if split.images is not None:
        return DataLoader(
            _ArrayBatches(split, transform, rows),
            sampler=BatchSampler(order, batch_size=batch_size, drop_last=False),
            batch_size=None,
            num_workers=num_workers,
        )
    return DataLoader(
        _FileImages(split, transform, rows), sampler=order, batch_size=batch_size, num_workers=num_workers
    )
