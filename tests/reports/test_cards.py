"""Verdict cards, study labels, seed floors and failure-aware panels, on analyses whose new fields are
filled by hand (the statistics behind them are analysis's to test) and on older analyses without them."""

from __future__ import annotations

import re

import numpy as np

from analysis import figures
from reports import charts, roles, tables
from reports.build import render

FLOOR = 0.05  # as in conftest.filled


def section(text: str, name: str) -> str:
    start = text.index(f'<section id="{name}"')
    return text[start : text.index("</section>", start)]


def cards_of(text: str) -> list[str]:
    return re.findall(r'<article class="card .*?</article>', section(text, "verdict"), re.S)


def test_labels_floors_and_a_mismatched_floor(plain_analysis):
    order = tables.study_order(plain_analysis)
    r = roles.roles(plain_analysis, order)
    assert r.labels == {
        "asl-full": "ASL (full)",
        "ral-full": "RAL (full)",
        "asl-matched": "ASL (matched)",
        "ral-matched": "RAL (matched)",
        "asl-seeds": "ASL seeds",
        "ral-seeds-10ep": "RAL seeds",
    }
    assert r.sweeps == ["asl-full", "asl-matched", "ral-full", "ral-matched"]
    assert r.floor_of == {"asl-full": "asl-seeds", "asl-matched": "asl-seeds"}
    assert any("RAL seeds differs from RAL (full) in trial.train.epochs" in n for n in r.floor_notes)
    assert roles.mode_header("matched", ["gamma_pos", "gamma_neg", "clip"]) == "matched space: γ⁺, γ⁻, τ"
    assert roles.symbol("alpha_2") == "α₂" and roles.mode_header("full", ["lam"]) == "full space"


def test_cards_lead_with_the_primary_comparison_and_show_measures(plain_analysis, filled_analysis):
    text = render(filled_analysis)
    assert re.search(r"<h1>RAL vs ASL: hyperparameter sensitivity</h1>", text)
    assert "asl-matched" not in re.search(r"<h1>.*?</h1>", text).group(0)
    first, second = cards_of(text)
    assert '<span class="role-badge primary">primary</span>' in first
    assert "matched space: γ⁺, γ⁻, τ" in first and "ral-matched vs asl-matched" in first
    assert "RAL is less sensitive to its hyperparameters than ASL" in first
    assert "p = 0.004" in first  # the primary test's p-value beside the evidence
    rows = re.findall(r"<tr(?: class=\"primary\")?><td>(.*?)</tr>", first, re.S)
    assert len(rows) == 4
    spread = rows[0]
    assert "spread (MAD ratio)" in spread and "primary" in spread
    assert re.search(r"0\.021</td><td class=\"num\">0\.012</td>", spread)
    assert "RAL / ASL</span> 0.57 [0.45, 0.71]" in spread and "<td>RAL</td>" in spread
    assert "permutation test of log MAD ratio" in spread and "lower is more robust" in spread
    assert "15.0 %" in rows[1] and "0.0 %" in rows[1] and "Boschloo" in rows[1]
    assert "<td>—</td>" in rows[3]  # tunability: no significant difference, so neither is more robust
    assert '<span class="role-badge secondary">secondary (Holm-adjusted)</span>' in second
    assert "full space" in second and "No verdict" in second
    assert "No directional verdict:</strong> different swept-parameter sets" in second
    assert "<code>--space-mode matched</code>" in second  # the refusal's command, as code, escaped first


def test_failure_aware_and_survivor_rows_and_variance_components(plain_analysis, filled_analysis):
    text = render(filled_analysis)
    dispersion = section(text, "dispersion")
    assert 'failure-aware<br><span class="ci">diverged at 0.050</span>' in dispersion  # asl-matched diverged
    assert dispersion.count("<td>survivors</td>") == len(plain_analysis.summaries)
    assert "Hyperparameter variance apart from seed variance" in dispersion
    assert re.search(
        r"<td>RAL \(matched\)</td><td class=\"num\">3</td><td class=\"num\">0\.00020 \[0\.00010, 0\.00030\]", dispersion
    )
    assert "Left: failure-aware, every diverged trial enters at" in section(
        text, "distributions"
    )  # the caption says what the left panel is


def test_older_analyses_degrade_to_the_legacy_contrasts(legacy_analysis):
    text = render(legacy_analysis)
    assert re.search(r"<h1>RAL vs ASL: hyperparameter sensitivity</h1>", text)
    first = cards_of(text)[0]
    assert "matched space: γ⁺, γ⁻, τ" in first  # the primary is chosen by rule: ASL vs RAL, matched first
    assert 'role-badge secondary">secondary</span>' in cards_of(text)[1]  # no Holm adjustment claimed
    ratio = next(c for c in legacy_analysis.comparisons if c.a == "asl-matched").std_ratio
    expected = "less sensitive" if ratio.high < 1 else ("more sensitive" if ratio.low > 1 else "not distinguishable")
    assert expected in re.search(r'<strong class="finding \w+">([^<]+)</strong>', first).group(1).lower()
    assert "std of validation mAP" in first and "<td>survivors</td>" not in section(text, "dispersion")
    assert "<th>values</th>" not in section(text, "dispersion")


def test_seed_floors_are_bands_not_rival_violins(plain_analysis, filled_analysis):
    a = filled_analysis
    order = tables.study_order(a)
    r = roles.roles(a, order)
    bands = charts.floors(a, r)
    assert set(bands) == {"asl-full", "asl-matched"} and bands["asl-full"].label == "ASL seeds"
    columns, sentence = charts.value_columns(a, r.sweeps)
    assert [c for c, _ in columns] == [figures.FAILURE_AWARE, "value"] and "0.050" in sentence
    fig = figures.distributions(a.trials, r.sweeps, labels=r.labels, floors=bands, columns=columns)
    assert len(fig.axes) == 2
    ticks = [t.get_text().split("\n")[0] for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["ASL (full)", "ASL (matched)", "RAL (full)", "RAL (matched)"]
    # The failure-aware panel reaches down to the floor value; the survivors panel does not.
    assert fig.axes[0].get_ylim()[0] <= FLOOR < fig.axes[1].get_ylim()[0]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["seed floor: the loss's default config, mean ± std over 12 seeds", "diverged trial (floor value)"]
    ecdf = figures.ecdf(a.trials, r.sweeps, labels=r.labels, floors=bands, columns=columns)
    names = [t.get_text() for t in ecdf.legends[0].get_texts()]
    assert names == ["ASL (full)", "ASL (matched)", "RAL (full)", "RAL (matched)", "ASL seeds (mean ± std)"]
    eb = figures.expected_best(a.expected_best, r.sweeps, labels=r.labels, floors=bands)
    assert [ax.get_title() for ax in eb.axes] == ["failure-aware", "survivors"]
    assert [t.get_text() for t in eb.legends[0].get_texts()][-1] == "ASL seeds (default config)"
    seeds_mean = a.trials.loc[(a.trials["study"] == "asl-seeds") & (a.trials["status"] == "complete"), "value"].mean()
    assert np.isclose(bands["asl-full"].mean, seeds_mean)
