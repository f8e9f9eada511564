"""One worker process: claim a design index, train it, store the result, until the budget is spent.

Workers are started with the ``spawn`` method (CUDA cannot be forked) and import ``runners``, and
with it torch, only here. They report to the parent through a queue of plain dicts (the parent
draws the progress bar and prints the log lines); the store itself is the only shared state, so the
same loop runs unchanged on every machine of a cluster that shares a PostgreSQL study.

Fault tolerance:

* every RUNNING trial has a heartbeat thread; a worker killed outright (SIGKILL, OOM killer, lost
  node) leaves a trial whose heartbeat stops, which any worker's next claim fails as stale after
  the grace period, freeing its design index for a retry with the same parameters;
* SIGINT / SIGTERM interrupt the running trial, which is stored as FAIL with
  ``fail_reason == "interrupted"`` (not counted against the retry bound), and the worker exits;
* an exception inside a trial is stored as FAIL with its reason and retried up to ``max_retries``
  times; a diverged trial is a result (FAIL with ``status == "diverged"``) and is never retried.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from runners.config import TrialConfig
from runners.result import TrialResult
from search_spaces import SearchSpace

from .design import DESIGN_INDEX_ATTR, INTERRUPTED, Design, Ledger, claim_lock, trial_seed
from .trial_store import fail_orphans, ledger_rows, write_result

WORKER_ATTR = "lossweep:worker"  # system attribute: host:pid of the process that ran the trial


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs; plain values, so it pickles into a spawned process."""

    slot: int
    storage_url: str
    study_name: str
    loss: str
    space: dict[str, Any]  # SearchSpace.to_dict()
    trial: dict[str, Any]  # TrialConfig.to_dict(), with this slot's device and thread count
    n_trials: int
    sampler: str
    seed: int
    replicates: int
    max_retries: int
    heartbeat_interval: int
    grace_period: int


class Heartbeat:
    """Records a trial's heartbeat every ``interval`` seconds from a daemon thread.

    Hand-written because Optuna beats only inside ``Study.optimize``; lossweep drives trials with
    its own claim loop.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int, interval: float) -> None:
        self._storage, self._trial_id, self._interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception:  # a transient database error must not kill the trial; the next beat retries
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Claim:
    trial_id: int
    number: int
    design_index: int
    params: dict[str, float]
    seed: int


class Worker:
    def __init__(self, spec: WorkerSpec, events: Any, stop: Any) -> None:
        from .storage import open_storage

        self.spec = spec
        self.events = events
        self.stop = stop
        self.space = SearchSpace.from_dict(spec.space)
        self.config = TrialConfig.from_dict(spec.trial)
        self.design = Design(self.space, spec.sampler, spec.seed, spec.n_trials)
        self.storage = open_storage(
            spec.storage_url, heartbeat_interval=spec.heartbeat_interval, grace_period=spec.grace_period
        )
        self.study = optuna.load_study(study_name=spec.study_name, storage=self.storage, sampler=self._sampler())
        self.study_id = self.storage.get_study_id_from_name(spec.study_name)
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self._in_trial = False
        self._interrupted = False

    def _sampler(self) -> optuna.samplers.BaseSampler:
        # Only 'tpe' asks Optuna for points; the other samplers' points come from the Design. Each
        # process seeds its TPE differently so parallel workers do not propose the same point.
        return optuna.samplers.TPESampler(
            seed=(self.spec.seed * 1000 + self.spec.slot + os.getpid()) % 2**32, n_startup_trials=0, constant_liar=True
        )

    # -- signals -------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            if self._interrupted:
                return  # the first signal already asked us to stop; finish storing the trial
            self._interrupted = True
            if self._in_trial:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    def should_stop(self) -> bool:
        parent = multiprocessing.parent_process()
        return self._interrupted or self.stop.is_set() or (parent is not None and not parent.is_alive())

    # -- claiming ------------------------------------------------------------------------------
    def claim(self) -> Claim | Ledger:
        """The next free design index as a new RUNNING trial, or the ledger when none is free."""
        with claim_lock(self.storage, self.spec.study_name):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
            fail_orphans(self.storage, self.study_id)
            ledger = Ledger.from_trials(
                ledger_rows(self.storage, self.study_id), self.spec.n_trials, self.spec.max_retries
            )
            k = ledger.next_free()
            if k is None:
                return ledger
            params = self.design.point(k)
            if params is None and k in ledger.previous:  # tpe retry: same parameters as the failed attempt
                failed = self.storage.get_trial(
                    self.storage.get_trial_id_from_study_id_trial_number(self.study_id, ledger.previous[k].number)
                )
                params = dict(failed.params) or None
            system_attrs = {WORKER_ATTR: self.identity}
            if params is None:
                trial = self.study.ask(self.space.distributions())
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
                self.storage.set_trial_user_attr(trial_id, DESIGN_INDEX_ATTR, k)
                self.storage.set_trial_system_attr(trial_id, WORKER_ATTR, self.identity)
                number, params = trial.number, dict(trial.params)
            else:
                distributions = self.space.distributions()
                template = FrozenTrial(
                    number=-1,
                    state=TrialState.RUNNING,
                    value=None,
                    datetime_start=datetime.now(),
                    datetime_complete=None,
                    params=params,
                    distributions={name: distributions[name] for name in params},
                    user_attrs={DESIGN_INDEX_ATTR: k},
                    system_attrs=system_attrs,
                    intermediate_values={},
                    trial_id=-1,
                )
                trial_id = self.storage.create_new_trial(self.study_id, template)
                number = self.storage.get_trial_number_from_id(trial_id)
            # The first heartbeat makes a killed worker's trial detectable as stale (Optuna never
            # fails a RUNNING trial that has no heartbeat), so it is written before the lock opens.
            self.storage.record_heartbeat(trial_id)
        return Claim(trial_id, number, k, params, trial_seed(self.space, self.spec.seed, k))

    # -- running -------------------------------------------------------------------------------
    def run(self) -> None:
        import runners  # torch: only in worker processes

        # Short: a waiting worker only re-checks whether a held index failed; the check is cheap, and
        # a long sleep would keep the study open after its last trial finished.
        poll = max(0.2, min(1.0, self.spec.grace_period / 4))
        while not self.should_stop():
            claim = self.claim()
            if isinstance(claim, Ledger):
                if not claim.held_by_others():
                    break  # every index is finished or exhausted
                time.sleep(poll)  # a held index may still fail (or go stale) and need a retry
                continue
            self.execute(runners, claim)

    def execute(self, runners: Any, claim: Claim) -> None:
        self.events.put(
            {
                "event": "start",
                "slot": self.spec.slot,
                "number": claim.number,
                "design_index": claim.design_index,
                "params": claim.params,
            }
        )
        config = self.config
        overrides: dict[str, Any] = self.space.train_overrides(claim.params)
        if overrides:
            config = dataclasses.replace(config, train=dataclasses.replace(config.train, **overrides))
        details = None
        with Heartbeat(self.storage, claim.trial_id, self.spec.heartbeat_interval):
            started = time.perf_counter()
            self._in_trial = True
            try:
                if self._interrupted:  # a signal arrived while claiming
                    raise KeyboardInterrupt
                result = runners.run_trial(
                    config,
                    self.spec.loss,
                    self.space.loss_params(claim.params),
                    claim.seed,
                    replicates=self.spec.replicates,
                )
            except KeyboardInterrupt:
                self._interrupted = True
                result = TrialResult(status="failed", fail_reason=INTERRUPTED, seeds=[claim.seed])
            except Exception as exc:  # an error in one configuration must not end the study
                details = traceback.format_exc()
                result = TrialResult(status="failed", fail_reason=f"{type(exc).__name__}: {exc}", seeds=[claim.seed])
            finally:
                self._in_trial = False
            if not result.seconds:
                result.seconds = time.perf_counter() - started
            stored = self.finish(claim, result)
        self.events.put(
            {
                "event": "finish",
                "slot": self.spec.slot,
                "number": claim.number,
                "design_index": claim.design_index,
                "params": claim.params,
                "status": result.status,
                "value": result.value,
                "seconds": result.seconds,
                "fail_reason": result.fail_reason if stored else "failed as stale by another worker; result dropped",
                "traceback": details,
            }
        )

    def finish(self, claim: Claim, result: TrialResult) -> bool:
        """Store the result in one transaction; False when another worker already failed this trial as stale."""
        complete = result.status == "complete" and result.value is not None
        state = TrialState.COMPLETE if complete else TrialState.FAIL
        return write_result(
            self.storage,
            claim.trial_id,
            result.user_attrs(),
            state,
            float(result.value) if complete else None,  # type: ignore[arg-type]  # complete: a value
        )


def main(spec: WorkerSpec, events: Any, stop: Any) -> None:
    """Entry point of a spawned worker process."""
    worker = None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        worker = Worker(spec, events, stop)
        worker.install_signal_handlers()
        if worker.config.num_threads:
            import torch

            torch.set_num_threads(worker.config.num_threads)
        worker.run()
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # report, then die with a non-zero code so the parent knows
        events.put(
            {
                "event": "error",
                "slot": spec.slot,
                "message": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        )
        raise SystemExit(1) from exc
    events.put({"event": "exit", "slot": spec.slot, "interrupted": bool(worker and worker._interrupted)})
