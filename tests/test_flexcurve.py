"""How many MW flexibility buys: sizing per level, the year under the obligation, bad input."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from siting import UsageError
from siting.fleet import FleetSettings, PowerModes
from siting.flexcurve import (
    BLIND_COLUMNS,
    CURVE_COLUMNS,
    flex_curve,
    joint_fleets,
    level_column,
    level_fleets,
    unused_over_year,
)
from siting.workload import DEMAND_COLUMNS
from tests.test_power_modes import _day

CAPACITY = pd.DataFrame(
    {
        "substation": [3, 17, 4, 8],
        "hc_n1_mw": [6.0, 2.0, 7.5, np.nan],
        "hc_n0_mw": [12.0, 4.0, 30.0, 9.0],
        "flex_1pct_mw": [25.0, 18.0, 40.0, 22.0],
    }
)


def test_levels_size_each_candidate_within_the_site_range():
    fleets = level_fleets(CAPACITY, ("firm", "peak", "flex-1"))
    assert fleets["firm"].to_dict("list") == {"substation": [3, 4], "size_mw": [6.0, 7.5]}
    assert fleets["peak"].to_dict("list") == {"substation": [3, 4, 8], "size_mw": [12.0, 20.0, 9.0]}
    assert fleets["flex-1"]["size_mw"].tolist() == [20.0, 18.0, 20.0, 20.0]
    only = level_fleets(CAPACITY, ("flex-1",), substations=[17])
    assert only["flex-1"]["substation"].tolist() == [17]
    assert level_column("flex-0.25") == "flex_0.25pct_mw" and level_column("firm") == "hc_n1_mw"


@pytest.mark.parametrize("level", ["flex-0", "flex-100", "flex-150", "flex--1", "flex-x"])
def test_a_flex_percentage_outside_0_100_is_refused(level):
    with pytest.raises(UsageError, match=rf"level '{level}': a flex percentage must be in \(0, 100\)"):
        level_column(level)


def test_levels_the_table_cannot_size_are_refused():
    with pytest.raises(UsageError, match="level flex-5: the capacity table has no flex_5pct_mw"):
        level_fleets(CAPACITY, ("flex-5",))
    with pytest.raises(UsageError, match="level 'n-2': use firm, peak or flex-<percent>"):
        level_fleets(CAPACITY, ("n-2",))


def test_a_demand_too_small_to_need_a_site_is_refused(hv_mixed):
    day = _day(hv_mixed, 1.0)
    demand = pd.DataFrame({DEMAND_COLUMNS[0]: 1.0, DEMAND_COLUMNS[1]: 1.0}, index=day.profiles.index)
    with pytest.raises(
        UsageError, match=r"demand: its peak, 2 tokens/s, is within one GPU's .* needs no site"
    ):
        flex_curve(day, level_fleets(CAPACITY, ("firm",)), demand=demand)


@pytest.mark.slow
def test_flexible_sizing_connects_more_and_keeps_the_obligation_all_day(hv_mixed):
    """Loads × 4.6 on the day of the peak: the flexible fleet connects four times the firm
    MW; under the obligation no step of the day breaks a limit, at a cost in served work."""
    day = _day(hv_mixed, 4.6)
    fleets = {
        "firm": pd.DataFrame({"substation": [3, 4], "size_mw": [5.0, 5.0]}),
        "flex-1": pd.DataFrame({"substation": [0, 1, 2, 3, 4, 5, 7, 8], "size_mw": 20.0}),
        "flex-5": pd.DataFrame(columns=["substation", "size_mw"]),
    }
    settings = FleetSettings(modes=PowerModes(max_depth=1.0, max_hours=24.0), peak_utilisation=1.0)
    curve = flex_curve(day, fleets, settings).set_index("level")
    assert list(curve.reset_index().columns) == CURVE_COLUMNS + BLIND_COLUMNS
    assert curve.at["flex-1", "connected_mw"] == 160.0 and curve.at["firm", "connected_mw"] == 10.0
    assert curve.at["flex-5", "sites"] == 0 and curve.at["flex-5", "served_tokens"] == 0
    assert (curve.loc[["firm", "flex-1"], "violation_steps"] == 0).all()
    # the grid binds at some steps and the sites flex there
    assert curve.at["flex-1", "grid_limited_steps"] > 0
    assert curve.at["flex-1", "capped_gpu_hours"] + curve.at["flex-1", "shutdown_gpu_hours"] > 0
    assert curve.at["flex-1", "served_tokens"] > 10 * curve.at["firm", "served_tokens"]
    assert curve.at["flex-1", "worst_loading_percent"] <= 100.0 + 1e-6
    # the same 160 MW dispatched blind break limits the obligation keeps; 10 firm MW break none
    assert curve.at["flex-1", "blind_violation_steps"] > 0
    assert curve.at["flex-1", "blind_worst_loading_percent"] > 100.0
    assert curve.at["firm", "blind_violation_steps"] == 0 and curve.at["flex-5", "blind_violation_steps"] == 0
    grid_aware_only = flex_curve(
        day, {"firm": fleets["firm"]}, dataclasses.replace(settings, policies=("grid-aware",))
    )
    assert list(grid_aware_only.columns) == CURVE_COLUMNS


def test_unused_mw_hours_over_the_day_of_the_peak(hv_mixed):
    """Loads × 4.6: at 17:45 HV1 Line 21 is near its rating, so no uniform growth fits there;
    over the day about a third of the MW-hours the grid could carry go unused."""
    day = _day(hv_mixed, 4.6)
    found = unused_over_year(day, fleet_mwh=1000.0)
    assert found["min_growth"] == 1.0 and found["at_top_share"] < 0.05
    assert 0.3 < found["unused_mwh_share"] < 0.45
    assert found["reachable_share"] == pytest.approx(1000.0 / found["unused_mwh"])
    hourly = unused_over_year(day, every=4)
    assert hourly["unused_mwh_share"] == pytest.approx(found["unused_mwh_share"], abs=0.03)
    with pytest.raises(UsageError, match="every 0"):
        unused_over_year(day, every=0)


def test_every_level_has_its_headline_labels():
    from siting.flexcurve import LEVELS
    from siting.report import FLEX_LEVEL_LABELS, HEADLINE_LABELS

    assert [level for level, _ in FLEX_LEVEL_LABELS] == list(LEVELS)
    assert all(f"flex_{level}_blind_violation_steps" in HEADLINE_LABELS for level in LEVELS)


@pytest.mark.slow
def test_joint_levels_are_the_selection_stage_under_each_criterion(illinois):
    """Two July weeks of the Illinois grid: each level's sites picked together are at most their
    own capacity, the level the study already picked is taken as it is, and the flexible fleet
    picked together connects more than the N-0 one and breaks no limit over the weeks."""
    from siting.capacity import CapacitySettings, substation_capacity
    from siting.selection import SelectionSettings, select_sites

    two_weeks = dataclasses.replace(illinois, profiles=illinois.profiles.iloc[4400:4736])
    capacity = substation_capacity(
        two_weeks, CapacitySettings(n1=False, year=True), substations=list(range(12))
    ).table
    settings = SelectionSettings(sites=4, criterion="peak", max_mw=60)
    picked = select_sites(two_weeks, capacity, settings)
    joint = joint_fleets(two_weeks, capacity, ("peak", "flex-1"), settings, picked=picked)
    each = level_fleets(capacity, ("peak", "flex-1"), max_mw=60)
    assert joint["peak"].to_dict("list") == picked.sites[["substation", "size_mw"]].to_dict("list")
    flexible = select_sites(two_weeks, capacity, dataclasses.replace(settings, criterion="flex-1"))
    assert joint["flex-1"].to_dict("list") == flexible.sites[["substation", "size_mw"]].to_dict("list")
    for level in ("peak", "flex-1"):
        alone = each[level].set_index("substation")["size_mw"]
        sized = joint[level].set_index("substation")["size_mw"]
        assert (sized <= alone[sized.index] + 1e-9).all()
    assert joint["flex-1"]["size_mw"].sum() > joint["peak"]["size_mw"].sum()
    curve = flex_curve(two_weeks, joint, FleetSettings()).set_index("level")
    assert (curve["violation_steps"] == 0).all()
    assert curve.at["flex-1", "connected_mw"] == pytest.approx(joint["flex-1"]["size_mw"].sum())
