"""Fixtures for the data-set tests: real PNG/JPEG files and manifests written into tmp_path with Pillow."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

# 12 rows, 3 classes, every class positive in every split of the column split below.
LABELS = {
    "effusion": [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0],
    "nodule": [0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0],
    "edema": [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1],
}
SPLIT = ["train"] * 6 + ["val"] * 3 + ["test"] * 3


def write_image(
    path: Path, mode: str = "L", size: tuple[int, int] = (20, 16), value: int | None = None, seed: int = 0
) -> Path:
    """A real image file (format from the suffix): random pixels, or a constant ``value``."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    pixels = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 256, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Callable[..., Path]:
    """``manifest(**edits)`` writes 12 images (PNG gray, JPEG RGB alternating) under ``tmp_path/images``
    and ``tmp_path/manifest.csv`` with columns path, split, patient, age and the LABELS; ``edits``
    maps a column to a list of values (or None to drop the column)."""

    def make(**edits: list[Any] | None) -> Path:
        paths = []
        for i in range(12):
            suffix, mode = (".png", "L") if i % 2 == 0 else (".jpg", "RGB")
            write_image(tmp_path / "images" / f"img{i:02d}{suffix}", mode, size=(20 + i, 16), seed=i)
            paths.append(f"images/img{i:02d}{suffix}")
        columns: dict[str, list[Any]] = {"path": paths, "split": SPLIT, "patient": [f"p{i // 2}" for i in range(12)],
                                         "age": [30 + 7 * i for i in range(12)], **LABELS}  # fmt: skip
        for column, values in edits.items():
            if values is None:
                columns.pop(column)
            else:
                columns[column] = values
        rows = [{c: v[i] for c, v in columns.items()} for i in range(12)]
        return write_csv(tmp_path / "manifest.csv", rows)

    return make


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def image_file() -> Callable[..., Path]:
    """The :func:`write_image` helper, as a fixture (test modules cannot import conftest under importlib mode)."""
    return write_image


@pytest.fixture
def csv_file() -> Callable[..., Path]:
    """The :func:`write_csv` helper, as a fixture."""
    return write_csv
