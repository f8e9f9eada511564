"""The in-memory form every data source is turned into: three splits of binary labels plus images.

A :class:`Split` holds its images either as one uint8 array (synthetic, npz: indexed and resized batch
by batch) or as file paths (csv: read one by one with Pillow), or, for the ``features`` source, no
images at all but precomputed embeddings (``features``, float32 (N, D)). Everything downstream (loaders, metrics,
the embedding cache) sees only this interface, so a new source only has to produce a
:class:`MultiLabelDataset` and pass :func:`check_dataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
# Names a source may give its splits (split column values, file names, array prefixes). CXR-LT ships its
# validation set as "development".
SPLIT_ALIASES = {
    "train": 0, "training": 0, "trainval": 0, "train_val": 0,
    "val": 1, "valid": 1, "validation": 1, "dev": 1, "development": 1,
    "test": 2, "testing": 2,
}  # fmt: skip


@dataclass
class Split:
    """One split: ``labels`` (N, C) uint8 in {0, 1}; ``mask`` (N, C) bool, False where a label is unknown
    (None: all known); images in ``images`` (N, H, W) / (N, H, W, 3) uint8 or as files in ``paths``.

    ``clean_labels`` is set only where the true labels are known although the training labels are not
    (the synthetic set's dropped positives): it lets a study measure what the missing labels cost.
    """

    name: str
    labels: np.ndarray
    mask: np.ndarray | None = None
    images: np.ndarray | None = field(default=None, repr=False)
    paths: tuple[str, ...] | None = field(default=None, repr=False)
    features: np.ndarray | None = field(default=None, repr=False)
    clean_labels: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.name not in SPLITS:
            raise ValueError(f"split name must be one of {SPLITS}, got {self.name!r}")
        if self.labels.ndim != 2:
            raise ValueError(f"{self.name} labels must be (N, C), got shape {self.labels.shape}")
        n = self.labels.shape[0]
        if sum(x is not None for x in (self.images, self.paths, self.features)) != 1:
            raise ValueError(f"{self.name} split needs exactly one of images (an array), paths (files) or features")
        if self.features is not None and (self.features.ndim != 2 or len(self.features) != n):
            raise ValueError(f"{self.name} features must be (N, D) with N = {n} label rows, got {self.features.shape}")
        if self.images is not None:
            if self.images.dtype != np.uint8 or not (
                self.images.ndim == 3 or (self.images.ndim == 4 and self.images.shape[-1] == 3)
            ):
                raise ValueError(
                    f"{self.name} images must be uint8 (N, H, W) or (N, H, W, 3); "
                    f"got {self.images.dtype} {self.images.shape}"
                )
            if len(self.images) != n:
                raise ValueError(f"{self.name} split has {len(self.images)} images but {n} label rows")
        if self.paths is not None and len(self.paths) != n:
            raise ValueError(f"{self.name} split has {len(self.paths)} paths but {n} label rows")
        if self.mask is not None and self.mask.shape != self.labels.shape:
            raise ValueError(f"{self.name} mask has shape {self.mask.shape}, labels {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.shape[1])

    @property
    def positives(self) -> np.ndarray:
        """(C,) number of known positive labels per class."""
        known = self.labels if self.mask is None else self.labels * self.mask
        return known.sum(axis=0, dtype=np.int64)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 (H, W) grayscale or (H, W, 3) RGB."""
        if self.images is not None:
            return self.images[i]
        if self.paths is None:
            raise ValueError(f"the {self.name} split holds precomputed features, not images")
        from .csv_manifest import read_image  # deferred: only file-backed splits need Pillow

        return read_image(self.paths[i])


@dataclass
class MultiLabelDataset:
    """Three splits sharing one class list, plus a fingerprint of everything that determines them."""

    class_names: list[str]
    train: Split
    val: Split
    test: Split
    fingerprint: str
    description: str
    # Facts about the source a study records beside the class names (``data_source`` study attribute):
    # its kind and files, the columns left out as metadata, a features file's SHA-256.
    source_info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_positives(self) -> np.ndarray:
        """(C,) int: known training positives per class (what the head/medium/tail split ranks)."""
        return self.train.positives

    @property
    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def has_features(self) -> bool:
        """True when the splits hold precomputed embeddings instead of images (the ``features`` source)."""
        return all(split.features is not None for split in self.splits.values())

    def classes_summary(self) -> str:
        """One line for the start of a run: how many classes, their names, what was left out as metadata."""
        line = f"{self.num_classes} classes: {', '.join(self.class_names)}"
        left_out = self.source_info.get("metadata_columns")
        if left_out is not None:
            line += f"; left out as metadata: {', '.join(left_out) if left_out else 'none'}"
        return line

    def summary(self) -> str:
        """What a run prints when it starts: the data set and the classes it found (two lines)."""
        return f"data     {self.description}\nclasses  {self.classes_summary()}"

    def record(self) -> dict[str, Any]:
        """The ``data_source`` study attribute: the source facts plus the class count and description."""
        return {**self.source_info, "num_classes": self.num_classes, "description": self.description}


def fingerprint(*parts: Any) -> str:
    """SHA-256 hex digest of JSON-serialisable parts (dicts are key-sorted, so order never matters)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def hash_arrays(digest: hashlib._Hash, *arrays: np.ndarray) -> None:
    """Feed arrays (dtype, shape and bytes) into a running digest."""
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))  # type: ignore[arg-type]  # ndarray has the buffer protocol


def check_dataset(dataset: MultiLabelDataset, source: str) -> MultiLabelDataset:
    """Refuse data sets a study cannot score: fewer than 2 classes, or a class without a positive in a split.

    A class without validation positives has no AP, so its trials could not be compared; without
    training positives no loss can learn it. ``source`` names the file (or "synthetic") in the message.
    """
    if dataset.num_classes < 2:
        raise ValueError(
            f"{source}: found {dataset.num_classes} class(es) {dataset.class_names}; a multi-label study needs >= 2"
        )
    for split in dataset.splits.values():
        if split.num_classes != dataset.num_classes:
            raise ValueError(
                f"{source}: {split.name} has {split.num_classes} label columns, expected {dataset.num_classes}"
            )
        if not np.isin(split.labels, (0, 1)).all():
            raise ValueError(f"{source}: {split.name} labels must be 0/1")
        if len(split) == 0:
            raise ValueError(f"{source}: the {split.name} split is empty")
        empty = np.flatnonzero(split.positives == 0)
        if empty.size:
            names = [dataset.class_names[c] for c in empty[:5]]
            raise ValueError(
                f"{source}: class {names[0]!r} has no positive in the {split.name} split"
                + (
                    f" ({empty.size} classes lack one: {names}{'...' if empty.size > 5 else ''})"
                    if empty.size > 1
                    else ""
                )
                + "; drop it (label_columns), merge splits, or re-split with a seed"
            )
    return dataset


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a partial file,
    and two processes generating at once simply replace one complete file with an identical one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
