"""Precomputed embeddings as a data source (``--data features``): bring your own foundation model.

One ``.npz`` file (``numpy.savez``; what ``python -m runners.embed`` writes) with

- ``train_features`` (N, D) floats and ``train_labels`` (N, C): 1, 0 and, for uncertain entries, -1 or
  NaN (the ``uncertain`` policy applies, as for the CSV and npz sources);
- ``val_*`` and ``test_*`` likewise (``dev_``/``development_``/``valid_`` name the validation split
  too). Without them, the missing splits are carved out of train exactly as for a CSV manifest:
  seeded by ``seed``, sized by ``val_fraction`` / ``test_fraction``, and grouped by the optional
  ``train_groups`` (N,) array (a patient id per row), so no patient is in two splits;
- optional ``class_names`` (C strings) and ``embedding_info`` (a JSON string: which model made the
  features; ``runners.embed`` writes it).

Every array is checked when the file is read; an error names the array, the row and the column. Only
the linear-probe protocol can use features (there are no images to fine-tune on).

Identity: the fingerprint hashes the arrays the study uses (features, resolved labels and mask,
class names), so re-saving the same data keeps the cache valid; the study also records the file's
SHA-256 (``source_info``), the exact bytes it came from. Parquet is not read: it would need pyarrow,
a large dependency for one file format; ``numpy.savez`` writes the same arrays from any framework.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..checksum import file_sha256
from ..config import DataConfig
from .base import SPLITS, MultiLabelDataset, Split, check_dataset, hash_arrays
from .csv_manifest import seeded_split
from .labels import apply_uncertain_policy
from .npz import class_names, label_values, read_archive, split_keys

__all__ = ["load_features_file"]

FORMAT_VERSION = 1  # bump when the fingerprint's contents change
KINDS = ("features", "labels")


def _features(array: np.ndarray, key: str, source: Path) -> np.ndarray:
    """float32 (N, D); the first non-finite value is named by row and column."""
    if array.ndim != 2:
        raise ValueError(f"{source}: {key} has shape {array.shape}; expected (N, D): one embedding per row")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{source}: {key} must hold numbers (float embeddings); got {array.dtype}")
    out = array.astype(np.float32)
    bad = np.argwhere(~np.isfinite(out))
    if bad.size:
        row, column = (int(v) for v in bad[0])
        raise ValueError(
            f"{source}: {key} row {row}, column {column}: value {array[row, column].item()!r} is not finite"
            + (f" ({len(bad)} such values)" if len(bad) > 1 else "")
            + "; embeddings must be finite numbers (recompute them, e.g. without fp16 overflow)"
        )
    return out


def _groups(arrays: dict[str, np.ndarray], n_train: int, source: Path) -> np.ndarray | None:
    if "train_groups" not in arrays:
        return None
    groups = np.asarray(arrays["train_groups"])
    if groups.ndim != 1 or len(groups) != n_train:
        raise ValueError(
            f"{source}: train_groups has shape {groups.shape}; expected ({n_train},): "
            "one group (patient id) per train row"
        )
    return groups.astype(str)


def _embedding_info(arrays: dict[str, np.ndarray], source: Path) -> dict[str, Any] | None:
    if "embedding_info" not in arrays:
        return None
    try:
        info = json.loads(str(np.asarray(arrays["embedding_info"]).item()))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{source}: embedding_info must be one JSON string ({error})") from error
    return info if isinstance(info, dict) else {"info": info}


def _carve(
    parts: dict[str, tuple[np.ndarray, np.ndarray] | None], groups: np.ndarray | None, cfg: DataConfig, source: Path
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Fill absent val/test splits with rows of train (seeded, grouped), as the CSV source does."""
    missing = [code for code, split in enumerate(SPLITS) if parts[split] is None]
    train = parts["train"]
    assert train is not None
    if not missing:
        return {s: p for s, p in parts.items() if p is not None}, "splits from the file"
    n_total = len(train[0]) + sum(len(p[0]) for p in parts.values() if p is not None and p is not train)
    shares = [min(f * n_total / len(train[0]), 0.45) if code in missing else 0.0
              for code, f in ((1, cfg.val_fraction), (2, cfg.test_fraction))]  # fmt: skip
    codes = seeded_split(len(train[0]), shares[0], shares[1], cfg.seed, groups)
    out = {"train": (train[0][codes == 0], train[1][codes == 0])}
    for code, split in ((1, "val"), (2, "test")):
        given = parts[split]
        out[split] = given if given is not None else (train[0][codes == code], train[1][codes == code])
        if len(out[split][0]) == 0:
            raise ValueError(
                f"{source}: carving the {split} split from {len(train[0])} train rows leaves it empty; "
                "add rows or raise --data-val-fraction / --data-test-fraction"
            )
    names = " and ".join(SPLITS[c] for c in missing)
    grouped = ", grouped by train_groups" if groups is not None else ""
    return out, f"{names} carved from train (seed {cfg.seed}{grouped})"


def load_features_file(cfg: DataConfig, cache_dir: str | os.PathLike) -> MultiLabelDataset:
    """The embeddings and labels stored in ``cfg.path`` (``cache_dir`` is unused: the file is its own cache).

    Raises:
        ValueError: naming the file and the array (and row / column for a bad value).
    """
    source = Path(str(cfg.path))  # DataConfig guarantees a path for the features data set
    if source.suffix.lower() == ".parquet":
        raise ValueError(
            f"{source}: parquet features are not read (that needs pyarrow); save the arrays with "
            "numpy.savez(path, train_features=..., train_labels=..., ...) instead"
        )
    arrays = read_archive(source, "features file", ["train_features", "train_labels", "val_*", "test_*"])
    prefixes = split_keys(list(arrays), KINDS, source)
    if prefixes["train"] is None:
        raise ValueError(
            f"{source}: arrays train_features and train_labels not found; the file has {sorted(arrays)} "
            "(see --data features in the README for the format)"
        )
    parts: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    n_classes = dim = None
    for split in SPLITS:
        prefix = prefixes[split]
        if prefix is None:
            parts[split] = None
            continue
        x = _features(arrays[f"{prefix}_features"], f"{prefix}_features", source)
        values = label_values(arrays[f"{prefix}_labels"], f"{prefix}_labels", source)
        if len(x) != len(values):
            raise ValueError(
                f"{source}: {prefix}_features has {len(x)} rows but {prefix}_labels has {len(values)}; "
                "they must describe the same images in the same order"
            )
        n_classes = values.shape[1] if n_classes is None else n_classes
        dim = x.shape[1] if dim is None else dim
        if values.shape[1] != n_classes:
            raise ValueError(
                f"{source}: {prefix}_labels has {values.shape[1]} columns but train_labels has {n_classes}"
            )
        if x.shape[1] != dim:
            raise ValueError(f"{source}: {prefix}_features has {x.shape[1]} dimensions but train_features has {dim}")
        parts[split] = (x, values)
    assert parts["train"] is not None and n_classes is not None
    groups = _groups(arrays, len(parts["train"][0]), source)
    full, how = _carve(parts, groups, cfg, source)
    names = class_names(arrays, n_classes, source)

    digest = hashlib.sha256(f"features-v{FORMAT_VERSION}".encode())
    splits = {}
    for split in SPLITS:
        x, values = full[split]
        labels, mask = apply_uncertain_policy(values, cfg.uncertain)
        hash_arrays(digest, x, labels, np.zeros(0, bool) if mask is None else mask)
        splits[split] = Split(name=split, labels=labels, mask=mask, features=x)
    digest.update("\0".join(names).encode())
    info = _embedding_info(arrays, source)
    counts = "/".join(str(len(splits[s])) for s in SPLITS)
    made_by = f" from {info['backbone']}" if info and "backbone" in info else ""
    description = (
        f"features {source.name}{made_by}: {sum(len(s) for s in splits.values())} embeddings of {dim} dimensions, "
        f"{n_classes} classes, uncertain labels -> {cfg.uncertain}, {how}, train/val/test {counts}"
    )
    source_info: dict[str, Any] = {"source": "features file", "file": os.fspath(source.resolve())}
    source_info["sha256"] = file_sha256(source)
    if info is not None:
        source_info["embedding"] = info
    dataset = MultiLabelDataset(
        class_names=names, fingerprint=digest.hexdigest(), description=description, source_info=source_info, **splits
    )
    return check_dataset(dataset, str(source))
