"""Where studies live: resolving, validating and opening the Optuna RDB store.

One URL names the store for every tool (``study.run``, ``study.dashboard``, ``analysis``, ``reports``):
the ``--storage`` flag, else ``$LOSSWEEP_STORAGE``, else ``sqlite:///lossweep.db`` in the current
directory. SQLite suits one machine (several workers share the file thanks to WAL journaling and a
busy timeout); a cluster shares a PostgreSQL database.

This module imports only optuna and sqlalchemy, so analysis and reports can use it without torch.
Passwords never appear in messages: every URL shown to a user goes through :func:`redact`.
"""

from __future__ import annotations

import inspect
import os
import re
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url

from study.errors import UsageError

DEFAULT_STORAGE = "sqlite:///lossweep.db"
ENV_VAR = "LOSSWEEP_STORAGE"

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
# Seconds a SQLite writer waits for another's lock before failing with "database is locked". Trials
# commit rarely and briefly, so a long wait costs nothing and absorbs bursts (e.g. many workers
# starting at once).
SQLITE_BUSY_TIMEOUT_S = 60.0
# Seconds to wait for a PostgreSQL server before reporting it unreachable (libpq's connect_timeout;
# its default is to wait forever on a black-holed host).
POSTGRES_CONNECT_TIMEOUT_S = 10
# The psycopg 3 driver is the one lossweep installs (extra "postgres"); SQLAlchemy's bare
# "postgresql://" would pick psycopg2 instead.
POSTGRES_DRIVER = "postgresql+psycopg"
# Opens of a fresh store that may lose the race to create it to other processes (see _lost_first_open_race).
FIRST_OPEN_ATTEMPTS = 10
_T = TypeVar("_T")

# Optuna 4.9 renamed failed_trial_callback (deprecated since) to heartbeat_stale_trial_callback.
_STALE_CALLBACK_ARG = (
    "heartbeat_stale_trial_callback"
    if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    else "failed_trial_callback"
)

# Tables every Optuna RDB store has; used to tell a store from an unrelated or empty database.
_OPTUNA_TABLES = ("studies", "trials", "version_info")


def redact(url: object) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs. Never raises."""
    text = str(url)
    try:
        return make_url(text).render_as_string(hide_password=True)
    except Exception:  # malformed: hide everything between "user:" and the last "@" by hand
        head, at, tail = text.rpartition("@")
        start = head.find("//") + 2 if "//" in head else 0
        colon = head.find(":", start)
        if not at or colon == -1:
            return text
        return f"{head[: colon + 1]}***@{tail}"


def _parse(url: str) -> URL:
    """Parse and normalise a store URL, or raise UsageError with the redacted URL."""
    try:
        parsed = make_url(url.strip())
    except Exception:
        raise UsageError(
            f"malformed storage URL {redact(url)!r}; expected e.g. "
            f"{DEFAULT_STORAGE} or postgresql://user:password@host:5432/dbname"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=POSTGRES_DRIVER)
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_DIALECTS:
        raise UsageError(
            f"unsupported storage {redact(url)!r}: lossweep stores studies in SQLite "
            "or PostgreSQL (sqlite:///FILE or postgresql://user:password@host/dbname)"
        )
    return parsed


def _render(url: URL) -> str:
    # hide_password=False percent-escapes special characters (including "{" and "}", which
    # RDBStorage would otherwise treat as str.format fields).
    return url.render_as_string(hide_password=False)


def _is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def resolve_url(url: str | None = None) -> str:
    """The store URL to use: ``url`` (the --storage flag) > ``$LOSSWEEP_STORAGE`` > :data:`DEFAULT_STORAGE`.

    Validates it (only SQLite and PostgreSQL), rewrites a bare ``postgresql://`` to the psycopg 3
    driver, and refuses an in-memory SQLite store, which worker processes could not share.
    """
    chosen = url if url else os.environ.get(ENV_VAR) or DEFAULT_STORAGE
    parsed = _parse(chosen)
    if _is_memory(parsed):
        raise UsageError(
            f"an in-memory SQLite store ({redact(chosen)}) is lost when the program ends "
            f"and is not shared between workers; name a file, e.g. {DEFAULT_STORAGE}"
        )
    return _render(parsed)


def _short_reason(exc: BaseException, url: URL) -> str:
    """One line, no password, saying why the store could not be opened."""
    if isinstance(exc, (ImportError, sqlalchemy.exc.NoSuchModuleError)):
        return (
            f"the database driver for {url.drivername} is not installed (for PostgreSQL: pip install 'psycopg[binary]')"
        )
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    if isinstance(exc, RuntimeError) and "optuna storage upgrade" in text:
        return (
            "its schema was written by another Optuna version; upgrade it with "
            f"`optuna storage upgrade --storage {redact(_render(url))}` (back it up first)"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0] if lines else type(cause).__name__
    reason = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", reason)
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return reason


def _sqlite_path(url: URL) -> str:
    return os.path.abspath(os.path.expanduser(str(url.database)))


def _has_optuna_tables(engine: sqlalchemy.engine.Engine) -> bool:
    names = set(sqlalchemy.inspect(engine).get_table_names())
    return all(t in names for t in _OPTUNA_TABLES)


def _engine_kwargs(parsed: URL) -> dict[str, Any]:
    """The engine settings of every connection lossweep opens (one busy / connect timeout each)."""
    if parsed.get_backend_name() == "sqlite" and not _is_memory(parsed):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if parsed.get_backend_name() == "postgresql":
        # pool_pre_ping: a worker idle through a long trial finds its pooled connection dropped by
        # the server or a proxy; test and replace it instead of failing the trial's commit.
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}}
    return {}


def _check_sqlite_path(parsed: URL, shown: str, *, read_only: bool) -> None:
    if parsed.get_backend_name() != "sqlite" or _is_memory(parsed):
        return
    path = _sqlite_path(parsed)
    folder = os.path.dirname(path)
    if read_only and not os.path.isfile(path):
        raise UsageError(
            f"no lossweep store at {shown}: {path} does not exist; run `python -m study.run` first or pass --storage"
        )
    if not os.path.isdir(folder):
        raise UsageError(f"cannot open the study store at {shown}: directory {folder} does not exist; create it first")


def check_reachable(url: str) -> None:
    """Fail early, as :func:`open_storage` would, on a store that cannot be opened -- creating nothing.

    ``python -m study.run`` calls it before the (slow) data preparation, so a typo in a server name
    costs seconds, and a command that then fails for another reason leaves no empty store behind.
    """
    parsed = _parse(url)
    shown = redact(_render(parsed))
    _check_sqlite_path(parsed, shown, read_only=False)
    if parsed.get_backend_name() == "sqlite":
        return  # the file is created on open; its folder exists
    engine = None
    try:
        engine = sqlalchemy.create_engine(_render(parsed), poolclass=sqlalchemy.pool.NullPool, **_engine_kwargs(parsed))
        with engine.connect():
            pass
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError) as exc:
        raise UsageError(f"cannot open the study store at {shown}: {_short_reason(exc, parsed)}") from None
    finally:
        if engine is not None:
            engine.dispose()


def open_storage(
    url: str | None,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    failed_trial_callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    read_only: bool = False,
) -> optuna.storages.RDBStorage:
    """Open (and, unless ``read_only``, create) the Optuna store at ``url``.

    Args:
        url: a store URL; None resolves it as :func:`resolve_url` does.
        heartbeat_interval, grace_period: Optuna's heartbeat, which marks trials of killed workers
            as failed (seconds).
        failed_trial_callback: called with each such stale trial, e.g. to retry it
            (``optuna.storages.RetryHeartbeatStaleTrialCallback``; Optuna < 4.9:
            ``RetryFailedTrialCallback``).
        read_only: open an existing store without creating a file or tables (dashboard, analysis,
            reports). It does not make the connection read-only.

    Raises:
        UsageError: one line with the redacted URL when the store cannot be opened (unreachable
            server, wrong password, missing directory or driver, no store at a read-only URL).
    """
    if url is None:
        url = resolve_url(None)
    parsed = _parse(url)
    shown = redact(_render(parsed))
    _check_sqlite_path(parsed, shown, read_only=read_only)
    engine_kwargs = _engine_kwargs(parsed)

    rendered = _render(parsed)
    try:
        if read_only or parsed.get_backend_name() == "sqlite":
            engine = sqlalchemy.create_engine(rendered, **engine_kwargs)
            try:
                if read_only and not _has_optuna_tables(engine):
                    raise UsageError(
                        f"no lossweep store at {shown}: the database holds no "
                        "Optuna study tables; run `python -m study.run` first"
                    )
                if not read_only and not _is_memory(parsed):
                    _enable_wal(engine)
            finally:
                engine.dispose()

        def open_once() -> optuna.storages.RDBStorage:
            with warnings.catch_warnings():
                # Heartbeats are "experimental" in Optuna; lossweep relies on them deliberately.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    rendered,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    skip_table_creation=read_only,
                    **{_STALE_CALLBACK_ARG: failed_trial_callback},  # type: ignore[arg-type]  # name varies by Optuna version
                )

        return _again_after_a_race(open_once, _lost_first_open_race)
    except UsageError:
        raise
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, RuntimeError, OSError) as exc:
        raise UsageError(f"cannot open the study store at {shown}: {_short_reason(exc, parsed)}") from None


def _again_after_a_race(action: Callable[[], _T], lost_race: Callable[[sqlalchemy.exc.DBAPIError], bool]) -> _T:
    """``action()``, done again (at most :data:`FIRST_OPEN_ATTEMPTS` times, waiting a little longer each
    time) while it fails with a database error ``lost_race`` says another process caused by getting
    there first: the winner is finishing what it started, so the next try finds it done."""
    attempt = 1
    while True:
        try:
            return action()
        except sqlalchemy.exc.DBAPIError as exc:
            if attempt == FIRST_OPEN_ATTEMPTS or not lost_race(exc):
                raise
        time.sleep(0.05 * attempt)
        attempt += 1


def _lost_first_open_race(exc: sqlalchemy.exc.DBAPIError) -> bool:
    """Whether ``exc`` says that another process created the same table or version row first.

    Optuna's first open of an empty store creates its tables, then writes its version row and
    Alembic's, each unguarded: two processes opening it at once (the workers of two machines, a study
    and its dashboard) both try, and the loser gets a unique violation or "already exists". What it
    tried to write is then there, so opening again goes on where the winner got to.
    """
    text = str(exc.orig).lower()
    return isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in text


def _enable_wal(engine: sqlalchemy.engine.Engine) -> None:
    """Switch a SQLite file to write-ahead logging (persistent: stored in the file).

    In WAL mode readers never block the writer and vice versa, so the dashboard and analysis can read
    while workers write, and writers queue on the busy timeout instead of failing. WAL needs shared
    memory between processes: it works on local disks, not on network file systems (use PostgreSQL
    across machines).
    """

    def switch() -> None:
        with engine.connect() as conn:
            if conn.exec_driver_sql("PRAGMA journal_mode").scalar() != "wal":
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")

    # The switch needs the file to itself and does not wait on the busy timeout: another process
    # opening the new file at the same moment has it. Look again once it is done.
    _again_after_a_race(
        switch, lambda exc: isinstance(exc, sqlalchemy.exc.OperationalError) and "locked" in str(exc.orig)
    )
