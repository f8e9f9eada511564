"""Fixtures for the report tests: real Optuna SQLite stores written the way ``study.run`` writes them."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from benchmarks.report import make_store

SCRIPT = "<script>alert(1)</script>"
N_BOOT = 100  # enough for intervals to exist; the tests check structure, not precision

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def store(tmp_path: Path) -> Callable[..., str]:
    """``store(studies, n_trials, **kwargs) -> url`` of a fresh SQLite store in ``tmp_path``."""
    counter = iter(range(1000))

    def make(studies: dict[str, str] | None = None, n_trials: int = 30, **kwargs) -> str:
        url = f"sqlite:///{tmp_path / f'store{next(counter)}.db'}"
        return make_store(url, studies, n_trials, **kwargs)

    return make


@dataclass
class CliRun:
    """One ``python -m reports.build`` run in-process: its exit code, output and what it left behind."""

    code: int
    stdout: str
    stderr: str
    output: Path
    rc_changed: set[str]


@pytest.fixture(scope="session")
def pair_report(tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """ASL and RAL (30 trials each) reported by the CLI with no --storage and no --studies.

    The store is named only by ``$LOSSWEEP_STORAGE``, so the run also proves the default storage and
    the default study selection; matplotlib's rcParams are compared before and after it.
    """
    import matplotlib

    from reports.build import main

    folder = tmp_path_factory.mktemp("pair")
    url = make_store(f"sqlite:///{folder / 'store.db'}", {"asl": "asl", "ral": "ral"}, 30, mode="matched")
    output = folder / "sub" / "report.html"
    before = {k: repr(v) for k, v in matplotlib.rcParams.items()}
    old = os.environ.get("LOSSWEEP_STORAGE")
    os.environ["LOSSWEEP_STORAGE"] = url
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["-o", str(output), "--n-boot", str(N_BOOT)])
    finally:
        if old is None:
            os.environ.pop("LOSSWEEP_STORAGE", None)
        else:
            os.environ["LOSSWEEP_STORAGE"] = old
    after = {k: repr(v) for k, v in matplotlib.rcParams.items()}
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return CliRun(code, out.getvalue(), err.getvalue(), output, changed)


@pytest.fixture(scope="session")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-study report whose study name, class names and fail reasons all contain a script tag.

    The two studies were also run with different seeds, so the comparison is unfair and the report
    must say so.
    """
    from reports.build import build_report

    folder = tmp_path_factory.mktemp("hostile")
    url = f"sqlite:///{folder / 'store.db'}"
    hostile = {"class_names": [f"{SCRIPT}{i}" for i in range(12)], "failed": 3, "fail_reasons": (f"boom {SCRIPT}",)}
    make_store(url, {SCRIPT: "asl"}, 20, seed=0, **hostile)
    make_store(url, {"ral": "ral"}, 20, seed=1, **hostile)
    return build_report(url, None, folder / "report.html", n_boot=N_BOOT)


@pytest.fixture(scope="session")
def postgres_url(password_postgres):
    """A PostgreSQL store URL with a password (tests/conftest.py's password-checking cluster)."""
    from sqlalchemy import make_url

    return make_url(password_postgres.url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
