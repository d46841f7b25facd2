"""Site power modes: power capping and idle shutdown remove violations migration cannot."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from siting import UsageError
from siting.fleet import (
    MIGRATE_ONLY,
    FleetSettings,
    PowerModes,
    _Bounds,
    _serve,
    fleet_capacity_tokens_per_s,
    fleet_sites,
    simulate,
)
from siting.power import (
    default_model,
    packed_power_mw,
    packed_served_for_power,
    site_capacity_tokens_per_s,
    site_power_mw,
)
from siting.workload import DEMAND_COLUMNS
from tests.test_fleet import SITE_IDS, _runpp_line_loading

UNBOUNDED = PowerModes(max_depth=1.0, max_hours=24.0)
CAP_ONLY = dataclasses.replace(UNBOUNDED, shutdown=False)


def _day(hv_mixed, growth):
    from siting.sources.profiles import scale_loads

    grown = scale_loads(hv_mixed, growth)
    return dataclasses.replace(grown, profiles=grown.profiles.loc["2016-01-27"])


def _run(day, utilisation, modes, policies=("grid-aware",)):
    sites = fleet_sites(pd.DataFrame({"substation": SITE_IDS, "size_mw": 20.0}), day)
    settings = FleetSettings(modes=modes, policies=policies)
    total = utilisation * fleet_capacity_tokens_per_s(sites, settings.power, 0.9)
    demand = pd.DataFrame(
        {DEMAND_COLUMNS[0]: total * 0.9, DEMAND_COLUMNS[1]: total * 0.1}, index=day.profiles.index
    )
    return sites, simulate(day, sites, demand, settings)


def test_packed_power_is_below_the_always_on_curve_and_its_inverse_is_exact():
    model = default_model()
    n, share, reserve = 12_000, 0.9, 1_200
    served = np.linspace(0, float(site_capacity_tokens_per_s(n, share, model)), 400)
    packed = packed_power_mw(served, n, share, model, reserve)
    always_on = site_power_mw(served * share, served * (1 - share), n, model)
    assert np.all(np.diff(packed) > 0)  # monotone: more work, more power
    assert np.all(packed <= always_on + 1e-9)
    # idle: the auxiliary load and the warm reserve only, far below the always-on idle floor
    aux = always_on[0] - n * (model.curve.idle_w + model.host_w_per_gpu) * model.pue / 1e6
    reserve_mw = reserve * (model.curve.idle_w + model.host_w_per_gpu) * model.pue / 1e6
    assert packed[0] == pytest.approx(aux + reserve_mw)
    assert packed[-1] == pytest.approx(always_on[-1])  # full load: every GPU busy either way
    back = packed_served_for_power(packed, n, share, model, reserve)
    np.testing.assert_allclose(back, served, rtol=1e-9, atol=1e-6)
    # a GPU kept powered for a server waking up draws idle power on top
    woken = packed_power_mw(served[:1], n, share, model, reserve, powered_gpus=100)
    step = 100 * (model.curve.idle_w + model.host_w_per_gpu) * model.pue / 1e6
    assert woken[0] == pytest.approx(packed[0] + step)


@pytest.mark.slow
def test_capping_removes_a_violation_migration_alone_cannot(hv_mixed):
    """Loads × 4.6, demand at 97 %: at 17:45 moving work among the sites cannot keep HV1
    Line 21 within its rating; holding some back (power capping) can. pandapower agrees."""
    day = _day(hv_mixed, 4.6)
    sites, migrate = _run(day, 0.97, MIGRATE_ONLY)
    _, capped = _run(day, 0.97, CAP_ONLY)
    assert migrate.summary.at[0, "violations"] == 1 and migrate.summary.at[0, "beyond_bound_steps"] == 1
    assert migrate.violations.at[0, "element"] == "HV1 Line 21"
    assert capped.summary.at[0, "violations"] == 0 and capped.summary.at[0, "capped_gpu_hours"] > 0
    assert migrate.summary.at[0, "capped_gpu_hours"] == 0  # migration holds nothing back
    step = day.profiles.index.get_loc(migrate.violations.at[0, "first_time"])
    over = _runpp_line_loading(day, step, sites, migrate.dispatches[0].power_mw[step], "HV1 Line 21")
    within = _runpp_line_loading(day, step, sites, capped.dispatches[0].power_mw[step], "HV1 Line 21")
    assert over > 100.0 >= within - 1e-6


@pytest.mark.slow
def test_shutdown_removes_a_violation_neither_migration_nor_capping_can(hv_mixed):
    """Loads × 4.62, demand at half the fleet: at 17:45 even idle sites (56 % of their
    rating) overload HV1 Line 21; powering idle servers down keeps it within its rating."""
    day = _day(hv_mixed, 4.62)
    sites, migrate = _run(day, 0.5, MIGRATE_ONLY)
    _, capped = _run(day, 0.5, CAP_ONLY)
    _, shut = _run(day, 0.5, UNBOUNDED)
    for result in (migrate, capped):
        assert result.summary.at[0, "idle_floor_steps"] == 1
        assert result.violations["element"].tolist() == ["HV1 Line 21"]
    assert shut.summary.at[0, "violations"] == 0 and shut.summary.at[0, "shutdown_gpu_hours"] > 0
    step = day.profiles.index.get_loc(capped.violations.at[0, "first_time"])
    over = _runpp_line_loading(day, step, sites, capped.dispatches[0].power_mw[step], "HV1 Line 21")
    within = _runpp_line_loading(day, step, sites, shut.dispatches[0].power_mw[step], "HV1 Line 21")
    assert over > 100.0 >= within - 1e-6
    assert shut.dispatches[0].power_mw[step].min() < 0.1 * 20  # some sites down to their reserve
    assert shut.summary.at[0, "served_share"] == pytest.approx(1.0)  # the work waits, then is served


@pytest.mark.slow
def test_own_supply_removes_a_violation_no_power_mode_can_within_its_hours(hv_mixed):
    """Loads × 5.8, demand at half the fleet: at 17:45 and 18:00 even every site at its lowest
    power (idle servers off) overloads HV1 Lines 21 and 58 beyond what the grid alone does. One
    site on its own supply keeps both within the no-worse limit; with 15 minutes a year each
    site covers only one of the two steps. pandapower agrees at the first."""
    day = _day(hv_mixed, 5.8)
    sites, grid_only = _run(day, 0.5, UNBOUNDED)
    _, one_step = _run(day, 0.5, dataclasses.replace(UNBOUNDED, backup_hours=0.25))
    _, backed = _run(day, 0.5, dataclasses.replace(UNBOUNDED, backup_hours=50.0))
    assert grid_only.summary.at[0, "idle_floor_steps"] == 2
    assert sorted(grid_only.violations["element"]) == ["HV1 Line 21", "HV1 Line 58"]
    assert grid_only.summary.at[0, "own_supply_site_hours"] == 0
    summary = backed.summary.iloc[0]
    assert summary["violations"] == 0 and summary["idle_floor_steps"] == 0
    own = backed.dispatches[0].own_supply
    steps = np.flatnonzero(own.any(axis=1))
    assert day.profiles.index[steps].strftime("%H:%M").tolist() == ["17:45", "18:00"]
    # the fewest sites: one, drawing nothing from the grid and serving on all its GPUs
    assert own[steps].sum(axis=1).tolist() == [1, 1]
    assert np.all(backed.dispatches[0].power_mw[own] == 0)
    assert summary["own_supply_mwh"] == pytest.approx(2 * 0.25 * 19.98, rel=1e-3)
    assert summary["served_share"] > grid_only.summary.at[0, "served_share"]
    assert one_step.summary.at[0, "idle_floor_steps"] == 1
    assert one_step.sites["own_supply_hours"].max() == 0.25
    line21 = grid_only.violations.set_index("element").loc["HV1 Line 21"]
    step = day.profiles.index.get_loc(line21["first_time"])
    over = _runpp_line_loading(day, step, sites, grid_only.dispatches[0].power_mw[step], "HV1 Line 21")
    within = _runpp_line_loading(day, step, sites, backed.dispatches[0].power_mw[step], "HV1 Line 21")
    assert over > line21["limit"] + 5e-3 and within <= line21["limit"] + 1e-3
    for row in backed.summary.itertuples():
        assert row.served_tokens + row.dropped_tokens + row.waiting_tokens == pytest.approx(
            row.demand_tokens, rel=1e-12, abs=1.0
        )


def test_a_step_beyond_the_phoenix_bound_stays_within_limits_and_is_reported(hv_mixed):
    """With the default bound (hold back at most 25 % of the work for 3 h) the peak step needs
    more: the grid's limits still hold and the step is counted as beyond the bound."""
    day = _day(hv_mixed, 4.6)
    _, bounded = _run(day, 0.97, PowerModes())
    summary = bounded.summary.iloc[0]
    assert summary["beyond_bound_steps"] == 1 and summary["violation_steps"] == 0


def test_every_token_is_served_dropped_or_still_waiting():
    rng = np.random.default_rng(3)
    new = rng.uniform(0, 10, (200, 2))
    capacity = rng.uniform(0, 9, (200, 3))
    allowed = np.array([[True, True, False], [False, True, True]])
    in_order = rng.random(200) < 0.5
    bounds = _Bounds(capacity * 1.5, 0.25, 4, enforce=True)
    sizes, order = np.array([5.0, 10.0, 20.0]), np.array([2, 1, 0])
    queue = _serve(new, capacity, allowed, 2, sizes, in_order, order, bounds)
    assert queue.served.sum() + queue.dropped.sum() + queue.waiting == pytest.approx(new.sum(), abs=1e-9)
    assert queue.beyond.any() and queue.held.max() > 0
    # without a queue a step's work is its new demand, and with every site in reach of every
    # group a step holds back at most the bound
    queue = _serve(new, capacity, np.ones((2, 3), bool), 0, sizes, in_order, order, bounds)
    could = np.minimum(new.sum(axis=1), bounds.gpu_capacity.sum(axis=1))
    assert queue.beyond.any()
    assert np.all(queue.held <= 0.25 * could + 1e-9)
    assert queue.served.sum() + queue.dropped.sum() == pytest.approx(new.sum(), abs=1e-9)


def test_a_fleet_year_conserves_tokens(hv_mixed):
    day = _day(hv_mixed, 4.6)
    _, result = _run(day, 0.97, PowerModes(), policies=("blind", "grid-aware"))
    for row in result.summary.itertuples():
        assert row.served_tokens + row.dropped_tokens + row.waiting_tokens == pytest.approx(
            row.demand_tokens, rel=1e-12, abs=1.0
        )


def test_bad_power_modes_are_refused_with_one_line(hv_mixed):
    with pytest.raises(UsageError, match=r"min_cap_w=100.0: is below a powered GPU's idle draw \(122"):
        FleetSettings(modes=PowerModes(min_cap_w=100.0))
    with pytest.raises(UsageError, match=r"warm_reserve=1\.5"):
        PowerModes(warm_reserve=1.5)
    with pytest.raises(UsageError, match=r"max_depth=-0\.1"):
        PowerModes(max_depth=-0.1)
    with pytest.raises(UsageError, match=r"backup_hours=-1\.0"):
        PowerModes(backup_hours=-1.0)
    day = _day(hv_mixed, 1.0)
    sites = fleet_sites(pd.DataFrame({"substation": [3], "size_mw": [10.0]}), day)
    demand = pd.DataFrame({DEMAND_COLUMNS[0]: 1.0, DEMAND_COLUMNS[1]: 1.0}, index=day.profiles.index)
    slow_wake = FleetSettings(modes=PowerModes(wake_minutes=20.0, warm_reserve=0.0))
    with pytest.raises(
        UsageError, match=r"wake_minutes=20\.0: is longer than a 15-minute step with no warm reserve"
    ):
        simulate(day, sites, demand, slow_wake)
    assert PowerModes(wake_minutes=20.0).wake_steps(15.0) == 1
    assert PowerModes(wake_minutes=20.0, warm_reserve=0.0, shutdown=False).wake_steps(15.0) == 1
