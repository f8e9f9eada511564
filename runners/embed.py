"""``python -m runners.embed``: embed a data set once with a timm backbone and write a features file.

"Embed on the GPU box, sweep anywhere" is two commands::

    python -m runners.embed --data csv --data-path cxr-lt/ --backbone convnext_small \\
        --checkpoint convnext.pth -o cxr-lt-convnext.npz            # GPU machine
    python -m study.run --data features --data-path cxr-lt-convnext.npz --loss asl,ral --trials 200

The file holds ``{train,val,test}_features`` (float32 (N, D)), ``{train,val,test}_labels`` (float32
(N, C): 1, 0, and NaN where a label is unknown under ``--data-uncertain ignore``), ``class_names`` and
``embedding_info`` (JSON: backbone, checkpoint SHA-256, image size, precision, the source data set's
fingerprint and description). The embeddings are exactly what the built-in linear probe computes for
the same data, backbone and settings (same code, same disk cache under ``--cache-dir``), so a study on
the file gives the same validation mAP as a study on the images. Batched, under
``torch.inference_mode``, channels-last, with AMP (bf16, else fp16) on CUDA; the progress bar shows
only on a terminal.

This module's own flags are few; the data flags are generated from ``runners.config.DataConfig``
exactly as ``python -m study.run`` generates them, so both commands read a data set the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import AMP_MODES, DEFAULT_BACKBONE, DataConfig, TrainConfig, TrialConfig, cli_flag, cli_type

PROG = "python -m runners.embed"
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Embed a data set with a frozen timm backbone and write a features file for --data features.",
        epilog=__doc__.split("::", 1)[1].split("The file holds", 1)[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-o", "--output", required=True, metavar="FILE.npz", help="features file to write")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"timm model (default: {DEFAULT_BACKBONE})")
    parser.add_argument("--checkpoint", default=None, help="local .pth / .safetensors weights (default: random init)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default: auto)")
    parser.add_argument("--amp", choices=AMP_MODES, default="auto", help="CUDA precision (default: auto = bf16/fp16)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default: 128)")
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader processes (default: 0)")
    parser.add_argument("--num-threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--cache-dir", default=".lossweep-cache", help="data and embedding cache (default: .lossweep-cache)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    group = parser.add_argument_group("data set (runners.config.DataConfig; as python -m study.run)")
    hints = typing.get_type_hints(DataConfig)
    for f in dataclasses.fields(DataConfig):
        convert, choices = cli_type(hints[f.name])
        shown = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        group.add_argument(
            cli_flag(f"data.{f.name}"),
            dest=f"data__{f.name}",
            type=convert,
            choices=choices,
            default=argparse.SUPPRESS,
            metavar=None if choices else f.name.upper(),
            help=f"(default: {shown})",
        )
    return parser


def config_from_args(args: argparse.Namespace) -> TrialConfig:
    data = {k[len("data__") :]: v for k, v in vars(args).items() if k.startswith("data__")}
    cfg = TrialConfig(
        data=DataConfig(**data),
        backbone=args.backbone,
        checkpoint=args.checkpoint,
        train=TrainConfig(amp=args.amp),
        device=args.device,
        cache_dir=args.cache_dir,
        embed_batch_size=args.batch_size,
        num_threads=args.num_threads,
        loader_workers=args.loader_workers,
    )
    if cfg.data.name == "features":
        raise ValueError("--data features is already embeddings; embed a synthetic, csv or npz data set")
    return cfg


def _output_path(text: str) -> Path:
    path = Path(text)
    if path.suffix != ".npz":
        raise ValueError(f"--output {text}: the features file must end in .npz")
    if not path.parent.is_dir():
        raise ValueError(f"--output {text}: folder {str(path.parent)!r} does not exist; create it first")
    return path


def export_arrays(dataset: Any, raw: dict[str, np.ndarray], info: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a features file: features, labels (NaN where unknown), class names, embedding info."""
    arrays: dict[str, np.ndarray] = {}
    for name, split in dataset.splits.items():
        labels = split.labels.astype(np.float32)
        if split.mask is not None:
            labels[~split.mask] = np.nan
        arrays[f"{name}_features"] = raw[name].astype(np.float32, copy=False)
        arrays[f"{name}_labels"] = labels
    arrays["class_names"] = np.array(dataset.class_names, dtype=str)
    arrays["embedding_info"] = np.array(json.dumps(info, sort_keys=True))
    return arrays


def embed(config: TrialConfig, output: str | Path, progress: bool = True) -> dict[str, Any]:
    """Embed ``config``'s data set with its backbone and write the features file; returns its embedding info.

    Raises:
        ValueError: a bad data source, backbone, checkpoint, device or output path (before anything is written).
    """
    import torch

    from .data import load_dataset
    from .device import resolve_device
    from .features import checkpoint_sha256, compute_embeddings, embedding_precision, embedding_settings

    path = _output_path(str(output))
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    dataset = load_dataset(config.data, config.cache_dir)
    raw = compute_embeddings(dataset, device=device, progress=progress, **embedding_settings(config))
    info = {
        "backbone": config.backbone,
        "checkpoint_sha256": checkpoint_sha256(config.checkpoint),
        "image_size": config.data.image_size,
        "precision": embedding_precision(device, config.train.amp),
        "source_fingerprint": dataset.fingerprint,
        "source": dataset.description,
        "uncertain": config.data.uncertain,
    }
    from .data.base import write_npz_atomic

    write_npz_atomic(path, export_arrays(dataset, raw, info))
    return {**info, "dim": int(raw["train"].shape[1]), "counts": [len(s) for s in dataset.splits.values()]}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        info = embed(config_from_args(args), args.output, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as error:
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        counts = "/".join(map(str, info["counts"]))
        print(
            f"wrote {args.output}: train/val/test {counts} embeddings of {info['dim']} dimensions from "
            f"{info['backbone']} ({info['precision']}) in {time.perf_counter() - started:.1f} s; sweep them with "
            f"python -m study.run --data features --data-path {args.output} --loss L --trials N"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
