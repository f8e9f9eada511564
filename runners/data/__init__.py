"""Multi-label data sets: the built-in synthetic CXR-LT look-alike, CSV manifests with an image folder,
a MedMNIST-style .npz archive and precomputed embeddings, all loaded into one :class:`MultiLabelDataset`.

``load_dataset(cfg, cache_dir)`` is the entry point; ``make_loader`` turns a split into a torch
DataLoader of normalised image batches. torch is imported only by ``make_loader``'s module.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..config import DataConfig
from .base import MultiLabelDataset, Split, check_dataset

if TYPE_CHECKING:
    from .loader import ImageTransform, make_loader

__all__ = ["load_dataset", "MultiLabelDataset", "Split", "ImageTransform", "make_loader", "check_dataset"]


def load_dataset(cfg: DataConfig, cache_dir: str | os.PathLike) -> MultiLabelDataset:
    """Load (or generate and cache) the data set ``cfg`` describes.

    Raises:
        ValueError: naming the file, row or column when the source is missing or malformed, or when a
            split lacks a positive for some class.
    """
    if cfg.name == "synthetic":
        from .synthetic import load_synthetic

        return load_synthetic(cfg, cache_dir)
    if cfg.name == "csv":
        from .csv_manifest import load_csv

        return load_csv(cfg, cache_dir)
    if cfg.name == "npz":
        from .npz import load_npz

        return load_npz(cfg, cache_dir)
    if cfg.name == "features":
        from .features_file import load_features_file

        return load_features_file(cfg, cache_dir)
    raise ValueError(f"unknown data set {cfg.name!r}; choose synthetic, csv, npz or features")


def __getattr__(name: str) -> Any:
    # ImageTransform and make_loader need torch; import it only when they are asked for.
    if name in ("ImageTransform", "make_loader"):
        from . import loader

        return getattr(loader, name)
    raise AttributeError(name)
