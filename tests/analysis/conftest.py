"""Fixtures: real SQLite Optuna stores in the lossweep format, built with analysis.testing."""

from __future__ import annotations

import warnings

import optuna
import pytest

from analysis.testing import StudySpec, build_store

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def make_store(tmp_path):
    """``make_store(*specs) -> url``: a fresh SQLite store holding the simulated studies."""
    counter = iter(range(1000))

    def make(*specs: StudySpec, seed: int = 0) -> str:
        url = f"sqlite:///{tmp_path / f'store-{next(counter)}.db'}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            build_store(url, list(specs), seed=seed)
        return url

    return make
