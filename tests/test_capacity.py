"""Hosting capacity: the batched search agrees with plain bisection on pandapower runpp."""

import copy
import dataclasses
import json

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from siting import GridError, UsageError, load_grid
from siting.capacity import CapacitySettings, contingency_limits, normal_limits, substation_capacity
from siting.cli import main
from siting.engine.flow import prepare, solve
from siting.engine.reference import reference_hosting_capacity
from siting.engine.search import CRITERIA, States, hosting_capacity, state_limits
from siting.sources.peak import operating_point, profile_values

SETTINGS = CapacitySettings()


def fast(grid, substation_ids, values, outage=None, settings=SETTINGS):
    """Batched hosting capacity of some substations in one state."""
    buses = grid.substations.set_index("id").loc[substation_ids, "bus"].to_numpy()
    model = prepare(copy.deepcopy(grid.net), buses, grid.source)
    states = States({k: v[None, :] for k, v in values.items()}, None if outage is None else (outage,), 1)
    limits = (contingency_limits if outage else normal_limits)(model, settings)
    result = hosting_capacity(model, states, state_limits(model, states, limits), settings)
    return result.hc_mw[0]


def assert_close(ours, reference):
    assert abs(ours - reference) <= max(0.1, 0.01 * reference) + 1e-9, (ours, reference)


@pytest.mark.parametrize(
    ("source", "ids"),
    [("hv-mixed", [5, 9, 11, 12, 17]), ("oberrhein", [0, 1]), ("pandapower:case33bw", [5, 17, 31])],
)
def test_n0_at_peak_matches_brute_force(source, ids):
    grid = load_grid(source)
    values = operating_point(grid).values
    ours = fast(grid, ids, values)
    for position, substation in enumerate(ids):
        bus = int(grid.substations.set_index("id").at[substation, "bus"])
        assert_close(ours[position], reference_hosting_capacity(grid.net, bus, SETTINGS, values))


def test_n1_matches_brute_force_for_the_binding_and_another_outage(hv_mixed):
    values = operating_point(hv_mixed).values
    line = hv_mixed.net.line
    for name in ("HV1 Line 58", "HV1 Line 75"):
        outage = ("line", int(line.index[line.name == name][0]))
        ours = fast(hv_mixed, [16, 11], values, outage)
        for position, substation in enumerate([16, 11]):
            bus = int(hv_mixed.substations.at[substation, "bus"])
            assert_close(
                ours[position], reference_hosting_capacity(hv_mixed.net, bus, SETTINGS, values, outage)
            )


def test_hourly_headroom_matches_brute_force_on_sampled_hours(illinois):
    steps = [100, 4500, 5000]  # winter night, summer afternoon peak season
    ids = [0, 5]
    for step in steps:
        values = profile_values(illinois, step)
        ours = fast(illinois, ids, values)
        for position, substation in enumerate(ids):
            bus = int(illinois.substations.at[substation, "bus"])
            assert_close(ours[position], reference_hosting_capacity(illinois.net, bus, SETTINGS, values))


def test_every_capacity_is_feasible_at_its_value_and_infeasible_just_above(hv_mixed):
    values = operating_point(hv_mixed).values
    ids = [5, 9, 13, 14, 17]
    ours = fast(hv_mixed, ids, values)
    buses = hv_mixed.substations.loc[ids, "bus"].to_numpy()
    model = prepare(copy.deepcopy(hv_mixed.net), buses, "hv")
    states = States(
        {k: np.repeat(v[None, :], 2 * len(ids), axis=0) for k, v in values.items()}, None, 2 * len(ids)
    )
    limits = state_limits(model, states, normal_limits(model, SETTINGS))
    sites = np.tile(np.arange(len(ids)), 2)
    p = np.concatenate([ours, ours + 0.1])
    result = solve(model, states.scenarios(np.arange(2 * len(ids)), sites, p, len(ids), SETTINGS.q_per_mw))
    line_ok = (result.line_loading_percent <= limits.line[0]).all(axis=1)
    volt_ok = ((result.vm_pu >= limits.vmin[0]) & (result.vm_pu <= limits.vmax[0])).all(axis=1)
    feasible = line_ok & volt_ok & result.converged
    assert feasible[: len(ids)].all()
    assert not feasible[len(ids) :].any()
    assert (ours < 100).all()


def test_already_violated_limit_binds_only_when_made_worse():
    plain = load_grid("pandapower:case33bw")
    net = copy.deepcopy(plain.net)
    net.bus["min_vm_pu"] = 0.95  # the feeder ends sit near 0.91 pu: violated before any load is added
    strict = dataclasses.replace(plain, net=net)
    n0_only = CapacitySettings(n1=False, year=False)
    before = substation_capacity(plain, n0_only, substations=[17]).table.iloc[0]
    study = substation_capacity(strict, CapacitySettings(n1=False, year=False), substations=[17])
    after = study.table.iloc[0]
    violated = set(study.base_violations.loc[study.base_violations.criterion == "undervoltage", "element"])
    assert len(violated) > 10
    # the load may still come, as long as it lowers no violated voltage by more than 0.001 pu
    assert 0 < after["hc_n0_mw"] < before["hc_n0_mw"]
    assert after["n0_binding_criterion"] == "undervoltage" and after["n0_binding_element"] in violated


def test_capacity_study_on_hv_grid_reports_binding_elements_and_outages(hv_mixed):
    study = substation_capacity(hv_mixed, CapacitySettings(n1=True, year=False), substations=[9, 10, 16])
    table = study.table.set_index("substation")
    assert study.operating_point == "case:hL"
    assert table.at[9, "hc_n0_mw"] == pytest.approx(50.6)
    assert (
        table.at[9, "binding_criterion"] == "line thermal" and table.at[9, "binding_element"] == "HV1 Line 21"
    )
    assert table.at[16, "hc_n1_mw"] == pytest.approx(13.1)
    assert table.at[16, "binding_outage"] == "line HV1 Line 58"
    assert (table["hc_n1_mw"] <= table["hc_n0_mw"]).all()
    assert len(study.skipped_outages) == 26 and set(study.skipped_outages["reason"]) == {"islands load"}
    assert 1.0 < study.load_margin < 3.0
    assert set(CRITERIA) >= set(table["binding_criterion"])


def test_load_margin_is_the_last_growth_within_limits_by_runpp(hv_mixed):
    """λ keeps every limit in runpp; λ + 0.01 breaks one; the sweep stopped soon after λ."""
    from siting.capacity import LOAD_MARGIN_CHUNK, load_margin

    point = operating_point(hv_mixed, "case:hL")
    model = prepare(copy.deepcopy(hv_mixed.net), [], "hv")
    limits = normal_limits(model, CapacitySettings())
    peak = States({k: v[None, :] for k, v in point.values.items()}, None, 1)
    margin, flows = load_margin(model, point, state_limits(model, peak, limits))
    assert flows == LOAD_MARGIN_CHUNK * (round((margin - 1.0) / 0.01) // LOAD_MARGIN_CHUNK + 1) < 301

    def within_limits(factor: float) -> bool:
        net = copy.deepcopy(hv_mixed.net)
        for (table, column), value in point.values.items():
            net[table][column] = np.where(np.isnan(value), net[table][column], value)
        net.load[["p_mw", "q_mvar"]] *= factor
        pp.runpp(net)
        vm = net.res_bus.vm_pu.to_numpy()
        return bool(
            (vm >= limits.vmin_pu - 1e-9).all()
            and (vm <= limits.vmax_pu + 1e-9).all()
            and (net.res_line.loading_percent.to_numpy() <= limits.line_percent + 1e-9).all()
            and (net.res_trafo.loading_percent.to_numpy() <= limits.trafo_percent + 1e-9).all()
        )

    assert 1.0 < margin < 3.0
    assert within_limits(margin) and not within_limits(margin + 0.01)


def test_year_headroom_searched_coarse_to_fine_equals_the_search_from_the_cap(illinois):
    from siting.engine.flow import profile_scenarios
    from siting.engine.search import coarse_to_fine

    week = dataclasses.replace(illinois, profiles=illinois.profiles.iloc[4400:4568])  # a summer week
    # substations whose headroom stays below the 100 MW cap all week: every pair is searched
    ids = [4, 20, 22, 23, 38, 43, 47, 48, 55, 67, 69, 77, 78, 83, 110]
    buses = week.substations.set_index("id").loc[ids, "bus"].to_numpy()
    model = prepare(copy.deepcopy(week.net), buses, week.source)
    scenarios = profile_scenarios(model.net, week.profiles)
    states = States(scenarios.element_values, None, scenarios.n)
    limits = state_limits(model, states, normal_limits(model, SETTINGS))
    from_cap = hosting_capacity(model, states, limits, SETTINGS)
    guided = coarse_to_fine(model, states, limits, SETTINGS)
    assert np.array_equal(guided.hc_mw, from_cap.hc_mw, equal_nan=True)
    assert np.array_equal(guided.criterion, from_cap.criterion)
    assert np.array_equal(guided.element, from_cap.element)
    assert (from_cap.hc_mw < SETTINGS.cap_mw).all()
    # each criterion's margin followed on its own: 18,751 flows from the cap (26,881 on the worst
    # margin alone); placed by demand and stepped by the neighbours' margin slope, 7,661 (8,011 on
    # the worst margin, 12,324 with guesses placed by position and a one-step probe)
    pairs = from_cap.hc_mw.size
    assert from_cap.flows < 7.5 * pairs
    assert guided.flows < 3.1 * pairs


def test_guesses_between_known_steps_are_np_interp_of_every_column():
    from siting.engine.search import interpolated_rows

    rng = np.random.default_rng(3)
    values = rng.uniform(0, 60, (200, 4))
    for known in (np.array([17]), np.array([0, 199]), np.sort(rng.choice(200, 23, replace=False))):
        expected = np.column_stack([np.interp(np.arange(200), known, values[known, c]) for c in range(4)])
        assert np.allclose(interpolated_rows(values, known), expected, rtol=0, atol=1e-12)
        assert np.array_equal(interpolated_rows(values, known)[known], values[known])


def test_guesses_placed_by_demand_follow_it_between_the_known_steps():
    from siting.engine.search import interpolated_rows

    values = np.array([[10.0], [0.0], [0.0], [0.0], [30.0]])
    known = np.array([0, 4])
    demand = np.array([100.0, 190.0, 150.0, 300.0, 200.0])  # step 3 beyond its neighbours: clipped
    assert interpolated_rows(values, known, demand)[:, 0].tolist() == [10.0, 28.0, 20.0, 30.0, 30.0]
    flat = np.full(5, 7.0)  # neighbours with the same demand: by position
    assert interpolated_rows(values, known, flat)[:, 0].tolist() == [10.0, 15.0, 20.0, 25.0, 30.0]


def test_the_year_searched_in_blocks_of_steps_gives_the_same_headroom(illinois, monkeypatch):
    week = dataclasses.replace(illinois, profiles=illinois.profiles.iloc[4400:4568])
    settings = CapacitySettings(n1=False, year=True)
    whole = substation_capacity(week, settings, substations=[4, 20, 38])
    monkeypatch.setattr("siting.capacity.YEAR_BLOCK_CELLS", 1)
    monkeypatch.setattr("siting.capacity.YEAR_MIN_BLOCK_STEPS", 50)  # blocks of 50, 50, 50 and 18 steps
    said: list[str] = []
    blocks = substation_capacity(week, settings, substations=[4, 20, 38], progress=said.append)
    assert any("steps of demand rank 151–168" in line for line in said)
    assert blocks.headroom.equals(whole.headroom)
    assert (whole.headroom < settings.cap_mw).to_numpy().any()  # searched, not all at the cap


def test_year_headroom_gives_hours_and_flexible_capacity(illinois):
    study = substation_capacity(illinois, CapacitySettings(n1=False, year=True), substations=[0, 5])
    headroom = study.headroom
    assert headroom.shape == (8760, 2)
    row = study.table.iloc[0]
    assert row["hc_n0_year_min_mw"] == pytest.approx(headroom[0].min())
    assert row["hours_ge_5mw"] == pytest.approx((headroom[0] >= 5).sum())
    assert row["flex_0.25pct_mw"] <= row["flex_1pct_mw"] <= row["flex_5pct_mw"]
    assert row["flex_0.25pct_mw"] >= row["hc_n0_year_min_mw"] - 0.01


def test_capacity_cli_writes_every_output(tmp_path, capsys):
    out = tmp_path / "cap"
    code = main(["capacity", "oberrhein", "--out", str(out), "--no-year"])
    assert code == 0
    table = pd.read_csv(out / "capacity.csv")
    assert {
        "substation",
        "hc_n0_mw",
        "hc_n1_mw",
        "binding_criterion",
        "binding_element",
        "binding_outage",
        "flex_0.25pct_mw",
        "hours_ge_5mw",
        "lon",
        "lat",
    } <= set(table.columns)
    assert table["binding_criterion"].tolist() == ["transformer thermal"] * 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["pf"] == 0.95 and manifest["results"]["operating_point"] == "model values"
    assert manifest["versions"]["power-grid-model"]
    assert "Unused at peak" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pf", "1.2"], "--pf"),
        (["--pf", "0"], "--pf"),
        (["--cap", "0"], "cap"),
        (["--substations", "0,99"], "do not exist"),
        (["--at", "2016-13-45T99:00"], "--at"),
        (["--at", "2015-06-01T12:00"], "not a time step"),
        (["--at", "case:nope"], "no study case"),
    ],
)
def test_bad_capacity_inputs_fail_clearly_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "cap"
    code = main(["capacity", "hv-mixed", "--out", str(out), "--no-year", "--no-n-1", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and err[-1].startswith("siting: error:")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_base_case_that_does_not_converge_is_refused(tmp_path, oberrhein):
    import pandapower as pp

    net = copy.deepcopy(oberrhein.net)
    net.load["p_mw"] *= 40
    path = tmp_path / "heavy.json"
    pp.to_json(net, str(path))
    out = tmp_path / "cap"
    with pytest.raises(GridError, match="does not converge"):
        substation_capacity(load_grid(path), CapacitySettings(n1=False, year=False))
    assert main(["capacity", str(path), "--out", str(out)]) == 1
    assert not out.exists()


def test_previous_output_survives_a_failed_run(tmp_path):
    out = tmp_path / "cap"
    assert main(["capacity", "oberrhein", "--out", str(out), "--no-year", "--no-n-1"]) == 0
    before = (out / "capacity.csv").read_text()
    assert main(["capacity", "oberrhein", "--out", str(out), "--substations", "7"]) == 2
    assert (out / "capacity.csv").read_text() == before


def test_settings_refuse_bad_values():
    with pytest.raises(UsageError):
        CapacitySettings(pf=-0.5)
    with pytest.raises(UsageError):
        CapacitySettings(cap_mw=-1)
