"""Fleet simulation: dispatch policies, the queue, and the year's AC check."""

import copy
import dataclasses

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from siting import DataError, UsageError
from siting.capacity import CapacitySettings
from siting.cli import main
from siting.engine.flow import prepare, profile_scenarios, solve
from siting.engine.reference import scenario_net
from siting.engine.search import hosting_capacity, state_margins, worst_margin
from siting.fleet import (
    HEADROOM_STEP_MW,
    FleetSettings,
    _Fleet,
    _sequential_capacity,
    _serve,
    demand_groups,
    fleet_capacity_tokens_per_s,
    fleet_sites,
    grid_year,
    modelled_demand,
    read_sites,
    simulate,
)
from siting.workload import DEMAND_COLUMNS

# ten 20 MW sites that siting select picks on the HV grid (firm capacity at hL)
SITE_IDS = [0, 1, 2, 3, 4, 5, 7, 8, 13, 17]
GROWTH = 4.6  # loads × 4.6: HV1 Line 21 reaches its rating at the year's peak (2016-01-27 17:45)


@pytest.fixture(scope="module")
def peak_day(hv_mixed):
    """The HV grid with its loads grown and its profiles cut to the day of the peak."""
    from siting.sources.profiles import scale_loads

    grown = scale_loads(hv_mixed, GROWTH)
    day = grown.profiles.loc["2016-01-27"]
    return dataclasses.replace(grown, profiles=day)


@pytest.fixture(scope="module")
def sites(peak_day):
    return fleet_sites(pd.DataFrame({"substation": SITE_IDS, "size_mw": 20.0}), peak_day)


@pytest.fixture(scope="module")
def busy_day(peak_day, sites):
    """Demand at 97 % of what the fleet can serve, all day, and both policies run on it."""
    settings = FleetSettings()
    share = 0.9
    total = 0.97 * fleet_capacity_tokens_per_s(sites, settings.power, share)
    demand = pd.DataFrame(
        {DEMAND_COLUMNS[0]: total * share, DEMAND_COLUMNS[1]: total * (1 - share)},
        index=peak_day.profiles.index,
    )
    return simulate(peak_day, sites, demand, settings)


def _runpp_line_loading(grid, step, sites, power_mw, line_name):
    values = {
        key: value[step] for key, value in profile_scenarios(grid.net, grid.profiles).element_values.items()
    }
    net = scenario_net(grid.net, values)
    q_per_mw = np.tan(np.arccos(0.95))
    for bus, p in zip(sites["bus"], power_mw, strict=True):
        pp.create_load(net, bus, p_mw=p, q_mvar=p * q_per_mw)
    pp.runpp(net)
    return net.res_line.loading_percent[net.line.index[net.line.name == line_name][0]]


def test_blind_overloads_a_line_the_grid_aware_policy_keeps_within_its_rating(busy_day):
    summary = busy_day.summary.set_index("policy")
    blind = busy_day.violations[busy_day.violations["policy"] == "blind"]
    assert summary.at["blind", "violations"] > 0
    assert "HV1 Line 21" in set(blind["element"])
    assert blind.loc[blind["element"] == "HV1 Line 21", "worst_value"].iloc[0] > 100.0
    assert summary.at["grid-aware", "violations"] == 0
    assert summary.at["grid-aware", "grid_limited_steps"] > 0
    # the grid-aware policy pays for it in deferred (not dropped) demand
    assert summary.at["grid-aware", "deferred_tokens"] > 0 == summary.at["blind", "deferred_tokens"]
    assert summary.at["grid-aware", "dropped_tokens"] == 0
    assert summary.at["grid-aware", "served_share"] > 0.99


def test_grid_aware_dispatch_never_exceeds_headroom_checked_with_runpp(busy_day, peak_day, sites):
    """At every step of the day pandapower finds the grid-aware dispatch within the binding
    line's rating; at the step the blind dispatch breaks it, beyond."""
    blind, aware = busy_day.dispatches
    limited = np.abs(aware.power_mw - blind.power_mw).sum(axis=1) > 0.01
    assert limited.sum() > 0
    loading = [
        _runpp_line_loading(peak_day, step, sites, aware.power_mw[step], "HV1 Line 21")
        for step in range(len(peak_day.profiles))
    ]
    assert max(loading) <= 100.0 + 1e-6
    assert max(loading) > 99.0  # it does go up to the rating where the grid limits it
    worst = busy_day.violations.query("policy == 'blind'")["first_time"].min()
    step = peak_day.profiles.index.get_loc(worst)
    assert _runpp_line_loading(peak_day, step, sites, blind.power_mw[step], "HV1 Line 21") > 100.0


def test_grid_aware_shares_like_blind_until_the_blind_share_breaks_a_limit(busy_day, peak_day):
    """Sites are filled in order only where the blind share breaks a limit (and where the work
    held back there then does): before the blind dispatch's first violation both policies draw
    the same power at every site, and not every step of the day is limited."""
    blind, aware = busy_day.dispatches
    summary = busy_day.summary.set_index("policy")
    first = peak_day.profiles.index.get_loc(
        busy_day.violations.query("policy == 'blind'")["first_time"].min()
    )
    assert first > 0
    np.testing.assert_array_equal(aware.power_mw[:first], blind.power_mw[:first])
    assert np.abs(aware.power_mw[first] - blind.power_mw[first]).sum() > 0.01
    limited = summary.at["grid-aware", "grid_limited_steps"]
    assert summary.at["blind", "violation_steps"] <= limited < len(peak_day.profiles)


def test_grid_aware_is_the_blind_dispatch_and_solves_nothing_more_where_the_blind_share_fits(hv_mixed):
    day = dataclasses.replace(hv_mixed, profiles=hv_mixed.profiles.loc["2016-01-27"])  # today's loads
    sites = fleet_sites(pd.DataFrame({"substation": SITE_IDS, "size_mw": 20.0}), day)
    settings = FleetSettings()
    share = 0.9
    total = 0.97 * fleet_capacity_tokens_per_s(sites, settings.power, share)
    demand = pd.DataFrame(
        {DEMAND_COLUMNS[0]: total * share, DEMAND_COLUMNS[1]: total * (1 - share)}, index=day.profiles.index
    )
    result = simulate(day, sites, demand, settings)
    blind, aware = result.dispatches
    summary = result.summary.set_index("policy")
    assert summary.at["blind", "violations"] == 0
    np.testing.assert_array_equal(aware.power_mw, blind.power_mw)
    assert summary.at["grid-aware", "grid_limited_steps"] == 0
    assert result.flows == 2 * len(day.profiles)  # the grid alone and the blind dispatch


@pytest.mark.parametrize("reverse", [False, True])
def test_headroom_site_by_site_is_the_same_when_the_sites_that_fit_at_full_are_bisected(
    peak_day, sites, reverse
):
    """The bisected run of sites at full power gives each site what searching every site in turn
    from the cap gives (earlier sites at theirs, later ones at their lowest), in fewer flows."""
    settings = FleetSettings()
    model = prepare(copy.deepcopy(peak_day.net), sites["bus"].to_numpy(), peak_day.source)
    alone = grid_year(peak_day, settings, model)
    demand = modelled_demand(peak_day, sites, settings)
    fleet = _Fleet.build(sites, demand, settings.power, settings.modes, 0)
    cap_settings = CapacitySettings(pf=settings.pf, limits=settings.limits)
    rows = np.arange(alone.states.n)
    order = np.arange(len(sites))[::-1] if reverse else np.arange(len(sites))
    tokens, floor, _, flows = _sequential_capacity(
        model, alone.states, alone.limits, fleet, rows, order, cap_settings
    )

    idle = fleet.tight_power_mw(np.zeros_like(tokens), rows)
    full = fleet.power_mw(fleet.capacity, rows)
    fixed, expected, reference_flows = idle.copy(), np.zeros_like(tokens), 0
    for site in order:
        at_full = fixed.copy()
        at_full[:, site] = full[:, site]
        states = dataclasses.replace(alone.states, fixed_site_mw=at_full)
        margin = worst_margin(
            solve(model, states.scenarios(rows, q_per_mw=cap_settings.q_per_mw)),
            alone.limits,
            rows,
            at_full.sum(axis=1),
        )[0]
        room = full[:, site] - idle[:, site]
        search = hosting_capacity(
            model,
            dataclasses.replace(alone.states, fixed_site_mw=fixed),
            alone.limits,
            dataclasses.replace(cap_settings, cap_mw=float(room.max()), resolution_mw=HEADROOM_STEP_MW),
            sites=np.array([site]),
        )
        reference_flows += len(rows) + search.flows
        head = np.where(margin >= 0, room, np.minimum(np.nan_to_num(search.hc_mw[:, 0]), room))
        expected[:, site] = np.minimum(
            fleet.tokens_for_power(idle[:, site] + head, site, rows), fleet.capacity[:, site]
        )
        served = np.zeros_like(tokens)
        served[:, site] = expected[:, site]
        fixed[:, site] = fleet.tight_power_mw(served, rows)[:, site]
    assert not floor.any()
    bound = expected < fleet.capacity * (1 - 1e-9)
    assert bound.any() and (~bound).any()  # the grid binds some sites at some steps, not all
    np.testing.assert_allclose(tokens, expected, rtol=1e-9)
    assert flows < reference_flows / 2


def test_headroom_within_a_dispatch_stays_within_it_and_fits_with_every_site_at_what_it_gets(peak_day, sites):
    """Searched again within what a step dispatched (some sites below every GPU busy), each site
    gets at most that, and the grid takes all sites at once at what they get: the state the
    grid-aware policy then dispatches at a step filled in order."""
    settings = FleetSettings()
    model = prepare(copy.deepcopy(peak_day.net), sites["bus"].to_numpy(), peak_day.source)
    alone = grid_year(peak_day, settings, model)
    fleet = _Fleet.build(sites, modelled_demand(peak_day, sites, settings), settings.power, settings.modes, 0)
    cap_settings = CapacitySettings(pf=settings.pf, limits=settings.limits)
    rows = np.arange(alone.states.n)
    most = fleet.capacity.copy()
    most[:, ::2] *= 0.5  # every other site dispatched at half its GPUs
    tokens, floor, _, _ = _sequential_capacity(
        model, alone.states, alone.limits, fleet, rows, np.arange(len(sites)), cap_settings, most
    )
    assert not floor.any()
    assert (tokens <= most * (1 + 1e-12)).all()
    bound = tokens < most * (1 - 1e-6)
    assert bound.any() and (~bound).any()  # the grid binds some sites at some steps, not all
    power = fleet.tight_power_mw(tokens, rows)
    margin = state_margins(model, alone.states, alone.limits, rows, power, cap_settings.q_per_mw)
    assert margin.min() >= 0
    assert margin.min() < 0.01  # up to the limit where the grid binds


def test_blind_shares_demand_in_proportion_to_site_size():
    new = np.array([[30.0], [60.0]])
    capacity = np.full((2, 2), 1e9)
    served, late, dropped, *_ = _serve(new, capacity, np.ones((1, 2), bool), 1, np.array([10.0, 20.0]), None)
    np.testing.assert_allclose(served, [[10.0, 20.0], [20.0, 40.0]])
    assert late.sum() == 0 and dropped.sum() == 0


def test_unserved_demand_waits_up_to_the_delay_then_is_dropped():
    new = np.array([[10.0], [10.0], [0.0], [0.0]])
    capacity = np.array([[4.0], [4.0], [4.0], [4.0]])
    served, late, dropped, *_ = _serve(new, capacity, np.ones((1, 1), bool), 1, np.array([1.0]), None)
    # step 0 serves 4 and defers 6; step 1 serves 4 of the 6 waiting, drops 2, defers 10 new
    np.testing.assert_allclose(served[:, 0], [4, 4, 4, 0])
    np.testing.assert_allclose(late, [0, 4, 4, 0])
    np.testing.assert_allclose(dropped, [0, 2, 6, 0])
    # without a delay nothing waits
    served, late, dropped, *_ = _serve(new, capacity, np.ones((1, 1), bool), 0, np.array([1.0]), None)
    np.testing.assert_allclose(dropped, [6, 6, 0, 0])


def test_latency_limit_sends_demand_only_to_sites_in_reach(hv_mixed):
    sites = fleet_sites(pd.DataFrame({"substation": [3, 17], "size_mw": [10.0, 10.0]}), hv_mixed)
    shares, allowed = demand_groups(hv_mixed, sites, latency_km=30.0)
    assert shares.sum() == pytest.approx(1.0)
    assert allowed.shape[1] == 2
    # some load buses reach only one of the two sites within 30 km
    assert (allowed.sum(axis=1) == 1).any()
    everywhere, reach = demand_groups(hv_mixed, sites, latency_km=None)
    assert everywhere.tolist() == [1.0] and reach.all()


def test_sites_naming_unknown_substations_are_refused(hv_mixed, tmp_path):
    path = tmp_path / "sites.csv"
    path.write_text("substation,size_mw\n3,10\n99,10\n")
    with pytest.raises(DataError, match=r"substation id\(s\) \[99\]"):
        read_sites(path, hv_mixed)
    path.write_text("substation,size_mw\n3,10\n3,5\n")
    with pytest.raises(DataError, match="listed twice"):
        read_sites(path, hv_mixed)
    path.write_text("substation\n3\n")
    with pytest.raises(DataError, match="missing column"):
        read_sites(path, hv_mixed)
    with pytest.raises(UsageError, match="no such file"):
        read_sites(tmp_path / "none.csv", hv_mixed)


def test_simulate_command_refuses_bad_input_with_one_line(tmp_path, capsys):
    sites = tmp_path / "sites.csv"
    sites.write_text("substation,size_mw\n99,10\n")
    code = main(["simulate", "hv-mixed", "--sites", str(sites), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("siting: error:") and "99" in err[-1]  # the file's content
    assert not (tmp_path / "out").exists()
    sites.write_text("substation,size_mw\n3,10\n")
    code = main(
        ["simulate", "hv-mixed", "--sites", str(sites), "--out", str(tmp_path / "o"), "--policy", "x"]
    )
    assert code == 2 and "blind, grid-aware" in capsys.readouterr().err


@pytest.mark.slow
def test_simulate_writes_a_year_for_both_policies(tmp_path):
    select = tmp_path / "sites.csv"
    select.write_text("substation,size_mw\n3,20\n17,20\n")
    out = tmp_path / "sim"
    assert main(["simulate", "hv-mixed", "--sites", str(select), "--out", str(out), "--step", "60"]) == 0
    summary = pd.read_csv(out / "fleet_summary.csv")
    assert summary["policy"].tolist() == ["blind", "grid-aware"]
    power = pd.read_parquet(out / "site_power.parquet")
    columns = ["time", "policy", "substation", "bus", "p_mw", "own_supply_mw", "served_tokens_per_s"]
    assert list(power.columns) == columns
    assert (power["own_supply_mw"] == 0).all()  # off by default
    assert len(power) == 2 * 2 * 8784
    # with today's loads the HV grid carries both sites whatever the dispatch
    assert (summary["violations"] == 0).all()
    assert summary["served_share"].min() > 0.999
