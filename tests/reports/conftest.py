"""Fixtures for the report tests: real Optuna SQLite stores written the way ``study.run`` writes them."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import pytest

from analysis import analyse
from analysis.results import Estimate, Measure
from analysis.testing import StudySpec, build_store
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


FLOOR = 0.05  # the chance-level mAP diverged trials enter at, in the hand-filled analysis


@pytest.fixture(scope="session")
def plain_analysis(tmp_path_factory):
    """ASL and RAL in matched and full mode, each loss's seeds-mode floor, and one floor run differently."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cards') / 'store.db'}"
    specs = [
        StudySpec("asl-full", "asl", 40, "full", sensitivity=0.08),
        StudySpec("ral-full", "ral", 40, "full", sensitivity=0.05),
        StudySpec("asl-matched", "asl", 40, "matched", sensitivity=0.08, diverge_rate=0.15),
        StudySpec("ral-matched", "ral", 40, "matched", sensitivity=0.04),
        StudySpec("asl-seeds", "asl", 12, "seeds"),
        StudySpec(
            "ral-seeds-10ep",
            "ral",
            12,
            "seeds",
            overrides={},
        ),
    ]
    build_store(url, specs)
    # The RAL floor was trained for 10 epochs, its sweeps for 30: it must not be drawn as their floor.
    import optuna

    study = optuna.load_study(study_name="ral-seeds-10ep", storage=url)
    config = study.user_attrs["config"]
    config["trial"]["train"]["epochs"] = 10
    study.set_user_attr("config", config)
    return analyse(url, n_boot=50, seed=0)


def filled(plain):
    """The same analysis with every field of the failure-aware, multi-measure contract filled by hand."""
    a = dataclasses.replace(plain)
    trials = plain.trials.copy()
    aware = trials["value"].astype(float)
    aware = aware.where(trials["status"] != "diverged", FLOOR).where(trials["status"] != "failed", math.nan)
    a.trials = trials.assign(value_failure_aware=aware)
    a.expected_best = pd.concat(
        [
            plain.expected_best.assign(basis="failure-aware", mean=plain.expected_best["mean"] - 0.01),
            plain.expected_best.assign(basis="survivors"),
        ],
        ignore_index=True,
    )
    summaries = {}
    for name, s in plain.summaries.items():
        summaries[name] = dataclasses.replace(
            s,
            floor_value=FLOOR,
            survivor_stats=dict(s.stats),
            stats={k: Estimate(e.value - 0.001, e.low - 0.001, e.high - 0.001) for k, e in s.stats.items()},
            n_replicates=3 if name == "ral-matched" else 1,
            variance_components=(
                {"hp": Estimate(2e-4, 1e-4, 3e-4), "seed": Estimate(3e-5, 1e-5, 6e-5), "interaction": Estimate(1e-5)}
                if name == "ral-matched"
                else {}
            ),
        )
    a.summaries = summaries
    comps = []
    for c in plain.comparisons:
        matched = c.a == "asl-matched"
        measures = [
            Measure(
                "spread",
                "spread (MAD ratio)",
                0.021,
                0.012,
                Estimate(0.57, 0.45, 0.71),
                kind="ratio",
                higher_is_more_robust=False,
                p_value=0.004,
                better="b",
                primary=True,
                method="permutation test of log MAD ratio",
            ),
            Measure(
                "divergence_rate",
                "divergence rate",
                0.15,
                0.0,
                Estimate(-0.15, -0.27, -0.05),
                higher_is_more_robust=False,
                p_value=0.01,
                better="b",
                method="Boschloo exact test",
            ),
            Measure(
                "near_best",
                "near-best fraction (δ = 0.01)",
                0.2,
                0.35,
                Estimate(0.15, 0.02, 0.28),
                p_value=0.03,
                better="b",
                method="Newcombe interval",
            ),
            Measure("tunability", "tunability", 0.012, 0.009, Estimate(-0.003, -0.008, 0.002), method="bootstrap"),
        ]
        comps.append(
            dataclasses.replace(
                c,
                direction="less sensitive" if matched else "no verdict",
                mode="matched" if matched else "full",
                swept=("gamma_pos", "gamma_neg", "clip"),
                primary=matched,
                p_value=0.004 if matched else 0.2,
                measures=measures if matched else [],
                refusal=""
                if matched
                else "different swept-parameter sets (3 vs 6 dimensions): use `--space-mode matched`",
            )
        )
    comps.sort(key=lambda c: c.primary)  # the primary comparison last: the report must still lead with it
    a.comparisons = comps
    return a


@pytest.fixture(scope="session")
def filled_analysis(plain_analysis):
    """``plain_analysis`` with the new contract's fields filled by hand (see :func:`filled`)."""
    return filled(legacy(plain_analysis))


def legacy(plain):
    """``plain`` as an analysis from before the failure-aware contract: every new field at its default."""
    a = dataclasses.replace(plain)
    a.trials = plain.trials.drop(columns=["value_failure_aware"], errors="ignore")
    eb = plain.expected_best
    if "basis" in eb:
        eb = eb[eb["basis"] != "failure-aware"] if (eb["basis"] == "survivors").any() else eb
        eb = eb.drop(columns=["basis"])
    a.expected_best = eb.reset_index(drop=True)
    a.summaries = {
        name: dataclasses.replace(
            s,
            stats=dict(s.survivor_stats or s.stats),
            survivor_stats={},
            floor_value=math.nan,
            variance_components={},
            n_replicates=1,
            sampler="",
            swept=(),
        )
        for name, s in plain.summaries.items()
    }
    a.comparisons = [
        dataclasses.replace(
            c,
            direction="not distinguishable",
            mode="",
            swept=(),
            primary=False,
            p_value=math.nan,
            measures=[],
            refusal="",
        )
        for c in plain.comparisons
    ]
    return a


@pytest.fixture(scope="session")
def legacy_analysis(plain_analysis):
    """``plain_analysis`` with the new contract's fields at their defaults, as an older analysis reads."""
    return legacy(plain_analysis)
