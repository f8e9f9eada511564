"""study.storage against real SQLite files, real concurrent processes and a real PostgreSQL server."""

from __future__ import annotations

import pickle
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings

import optuna
import pytest
import sqlalchemy

from study.errors import UsageError
from study.storage import DEFAULT_STORAGE, ENV_VAR, open_storage, redact, resolve_url

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- resolving and redacting URLs ----------------------------------------------------------------
def test_resolve_url_precedence(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_url(None) == DEFAULT_STORAGE == "sqlite:///lossweep.db"
    monkeypatch.setenv(ENV_VAR, "sqlite:///from-env.db")
    assert resolve_url(None) == "sqlite:///from-env.db"
    assert resolve_url("sqlite:///from-flag.db") == "sqlite:///from-flag.db"
    monkeypatch.setenv(ENV_VAR, "")
    assert resolve_url(None) == DEFAULT_STORAGE


@pytest.mark.parametrize(
    "url,expected",
    [
        ("postgresql://u:p@db.example:5432/lossweep", "postgresql+psycopg://u:p@db.example:5432/lossweep"),
        ("postgres://u@db/lossweep", "postgresql+psycopg://u@db/lossweep"),
        ("postgresql+psycopg://u@db/x", "postgresql+psycopg://u@db/x"),
        ("postgresql+psycopg2://u@db/x", "postgresql+psycopg2://u@db/x"),
        ("sqlite:////abs/path/s.db", "sqlite:////abs/path/s.db"),
        # special characters in a password stay percent-escaped (RDBStorage str.format()s the URL)
        ("postgresql://u:p%7Bw%40d@h/db", "postgresql+psycopg://u:p%7Bw%40d@h/db"),
    ],
)
def test_resolve_url_normalises_postgres_driver(url, expected):
    assert resolve_url(url) == expected


@pytest.mark.parametrize(
    "url,match",
    [
        ("mysql://u:hunter2@h/db", r"unsupported storage 'mysql://u:\*\*\*@h/db'"),
        ("redis://u:hunter2@h", r"unsupported storage"),
        ("just a path.db", r"malformed storage URL 'just a path.db'"),
        ("sqlite://", r"in-memory SQLite"),
        ("sqlite:///:memory:", r"in-memory SQLite"),
    ],
)
def test_resolve_url_rejects_with_redacted_url(url, match):
    with pytest.raises(UsageError, match=match) as info:
        resolve_url(url)
    assert "hunter2" not in str(info.value)


def test_redact_hides_passwords_and_never_raises():
    assert redact("postgresql+psycopg://alice:s3cret@h:5432/db") == "postgresql+psycopg://alice:***@h:5432/db"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"
    assert "s3cret" not in redact("weird//alice:s3cret@@host::/")
    assert "s3cret" not in redact("x://alice:s3cret@host:notaport/db")
    assert redact(None) == "None"


# --- SQLite --------------------------------------------------------------------------------------
def test_sqlite_store_is_created_in_wal_mode_with_a_busy_timeout(tmp_path):
    path = tmp_path / "s.db"
    storage = open_storage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert storage.engine_kwargs["connect_args"]["timeout"] >= 10
    # Workers receive the storage pickled; the busy timeout must travel with it.
    clone = pickle.loads(pickle.dumps(storage))
    assert clone.engine_kwargs == storage.engine_kwargs
    assert len(optuna.load_study(study_name="s", storage=clone).trials) == 3


def test_heartbeat_arguments_are_passed_without_warnings(tmp_path):
    retry = (
        getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        callback = retry(max_retry=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        storage = open_storage(
            f"sqlite:///{tmp_path / 'h.db'}", heartbeat_interval=5, grace_period=20, failed_trial_callback=callback
        )
    assert storage.heartbeat_interval == 5 and storage.grace_period == 20
    assert storage.failed_trial_callback is callback


def test_read_only_does_not_create_a_missing_file(tmp_path):
    path = tmp_path / "absent.db"
    with pytest.raises(UsageError, match=r"^no lossweep store at sqlite:///.*absent\.db: .*does not exist"):
        open_storage(f"sqlite:///{path}", read_only=True)
    assert not path.exists()


def test_read_only_does_not_create_tables_in_an_unrelated_database(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE notes (x)").connection.commit()
    with pytest.raises(UsageError, match=r"no lossweep store at .*no Optuna study tables"):
        open_storage(f"sqlite:///{path}", read_only=True)
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"notes"}


def test_read_only_opens_an_existing_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    optuna.create_study(storage=open_storage(url), study_name="existing")
    before = (tmp_path / "r.db").stat().st_mtime_ns
    storage = open_storage(url, read_only=True)
    assert optuna.get_all_study_names(storage=storage) == ["existing"]
    assert (tmp_path / "r.db").stat().st_mtime_ns == before


def test_missing_sqlite_directory_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/dir/s.db"
    with pytest.raises(UsageError) as info:
        open_storage(url)
    message = str(info.value)
    assert (
        message
        == f"cannot open the study store at {url}: directory {tmp_path}/no/such/dir does not exist; create it first"
    )
    assert not (tmp_path / "no").exists()


def test_several_processes_write_one_sqlite_file_at_once(tmp_path):
    """Four worker processes start together on one file; no 'database is locked', no lost trials."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(storage=open_storage(url), study_name="shared", direction="maximize")
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import os, sys, time, optuna
        from study.storage import open_storage
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage({url!r})
        study = optuna.load_study(study_name="shared", storage=storage)
        open(os.path.join({str(tmp_path)!r}, "ready-" + sys.argv[1]), "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        def objective(trial):
            trial.set_user_attr("worker", int(sys.argv[1]))
            return trial.suggest_float("x", 0.0, 1.0)
        study.optimize(objective, n_trials=25)
        """
    )
    n_workers = 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(n_workers)
    ]
    try:
        deadline = time.monotonic() + 600  # generous: four interpreters starting on a busy machine
        while sum((tmp_path / f"ready-{i}").exists() for i in range(n_workers)) < n_workers:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        go.touch()
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
    trials = optuna.load_study(study_name="shared", storage=open_storage(url, read_only=True)).trials
    assert len(trials) == n_workers * 25
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(n_workers * 25))
    assert {t.user_attrs["worker"] for t in trials} == set(range(n_workers))


FIRST_OPEN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from study.storage import open_storage
    from study.errors import UsageError
    folder, me, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
    open(os.path.join(folder, "ready-" + me), "w").close()
    for r, url in enumerate(urls):
        while not os.path.exists(os.path.join(folder, f"go-{r}")):
            time.sleep(0.002)
        try:
            open_storage(url).engine.dispose()
            outcome = "ok"
        except UsageError as error:
            outcome = str(error)
        with open(os.path.join(folder, f"done-{r}-{me}"), "w") as f:
            f.write(outcome)
    """
)


def open_fresh_stores_at_once(tmp_path, urls, processes=6):
    """``processes`` interpreters open each fresh store of ``urls`` at the same moment, one store after
    another; each one's outcome per store ("ok" or the one-line error)."""
    folder = tmp_path / "race"
    folder.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_OPEN_SCRIPT, str(folder), str(i), *urls],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]

    def wait_until(done):
        while not done():
            if any(p.poll() is not None for p in procs):
                raise AssertionError([p.communicate() for p in procs])
            time.sleep(0.01)

    try:
        wait_until(lambda: all((folder / f"ready-{i}").exists() for i in range(processes)))
        for r in range(len(urls)):
            (folder / f"go-{r}").touch()
            wait_until(lambda r=r: all((folder / f"done-{r}-{i}").exists() for i in range(processes)))
        for p in procs:
            assert p.wait(timeout=600) == 0, p.communicate()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [[(folder / f"done-{r}-{i}").read_text() for i in range(processes)] for r in range(len(urls))]


def test_processes_opening_a_fresh_sqlite_store_together_all_succeed(tmp_path):
    """Optuna's first open writes its tables and version rows unguarded: the processes that lose that
    race (a study's workers and its dashboard, or two runs of one command) open again, not fail."""
    urls = [f"sqlite:///{tmp_path / f'fresh-{r}.db'}" for r in range(8)]
    outcomes = open_fresh_stores_at_once(tmp_path, urls)
    assert all(o == "ok" for round_ in outcomes for o in round_), outcomes
    for url in urls:
        assert optuna.get_all_study_names(open_storage(url, read_only=True)) == []


# --- PostgreSQL ----------------------------------------------------------------------------------
def test_unreachable_postgres_is_one_line_without_password():
    url = f"postgresql://alice:hunter2@127.0.0.1:{_free_port()}/lossweep"
    with pytest.raises(UsageError) as info:
        open_storage(resolve_url(url))
    message = str(info.value)
    assert message.startswith("cannot open the study store at postgresql+psycopg://alice:***@127.0.0.1:")
    assert "refused" in message.lower()
    assert "hunter2" not in message and "\n" not in message


def test_postgres_store_round_trip(fresh_database):
    url = resolve_url(fresh_database)
    storage = open_storage(url)
    assert storage.engine_kwargs["pool_pre_ping"] is True
    study = optuna.create_study(storage=storage, study_name="pg", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
    storage.engine.dispose()
    again = open_storage(url, read_only=True)
    assert len(optuna.load_study(study_name="pg", storage=again).trials) == 4
    again.engine.dispose()


def test_processes_opening_a_fresh_postgres_store_together_all_succeed(tmp_path, fresh_databases):
    """Two machines of a cluster starting one study on an empty database at once (see the SQLite test)."""
    outcomes = open_fresh_stores_at_once(tmp_path, [fresh_databases() for _ in range(5)])
    assert all(o == "ok" for round_ in outcomes for o in round_), outcomes


def test_read_only_postgres_without_tables_is_refused_and_left_empty(fresh_database):
    with pytest.raises(UsageError, match=r"no lossweep store at postgresql\+psycopg://.*no Optuna study tables"):
        open_storage(resolve_url(fresh_database), read_only=True)
    engine = sqlalchemy.create_engine(resolve_url(fresh_database))
    assert sqlalchemy.inspect(engine).get_table_names() == []
    engine.dispose()


def test_wrong_password_is_one_line_without_either_password(password_postgres):
    url = f"postgresql://postgres:not-{password_postgres.password}@127.0.0.1:{password_postgres.port}/postgres"
    with pytest.raises(UsageError) as info:
        open_storage(resolve_url(url))
    message = str(info.value)
    assert message.startswith(
        "cannot open the study store at "
        f"postgresql+psycopg://postgres:***@127.0.0.1:{password_postgres.port}/postgres: "
    )
    assert "password authentication failed" in message
    assert password_postgres.password not in message and "\n" not in message


def test_storage_module_does_not_import_torch():
    code = "import sys, study.storage; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_writers_are_not_blocked_by_an_open_read_transaction(tmp_path):
    """A reader (dashboard, analysis) holding a transaction open must not stall workers' commits.

    With SQLite's default rollback journal the reader's shared lock keeps every writer from
    committing until the busy timeout fails it; WAL lets the worker finish while the read is open.
    """
    path = tmp_path / "busy.db"
    url = f"sqlite:///{path}"
    optuna.create_study(storage=open_storage(url), study_name="busy")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM trials").fetchone() == (0,)
    script = (
        "import optuna; from study.storage import open_storage;"
        "optuna.logging.set_verbosity(optuna.logging.WARNING);"
        f"s = optuna.load_study(study_name='busy', storage=open_storage({url!r}));"
        "s.optimize(lambda t: t.suggest_float('x', 0, 1), n_trials=10)"
    )
    try:
        worker = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
        # still inside the read transaction: the reader sees its snapshot, the worker has finished
        assert reader.execute("SELECT count(*) FROM trials").fetchone() == (0,)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    assert worker.returncode == 0, worker.stderr
    assert len(optuna.load_study(study_name="busy", storage=open_storage(url)).trials) == 10
