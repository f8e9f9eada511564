"""Typed configuration of one trial.

These dataclasses are the contract between ``study`` (which builds them from command-line flags and
stores them with ``dataclasses.asdict`` in the study's attributes) and ``runners`` (which executes
them). They hold only plain values so that they pickle into spawned worker processes and serialise
to JSON unchanged. This module must not import torch: ``study`` imports it in the parent process.
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

DATASETS = ("synthetic", "csv", "npz", "features")
PROTOCOLS = ("linear-probe", "finetune")
OPTIMIZERS = ("adamw", "sgd")
HEADS = ("linear", "mlp")
UNCERTAIN_POLICIES = ("zero", "one", "ignore")
AMP_MODES = ("auto", "bf16", "fp16", "off")
# Random-init timm backbone used when none is named; runners/backbones.py records the measurement behind it.
DEFAULT_BACKBONE = "mobilenetv3_small_100"


def _check(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


@dataclass(frozen=True)
class DataConfig:
    """Which multi-label data set to use and how to build it.

    ``synthetic`` is the built-in default (no files, no network). ``csv`` reads a manifest plus an
    image folder (CXR-LT / ChestX-ray14 layout), or several manifests named by split. ``npz`` reads a
    MedMNIST-style archive. ``features`` reads precomputed embeddings (linear probe only).
    """

    name: Literal["synthetic", "csv", "npz", "features"] = "synthetic"
    # csv: one manifest, a comma list of them or a folder of them; npz / features: the .npz file
    path: str | None = None
    image_root: str | None = None  # folder the CSV's path column is relative to (default: the CSV's folder)
    image_size: int = 64  # side of the square images fed to the backbone
    # synthetic
    num_classes: int = 26  # the CXR-LT 2023 classes; fewer: a subset spread over head and tail
    num_images: int = 6000
    imbalance_ratio: float | None = None  # None: CXR-LT 2023's (164); else its priors reshaped to this ratio
    labels_per_image: float | None = None  # None: CXR-LT 2023's (2.40 with all classes); else priors scaled
    missing_rate: float = 0.2  # share of training positives dropped (missing findings); val/test are clean
    signal_strength: float = 1.0  # multiplies every class's contrast: < 1 harder, > 1 easier
    # csv
    path_column: str = "auto"  # auto: "path", else "fpath" (CXR-LT 2023 / 2024)
    label_columns: tuple[str, ...] | None = None  # None: auto-detect 0/1 columns
    split_column: str | None = "split"  # used when present in the CSV
    # Rows sharing a value (a patient id) land in one split when splits are carved; auto: "subject_id"
    # when the CSV has it (MIMIC-CXR, CXR-LT), else none.
    group_column: str | None = "auto"
    uncertain: Literal["zero", "one", "ignore"] = "zero"  # policy for -1 / empty (NaN) labels
    # splits carved (seeded, grouped) when the source lacks them
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0  # generation (synthetic) and split seed

    def __post_init__(self) -> None:
        # Range checks only; files and columns are checked by runners.data when the data set is loaded.
        if self.name not in DATASETS:
            raise ValueError(f"data set name must be one of {DATASETS}, got {self.name!r}")
        if self.name != "synthetic" and not self.path:
            what = {"csv": "CSV manifest(s) or their folder", "npz": ".npz file", "features": "features .npz file"}
            raise ValueError(f"the {self.name!r} data set needs --data-path (the {what[self.name]})")
        if self.imbalance_ratio is not None and not self.imbalance_ratio >= 1:
            raise ValueError(f"imbalance_ratio must be >= 1, got {self.imbalance_ratio}")
        if self.labels_per_image is not None and not self.labels_per_image > 0:
            raise ValueError(f"labels_per_image must be > 0, got {self.labels_per_image}")
        if self.uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {self.uncertain!r}")
        checks = [
            (self.image_size >= 8, f"image_size must be >= 8, got {self.image_size}"),
            (
                2 <= self.num_classes <= 26,
                f"num_classes must be in 2..26 (the synthetic set has the 26 CXR-LT 2023 classes), "
                f"got {self.num_classes}",
            ),
            (self.num_images >= 10, f"num_images must be >= 10, got {self.num_images}"),
            (0 <= self.missing_rate < 1, f"missing_rate must be in [0, 1), got {self.missing_rate}"),
            (self.signal_strength > 0, f"signal_strength must be > 0, got {self.signal_strength}"),
            (0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}"),
            (0 < self.test_fraction < 1, f"test_fraction must be in (0, 1), got {self.test_fraction}"),
            (
                self.val_fraction + self.test_fraction < 1,
                f"val_fraction + test_fraction must be < 1, got {self.val_fraction + self.test_fraction}",
            ),
        ]
        _check(checks)
        if not self.path_column:
            raise ValueError("path_column is empty (--data-path-column); name the image column or use auto")
        if self.label_columns is not None and not isinstance(self.label_columns, tuple):
            object.__setattr__(self, "label_columns", tuple(self.label_columns))


@dataclass(frozen=True)
class TrainConfig:
    """How the classifier is optimised. ``lr`` and ``weight_decay`` are nuisance hyperparameters a study may sweep."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    head: Literal["linear", "mlp"] = "linear"
    mlp_hidden: int = 256
    grad_clip: float | None = None  # max gradient norm; None disables clipping
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 where supported on CUDA, off on CPU
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        # Range checks, so that a bad flag fails before the data set is built, not in every trial.
        _check(
            [
                (self.epochs >= 1, f"epochs must be >= 1 (--epochs), got {self.epochs}"),
                (self.batch_size >= 1, f"batch_size must be >= 1 (--batch-size), got {self.batch_size}"),
                (self.lr > 0, f"lr must be > 0 (--lr), got {self.lr}"),
                (self.weight_decay >= 0, f"weight_decay must be >= 0 (--weight-decay), got {self.weight_decay}"),
                (
                    self.optimizer in OPTIMIZERS,
                    f"optimizer must be one of {OPTIMIZERS} (--optimizer), got {self.optimizer!r}",
                ),
                (self.head in HEADS, f"head must be one of {HEADS} (--head), got {self.head!r}"),
                (self.mlp_hidden >= 1, f"mlp_hidden must be >= 1 (--mlp-hidden), got {self.mlp_hidden}"),
                (
                    self.grad_clip is None or self.grad_clip > 0,
                    f"grad_clip must be > 0 or none (--grad-clip), got {self.grad_clip}",
                ),
                (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES} (--amp), got {self.amp!r}"),
                (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0 (--warmup-epochs), got {self.warmup_epochs}"),
            ]
        )


@dataclass(frozen=True)
class TrialConfig:
    """Everything except the loss and its hyperparameters that determines a trial's result."""

    data: DataConfig = field(default_factory=DataConfig)
    backbone: str = DEFAULT_BACKBONE  # chosen by measurement: see runners/backbones.py
    checkpoint: str | None = None  # local .pth / .safetensors file; None: random init (nothing is downloaded)
    protocol: Literal["linear-probe", "finetune"] = "linear-probe"
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"  # cpu, cuda, cuda:N, mps or auto
    cache_dir: str = ".lossweep-cache"  # data and embedding cache (joblib.Memory)
    embed_batch_size: int = 128
    num_threads: int | None = None  # torch intra-op threads in this process; None: leave torch's default
    loader_workers: int = 0  # DataLoader worker processes when images are read (embedding, finetune); 0: in-process

    def __post_init__(self) -> None:
        _check(
            [
                (
                    self.protocol in PROTOCOLS,
                    f"protocol must be one of {PROTOCOLS} (--protocol), got {self.protocol!r}",
                ),
                (bool(self.backbone), "backbone is empty (--backbone); name a timm model such as resnet18"),
                (
                    self.embed_batch_size >= 1,
                    f"embed_batch_size must be >= 1 (--embed-batch-size), got {self.embed_batch_size}",
                ),
                (
                    self.num_threads is None or self.num_threads >= 1,
                    f"num_threads must be >= 1 (--num-threads), got {self.num_threads}",
                ),
                (
                    self.loader_workers >= 0,
                    f"loader_workers must be >= 0 (--loader-workers), got {self.loader_workers}",
                ),
                (
                    self.data.name != "features" or self.protocol == "linear-probe",
                    "--data features holds embeddings, not images: it needs --protocol linear-probe, "
                    f"not {self.protocol}",
                ),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        d = dict(d)
        data = dict(d.pop("data", {}))
        if data.get("label_columns") is not None:
            data["label_columns"] = tuple(data["label_columns"])
        train = d.pop("train", {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown trial settings: {sorted(unknown)}")
        return cls(data=DataConfig(**data), train=TrainConfig(**train), **d)


# -- command-line flags of these settings (study.run and runners.embed generate theirs from the fields) --


def cli_flag(path: str) -> str:
    """Command-line flag of a trial setting: data fields get a ``--data-`` prefix, the rest none."""
    if path == "data.name":
        return "--data"
    section, _, name = path.rpartition(".")
    prefix = "data-" if section == "data" else ""
    return "--" + prefix + name.replace("_", "-")


def cli_type(hint: Any) -> tuple[Any, list[str] | None]:
    """(type converter, choices) for a field's type hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner_type, choices = cli_type(next(a for a in args if a is not type(None)))

        def optional(text: str) -> Any:
            return None if text.lower() in ("none", "") else inner_type(text)

        return optional, choices
    if origin is Literal:
        return str, list(args)
    if origin is tuple:
        return lambda text: tuple(s.strip() for s in text.split(",") if s.strip()), None
    if hint is bool:
        return lambda text: text.lower() in ("1", "true", "yes", "on"), None
    return hint, None
