"""Year-long power flows solved and reduced block by block give exactly what one whole batch
gives: the state limits, and the fleet's per-step margins, violation rows and yearly extremes."""

import copy
import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from siting.capacity import CapacitySettings, normal_limits
from siting.engine import flow, search
from siting.engine.flow import prepare, profile_scenarios, solve
from siting.engine.search import (
    BASE_TOLERANCE,
    States,
    binding_limits,
    state_limits,
    violation_groups,
    violations_of,
    worst_margin,
)
from siting.fleet import FleetSettings, ViolationTally, _year_flow, fleet_sites, grid_year, violation_table

SITES = [0, 1, 2, 3, 4, 5, 7, 8, 13, 17]


@pytest.fixture(scope="module")
def two_days(hv_mixed):
    """The HV grid with loads × 4.6 (a line at its rating at the peak) over two days (27 and 28 January)."""
    from siting.sources.profiles import scale_loads

    grown = scale_loads(hv_mixed, 4.6)
    return dataclasses.replace(grown, profiles=grown.profiles.iloc[26 * 96 : 28 * 96])


@pytest.fixture
def small_blocks(monkeypatch):
    """solve's own batches of 16 scenarios and streamed blocks of two of them: 6 blocks in the
    192 steps; returns a function that sets the block size for a model."""
    monkeypatch.setattr(flow, "batch_size", lambda model: 16)
    monkeypatch.setattr(search, "batch_size", lambda model: 16)

    def two_batches(model):
        net = model.net
        monkeypatch.setattr(
            search, "BLOCK_RESULT_CELLS", 32 * (2 * len(net.bus) + len(net.line) + len(net.trafo))
        )

    return two_batches


def _model_and_year(grid, sites):
    model = prepare(copy.deepcopy(grid.net), sites["bus"].to_numpy(), grid.source)
    return model, grid_year(grid, FleetSettings(), model)


def test_state_limits_in_blocks_equal_one_batch_and_the_tally_equals_the_table_of_all_rows(
    two_days, small_blocks, monkeypatch
):
    sites = fleet_sites(pd.DataFrame({"substation": SITES, "size_mw": 20.0}), two_days)
    model = prepare(copy.deepcopy(two_days.net), sites["bus"].to_numpy(), two_days.source)
    year = profile_scenarios(model.net, two_days.profiles)
    states = States(year.element_values, None, year.n)
    limits = normal_limits(model, CapacitySettings())
    small_blocks(model)
    blocked = state_limits(model, states, limits)
    tally = ViolationTally(two_days.profiles.index)
    tallied = state_limits(model, states, limits, tally=tally.add)
    monkeypatch.setattr(search, "BLOCK_RESULT_CELLS", 10**12)
    whole = state_limits(model, states, limits)
    for name in ("vmin", "vmax", "line", "trafo", "usable", "converged", "base_margin"):
        np.testing.assert_array_equal(getattr(blocked, name), getattr(whole, name), err_msg=name)
        np.testing.assert_array_equal(getattr(tallied, name), getattr(whole, name), err_msg=name)
    pd.testing.assert_frame_equal(blocked.violations, whole.violations)
    assert len(whole.violations) and not len(tallied.violations)
    index = two_days.profiles.index
    pd.testing.assert_frame_equal(
        tally.table("grid alone"), violation_table(whole.violations, index, "grid alone")
    )
    np.testing.assert_array_equal(np.flatnonzero(tally.steps), np.unique(whole.violations["state"]))


def test_limits_all_states_share_are_held_as_one_row_and_equal_each_states_own(two_days, small_blocks):
    """Block by block, a limit no state relaxes is one row broadcast, and every state's limits
    are those its own base case gives (``binding_limits`` of one whole solve)."""
    sites = fleet_sites(pd.DataFrame({"substation": SITES, "size_mw": 20.0}), two_days)
    model = prepare(copy.deepcopy(two_days.net), sites["bus"].to_numpy(), two_days.source)
    year = profile_scenarios(model.net, two_days.profiles)
    states = States(year.element_values, None, year.n)
    limits = normal_limits(model, CapacitySettings())
    limits = dataclasses.replace(limits, vmax_pu=np.minimum(limits.vmax_pu, 1.02))
    small_blocks(model)
    blocked = state_limits(model, states, limits)
    base = solve(model, states.scenarios(np.arange(states.n)))
    own = binding_limits(limits, base.vm_pu, base.line_loading_percent, base.trafo_loading_percent)
    one_row = []
    for name, expected in zip(("vmin", "vmax", "line", "trafo"), own, strict=True):
        held = getattr(blocked, name)
        np.testing.assert_array_equal(held, expected, err_msg=name)
        one_row.append(held.strides[0] == 0)
        np.testing.assert_array_equal(getattr(blocked.take(np.array([3, 150])), name), expected[[3, 150]])
    # at 1.02 pu some buses are over at some steps only: their limit differs by step
    assert one_row == [True, False, True, True]


def test_year_flow_in_blocks_equals_the_reductions_of_one_whole_solve(two_days, small_blocks, monkeypatch):
    sites = fleet_sites(pd.DataFrame({"substation": SITES, "size_mw": 20.0}), two_days)
    model, alone = _model_and_year(two_days, sites)
    # a band of 0.99–1.06 pu at every bus and step (SimBench's own is wider): the rows checked
    # hold under- and overvoltages as well as overloads
    states = alone.states
    limits = dataclasses.replace(
        alone.limits, vmin=np.full_like(alone.limits.vmin, 0.99), vmax=np.full_like(alone.limits.vmax, 1.06)
    )
    small_blocks(model)
    # every site at 60 MW in the evening and at 2 MW otherwise: some blocks break limits, some not
    hours = two_days.profiles.index.hour.to_numpy()
    power = np.where((hours >= 16) & (hours < 21), 60.0, 2.0)[:, None] * np.ones((1, len(sites)))
    q_per_mw = np.tan(np.arccos(0.95))
    index = two_days.profiles.index
    streamed = _year_flow(model, states, limits, power, q_per_mw, index)

    whole = solve(
        model,
        dataclasses.replace(states, fixed_site_mw=power).scenarios(np.arange(states.n), q_per_mw=q_per_mw),
    )
    found = violations_of(
        model, whole, limits.vmin, limits.vmax, limits.line, limits.trafo, tolerance=BASE_TOLERANCE
    )
    assert found["criterion"].nunique() >= 3  # the order across criteria and blocks is tested
    assert found["state"].nunique() > 32  # violations in more than one block
    pd.testing.assert_frame_equal(streamed.violations.table("p"), violation_table(found, index, "p"))
    np.testing.assert_array_equal(np.flatnonzero(streamed.violations.steps), np.unique(found["state"]))
    np.testing.assert_array_equal(streamed.margin, worst_margin(whole, limits, np.arange(states.n))[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bus no slack reaches is NaN throughout
        np.testing.assert_array_equal(streamed.vm_min_pu, np.nanmin(whole.vm_pu, axis=0))
        np.testing.assert_array_equal(streamed.vm_max_pu, np.nanmax(whole.vm_pu, axis=0))
        np.testing.assert_array_equal(
            streamed.line_max_percent, np.nanmax(whole.line_loading_percent, axis=0)
        )
        np.testing.assert_array_equal(
            streamed.trafo_max_percent, np.nanmax(whole.trafo_loading_percent, axis=0)
        )


def test_violation_groups_of_elements_sharing_a_name_are_the_table_of_their_rows(two_days):
    """Buses and lines given three names between them: the groups per name (count, first time,
    worst value and its limit, order) are what ``violation_table`` makes of every row."""
    sites = fleet_sites(pd.DataFrame({"substation": SITES, "size_mw": 20.0}), two_days)
    model = prepare(copy.deepcopy(two_days.net), sites["bus"].to_numpy(), two_days.source)
    for table in ("bus", "line"):
        model.net[table]["name"] = [f"{table} {i % 3}" for i in range(len(model.net[table]))]
    year = profile_scenarios(model.net, two_days.profiles)
    power = np.full((year.n, len(sites)), 40.0)
    result = solve(
        model, States(year.element_values, None, year.n, fixed_site_mw=power).scenarios(np.arange(year.n))
    )
    vmin, vmax = np.full(len(model.net.bus), 0.99), np.full(len(model.net.bus), 1.06)
    line, trafo = np.full(len(model.net.line), 60.0), np.full(len(model.net.trafo), 100.0)
    found = violations_of(model, result, vmin, vmax, line, trafo, tolerance=BASE_TOLERANCE)
    assert found.groupby(["criterion", "element"]).size().gt(1).any()  # the groups have many rows
    assert found["criterion"].nunique() >= 2
    index = two_days.profiles.index
    tally = ViolationTally(index)
    tally.add(*violation_groups(model, result, vmin, vmax, line, trafo, tolerance=BASE_TOLERANCE))
    pd.testing.assert_frame_equal(tally.table("p"), violation_table(found, index, "p"))
    np.testing.assert_array_equal(np.flatnonzero(tally.steps), np.unique(found["state"]))


def test_a_year_reusing_the_blocks_at_the_same_powers_equals_solving_every_block(two_days, small_blocks):
    """The grid-aware year takes the blind year's blocks where the sites draw the same: with one
    block's powers changed, one block is solved and every reduction is the whole solve's."""
    sites = fleet_sites(pd.DataFrame({"substation": SITES, "size_mw": 20.0}), two_days)
    model, alone = _model_and_year(two_days, sites)
    small_blocks(model)
    hours = two_days.profiles.index.hour.to_numpy()
    power = np.where((hours >= 16) & (hours < 21), 60.0, 2.0)[:, None] * np.ones((1, len(sites)))
    q_per_mw = np.tan(np.arccos(0.95))
    index = two_days.profiles.index
    first = _year_flow(model, alone.states, alone.limits, power, q_per_mw, index)
    changed = power.copy()
    changed[64:80] = 70.0  # 16:00–19:45 of the first day: all in the third block of 32 steps
    reused = _year_flow(model, alone.states, alone.limits, changed, q_per_mw, index, reuse=first)
    fresh = _year_flow(model, alone.states, alone.limits, changed, q_per_mw, index)
    assert (first.flows, reused.flows, fresh.flows) == (192, 32, 192)
    assert not np.array_equal(fresh.margin[64:80], first.margin[64:80])  # the change shows
    assert not fresh.violations.table("p").equals(first.violations.table("p"))
    np.testing.assert_array_equal(reused.margin, fresh.margin)
    for name in ("vm_min_pu", "vm_max_pu", "line_max_percent", "trafo_max_percent"):
        np.testing.assert_array_equal(getattr(reused, name), getattr(fresh, name), err_msg=name)
    pd.testing.assert_frame_equal(reused.violations.table("p"), fresh.violations.table("p"))
    np.testing.assert_array_equal(reused.violations.steps, fresh.violations.steps)
