"""``python -m study.run``: run (or resume) a hyperparameter-sensitivity study of one or more losses.

Each loss gets one Optuna study in the store; workers (one process per device slot, on one machine
or on every machine of a cluster sharing a PostgreSQL store) evaluate the points of a fixed design
until the study holds exactly ``--trials`` finished trials. See ``--help`` for every flag and
``study.design`` for how the budget is kept exact across workers.

This module must stay importable without torch (``--help`` is instant); torch is imported only to
enumerate GPUs, to prepare the data set once, and inside worker processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import multiprocessing
import os
import platform
import queue
import re
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from search_spaces import MODES, SearchSpace, add_option_flags, get_space, loss_names

from .config import STORE_FORMAT, StudyConfig, add_trial_arguments, setting_differences, trial_config_from_args
from .design import SAMPLERS, Design, Ledger, grid_levels
from .errors import UsageError, cli_entry
from .progress import Progress, Summary
from .storage import DEFAULT_STORAGE, ENV_VAR, open_storage, redact, resolve_url
from .trial_store import ledger_rows

PROG = "python -m study.run"
DEFAULT_REPORT = "lossweep-report.html"
MAX_RESTARTS = 3  # per device slot: restarts of a worker that died without reporting an error
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
            "study name (default: <loss>-<data>-<protocol>-<space mode>, e.g. ral-synthetic-linear-probe-full; "
            "with several losses the loss is appended to a given name)"
        ),
    )
    study.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="qmc",
        help=(
            "qmc: scrambled Sobol design; random: seeded uniform design; grid: full-factorial grid (--trials must "
            "be a grid size); tpe: Optuna's TPE (default: qmc)"
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
            "full: every loss hyperparameter; matched: only the ones ASL and RAL share; seeds: none, the "
            "seed-noise study (default: full)"
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
        "--workers", type=int, default=1, metavar="N", help="worker processes per device (default: 1)"
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
    output = parser.add_argument_group("output")
    output.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help=(
            f"write an HTML report of the studies run here (default: none; {DEFAULT_REPORT} when several losses "
            "are given)"
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
                    f"--devices {x}: this machine has {n_gpus} visible CUDA GPU(s); use "
                    f"cuda:0..cuda:{n_gpus - 1}, auto or cpu"
                    if n_gpus
                    else f"--devices {x}: no CUDA GPU is visible here; use cpu or auto"
                )
        if x == "mps" and not torch.backends.mps.is_available():
            raise UsageError("--devices mps: Apple's MPS backend is not available here; use cpu or auto")
    return ["cuda:0" if x == "cuda" else x for x in items]


def check_reachable(url: str) -> None:
    """Fail early on a store that cannot be reached, without creating a file, table or row."""
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        folder = Path(os.path.expanduser(str(parsed.database))).resolve().parent
        if not folder.is_dir():
            raise UsageError(
                f"cannot open the study store at {redact(url)}: directory {folder} does not exist; create it first"
            )
        return
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10}, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect():
            pass
    except Exception as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()
        text = reason[0] if reason else type(exc).__name__
        if parsed.password:
            text = text.replace(str(parsed.password), "***")
        raise UsageError(f"cannot open the study store at {redact(url)}: {text}") from None
    finally:
        engine.dispose()


@dataclass
class Plan:
    """One study to run: its name, configuration and search space."""

    name: str
    config: StudyConfig
    space: SearchSpace

    def attrs(self, prepared: Any) -> dict[str, Any]:
        """The study's user attributes (docs/store-format.md)."""
        config = self.config.to_dict()
        config["grid_levels"] = grid_levels(self.space, self.config.n_trials) if self.config.sampler == "grid" else None
        return {
            "lossweep": {"format": STORE_FORMAT},
            "loss": self.config.loss,
            "config": config,
            "search_space": self.space.to_dict(),
            "data_fingerprint": str(prepared.fingerprint),
            "class_names": list(prepared.class_names),
            "train_positives": [int(x) for x in prepared.train_positives],
            "data_source": prepared.dataset.record(),
            "versions": versions(),
        }


def versions() -> dict[str, str | None]:
    """Versions that produced the results; read from package metadata so torch is not imported."""

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "lossweep": version("lossweep"),
        "optuna": optuna.__version__,
        "torch": version("torch"),
        "timm": version("timm"),
        "python": platform.python_version(),
    }


def make_plans(args: argparse.Namespace) -> list[Plan]:
    losses = parse_losses(args.loss)
    if args.trials < 1:
        raise UsageError(f"--trials must be at least 1, got {args.trials}")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout}")
    if args.heartbeat_interval < 1 or args.grace_period <= args.heartbeat_interval:
        raise UsageError(
            "need --heartbeat-interval >= 1 and --grace-period > --heartbeat-interval, got "
            f"{args.heartbeat_interval} and {args.grace_period}"
        )
    if args.space is not None and not Path(args.space).is_file():
        raise UsageError(f"--space {args.space}: no such file")
    if args.study_name is not None and not args.study_name.strip():
        raise UsageError("--study-name is empty")
    trial = trial_config_from_args(args)
    plans = []
    for loss in losses:
        space = get_space(
            loss,
            args.space_mode,
            nuisance=args.nuisance,
            options=dict(args.space_options or ()),
            overrides=args.space,
        )
        config = StudyConfig(
            loss=loss,
            n_trials=args.trials,
            trial=trial,
            sampler=args.sampler,
            seed=args.seed,
            space_mode=args.space_mode,
            nuisance=args.nuisance,
            replicates=args.replicates,
            max_retries=args.max_retries,
            space_file=None if args.space is None else str(Path(args.space).resolve()),
        )
        Design(space, config.sampler, config.seed, config.n_trials)  # validates e.g. the grid budget
        if args.study_name is None:
            name = config.default_study_name()
        else:
            name = args.study_name.strip() + (f"-{loss}" if len(losses) > 1 else "")
        plans.append(Plan(name, config, space))
    return plans


# -- the store ------------------------------------------------------------------------------------


def check_existing(storage: optuna.storages.RDBStorage, plan: Plan, attrs: dict[str, Any], url: str) -> bool:
    """True when the study exists and matches; UsageError when it exists with other settings."""
    try:
        study_id = storage.get_study_id_from_name(plan.name)
    except KeyError:
        return False
    stored = storage.get_study_user_attrs(study_id)
    for _ in range(20):  # another machine may have just created it and be writing its attributes
        if "config" in stored:
            break
        time.sleep(0.5)
        stored = storage.get_study_user_attrs(study_id)
    if "lossweep" not in stored or "config" not in stored:
        raise UsageError(f"study {plan.name!r} in {redact(url)} was not made by lossweep; choose another --study-name")
    keys = ("config", "search_space", "data_fingerprint")
    diffs = setting_differences({k: stored.get(k) for k in keys}, {k: attrs[k] for k in keys})
    if diffs:
        raise UsageError(
            f"study {plan.name!r} in {redact(url)} was made with different settings: {'; '.join(diffs)}. "
            "Rerun with the stored settings to resume it, or pass another --study-name"
        )
    return True


def create_or_load(storage: optuna.storages.RDBStorage, plan: Plan, attrs: dict[str, Any], url: str) -> optuna.Study:
    """Create the study once, before any worker starts (concurrent table creation races, optuna #1092)."""
    if not check_existing(storage, plan, attrs, url):
        try:
            study = optuna.create_study(study_name=plan.name, storage=storage, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:  # another machine was faster
            check_existing(storage, plan, attrs, url)
        else:
            for key, value in attrs.items():
                study.set_user_attr(key, value)
            return study
    study = optuna.load_study(study_name=plan.name, storage=storage)
    stored_config = study.user_attrs["config"]
    if plan.config.n_trials > int(stored_config.get("n_trials", 0)):
        study.set_user_attr("config", {**stored_config, "n_trials": plan.config.n_trials})  # the budget grows
    return study


# -- running workers ------------------------------------------------------------------------------


def worker_slots(devices: Sequence[str], workers: int) -> list[str]:
    return [device for device in devices for _ in range(workers)]


def threads_per_worker(n_workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // n_workers)


class Runner:
    """Starts the workers of one study, relays their events to the progress display, handles signals."""

    def __init__(
        self,
        plan: Plan,
        url: str,
        storage: optuna.storages.RDBStorage,
        study: optuna.Study,
        slots: list[str],
        args: argparse.Namespace,
    ) -> None:
        self.plan, self.url, self.storage, self.study, self.args = plan, url, storage, study, args
        self.slots = slots
        self.study_id = storage.get_study_id_from_name(plan.name)
        self.context = multiprocessing.get_context("spawn")
        self.events = self.context.Queue()
        self.stop = self.context.Event()
        self.processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self.restarts = {slot: 0 for slot in range(len(slots))}
        self.fatal: dict[int, str] = {}
        self.running: dict[int, dict[str, Any]] = {}  # trial number -> start event, per live trial
        self.interrupted = False
        self.timed_out = False

    def ledger(self) -> Ledger:
        return Ledger.from_trials(
            ledger_rows(self.storage, self.study_id), self.plan.config.n_trials, self.plan.config.max_retries
        )

    def spec(self, slot: int) -> Any:
        from .worker import WorkerSpec

        trial = self.plan.config.trial
        threads = trial.num_threads or threads_per_worker(len(self.slots))
        trial = dataclasses.replace(trial, device=self.slots[slot], num_threads=threads)
        c = self.plan.config
        return WorkerSpec(
            slot=slot,
            storage_url=self.url,
            study_name=self.plan.name,
            loss=c.loss,
            space=self.plan.space.to_dict(),
            trial=trial.to_dict(),
            n_trials=c.n_trials,
            sampler=c.sampler,
            seed=c.seed,
            replicates=c.replicates,
            max_retries=c.max_retries,
            heartbeat_interval=self.args.heartbeat_interval,
            grace_period=self.args.grace_period,
        )

    def start(self, slot: int) -> None:
        from . import worker

        process = self.context.Process(
            target=worker.main,
            args=(self.spec(slot), self.events, self.stop),
            name=f"lossweep-worker-{slot}",
            daemon=False,
        )
        process.start()
        self.processes[slot] = process

    def run(self, progress: Progress) -> None:
        deadline = None if self.args.timeout is None else time.monotonic() + self.args.timeout
        for slot in range(len(self.slots)):
            self.start(slot)
        progress.log(
            f"{len(self.slots)} worker(s) on {', '.join(sorted(set(self.slots)))} -> study {self.plan.name!r} "
            f"in {redact(self.url)}"
        )
        while True:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                event = None
            if event is not None:
                self.handle(event, progress)
                continue
            if deadline is not None and not self.stop.is_set() and time.monotonic() > deadline:
                self.timed_out = True
                self.stop.set()
                progress.warn(f"--timeout {self.args.timeout:g}s reached: no new trials start; running ones finish")
            if not self.check_processes(progress):
                break
        self.drain(progress)

    def drain(self, progress: Progress) -> None:
        """Handle the events the last workers sent just before they exited."""
        while True:
            try:
                self.handle(self.events.get_nowait(), progress)
            except (queue.Empty, EOFError, OSError):
                return

    def check_processes(self, progress: Progress) -> bool:
        """Restart workers that died without an error report; False once none is alive."""
        for slot, process in list(self.processes.items()):
            if process.is_alive() or process.exitcode is None:
                continue
            del self.processes[slot]
            if process.exitcode == 0 or self.stop.is_set() or slot in self.fatal:
                continue
            code = process.exitcode
            why = f"signal {-code}" if code < 0 else f"exit code {code}"
            progress.warn(
                f"worker {slot} (pid {process.pid}) died ({why}); its trial is failed after --grace-period "
                f"{self.args.grace_period}s and retried"
            )
            ledger = self.ledger()
            if self.restarts[slot] < MAX_RESTARTS and (ledger.next_free() is not None or ledger.held_by_others()):
                self.restarts[slot] += 1
                self.start(slot)
        return bool(self.processes)

    def handle(self, event: dict[str, Any], progress: Progress) -> None:
        kind = event["event"]
        if kind == "start":
            self.running[event["number"]] = event
        elif kind == "finish":
            self.running.pop(event["number"], None)
            progress.trial_finished(event)
            if event.get("traceback") and event.get("status") == "failed":
                progress.log(event["traceback"].rstrip())
            ledger = self.ledger()
            progress.update(ledger.n_finished() + len(ledger.exhausted()))
        elif kind == "error":
            self.fatal[event["slot"]] = event["message"]
            progress.warn(f"worker {event['slot']} stopped: {event['message']}")
            progress.log(event.get("traceback", "").rstrip())

    def interrupt(self, progress: Progress) -> None:
        """Stop every worker, store their running trials as interrupted, never leave one RUNNING."""
        self.interrupted = True
        self.stop.set()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the clean-up
        try:
            progress.warn(
                "interrupted: stopping workers; running trials are stored as interrupted (rerun the same "
                "command to resume)"
            )
            for process in self.processes.values():
                if process.is_alive() and process.pid is not None:
                    try:
                        os.kill(process.pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + max(30.0, float(self.args.grace_period))
            while any(p.is_alive() for p in self.processes.values()) and time.monotonic() < deadline:
                try:
                    self.handle(self.events.get(timeout=0.2), progress)
                except queue.Empty:
                    pass
            for process in self.processes.values():
                if process.is_alive():
                    process.kill()
                    process.join(5)
            self.drain(progress)
            self.fail_leftovers()
        finally:
            signal.signal(signal.SIGINT, previous)

    def fail_leftovers(self) -> None:
        """Trials our workers started but did not finish (a worker killed during clean-up)."""
        from optuna.trial import TrialState

        study_id = self.storage.get_study_id_from_name(self.plan.name)
        for number in list(self.running):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
            if self.storage.get_trial(trial_id).state != TrialState.RUNNING:
                continue
            try:
                self.storage.set_trial_user_attr(trial_id, "status", "failed")
                self.storage.set_trial_user_attr(trial_id, "fail_reason", "interrupted")
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass


def run_plan(
    plan: Plan,
    url: str,
    storage: optuna.storages.RDBStorage,
    study: optuna.Study,
    slots: list[str],
    args: argparse.Namespace,
) -> tuple[Summary, str]:
    """Run one study to its budget; returns its summary and how it ended."""
    config = plan.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    ledger = Ledger.from_trials(study.get_trials(deepcopy=False), config.n_trials, config.max_retries)
    done = ledger.n_finished() + len(ledger.exhausted())
    best = max((t.value for t in ledger.finished.values() if t.value is not None), default=None)
    outcome = "complete"
    if ledger.next_free() is None and not ledger.held_by_others():
        print(
            f"{PROG}: study {plan.name!r} already holds {done} of {config.n_trials} trials; nothing to run",
            file=sys.stderr,
        )
    else:
        free = sum(
            1
            for k in range(config.n_trials)
            if k not in ledger.finished and k not in ledger.running and ledger.attempts[k] <= config.max_retries
        )
        slots = slots[: max(1, min(len(slots), free))]  # no idle processes for the last few trials
        runner = Runner(plan, url, storage, study, slots, args)
        progress = Progress(plan.name, config.n_trials, done, best, quiet=args.quiet)
        try:
            runner.run(progress)
        except KeyboardInterrupt:
            runner.interrupt(progress)
        finally:
            progress.close()
        if runner.interrupted:
            outcome = "interrupted"
        elif runner.timed_out:
            outcome = "timeout"
        elif runner.fatal and len(runner.fatal) == len(slots):
            outcome = "error: " + next(iter(runner.fatal.values()))
    summary = Summary.from_trials(plan.name, study.get_trials(deepcopy=False), config.n_trials, config.max_retries)
    if outcome == "complete" and summary.finished + len(summary.failed_indices) < config.n_trials:
        outcome = "incomplete"
    return summary, outcome


def build_report(url: str, studies: list[str], output: str) -> Path | None:
    """Write the HTML report of ``studies``; None (with a warning) when it cannot be written.

    The studies are stored by now, so a report that fails must not look like a failed study: a
    problem the user can fix (UsageError, e.g. an unwritable path) still ends with exit code 2,
    anything else is one warning line and the results stay in the store.
    """
    try:
        from reports.build import build_report as build
    except ImportError as exc:
        print(f"{PROG}: warning: no report written: reports are not available ({exc})", file=sys.stderr)
        return None
    try:
        return Path(build(url, studies, output))
    except UsageError:
        raise
    except Exception as exc:  # the studies are safe in the store; `python -m reports.build` can retry
        print(
            f"{PROG}: warning: no report written ({type(exc).__name__}: {exc}); the studies are in the store, "
            "run `python -m reports.build` to retry",
            file=sys.stderr,
        )
        return None


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # a scheduler's SIGTERM (preemption) stops as cleanly as Ctrl-C


@cli_entry(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return _main(args)
    except KeyboardInterrupt:  # before or between studies; inside one, Runner.interrupt cleans up
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    # Validate everything before touching the store.
    plans = make_plans(args)
    url = resolve_url(args.storage)
    devices = parse_devices(args.devices)
    slots = worker_slots(devices, args.workers)
    check_reachable(url)

    import runners  # torch: prepares (and caches) the data set and embeddings once, before workers start

    first = plans[0].config.trial
    prepared = runners.prepare(
        dataclasses.replace(first, device=devices[0], num_threads=first.num_threads or threads_per_worker(1)),
        progress=not args.quiet,
    )
    if not args.quiet:
        print(prepared.dataset.summary(), flush=True)

    storage = open_storage(url, heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period)
    attrs = {plan.name: plan.attrs(prepared) for plan in plans}
    for plan in plans:  # refuse a conflicting study before running any
        check_existing(storage, plan, attrs[plan.name], url)

    outcomes = []
    for plan in plans:
        study = create_or_load(storage, plan, attrs[plan.name], url)
        summary, outcome = run_plan(plan, url, storage, study, slots, args)
        outcomes.append(outcome)
        print(summary.render())
        print(f"{'store':<26}  {redact(url)}")
        if outcome == "interrupted":
            print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        if outcome.startswith("error"):
            print(f"{PROG}: {outcome}", file=sys.stderr)
            return 1
        if outcome in ("timeout", "incomplete"):
            print(
                f"{PROG}: study {plan.name!r} stopped with {summary.finished} of {plan.config.n_trials} trials "
                f"({outcome}); run the same command again to continue",
                file=sys.stderr,
            )
        print()

    report = args.report or (DEFAULT_REPORT if len(plans) > 1 else None)
    if report:
        path = build_report(url, [plan.name for plan in plans], report)
        if path is not None:
            print(f"{'report':<26}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
