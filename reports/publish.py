"""``reports.build --publish``: the verdict, in each study's note on the shared optuna-dashboard.

Everyone who opens the store in optuna-dashboard (``python -m study.dashboard``) then reads the same
conclusion next to the trials. The note is written with optuna-dashboard's own note API
(``optuna_dashboard.save_note``), which keeps a study's note in its *system attributes*: a version
counter ``dashboard:note_ver`` and the Markdown body split into ``dashboard:note_str:<i>`` chunks of
2,045 characters. Saving again bumps the version and rewrites the chunks (surplus ones are blanked,
not added), so publishing twice replaces the note instead of growing the store, on SQLite and
PostgreSQL alike. A study without objective names gets "val mAP", so the dashboard does not say
"Objective 0".
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from collections.abc import Sequence
from typing import Any

from reports.cards import Card
from reports.roles import Roles
from reports.tables import DASH, DISPERSION_COLUMNS, estimate, number
from study.errors import UsageError

METRIC_NAME = "val mAP"
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>|#!~])")


def md(text: Any) -> str:
    """``text`` with Markdown and HTML punctuation escaped: study names come from the store."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def md_prose(text: str) -> str:
    """A generated paragraph: escape everything but keep its `backticked` commands as code spans."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1 else md(p) for p in parts)


def _card_markdown(card: Card) -> list[str]:
    lines = [
        f"### {md(card.pair)} · {md(card.header)} · {md(card.role)}",
        "",
        f"**{md(card.words)}** ({md(card.evidence)})",
        "",
    ]
    if card.refusal:
        lines += [f"> **Refused:** {md_prose(card.refusal)}", ""]
    lines += [md_prose(card.verdict), ""]
    if card.measures:
        lines += [
            f"| measure | {md(card.a)} | {md(card.b)} | contrast | more robust | method |",
            "|---|---|---|---|---|---|",
        ]
        for m in card.measures:
            contrast = f"{m.contrast_kind} {m.contrast}".strip() + (f", {m.p}" if m.p else "")
            name = f"**{md(m.name)}** (primary)" if m.primary else md(m.name)
            cells = [name, md(m.value_a), md(m.value_b), md(contrast), md(m.better), md(m.method) or DASH]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _summary_markdown(s: Any, roles: Roles) -> list[str]:
    label = roles.label(s.name)
    head = f"## This study: {md(s.name)}" + (f" ({md(label)})" if label != s.name else "")
    lines = [head, ""]
    if s.name in roles.floors:
        users = [roles.label(w) for w, f in roles.floor_of.items() if f == s.name]
        lines.append(
            "Seeds-mode study: the default configuration over seeds, "
            + (f"the seed noise floor of {md(', '.join(users))}." if users else "not matched to any sweep.")
        )
    lines.append(
        f"- {s.n_complete:,} of {s.n_trials:,} finished trials complete "
        f"({s.n_diverged:,} diverged, {s.n_failed:,} failed)"
    )
    basis = "failure-aware" if s.survivor_stats else "complete trials"
    stats = ", ".join(f"{name} {estimate(s.stats.get(key))}" for key, name in DISPERSION_COLUMNS if key in s.stats)
    if stats:
        lines.append(f"- validation mAP ({basis}): {md(stats)}")
    if s.survivor_stats:
        survivors = ", ".join(
            f"{name} {estimate(s.survivor_stats.get(key))}"
            for key, name in DISPERSION_COLUMNS
            if key in s.survivor_stats
        )
        lines.append(f"- survivors only: {md(survivors)}")
        if s.n_diverged:
            source = f" ({md(s.floor_source)})" if getattr(s, "floor_source", "") else ""
            lines.append(f"- diverged trials enter the failure-aware figures at mAP {number(s.floor_value)}{source}")
    lines.append(f"- divergence rate {md(estimate(s.divergence_rate, percent=True))}")
    if s.seed_floor_std is not None:
        lines.append(f"- seed noise floor: std {number(s.seed_floor_std, 4)}")
    for key, e in s.variance_components.items():
        lines.append(f"- variance component σ²_{md(key)}: {md(estimate(e, 5))} (R = {s.n_replicates})")
    lines.append("")
    return lines


def note(name: str, summary: Any, study_cards: Sequence[Card], roles: Roles, *, storage: str, when: str) -> str:
    """The Markdown note of one study: the verdicts of its comparisons, then its own summary."""
    lines = ["## lossweep verdict", ""]
    if study_cards:
        for card in study_cards:
            lines += _card_markdown(card)
    else:
        lines += ["This study is in no comparison of this report.", ""]
    if summary is not None:
        lines += _summary_markdown(summary, roles)
    lines.append(
        f"_Published by `python -m reports.build --publish` on {md(when)} from {md(storage)}; "
        "publish again to replace this note._"
    )
    return "\n".join(lines) + "\n"


def _reason(exc: BaseException, url: str) -> str:
    """One line, no password: why the store refused the note."""
    from sqlalchemy.engine import make_url

    cause: BaseException | None = exc
    while cause is not None and getattr(cause, "orig", None) is None and cause.__cause__ is not None:
        cause = cause.__cause__
    cause = getattr(cause, "orig", None) or cause or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    password = make_url(url).password
    return text.replace(str(password), "***") if password else text


def publish(url: str, analysis: Any, cards: Sequence[Card], roles: Roles, *, shown: str) -> int:
    """Write every analysed study's note (and objective name) into the store at ``url``; returns how many.

    Raises UsageError (one line) when the store cannot be written: a read-only file or database, a
    dropped connection, a study that vanished meanwhile.
    """
    import optuna
    import sqlalchemy.exc
    from optuna_dashboard import save_note

    from study.storage import open_storage

    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    storage = open_storage(url, read_only=True)  # the store exists; create no tables, only write notes
    written = 0
    try:
        for name in analysis.summaries:
            study_cards = [c for c in cards if name in (c.study_a, c.study_b)]
            body = note(name, analysis.summaries.get(name), study_cards, roles, storage=shown, when=when)
            study = optuna.load_study(study_name=name, storage=storage)
            save_note(study, body)
            if not study.metric_names:
                with warnings.catch_warnings():  # experimental in some Optuna releases
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.set_metric_names([METRIC_NAME])
            written += 1
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError, OSError, KeyError) as exc:
        raise UsageError(
            f"cannot publish the verdict to {shown} ({written} of {len(analysis.summaries)} notes written): "
            f"{_reason(exc, url)}; the report itself was written"
        ) from None
    finally:
        storage.remove_session()
        storage.engine.dispose()
    return written
