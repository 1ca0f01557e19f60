"""Control-chart rules on synthetic weekly series whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import anomalies
from meetinglib.analysis.anomalies import Flag

# Ten quiet weeks around 100: median 100, absolute deviations 0,1,1,2,2,1,1,0,3,2 -> MAD 1.
QUIET = [100.0, 101.0, 99.0, 102.0, 98.0, 101.0, 99.0, 100.0, 103.0, 98.0]
SIGMA = 1.4826  # 1.4826 x MAD
# beyond_limits widens sigma for the uncertainty of a median of 10 points
SPREAD = SIGMA * math.sqrt(1 + math.pi / 20)


def weekly(values: list[float]) -> pd.Series:
    index = pd.Index([f"2026-W{w:02d}" for w in range(1, len(values) + 1)], name="week")
    return pd.Series(values, index=index, dtype="float64")


def fmt(value: float) -> str:
    return f"{value:.1f}"


def test_robust_baseline_by_hand():
    base = anomalies.robust_baseline(weekly(QUIET))
    assert base.center == 100.0
    assert base.sigma == pytest.approx(SIGMA)
    assert (base.low, base.high, base.points) == (98.0, 103.0, 10)
    assert anomalies.robust_baseline(weekly([])) is None
    assert anomalies.robust_baseline(weekly(QUIET), sigma_floor=5.0).sigma == 5.0


def test_flat_series_raises_nothing():
    flat = weekly([50.0] * 12)
    assert anomalies.check(flat) == []
    assert anomalies.beyond_limits(flat) is None


def test_flat_history_and_a_different_week_is_flagged_outside_its_range():
    flag = anomalies.beyond_limits(weekly([50.0] * 11 + [51.0]))
    assert flag is not None and flag.direction == 1 and math.isinf(flag.score)
    assert (flag.low, flag.high) == (50.0, 50.0)


def test_step_is_flagged_with_its_size_in_sigmas():
    flag = anomalies.beyond_limits(weekly([*QUIET, 110.0]))
    assert flag.rule == "beyond_limits"
    assert flag.direction == 1
    assert flag.score == pytest.approx(10.0 / SPREAD)  # about 6.1 sigma
    assert flag.severity == "high"
    assert flag.center == 100.0 and flag.points == 10
    down = anomalies.beyond_limits(weekly([*QUIET, 95.0]))
    assert down.direction == -1
    assert down.score == pytest.approx(5.0 / SPREAD)  # about 3.0: medium
    assert down.severity == "medium"


def test_a_point_within_three_sigma_is_not_flagged():
    assert anomalies.beyond_limits(weekly([*QUIET, 104.0])) is None  # 4 / 1.6 = 2.5 sigma


def test_single_outlier_in_the_history_does_not_move_the_baseline():
    # a promotion week of 300 in the history: median and MAD barely move
    history = [*QUIET[:5], 300.0, *QUIET[5:]]
    base = anomalies.robust_baseline(weekly(history))
    assert base.center == 100.0
    assert base.sigma == pytest.approx(SIGMA)
    assert anomalies.check(weekly([*history, 101.0])) == []
    # and a real step after it is still seen, the sentence then says "σ above its median"
    flag = anomalies.beyond_limits(weekly([*history, 115.0]))
    assert flag is not None and flag.high == 300.0


def test_too_little_history_flags_nothing():
    short = weekly([100.0, 101.0, 99.0, 100.0, 500.0])  # 4 history points, 5 needed
    assert anomalies.beyond_limits(short) is None
    assert anomalies.run_on_one_side(short) is None
    assert anomalies.trend(short) is None
    assert anomalies.check(short) == []
    assert not anomalies.enough_history(short)
    assert anomalies.enough_history(weekly([*QUIET[:5], 500.0]))


def test_missing_weeks_are_skipped_and_a_missing_current_week_flags_nothing():
    gappy = weekly([np.nan, np.nan, *QUIET, 110.0])
    assert anomalies.beyond_limits(gappy).score == pytest.approx(10.0 / SPREAD)
    assert anomalies.check(weekly([*QUIET, np.nan])) == []


def test_sigma_floor_guards_against_a_history_too_quiet_by_chance():
    assert anomalies.beyond_limits(weekly([*QUIET, 110.0]), sigma_floor=5.0) is None


def test_trend_of_six():
    # a steady climb of 1 per week after a quiet stretch: the last six points rise, the total
    # change (5) is at least 2 sigma and the last point is above the center
    values = [100.0, 100.5, 99.5, 100.0, 99.5, 100.5, 101.0, 102.0, 103.0, 104.0, 105.0]
    flag = anomalies.trend(weekly(values))
    assert flag is not None
    assert (flag.rule, flag.direction, flag.severity) == ("trend", 1, "low")
    assert (flag.start, flag.value, flag.points) == (100.5, 105.0, 6)
    falling = anomalies.trend(weekly([-v for v in values]))
    assert falling.direction == -1


def test_five_steps_are_not_a_trend_of_six():
    # the last six: 101.5, 101, 102, 103, 104, 105 -> the first step falls
    values = [100.0, 100.5, 99.5, 100.0, 99.5, 101.5, 101.0, 102.0, 103.0, 104.0, 105.0]
    assert anomalies.trend(weekly(values)) is None


def test_return_to_normal_after_a_spike_is_not_a_trend():
    # falling for five weeks after a promotion peak, back to the usual level
    values = [100.0, 101.0, 99.0, 100.0, 140.0, 120.0, 110.0, 105.0, 101.0, 100.0]
    assert anomalies.trend(weekly(values)) is None


def test_run_of_eight_against_the_level_before_it():
    reference = [100.0, 101.0, 99.0, 100.0, 101.0, 99.0]  # median 100, MAD 1
    run = [102.0, 103.0, 101.5, 102.5, 104.0, 101.5, 103.0, 102.0]  # all above, median 102.25
    flag = anomalies.run_on_one_side(weekly(reference + run))
    assert flag is not None
    assert (flag.rule, flag.direction, flag.severity) == ("run", 1, "medium")
    assert flag.center == 100.0 and flag.points == 8
    assert flag.score == pytest.approx(2.25 / SIGMA)


def test_run_needs_its_reference_weeks_and_every_point_on_one_side():
    run = [102.0, 103.0, 101.5, 102.5, 104.0, 101.5, 103.0, 102.0]
    assert anomalies.run_on_one_side(weekly([100.0, 101.0, 99.0, 100.0, *run])) is None
    broken = [*run[:4], 99.5, *run[5:]]
    reference = [100.0, 101.0, 99.0, 100.0, 101.0, 99.0]
    assert anomalies.run_on_one_side(weekly(reference + broken)) is None


def test_check_orders_flags_most_severe_first():
    values = [100.0, 101.0, 99.0, 100.0, 101.0, 99.0, 100.0, 101.0, 102.0, 103.0, 104.0, 130.0]
    flags = anomalies.check(weekly(values))
    assert [f.rule for f in flags] == ["beyond_limits", "trend"]
    assert flags[0].severity == "high"


def test_adverse_depends_on_the_kpi_direction():
    up = Flag("beyond_limits", 1, "high", 8.0, 10.0, 5.0, 1.0, 4.0, 6.0, 9)
    assert anomalies.is_adverse(up, higher_is_better=False)
    assert not anomalies.is_adverse(up, higher_is_better=True)


def test_sentences_in_english_and_chinese():
    fell = Flag("beyond_limits", -1, "high", 9.0, 81.0, 91.0, 1.0, 88.0, 93.0, 12)
    assert (
        anomalies.describe(fell, "Carrier X: On-time delivery rate", fmt)
        == "Carrier X: On-time delivery rate fell to 81.0, below its 12-week range "
        "(88.0 to 93.0)."
    )
    assert anomalies.describe(fell, "承运商 X：准时签收率", fmt, "zh-CN") == (
        "承运商 X：准时签收率降至 81.0，低于过去 12 周的范围（88.0 至 93.0）。"
    )
    inside = Flag("beyond_limits", 1, "medium", 3.4, 120.0, 100.0, 5.0, 90.0, 300.0, 9)
    assert anomalies.describe(inside, "Backlog", fmt) == (
        "Backlog rose to 120.0, 3.4 σ above its 9-week median of 100.0."
    )
    trend = Flag("trend", 1, "low", 4.0, 105.0, 100.0, 1.0, 99.0, 104.0, 6, start=100.5)
    assert anomalies.describe(trend, "Handling time", fmt) == (
        "Handling time has risen 5 weeks in a row, from 100.5 to 105.0."
    )
    run = Flag("run", -1, "medium", 2.0, 97.0, 100.0, 1.0, 99.0, 101.0, 8, start=98.0)
    assert anomalies.describe(run, "CSAT", fmt) == (
        "CSAT has stayed below its earlier level of 100.0 for 8 weeks; now 97.0."
    )
