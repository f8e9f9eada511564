"""Reading lossweep studies from an Optuna store into one tidy frame (a row per trial).

Reads are bulk: for an RDB store, one SQLAlchemy Core query per table over Optuna's own table
definitions (``optuna.storages._rdb.models``, through ``study.optuna_internals``), which skips the ORM objects that make
``get_all_trials`` spend most of its time building and expiring instances (7x faster at 10,000
trials: 3 s against 21 s on a busy 2-core machine, benchmarks/analysis_speed.py); per-class AP lists
are not read at all. Any other
storage, or any error on that path (a future schema), falls back to ``get_all_trials``. The store
format is documented in docs/store-format.md; a study not made by lossweep is loaded with what it
has and a message says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, cast

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

STATUSES = ("complete", "diverged", "failed")
# User attributes kept out of the tidy frame: per-class lists (large) and bookkeeping.
_LIST_ATTRS = ("val_per_class_ap", "test_per_class_ap", "seeds")


@dataclass
class LoadedStudy:
    """One study as read from the store (internal: what analyse needs beyond the tidy frame)."""

    name: str
    loss: str
    space_mode: str
    direction: str
    settings: dict[str, Any]
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    n_unfinished: int = 0
    messages: list[str] = field(default_factory=list)


def _open(storage: str | optuna.storages.BaseStorage | None) -> tuple[optuna.storages.BaseStorage, str]:
    """The storage and its URL as shown to users (password redacted); None: the default store."""
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage, type(storage).__name__
    if storage is not None and (not isinstance(storage, str) or not storage):
        raise ValueError(f"storage must be a store URL such as sqlite:///lossweep.db; got {storage!r}")
    from study.errors import UsageError
    from study.storage import open_storage, redact, resolve_url  # optuna + sqlalchemy only, no torch

    try:
        url = resolve_url(storage)
        return open_storage(url, read_only=True), redact(url)
    except UsageError as exc:  # library callers get the documented ValueError; the CLIs print either in one line
        raise ValueError(str(exc)) from None


@dataclass
class _Trial:
    """The parts of a FrozenTrial the loader reads (what the bulk reader builds)."""

    number: int
    state: TrialState
    value: float | None
    params: dict[str, Any] = field(default_factory=dict)
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    datetime_start: Any = None
    datetime_complete: Any = None


def _bulk_trials(store: optuna.storages.BaseStorage, study_ids: list[int]) -> dict[int, list[_Trial]] | None:
    """All trials of the studies, one Core query per table; None where this path does not apply."""
    engine = getattr(store, "engine", None)
    if not isinstance(store, optuna.storages.RDBStorage) or engine is None:
        return None
    try:
        import sqlalchemy as sa
        from optuna.distributions import json_to_distribution

        from study.optuna_internals import rdb_models

        models: Any = rdb_models()
        if models is None:
            return None

        trials_t = models.TrialModel.__table__
        params_t = models.TrialParamModel.__table__
        values_t = models.TrialValueModel.__table__
        attrs_t = models.TrialUserAttributeModel.__table__
        out: dict[int, list[_Trial]] = {sid: [] for sid in study_ids}
        by_id: dict[int, _Trial] = {}
        with engine.connect() as conn:
            in_studies = trials_t.c.study_id.in_(study_ids)
            for row in conn.execute(
                sa.select(
                    trials_t.c.trial_id,
                    trials_t.c.study_id,
                    trials_t.c.number,
                    trials_t.c.state,
                    trials_t.c.datetime_start,
                    trials_t.c.datetime_complete,
                )
                .where(in_studies)
                .order_by(trials_t.c.study_id, trials_t.c.number)
            ):
                state = row.state if isinstance(row.state, TrialState) else TrialState[str(row.state)]
                trial = _Trial(
                    row.number, state, None, datetime_start=row.datetime_start, datetime_complete=row.datetime_complete
                )
                by_id[row.trial_id] = trial
                out[row.study_id].append(trial)
            ids = sa.select(trials_t.c.trial_id).where(in_studies).scalar_subquery()
            for row in conn.execute(
                sa.select(values_t.c.trial_id, values_t.c.value, values_t.c.value_type).where(
                    values_t.c.trial_id.in_(ids), values_t.c.objective == 0
                )
            ):
                by_id[row.trial_id].value = models.TrialValueModel.stored_repr_to_value(row.value, row.value_type)
            dist_cache: dict[str, BaseDistribution] = {}
            for row in conn.execute(
                sa.select(
                    params_t.c.trial_id, params_t.c.param_name, params_t.c.param_value, params_t.c.distribution_json
                ).where(params_t.c.trial_id.in_(ids))
            ):
                dist = dist_cache.get(row.distribution_json)
                if dist is None:
                    dist = dist_cache[row.distribution_json] = json_to_distribution(row.distribution_json)
                trial = by_id[row.trial_id]
                trial.params[row.param_name] = dist.to_external_repr(row.param_value)
                trial.distributions[row.param_name] = dist
            for row in conn.execute(
                sa.select(attrs_t.c.trial_id, attrs_t.c.key, attrs_t.c.value_json).where(
                    attrs_t.c.trial_id.in_(ids), attrs_t.c.key.not_in(_LIST_ATTRS)
                )
            ):
                by_id[row.trial_id].user_attrs[row.key] = json.loads(row.value_json)
        return out
    except Exception:  # an Optuna whose schema or models differ: the public API still works
        return None


def _stored_loss(attrs: dict[str, Any]) -> str:
    """The loss a study records (docs/store-format.md: its ``loss`` attribute); "unknown" when it has none.

    Never guessed from the study's name: any loss the catalogue knows, a plugin's included, can be
    studied, so no fixed list of names could tell them apart.
    """
    loss = attrs.get("loss") or (attrs.get("config") or {}).get("loss")
    return loss.lower() if isinstance(loss, str) and loss else "unknown"


def _status(trial: FrozenTrial | _Trial) -> str:
    stored = trial.user_attrs.get("status")
    if trial.state == TrialState.COMPLETE:
        return "complete"
    if stored == "diverged":
        return "diverged"
    return "failed"


def _fail_reason(trial: FrozenTrial | _Trial) -> str | None:
    reason = trial.user_attrs.get("fail_reason")
    if reason is None and trial.state == TrialState.PRUNED:
        return "pruned"
    if reason is None and trial.state == TrialState.FAIL:
        return trial.system_attrs.get("fail_reason")
    return reason


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def _row(study: LoadedStudy, trial: FrozenTrial | _Trial) -> dict[str, Any]:
    attrs = trial.user_attrs
    row: dict[str, Any] = {
        "study": study.name,
        "loss": study.loss,
        "number": trial.number,
        "state": trial.state.name,
        "status": _status(trial),
        "value": trial.value if trial.state == TrialState.COMPLETE else math.nan,
    }
    for name, value in trial.params.items():
        row[f"param_{name}"] = value
    for key, value in attrs.items():
        if key in _LIST_ATTRS or key in row or key in ("replicate_values",):
            continue
        if _is_scalar(value):
            row[key] = value
    row["fail_reason"] = _fail_reason(trial)
    seconds = attrs.get("seconds")
    row["seconds"] = float(seconds) if isinstance(seconds, (int, float)) else math.nan
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        row["duration"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    else:
        row["duration"] = math.nan
    row["design_index"] = attrs.get("design_index")
    reps = attrs.get("replicate_values")
    row["replicate_values"] = [math.nan if v is None else float(v) for v in reps] if isinstance(reps, list) else []
    return row


def read_studies(
    storage: str | optuna.storages.BaseStorage | None, studies: list[str] | None = None, *, bulk: bool = True
) -> tuple[pd.DataFrame, dict[str, LoadedStudy], str]:
    """The tidy frame, the loaded studies and the redacted store URL (see :func:`load_studies`).

    ``bulk=False`` reads through Optuna's ``get_all_trials`` only (the reference the bulk path is
    tested and benchmarked against).
    """
    store, shown = _open(storage)
    frozen = {s.study_name: s for s in store.get_all_studies()}
    if not frozen:
        raise ValueError(f"no studies in {shown}; run `python -m study.run` first or pass another --storage")
    if studies is not None:
        if isinstance(studies, str):
            studies = [studies]
        unknown = [s for s in studies if s not in frozen]
        if unknown:
            raise ValueError(
                f"no study named {', '.join(map(repr, unknown))} in {shown}; studies present: "
                f"{', '.join(sorted(frozen))}"
            )
        names = list(dict.fromkeys(studies))
    else:
        names = sorted(frozen)
    rows: list[dict[str, Any]] = []
    loaded: dict[str, LoadedStudy] = {}
    study_ids = {n: store.get_study_id_from_name(n) for n in names}
    bulk_read = _bulk_trials(store, list(study_ids.values())) if bulk else None
    for name in names:
        fs = frozen[name]
        attrs = dict(fs.user_attrs)
        config = got if isinstance(got := attrs.get("config"), dict) else {}
        direction = fs.directions[0].name.lower() if fs.directions else "maximize"
        study = LoadedStudy(
            name=name,
            loss=_stored_loss(attrs),
            space_mode=str(config.get("space_mode", "full")),
            direction=direction,
            settings=attrs,
        )
        if "lossweep" not in attrs:
            study.messages.append(
                f"study {name!r} was not made by lossweep (no 'lossweep' attribute): loaded with what it has "
                f"(loss taken as {study.loss!r}, space mode {study.space_mode!r}); fairness cannot be checked"
            )
        if len(fs.directions) > 1:
            study.messages.append(f"study {name!r} is multi-objective: only its first objective is analysed")
        if direction == "minimize":
            study.messages.append(
                f"study {name!r} minimises its objective; lossweep's statistics treat higher values as better "
                "(best = maximum), so read its best and expected-best values accordingly"
            )
        trials = (
            bulk_read[study_ids[name]]
            if bulk_read is not None
            else store.get_all_trials(study_ids[name], deepcopy=False)
        )
        for trial in trials:
            if not trial.state.is_finished():
                study.n_unfinished += 1
                continue
            for pname, dist in trial.distributions.items():
                study.distributions.setdefault(pname, dist)
            rows.append(_row(study, trial))
        if study.n_unfinished:
            study.messages.append(
                f"study {name!r} has {study.n_unfinished} trial(s) still running or waiting; they are left out"
            )
        loaded[name] = study
    frame = _tidy(pd.DataFrame.from_records(rows), names)
    return frame, loaded, shown


def _tidy(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    base = ["study", "loss", "number", "state", "status", "value"]
    for col in base + ["fail_reason", "seconds", "duration", "design_index", "replicate_values"]:
        if col not in frame:
            frame[col] = pd.Series(dtype=object if col in ("fail_reason", "replicate_values") else float)
    columns = cast(list[str], list(frame.columns))  # the records' keys: strings
    params = sorted(c for c in columns if c.startswith("param_"))
    metrics = sorted(c for c in columns if c.startswith(("val_", "test_")))
    known = ["fail_reason", "seconds", "duration", "design_index", "replicate_values"]
    # Other attributes sorted: the order rows come back in differs between databases.
    rest = known + sorted(c for c in columns if c not in set(base + params + metrics + known))
    frame = frame[base + params + metrics + rest]
    for col in metrics + ["value", "seconds", "duration"] + params:
        converted = pd.to_numeric(frame[col], errors="coerce")
        if converted.notna().sum() == frame[col].notna().sum():  # numeric column (categorical params stay)
            frame[col] = converted.astype(float)
    frame["study"] = pd.Categorical(frame["study"], categories=names)
    frame["status"] = pd.Categorical(frame["status"], categories=list(STATUSES))
    frame["number"] = frame["number"].astype("Int64")
    return frame.sort_values(["study", "number"], kind="stable").reset_index(drop=True)


def load_studies(
    storage: str | None, studies: list[str] | None = None
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Read studies into a tidy frame and their stored settings.

    Args:
        storage: the store URL (SQLite or PostgreSQL); None: ``$LOSSWEEP_STORAGE`` or sqlite:///lossweep.db.
        studies: names of the studies to read; None reads every study in the store.

    Returns:
        ``(trials, settings)``: ``trials`` has a row per finished trial with columns ``study``,
        ``loss``, ``number``, ``state``, ``status`` ("complete" | "diverged" | "failed"),
        ``value`` (validation mAP, NaN unless complete), ``param_<name>`` per hyperparameter,
        every stored scalar metric (``val_*``, ``test_*``), ``fail_reason``, ``seconds``,
        ``duration`` (wall-clock seconds from Optuna's timestamps), ``design_index`` and
        ``replicate_values`` (a list per trial). ``settings`` maps each study to its stored user
        attributes (docs/store-format.md).

    Raises:
        ValueError: no store at the URL, an empty store, or study names that are not in it (the message
            lists those present).
    """
    frame, loaded, _ = read_studies(storage, studies)
    return frame, {name: study.settings for name, study in loaded.items()}
