"""Real stores and tiny trial settings for the study.run tests.

PostgreSQL comes from tests/conftest.py: $LOSSWEEP_TEST_POSTGRES_URL (CI starts a throwaway
cluster), else a password-checking cluster of its own started with initdb/pg_ctl, else the tests
skip -- unless $LOSSWEEP_REQUIRE_SERVERS=1, when a missing server fails them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
    "--grace-period", "20",  # long enough that a busy machine's late heartbeat never fails a live trial
    "--quiet",
]  # fmt: skip


@pytest.fixture
def postgres_url(fresh_password_database):
    """A new, empty PostgreSQL database per test on a password-checking server (tests/conftest.py), so
    the tests can check the password is never shown; dropped afterwards."""
    return fresh_password_database


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One data/embedding cache for every test, so embeddings are computed once."""
    return str(tmp_path_factory.mktemp("lossweep-cache"))


@pytest.fixture(scope="session")
def tiny(cache_dir) -> list[str]:
    return [*TINY, "--cache-dir", cache_dir]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(extra or {})}
    env.pop("LOSSWEEP_STORAGE", None)
    return env


def run_cli(
    args: list[str], cwd: Path | str, *, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m study.run ARGS`` in a subprocess, as a user runs it (a bound for a machine many times slower)."""
    env = _env(env)
    return subprocess.run(
        [sys.executable, "-m", "study.run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def start_cli(args: list[str], cwd: Path | str, *, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = _env(env)
    # A shell's background job (`pytest ... &`) ignores SIGINT and its children inherit that; give the
    # CLI the default disposition, as in a terminal's foreground, so a test's SIGINT acts as Ctrl-C.
    return subprocess.Popen(
        [sys.executable, "-m", "study.run", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(scope="session")
def start():
    return start_cli
