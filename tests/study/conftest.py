"""Real stores and tiny trial settings for the study.run tests.

PostgreSQL: $LOSSWEEP_TEST_POSTGRES_URL (CI starts a throwaway cluster), else a cluster of our own
started with initdb/pg_ctl as the postgres user, else the tests skip -- unless
$LOSSWEEP_REQUIRE_SERVERS=1, when a missing server fails them.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Tiny settings: a few hundred 32x32 synthetic images, timm's smallest test network, few epochs.
TINY = [
    "--data-num-images", "240",
    "--data-num-classes", "6",
    "--data-imbalance-ratio", "10",
    "--data-image-size", "32",
    "--backbone", "test_resnet",
    "--epochs", "3",
    "--batch-size", "64",
    "--embed-batch-size", "64",
    "--devices", "cpu",
    "--heartbeat-interval", "1",
    "--grace-period", "3",
    "--quiet",
]  # fmt: skip


def _unavailable(reason: str):
    if os.environ.get("LOSSWEEP_REQUIRE_SERVERS") == "1":
        pytest.fail(f"PostgreSQL is required ($LOSSWEEP_REQUIRE_SERVERS=1) but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["su", "postgres", "-s", "/bin/bash", "-c", shlex.join(cmd)]


@pytest.fixture(scope="session")
def postgres_server():
    """URL of a PostgreSQL server's maintenance database (``postgres``)."""
    url = os.environ.get("LOSSWEEP_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdbs or shutil.which("su") is None:
        _unavailable("no PostgreSQL binaries (initdb) installed")
    bindir = os.path.dirname(initdbs[-1])
    root = tempfile.mkdtemp(prefix="lossweep-study-pg-")
    try:
        shutil.chown(root, "postgres")
    except (LookupError, PermissionError) as exc:
        _unavailable(f"cannot run PostgreSQL as the postgres user: {exc}")
    port = _free_port()
    data = f"{root}/data"
    try:
        subprocess.run(_as_postgres([f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust"]), check=True, capture_output=True)
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
        subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-l", f"{root}/log", "-w", "-o", opts, "start"]), check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')[-300:]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database of its own for each test."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    name = "lossweep_study_" + uuid.uuid4().hex[:12]
    admin = sqlalchemy.create_engine(make_url(postgres_server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return make_url(postgres_server).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One data/embedding cache for every test, so embeddings are computed once."""
    return str(tmp_path_factory.mktemp("lossweep-cache"))


@pytest.fixture
def tiny(cache_dir) -> list[str]:
    return [*TINY, "--cache-dir", cache_dir]


def run_cli(args: list[str], cwd: Path | str, *, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m study.run ARGS`` in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("LOSSWEEP_STORAGE", None)
    return subprocess.run([sys.executable, "-m", "study.run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start_cli(args: list[str], cwd: Path | str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("LOSSWEEP_STORAGE", None)
    return subprocess.Popen([sys.executable, "-m", "study.run", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def start():
    return start_cli
