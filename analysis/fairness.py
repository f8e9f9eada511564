"""Whether two studies can be compared: same data, protocol, backbone, budget, sampler, seed and space.

A spread ratio between two losses means something only when everything but the loss was held fixed;
a different data set, backbone checkpoint or trial budget changes mAP's spread on its own. Every
difference is listed so that the report can say exactly why a comparison is unfair.
"""

from __future__ import annotations

from typing import Any

from analysis.results import Difference

# Trial settings that do not change a result (where and how fast it ran), left out of the check.
OPERATIONAL = {"device", "cache_dir", "embed_batch_size", "num_threads", "loader_workers"}
# Study configuration keys compared (besides the trial settings).
CONFIG_KEYS = ("n_trials", "sampler", "seed", "space_mode", "nuisance", "replicates")


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k in sorted(value):
            _flatten(f"{prefix}.{k}" if prefix else str(k), value[k], out)
    else:
        out[prefix] = tuple(value) if isinstance(value, list) else value


def comparable_settings(settings: dict[str, Any], n_finished: int | None = None) -> dict[str, Any]:
    """The flat ``setting -> value`` map two studies must agree on."""
    config = got if isinstance(got := settings.get("config"), dict) else {}
    flat: dict[str, Any] = {"data_fingerprint": settings.get("data_fingerprint")}
    trial = got if isinstance(got := config.get("trial"), dict) else {}
    trial_flat: dict[str, Any] = {}
    _flatten("trial", {k: v for k, v in trial.items() if k not in OPERATIONAL}, trial_flat)
    flat.update(trial_flat)
    for key in CONFIG_KEYS:
        flat[key] = config.get(key)
    for key in ("class_names", "train_positives"):
        value = settings.get(key)
        flat[key] = tuple(value) if isinstance(value, list) else value
    if n_finished is not None:
        flat["finished_trials"] = n_finished
    return flat


def _space_params(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``name -> {low, high, log}`` of a stored search space (a list of ParamSpec dicts, or a mapping)."""
    space = got if isinstance(got := settings.get("search_space"), dict) else {}
    params = space.get("params") or []
    if isinstance(params, dict):
        params = [{"name": k, **v} for k, v in params.items() if isinstance(v, dict)]
    return {
        str(p["name"]): {k: p.get(k) for k in ("low", "high", "log")}
        for p in params
        if isinstance(p, dict) and "name" in p
    }


def _shared_ranges(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    """Ranges of hyperparameters both search spaces sweep (e.g. gamma_neg and clip for ASL and RAL)."""
    space_a, space_b = _space_params(a), _space_params(b)
    return [
        Difference(f"search_space.{name}", space_a[name], space_b[name])
        for name in sorted(set(space_a) & set(space_b))
        if space_a[name] != space_b[name]
    ]


def swept(settings: dict[str, Any]) -> tuple[str, ...]:
    """The swept hyperparameters of a stored search space, in declaration order."""
    return tuple(_space_params(settings))


# Differences that are flagged but do not refuse a directional verdict: the spread test handles
# unequal budgets, and a different study seed is a different (independent) draw of the seed noise.
FLAG_ONLY = {"n_trials", "finished_trials", "seed"}
# Settings a seeds-mode study may differ in from the sweep it is the noise floor of.
FLOOR_EXEMPT = {"n_trials", "finished_trials", "sampler", "seed", "space_mode", "swept_parameters"}
SPACE_FILLING = ("qmc", "random", "grid")


def refusal_differences(diffs: list[Difference]) -> list[Difference]:
    """The differences that refuse a directional verdict (all but budget and seed)."""
    return [d for d in diffs if d.setting not in FLAG_ONLY]


def floor_differences(sweep: dict[str, Any], seeds: dict[str, Any]) -> list[Difference]:
    """Why a seeds-mode study cannot be ``sweep``'s noise floor: data, protocol, epochs, backbone, replicates..."""
    return [
        d
        for d in differences(sweep, seeds)
        if d.setting not in FLOOR_EXEMPT and not d.setting.startswith("search_space")
    ]


def differences(
    settings_a: dict[str, Any],
    settings_b: dict[str, Any],
    n_finished_a: int | None = None,
    n_finished_b: int | None = None,
) -> list[Difference]:
    """Every setting on which the two studies differ (an empty list: a fair comparison)."""
    flat_a = comparable_settings(settings_a, n_finished_a)
    flat_b = comparable_settings(settings_b, n_finished_b)
    # Where the contents are identified by a digest, the file's location may differ between machines.
    located = {
        "trial.checkpoint_sha256": ("trial.checkpoint",),
        "data_fingerprint": ("trial.data.path", "trial.data.image_root"),
    }
    for digest, paths in located.items():
        if flat_a.get(digest) is not None and flat_a.get(digest) == flat_b.get(digest):
            for key in paths:
                flat_a.pop(key, None)
                flat_b.pop(key, None)
    out = []
    for key in sorted(set(flat_a) | set(flat_b)):
        va, vb = flat_a.get(key), flat_b.get(key)
        if va != vb:
            out.append(
                Difference(key, list(va) if isinstance(va, tuple) else va, list(vb) if isinstance(vb, tuple) else vb)
            )
    out.extend(_shared_ranges(settings_a, settings_b))
    swept_a, swept_b = swept(settings_a), swept(settings_b)
    if set(swept_a) != set(swept_b):
        out.append(Difference("swept_parameters", list(swept_a), list(swept_b)))
    return out


def describe(diffs: list[Difference], limit: int = 6) -> str:
    """'data_fingerprint (ab12… vs cd34…), n_trials (200 vs 100)' for a verdict."""

    def short(v: Any) -> str:
        text = str(v)
        return text if len(text) <= 24 else text[:21] + "…"

    parts = [f"{d.setting} ({short(d.value_a)} vs {short(d.value_b)})" for d in diffs[:limit]]
    if len(diffs) > limit:
        parts.append(f"and {len(diffs) - limit} more")
    return ", ".join(parts)
