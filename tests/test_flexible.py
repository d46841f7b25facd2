"""Flexible capacity on headroom series whose answers are known in closed form."""

import numpy as np
import pandas as pd
import pytest

from siting import UsageError
from siting.flexible import curtailment_rate, flexible_capacity


def hourly(values, start="2021-01-01"):
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="h"))


def one_year_with_outages(blocks=4, block_hours=22):
    """10 MW of headroom all year, except ``blocks`` runs of zero headroom."""
    values = np.full(8760, 10.0)
    for block in range(blocks):
        start = 1000 + block * 2000
        values[start : start + block_hours] = 0.0
    return hourly(values)


def test_load_up_to_the_constant_headroom_is_curtailed_only_in_the_zero_hours():
    series = one_year_with_outages()  # 88 of 8760 hours at zero: rate 88/8760 ≈ 1.005 %
    share = 88 / 8760
    table = flexible_capacity(series, limits=(0.005, share, 0.05)).set_index("limit")
    assert table.at[0.005, "load_mw"] == pytest.approx(0.0)  # any load is curtailed ~1 % of the time
    assert table.at[share, "load_mw"] == pytest.approx(10.0, abs=0.011)
    # above 10 MW the rate is share + (1 - share)(L - 10)/L; solve for 5 %
    expected = 10.0 / (1 - (0.05 - share) / (1 - share))
    assert table.at[0.05, "load_mw"] == pytest.approx(expected, abs=0.011)


def test_events_and_hours_are_counted_per_year():
    table = flexible_capacity(one_year_with_outages(), limits=(0.0101,)).iloc[0]
    assert table["load_mw"] == pytest.approx(10.0, abs=0.011)
    assert table["events_per_year"] == 4
    assert table["mean_event_hours"] == 22 and table["max_event_hours"] == 22
    assert table["curtailed_hours_per_year"] == 88
    assert table["hours_ge_50pct_served"] == 0  # in those hours nothing is served


def test_rate_is_averaged_over_calendar_years():
    first = np.full(8760, 10.0)
    first[:876] = 0.0  # 10 % of the first year
    second = np.full(8760, 10.0)  # none of the second
    series = hourly(np.concatenate([first, second]), start="2021-01-01")
    rate = curtailment_rate(series.to_numpy(), series.index.year.to_numpy(), 5.0)
    assert rate == pytest.approx(0.05)


def test_quarter_hour_series_count_hours_not_steps():
    values = np.full(4 * 8760, 10.0)
    values[:40] = 4.0  # ten hours where a 10 MW load keeps 40 %
    series = pd.Series(values, index=pd.date_range("2021-01-01", periods=len(values), freq="15min"))
    row = flexible_capacity(series, limits=(0.01,)).iloc[0]
    assert row["load_mw"] > 10.0
    ten = flexible_capacity(series, limits=(0.0007,)).iloc[0]
    assert ten["load_mw"] == pytest.approx(10.0, abs=0.011)
    assert ten["curtailed_hours_per_year"] == pytest.approx(10.0)
    assert ten["hours_ge_50pct_served"] == 0 and ten["max_event_hours"] == pytest.approx(10.0)


def test_bad_series_are_refused():
    with pytest.raises(UsageError, match="DatetimeIndex"):
        flexible_capacity(pd.Series([1.0, 2.0]))
    with pytest.raises(UsageError, match="NaN"):
        flexible_capacity(hourly([1.0, np.nan, 2.0]))
    with pytest.raises(UsageError, match="limits"):
        flexible_capacity(hourly([1.0, 2.0]), limits=(1.5,))
