"""The claim protocol: which design index a worker runs next, so a study ends with exactly its budget.

A study of ``N`` trials evaluates the design indices ``0 .. N-1`` (``study.design``). Every lossweep
trial carries the user attribute ``design_index``. An index ``k < N`` is

* *finished* when a trial holding it is COMPLETE, or FAIL with ``status == "diverged"`` (a result);
* *held* when a trial holding it is RUNNING (stale trials are failed first, see below);
* *exhausted* when it has failed ``max_retries + 1`` times for reasons other than an interruption;
* *free* otherwise -- never tried, or its earlier attempts failed (error, killed worker, Ctrl-C).

A worker claims the lowest free index while holding the study's **claim lock**, and inside the same
critical section it sweeps stale trials (``optuna.storages.fail_stale_trials``) and orphans (RUNNING
without any heartbeat, :func:`fail_orphans`), creates the RUNNING trial with its parameters, and
records its first heartbeat. Invariant: *at any time each index is held or finished by at most one
trial*, because reading the ledger and creating the trial happen under one lock; hence a study ends
with exactly one finished trial per index -- ``N`` finished trials -- and no trial is ever created
beyond the budget (a worker that finds no free index creates nothing: it waits while other workers
hold indices, which may still fail and need a retry, and stops when none does). A retry of index
``k`` re-derives its parameters from ``k`` (for ``tpe`` it copies the failed attempt's parameters),
so a killed trial is re-run with the same parameters.

Why a lock rather than a lock-free claim in the trial table: "create a trial, write the index you
want, re-read, the smaller trial number wins" is unsafe -- the larger trial can re-read before the
smaller one has written and both run the same index -- and any correct variant (a bakery-style
protocol) still creates surplus trials at the end of the budget that Optuna cannot delete. The lock
is PostgreSQL's own (``pg_advisory_lock``), which the server releases when a worker's connection
dies, and a file lock next to the SQLite file (released by the OS when the process dies; SQLite
ignores ``SELECT ... FOR UPDATE``, so the database cannot serve). The critical section is a few
short statements, so the lock is not a bottleneck.

The API a worker calls is :class:`Claimer`: ``Claimer(...).claim()`` returns a :class:`Claim` (a
new RUNNING trial) or, when no index is free, the :class:`Ledger` (so the worker can tell "wait,
others may still fail" from "done"). Claiming several indices at once extends it naturally: under
the same lock, :meth:`Claimer.claim_pack` takes ``ledger.free()[:n]`` instead of ``ledger.next_free()``
and creates their trials in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import optuna
from optuna.trial import TrialState

from .design import Design, trial_seed
from .logs import logger
from .optuna_internals import has_fast_path, rdb_models, session
from .trial_store import NewTrial, create_running_trials, write_result

DESIGN_INDEX_ATTR = "design_index"
INTERRUPTED = "interrupted"
WORKER_ATTR = "lossweep:worker"  # system attribute: host:pid of the process that ran the trial
# The user attributes the ledger reads.
LEDGER_ATTRS = ("design_index", "status", "fail_reason")
DEFAULT_LOCK_TIMEOUT_S = 600.0  # the critical section takes milliseconds; this only bounds a stuck holder


# -- the ledger of design indices --------------------------------------------------------------


class TrialLike(Protocol):
    """What the ledger reads of a trial: an Optuna FrozenTrial, or the lighter :class:`TrialRow`."""

    @property
    def number(self) -> int: ...
    @property
    def state(self) -> TrialState: ...
    @property
    def user_attrs(self) -> dict[str, Any]: ...


T = TypeVar("T", bound=TrialLike)


@dataclass(frozen=True)
class TrialRow:
    """The part of a trial the ledger needs; duck-types the FrozenTrial fields it reads.

    ``value`` is the objective where it was read (``ledger_rows(values=True)``); ``params`` stay
    empty: no ledger reads them.
    """

    number: int
    state: TrialState
    user_attrs: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


def is_diverged(trial: TrialLike) -> bool:
    return trial.state == TrialState.FAIL and trial.user_attrs.get("status") == "diverged"


def is_finished(trial: TrialLike) -> bool:
    """A result: COMPLETE, or a diverged FAIL. Other FAILs are errors and are retried."""
    return trial.state == TrialState.COMPLETE or is_diverged(trial)


def counts_as_attempt(trial: TrialLike) -> bool:
    """A failed attempt that counts against the retry bound (an interruption by the user does not)."""
    return (
        trial.state == TrialState.FAIL and not is_diverged(trial) and trial.user_attrs.get("fail_reason") != INTERRUPTED
    )


@dataclass
class Ledger(Generic[T]):
    """Which design indices are finished, held, exhausted or free, read from the study's trials."""

    n_trials: int
    max_retries: int
    finished: dict[int, T] = field(default_factory=dict)
    running: dict[int, T] = field(default_factory=dict)
    attempts: Counter[int] = field(default_factory=Counter)
    previous: dict[int, T] = field(default_factory=dict)  # the last failed attempt per index

    @classmethod
    def from_trials(cls, trials: Sequence[T], n_trials: int, max_retries: int) -> Ledger[T]:
        ledger: Ledger[T] = cls(n_trials=n_trials, max_retries=max_retries)
        for t in trials:
            k = t.user_attrs.get(DESIGN_INDEX_ATTR)
            if not isinstance(k, int):
                continue  # not a lossweep trial
            if is_finished(t):
                ledger.finished.setdefault(k, t)
            elif t.state == TrialState.RUNNING:
                ledger.running[k] = t
            elif t.state == TrialState.FAIL:
                if counts_as_attempt(t):
                    ledger.attempts[k] += 1
                ledger.previous[k] = t
        return ledger

    def exhausted(self) -> list[int]:
        return sorted(
            k for k, n in self.attempts.items() if n > self.max_retries and k not in self.finished and k < self.n_trials
        )

    def n_finished(self) -> int:
        return sum(1 for k in self.finished if k < self.n_trials)

    def _free(self) -> Iterator[int]:
        for k in range(self.n_trials):
            if k not in self.finished and k not in self.running and self.attempts[k] <= self.max_retries:
                yield k

    def free(self) -> list[int]:
        """Every index below the budget that is neither finished, held nor exhausted, lowest first."""
        return list(self._free())

    def next_free(self) -> int | None:
        """The lowest free index (the one a claim takes), None when none is free."""
        return next(self._free(), None)

    def held_by_others(self) -> bool:
        return any(k < self.n_trials for k in self.running)


def ledger_rows(storage: optuna.storages.BaseStorage, study_id: int, *, values: bool = False) -> list[TrialRow]:
    """Every trial of the study with its state and the :data:`LEDGER_ATTRS` it has (and its value: ``values``).

    One query (two with ``values``) through Optuna's models where possible: the claim runs under the
    lock before each pack, and ``get_all_trials`` loads every attribute and per-class list (0.1 s
    at 200 trials, ~0.3 s when the trials hold their results).
    """
    if not has_fast_path(storage):
        return [
            TrialRow(
                t.number,
                t.state,
                {k: t.user_attrs[k] for k in LEDGER_ATTRS if k in t.user_attrs},
                value=t.value if values else None,
            )
            for t in storage.get_all_trials(study_id, deepcopy=False)
        ]
    import sqlalchemy

    assert isinstance(storage, optuna.storages.RDBStorage)
    models: Any = rdb_models()
    trials, attrs, objectives = models.TrialModel, models.TrialUserAttributeModel, models.TrialValueModel
    query = (
        sqlalchemy.select(trials.number, trials.state, attrs.key, attrs.value_json)
        .select_from(trials)
        .outerjoin(attrs, sqlalchemy.and_(attrs.trial_id == trials.trial_id, attrs.key.in_(LEDGER_ATTRS)))
        .where(trials.study_id == study_id)
    )
    value_query = (
        sqlalchemy.select(trials.number, objectives.value, objectives.value_type)
        .join(objectives, objectives.trial_id == trials.trial_id)
        .where(trials.study_id == study_id, objectives.objective == 0)
    )
    rows: dict[int, TrialRow] = {}
    with session(storage) as s:
        stored = (
            {n: objectives.stored_repr_to_value(v, kind) for n, v, kind in s.execute(value_query)} if values else {}
        )
        for number, state, key, value_json in s.execute(query):
            row = rows.setdefault(number, TrialRow(number, state, {}, value=stored.get(number)))
            if key is not None:
                row.user_attrs[key] = json.loads(value_json)
    return [rows[n] for n in sorted(rows)]


def read_ledger(
    storage: optuna.storages.BaseStorage, study_id: int, n_trials: int, max_retries: int
) -> Ledger[TrialRow]:
    return Ledger.from_trials(ledger_rows(storage, study_id), n_trials, max_retries)


# -- sweeping trials whose worker is gone -----------------------------------------------------


def fail_stale(study: optuna.Study) -> None:
    """Fail RUNNING trials whose heartbeat stopped for longer than the grace period (Optuna's rule)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def fail_orphans(storage: optuna.storages.BaseStorage, study_id: int) -> list[int]:
    """Fail the study's RUNNING trials that have no heartbeat at all; returns their numbers.

    Call it only while holding the claim lock: a worker creates its trial and records the first
    heartbeat inside that lock, so a RUNNING trial without a heartbeat seen under the lock belongs
    to a worker that died in between. Optuna never fails such a trial as stale (it has no heartbeat
    to be late), and its design index would stay held for ever.
    """
    if not has_fast_path(storage):
        return []  # no public way to tell "no heartbeat"; such a trial needs `optuna` by hand
    import sqlalchemy

    assert isinstance(storage, optuna.storages.RDBStorage)
    models: Any = rdb_models()
    trials, beats = models.TrialModel, models.TrialHeartbeatModel
    query = sqlalchemy.select(trials.trial_id, trials.number).where(
        trials.study_id == study_id,
        trials.state == TrialState.RUNNING,
        ~sqlalchemy.exists().where(beats.trial_id == trials.trial_id),
    )
    with session(storage) as s:
        orphans = list(s.execute(query))
    failed = []
    for trial_id, number in orphans:
        attrs = {"status": "failed", "fail_reason": "worker lost before its first heartbeat"}
        if write_result(storage, trial_id, attrs, TrialState.FAIL, None):
            failed.append(number)
    if failed:
        logger().info(f"failed trial(s) {failed}: RUNNING without a heartbeat (their worker died while claiming)")
    return failed


# -- the claim lock ----------------------------------------------------------------------------


def _lock_key(study_name: str) -> int:
    digest = hashlib.sha256(f"lossweep-claim:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)  # a signed bigint, as pg_advisory_lock takes


@contextlib.contextmanager
def claim_lock(
    storage: optuna.storages.RDBStorage, study_name: str, timeout: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[None]:
    """Mutual exclusion among every worker of ``study_name``, on every machine sharing the store.

    On PostgreSQL the lock is the study's own; on SQLite (one machine) one file lock serves every
    study of the store, which costs nothing at a few claims a second.

    Raises TimeoutError when the lock is not free within ``timeout`` seconds (both backends). The
    lock dies with its holder: the server ends a dead connection's advisory lock; the OS releases
    a dead process's file lock.
    """
    import sqlalchemy

    engine = storage.engine
    dialect = engine.dialect.name
    if dialect == "sqlite":
        import filelock

        database = engine.url.database
        if not database or database == ":memory:":
            raise ValueError(
                "an in-memory SQLite store cannot be shared by worker processes; give a file, e.g. sqlite:///lossweep.db"
            )
        lock = filelock.FileLock(str(Path(database).resolve()) + ".lock")
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise TimeoutError(f"the claim lock of study {study_name!r} was not free within {timeout:g}s") from None
        try:
            yield
        finally:
            lock.release()
        return
    if dialect != "postgresql":
        raise ValueError(f"lossweep workers need SQLite or PostgreSQL storage, not {dialect!r}")
    params: dict[str, Any] = {"key": _lock_key(study_name)}
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        # pg_advisory_lock would wait for ever; try in a bounded loop instead (short sleeps: the
        # critical section is milliseconds long).
        delay = 0.005
        while True:
            acquired = connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:key)"), params).scalar()
            connection.commit()
            if acquired:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the claim lock of study {study_name!r} was not free within {timeout:g}s")
            time.sleep(delay)
            delay = min(2 * delay, 0.1)
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), params)
            connection.commit()


# -- claiming ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A design index held by a new RUNNING trial, with what the worker needs to train it."""

    trial_id: int
    number: int
    design_index: int
    params: dict[str, Any]
    seed: int


class Claimer:
    """Claims design indices of one study for one worker process (see the module docstring)."""

    def __init__(
        self,
        storage: optuna.storages.RDBStorage,
        study: optuna.Study,
        design: Design,
        *,
        max_retries: int,
        identity: str,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self.storage, self.study, self.design = storage, study, design
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.max_retries, self.identity, self.lock_timeout = max_retries, identity, lock_timeout

    def ledger(self) -> Ledger[TrialRow]:
        """The ledger as it stands (no lock, no sweep): for display and for deciding to wait."""
        return read_ledger(self.storage, self.study_id, self.design.n_trials, self.max_retries)

    def claim(self) -> Claim | Ledger[TrialRow]:
        """The lowest free design index as a new RUNNING trial, or the ledger when none is free."""
        claims = self.claim_pack(1)
        return claims if isinstance(claims, Ledger) else claims[0]

    def claim_pack(self, size: int) -> list[Claim] | Ledger[TrialRow]:
        """Up to ``size`` of the lowest free design indices as new RUNNING trials (a pack), or the ledger
        when none is free.

        All in one critical section: the sweep, the ledger read and the creation of every trial with
        its first heartbeat -- the trials in one transaction (:func:`create_running_trials`), so a
        worker killed while claiming leaves the whole pack, which the stale sweep fails and frees, or
        nothing.
        """
        with claim_lock(self.storage, self.study.study_name, timeout=self.lock_timeout):
            ledger = self._sweep()
            free = ledger.free()[: max(1, size)]
            if not free:
                return ledger
            # Design points are created in one transaction; tpe's first attempts are asked one by one.
            fixed = {k: params for k in free if (params := self._point(ledger, k)) is not None}
            distributions = self.design.space.distributions()
            created = create_running_trials(
                self.storage,
                self.study_id,
                [
                    NewTrial(
                        params=params,
                        distributions={name: distributions[name] for name in params},
                        user_attrs={DESIGN_INDEX_ATTR: k},
                        system_attrs={WORKER_ATTR: self.identity},
                    )
                    for k, params in fixed.items()
                ],
            )
            ids = dict(zip(fixed, created, strict=True))
            claims = []
            for k in free:
                if k in ids:
                    (trial_id, number), params = ids[k], fixed[k]
                else:
                    trial_id, number, params = self._ask(k)
                claims.append(Claim(trial_id, number, k, params, trial_seed(self.design.space, self.design.seed, k)))
            return claims

    def _sweep(self) -> Ledger[TrialRow]:
        """Under the lock: fail stale and orphaned trials, then read the ledger."""
        fail_stale(self.study)
        fail_orphans(self.storage, self.study_id)
        return self.ledger()

    def _point(self, ledger: Ledger[TrialRow], k: int) -> dict[str, Any] | None:
        """The parameters of index ``k``; None where Optuna is to propose them (``tpe``, first attempt)."""
        params = self.design.point(k)
        if params is None and k in ledger.previous:  # tpe retry: same parameters as the failed attempt
            storage = self.storage
            failed = storage.get_trial(
                storage.get_trial_id_from_study_id_trial_number(self.study_id, ledger.previous[k].number)
            )
            params = dict(failed.params) or None
        return params

    def _ask(self, k: int) -> tuple[int, int, dict[str, Any]]:
        """Under the lock: a RUNNING trial of index ``k`` at the point Optuna's sampler proposes, with its
        first heartbeat (written before the lock opens, so a killed worker's trial is detectable as stale).
        """
        storage = self.storage
        trial = self.study.ask(dict(self.design.space.distributions()))
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        storage.set_trial_user_attr(trial_id, DESIGN_INDEX_ATTR, k)
        storage.set_trial_system_attr(trial_id, WORKER_ATTR, self.identity)
        storage.record_heartbeat(trial_id)
        return trial_id, trial.number, dict(trial.params)
