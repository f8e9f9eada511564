"""A MedMNIST-style ``.npz`` archive: ``train_images``, ``train_labels``, ``val_*`` and ``test_*``.

Images are uint8 (N, H, W) grayscale or (N, H, W, 3) RGB ((N, H, W, 1) is read as grayscale; other
integer types are accepted when every value is in 0..255). Labels are (N, C) with 1, 0 and, for
uncertain entries, -1 or NaN (the ``uncertain`` policy applies, as for the CSV source). MedMNIST's
multi-label set, ChestMNIST, has this form; its multi-class sets store one class index per image
((N, 1) with values above 1) and are refused with a message saying so. An optional ``class_names``
array (C strings) names the classes; otherwise they are ``class_00``, ``class_01``, ...

The fingerprint hashes the decoded images and the resolved labels and mask (dtype, shape and bytes), so
re-saving the same data (compressed or not) keeps the embedding cache valid.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from ..config import DataConfig
from .base import SPLIT_ALIASES, SPLITS, MultiLabelDataset, Split, check_dataset, hash_arrays
from .labels import apply_uncertain_policy, invalid_label_entries

__all__ = ["load_npz", "split_keys", "read_archive"]

FORMAT_VERSION = 1  # bump when the fingerprint's contents change
REQUIRED_KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))


def split_keys(files: list[str], kinds: tuple[str, ...], source: Path) -> dict[str, str | None]:
    """Array prefix of each split in an archive: ``val_labels``, ``development_labels``, ... (None: absent).

    Any split name of :data:`~runners.data.base.SPLIT_ALIASES` is a prefix; two prefixes for one split,
    or one of ``kinds`` without the others, are errors.
    """
    found: dict[str, str | None] = {}
    for code, split in enumerate(SPLITS):
        prefixes = [a for a, c in SPLIT_ALIASES.items() if c == code and any(f"{a}_{k}" in files for k in kinds)]
        if len(prefixes) > 1:
            raise ValueError(f"{source}: arrays {sorted(prefixes)} all name the {split} split; keep one prefix")
        if prefixes:
            lacking = [f"{prefixes[0]}_{k}" for k in kinds if f"{prefixes[0]}_{k}" not in files]
            if lacking:
                raise ValueError(
                    f"{source}: array(s) {lacking} not found beside {prefixes[0]}_{kinds[0]}; "
                    f"the file has {sorted(files)}"
                )
        found[split] = prefixes[0] if prefixes else None
    return found


def read_archive(path: Path, what: str, expected: list[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickled objects); ``what`` and ``expected`` word the errors."""
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist; pass an existing file with --data-path")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npz archive ({error})") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: holds a single array, not the named arrays {expected}")
    with loaded as archive:
        try:
            return {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # truncated member, pickled objects
            raise ValueError(f"{path}: not a readable .npz archive ({error})") from error


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    """The image archive's arrays under their canonical names (``development_*`` read as ``val_*``)."""
    arrays = read_archive(path, ".npz file", list(REQUIRED_KEYS))
    prefixes = split_keys(list(arrays), ("images", "labels"), path)
    missing = [f"{split}_images/labels" for split, prefix in prefixes.items() if prefix is None]
    if missing:
        raise ValueError(
            f"{path}: array(s) {missing} not found; the file has {sorted(arrays)} and needs {list(REQUIRED_KEYS)}"
        )
    out = {
        f"{split}_{kind}": arrays[f"{prefix}_{kind}"]
        for split, prefix in prefixes.items()
        for kind in ("images", "labels")
    }
    if "class_names" in arrays:
        out["class_names"] = arrays["class_names"]
    return out


def _images(array: np.ndarray, key: str, source: Path) -> np.ndarray:
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 3 or (array.ndim == 4 and array.shape[-1] == 3)):
        raise ValueError(f"{source}: {key} has shape {array.shape}; expected (N, H, W) gray or (N, H, W, 3) RGB")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.integer) or (array.size and (array.min() < 0 or array.max() > 255)):
        raise ValueError(f"{source}: {key} must hold 8-bit pixels (uint8, 0..255); got {array.dtype}")
    return array.astype(np.uint8)


def label_values(array: np.ndarray, key: str, source: Path) -> np.ndarray:
    if array.ndim != 2:
        raise ValueError(f"{source}: {key} has shape {array.shape}; expected (N, C) with one 0/1 column per class")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{source}: {key} must be numeric 0/1 labels; got {array.dtype}")
    values = array.astype(np.float64)
    bad = np.argwhere(invalid_label_entries(values))
    if bad.size:
        row, column = (int(v) for v in bad[0])
        hint = (
            "; it looks like one class index per image (multi-class): one-hot it into (N, C) 0/1 columns"
            if array.shape[1] == 1 and np.all(values[~np.isnan(values)] >= 0)
            else ""
        )
        raise ValueError(
            f"{source}: {key} row {row}, column {column}: label {array[row, column].item()!r} is not binary "
            f"(allowed: 1, 0, -1 or NaN for uncertain){hint}"
        )
    return values


def class_names(arrays: dict[str, np.ndarray], n_classes: int, source: Path) -> list[str]:
    if "class_names" not in arrays:
        return [f"class_{c:02d}" for c in range(n_classes)]
    names = [str(n) for n in np.asarray(arrays["class_names"]).ravel()]
    if len(names) != n_classes or len(set(names)) != len(names):
        raise ValueError(
            f"{source}: class_names has {len(names)} (distinct: {len(set(names))}) names for {n_classes} label columns"
        )
    return names


def load_npz(cfg: DataConfig, cache_dir: str | os.PathLike) -> MultiLabelDataset:
    """The data set stored in ``cfg.path`` (``cache_dir`` is unused: the archive is its own cache).

    Raises:
        ValueError: naming the file and the array (and row / column for a bad label).
    """
    source = Path(cfg.path)  # type: ignore[arg-type]  # DataConfig guarantees a path for the npz data set
    arrays = _read_archive(source)
    n_classes = arrays["train_labels"].shape[1] if arrays["train_labels"].ndim == 2 else 0
    digest = hashlib.sha256(f"npz-v{FORMAT_VERSION}".encode())
    splits = {}
    for name in SPLITS:
        images = _images(arrays[f"{name}_images"], f"{name}_images", source)
        values = label_values(arrays[f"{name}_labels"], f"{name}_labels", source)
        if len(images) != len(values):
            raise ValueError(
                f"{source}: {name}_images has {len(images)} images but {name}_labels has {len(values)} rows"
            )
        if values.shape[1] != n_classes:
            raise ValueError(f"{source}: {name}_labels has {values.shape[1]} columns but train_labels has {n_classes}")
        labels, mask = apply_uncertain_policy(values, cfg.uncertain)
        hash_arrays(digest, images, labels, np.zeros(0, bool) if mask is None else mask)
        splits[name] = Split(name=name, labels=labels, mask=mask, images=images)
    names = class_names(arrays, n_classes, source)
    digest.update("\0".join(names).encode())
    counts = "/".join(str(len(splits[s])) for s in SPLITS)
    shape = "x".join(str(d) for d in splits["train"].images.shape[1:])  # type: ignore[union-attr]  # in memory
    description = (
        f"npz {source.name}: {sum(len(s) for s in splits.values())} images of {shape}, {n_classes} classes, "
        f"uncertain labels -> {cfg.uncertain}, train/val/test {counts}"
    )
    dataset = MultiLabelDataset(
        class_names=names,
        fingerprint=digest.hexdigest(),
        description=description,
        source_info={"source": "npz", "file": os.fspath(source.resolve())},
        **splits,
    )
    return check_dataset(dataset, str(source))
