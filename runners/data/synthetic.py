"""A generated long-tailed multi-label image data set that behaves like CXR-LT, for runs without data.

What it reproduces, and why each part is there:

- **CXR-LT's classes and long tail.** The classes are the 26 of CXR-LT 2023, by name, and class ``c``
  has ``round(p_c * num_images)`` positives, ``p_c`` its share of the challenge's training images
  (:mod:`runners.data.cxr_lt`: head/tail ratio 164, 2.40 labels per image). ``imbalance_ratio``
  reshapes those priors to another head/tail ratio (``p_c ** k``, so the classes keep their order
  and relative spacing on a log scale) and ``labels_per_image`` scales them; fewer ``num_classes``
  keep a subset spread evenly over the frequency ranking, so head and tail both remain. Every class
  gets at least one positive in each split (three in all), which raises the rarest classes of a
  small set above their share. Positives are allotted to the train/val/test splits in proportion to
  their sizes (largest remainder, after that one positive each), so every split sees the same tail.
- **Missing labels.** In the *training* split only, ``missing_rate`` of each class's positives are
  turned into negatives (a radiologist's missed findings); at least one positive per class stays.
  Validation and test labels are clean, so the objective measures the truth. The clean training
  labels are kept in ``Split.clean_labels``.
- **Images.** 8-bit grayscale ``image_size`` squared: a chest-like body (two darker lung fields, per
  image shifted, scaled and re-exposed), smooth correlated "tissue" texture plus pixel noise, and
  distractor tubes (bright lines) in a quarter of the images that belong to no class.
- **Class signatures.** Each class adds its own pattern at its own place: blob, ring, bar, grating,
  square, speckle (texture only) or dark blob, with class-specific size, position jitter and
  contrast. Contrasts are spread from clear to subtle (``signal_strength`` scales all of them), and
  difficulty is interleaved with frequency so head and tail both hold easy and hard classes. A linear
  probe on a frozen random-init CNN therefore scores well above chance but far from 1, and losses
  that treat rare, subtle or mislabelled positives differently separate.

The class signatures are fixed (they do not depend on ``seed``): the seed draws a new sample of the
same task, which is what seed-noise studies need. Generation is vectorised numpy, chunk by chunk
(about a second for 6,000 images of 64 x 64), and deterministic for a given configuration.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

from ..config import DataConfig
from . import cxr_lt
from .base import MultiLabelDataset, Split, check_dataset, fingerprint, write_npz_atomic

GENERATOR_VERSION = 2  # bump when the generated contents change, so old caches are not reused
SHAPES = ("blob", "ring", "bar", "grating", "square", "speckle", "dark-blob")
_CHUNK = 512  # images generated at once: bounds memory (~50 MB at 64 x 64) independently of num_images
_SIGNATURE_SEED = 20230926  # fixed: class signatures define the task, the config seed only samples it


@dataclass(frozen=True)
class ClassSignature:
    shape: str
    center: tuple[float, float]  # (row, col) in [0, 1] image coordinates
    radius: float  # pattern scale, fraction of the image side
    jitter: float  # std of the per-image position offset, fraction of the image side
    contrast: float  # peak intensity change on the [0, 1] scale
    angle: float  # orientation (bar, grating), radians


def class_signatures(num_classes: int, signal_strength: float = 1.0) -> list[ClassSignature]:
    """The fixed visual signature of each class (independent of the data seed)."""
    rng = np.random.default_rng(_SIGNATURE_SEED)
    # Difficulty in [0, 1], interleaved over the class order (a stride coprime to C), so that easy and
    # subtle classes occur in the head and in the tail alike.
    stride = next(s for s in (7, 5, 11, 3, 13, 1) if math.gcd(s, num_classes) == 1)
    difficulty = ((np.arange(num_classes) * stride) % num_classes) / max(num_classes - 1, 1)
    signatures = []
    for c in range(num_classes):
        d = float(difficulty[c])
        shape = SHAPES[c % len(SHAPES)]
        center = (float(rng.uniform(0.25, 0.8)), float(rng.choice([0.32, 0.68]) + rng.uniform(-0.1, 0.1)))
        signatures.append(
            ClassSignature(
                shape=shape,
                center=center,
                radius=float(rng.uniform(0.05, 0.12)),
                jitter=0.015 + 0.06 * d,
                contrast=signal_strength * float(np.exp(np.log(0.35) + d * (np.log(0.06) - np.log(0.35)))),
                angle=float(rng.uniform(0, np.pi)),
            )
        )
    return signatures


def class_names(cfg: DataConfig) -> list[str]:
    """The CXR-LT 2023 classes the data set uses, in the challenge's column order.

    All 26 by default; fewer keep the classes at evenly spaced ranks of the frequency order (the head
    and the rarest class always), so a small set is still long-tailed.
    """
    names = list(cxr_lt.CLASS_NAMES)
    if cfg.num_classes >= len(names):
        return names
    by_frequency = sorted(range(len(names)), key=lambda c: -cxr_lt.CLASS_COUNTS[c][1])
    ranks = np.rint(np.linspace(0, len(names) - 1, cfg.num_classes)).astype(int)
    return [names[c] for c in sorted(by_frequency[r] for r in ranks)]


def class_priors(cfg: DataConfig) -> np.ndarray:
    """(C,) expected share of images positive for each class (before the floor of one per split).

    Reshaping to ``imbalance_ratio`` keeps the mean number of labels per image; ``labels_per_image``
    then sets it.
    """
    table = cxr_lt.prevalences()
    real = np.array([table[name] for name in class_names(cfg)], dtype=np.float64)
    priors = real
    natural = real.max() / real.min()
    if cfg.imbalance_ratio is not None and natural > 1:
        priors = real ** (np.log(cfg.imbalance_ratio) / np.log(natural))
        priors *= real.sum() / priors.sum()
    if cfg.labels_per_image is not None:
        priors = priors * (cfg.labels_per_image / priors.sum())
    return priors


def class_positive_counts(cfg: DataConfig) -> np.ndarray:
    """(C,) positives per class over the whole data set: the priors times the size, at least 3 (one per split)."""
    counts = np.maximum(np.rint(class_priors(cfg) * cfg.num_images).astype(np.int64), 3)
    smallest = min(split_sizes(cfg).values())
    if smallest < 1:
        raise ValueError(f"synthetic: num_images={cfg.num_images} leaves a split empty; use more images")
    if counts.max() > cfg.num_images:
        raise ValueError(
            f"synthetic: the head class would need {counts.max()} positives among {cfg.num_images} images; "
            "lower labels_per_image or imbalance_ratio"
        )
    return counts


def split_sizes(cfg: DataConfig) -> dict[str, int]:
    n_val = round(cfg.num_images * cfg.val_fraction)
    n_test = round(cfg.num_images * cfg.test_fraction)
    return {"train": cfg.num_images - n_val - n_test, "val": n_val, "test": n_test}


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` that sum to ``total`` (Hamilton's method)."""
    quotas = total * weights / weights.sum()
    counts = np.floor(quotas).astype(np.int64)
    counts[np.argsort(-(quotas - counts), kind="stable")[: total - counts.sum()]] += 1
    return counts


def _per_split(total: int, sizes: np.ndarray) -> np.ndarray:
    """``total`` positives over splits of ``sizes``: one each, the rest in proportion (no split above its size)."""
    counts = np.ones(len(sizes), dtype=np.int64) + _largest_remainder(total - len(sizes), sizes.astype(np.float64))
    over = counts - sizes
    while over.max() > 0:  # a head class in a tiny split: move the surplus to splits with room
        spare = int(over.clip(min=0).sum())
        counts = np.minimum(counts, sizes)
        room = sizes - counts
        counts += _largest_remainder(spare, room.astype(np.float64)) if room.sum() else 0
        over = counts - sizes
    return counts


def _allot_labels(rng: np.random.Generator, n_images: int, counts: np.ndarray) -> np.ndarray:
    """(n_images, C) labels with exactly counts[c] positives in column c, at random rows."""
    order = np.argsort(rng.random((n_images, len(counts))), axis=0)
    labels = np.zeros((n_images, len(counts)), dtype=np.uint8)
    np.put_along_axis(labels, order, (np.arange(n_images)[:, None] < counts[None, :]).astype(np.uint8), axis=0)
    return labels


def _drop_positives(rng: np.random.Generator, labels: np.ndarray, rate: float) -> np.ndarray:
    """Copy of labels with round(rate * n) of each class's n positives set to 0, keeping at least one."""
    observed = labels.copy()
    for c in range(labels.shape[1]):
        rows = np.flatnonzero(labels[:, c])
        n_drop = min(round(rate * rows.size), rows.size - 1)
        observed[rng.choice(rows, size=n_drop, replace=False), c] = 0
    return observed


def _smooth_noise(rng: np.random.Generator, n: int, size: int, corr: float) -> np.ndarray:
    """Unit-variance Gaussian noise with a Gaussian spatial correlation of ``corr`` (fraction of the side).

    Filtered in the Fourier domain so the cost does not grow with the correlation length.
    """
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    sigma_px = corr * size
    response = np.exp(-2 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2))
    full = np.exp(-2 * (np.pi * sigma_px) ** 2 * (np.fft.fftfreq(size)[None, :] ** 2 + fy**2))
    response = response / np.sqrt((full**2).mean())  # unit variance after filtering white noise
    white = rng.standard_normal((n, size, size), dtype=np.float32)
    return np.fft.irfft2(np.fft.rfft2(white) * response, s=(size, size)).astype(np.float32)


def _pattern(sig: ClassSignature, dy: np.ndarray, dx: np.ndarray, scale: np.ndarray, rng: np.random.Generator):
    """Pattern values on offsets (k, H, W) from each positive's centre; peak about 1 (sign for dark-blob)."""
    r = sig.radius * scale
    rho2 = dy**2 + dx**2
    along = dx * np.cos(sig.angle) + dy * np.sin(sig.angle)
    across = -dx * np.sin(sig.angle) + dy * np.cos(sig.angle)
    if sig.shape == "blob":
        return np.exp(-rho2 / (2 * r**2))
    if sig.shape == "dark-blob":
        return -np.exp(-rho2 / (2 * r**2))
    if sig.shape == "ring":
        return np.exp(-((np.sqrt(rho2) - r) ** 2) / (2 * (0.25 * r) ** 2))
    if sig.shape == "bar":
        return np.exp(-(along**2) / (2 * (1.4 * r) ** 2) - across**2 / (2 * (0.25 * r) ** 2))
    if sig.shape == "grating":
        return np.exp(-rho2 / (2 * (1.2 * r) ** 2)) * np.cos(2 * np.pi * along / (0.6 * r))
    if sig.shape == "square":
        edge = 0.15 * r
        return expit((r - np.abs(dy)) / edge) * expit((r - np.abs(dx)) / edge)
    if sig.shape == "speckle":  # texture only: fine noise inside a soft window, no mean change
        return np.exp(-rho2 / (2 * (1.2 * r) ** 2)) * rng.standard_normal(dy.shape, dtype=np.float32)
    raise AssertionError(sig.shape)


def _render(rng: np.random.Generator, labels: np.ndarray, size: int, signatures: list[ClassSignature]) -> np.ndarray:
    """uint8 (n, size, size) images for one chunk of label rows."""
    n = labels.shape[0]
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    gy, gx = grid[None, :, None], grid[None, None, :]

    # Body: two darker lung fields, jittered per image (position, scale), on a brighter mediastinum.
    shift_y, shift_x = (rng.normal(0, 0.03, (2, n, 1, 1))).astype(np.float32)
    scale = rng.uniform(0.92, 1.08, (n, 1, 1)).astype(np.float32)
    image = np.full((n, size, size), 0.62, dtype=np.float32)
    for cx in (0.32, 0.68):
        dist = ((gy - 0.52 - shift_y) / (0.3 * scale)) ** 2 + ((gx - cx - shift_x) / (0.15 * scale)) ** 2
        image -= 0.28 * expit((1 - dist) * 6)
    # Texture and noise.
    image += 0.05 * _smooth_noise(rng, n, size, corr=0.04)
    image += 0.03 * rng.standard_normal((n, size, size), dtype=np.float32)
    # Distractor tubes: thin bright lines unrelated to any label.
    tube = np.flatnonzero(rng.random(n) < 0.25)
    if tube.size:
        angle = rng.uniform(0, np.pi, (tube.size, 1, 1))
        oy, ox = rng.uniform(0.2, 0.8, (2, tube.size, 1, 1))
        offset = (gx - ox) * np.sin(angle) - (gy - oy) * np.cos(angle)
        image[tube] += (0.25 * np.exp(-(offset**2) / (2 * (0.6 / size) ** 2))).astype(np.float32)

    # Class patterns, vectorised over the positives of each class.
    for c, sig in enumerate(signatures):
        rows = np.flatnonzero(labels[:, c])
        if rows.size == 0:
            continue
        k = rows.size
        cy = sig.center[0] + rng.normal(0, sig.jitter, (k, 1, 1)) + shift_y[rows]
        cx = sig.center[1] + rng.normal(0, sig.jitter, (k, 1, 1)) + shift_x[rows]
        size_factor = rng.uniform(0.8, 1.25, (k, 1, 1))
        amplitude = sig.contrast * rng.uniform(0.7, 1.3, (k, 1, 1))
        image[rows] += (amplitude * _pattern(sig, gy - cy, gx - cx, size_factor, rng)).astype(np.float32)

    # Exposure: per-image gain and offset, then 8 bits.
    gain = rng.uniform(0.85, 1.15, (n, 1, 1)).astype(np.float32)
    offset = rng.normal(0, 0.04, (n, 1, 1)).astype(np.float32)
    image = (image - 0.5) * gain + 0.5 + offset
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def synthetic_fingerprint(cfg: DataConfig) -> str:
    settings = {
        name: getattr(cfg, name)
        for name in (
            "num_classes", "num_images", "image_size", "imbalance_ratio", "labels_per_image",
            "missing_rate", "signal_strength", "val_fraction", "test_fraction", "seed",
        )
    }  # fmt: skip
    return fingerprint({"source": "synthetic", "version": GENERATOR_VERSION, **settings})


def generate(cfg: DataConfig) -> dict[str, np.ndarray]:
    """All arrays of the synthetic data set (no caching): ``{split}_images``, ``{split}_labels``,
    ``train_clean_labels``."""
    counts = class_positive_counts(cfg)
    sizes = split_sizes(cfg)
    weights = np.array([sizes[s] for s in ("train", "val", "test")], dtype=np.int64)
    per_split = np.stack([_per_split(int(n), weights) for n in counts], axis=1)  # (3, C)
    label_seed, missing_seed, image_seed = np.random.SeedSequence([cfg.seed, GENERATOR_VERSION]).spawn(3)
    label_rng, missing_rng = np.random.default_rng(label_seed), np.random.default_rng(missing_seed)
    signatures = class_signatures(cfg.num_classes, cfg.signal_strength)
    arrays: dict[str, np.ndarray] = {}
    split_labels = {s: _allot_labels(label_rng, sizes[s], per_split[i]) for i, s in enumerate(("train", "val", "test"))}
    all_labels = np.concatenate([split_labels[s] for s in ("train", "val", "test")])
    chunk_seeds = image_seed.spawn(math.ceil(len(all_labels) / _CHUNK))
    images = np.concatenate(
        [
            _render(np.random.default_rng(seed), all_labels[i * _CHUNK : (i + 1) * _CHUNK], cfg.image_size, signatures)
            for i, seed in enumerate(chunk_seeds)
        ]
    )
    start = 0
    for s in ("train", "val", "test"):
        arrays[f"{s}_images"] = images[start : start + sizes[s]]
        arrays[f"{s}_labels"] = split_labels[s]
        start += sizes[s]
    arrays["train_clean_labels"] = split_labels["train"]
    arrays["train_labels"] = _drop_positives(missing_rng, split_labels["train"], cfg.missing_rate)
    return arrays


def _cache_path(cache_dir: str | os.PathLike, digest: str) -> Path:
    return Path(cache_dir) / "synthetic" / f"{digest}.npz"


def _reshaped(cfg: DataConfig) -> str:
    parts = [f"imbalance {cfg.imbalance_ratio:g}"] if cfg.imbalance_ratio is not None else []
    parts += [f"{cfg.labels_per_image:g} labels/image"] if cfg.labels_per_image is not None else []
    return f" ({', '.join(parts)})" if parts else ""


def load_synthetic(cfg: DataConfig, cache_dir: str | os.PathLike) -> MultiLabelDataset:
    """The synthetic data set, generated once per configuration and cached as
    ``cache_dir/synthetic/<fingerprint>.npz``."""
    digest = synthetic_fingerprint(cfg)
    path = _cache_path(cache_dir, digest)
    arrays = None
    if path.exists():
        try:
            with np.load(path) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except Exception as error:  # a damaged cache file is regenerated, not fatal
            warnings.warn(f"synthetic cache {path} is unreadable ({error}); regenerating it", stacklevel=2)
    if arrays is None:
        arrays = generate(cfg)
        write_npz_atomic(path, arrays)
    names = class_names(cfg)
    splits = {
        s: Split(
            name=s,
            labels=arrays[f"{s}_labels"],
            images=arrays[f"{s}_images"],
            clean_labels=arrays["train_clean_labels"] if s == "train" else None,
        )
        for s in ("train", "val", "test")
    }
    sizes = "/".join(str(len(splits[s])) for s in ("train", "val", "test"))
    description = (
        f"synthetic: {cfg.num_images} grayscale {cfg.image_size}x{cfg.image_size} images, {cfg.num_classes} classes, "
        f"CXR-LT 2023 classes and priors{_reshaped(cfg)}, "
        f"{cfg.missing_rate:.0%} train positives missing, seed {cfg.seed}, train/val/test {sizes}"
    )
    dataset = MultiLabelDataset(
        class_names=names,
        fingerprint=digest,
        description=description,
        source_info={"source": "synthetic", "class_priors": "CXR-LT 2023 (runners/data/cxr_lt.py)"},
        **splits,
    )
    return check_dataset(dataset, "synthetic")
