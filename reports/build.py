"""``python -m reports.build``: one self-contained HTML report of the studies in a store.

The report leads with one verdict card per comparison (the primary one first) and then shows the
evidence for it: whether the comparison is fair, the distributions of validation mAP (seed floors as
reference bands, failure-aware beside survivors-only), dispersion with confidence intervals,
expected best mAP against the tuning budget, importances and marginal effects, where failures
happen, and how the spread splits over head / medium / tail classes. Figures are inline PNGs and the
CSS is inline, so the file opens from disk with no network; the numbers behind it are written next
to it as CSV/JSON (``Analysis.write``). ``--publish`` also writes each study's verdict into its note on
optuna-dashboard (:mod:`reports.publish`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import markupsafe

from study.errors import UsageError, cli_entry

if TYPE_CHECKING:
    from reports.roles import Roles

PROG = "reports.build"
DEFAULT_OUTPUT = "lossweep-report.html"
DEFAULT_DELTA = 0.01  # near-best margin: a trial is "near best" when its mAP >= best - delta
TEMPLATE = "report.html.j2"


def files_dir(output: Path) -> Path:
    """Where the CSV/JSON results go: ``lossweep-report_files/`` beside ``lossweep-report.html``."""
    return output.with_name(output.stem + "_files")


def code_spans(text: Any) -> markupsafe.Markup:
    """Escape ``text``, then show `backticked` commands as ``<code>`` (escaping first keeps it safe)."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        # Study names, class names and fail reasons come from the store: escape everything, always.
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["code"] = code_spans
    return env


def _check_store(url: str, studies: Sequence[str] | None, redacted: str) -> list[str]:
    """The study names in the store; one-line errors for a missing, unreadable or empty store."""
    import optuna

    from study.storage import open_storage

    storage = open_storage(url, read_only=True)  # UsageError for a missing file or unreachable server
    try:
        names = optuna.study.get_all_study_names(storage=storage)
    finally:
        storage.remove_session()
    if not names:
        raise UsageError(
            f"the store {redacted} holds no studies: run `python -m study.run --loss asl` (and `--loss ral`) first"
        )
    if studies:
        unknown = [s for s in studies if s not in names]
        if unknown:
            raise UsageError(f"no study named {', '.join(unknown)} in {redacted}; it holds: {', '.join(names)}")
    return names


def _verdict_context(analysis: Any, order: list[str], roles: Roles) -> dict[str, Any]:
    """The plain-words opening: one verdict card per comparison, or why there is none and what to run."""
    from reports.cards import cards

    comparisons = list(analysis.comparisons)
    reason = None
    if not comparisons:
        if not order:
            reason = "The store has no finished trials, so there is nothing to compare yet."
        elif len(roles.sweeps) <= 1:
            name = roles.sweeps[0] if roles.sweeps else order[0]
            summary = analysis.summaries.get(name)
            loss = summary.loss if summary else (analysis.settings.get(name, {}).get("loss") or "")
            other = "ral" if loss != "ral" else "asl"
            reason = (
                f"Only one swept study ({name}) is in this report, so there is no comparison: robustness is "
                f"relative. Run the other loss against the same store, e.g. `python -m study.run --loss "
                f"{other} --trials {_budget(analysis, name)}`, then rebuild this report."
            )
        else:
            reason = (
                f"The studies {', '.join(order)} were not compared: a comparison needs complete trials in "
                "both studies (see the notes below). Run more trials and rebuild this report."
            )
    few = [s for s in analysis.summaries.values() if not s.enough]
    return {
        "cards": cards(comparisons, analysis.summaries, analysis.settings, roles),
        "no_comparison": reason,
        "few": few,
        "at_a_glance": [_glance(s, roles) for s in analysis.summaries.values()],
    }


def _glance(s: Any, roles: Roles) -> str:
    """One sentence per study: how many trials count and how spread their mAP is."""
    from reports.tables import estimate, number

    label = roles.label(s.name)
    label = label if label == s.name else f"{label} ({s.name})"
    if s.name in roles.floors:
        users = [roles.label(w) for w, f in roles.floor_of.items() if f == s.name]
        std = s.stats.get("std")
        role = f"seed noise floor of {', '.join(users)}" if users else "seeds-mode study, not matched to any sweep"
        return (
            f"{label}: {role}; the default configuration over {s.n_complete:,} seeds, "
            f"validation mAP std {estimate(std)}."
        )
    text = f"{label}: {s.n_complete:,} of {s.n_trials:,} trials complete"
    if s.n_diverged or s.n_failed:
        text += f" ({s.n_diverged:,} diverged, {s.n_failed:,} failed)"
    mean, std, best = (s.stats.get(k) for k in ("mean", "std", "best"))
    if s.n_complete and mean is not None:
        basis = "failure-aware " if s.survivor_stats else ""
        text += (
            f"; {basis}validation mAP mean {number(mean.value)}, std {estimate(std)}, "
            f"best {number(best.value if best else None)}"
        )
    return text + "."


def study_legend(analysis: Any, roles: Roles) -> list[tuple[str, str, str]]:
    """(short label, full study name, role) for the header: figures use the labels."""
    rows = []
    for name in roles.sweeps:
        s = analysis.summaries.get(name)
        mode = f"{s.space_mode} space" if s is not None and s.space_mode else "sweep"
        rows.append((roles.label(name), name, mode))
    for name in roles.floors:
        users = [roles.label(w) for w, f in roles.floor_of.items() if f == name]
        rows.append((roles.label(name), name, "noise floor" + (f" of {', '.join(users)}" if users else " (unmatched)")))
    return rows


def _budget(analysis: Any, name: str) -> int:
    config = analysis.settings.get(name, {}).get("config") or {}
    try:
        return int(config.get("n_trials") or 200)
    except (TypeError, ValueError):
        return 200


def dashboard_command(storage: str) -> str:
    """The command that opens the same store in optuna-dashboard, to browse single trials."""
    import shlex

    return f"python -m study.dashboard --storage {shlex.quote(storage)}" if storage else "python -m study.dashboard"


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for package in ("lossweep", "optuna", "pandas", "scipy", "matplotlib", "seaborn", "jinja2"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def render(
    analysis: Any,
    *,
    results: list[Path] | None = None,
    output: Path | None = None,
    timings: dict[str, float] | None = None,
) -> str:
    """The report's HTML for an :class:`analysis.results.Analysis` (no store access)."""
    from reports import charts, tables
    from reports.cards import title
    from reports.roles import roles

    timings = timings if timings is not None else {}
    order = tables.study_order(analysis)
    study_roles = roles(analysis, order)
    start = time.perf_counter()
    figures = charts.charts(analysis, order, study_roles)
    timings["figures"] = time.perf_counter() - start

    start = time.perf_counter()
    relative = []
    for path in results or []:
        try:
            relative.append(Path(path).resolve().relative_to(output.parent).as_posix() if output else Path(path).name)
        except ValueError:
            relative.append(Path(path).as_posix())
    packages, versions = tables.version_rows(analysis.settings, order)
    verdict = _verdict_context(analysis, order, study_roles)
    context = {
        "title": title(verdict["cards"], study_roles),
        "legend": study_legend(analysis, study_roles),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "studies": order,
        "labels": study_roles.labels,
        "storage": analysis.storage,
        "dashboard": dashboard_command(analysis.storage),
        "messages": list(analysis.messages),
        **verdict,
        "comparison_rows": tables.comparison_rows(analysis.comparisons),
        "fairness": tables.fairness_rows(analysis.settings, order),
        "summaries": tables.dispersion_rows(analysis.summaries.values(), study_roles.labels),
        "variance": tables.variance_rows(analysis.summaries.values(), study_roles.labels),
        "summary_map": analysis.summaries,
        "dispersion_columns": [label for _, label in tables.DISPERSION_COLUMNS],
        "status_counts": tables.status_counts(analysis.trials, order),
        "fail_reasons": tables.fail_reasons(analysis.trials),
        "tiers": tables.tier_rows(analysis.trials, analysis.summaries.values()),
        "spaces": tables.search_space_rows(analysis.settings, order),
        "settings_json": {s: tables.settings_json(analysis.settings, s) for s in order if s in analysis.settings},
        "packages": packages,
        "versions": versions,
        "report_versions": _versions(),
        "charts": figures,
        "results": relative,
        "estimate": tables.estimate,
        "number": tables.number,
    }
    html = _environment().get_template(TEMPLATE).render(**context)
    timings["render"] = time.perf_counter() - start
    return html


def _analyse(url: str, studies: list[str] | None, *, n_boot: int, delta: float) -> Any:
    """``analysis.analyse`` with ``delta`` passed on where that analysis accepts it (older ones do not)."""
    import inspect

    import analysis as analysis_pkg

    kwargs: dict[str, Any] = {"n_boot": n_boot, "seed": 0}
    accepts = "delta" in inspect.signature(analysis_pkg.analyse).parameters
    if accepts:
        kwargs["delta"] = delta
    result = analysis_pkg.analyse(url, studies, **kwargs)
    if not accepts and delta != DEFAULT_DELTA:
        result.messages.append(f"--delta {delta:g} was not used: this analysis has no near-best fraction")
    return result


def build_report(
    storage: str | None,
    studies: list[str] | None,
    output: str | os.PathLike,
    *,
    n_boot: int = 2000,
    delta: float = DEFAULT_DELTA,
    publish: bool = False,
    timings: dict[str, float] | None = None,
) -> Path:
    """Analyse ``studies`` (all lossweep studies when None) in ``storage`` and write the HTML report to ``output``.

    ``storage`` None means ``$LOSSWEEP_STORAGE`` or the default SQLite file (``study.storage.resolve_url``).
    The results behind the report (CSV/JSON) are written to ``<output stem>_files/``. ``delta`` is the
    near-best margin (P(mAP >= best - delta)). ``publish`` also writes each study's summary and verdict
    into its optuna-dashboard note in the store (:mod:`reports.publish`). ``timings``, when given,
    receives the seconds spent per stage (load, analyse, figures, render, write, publish). Returns the
    path of the report. Raises UsageError for an empty or unreadable store, an unknown study, or a
    store that refuses the notes.
    """
    from study.storage import redact, resolve_url

    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    if not (0 < delta < 1):
        raise UsageError(f"--delta must be between 0 and 1 (a margin of validation mAP), got {delta:g}")
    timings = timings if timings is not None else {}
    output = Path(output)
    if output.is_dir():
        raise UsageError(f"{output} is a folder: pass the report's file name, e.g. -o {output / DEFAULT_OUTPUT}")
    url = resolve_url(storage)
    redacted = redact(url)
    studies = list(studies) if studies else None

    start = time.perf_counter()
    _check_store(url, studies, redacted)
    timings["load"] = time.perf_counter() - start
    try:  # before the analysis, so that a bad -o fails in a second, not after minutes of bootstrapping
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {output}: {exc.strerror or exc}") from exc

    start = time.perf_counter()
    result = _analyse(url, studies, n_boot=n_boot, delta=delta)
    result.storage = redact(result.storage or url)
    loading = float(getattr(result, "timings", {}).get("load", 0.0))  # analyse reads the store first
    timings["load"] += loading
    timings["analyse"] = time.perf_counter() - start - loading

    try:
        start = time.perf_counter()
        results = result.write(files_dir(output))
        write_results = time.perf_counter() - start

        html = render(result, results=results, output=output.resolve(), timings=timings)

        start = time.perf_counter()
        output.write_text(html, encoding="utf-8")
    except OSError as exc:  # a read-only folder, a full disk: the user's to fix, not a traceback
        raise UsageError(f"cannot write the report to {output}: {exc.strerror or exc}") from exc
    timings["write"] = time.perf_counter() - start + write_results

    if publish:
        from reports.cards import cards
        from reports.publish import publish as publish_notes
        from reports.roles import roles
        from reports.tables import study_order

        start = time.perf_counter()
        study_roles = roles(result, study_order(result))
        report_cards = cards(result.comparisons, result.summaries, result.settings, study_roles)
        publish_notes(url, result, report_cards, study_roles, shown=redacted)
        timings["publish"] = time.perf_counter() - start
    return output


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (via cli_entry) instead of usage + error."""

    def error(self, message: str):
        raise UsageError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Build one self-contained HTML report of the lossweep studies in "
        "a store: verdict, fairness, dispersion with CIs, importances, failures.",
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="SQLAlchemy URL of the Optuna store (default: $LOSSWEEP_STORAGE, else sqlite:///lossweep.db)",
    )
    parser.add_argument(
        "--studies",
        metavar="A,B",
        default=None,
        help="comma-separated study names (default: every lossweep study in the store)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        default=DEFAULT_OUTPUT,
        help=f"report file (default: {DEFAULT_OUTPUT}); results go to <name>_files/ beside it",
    )
    parser.add_argument(
        "--n-boot",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap resamples for the confidence intervals (default: 2000)",
    )
    parser.add_argument(
        "--delta",
        type=float,
        default=DEFAULT_DELTA,
        metavar="D",
        help=f"near-best margin of validation mAP: the share of trials within D of the best (default: {DEFAULT_DELTA})",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also write each study's summary and verdict into its note on optuna-dashboard (needs write access)",
    )
    return parser


@cli_entry(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    studies = None
    if args.studies is not None:
        studies = [s.strip() for s in args.studies.split(",") if s.strip()]
        if not studies:
            raise UsageError("--studies is empty: pass comma-separated study names, e.g. --studies asl,ral")
    path = build_report(args.storage, studies, args.output, n_boot=args.n_boot, delta=args.delta, publish=args.publish)
    print(f"wrote {path} (results in {files_dir(path)}/)")
    if args.publish:
        print("published each study's verdict to its note (see it with `python -m study.dashboard`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
