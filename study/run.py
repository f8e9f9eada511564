"""``python -m study.run``: run (or resume) a hyperparameter-sensitivity study of one or more losses.

Each loss gets one Optuna study in the store; workers (one process per device slot, on one machine
or on every machine of a cluster sharing a PostgreSQL store) evaluate the points of a fixed design
until the study holds exactly ``--trials`` finished trials. See ``--help`` for every flag and
``study.claims`` for how the budget is kept exact across workers.

This module is the boundary: it turns the arguments into a :class:`study.config.RunOptions` and hands
on only that -- to ``study.planning`` (one plan and study per loss), ``study.runner`` (the worker
processes) and ``study.summary`` (the closing table). It must stay importable without torch (``--help``
is instant); torch is imported only to enumerate GPUs, to prepare the data set once, and in workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .worker_server import start_worker_server, stop_worker_server

if __name__ == "__main__":
    # First of all, before this module's own imports (~0.6 s): the fork server's imports (~4 s) are
    # the longest stretch of a run's start-up, and they overlap everything the parent does next.
    # main() stops it on every way out (--help and a user error included).
    start_worker_server()

import optuna

from search_spaces import MODES, add_option_flags, loss_names

from .config import ExecutionConfig, RunOptions, add_trial_arguments, trial_config_from_args
from .design import SAMPLERS
from .errors import ArgumentParser, UsageError, cli_entry
from .logs import logger
from .planning import Plan, check_existing, create_or_load, make_plans
from .progress import is_terminal
from .runner import PROG, run_plan, threads_per_worker
from .storage import DEFAULT_STORAGE, ENV_VAR, check_reachable, open_storage, redact, resolve_url

DEFAULT_REPORT = "lossweep-report.html"
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Run a hyperparameter-sensitivity study: sweep a loss's hyperparameters with a space-filling design,
train one classifier per point, and store each trial's validation mAP (and much more) in an Optuna
store that `python -m reports.build`, `python -m study.dashboard` and `analysis` read.
"""

EPILOG = f"""\
design and seeds:
  qmc (the default) evaluates a scrambled Sobol design: even coverage of the space, which a
  sensitivity study needs (TPE concentrates on good regions and would understate the spread).
  Point k of the qmc, random and grid designs depends only on (--seed, k), so any number of
  workers evaluates the same points. When the space sweeps at least one parameter every trial
  trains with --seed (common random numbers: spread comes from the hyperparameters alone); when it
  sweeps none (bce, or --space-mode seeds) trial k uses seed + k and the study measures seed noise.

resume and budget:
  Running the same command again continues the study up to --trials finished trials (COMPLETE or
  diverged); failed trials are retried with the same parameters (at most --max-retries times per
  point). --trials may grow on resume; any other changed setting is refused.

workers and clusters:
  --devices cuda:0,cuda:1 --workers 2 runs four worker processes. On a cluster run the same command
  on every machine with a shared --storage postgresql://user:password@host/db: they join one study.
  A killed worker's trial is failed after --grace-period seconds without a heartbeat and retried;
  Ctrl-C stores running trials as interrupted and a rerun resumes.

storage: --storage, else ${ENV_VAR}, else {DEFAULT_STORAGE} (in the working directory).
"""


def _count_or_auto(text: str) -> int | None:
    """``--pack-size`` and ``--workers``: a positive integer, or ``auto`` (None)."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    study = parser.add_argument_group("study")
    study.add_argument(
        "--loss",
        required=True,
        help="loss to study, or a comma list run one after the other into separate studies; "
        f"one of {', '.join(loss_names())}",
    )
    study.add_argument(
        "--trials",
        type=int,
        required=True,
        metavar="N",
        help="finished trials the study should hold (a rerun continues up to N)",
    )
    study.add_argument(
        "--storage", default=None, metavar="URL", help=f"Optuna store (default: ${ENV_VAR}, else {DEFAULT_STORAGE})"
    )
    study.add_argument(
        "--study-name",
        default=None,
        metavar="NAME",
        help=(
            "study name (default: <loss>-<data>-<protocol>-<space mode>, e.g. "
            "ral-synthetic-linear-probe-full; with several losses the loss is appended to a given name)"
        ),
    )
    study.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="qmc",
        help=(
            "qmc: scrambled Sobol design; random: seeded uniform design; grid: full-factorial "
            "grid (--trials must be a grid size); tpe: Optuna's TPE (default: qmc)"
        ),
    )
    study.add_argument("--seed", type=int, default=0, help="seed of the design and of training (default: 0)")
    study.add_argument(
        "--replicates", type=int, default=1, metavar="R", help="training runs per trial, averaged (default: 1)"
    )
    study.add_argument(
        "--max-retries",
        type=int,
        default=2,
        metavar="K",
        help="retries of a point whose trial raised an error or lost its worker (default: 2)",
    )
    space = parser.add_argument_group("search space")
    space.add_argument(
        "--space",
        default=None,
        metavar="FILE",
        help="TOML file overriding ranges, scales and defaults, or fixing parameters (default: none)",
    )
    space.add_argument(
        "--space-mode",
        choices=MODES,
        default="full",
        help=(
            "full: every loss hyperparameter; matched: only the ones ASL and "
            "RAL share; seeds: none, the seed-noise study (default: full)"
        ),
    )
    space.add_argument("--nuisance", action="store_true", help="also sweep lr and weight_decay (default: off)")
    add_option_flags(space)
    execution = parser.add_argument_group("execution")
    execution.add_argument(
        "--devices",
        default="auto",
        help="comma list of cpu, cuda, cuda:N, mps; auto = every visible GPU, or cpu when none (default: auto)",
    )
    execution.add_argument(
        "--workers",
        type=_count_or_auto,
        default=None,
        metavar="N|auto",
        help="worker processes per device; auto = one per GPU, and one per CPU core (each with one thread, "
        "or --num-threads) on cpu, where one-threaded workers side by side outrun one worker with every "
        "thread; one in all for tpe, which proposes each point from the results before it (default: auto)",
    )
    execution.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no new trial after this many seconds; running trials finish (default: none)",
    )
    execution.add_argument(
        "--heartbeat-interval",
        type=int,
        default=10,
        metavar="SECONDS",
        help="seconds between a running trial's heartbeats (default: 10)",
    )
    execution.add_argument(
        "--grace-period",
        type=int,
        default=60,
        metavar="SECONDS",
        help="a running trial without heartbeat for this long is failed and retried (default: 60)",
    )
    execution.add_argument(
        "--pack-size",
        type=_count_or_auto,
        default=None,
        metavar="K|auto",
        help="linear-probe trials claimed and trained together as one pack of K heads (1 = one trial at a "
        "time); auto = the measured size on CPU, as many remaining trials as fit in memory on CUDA; finetune "
        "and tpe always run one at a time; results do not depend on it (default: auto)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help=(
            "write an HTML report of the studies run here (default: "
            f"none; {DEFAULT_REPORT} when several losses are given)"
        ),
    )
    output.add_argument(
        "--quiet", action="store_true", help="no progress bar or per-trial lines, only warnings and the summary"
    )
    add_trial_arguments(parser)
    return parser


# -- validation -----------------------------------------------------------------------------------


def parse_losses(text: str) -> list[str]:
    losses = [x.strip().lower() for x in text.split(",") if x.strip()]
    known = loss_names()
    if not losses:
        raise UsageError("--loss is empty; give one of " + ", ".join(known))
    unknown = [x for x in losses if x not in known]
    if unknown:
        raise UsageError(f"unknown loss {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")
    if len(set(losses)) != len(losses):
        raise UsageError(f"--loss names a loss twice: {text}")
    return losses


_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def parse_devices(text: str) -> list[str]:
    """The device of each worker group; ``auto`` is every visible GPU, else cpu."""
    items = [x.strip().lower() for x in text.split(",") if x.strip()]
    if not items:
        raise UsageError("--devices is empty; give e.g. cpu, cuda:0,cuda:1 or auto")
    bad = [x for x in items if x != "auto" and not _DEVICE.match(x)]
    if bad:
        raise UsageError(f"--devices: {', '.join(map(repr, bad))} is not a device; use cpu, cuda, cuda:N, mps or auto")
    if "auto" in items and len(items) > 1:
        raise UsageError("--devices auto cannot be combined with other devices")
    if len(set(items)) != len(items):
        raise UsageError(f"--devices names a device twice: {text}")
    wants_gpu = items == ["auto"] or any(x.startswith("cuda") or x == "mps" for x in items)
    if not wants_gpu:
        return items
    import torch  # only here and in workers; `--help` and `import study.run` stay torch-free

    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if items == ["auto"]:
        return [f"cuda:{i}" for i in range(n_gpus)] or ["cpu"]
    for x in items:
        if x.startswith("cuda"):
            index = int(x.split(":")[1]) if ":" in x else 0
            if index >= n_gpus:
                raise UsageError(
                    f"--devices {x}: this machine has {n_gpus} visible CUDA "
                    f"GPU(s); use cuda:0..cuda:{n_gpus - 1}, auto or cpu"
                    if n_gpus
                    else f"--devices {x}: no CUDA GPU is visible here; use cpu or auto"
                )
        if x == "mps" and not torch.backends.mps.is_available():
            raise UsageError("--devices mps: Apple's MPS backend is not available here; use cpu or auto")
    return ["cuda:0" if x == "cuda" else x for x in items]


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The typed, validated run the arguments describe; UsageError / ValueError name the flag to fix."""
    losses = parse_losses(args.loss)
    if args.trials < 1:
        raise UsageError(f"--trials must be at least 1, got {args.trials}")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout}")
    if args.heartbeat_interval < 1 or args.grace_period <= args.heartbeat_interval:
        raise UsageError(
            "need --heartbeat-interval >= 1 and --grace-period > --heartbeat-interval, "
            f"got {args.heartbeat_interval} and {args.grace_period}"
        )
    if args.space is not None and not Path(args.space).is_file():
        raise UsageError(f"--space {args.space}: no such file")
    if args.study_name is not None and not args.study_name.strip():
        raise UsageError("--study-name is empty")
    trial = trial_config_from_args(args)
    return RunOptions(
        losses=tuple(losses),
        n_trials=args.trials,
        storage_url=resolve_url(args.storage),
        trial=trial,
        execution=ExecutionConfig(
            devices=tuple(parse_devices(args.devices)),
            workers=1 if args.workers is None and args.sampler == "tpe" else args.workers,
            timeout=args.timeout,
            heartbeat_interval=args.heartbeat_interval,
            grace_period=args.grace_period,
            quiet=args.quiet,
            pack_size=args.pack_size,
        ),
        study_name=None if args.study_name is None else args.study_name.strip(),
        sampler=args.sampler,
        seed=args.seed,
        replicates=args.replicates,
        max_retries=args.max_retries,
        space_file=args.space,
        space_mode=args.space_mode,
        nuisance=args.nuisance,
        space_options=dict(args.space_options or ()),
        report=args.report,
    )


def build_report(url: str, studies: list[str], output: str) -> Path | None:
    """Write the HTML report of ``studies``; None (with a warning) when it cannot be written.

    The studies are stored by now, so a report that fails must not look like a failed study: a
    problem the user can fix (UsageError, e.g. an unwritable path) still ends with exit code 2,
    anything else is one warning line and the results stay in the store.
    """
    try:
        from reports.build import build_report as build
    except ImportError as exc:
        logger().warning(f"{PROG}: warning: no report written: reports are not available ({exc})")
        return None
    try:
        return Path(build(url, studies, output))
    except UsageError:
        raise
    except Exception as exc:  # the studies are safe in the store; `python -m reports.build` can retry
        logger().warning(
            f"{PROG}: warning: no report written ({type(exc).__name__}: {exc}); "
            "the studies are in the store, run `python -m reports.build` to retry"
        )
        return None


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # a scheduler's SIGTERM (preemption) stops as cleanly as Ctrl-C


@cli_entry(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        start_worker_server()  # when not started on import (main() called in-process); a no-op otherwise
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        try:
            return run(options_from_args(args))
        except KeyboardInterrupt:  # before or between studies; inside one, Runner.interrupt cleans up
            logger().warning(f"{PROG}: interrupted; run the same command again to resume")
            return EXIT_INTERRUPTED
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        stop_worker_server()  # every worker has exited: run_plan waits for them


def run(options: RunOptions) -> int:
    """Run every study of ``options``; the exit code (0, 1 a worker error, 130 interrupted)."""
    # Validate everything before touching the store.
    plans = make_plans(options)
    url, execution = options.storage_url, options.execution
    check_reachable(url)
    start_worker_server()  # started by main() already; here for callers of run(); a no-op when running

    import runners  # torch: prepares (and caches) the data set and embeddings once, before workers start

    first = plans[0].config.trial
    prepared = runners.prepare(
        dataclasses.replace(first, device=execution.devices[0], num_threads=first.num_threads or threads_per_worker(1)),
        progress=not execution.quiet and is_terminal(sys.stderr),
    )
    if not execution.quiet:
        print(prepared.dataset.summary(), flush=True)

    storage = open_storage(url, heartbeat_interval=execution.heartbeat_interval, grace_period=execution.grace_period)
    try:
        return _run_plans(options, plans, prepared, storage)
    finally:
        storage.engine.dispose()  # closed now, not at exit: SQLite's last connection to close folds the WAL back


def _run_plans(options: RunOptions, plans: list[Plan], prepared: Any, storage: optuna.storages.RDBStorage) -> int:
    """Run the study of each plan in the open store: the exit code, as :func:`run`."""
    url, execution = options.storage_url, options.execution
    attrs = {plan.name: plan.attrs(prepared) for plan in plans}
    for plan in plans:  # refuse a conflicting study before running any
        check_existing(storage, plan, attrs[plan.name], url)

    for plan in plans:
        study = create_or_load(storage, plan, attrs[plan.name], url)
        slots = execution.slots(plan.config.trial.num_threads, prepared.worker_memory_bytes())
        summary, outcome = run_plan(plan, url, storage, study, slots, execution)
        print(summary.render())
        print(f"{'store':<26}  {redact(url)}")
        if outcome == "interrupted":
            logger().warning(f"{PROG}: interrupted; run the same command again to resume")
            return EXIT_INTERRUPTED
        if outcome.startswith("error"):
            logger().error(f"{PROG}: {outcome}")
            return 1
        if outcome in ("timeout", "incomplete"):
            logger().warning(
                f"{PROG}: study {plan.name!r} stopped with {summary.finished} of "
                f"{plan.config.n_trials} trials ({outcome}); run the same command again to continue"
            )
        print()

    report = options.report or (DEFAULT_REPORT if len(plans) > 1 else None)
    if report:
        path = build_report(url, [plan.name for plan in plans], report)
        if path is not None:
            print(f"{'report':<26}  {path}")
    return 0


if __name__ == "__main__":
    code = main()
    # Every store is closed by now. The interpreter's own clean-up walks every object torch and optuna
    # made, several times (~1 s, measured); one collection and a freeze leave it a single pass (~0.4 s).
    gc.collect()
    gc.freeze()
    sys.exit(code)
