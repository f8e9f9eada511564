"""The configuration of a run and of one study, the trial flags, and the check that a resumed study matches.

``python -m study.run`` turns its arguments into a :class:`RunOptions` at the boundary; planning
(``study.planning``) and the runner (``study.runner``) read only that.

The trial settings' flags are generated from the fields of ``runners.config`` (DataConfig,
TrainConfig, TrialConfig) so a field added there gets a flag here without anyone remembering to.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.checksum import file_sha256
from runners.config import DataConfig, TrainConfig, TrialConfig
from runners.config import cli_flag as _flag
from runners.config import cli_type as _parser_for

from .design import SAMPLERS

STORE_FORMAT = 1

# Trial settings that do not change a trial's result, so a resumed study (or another machine of a
# cluster) may differ in them: where it runs, with how many threads, where its cache lives.
EXECUTION_ONLY = {
    "trial.device",
    "trial.num_threads",
    "trial.cache_dir",
    "trial.embed_batch_size",
    "trial.loader_workers",
    # Where the data files lie on this machine: the data's identity is data_fingerprint (its contents).
    "trial.data.path",
    "trial.data.image_root",
}
# Study settings that may change on resume: the budget may grow, retries may be raised or lowered.
RESUMABLE = {"n_trials", "max_retries", "space_file"}
# Settings older stores recorded that now live in the stored search space (RAL's polynomial lengths are
# its alpha_i / beta_i parameters), so a study stored with them resumes unchanged.
RETIRED = {"n_alpha", "n_beta"}

_HELP: dict[str, str] = {
    "data.name": (
        "data set: synthetic (built-in CXR-LT look-alike, no files), csv (manifests + image folder), "
        "npz (MedMNIST-style archive), features (precomputed embeddings .npz; linear probe only)"
    ),
    "data.path": (
        "csv: a manifest, a comma list of them or their folder (split from each file's name: train*, "
        "dev*/development*/val*, test*); npz/features: the .npz file"
    ),
    "data.image_root": "folder the CSV's path column is relative to (default: each manifest's folder)",
    "data.image_size": "side of the square images fed to the backbone",
    "data.num_classes": "synthetic: number of CXR-LT 2023 classes (fewer: a subset spread over head and tail)",
    "data.num_images": "synthetic: number of images",
    "data.imbalance_ratio": "synthetic: positives of the most / least frequent class ('none' = CXR-LT 2023's, 164)",
    "data.labels_per_image": "synthetic: mean positive labels per image ('none' = CXR-LT 2023's, 2.40)",
    "data.missing_rate": "synthetic: share of training positives dropped (missing findings)",
    "data.signal_strength": "synthetic: multiplies every class's contrast (< 1 harder, > 1 easier)",
    "data.group_column": (
        "csv: column (e.g. a patient id) whose rows stay in one carved split; "
        "auto = subject_id when present, none = no grouping"
    ),
    "data.path_column": "csv: column holding image paths; auto = path, else fpath",
    "data.label_columns": "csv: comma-separated label columns (default: every 0/1 column)",
    "data.split_column": "csv: column holding train/val/test (used when present)",
    "data.uncertain": "csv, npz, features: policy for -1 / empty (NaN) labels",
    "data.val_fraction": "share of images in the validation split when the source has no splits",
    "data.test_fraction": "share of images in the test split when the source has no splits",
    "data.seed": "seed of data generation (synthetic) and of the splits",
    "train.epochs": "training epochs per trial",
    "train.batch_size": "training batch size",
    "train.lr": "learning rate (swept instead with --nuisance)",
    "train.weight_decay": "weight decay (swept instead with --nuisance)",
    "train.optimizer": "optimiser",
    "train.head": "classifier head trained on the backbone's features",
    "train.mlp_hidden": "hidden units of the mlp head",
    "train.grad_clip": "max gradient norm ('none' disables clipping)",
    "train.amp": "mixed precision: auto = bf16 where supported on CUDA, off on CPU",
    "train.warmup_epochs": "linear learning-rate warm-up epochs",
    "backbone": "timm backbone name (random init unless --checkpoint; nothing is downloaded)",
    "checkpoint": "local .pth / .safetensors weights for the backbone",
    "protocol": "linear-probe: train a head on cached embeddings; finetune: train the whole network",
    "cache_dir": "data and embedding cache folder",
    "embed_batch_size": "batch size when computing embeddings",
    "num_threads": "torch threads per worker; none = CPU cores / workers",
    "loader_workers": "DataLoader processes per worker when images are read (embedding, finetune); 0 reads in-process",
}


def trial_fields() -> list[tuple[str, dataclasses.Field, Any]]:
    """(dotted path, field, type hint) of every trial setting a flag is made for (``device`` has --devices)."""
    out = []
    for section, cls in (("data", DataConfig), ("train", TrainConfig), ("", TrialConfig)):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if cls is TrialConfig and f.name in ("data", "train", "device"):
                continue
            out.append((f"{section}.{f.name}" if section else f.name, f, hints[f.name]))
    return out


def _default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[operator]  # every config field has a default or a factory


def add_trial_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of DataConfig, TrainConfig and TrialConfig, with its default in --help."""
    groups = {
        "data": parser.add_argument_group("data set (runners.config.DataConfig)"),
        "train": parser.add_argument_group("training (runners.config.TrainConfig)"),
        "": parser.add_argument_group("backbone and protocol (runners.config.TrialConfig)"),
    }
    for path, f, hint in trial_fields():
        convert, choices = _parser_for(hint)
        default = _default_of(f)
        shown = ",".join(default) if isinstance(default, tuple) else default
        help_text = _HELP.get(path, path)
        groups[path.rpartition(".")[0]].add_argument(
            _flag(path),
            dest="trial__" + path.replace(".", "__"),
            type=convert,
            choices=choices,
            default=argparse.SUPPRESS,
            metavar=None if choices else f.name.upper(),
            help=f"{help_text} (default: {shown})",
        )


def trial_config_from_args(args: argparse.Namespace) -> TrialConfig:
    """The TrialConfig the flags describe (defaults for flags not given)."""
    given = {k[len("trial__") :]: v for k, v in vars(args).items() if k.startswith("trial__")}
    data = {k[len("data__") :]: v for k, v in given.items() if k.startswith("data__")}
    train = {k[len("train__") :]: v for k, v in given.items() if k.startswith("train__")}
    top = {k: v for k, v in given.items() if "__" not in k}
    return TrialConfig(data=DataConfig(**data), train=TrainConfig(**train), **top)


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study's results depend on, plus its budget; stored as the study's ``config`` attribute."""

    loss: str
    n_trials: int
    trial: TrialConfig = field(default_factory=TrialConfig)
    sampler: str = "qmc"
    seed: int = 0
    space_mode: str = "full"
    nuisance: bool = False
    replicates: int = 1
    max_retries: int = 2
    space_file: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise ValueError(f"--trials must be a positive integer, got {self.n_trials!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown --sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.replicates < 1:
            raise ValueError(f"--replicates must be >= 1, got {self.replicates}")
        if self.max_retries < 0:
            raise ValueError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.trial.checkpoint is not None and not Path(self.trial.checkpoint).is_file():
            raise ValueError(f"--checkpoint {self.trial.checkpoint}: no such file")

    def to_dict(self) -> dict[str, Any]:
        """The ``config`` study attribute (docs/store-format.md)."""
        d = dataclasses.asdict(self)
        d["trial"] = self.trial.to_dict()
        if self.trial.checkpoint is not None:
            d["trial"]["checkpoint_sha256"] = file_sha256(self.trial.checkpoint)
        return d

    def default_study_name(self) -> str:
        """``<loss>-<data>-<protocol>-<mode>[-nuisance]``, e.g. ``ral-synthetic-linear-probe-full``."""
        data = self.trial.data
        source = data.name if data.path is None else Path(data.path).stem
        if data.path is not None and "," in data.path:  # manifests train.csv,development.csv,...: their folder
            first = Path(data.path.split(",")[0].strip())
            source = first.parent.name or first.stem
        name = f"{self.loss}-{source}-{self.trial.protocol}-{self.space_mode}"
        return name + "-nuisance" if self.nuisance else name


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, (list, tuple)) and any(isinstance(x, dict) for x in d):
        out = {}
        for i, x in enumerate(d):
            name = x.get("name", i) if isinstance(x, dict) else i  # search-space params by name
            out.update(_flatten(x, f"{prefix}.{name}"))
        return out
    if isinstance(d, tuple):
        d = list(d)
    return {prefix: d}


def setting_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``name (stored X, now Y)`` for each result-relevant setting that differs.

    ``stored`` and ``current`` hold the study attributes ``config``, ``search_space`` and
    ``data_fingerprint``; execution-only settings, the budget and retired settings are ignored.
    """
    a, b = _flatten(stored), _flatten(current)
    skip = {f"config.{k}" for k in EXECUTION_ONLY | RESUMABLE | RETIRED}
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in skip:
            continue
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            name = key.removeprefix("config.").removeprefix("trial.")
            diffs.append(f"{name} (stored {a.get(key, '<unset>')!r}, now {b.get(key, '<unset>')!r})")
    return diffs


@dataclass(frozen=True)
class ExecutionConfig:
    """How a study's workers run; none of it changes a trial's result."""

    devices: tuple[str, ...] = ("cpu",)
    workers: int | None = 1  # worker processes per device; None = auto, see slots()
    timeout: float | None = None  # seconds after which no new trial starts
    heartbeat_interval: int = 10
    grace_period: int = 60
    quiet: bool = False
    # Linear-probe trials claimed and trained together (runners.run_pack); None = auto: on CPU the
    # measured size, on CUDA as many of the remaining trials as fit a memory bound. 1 = one at a time.
    pack_size: int | None = None

    def __post_init__(self) -> None:
        if self.pack_size is not None and self.pack_size < 1:
            raise ValueError(f"--pack-size must be a positive integer or auto, got {self.pack_size}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be a positive integer or auto, got {self.workers}")

    def slots(self, threads: int | None = None, worker_bytes: int | None = None) -> list[str]:
        """The device of each worker process.

        ``workers`` per device, or auto: one per GPU, and on ``cpu`` one per core, or per ``threads``
        cores when each worker is given that many threads, and no more than half the machine's memory
        holds at ``worker_bytes`` a worker (``runners.Prepared.worker_memory_bytes``: the embeddings
        of a large data set are a private copy in each). Why one-threaded workers on a CPU: a pack's
        products are small (256 x 1024 by 1024 x 416 per block), where one BLAS thread per core runs
        near the core's peak and two threads on one product do not (measured on 2 cores: the default
        study ~11 % faster as 2 workers x 1 thread than 1 x 2), and single-threaded stretches (start-up,
        scoring, the store) of one worker overlap the other's training. Results do not change: a head
        computes the same whatever the threads (tests/runners/test_pack.py).
        """
        out = []
        for device in self.devices:
            count = self.workers
            if count is None and device == "cpu":
                count = available_cores() // max(1, threads or 1)
                if worker_bytes:
                    count = min(count, physical_memory() // 2 // worker_bytes)
            count = max(1, count or 1)
            out += [device] * count
        return out


def physical_memory() -> int:
    """The machine's memory in bytes (a large number where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return 1 << 60


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class RunOptions:
    """Everything ``python -m study.run`` was asked to do, validated: the CLI's typed output."""

    losses: tuple[str, ...]
    n_trials: int
    storage_url: str
    trial: TrialConfig = field(default_factory=TrialConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    study_name: str | None = None
    sampler: str = "qmc"
    seed: int = 0
    replicates: int = 1
    max_retries: int = 2
    space_file: str | None = None
    space_mode: str = "full"
    nuisance: bool = False
    space_options: dict[str, int] = field(default_factory=dict)  # e.g. RAL's n_alpha / n_beta
    report: str | None = None
