"""The engine gives pandapower's answers: |ΔV| ≤ 1e-4 pu, |Δloading| ≤ 0.1 point."""

import copy
import logging

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from siting import GridError, UsageError, load_grid
from siting.engine.flow import (
    Balance,
    Scenarios,
    participation_weights,
    prepare,
    profile_scenarios,
    q_limits_default,
    solve,
)
from siting.engine.reference import scenario_net

V_TOL = 1e-4
LOADING_TOL = 0.1

FAST_GRIDS = ["hv-mixed", "mv-semiurb", "oberrhein", "illinois200", "pandapower:case33bw"]
SLOW_GRIDS = ["hv-urban", "hvmv-mixed", "texas2000"]


def reference(net, values: dict | None = None, outage=None, sites=None, **options):
    """pandapower runpp on a copy of ``net`` changed the way a scenario changes it."""
    net = scenario_net(net, values, outage)
    for bus, p_mw, q_mvar in sites or []:
        pp.create_load(net, bus, p_mw, q_mvar)
    pp.runpp(net, **options)
    return net


def assert_agrees(result, row: int, net) -> None:
    vm = result.vm_pu[row]
    expected = net.res_bus.vm_pu.to_numpy()
    assert np.array_equal(np.isnan(vm), np.isnan(expected)), "different buses unsupplied"
    assert np.nanmax(np.abs(vm - expected)) <= V_TOL
    for ours, theirs in (
        (result.line_loading_percent[row], net.res_line.loading_percent.to_numpy()),
        (result.trafo_loading_percent[row], net.res_trafo.loading_percent.to_numpy()),
    ):
        both = ~np.isnan(theirs)
        if both.any():
            assert np.nanmax(np.abs(ours[both] - theirs[both])) <= LOADING_TOL


def scaling_steps(net, rng, steps=20):
    """A grid without profiles: per step every load's P and Q and every generator's and static
    generator's P × one factor drawn in 0.8–1.05 (generation follows the load; the slack takes the rest)."""
    columns = [
        (t, c)
        for t, c in (("load", "p_mw"), ("load", "q_mvar"), ("sgen", "p_mw"), ("gen", "p_mw"))
        if len(net[t])
    ]
    return [
        {(t, c): net[t][c].to_numpy(float) * factor for t, c in columns}
        for factor in rng.uniform(0.8, 1.05, steps)
    ]


def agreement_cases(grid, rng):
    """Base case, peak step, 20 random steps (scalings without profiles) and 5 single outages,
    as (scenario values, outage) pairs."""
    net = grid.net
    cases = [(None, None)]
    if grid.profiles is None:
        cases += [(values, None) for values in scaling_steps(net, rng)]
    else:
        scen = profile_scenarios(net, grid.profiles)
        net_load = grid.profiles[("load", "p_mw")].sum(axis=1)
        if ("sgen", "p_mw") in grid.profiles:
            net_load = net_load - grid.profiles[("sgen", "p_mw")].sum(axis=1)
        steps = [int(np.argmax(net_load.to_numpy())), *rng.choice(scen.n, 20, replace=False).tolist()]
        for step in steps:
            cases.append(({k: v[step] for k, v in scen.element_values.items()}, None))
    lines = net.line.index[net.line.in_service].to_numpy()
    trafos = net.trafo.index[net.trafo.in_service].to_numpy()
    outages = [("line", int(i)) for i in rng.choice(lines, min(4, len(lines)), replace=False)]
    if len(trafos):
        outages.append(("trafo", int(rng.choice(trafos))))
    else:
        outages.append(("line", int(rng.choice(lines))))
    cases += [(None, outage) for outage in outages]
    return cases


def check_grid(source, enforce_q_lims=False):
    """Every agreement case solved in one batch and by runpp; with reactive limits a case
    runpp cannot solve must be flagged as not converged (and at least the base case solves).
    ``source`` is a grid's name or the loaded ``Grid``."""
    grid = load_grid(source) if isinstance(source, str) else source
    source = grid.source
    rng = np.random.default_rng(7)
    cases = agreement_cases(grid, rng)
    model = prepare(copy.deepcopy(grid.net), [], source, enforce_q_lims=enforce_q_lims)
    assert model.enforce_q_lims == enforce_q_lims
    values = {}
    for key in {k for c in cases if c[0] for k in c[0]}:
        values[key] = np.array([c[0][key] if c[0] else np.full(len(grid.net[key[0]]), np.nan) for c in cases])
    scenarios = Scenarios(n=len(cases), element_values=values, outages=tuple(c[1] for c in cases))
    result = solve(model, scenarios)
    if not enforce_q_lims:
        assert result.converged.all()
    assert result.converged[0]
    for row, (vals, outage) in enumerate(cases):
        try:
            expected = reference(grid.net, vals, outage, enforce_q_lims=enforce_q_lims)
        except pp.LoadflowNotConverged:
            assert enforce_q_lims and not result.converged[row], f"case {row}: runpp fails, the engine solves"
            continue
        assert result.converged[row], f"case {row}: runpp solves, the engine does not"
        assert_agrees(result, row, expected)


@pytest.mark.parametrize("source", FAST_GRIDS)
def test_engine_matches_pandapower(source):
    check_grid(source)


@pytest.mark.slow
@pytest.mark.parametrize("source", SLOW_GRIDS)
def test_engine_matches_pandapower_on_large_grids(source):
    check_grid(source)


@pytest.mark.slow
def test_engine_matches_pandapower_on_wecc10k(wecc10k):
    """ACTIVSg10k (10,000 buses, angles over 108°): no flat start converges, in PGM or pandapower;
    from the start guides the engine gives runpp's answers."""
    check_grid(wecc10k)


@pytest.mark.slow
def test_reactive_limits_on_wecc10k_fail_as_in_pandapower(wecc10k):
    """With reactive limits neither runpp nor the engine solves the case's base (892 of its 1,727
    generators are beyond a limit without them): the engine says so instead of an answer."""
    with pytest.raises(pp.LoadflowNotConverged):
        reference(wecc10k.net, enforce_q_lims=True)
    result = solve(prepare(copy.deepcopy(wecc10k.net), [], "wecc10k", enforce_q_lims=True), Scenarios(n=1))
    assert not result.converged[0] and np.isnan(result.vm_pu[0]).all()


def test_reactive_limits_match_pandapower():
    check_grid("illinois200", enforce_q_lims=True)


@pytest.mark.slow
def test_reactive_limits_match_pandapower_on_texas():
    check_grid("texas2000", enforce_q_lims=True)


def test_reactive_limits_bind_where_pandapower_says(illinois):
    """The limits change the answer: without them the same case is off by more than the tolerance."""
    net = illinois.net
    limited = solve(prepare(copy.deepcopy(net), [], "il", enforce_q_lims=True), Scenarios(n=1))
    free = solve(prepare(copy.deepcopy(net), [], "il"), Scenarios(n=1))
    assert np.nanmax(np.abs(limited.vm_pu[0] - free.vm_pu[0])) > 10 * V_TOL
    assert_agrees(limited, 0, reference(net, enforce_q_lims=True))


def test_reactive_limits_default_follows_the_model(illinois, hv_mixed):
    assert q_limits_default(illinois.net)
    assert not q_limits_default(hv_mixed.net)


def test_reactive_limits_asked_for_on_a_model_without_them_are_off_and_said(illinois, caplog):
    net = copy.deepcopy(illinois.net)
    net.gen[["min_q_mvar", "max_q_mvar"]] = np.nan
    assert not q_limits_default(net)
    with caplog.at_level(logging.WARNING):
        model = prepare(net, [], "il-no-limits", enforce_q_lims=True)
    assert "no reactive limits" in caplog.text
    assert not model.enforce_q_lims and "no reactive limits" in model.q_lims_note
    assert_agrees(solve(model, Scenarios(n=1)), 0, reference(net))


def distributed_reference(net, weights, bus, p_mw, q_lims=False, outage=None):
    """runpp(distributed_slack=True) with ``weights`` on the generators, none on the slack, and
    the slack's base-case output held at its bus (what Balance('participation') means)."""
    base = copy.deepcopy(net)
    pp.runpp(base)
    ref = scenario_net(net, None, outage)
    ref.gen["slack_weight"] = weights
    ref.ext_grid["slack_weight"] = 0.0
    pp.create_sgen(ref, ref.ext_grid.bus.iloc[0], float(base.res_ext_grid.p_mw.sum()))
    pp.create_load(ref, bus, p_mw, 0.0)
    pp.runpp(ref, distributed_slack=True, enforce_q_lims=q_lims)
    return ref


@pytest.mark.parametrize("weights", [None, "three"])
def test_participation_balance_matches_distributed_slack(illinois, weights):
    net = illinois.net
    if weights == "three":
        weights = {int(g): w for g, w in zip(net.gen.index[[0, 5, 9]], (1.0, 2.0, 3.0), strict=True)}
    balance = Balance("participation", weights)
    bus = int(net.load.bus.iloc[5])
    model = prepare(copy.deepcopy(net), [bus], "il", balance=balance)
    site_p = np.array([[0.0], [60.0], [250.0]])
    result = solve(model, Scenarios(n=3, site_p_mw=site_p))
    share = participation_weights(net, balance)
    slack = solve(prepare(copy.deepcopy(net), [bus], "il"), Scenarios(n=3, site_p_mw=site_p))
    for row in range(3):
        assert_agrees(result, row, distributed_reference(net, share, bus, site_p[row, 0]))
    # shared, the added 250 MW moves voltages differently than from the slack alone
    assert np.nanmax(np.abs(result.vm_pu[2] - slack.vm_pu[2])) > 10 * V_TOL


def test_participation_with_reactive_limits_matches_pandapower(illinois):
    net = illinois.net
    bus = int(net.load.bus.iloc[5])
    model = prepare(copy.deepcopy(net), [bus], "il", enforce_q_lims=True, balance=Balance("participation"))
    result = solve(model, Scenarios(n=1, site_p_mw=np.array([[150.0]])))
    share = participation_weights(net, Balance("participation"))
    assert_agrees(result, 0, distributed_reference(net, share, bus, 150.0, q_lims=True))


def test_participation_makes_up_a_generator_lost_with_its_transformer(illinois):
    """Gen 28 (134 MW, the largest share of Pmax headroom) leaves with its step-up transformer:
    the other participants take over its output and the site's, as in runpp's distributed slack."""
    net = illinois.net
    bus = int(net.load.bus.iloc[5])
    step_up = ("trafo", int(net.trafo.index[net.trafo.lv_bus.eq(134) | net.trafo.hv_bus.eq(134)][0]))
    balance = Balance("participation")
    model = prepare(copy.deepcopy(net), [bus], "il", balance=balance)
    assert 1.0 < model.balance_gain < 1.2  # losses make a participating MW worth more than one
    result = solve(model, Scenarios(n=2, site_p_mw=np.array([[0.0], [60.0]]), outages=(step_up, step_up)))
    share = participation_weights(net, balance)
    assert share[28] == share.max()
    for row, p_mw in enumerate((0.0, 60.0)):
        assert_agrees(result, row, distributed_reference(net, share, bus, p_mw, outage=step_up))


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({0: -1.0, 1: 2.0}, "must be a number ≥ 0"),
        ({0: 0.0, 1: 0.0}, "all zero"),
        ({99999: 1.0}, "unknown generator"),
    ],
)
def test_bad_participation_weights_are_refused(illinois, weights, message):
    with pytest.raises(UsageError, match=message):
        prepare(copy.deepcopy(illinois.net), [], "il", balance=Balance("participation", weights))


def test_unknown_balance_is_refused():
    with pytest.raises(UsageError, match="use 'slack' or 'participation'"):
        Balance("everyone")


def test_branches_taken_out_together_match_pandapower(illinois, monkeypatch):
    """A scenario's outage may be several branches at once, grouped or mixed alike."""
    import siting.engine.flow as flow

    net = illinois.net
    lines = net.line.index[net.line.in_service][:4].to_numpy()
    double = (("line", int(lines[0])), ("trafo", int(net.trafo.index[0])))
    outages = (double, ("line", int(lines[1])), (("line", int(lines[2])), ("line", int(lines[3]))), None)
    grouped_outages = tuple(o for o in outages for _ in range(8))
    scenarios = Scenarios(n=len(grouped_outages), outages=grouped_outages)
    model = prepare(copy.deepcopy(net))
    grouped = solve(model, scenarios)
    monkeypatch.setattr(flow, "MIN_OUTAGE_GROUP", 10**9)
    mixed = solve(model, scenarios)
    np.testing.assert_allclose(grouped.vm_pu, mixed.vm_pu, atol=1e-9, equal_nan=True)
    for row, outage in enumerate(outages):
        assert_agrees(grouped, 8 * row, reference(net, outage=outage))
    single = solve(model, Scenarios(n=1, outages=(double[:1],)))
    assert np.nanmax(np.abs(single.vm_pu[0] - grouped.vm_pu[0])) > 10 * V_TOL  # both are out


def test_added_site_loads_match_a_pandapower_load(oberrhein):
    net = oberrhein.net
    buses = oberrhein.substations["bus"].to_numpy()
    model = prepare(copy.deepcopy(net), buses, "oberrhein")
    site_p = np.array([[0.0, 0.0], [5.0, 0.0], [3.0, 8.0]])
    site_q = site_p * 0.33
    result = solve(model, Scenarios(n=3, site_p_mw=site_p, site_q_mvar=site_q))
    for row in range(3):
        sites = [(b, p, q) for b, p, q in zip(buses, site_p[row], site_q[row], strict=True) if p]
        assert_agrees(result, row, reference(net, sites=sites))
    # the loads really are there: 8 MW at a 25 MVA station lifts its transformer loading
    assert result.trafo_loading_percent[2, 1] > result.trafo_loading_percent[0, 1] + 20


def test_voltage_dependent_loads_tap_positions_shunts_and_open_switches(oberrhein):
    net = copy.deepcopy(oberrhein.net)
    net.load["const_z_p_percent"] = 30.0
    net.load["const_i_p_percent"] = 20.0
    net.load["const_z_q_percent"] = 50.0
    net.trafo.loc[net.trafo.index[0], "tap_pos"] = net.trafo.tap_pos.iloc[0] + 3
    pp.create_shunt(net, net.trafo.lv_bus.iloc[1], q_mvar=-2.0, p_mw=0.05)
    net.sgen.loc[net.sgen.index[:20], "in_service"] = False
    assert (~net.switch.closed).any()  # the model's own open switches (feeder ends)
    model = prepare(copy.deepcopy(net), [], "oberrhein-variant")
    scale = np.linspace(0.5, 1.5, 6)
    values = {("load", "p_mw"): np.outer(scale, net.load.p_mw.to_numpy())}
    result = solve(model, Scenarios(n=6, element_values=values))
    for row in (0, 5):
        assert_agrees(result, row, reference(net, {k: v[row] for k, v in values.items()}))


def test_slack_voltage_set_point_can_change_per_scenario(hv_mixed):
    net = hv_mixed.net
    model = prepare(copy.deepcopy(net), [], "hv")
    vm = np.array([[1.025, 1.025, 1.025], [np.nan, 1.0, np.nan]])
    result = solve(model, Scenarios(n=2, element_values={("ext_grid", "vm_pu"): vm}))
    for row in range(2):
        assert_agrees(result, row, reference(net, {("ext_grid", "vm_pu"): vm[row]}))


def test_chunks_give_the_same_numbers_as_one_batch(hv_mixed):
    model = prepare(copy.deepcopy(hv_mixed.net), [], "hv")
    scenarios = profile_scenarios(model.net, hv_mixed.profiles.iloc[:50])
    whole = solve(model, scenarios)
    chunked = solve(model, scenarios, chunk_size=7)
    assert np.array_equal(whole.vm_pu, chunked.vm_pu)
    assert np.array_equal(whole.line_loading_percent, chunked.line_loading_percent)


def test_overloaded_case_is_flagged_like_pandapower(oberrhein):
    net = oberrhein.net
    model = prepare(copy.deepcopy(net), [], "oberrhein")
    heavy = net.load.p_mw.to_numpy() * 25
    values = {("load", "p_mw"): np.vstack([net.load.p_mw.to_numpy(), heavy])}
    result = solve(model, Scenarios(n=2, element_values=values))
    assert result.converged.tolist() == [True, False]
    assert np.isnan(result.vm_pu[1]).all() and np.isnan(result.line_loading_percent[1]).all()
    with pytest.raises(pp.LoadflowNotConverged):
        reference(net, {("load", "p_mw"): heavy})


def test_outage_that_islands_buses_leaves_them_unsupplied(oberrhein):
    net = oberrhein.net
    trafo = net.trafo.index[0]
    model = prepare(copy.deepcopy(net), [], "oberrhein")
    result = solve(model, Scenarios(n=1, outages=(("trafo", int(trafo)),)))
    expected = reference(net, outage=("trafo", trafo))
    assert np.isnan(result.vm_pu[0]).sum() > 20
    assert_agrees(result, 0, expected)


def test_islanded_buses_in_the_model_are_dropped_with_a_warning(oberrhein, caplog):
    net = copy.deepcopy(oberrhein.net)
    lonely = pp.create_bus(net, 20.0, name="lonely")
    with caplog.at_level(logging.WARNING):
        model = prepare(net, [], "oberrhein-island")
    assert "not connected to a slack" in caplog.text
    result = solve(model, Scenarios(n=1))
    assert np.isnan(result.vm_pu[0, net.bus.index.get_loc(lonely)])


def test_missing_rating_is_refused_naming_the_line(oberrhein):
    net = copy.deepcopy(oberrhein.net)
    net.line.loc[net.line.index[3], "max_i_ka"] = np.nan
    with pytest.raises(GridError, match=r"line \d+: max_i_ka is nan, not a finite number"):
        prepare(net, [], "oberrhein")


def test_zero_impedance_branch_is_refused_naming_it(oberrhein):
    net = copy.deepcopy(oberrhein.net)
    line = net.line.index[5]
    net.line.loc[line, ["r_ohm_per_km", "x_ohm_per_km"]] = 0.0
    with pytest.raises(GridError, match="zero impedance"):
        prepare(net, [], "oberrhein")


def test_grid_without_slack_is_refused_before_solving(oberrhein):
    net = copy.deepcopy(oberrhein.net)
    net.ext_grid["in_service"] = False
    with pytest.raises(GridError, match="no in-service external grid"):
        prepare(net, [], "oberrhein")


def test_unknown_site_bus_is_refused(oberrhein):
    with pytest.raises(GridError, match="unknown bus"):
        prepare(copy.deepcopy(oberrhein.net), [99999], "oberrhein")


def test_profile_scenarios_follow_the_grid_profiles(hv_mixed):
    scenarios = profile_scenarios(hv_mixed.net, hv_mixed.profiles)
    assert scenarios.n == 35136
    loads = scenarios.element_values[("load", "p_mw")]
    assert loads.shape == (35136, len(hv_mixed.net.load))
    assert isinstance(hv_mixed.profiles.index, pd.DatetimeIndex)


def test_batch_threads_come_from_the_environment(monkeypatch):
    from siting.engine.flow import batch_threads

    monkeypatch.delenv("SITING_THREADS", raising=False)
    assert batch_threads() == 0  # every core
    monkeypatch.setenv("SITING_THREADS", "1")
    assert batch_threads() == 1
    monkeypatch.setenv("SITING_THREADS", "two")
    with pytest.raises(UsageError, match="SITING_THREADS=two"):
        batch_threads()


@pytest.mark.parametrize("fixture", ["hv_mixed", "illinois"])
def test_scenarios_sharing_an_outage_solve_on_a_model_with_it_out(fixture, request, monkeypatch):
    """Many scenarios with one outage each (as a capacity search makes) give the same numbers
    grouped per outage as mixed in one batch, and pandapower's."""
    import siting.engine.flow as flow

    grid = request.getfixturevalue(fixture)
    net = grid.net
    lines = [("line", int(i)) for i in net.line.index[net.line.in_service][:3]]
    factors = np.linspace(0.6, 1.2, 10)
    outages = tuple(o for o in lines for _ in factors)
    values = {("load", "p_mw"): np.outer(np.tile(factors, len(lines)), net.load.p_mw.to_numpy())}
    scenarios = Scenarios(n=len(outages), element_values=values, outages=outages)
    model = prepare(net)
    grouped = solve(model, scenarios)
    monkeypatch.setattr(flow, "MIN_OUTAGE_GROUP", 10**9)
    mixed = solve(model, scenarios)
    np.testing.assert_allclose(grouped.vm_pu, mixed.vm_pu, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(
        grouped.line_loading_percent, mixed.line_loading_percent, atol=1e-3, equal_nan=True
    )
    assert (grouped.converged == mixed.converged).all()
    for row in (0, 15, 29):
        load = {("load", "p_mw"): values[("load", "p_mw")][row]}
        assert_agrees(grouped, row, reference(net, load, outages[row]))


def test_outages_on_the_compensated_model_match_pandapower(illinois, monkeypatch):
    """Outages that leave the grid connected solve on the compensated model (no topology
    rebuild), a bridge's by status; both give runpp's numbers. At 2.5 × load an outage runpp
    cannot solve is flagged as not converged, with no numbers."""
    import siting.engine.flow as flow

    net = illinois.net
    trafo = ("trafo", int(net.trafo.index[net.trafo.in_service][0]))
    cases = [  # (outage, load factor, routed by compensator)
        (("line", 2), 1.0, True),
        (trafo, 1.0, True),
        ((("line", 2), ("line", 3)), 1.0, True),
        (("line", 0), 1.0, False),  # a bridge: its far bus is left unsupplied
        (("line", 2), 2.5, True),
        (("line", 1), 2.5, True),  # runpp does not converge
    ]
    values = {
        (table, column): np.array([net[table][column].to_numpy() * factor for _, factor, _ in cases])
        for table, column in (("load", "p_mw"), ("load", "q_mvar"))
    }
    scenarios = Scenarios(n=len(cases), element_values=values, outages=tuple(c[0] for c in cases))
    model = prepare(copy.deepcopy(net))
    paths = flow.outage_paths(model, scenarios.outages)
    assert (paths == flow.COMPENSATED).tolist() == [c[2] for c in cases]
    result = solve(model, scenarios)
    assert result.converged.tolist() == [True] * 5 + [False]
    assert np.isnan(result.vm_pu[3]).sum() == 1
    assert np.isnan(result.vm_pu[5]).all() and np.isnan(result.line_loading_percent[5]).all()
    for row, (outage, _, _) in enumerate(cases):
        row_values = {key: value[row] for key, value in values.items()}
        if result.converged[row]:
            assert_agrees(result, row, reference(net, row_values, outage))
        else:
            with pytest.raises(pp.LoadflowNotConverged):
                reference(net, row_values, outage)
    outaged = net.line.index.get_loc(2)
    assert result.line_loading_percent[0, outaged] == 0.0  # out of service, as runpp reports it
    monkeypatch.setattr(flow, "outage_paths", lambda m, o: np.full(len(o), flow.BY_STATUS, np.int8))
    by_status = solve(model, scenarios)
    assert (by_status.converged == result.converged).all()
    np.testing.assert_allclose(result.vm_pu, by_status.vm_pu, atol=1e-8, equal_nan=True)
    np.testing.assert_allclose(
        result.line_loading_percent, by_status.line_loading_percent, atol=1e-5, equal_nan=True
    )


def test_start_guides_change_nothing_but_the_start(illinois, monkeypatch):
    """Forced on a grid that solves from the flat start: the same answers (≤ 1e-9 pu), outages
    on the compensated model and by status alike; a bridge's guide goes out with it, so its
    far bus is unsupplied, not held by the guide."""
    import siting.engine.flow as flow

    net = illinois.net
    outages = (None, ("line", 2), ("line", 0), (("line", 2), ("line", 3)))
    scenarios = Scenarios(n=len(outages), outages=outages)
    plain = prepare(copy.deepcopy(net))
    assert len(plain.pgm.start_guides) == 0  # its base case solves from the flat start
    monkeypatch.setattr(flow, "_solves_flat", lambda solver: False)
    guided = prepare(copy.deepcopy(net))
    assert len(guided.pgm.start_guides) == int(net.line.in_service.sum() + net.trafo.in_service.sum())
    assert flow.outage_paths(guided, outages).tolist() == [0, 1, 2, 1]
    ours, theirs = solve(guided, scenarios), solve(plain, scenarios)
    assert ours.converged.all() and np.isnan(ours.vm_pu[2]).sum() == 1
    np.testing.assert_allclose(ours.vm_pu, theirs.vm_pu, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(
        ours.line_loading_percent, theirs.line_loading_percent, atol=1e-6, equal_nan=True
    )
    assert_agrees(ours, 2, reference(net, outage=("line", 0)))


def test_grouped_zip_shares_give_pandapowers_own_case():
    """The base power flow's case must be runpp's to the bit: several loads per bus with
    different shares (pandapower averages them unweighted), loads out of service, and two
    buses fused by a closed bus-bus switch."""
    from siting.engine.pgm_model import CID_P, CID_Q, CZD_P, CZD_Q, base_power_flow

    net = pp.networks.case9()
    net.load[["const_z_p_percent", "const_i_p_percent"]] = [[30.0, 10.0], [0.0, 50.0], [20.0, 20.0]]
    net.load["const_i_q_percent"] = [40.0, 0.0, 5.0]
    pp.create_load(net, net.load.bus.iloc[0], 2.0, 1.0, const_z_p_percent=70.0, const_z_q_percent=25.0)
    pp.create_load(net, net.load.bus.iloc[1], 3.0, 1.0, const_i_p_percent=90.0, in_service=False)
    twin = pp.create_bus(net, net.bus.vn_kv.iloc[8])
    pp.create_switch(net, 8, twin, "b")
    pp.create_load(net, twin, 1.0, 0.2, const_i_p_percent=60.0)
    reference = copy.deepcopy(net)
    pp.runpp(reference, numba=False)
    base_power_flow(net, "case9")
    for part in ("bus", "branch", "gen"):
        np.testing.assert_array_equal(net._ppc[part], reference._ppc[part])
    pd.testing.assert_frame_equal(net.res_bus, reference.res_bus)
    shares = net._ppc["bus"][net._pd2ppc_lookups["bus"][net.load.bus.iloc[0]]]
    assert shares[CZD_P] == pytest.approx((0.3 + 0.7) / 2) and shares[CID_P] == pytest.approx(0.05)
    assert shares[CID_Q] == pytest.approx(0.2) and shares[CZD_Q] == pytest.approx(0.125)
