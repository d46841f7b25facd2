import numpy as np
import pandas as pd
import pytest

from siting import UsageError
from siting.sources.peak import net_load, net_peak_step, operating_point, profile_values, study_cases


def test_simbench_defaults_to_the_high_load_planning_case(hv_mixed):
    point = operating_point(hv_mixed)
    assert point.label == "case:hL"
    assert np.allclose(point.values[("sgen", "p_mw")], 0.0)  # hL: no generation
    assert np.allclose(point.values[("ext_grid", "vm_pu")], 1.025)
    assert point.values[("load", "p_mw")].sum() == pytest.approx(521.61)


def test_profiles_net_peak_is_far_below_the_planning_case(hv_mixed):
    point = operating_point(hv_mixed, "netpeak")
    step = net_peak_step(hv_mixed.profiles)
    assert point.time == hv_mixed.profiles.index[step]
    peak_load = net_load(hv_mixed.profiles).iloc[step]
    assert peak_load == net_load(hv_mixed.profiles).max()
    # the SimBench profiles are scaled well below hL: the choice of operating point matters
    assert point.values[("load", "p_mw")].sum() < 0.6 * 521.61


def test_explicit_time_and_study_case(hv_mixed):
    point = operating_point(hv_mixed, "2016-01-12T18:00")
    assert point.time == pd.Timestamp("2016-01-12 18:00")
    row = hv_mixed.profiles.loc[point.time, ("load", "p_mw")]
    assert np.allclose(point.values[("load", "p_mw")], row.to_numpy())
    assert operating_point(hv_mixed, "case:lW").values[("load", "p_mw")].sum() == pytest.approx(130.4025)


def test_grid_without_cases_or_profiles_uses_the_model_values(oberrhein):
    assert study_cases(oberrhein) is None
    point = operating_point(oberrhein)
    assert point.label == "model values" and point.values == {}
    with pytest.raises(UsageError, match="no time-series profiles"):
        operating_point(oberrhein, "netpeak")


def test_texas_peak_is_the_hourly_net_load_peak(texas):
    point = operating_point(texas)
    assert point.label.startswith("netpeak 2016-0")
    assert point.time.month in (7, 8)


def test_a_local_time_the_clock_shows_twice_is_the_earlier_step(hv_mixed):
    """SimBench profiles are local wall-clock time: 02:00–02:45 repeat on 2016-10-30."""
    point = operating_point(hv_mixed, "2016-10-30T02:15")
    steps = np.flatnonzero(hv_mixed.profiles.index == pd.Timestamp("2016-10-30 02:15"))
    assert len(steps) == 2 and point.label == "2016-10-30 02:15 (first of 2)"
    first = profile_values(hv_mixed, int(steps[0]))
    np.testing.assert_array_equal(point.values[("load", "p_mw")], first[("load", "p_mw")])
