"""Running one study: worker processes on the device slots, their events shown, signals handled.

The parent process never trains: it starts one worker process per slot (``study.worker``), relays
their events to the progress display, restarts a worker that died without reporting an error, and
on Ctrl-C / SIGTERM stops them all and makes sure no trial of theirs is left RUNNING. The store is
the only state the workers share, so several machines running the same command join one study.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import signal
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from .claims import INTERRUPTED, Ledger, fail_stale, ledger_rows, read_ledger
from .config import ExecutionConfig, available_cores
from .design import Design
from .logs import logger
from .planning import Plan
from .progress import Progress
from .storage import redact
from .summary import Summary
from .trial_store import write_result
from .worker_server import worker_context

PROG = "python -m study.run"
MAX_RESTARTS = 3  # per device slot: restarts of a worker that died without reporting an error
EVENT_POLL_S = 0.1  # how often the parent looks at its workers while no event comes (a worker's exit, the timeout)


def threads_per_worker(n_workers: int) -> int:
    return max(1, available_cores() // n_workers)


class Runner:
    """Starts the workers of one study, relays their events to the progress display, handles signals."""

    def __init__(
        self,
        plan: Plan,
        url: str,
        storage: optuna.storages.RDBStorage,
        study: optuna.Study,
        slots: list[str],
        execution: ExecutionConfig,
    ) -> None:
        self.plan, self.url, self.storage, self.study, self.execution = plan, url, storage, study, execution
        self.slots = slots
        self.study_id = storage.get_study_id_from_name(plan.name)
        c = plan.config
        self.sobol_rows = Design(plan.space, c.sampler, c.seed, c.n_trials).sobol_rows()  # once, for every worker
        self.context = worker_context()
        self.events = self.context.Queue()
        self.stop = self.context.Event()
        self.processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self.restarts = {slot: 0 for slot in range(len(slots))}
        self.fatal: dict[int, str] = {}
        self.running: dict[int, dict[str, Any]] = {}  # trial number -> start event, per live trial
        self.interrupted = False
        self.timed_out = False
        self.count_due = False  # finish events arrived since the bar last read the store

    def ledger(self) -> Ledger:
        return read_ledger(self.storage, self.study_id, self.plan.config.n_trials, self.plan.config.max_retries)

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
            heartbeat_interval=self.execution.heartbeat_interval,
            grace_period=self.execution.grace_period,
            pack_size=self.execution.pack_size,
            local_workers=len(self.slots),
            sobol_rows=self.sobol_rows,
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
        logger().debug(f"worker {slot} started on {self.slots[slot]} (pid {process.pid})")

    def run(self, progress: Progress) -> None:
        deadline = None if self.execution.timeout is None else time.monotonic() + self.execution.timeout
        for slot in range(len(self.slots)):
            self.start(slot)
        progress.log(
            f"{len(self.slots)} worker(s) on {', '.join(sorted(set(self.slots)))} "
            f"-> study {self.plan.name!r} in {redact(self.url)}"
        )
        while True:
            try:  # no wait while finished trials are not yet counted: a pack's finish events come together
                event = self.events.get(timeout=0.0 if self.count_due else EVENT_POLL_S)
            except queue.Empty:
                event = None
            if event is not None:
                self.handle(event, progress)
                continue
            self.count_finished(progress)
            if deadline is not None and not self.stop.is_set() and time.monotonic() > deadline:
                self.timed_out = True
                self.stop.set()
                progress.warn(
                    f"--timeout {self.execution.timeout:g}s reached: no new trials start; running ones finish"
                )
            if not self.check_processes(progress):
                break
        self.drain(progress)

    def drain(self, progress: Progress) -> None:
        """Handle the events the last workers sent just before they exited."""
        while True:
            try:
                self.handle(self.events.get_nowait(), progress)
            except (queue.Empty, EOFError, OSError):
                self.count_finished(progress)
                return

    def count_finished(self, progress: Progress) -> None:
        """Advance the bar to the store's count of finished trials, once per burst of finish events.

        Once nothing is left to run or running anywhere, ``stop`` tells the workers still waiting for
        a retry to exit now rather than at their next look at the store.
        """
        if self.count_due:
            self.count_due = False
            ledger = self.ledger()
            progress.update(ledger.n_finished() + len(ledger.exhausted()))
            if ledger.next_free() is None and not ledger.held_by_others():
                self.stop.set()

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
                f"worker {slot} (pid {process.pid}) died ({why}); its trial is failed "
                f"after --grace-period {self.execution.grace_period}s and retried"
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
            self.count_due = True
        elif kind == "pack":  # its trials' finish events follow: the bar then advances by the pack
            numbers = event["numbers"]
            progress.log(
                f"pack of {len(numbers)} trials (#{min(numbers)}-#{max(numbers)}) on worker {event['slot']} "
                f"in {event['seconds']:.1f}s ({event['seconds'] / len(numbers):.2f}s per trial)"
            )
        elif kind == "error":  # the worker exits with code 1 next; check_processes does not restart it
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
                "interrupted: stopping workers; running trials are stored "
                "as interrupted (rerun the same command to resume)"
            )
            for process in self.processes.values():
                if process.is_alive() and process.pid is not None:
                    try:
                        os.kill(process.pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + max(30.0, float(self.execution.grace_period))
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
        """Trials our workers started but did not finish (a worker killed during clean-up).

        One atomic write each; a trial its worker did finish is left as it is (write_result refuses).
        """
        for number in list(self.running):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
            write_result(
                self.storage, trial_id, {"status": "failed", "fail_reason": INTERRUPTED}, TrialState.FAIL, None
            )


def run_plan(
    plan: Plan,
    url: str,
    storage: optuna.storages.RDBStorage,
    study: optuna.Study,
    slots: list[str],
    execution: ExecutionConfig,
) -> tuple[Summary, str]:
    """Run one study to its budget; returns its summary and how it ended."""
    config = plan.config
    fail_stale(study)
    study_id = storage.get_study_id_from_name(plan.name)
    ledger = Ledger.from_trials(ledger_rows(storage, study_id, values=True), config.n_trials, config.max_retries)
    done = ledger.n_finished() + len(ledger.exhausted())
    best = max((t.value for t in ledger.finished.values() if t.value is not None), default=None)
    outcome = "complete"
    if ledger.next_free() is None and not ledger.held_by_others():
        logger().warning(
            f"{PROG}: study {plan.name!r} already holds {done} of {config.n_trials} trials; nothing to run"
        )
    else:
        free = len(ledger.free())
        slots = slots[: max(1, min(len(slots), free))]  # no idle processes for the last few trials
        runner = Runner(plan, url, storage, study, slots, execution)
        progress = Progress(plan.name, config.n_trials, done, best, quiet=execution.quiet)
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
    summary = Summary.read(storage, plan.name, config.n_trials, config.max_retries)
    if outcome == "complete" and summary.finished + len(summary.failed_indices) < config.n_trials:
        outcome = "incomplete"
    return summary, outcome
