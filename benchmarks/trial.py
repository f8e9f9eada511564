"""What one trial costs, and which default backbone to use: data, embeddings, linear-probe trials, finetune.

Run: ``python -m benchmarks.trial [--num-images 6000] [--image-size 64] [--imbalance-ratio R]
[--backbones mobilenetv3_small_100 resnet18 ...] [--trials 5] [--threads 1] [--device cpu]
[--pack-sizes 1 8 32 128] [--tables data backbones trials packs finetune] [--cache-dir DIR]``.
Defaults are the built-in data set and trial settings; the whole run takes a few minutes on 2 CPU
cores. Prints five tables:

1. data set generation seconds (cold: an empty cache; cached: read back from disk);
2. per backbone: embedding seconds cold (computed) and cached (read from the joblib disk cache),
   images/second, feature width, and the linear-probe validation mAP with BCE and the default
   training settings (mean over ``--seeds`` seeds), to justify the default backbone;
3. seconds per linear-probe trial with a warm cache (median over ``--trials`` trials) for BCE, ASL and
   RAL on the default backbone (goal: <= 0.5 s on 2 cores);
4. seconds per trial of a RAL sweep trained as packs of K trials (``runners.run_pack``: K heads in
   lock-step), for each ``--pack-sizes`` K, with the speed-up over K = 1; the design points are
   uniform draws from RAL's default space, so every head really differs;
5. finetune training images/second on the CPU (and on CUDA when present).

Everything runs in a temporary cache directory (or ``--cache-dir``), so cold means cold. Timings on a shared machine are
noisy; rerun on a quiet one for numbers to quote.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from typing import cast

import torch

import runners
from runners.config import DataConfig, TrainConfig, TrialConfig
from runners.device import resolve_device
from runners.features import clear_memory_cache
from runners.trial import dataset_for

CANDIDATES = ("mobilenetv3_small_100", "convnext_atto", "resnet18")  # the default and the two named in issue #3
TABLES = ("data", "backbones", "trials", "packs", "finetune")


def _clear_process_caches() -> None:
    from runners import trial

    clear_memory_cache()
    trial._datasets.clear()


def data_times(config: TrialConfig) -> tuple[float, float]:
    from runners.data import load_dataset

    started = time.perf_counter()
    load_dataset(config.data, config.cache_dir)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    load_dataset(config.data, config.cache_dir)
    return cold, time.perf_counter() - started


def backbone_row(config: TrialConfig, seeds: int) -> dict[str, float | int | str | None]:
    """Embedding seconds cold/cached and BCE linear-probe val mAP of ``config.backbone``."""
    _clear_process_caches()
    cold = runners.prepare(config, progress=False).embed_seconds
    _clear_process_caches()
    cached = runners.prepare(config, progress=False)
    images = sum(len(s) for s in cached.dataset.splits.values())
    # cast: a BCE trial at the defaults completes with a value (statistics raise on None otherwise).
    values = [cast(float, runners.run_trial(config, "bce", {}, seed).value) for seed in range(seeds)]
    return {
        "backbone": config.backbone,
        "dim": cached.feature_dim,
        "cold": cold,
        "cached": cached.embed_seconds,
        "img/s": images / cold,
        "mAP": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def trial_seconds(config: TrialConfig, loss: str, trials: int) -> tuple[float, float]:
    """(median seconds, mean val mAP) of ``trials`` warm linear-probe trials of the loss's defaults."""
    runners.run_trial(config, loss, {}, 0)  # warm: embeddings in memory, allocator and kernels ready
    results = [runners.run_trial(config, loss, {}, seed) for seed in range(1, trials + 1)]
    return statistics.median(r.seconds for r in results), statistics.fmean(cast(float, r.value) for r in results)


def pack_seconds(config: TrialConfig, size: int, rounds: int) -> tuple[float, float]:
    """(seconds per trial, mean val mAP) of RAL packs of ``size`` distinct design points (median over ``rounds``)."""
    import numpy as np

    rng = np.random.default_rng(size)
    per_trial, values = [], []
    for _ in range(rounds):
        trials = [
            runners.PackTrial(
                {
                    "gamma_neg": float(rng.uniform(0, 6)),
                    "clip": float(rng.uniform(0, 0.4)),
                    "lam": float(rng.uniform(1.1, 3)),
                    "alpha": (float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))),
                    "beta": (float(rng.uniform(-2, 2)),),
                },
                seed=0,
            )
            for _ in range(size)
        ]
        started = time.perf_counter()
        results = runners.run_pack(config, "ral", trials)
        per_trial.append((time.perf_counter() - started) / size)
        values += [r.value for r in results if r.value is not None]
    return statistics.median(per_trial), statistics.fmean(values) if values else float("nan")


def finetune_rate(config: TrialConfig, device: str) -> float:
    from runners.losses import create_loss
    from runners.protocols.finetune import images_per_second

    config = dataclasses.replace(
        config, protocol="finetune", device=device, train=dataclasses.replace(config.train, batch_size=64)
    )
    dev = resolve_device(device)
    return images_per_second(config, dataset_for(config), create_loss("asl").to(dev), dev)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.trial", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-images", type=int, default=DataConfig.num_images)
    parser.add_argument("--image-size", type=int, default=DataConfig.image_size)
    parser.add_argument(
        "--imbalance-ratio",
        type=float,
        default=None,
        help="default: CXR-LT 2023 priors (164); lower it for small --num-images",
    )
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--backbones", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--default-backbone", default=TrialConfig.backbone, help="backbone of tables 3 and 4")
    parser.add_argument("--seeds", type=int, default=3, help="linear-probe seeds per backbone in table 2")
    parser.add_argument("--trials", type=int, default=5, help="timed trials per loss in table 3")
    # One thread, as study.run gives each of its one-worker-per-core workers: on 2 shared cores, two
    # threads per trial measured 6-14x slower than one when other processes held the cores.
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1, like one study worker per core)"
    )
    parser.add_argument("--device", default="cpu", help="device of tables 2, 3 and 4")
    parser.add_argument("--pack-sizes", type=int, nargs="+", default=[1, 8, 32, 128], help="K of table 4")
    parser.add_argument("--pack-rounds", type=int, default=1, help="timed packs per K in table 4 (median)")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES, help="which tables to print")
    parser.add_argument("--cache-dir", default=None, help="a cache to reuse (default: a fresh temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="lossweep-bench-") as temporary:
        cache = args.cache_dir or temporary
        base = TrialConfig(
            data=DataConfig(
                num_images=args.num_images, image_size=args.image_size, imbalance_ratio=args.imbalance_ratio
            ),
            backbone=args.default_backbone,
            train=TrainConfig(epochs=args.epochs),
            device=args.device,
            cache_dir=cache,
            num_threads=args.threads,
        )
        torch.set_num_threads(args.threads)
        import timm  # noqa: F401  (its import time is not the first backbone's embedding time)

        print(
            f"benchmarks.trial: {args.num_images} synthetic images of {args.image_size}px, {args.epochs} epochs, "
            f"{args.threads} thread(s), device {args.device}\n"
        )

        if "data" in args.tables:
            cold, cached = data_times(base)
            print(f"{'data set':<24} {'cold s':>8} {'cached s':>9}")
            print(f"{'synthetic':<24} {cold:>8.2f} {cached:>9.2f}\n")

        if "backbones" in args.tables:
            print(
                f"{'backbone':<24} {'dim':>5} {'embed cold s':>13} {'cached s':>9} {'img/s':>8} "
                f"{'BCE val mAP':>12} {'sd':>6}"
            )
            for name in args.backbones:
                row = backbone_row(dataclasses.replace(base, backbone=name), args.seeds)
                print(
                    f"{row['backbone']:<24} {row['dim']:>5} {row['cold']:>13.2f} {row['cached']:>9.2f} "
                    f"{row['img/s']:>8.0f} {row['mAP']:>12.4f} {row['sd']:>6.4f}"
                )
            print()

        runners.prepare(base, progress=False)
        if "trials" in args.tables:
            print(f"{'linear-probe trial (' + base.backbone + ')':<40} {'median s':>9} {'val mAP':>8}")
            for loss in ("bce", "asl", "ral"):
                seconds, value = trial_seconds(base, loss, args.trials)
                print(f"{loss:<40} {seconds:>9.3f} {value:>8.4f}")
            print("goal: <= 0.5 s per trial with a warm cache on 2 cores\n")

        if "packs" in args.tables:
            for size in (1, 2):  # warm: the single and pack kernels loaded (or built, once per machine)
                pack_seconds(base, size, 1)
            print(f"{'RAL sweep in packs of K':<40} {'s/trial':>9} {'speed-up':>9} {'val mAP':>8}")
            first = None
            for size in args.pack_sizes:
                seconds, value = pack_seconds(base, size, args.pack_rounds)
                first = first or seconds
                print(f"{'K = ' + str(size):<40} {seconds:>9.3f} {first / seconds:>8.2f}x {value:>8.4f}")
            print("speed-up: against the first K listed, measured in the same run\n")

        if "finetune" in args.tables:
            print(f"{'finetune (' + base.backbone + ', batch 64)':<40} {'img/s':>9}")
            devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
            for device in devices:
                print(f"{device:<40} {finetune_rate(base, device):>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
