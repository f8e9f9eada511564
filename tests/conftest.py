"""The real servers the tests use, shared by every test folder: PostgreSQL and headless Chromium.

PostgreSQL: a throwaway cluster with password (SCRAM) authentication is started from the local
PostgreSQL binaries, so wrong passwords are really refused; ``postgres`` prefers
``$LOSSWEEP_TEST_POSTGRES_URL`` (CI's trust-auth server). Chromium: Debian's ``chromium`` (or
``$LOSSWEEP_CHROMIUM``) driven by Playwright's Python package, never a downloaded browser.
Where a server is missing the tests skip; with ``LOSSWEEP_REQUIRE_SERVERS=1`` (CI) it is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Postgres:
    url: str  # a superuser URL (with the password when the cluster checks passwords)
    host: str
    port: int
    password: str | None  # None: the server does not check passwords (trust auth)


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable(reason: str):
    """Skip, unless LOSSWEEP_REQUIRE_SERVERS=1 (CI) says a missing server is a failure."""
    if os.environ.get("LOSSWEEP_REQUIRE_SERVERS") == "1":
        pytest.fail(f"a real server is required (LOSSWEEP_REQUIRE_SERVERS=1) but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]


@pytest.fixture(scope="session")
def password_postgres():
    """A private cluster that checks passwords, or a skip when PostgreSQL binaries are missing."""
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = initdbs[-1] if initdbs else shutil.which("initdb")
    if initdb is None:
        _unavailable("no PostgreSQL binaries (initdb) installed")
    bindir = os.path.dirname(initdb)
    root = tempfile.mkdtemp(prefix="lossweep-test-pg-")
    password = "pw-" + secrets.token_hex(8)
    port = _free_port()
    pwfile = os.path.join(root, "pw")
    with open(pwfile, "w") as fh:
        fh.write(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    data = os.path.join(root, "data")
    try:
        subprocess.run(
            _as_postgres([initdb, "-D", data, "-U", "postgres", "-A", "scram-sha-256", f"--pwfile={pwfile}"]),
            check=True,
            capture_output=True,
        )
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres([f"{bindir}/pg_ctl", "-D", data, "-l", f"{root}/log", "-w", "-o", opts, "start"]),
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"could not start a PostgreSQL cluster: {getattr(exc, 'stderr', b'') or exc}")
    try:
        yield Postgres(f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres", "127.0.0.1", port, password)
    finally:
        subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(request):
    """Any reachable PostgreSQL: $LOSSWEEP_TEST_POSTGRES_URL if set, else the private cluster."""
    url = os.environ.get("LOSSWEEP_TEST_POSTGRES_URL")
    if url:
        from sqlalchemy import make_url

        u = make_url(url)
        return Postgres(url, u.host or "127.0.0.1", u.port or 5432, u.password)
    return request.getfixturevalue("password_postgres")


@contextlib.contextmanager
def _database_on(server: Postgres):
    """A new, empty database on ``server`` (dropped afterwards), as a URL."""
    import sqlalchemy
    from sqlalchemy import make_url

    name = "lossweep_test_" + secrets.token_hex(4)
    admin = sqlalchemy.create_engine(
        make_url(server.url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(server.url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def fresh_database(postgres):
    """A new, empty database on any reachable server (dropped afterwards), as a URL."""
    with _database_on(postgres) as url:
        yield url


@pytest.fixture
def fresh_databases(postgres):
    """A function making new, empty databases on any reachable server (all dropped afterwards), as URLs."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(_database_on(postgres))


@pytest.fixture
def fresh_password_database(password_postgres):
    """A new, empty database on the password-checking cluster: its URL carries a password to keep secret."""
    with _database_on(password_postgres) as url:
        yield url


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium browser (Playwright ``Browser``), shared by the session."""
    path = os.environ.get("LOSSWEEP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not os.path.isfile(path):
        _unavailable("no Chromium installed (install Debian's chromium or set $LOSSWEEP_CHROMIUM)")
    try:
        from playwright import sync_api
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
