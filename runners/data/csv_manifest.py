"""A manifest CSV plus an image folder: the layout CXR-LT, MIMIC-CXR, CheXpert and ChestX-ray14 ship.

One row per image. Columns:

- ``path_column`` (default ``path``): the image file, relative to ``image_root`` (default: the CSV's
  folder) or absolute. PNG or JPEG (anything Pillow reads), grayscale or RGB, any size.
- label columns: given by name (``label_columns``) or, by default, every column whose values are all
  1, 0, -1 or empty (apart from the path, split and group columns). -1 and empty cells are
  "uncertain" and follow the ``uncertain`` policy (see :mod:`runners.data.labels`).
- ``split_column`` (default ``split``, used when the CSV has it): ``train``, ``val`` or ``test``
  (``valid``/``validation``/``dev`` and ``trainval``/``train_val`` are accepted). With only train and
  test rows, a validation split is carved out of train as below.
- without a split column, a seeded random split by ``val_fraction`` / ``test_fraction`` of the rows;
  with ``group_column`` (a patient id) all rows of a group land in one split, so no patient is in
  both training and validation.

Everything is checked before any image is decoded, so a bad row fails in seconds, not after an hour of
embedding: each error names the file, the row (and its line in the CSV) and the column. Every image
file must exist, and its header must be readable by Pillow; that check opens each file once and is
remembered in ``cache_dir/csv/`` under the data set's fingerprint.

The fingerprint (the embedding cache key and the study's ``data_fingerprint``) hashes the resolved
labels, mask, split, the paths as written in the CSV and each image file's byte size. It does not hash
pixel bytes: that would read the whole image folder (hundreds of GB for CXR-LT) on every start. Byte
size catches a re-encoded or replaced image; modification times are left out on purpose, so copies of
one data set on several machines of a cluster share one fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from ..config import DataConfig
from .base import SPLITS, MultiLabelDataset, Split, check_dataset, hash_arrays
from .labels import apply_uncertain_policy, invalid_label_entries

__all__ = ["load_csv", "read_image", "seeded_split"]

FORMAT_VERSION = 1  # bump when the fingerprint's contents change
SPLIT_NAMES = {
    "train": 0, "training": 0, "trainval": 0, "train_val": 0,
    "val": 1, "valid": 1, "validation": 1, "dev": 1,
    "test": 2, "testing": 2,
}  # fmt: skip
_IO_THREADS = 16  # file checks are latency-bound (network file systems): threads overlap the waits
_T = TypeVar("_T")


def _row(index: int) -> str:
    """'row 3 (line 4)': data rows count from 1, and line 1 of the file is the header."""
    return f"row {index + 1} (line {index + 2})"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file with Pillow into uint8 (H, W) grayscale or (H, W, 3) RGB.

    Palette, alpha and CMYK images become RGB (alpha dropped); 1-bit and gray+alpha become gray.
    16-bit and float images (some DICOM-converted PNGs) are windowed to their own min..max, the usual
    display of a radiograph whose bit depth varies by scanner.

    Raises:
        ValueError: naming the file when it is missing or not a readable image.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return _to_uint8(image)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {os.fspath(path)!r}: {error}") from error


def _to_uint8(image) -> np.ndarray:
    # np.array, not np.asarray: Pillow's array view is read-only, which torch.from_numpy warns about.
    if image.mode in ("L", "RGB"):
        return np.array(image)
    if image.mode in ("1", "LA", "La"):
        return np.array(image.convert("L"))
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return np.rint(scaled).astype(np.uint8)
    return np.array(image.convert("RGB"))


def _in_threads(function: Callable[[Sequence[str]], list[_T]], items: Sequence[str]) -> list[_T]:
    """``function`` over chunks of ``items`` in a thread pool, results in order (one task per chunk,
    so 377k files cost 64 tasks, not 377k)."""
    if len(items) < 256:
        return function(items)
    bounds = np.linspace(0, len(items), 65, dtype=int)
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        parts = pool.map(function, [items[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    return [x for part in parts for x in part]


def _file_sizes(paths: Sequence[str]) -> list[int]:
    """Byte size of each path, -1 where it is missing or not a file."""
    sizes = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            sizes.append(-1)
            continue
        sizes.append(info.st_size if stat.S_ISREG(info.st_mode) else -1)
    return sizes


def _header_errors(paths: Sequence[str]) -> list[str | None]:
    """Pillow's error for each path whose header it cannot parse (None when it can)."""
    from PIL import Image

    errors: list[str | None] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - opening parses the header; nothing is decoded
            errors.append(None)
        except Exception as error:  # any failure means "unreadable"; it is reported, not raised here
            errors.append(f"{type(error).__name__}: {error}")
    return errors


def _read_manifest(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ValueError(f"CSV manifest {str(path)!r} does not exist; pass an existing file with --data-path")
    try:
        # Everything as text: label cells are parsed below so that a bad one can be named exactly.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable CSV manifest ({error})") from error
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise ValueError(f"{path}: the manifest has no data rows")
    return frame


def _require_column(frame: pd.DataFrame, column: str, source: Path, role: str) -> None:
    if column not in frame.columns:
        raise ValueError(f"{source}: column {column!r} ({role}) not found; the columns are {list(frame.columns)}")


def _numeric(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(float values with NaN for empty cells, bool array True where a non-empty cell is not a number)."""
    text = frame[column].str.strip()
    empty = (text == "") | (text.str.lower() == "nan")
    values = pd.to_numeric(text.where(~empty), errors="coerce").to_numpy(dtype=np.float64)
    return values, np.isnan(values) & ~empty.to_numpy()


def _label_columns(frame: pd.DataFrame, cfg: DataConfig, source: Path) -> list[str]:
    reserved = {cfg.path_column, cfg.split_column, cfg.group_column}
    if cfg.label_columns is not None:
        if len(set(cfg.label_columns)) != len(cfg.label_columns):
            raise ValueError(f"{source}: label_columns lists a column twice: {list(cfg.label_columns)}")
        for column in cfg.label_columns:
            _require_column(frame, column, source, "label")
            if column in reserved:
                raise ValueError(f"{source}: column {column!r} cannot be both a label and the path/split/group column")
        return list(cfg.label_columns)
    detected = []
    for column in frame.columns:
        if column in reserved:
            continue
        values, not_numeric = _numeric(frame, column)
        if not not_numeric.any() and not invalid_label_entries(values).any() and np.isin(values, (0.0, 1.0)).any():
            detected.append(column)
    if not detected:
        raise ValueError(
            f"{source}: no label columns found (a label column holds only 1, 0, -1 or empty cells); "
            "name them with --data-label-columns"
        )
    return detected


def _label_values(frame: pd.DataFrame, columns: list[str], source: Path) -> np.ndarray:
    """(N, C) floats in {1, 0, -1, NaN}; the first bad cell is named by row and column."""
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        values, not_numeric = _numeric(frame, column)
        bad = np.flatnonzero(not_numeric | invalid_label_entries(values))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{source}: {_row(i)}, column {column!r}: label {frame[column].iloc[i]!r} is not binary "
                "(allowed: 1, 0, -1 or empty for "
                f"uncertain){f'; {bad.size} such cells in this column' if bad.size > 1 else ''}"
            )
        out[:, j] = values
    return out


def _nonempty_text(frame: pd.DataFrame, column: str, source: Path, role: str) -> np.ndarray:
    text = frame[column].str.strip().to_numpy(dtype=object)
    empty = np.flatnonzero(text == "")
    if empty.size:
        raise ValueError(f"{source}: {_row(int(empty[0]))}, column {column!r} ({role}) is empty")
    return text


def seeded_split(
    n_rows: int, val_fraction: float, test_fraction: float, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """(n_rows,) split codes (0 train, 1 val, 2 test) from a seeded shuffle of the groups.

    Hand-written rather than sklearn's ``GroupShuffleSplit`` because that makes two-way splits and
    sizes them by the number of groups; here the fractions are of rows, and the group that crosses a
    boundary stays whole. Without ``groups`` every row is its own group.
    """
    keys = np.arange(n_rows) if groups is None else groups
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(counts))
    before = (np.cumsum(counts[order]) - counts[order]) / n_rows  # share of rows in earlier groups
    code_in_order = np.where(before < val_fraction, 1, np.where(before < val_fraction + test_fraction, 2, 0))
    code = np.empty(len(counts), dtype=np.int8)
    code[order] = code_in_order
    return code[inverse.ravel()]


def _split_codes(frame: pd.DataFrame, cfg: DataConfig, source: Path) -> tuple[np.ndarray, str]:
    """Split code per row and a phrase for the description."""
    groups = None
    if cfg.group_column is not None:
        _require_column(frame, cfg.group_column, source, "group")
        groups = _nonempty_text(frame, cfg.group_column, source, "group").astype(str)
    grouped = f", grouped by {cfg.group_column!r}" if groups is not None else ""
    if cfg.split_column is None or cfg.split_column not in frame.columns:
        codes = seeded_split(len(frame), cfg.val_fraction, cfg.test_fraction, cfg.seed, groups)
        how = f"seeded split (seed {cfg.seed}{grouped})"
    else:
        text = frame[cfg.split_column].str.strip().str.lower()
        mapped = text.map(SPLIT_NAMES)
        bad = np.flatnonzero(mapped.isna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{source}: {_row(i)}, column {cfg.split_column!r}: split {frame[cfg.split_column].iloc[i]!r} "
                "is not train, val or test"
            )
        codes = mapped.to_numpy(dtype=np.int8)
        how = f"split from column {cfg.split_column!r}"
        if not (codes == 1).any() and (codes == 0).any():
            # A train/test-only split (ChestX-ray14's official lists): carve validation out of train.
            train = np.flatnonzero(codes == 0)
            share = min(cfg.val_fraction * len(frame) / len(train), 0.5)
            carved = seeded_split(len(train), share, 0.0, cfg.seed, None if groups is None else groups[train])
            codes[train[carved == 1]] = 1
            how += f", validation carved from train (seed {cfg.seed}{grouped})"
    for code, name in enumerate(SPLITS):
        if not (codes == code).any():
            fix = "add rows (or groups), or change --data-val-fraction / --data-test-fraction"
            if cfg.split_column in frame.columns and name != "val":
                fix = f"give some rows {name!r} in column {cfg.split_column!r}"
            raise ValueError(f"{source}: the {how} leaves the {name} split empty; {fix}")
    return codes, how


def _resolve_paths(frame: pd.DataFrame, cfg: DataConfig, source: Path) -> tuple[np.ndarray, list[str]]:
    """(paths as written in the CSV, the paths to open: joined to image_root or the CSV's folder)."""
    written = _nonempty_text(frame, cfg.path_column, source, "image path").astype(str)
    root = Path(cfg.image_root) if cfg.image_root else source.parent
    if cfg.image_root and not root.is_dir():
        raise ValueError(f"image root {str(root)!r} is not a folder; fix --data-image-root")
    resolved = [os.fspath(root / p) for p in written]
    return written, resolved


def load_csv(cfg: DataConfig, cache_dir: str | os.PathLike) -> MultiLabelDataset:
    """The data set a CSV manifest describes (see the module docstring).

    Raises:
        ValueError: naming the file, row and column of the first problem found.
    """
    source = Path(cfg.path)  # type: ignore[arg-type]  # DataConfig guarantees a path for the csv data set
    frame = _read_manifest(source)
    _require_column(frame, cfg.path_column, source, "image path")
    columns = _label_columns(frame, cfg, source)
    labels, mask = apply_uncertain_policy(_label_values(frame, columns, source), cfg.uncertain)
    codes, how = _split_codes(frame, cfg, source)
    written, resolved = _resolve_paths(frame, cfg, source)

    sizes = np.asarray(_in_threads(_file_sizes, resolved), dtype=np.int64)
    missing = np.flatnonzero(sizes < 0)
    if missing.size:
        i = int(missing[0])
        raise ValueError(
            f"{source}: {_row(i)}, column {cfg.path_column!r}: image file {resolved[i]!r} does not exist"
            + (f" ({missing.size} of {len(resolved)} files are missing)" if missing.size > 1 else "")
            + "; check the path column and --data-image-root"
        )

    # The resolved labels and mask, not the policy: two policies that give the same labels give one data set.
    digest = hashlib.sha256(f"csv-v{FORMAT_VERSION}|{'|'.join(columns)}".encode())
    hash_arrays(digest, labels, np.zeros(0, bool) if mask is None else mask, codes, sizes)
    digest.update("\0".join(written).encode())
    fp = digest.hexdigest()

    splits = {}
    for code, name in enumerate(SPLITS):
        rows = np.flatnonzero(codes == code)
        splits[name] = Split(
            name=name,
            labels=labels[rows],
            mask=None if mask is None else mask[rows],
            paths=tuple(resolved[i] for i in rows),
        )
    counts = "/".join(str(len(splits[s])) for s in SPLITS)
    description = (
        f"csv {source.name}: {len(frame)} images, {len(columns)} classes, uncertain labels -> {cfg.uncertain}, "
        f"{how}, train/val/test {counts}"
    )
    dataset = check_dataset(
        MultiLabelDataset(class_names=columns, fingerprint=fp, description=description, **splits), str(source)
    )
    # Last, as the slowest check: label and split errors are reported without opening a single image.
    where = hashlib.sha256("\0".join(resolved).encode()).hexdigest()[:16]  # same files, other folder: check again
    _verify_headers_once(resolved, Path(cache_dir) / "csv" / f"{fp[:32]}-{where}.verified", source, cfg.path_column)
    return dataset


def _verify_headers_once(paths: list[str], marker: Path, source: Path, path_column: str) -> None:
    """Open every image's header (not its pixels) unless this exact data set passed before."""
    if marker.exists():
        return
    errors = _in_threads(_header_errors, paths)
    bad = [i for i, e in enumerate(errors) if e is not None]
    if bad:
        i = bad[0]
        raise ValueError(
            f"{source}: {_row(i)}, column {path_column!r}: image file {paths[i]!r} is unreadable ({errors[i]})"
            + (f"; {len(bad)} of {len(paths)} images are unreadable" if len(bad) > 1 else "")
        )
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:  # a read-only cache only costs the check again next time
        pass
