"""Intervals over few seeds and pairing on the data seed (mmgnn.analysis.stats, tables).

Every expected interval is computed by hand: ``mean ± t(0.975, n-1) · sd / sqrt(n)`` with the
Student-t quantiles t(0.975, 1) = 12.7062, t(0.975, 2) = 4.30265, t(0.975, 4) = 2.77645.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest

from mmgnn import analysis as rp

METRIC = "test/fused/acc"
COLUMN = f"metrics.{METRIC}"


def test_t_interval_of_three_seeds_by_hand():
    # mean 0.01, sd 0.01, half-width 4.30265 * 0.01 / sqrt(3) = 0.024841 (a percentile
    # bootstrap of 3 values never leaves [0, 0.02])
    low, high = rp.t_interval([0.0, 0.01, 0.02])
    assert low == pytest.approx(0.01 - 0.024841, abs=1e-6)
    assert high == pytest.approx(0.01 + 0.024841, abs=1e-6)
    assert rp.t_interval([0.0, float("nan"), 0.01, 0.02]) == (low, high)  # NaN left out
    # two values: sd 0.014142, se 0.01, half-width 12.7062 * 0.01
    assert rp.t_interval([0.01, -0.01]) == pytest.approx((-0.127062, 0.127062), abs=1e-6)


def test_t_interval_without_spread():
    assert rp.t_interval([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3))
    for few in ([], [0.5], [float("nan"), 0.5]):
        assert all(math.isnan(v) for v in rp.t_interval(few)), few


def _runs(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    """Finished runs ``(skip, data.seed, seed, acc)`` as a runs frame (values as strings, as
    :func:`mmgnn.analysis.runs.load_runs` gives them)."""
    return pd.DataFrame(
        [{"status": "FINISHED", "skip": skip, "data.seed": str(d), "seed": str(s),
          "overrides": f"skip={skip} data.seed={d} seed={s}", COLUMN: acc}
         for skip, d, s, acc in rows])


# (data.seed, seed): sum - none = +0.10 at (0, 0), +0.05 at (1, 0), +0.12 at (0, 1)
PAIRED = _runs([("none", 0, 0, 0.50), ("sum", 0, 0, 0.60), ("none", 1, 0, 0.80),
                ("sum", 1, 0, 0.85), ("none", 0, 1, 0.52), ("sum", 0, 1, 0.64)])


def test_data_seed_is_a_replicate_not_a_factor():
    assert rp.REPLICATES == ("data.seed", "seed")
    assert rp.factors_of(PAIRED) == ["skip"]


def test_pairs_share_data_seed_and_seed():
    diffs = rp.paired_differences(PAIRED, ["skip"], METRIC, {"skip": "none"}).iloc[0]
    # three pairs, one per (data.seed, seed): diffs 0.10, 0.05, 0.12; mean 0.09, sd 0.036056,
    # se 0.020817, half-width 4.30265 * 0.020817 = 0.089567
    assert diffs["pairs"] == 3 and diffs["wins"] == 3
    assert diffs["diff"] == pytest.approx(0.09)
    assert diffs["diff_ci_low"] == pytest.approx(0.09 - 0.089567, abs=1e-6)
    assert diffs["diff_ci_high"] == pytest.approx(0.09 + 0.089567, abs=1e-6)
    ranks = rp.group_ranks(PAIRED, ["skip"], "skip", METRIC)
    assert len(ranks) == 6 and set(ranks["group_size"]) == {2}  # 3 groups of 2


def test_same_seed_other_data_seed_is_no_pair():
    runs = _runs([("none", 0, 0, 0.50), ("sum", 1, 0, 0.85)])
    diffs = rp.paired_differences(runs, ["skip"], METRIC, {"skip": "none"}).iloc[0]
    assert diffs["pairs"] == 0 and math.isnan(diffs["diff"])
    assert rp.group_ranks(runs, ["skip"], "skip", METRIC).empty


def test_marginal_interval_over_the_runs_of_a_level():
    runs = _runs([("none", 0, 0, 0.0), ("none", 0, 1, 0.01), ("none", 0, 2, 0.02), ("sum", 0, 0, 0.5)])
    effects = rp.marginal_effects(runs, ["skip"], METRIC).set_index("level")
    assert effects.loc["none", "n"] == 3
    assert effects.loc["none", "ci_low"] == pytest.approx(0.01 - 0.024841, abs=1e-6)
    assert effects.loc["none", "ci_high"] == pytest.approx(0.01 + 0.024841, abs=1e-6)
    assert math.isnan(effects.loc["sum", "ci_low"])  # one run: no interval


def test_effects_markdown_names_its_interval():
    runs = _runs([("none", 0, 0, 0.50), ("sum", 0, 0, 0.60), ("none", 0, 1, 0.52),
                  ("sum", 0, 1, 0.64), ("none", 0, 2, 0.55)])
    table = rp.effects_table(runs, ["skip"], METRIC, {"skip": "none"})
    text = rp.effects_markdown(table, METRIC)
    header = text.splitlines()[0]
    assert "mean ↑ [95% t-interval over runs]" in header
    assert "Δ vs baseline [95% t-interval over pairs]" in header
    # none: 0.50, 0.52, 0.55 -> mean 0.52333, sd 0.025166, half-width 4.30265 * 0.014530 = 0.062516
    assert "| none (baseline) | 3 | 0.5233 [0.4608, 0.5858] |" in text
    # sum: 0.60, 0.64 -> mean 0.62, sd 0.028284, half-width 12.7062 * 0.02 = 0.254124;
    # sum - none: 0.10, 0.12 -> mean 0.11, sd 0.014142, half-width 12.7062 * 0.01 = 0.127062
    assert "| sum | 2 | 0.6200 [0.3659, 0.8741] | 0.1100 [-0.0171, 0.2371] | 2 | 2 |" in text
    one = rp.effects_markdown(rp.effects_table(runs.iloc[:2], ["skip"], METRIC, {"skip": "none"}), METRIC)
    assert "| sum | 1 | 0.6000 [–, –] | 0.1000 [–, –] | 1 | 1 |" in one  # one value: no interval
