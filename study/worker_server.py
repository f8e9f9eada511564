"""The fork server worker processes start from: standard library only, so it can start first of all.

Why a module of its own: ``python -m study.run`` starts the server before its own imports (optuna,
sqlalchemy: ~0.6 s), and the server's imports (torch and its compiler stack, ~4 s) are the longest
stretch of a run's start-up; every fraction of a second it starts earlier, the first trial does too.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any

# What a worker imports before its first trial; the fork server imports it once, see worker_context.
# The last two are what a pack's first step loads: torch.optim's optimisers import dynamo when built,
# and the loss library loads through inductor (~2 s, once per worker otherwise). Never a module that
# asks CUDA anything on import (torch.utils.cpp_extension does): a forked worker could not use CUDA.
# Not scipy.stats (~0.8 s): the parent draws the design's rows for the workers (Design.sobol_rows).
WORKER_MODULES = [
    "study.worker",
    "runners.trial",
    "runners.packs",
    "runners.protocols.pack",
    "torch._dynamo",
    "torch._inductor.package",
]


def worker_context() -> Any:  # a multiprocessing context: ForkServerContext or SpawnContext
    """How worker processes start: forked from a fork server that has imported the worker's modules.

    Why: a spawned worker spent ~2 s importing torch and scipy before its first claim (~4 s with
    torch's compiler stack, before its first step), and the parent the same before starting it; the
    fork server (started by :func:`start_worker_server` as the run begins) imports them while the
    parent prepares the data, and each worker then starts in milliseconds. It is safe for CUDA: the
    server imports torch but never initialises CUDA, so every worker initialises its own. Where there
    is no fork server (Windows), workers are spawned.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("forkserver")


def start_worker_server() -> None:
    """Start the fork server now, in the background, so its imports overlap the parent's start-up;
    a no-op while it runs."""
    context = worker_context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        context.set_forkserver_preload(WORKER_MODULES)
        forkserver.ensure_running()


def stop_worker_server() -> None:
    """End the fork server at once, once the run's workers are gone.

    Why: left to itself it exits when the parent does, through a full interpreter shutdown with
    torch loaded (~1.5 s), and it holds the run's stdout and stderr until then, so a pipeline
    (``study.run ... | tee log``, a benchmark's captured output) waited that long after the summary.
    The stdlib has no public call for this; where its attribute is missing the server exits as usual.
    """
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if isinstance(pid, int):
        try:
            os.kill(pid, signal.SIGTERM)  # the server's default SIGTERM action: end without clean-up
        except OSError:
            pass
