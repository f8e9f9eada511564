"""Forward + backward cost of every loss relative to ``torch.nn.BCEWithLogitsLoss``: ours vs the released code.

Run: ``python -m benchmarks.losses [--sizes 4096x1000 256x26] [--seconds 4] [--threads N] [--devices cpu cuda]``.

For each device (CPU, and CUDA where ``torch.cuda.is_available()``) and each batch x classes size, every
candidate (BCE, then each loss of ``runners.losses`` and its transcription in ``benchmarks.reference_losses``)
runs a block of consecutive forward + backward calls (~1 ms of BCE) per round, the blocks interleaved in a
random order each round so that machine noise hits every candidate alike; the table reports the median over
rounds as a ratio to BCE's median from the same rounds. Logits are N(-1, 2) (a classifier past its first
epochs: most negatives already below 0) and targets long-tailed (positive rate 0.3 for the head class down to
0.3/142 for the tail), the shape of CXR-LT. Timed on shared machines the ratios are noisy: rerun on a quiet
one for numbers to quote.

"ours" runs as ``LOSSWEEP_COMPILE`` says (default ``auto``: the fused, compiled kernels on CPU for
inputs of at least 32768 elements; see ``runners.losses._compiled``). For the losses that have a
fused kernel, "fused", "aot" and "eager" time the three paths whatever the setting (``LOSSWEEP_COMPILE=1``,
``aot`` and ``0``; "aot" differs from "ours" only below 32768 elements, where it runs the ahead-of-time
compiled kernel). Compiling happens in the warm-up, outside the timings.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import nn

from benchmarks.reference_losses import released
from runners.losses import available_losses, create_loss
from runners.losses._compiled import ENV_VAR
from runners.losses.base import MultiLabelLoss


def benchmarked_losses() -> list[str]:
    """The catalogue's losses that have a released transcription to time against (a plugin may have none)."""
    names = []
    for name in available_losses():
        try:
            released(name)
        except ValueError:
            continue
        names.append(name)
    return names


def make_inputs(rows: int, classes: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, classes, generator=gen) * 2 - 1
    rates = 0.3 * 142.0 ** (-torch.arange(classes, dtype=torch.float64) / max(classes - 1, 1))
    targets = (torch.rand(rows, classes, generator=gen, dtype=torch.float64) < rates).float()
    return logits.to(device).requires_grad_(True), targets.to(device)


class WithCompileSetting(nn.Module):
    """``loss`` called with ``LOSSWEEP_COMPILE=setting`` (costs ~2 us per call to set and restore)."""

    def __init__(self, loss: nn.Module, setting: str) -> None:
        super().__init__()
        self.loss = loss
        self.setting = setting

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        previous = os.environ.get(ENV_VAR)
        os.environ[ENV_VAR] = self.setting
        try:
            return self.loss(x, y)
        finally:
            if previous is None:
                del os.environ[ENV_VAR]
            else:
                os.environ[ENV_VAR] = previous


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_block(loss: nn.Module, x: torch.Tensor, y: torch.Tensor, calls: int, sync: Callable[[], None]) -> float:
    """Seconds per forward + backward, averaged over ``calls`` consecutive calls (as in a training loop)."""
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        x.grad = None
        loss(x, y).backward()
    sync()
    return (time.perf_counter() - start) / calls


def measure(
    rows: int, classes: int, device: torch.device, seconds: float, min_rounds: int, seed: int = 0
) -> dict[str, float]:
    """Median seconds per call for each candidate over rounds of interleaved blocks, in a random order per round."""
    x, y = make_inputs(rows, classes, device)
    candidates: dict[str, nn.Module] = {"BCEWithLogitsLoss": nn.BCEWithLogitsLoss(reduction="sum")}
    for name in benchmarked_losses():
        ours = cast(MultiLabelLoss, create_loss(name))  # every registered loss is one
        candidates[f"{name}/ours"] = ours
        candidates[f"{name}/released"] = released(name, **ours.params)
        if getattr(ours, "fused_kernel", None) is not None:
            candidates[f"{name}/fused"] = WithCompileSetting(create_loss(name), "1")
            candidates[f"{name}/aot"] = WithCompileSetting(create_loss(name), "aot")
            candidates[f"{name}/eager"] = WithCompileSetting(create_loss(name), "0")
    sync = _synchronizer(device)
    for loss in candidates.values():  # warm-up: allocator, scratch buffers, lazy initialisation
        time_block(loss, x, y, 3, sync)
    # Blocks of ~1 ms, so that timer resolution and Python loop overhead do not dominate small sizes.
    calls = max(1, min(200, int(1e-3 / time_block(candidates["BCEWithLogitsLoss"], x, y, 5, sync))))
    order = list(candidates)
    shuffler = random.Random(seed)
    times: dict[str, list[float]] = {key: [] for key in candidates}
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < min_rounds or time.perf_counter() < deadline:
        shuffler.shuffle(order)
        for key in order:
            times[key].append(time_block(candidates[key], x, y, calls, sync))
        rounds += 1
    medians = {key: statistics.median(v) for key, v in times.items()}
    medians["rounds"] = rounds
    return medians


def format_table(
    rows: Sequence[tuple[str, str, str, float, float, float | None, float | None, float | None, float, int]],
) -> str:
    header = (
        f"{'device':<7} {'size':>10} {'loss':<6} {'ours/BCE':>9} {'released/BCE':>13} {'speed-up':>9} "
        f"{'fused/BCE':>10} {'aot/BCE':>8} {'eager/BCE':>10} {'BCE ms':>8} {'rounds':>7}"
    )
    lines = [header, "-" * len(header)]
    for device, size, loss, ours, ref, fused, aot, eager, bce_ms, rounds in rows:
        fused_text, aot_text, eager_text = ("-" if v is None else f"{v:.2f}" for v in (fused, aot, eager))
        lines.append(
            f"{device:<7} {size:>10} {loss:<6} {ours:>9.2f} {ref:>13.2f} {ref / ours:>8.1f}x "
            f"{fused_text:>10} {aot_text:>8} {eager_text:>10} {bce_ms:>8.3f} {rounds:>7d}"
        )
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    try:
        rows, classes = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 4096x1000 (batch x classes), got {text!r}") from None
    if rows <= 0 or classes <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return rows, classes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.losses", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", nargs="+", type=parse_size, default=[(4096, 1000), (256, 26)], help="batch x classes"
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="time budget per device and size (default 4)")
    parser.add_argument("--min-rounds", type=int, default=7, help="rounds to run at least (default 7)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    table = []
    for device_name in devices:
        device = torch.device(device_name)
        for rows, classes in args.sizes:
            medians = measure(rows, classes, device, args.seconds, args.min_rounds)
            bce = medians["BCEWithLogitsLoss"]
            for name in benchmarked_losses():
                fused, aot, eager = (medians.get(f"{name}/{path}") for path in ("fused", "aot", "eager"))
                table.append(
                    (
                        device_name,
                        f"{rows}x{classes}",
                        name,
                        medians[f"{name}/ours"] / bce,
                        medians[f"{name}/released"] / bce,
                        None if fused is None else fused / bce,
                        None if aot is None else aot / bce,
                        None if eager is None else eager / bce,
                        bce * 1e3,
                        int(medians["rounds"]),
                    )
                )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {ENV_VAR}={os.environ.get(ENV_VAR, '')!r}; "
        "forward + backward, median ratio to BCEWithLogitsLoss(reduction='sum')"
    )
    print(format_table(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
