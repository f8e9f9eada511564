"""One worker process: claim a design index, train it, store the result, until the budget is spent.

Workers are forked from a fork server that never initialises CUDA (``study.worker_server.worker_context``;
spawned where there is none) and import ``runners``, and with it torch, only here. They report to
the parent through a queue of plain dicts (the parent draws the progress bar and prints the log
lines); the store itself is the only shared state, so the same loop runs
unchanged on every machine of a cluster that shares a PostgreSQL study.

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

import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from runners.config import TrialConfig
from runners.result import TrialResult
from search_spaces import SearchSpace

from .claims import INTERRUPTED, Claim, Claimer, Ledger
from .design import Design, shares_seed
from .trial_store import record_heartbeats, write_results

# Test-only hook (tests/study): a folder; a trial of design index k then waits, before training,
# until the file ``open-k`` or ``open-all`` exists there, so a test can signal or kill a worker while
# its trial runs however fast or slow the machine is. Never set it outside the test suite.
TEST_GATE_ENV = "LOSSWEEP_TEST_TRIAL_GATE"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs; plain values, so it pickles into a new process."""

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
    pack_size: int | None = 1  # trials claimed and trained together; None: auto (runners.packs.auto_pack_size)
    local_workers: int = 1  # workers of this run on this machine: an auto pack takes at most its share
    sobol_rows: Any = None  # the qmc design's rows as the parent drew them (Design.sobol_rows); None: draw them


class Heartbeat:
    """Records the heartbeat of every trial of a pack every ``interval`` seconds, from one daemon thread,
    in one statement.

    Hand-written because Optuna beats only inside ``Study.optimize``; lossweep drives trials with
    its own claim loop.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, trial_ids: int | list[int], interval: float) -> None:
        self._storage, self._interval = storage, interval
        self._trial_ids = [trial_ids] if isinstance(trial_ids, int) else list(trial_ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self._trial_ids[0]}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                record_heartbeats(self._storage, self._trial_ids)
            except Exception:  # a transient database error must not kill the trial; the next beat retries
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    def __init__(self, spec: WorkerSpec, events: Any, stop: Any) -> None:
        from .storage import open_storage

        self.spec = spec
        self.events = events
        self.stop = stop
        self.space = SearchSpace.from_dict(spec.space)
        self.config = TrialConfig.from_dict(spec.trial)
        self.storage = open_storage(
            spec.storage_url, heartbeat_interval=spec.heartbeat_interval, grace_period=spec.grace_period
        )
        self.study = optuna.load_study(study_name=spec.study_name, storage=self.storage, sampler=self._sampler())
        self.claimer = Claimer(
            self.storage,
            self.study,
            Design(self.space, spec.sampler, spec.seed, spec.n_trials, sobol=spec.sobol_rows),
            max_retries=spec.max_retries,
            identity=f"{socket.gethostname()}:{os.getpid()}",
        )
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

    # -- running -------------------------------------------------------------------------------
    def run(self) -> None:
        import runners  # torch: only in worker processes

        # Short: a waiting worker only re-checks whether a held index failed; the check is cheap. The
        # parent sets ``stop`` once nothing is left to run, which ends the wait at once.
        poll = max(0.2, min(1.0, self.spec.grace_period / 4))
        while not self.should_stop():
            claims = self.claimer.claim_pack(self.pack_size(runners))
            if isinstance(claims, Ledger):
                if not claims.held_by_others():
                    break  # every index is finished or exhausted
                self.stop.wait(poll)  # a held index may still fail (or go stale) and need a retry
                continue
            self.execute(runners, claims)

    def pack_size(self, runners: Any) -> int:
        """How many indices the next claim takes: ``--pack-size``, or the auto size for what is left.

        One at a time for finetune (a whole network per trial) and for ``tpe``, which proposes each
        point from the results before it.
        """
        if self.config.protocol != "linear-probe" or self.spec.sampler == "tpe":
            return 1
        if self.spec.pack_size is not None:
            return self.spec.pack_size
        from runners.packs import auto_pack_size_for

        # At most this worker's share of what is left, so one auto pack never starves the other workers.
        free = len(self.claimer.ledger().free())
        return auto_pack_size_for(self.config, max(1, free), self.spec.replicates, self.spec.local_workers)

    def execute(self, runners: Any, claims: list[Claim]) -> None:
        """Train the claimed trials as one pack; store their results together when it ends."""
        for claim in claims:
            self.events.put(
                {
                    "event": "start",
                    "slot": self.spec.slot,
                    "number": claim.number,
                    "design_index": claim.design_index,
                    "params": claim.params,
                }
            )
        details = None
        with Heartbeat(self.storage, [c.trial_id for c in claims], self.spec.heartbeat_interval):
            started = time.perf_counter()
            self._in_trial = True
            try:
                if self._interrupted:  # a signal arrived while claiming
                    raise KeyboardInterrupt
                for claim in claims:
                    _wait_at_test_gate(claim.design_index)
                results = runners.run_pack(
                    self.config,
                    self.spec.loss,
                    [self._pack_trial(runners, c) for c in claims],
                    self.spec.replicates,
                    shared_seed=shares_seed(self.space),  # every pack of the study laid out alike
                )
            except KeyboardInterrupt:
                self._interrupted = True
                results = [TrialResult(status="failed", fail_reason=INTERRUPTED, seeds=[c.seed]) for c in claims]
            except Exception as exc:  # an error in one pack must not end the study
                details = traceback.format_exc()
                reason = f"{type(exc).__name__}: {exc}"
                results = [TrialResult(status="failed", fail_reason=reason, seeds=[c.seed]) for c in claims]
            finally:
                self._in_trial = False
            elapsed = time.perf_counter() - started
            for result in results:
                if not result.seconds:
                    result.seconds = elapsed / len(claims)
            stored = self.finish(claims, results)
        if len(claims) > 1:
            self.events.put(
                {
                    "event": "pack",
                    "slot": self.spec.slot,
                    "numbers": [c.number for c in claims],
                    "seconds": elapsed,
                }
            )
        for claim, result, kept in zip(claims, results, stored, strict=True):
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
                    "fail_reason": result.fail_reason if kept else "failed as stale by another worker; result dropped",
                    "traceback": details,
                }
            )

    def _pack_trial(self, runners: Any, claim: Claim) -> Any:
        """The claim as a ``runners.PackTrial``: its loss parameters, seed and (``--nuisance``) lr and weight decay."""
        overrides: dict[str, Any] = self.space.train_overrides(claim.params)
        return runners.PackTrial(
            self.space.loss_params(claim.params),
            claim.seed,
            lr=overrides.get("lr"),
            weight_decay=overrides.get("weight_decay"),
        )

    def finish(self, claims: list[Claim], results: list[TrialResult]) -> list[bool]:
        """Store the pack's results in one transaction; False for a trial another worker already failed as stale."""
        rows = []
        for claim, result in zip(claims, results, strict=True):
            value = float(result.value) if result.status == "complete" and result.value is not None else None
            state = TrialState.COMPLETE if value is not None else TrialState.FAIL
            rows.append((claim.trial_id, result.user_attrs(), state, value))
        return write_results(self.storage, rows)


def main(spec: WorkerSpec, events: Any, stop: Any) -> None:
    """Entry point of a worker process."""
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
    # A normal end needs no event: the parent reads exit code 0.


def _wait_at_test_gate(design_index: int) -> None:
    """The test-only gate of :data:`TEST_GATE_ENV`; returns at once when it is not set."""
    folder = os.environ.get(TEST_GATE_ENV)
    if not folder:
        return
    gates = (os.path.join(folder, f"open-{design_index}"), os.path.join(folder, "open-all"))
    parent = multiprocessing.parent_process()
    while not any(os.path.exists(g) for g in gates):
        if parent is not None and not parent.is_alive():
            raise KeyboardInterrupt  # the run is gone; stop as an interrupted trial
        time.sleep(0.05)
