"""A manifest CSV plus an image folder: the layout CXR-LT, MIMIC-CXR, CheXpert and ChestX-ray14 ship.

One row per image. ``path`` names one manifest, a comma-separated list of them, or a folder holding
them (every ``*.csv`` in it). Several manifests are one data set whose split each file's name gives
(``train*``, ``dev*`` / ``development*`` / ``val*`` / ``valid*``, ``test*``; a ``_``-separated word of
the name also counts, as in ``labels_train.csv``): the CXR-LT challenges ship ``train.csv``,
``development.csv`` and ``test.csv``. Columns:

- ``path_column`` (default ``auto``: ``path``, else ``fpath``, the CXR-LT 2023 and 2024 names): the
  image file, relative to ``image_root`` (default: the manifest's folder) or absolute. PNG or JPEG
  (anything Pillow reads), grayscale or RGB, any size.
- label columns: given by name (``label_columns``) or, by default, every column whose values are all
  1, 0, -1 or empty (apart from the path, split and group columns). -1 and empty cells are
  "uncertain" and follow the ``uncertain`` policy (see :mod:`runners.data.labels`). Detection is
  strict: a column that is mostly 1/0/-1/empty but holds a few other values (a typo) is an error
  naming the column, the rows and the values, never a silently dropped class. Every other column is
  metadata (``dicom_id``, ``subject_id``, ``ViewPosition``, ...), listed when a run starts.
- ``split_column`` (default ``split``, used when one manifest has it): ``train``, ``val`` or ``test``
  (``valid``/``validation``/``dev``/``development`` and ``trainval``/``train_val`` are accepted).
- a split the files or the column do not provide (no validation rows, say) is carved out of train as
  below; without any split, a seeded random split by ``val_fraction`` / ``test_fraction`` of the
  rows. With ``group_column`` (a patient id; by default ``subject_id`` when present) all rows of a
  group land in one split, so no patient is in both training and validation.

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
import re
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from ..config import DataConfig
from .base import SPLIT_ALIASES, SPLITS, MultiLabelDataset, Split, check_dataset, hash_arrays
from .labels import apply_uncertain_policy, invalid_label_entries

__all__ = ["load_csv", "read_image", "seeded_split"]

FORMAT_VERSION = 1  # bump when the fingerprint's contents change
SPLIT_NAMES = SPLIT_ALIASES
# File-name prefixes that give a manifest's split (the CXR-LT names and their usual variants).
FILE_PREFIXES = (("train", 0), ("development", 1), ("dev", 1), ("valid", 1), ("val", 1), ("test", 2))
PATH_COLUMNS = ("path", "fpath")  # CXR-LT 2023, 2024
GROUP_COLUMNS = ("subject_id",)  # MIMIC-CXR's patient id, the group column when none is named
MOSTLY = 0.5  # a column whose non-empty cells are more than this share 1/0/-1 is a label column
_SHOWN = 3  # offending cells named in an error
_IO_THREADS = 16  # file checks are latency-bound (network file systems): threads overlap the waits
_T = TypeVar("_T")


@dataclass
class Manifest:
    """The rows of one or several manifest files, with where each row came from (for error messages)."""

    frame: pd.DataFrame  # every row of every file, as text
    files: list[Path]
    file_of_row: np.ndarray  # (N,) index into files
    row_in_file: np.ndarray  # (N,) data-row number within its file, from 0
    file_split: np.ndarray | None  # (N,) split code from the file name; None for one manifest
    name: str  # the source as the user gave it, for messages not about one row
    columns_of: list[list[str]]  # each file's own columns

    def at(self, i: int) -> str:
        """'FILE: row 3 (line 4)': data rows count from 1, and line 1 of a file is its header."""
        return f"{self.files[self.file_of_row[i]]}: {self.row(i, with_file=False)}"

    def row(self, i: int, with_file: bool = True) -> str:
        r = int(self.row_in_file[i])
        where = f"{self.files[self.file_of_row[i]].name} " if with_file and len(self.files) > 1 else ""
        return f"{where}row {r + 1} (line {r + 2})"

    def cells(self, column: str, rows: np.ndarray) -> str:
        """'row 5 (line 6) '2', row 9 (line 10) 'yes'' for the first few ``rows`` (and how many more)."""
        shown = ", ".join(f"{self.row(int(i))} {self.frame[column].iloc[int(i)]!r}" for i in rows[:_SHOWN])
        return shown + (f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else "")


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


def split_of_file(path: Path) -> int | None:
    """Split code a manifest's file name gives (``train*``, ``dev*``, ``development*``, ``val*``,
    ``valid*``, ``test*``, or such a word in the name), None when it gives none or two."""
    stem = path.stem.lower()
    for prefix, code in FILE_PREFIXES:
        if stem.startswith(prefix):
            return code
    codes = {SPLIT_ALIASES[w] for w in re.split(r"[^a-z0-9]+", stem) if w in SPLIT_ALIASES}
    return codes.pop() if len(codes) == 1 else None


def manifest_files(path_text: str) -> tuple[list[Path], str]:
    """The manifest files ``--data-path`` names (a file, a comma list, a folder) and how to name them."""
    parts = [p.strip() for p in path_text.split(",") if p.strip()]
    if len(parts) == 1 and Path(parts[0]).is_dir():
        folder = Path(parts[0])
        files = sorted(f for f in folder.glob("*.csv") if f.is_file())
        if not files:
            raise ValueError(f"{folder}: the folder holds no .csv manifest; pass a manifest file or a folder of them")
        return files, str(folder)
    files = [Path(p) for p in parts]
    for f in files:
        if not f.is_file():
            raise ValueError(f"CSV manifest {str(f)!r} does not exist; pass an existing file with --data-path")
    if len(set(files)) != len(files):
        raise ValueError(f"--data-path names a manifest twice: {path_text}")
    return files, str(files[0]) if len(files) == 1 else ", ".join(map(str, files))


def read_manifests(path_text: str) -> Manifest:
    """Every row of the manifests ``path_text`` names; with several files, each one's split from its name."""
    files, name = manifest_files(path_text)
    frames = [_read_manifest(f) for f in files]
    file_split = None
    if len(files) > 1:
        codes = [split_of_file(f) for f in files]
        unknown = [f.name for f, c in zip(files, codes, strict=True) if c is None]
        if unknown:
            raise ValueError(
                f"{name}: cannot tell the split of {', '.join(unknown)} from the file name; name each manifest "
                "train*, dev* / development* / val* / valid* or test* (or pass one manifest with a split column)"
            )
        file_split = np.concatenate([np.full(len(fr), c, np.int8) for fr, c in zip(frames, codes, strict=True)])
    return Manifest(
        frame=pd.concat(frames, ignore_index=True).fillna(""),
        files=files,
        file_of_row=np.concatenate([np.full(len(fr), k) for k, fr in enumerate(frames)]),
        row_in_file=np.concatenate([np.arange(len(fr)) for fr in frames]),
        file_split=file_split,
        name=name,
        columns_of=[list(fr.columns) for fr in frames],
    )


@dataclass(frozen=True)
class _Roles:
    """The columns with a role other than label: image path, split (None: from the files) and group."""

    path: str
    split: str | None
    group: str | None

    @property
    def reserved(self) -> set[str]:
        return {c for c in (self.path, self.split, self.group) if c}


def _require_column(m: Manifest, column: str, role: str) -> None:
    if column not in m.frame.columns:
        raise ValueError(f"{m.name}: column {column!r} ({role}) not found; the columns are {list(m.frame.columns)}")
    lacking = [f.name for f, cols in zip(m.files, m.columns_of, strict=True) if column not in cols]
    if lacking:
        raise ValueError(f"{m.name}: column {column!r} ({role}) is missing from {', '.join(lacking)}")


def _roles(m: Manifest, cfg: DataConfig) -> _Roles:
    """Resolve ``auto`` path and group columns; the split column counts only for a single manifest."""
    path = cfg.path_column
    if path == "auto":
        path = next((c for c in PATH_COLUMNS if c in m.frame.columns), "")
        if not path:
            raise ValueError(
                f"{m.name}: no image path column (looked for {' or '.join(map(repr, PATH_COLUMNS))}); "
                f"name it with --data-path-column; the columns are {list(m.frame.columns)}"
            )
    _require_column(m, path, "image path")
    group = cfg.group_column
    if group == "auto":
        group = next((c for c in GROUP_COLUMNS if c in m.frame.columns), None)
    if group is not None:
        _require_column(m, group, "group")
    split = cfg.split_column if m.file_split is None and cfg.split_column in m.frame.columns else None
    return _Roles(path=path, split=split, group=group)


def _numeric(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(float values with NaN for empty cells, bool array True where a non-empty cell is not a number)."""
    text = frame[column].str.strip()
    empty = (text == "") | (text.str.lower() == "nan")
    values = pd.to_numeric(text.where(~empty), errors="coerce").to_numpy(dtype=np.float64)
    return values, np.isnan(values) & ~empty.to_numpy()


def _bad_label_rows(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, int, int]:
    """(rows whose cell is not 1/0/-1/empty, label-valued non-empty cells, non-empty cells)."""
    values, not_numeric = _numeric(frame, column)
    bad = not_numeric | invalid_label_entries(values)
    nonempty = int((~np.isnan(values) | not_numeric).sum())
    return np.flatnonzero(bad), nonempty - int(bad.sum()), nonempty


def _label_columns(m: Manifest, cfg: DataConfig, roles: _Roles) -> list[str]:
    if cfg.label_columns is not None:
        if len(set(cfg.label_columns)) != len(cfg.label_columns):
            raise ValueError(f"{m.name}: label_columns lists a column twice: {list(cfg.label_columns)}")
        for column in cfg.label_columns:
            _require_column(m, column, "label")
            if column in roles.reserved:
                raise ValueError(f"{m.name}: column {column!r} cannot be both a label and the path/split/group column")
        return list(cfg.label_columns)
    detected = []
    for column in m.frame.columns:
        if column in roles.reserved:
            continue
        bad, valid, nonempty = _bad_label_rows(m.frame, column)
        values, _ = _numeric(m.frame, column)
        if not np.isin(values, (0.0, 1.0)).any():
            continue  # no 0 or 1 at all: text, ids, ages -- metadata
        if bad.size and valid > MOSTLY * nonempty:
            # Mostly labels with a few strays: a typo that would silently drop this class.
            raise ValueError(
                f"{m.name}: column {column!r} looks like a label column ({valid} of {nonempty} non-empty cells are "
                f"1, 0 or -1) but {bad.size} cell(s) are not: {m.cells(column, bad)}; fix them (1, 0, -1 or empty "
                "for uncertain), or name the label columns with --data-label-columns"
            )
        if bad.size:
            continue
        lacking = [f.name for f, cols in zip(m.files, m.columns_of, strict=True) if column not in cols]
        if lacking:
            raise ValueError(
                f"{m.name}: label column {column!r} is missing from {', '.join(lacking)}; every manifest needs "
                "the same label columns (or name them with --data-label-columns)"
            )
        detected.append(column)
    if not detected:
        raise ValueError(
            f"{m.name}: no label columns found (a label column holds only 1, 0, -1 or empty cells); "
            "name them with --data-label-columns"
        )
    return detected


def _label_values(m: Manifest, columns: list[str]) -> np.ndarray:
    """(N, C) floats in {1, 0, -1, NaN}; bad cells are named by row, line and value."""
    out = np.empty((len(m.frame), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        bad, _, _ = _bad_label_rows(m.frame, column)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{m.at(i)}, column {column!r}: label {m.frame[column].iloc[i]!r} is not binary "
                f"(allowed: 1, 0, -1 or empty for uncertain)"
                + (f"; {bad.size} such cells in this column: {m.cells(column, bad)}" if bad.size > 1 else "")
            )
        out[:, j] = _numeric(m.frame, column)[0]
    return out


def _nonempty_text(m: Manifest, column: str, role: str) -> np.ndarray:
    text = m.frame[column].str.strip().to_numpy(dtype=object)
    empty = np.flatnonzero(text == "")
    if empty.size:
        raise ValueError(f"{m.at(int(empty[0]))}, column {column!r} ({role}) is empty")
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


def _split_codes(m: Manifest, cfg: DataConfig, roles: _Roles) -> tuple[np.ndarray, str]:
    """Split code per row and a phrase for the description."""
    groups = None if roles.group is None else _nonempty_text(m, roles.group, "group").astype(str)
    grouped = f", grouped by {roles.group!r}" if groups is not None else ""
    if m.file_split is not None:
        codes = m.file_split.copy()
        how = "split from the file names"
    elif roles.split is not None:
        text = m.frame[roles.split].str.strip().str.lower()
        mapped = text.map(SPLIT_NAMES)
        bad = np.flatnonzero(mapped.isna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{m.at(i)}, column {roles.split!r}: split {m.frame[roles.split].iloc[i]!r} "
                "is not train, val (dev, development, valid) or test"
            )
        codes = mapped.to_numpy(dtype=np.int8)
        how = f"split from column {roles.split!r}"
    else:
        codes = seeded_split(len(m.frame), cfg.val_fraction, cfg.test_fraction, cfg.seed, groups)
        return _require_splits(m, codes, f"seeded split (seed {cfg.seed}{grouped})", roles)
    missing = [code for code in (1, 2) if not (codes == code).any()]
    if missing and (codes == 0).any():
        # Official lists without a validation (or test) part: carve what is missing out of train.
        train = np.flatnonzero(codes == 0)
        val_share, test_share = (
            min(f * len(m.frame) / len(train), 0.45) if code in missing else 0.0
            for code, f in ((1, cfg.val_fraction), (2, cfg.test_fraction))
        )
        carved = seeded_split(len(train), val_share, test_share, cfg.seed, None if groups is None else groups[train])
        codes[train[carved != 0]] = carved[carved != 0]
        names = " and ".join(("validation", "test")[c - 1] for c in missing)
        how += f", {names} carved from train (seed {cfg.seed}{grouped})"
    return _require_splits(m, codes, how, roles)


def _require_splits(m: Manifest, codes: np.ndarray, how: str, roles: _Roles) -> tuple[np.ndarray, str]:
    for code, name in enumerate(SPLITS):
        if not (codes == code).any():
            fix = "add rows (or groups), or change --data-val-fraction / --data-test-fraction"
            if name == "train" and m.file_split is not None:
                fix = "add a train* manifest"
            elif name == "train" and roles.split is not None:
                fix = f"give some rows 'train' in column {roles.split!r}"
            raise ValueError(f"{m.name}: the {how} leaves the {name} split empty; {fix}")
    return codes, how


def _resolve_paths(m: Manifest, cfg: DataConfig, roles: _Roles) -> tuple[np.ndarray, list[str]]:
    """(paths as written in the manifests, the paths to open: joined to image_root or each manifest's folder)."""
    written = _nonempty_text(m, roles.path, "image path").astype(str)
    if cfg.image_root and not Path(cfg.image_root).is_dir():
        raise ValueError(f"image root {cfg.image_root!r} is not a folder; fix --data-image-root")
    roots = [Path(cfg.image_root) if cfg.image_root else f.parent for f in m.files]
    resolved = [os.fspath(roots[k] / p) for k, p in zip(m.file_of_row, written, strict=True)]
    return written, resolved


def load_csv(cfg: DataConfig, cache_dir: str | os.PathLike) -> MultiLabelDataset:
    """The data set one or several CSV manifests describe (see the module docstring).

    Raises:
        ValueError: naming the file, row and column of the first problem found.
    """
    m = read_manifests(str(cfg.path))  # DataConfig guarantees a path for the csv data set
    roles = _roles(m, cfg)
    columns = _label_columns(m, cfg, roles)
    labels, mask = apply_uncertain_policy(_label_values(m, columns), cfg.uncertain)
    codes, how = _split_codes(m, cfg, roles)
    written, resolved = _resolve_paths(m, cfg, roles)

    sizes = np.asarray(_in_threads(_file_sizes, resolved), dtype=np.int64)
    missing = np.flatnonzero(sizes < 0)
    if missing.size:
        i = int(missing[0])
        raise ValueError(
            f"{m.at(i)}, column {roles.path!r}: image file {resolved[i]!r} does not exist"
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
    shown = m.files[0].name if len(m.files) == 1 else ", ".join(f.name for f in m.files)
    description = (
        f"csv {shown}: {len(m.frame)} images, {len(columns)} classes, uncertain labels -> {cfg.uncertain}, "
        f"{how}, train/val/test {counts}"
    )
    role_of = {roles.path: "image", roles.split: "split", roles.group: "group"}
    source_info = {
        "source": "csv",
        "files": [os.fspath(f) for f in m.files],
        "path_column": roles.path,
        "group_column": roles.group,
        "metadata_columns": [f"{c} ({role_of[c]})" if c in role_of else c for c in m.frame.columns if c not in columns],
    }
    dataset = check_dataset(
        MultiLabelDataset(
            class_names=columns, fingerprint=fp, description=description, source_info=source_info, **splits
        ),
        m.name,
    )
    # Last, as the slowest check: label and split errors are reported without opening a single image.
    where = hashlib.sha256("\0".join(resolved).encode()).hexdigest()[:16]  # same files, other folder: check again
    _verify_headers_once(resolved, Path(cache_dir) / "csv" / f"{fp[:32]}-{where}.verified", m, roles.path)
    return dataset


def _verify_headers_once(paths: list[str], marker: Path, m: Manifest, path_column: str) -> None:
    """Open every image's header (not its pixels) unless this exact data set passed before."""
    if marker.exists():
        return
    errors = _in_threads(_header_errors, paths)
    bad = [i for i, e in enumerate(errors) if e is not None]
    if bad:
        i = bad[0]
        raise ValueError(
            f"{m.at(i)}, column {path_column!r}: image file {paths[i]!r} is unreadable ({errors[i]})"
            + (f"; {len(bad)} of {len(paths)} images are unreadable" if len(bad) > 1 else "")
        )
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:  # a read-only cache only costs the check again next time
        pass
