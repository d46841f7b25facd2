"""OpenDSS feeders: the balanced model against OpenDSS's own solution, verification, bad input."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandapower as pp
import pytest

from siting.errors import GridError, SitingError
from siting.sources.catalog import GRIDS_DIR
from siting.sources.opendss import read_opendss

FEEDERS = GRIDS_DIR / "opendss"
IEEE13 = FEEDERS / "IEEETestCases" / "13Bus" / "IEEE13Nodeckt.dss"
IEEE123 = FEEDERS / "IEEETestCases" / "123Bus" / "Siting_IEEE123.dss"
IEEE9500 = FEEDERS / "ieee9500" / "Master-unbal-initial-config.dss"


@pytest.fixture(scope="module")
def ieee13():
    return read_opendss(IEEE13)


@pytest.fixture(scope="module")
def ieee123():
    return read_opendss(IEEE123)


def _solved(circuit):
    net = circuit.net
    pp.runpp(net)
    losses = net.res_line["pl_mw"].sum() + net.res_trafo["pl_mw"].sum()
    return net.res_ext_grid["p_mw"].sum(), net.res_ext_grid["q_mvar"].sum(), losses


@pytest.mark.parametrize(
    # relative tolerances on head P, Q and losses, and on |V| of three-phase buses (pu). IEEE 13 is
    # strongly unbalanced: the balanced model loses less (losses grow with the square of the
    # unbalanced phase currents) and sees the mean of the phase voltages.
    ("feeder", "p_rel", "q_rel", "loss_rel", "dv_pu"),
    [("ieee13", 0.005, 0.03, 0.12, 0.02), ("ieee123", 0.003, 0.01, 0.06, 0.01)],
)
def test_balanced_model_matches_opendss(request, feeder, p_rel, q_rel, loss_rel, dv_pu):
    circuit = request.getfixturevalue(feeder)
    p, q, losses = _solved(circuit)
    assert p == pytest.approx(circuit.head_p_mw, rel=p_rel)
    assert q == pytest.approx(circuit.head_q_mvar, rel=q_rel)
    assert losses == pytest.approx(circuit.losses_mw, rel=loss_rel)
    three_phase = (circuit.net.bus["phases"] == 3).to_numpy()
    vm = circuit.net.res_bus["vm_pu"].to_numpy()
    assert np.abs(vm - circuit.vm_pu["mean"].to_numpy())[three_phase].max() < dv_pu


def test_ieee13_solved_state(ieee13):
    assert ieee13.head_p_mw == pytest.approx(3.567, abs=1e-3)  # OpenDSS's own answer
    # the three single-phase regulators are one unit at their solved taps
    assert len(ieee13.net.trafo) == 3
    taps = ieee13.states[ieee13.states["element"] == "transformer.reg1"]
    assert taps["value"].max() > 1.05  # OpenDSS moved reg1's tap: the model carries it
    # the regulators' near-zero impedance is raised and says so
    assert ieee13.unrepresented["reason"].str.startswith("approximated").sum() == 4
    assert ieee13.coordinates == "planar"


def test_single_phase_lateral_is_three_times_its_impedance_at_a_third_of_its_rating(ieee123):
    """A one-phase line carries its load on one phase, the balanced model on three."""
    import opendssdirect as dss

    read_opendss(IEEE123)  # the engine holds this circuit now
    dss.Circuit.SetActiveElement("line.l1")  # 1-2, phase b only
    assert dss.CktElement.NumPhases() == 1
    flat = np.asarray(dss.CktElement.YPrim())
    y = (flat[0::2] + 1j * flat[1::2]).reshape(2, 2)
    z_phase = 1 / -y[0, 1]
    line = ieee123.net.line.set_index("name").loc["line.l1"]
    assert line["r_ohm_per_km"] == pytest.approx(3 * z_phase.real, rel=1e-9)
    assert line["x_ohm_per_km"] == pytest.approx(3 * z_phase.imag, rel=1e-9)
    assert line["max_i_ka"] * 1e3 == pytest.approx(dss.CktElement.NormalAmps() / 3, rel=1e-9)


@pytest.mark.slow
def test_ieee13_capacity_verified_by_opendss():
    from siting.capacity import CapacitySettings, substation_capacity
    from siting.sources.grid import load_grid
    from siting.verify_dss import verify_capacities

    grid = load_grid("ieee13")
    table = substation_capacity(grid, CapacitySettings(n1=False, year=False)).table
    assert table["n0_binding_element"].iloc[0] == "transformer.sub"
    check = verify_capacities(IEEE13, table["bus_name"].tolist(), table["hc_n0_mw"].to_numpy())
    assert check["opendss_mw"].iloc[0] == pytest.approx(table["hc_n0_mw"].iloc[0])
    assert check["binding_element"].iloc[0].lower() == "transformer.sub"
    assert check["binding_value"].iloc[0] > 100.0  # broken one step above, on its worst phase


def _master(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "master.dss"
    path.write_text(text)
    return path


CIRCUIT = "New Circuit.t basekv=12.47 pu=1.0 bus1=src\n"
LINE = "New Line.a bus1=src bus2=b phases=3 r1=0.1 x1=0.3 length=1\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CIRCUIT + "Redirect nowhere.dss\n", "Redirect file not found"),
        (
            CIRCUIT + LINE + "New PVsystem.p bus1=b kV=12.47 kVA=100 Pmpp=100 Mode=7\n",
            "OpenDSS refused the circuit",
        ),
        ("New Line.a bus1=src bus2=b\n", "OpenDSS refused the circuit"),
        (
            CIRCUIT
            + LINE
            + "New Load.big bus1=b kV=12.47 kW=50000 model=1 vminpu=0.01\nSet maxiterations=2\n",
            "does not converge",
        ),
        (
            CIRCUIT + LINE + "Set voltagebases=[12.47]\nCalcvoltagebases\nBuscoords xy.csv\n",
            "coordinate rows",
        ),
    ],
)
def test_bad_master_files_are_one_line_errors(tmp_path, text, message):
    (tmp_path / "xy.csv").write_text("src, 0, 0\nb, 1, 1\nghost1, 2, 2\nghost2, 3, 3\n")
    with pytest.raises(SitingError) as err:
        read_opendss(_master(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_load_shape_shorter_than_the_year(tmp_path):
    text = (
        CIRCUIT
        + LINE
        + (
            "New Loadshape.short npts=100 interval=1 mult=(" + " ".join(["0.5"] * 100) + ")\n"
            "New Load.l bus1=b kV=12.47 kW=100 yearly=short\n"
        )
    )
    with pytest.raises(GridError, match="100 hourly points, shorter than the 8760 hours"):
        read_opendss(_master(tmp_path, text), year=2021)


def test_9500_node_generators_file_is_refused_with_opendss_message(tmp_path):
    """The feeder as published: its Generators.dss line 7 gives PVFarm1 ``Mode=7``, which
    DSS-Extensions refuses (the shipped copy has the word removed, see grids/README.md)."""
    shutil.copytree(IEEE9500.parent, tmp_path, dirs_exist_ok=True)
    generators = tmp_path / "Generators.dss"
    lines = generators.read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace("Pmpp=1000 ", "Pmpp=1000 Mode=7 ")
    generators.write_text("".join(lines))
    with pytest.raises(GridError) as err:
        read_opendss(tmp_path / IEEE9500.name)
    text = str(err.value)
    assert "Generators.dss" in text and "line: 7" in text and '"7" is not a valid value' in text


REGULATOR_FAR_OUT = (
    CIRCUIT
    + "New Line.feeder bus1=src bus2=far phases=3 r1=0.3 x1=0.6 length=5 units=km\n"
    + "New Transformer.reg phases=3 windings=2 buses=(far, reg) conns=(wye, wye) kvs=(12.47, 12.47) "
    + "kvas=(10000, 10000) xhl=0.1 %loadloss=0.01 taps=(1.0, 1.05)\n"
    + "New Line.lateral bus1=reg bus2=b phases=3 r1=0.3 x1=0.6 length=1 units=km\n"
    + "New Load.l bus1=b kV=12.47 kW=1000 kvar=300 model=1\n"
    + "Set voltagebases=[12.47]\nCalcvoltagebases\n"
)


def test_near_ideal_regulator_far_out_on_a_feeder_solves_from_a_flat_start(tmp_path, monkeypatch):
    """A 0.1 % regulator at a 5 % tap behind 5 km of line: at the flat start its circulating
    term 2·(t − 1)²/z outweighs the line's stiffness and Newton-Raphson diverges, unless the
    converter raises its impedance; raised, the model still carries OpenDSS's solution."""
    from pandapower.powerflow import LoadflowNotConverged

    from siting.sources import opendss

    master = _master(tmp_path, REGULATOR_FAR_OUT)
    monkeypatch.setattr(opendss, "FLAT_START_SHARE", math.inf)  # the impedance as OpenDSS has it
    as_given = read_opendss(master)
    assert as_given.net.trafo["vk_percent"].iloc[0] == pytest.approx(0.1, rel=0.01)
    with pytest.raises(LoadflowNotConverged):
        pp.runpp(as_given.net)
    monkeypatch.undo()
    circuit = read_opendss(master)
    p, q, _ = _solved(circuit)
    reasons = circuit.unrepresented.set_index("element")["reason"]
    assert "solvable from a flat start" in reasons["transformer.reg"]
    assert 0.3 < circuit.net.trafo["vk_percent"].iloc[0] < 1.0
    assert p == pytest.approx(circuit.head_p_mw, rel=1e-3)
    assert q == pytest.approx(circuit.head_q_mvar, rel=1e-2)
    vm = circuit.net.res_bus["vm_pu"].to_numpy()
    assert np.abs(vm - circuit.vm_pu["mean"].to_numpy()).max() < 1e-3


@pytest.mark.slow
def test_ieee9500_balanced_model_solves_and_matches_opendss():
    """The IEEE 9500-node feeder (one 115 kV source, three substations, regulators far out on
    the feeders) solves in pandapower and carries OpenDSS's solution; its three 69/12.47 kV
    substations are stations of their own beside the 115/69 kV one at the source."""
    circuit = read_opendss(IEEE9500)
    stations = circuit.net.trafo.dropna(subset=["substation"]).groupby("substation")["lv_bus"].first()
    assert sorted(stations.index) == ["hvmv69_11sub1", "hvmv69_11sub2", "hvmv69_11sub3", "substation"]
    kv = circuit.net.bus.loc[stations.to_numpy(), "vn_kv"].round(2).tolist()
    assert sorted(kv) == [12.47, 12.47, 12.47, 69.0]
    assert circuit.head_p_mw == pytest.approx(10.008, abs=1e-3)  # OpenDSS's own answer
    p, q, losses = _solved(circuit)
    raised = circuit.unrepresented[circuit.unrepresented["reason"].str.contains("flat start")]
    assert raised["element"].str.startswith("transformer.vreg3_a").any()
    assert p == pytest.approx(circuit.head_p_mw, rel=0.005)
    assert q == pytest.approx(circuit.head_q_mvar, rel=0.02)
    assert losses == pytest.approx(circuit.losses_mw, rel=0.1)  # single-phase 120 V loads: unbalanced
    three_phase = (circuit.net.bus["phases"] == 3).to_numpy()
    vm = circuit.net.res_bus["vm_pu"].to_numpy()
    assert np.abs(vm - circuit.vm_pu["mean"].to_numpy())[three_phase].max() < 0.002


@pytest.mark.slow
def test_ckt5_load_shapes_become_hourly_profiles_and_substation_is_placed():
    from siting.sources.grid import load_grid
    from siting.sources.peak import net_peak_step

    grid = load_grid("epri-ckt5")
    assert len(grid.substations) == 1
    assert grid.substations["bus_name"].iloc[0] == "_mdv_sub_1_lsb"
    assert grid.substations["transformer_mva"].iloc[0] == pytest.approx(10.0)
    assert np.isfinite(grid.substations[["lon", "lat"]].to_numpy()).all()
    p = grid.profiles["load"]["p_mw"]
    assert p.shape == (8760, len(grid.net.load))
    # each load follows its own shape times its solved power: residential and commercial differ
    ratio = p.div(grid.net.load["p_mw"], axis=1)
    assert ratio.round(9).T.drop_duplicates().shape[0] == 3  # the three shapes of Loadshapes_ckt5.dss
    peak = net_peak_step(grid.profiles)
    assert p.sum(axis=1).iloc[peak] == pytest.approx(p.sum(axis=1).max(), rel=0.02)


def test_planar_feeder_refuses_gis_layers(ieee13):
    from siting.errors import UsageError
    from siting.sources.opendss import refuse_gis_layers

    grid = type("G", (), {"name": "ieee13", "net": ieee13.net})()
    with pytest.raises(UsageError, match="local planar map"):
        refuse_gis_layers(grid)


def test_engine_solves_the_converted_feeder_as_pandapower_does(ieee123):
    import copy

    from siting.engine.flow import Scenarios, prepare, solve

    net = copy.deepcopy(ieee123.net)
    result = solve(prepare(copy.deepcopy(net), [], "ieee123"), Scenarios(1))
    pp.runpp(net)
    assert np.abs(result.vm_pu[0] - net.res_bus["vm_pu"].to_numpy()).max() < 1e-4
    assert np.abs(result.line_loading_percent[0] - net.res_line["loading_percent"].to_numpy()).max() < 0.1
    assert np.abs(result.trafo_loading_percent[0] - net.res_trafo["loading_percent"].to_numpy()).max() < 0.1


def test_relative_master_path_survives_opendss_changing_folder(monkeypatch):
    monkeypatch.chdir(GRIDS_DIR.parent)
    relative = IEEE13.relative_to(GRIDS_DIR.parent)
    read_opendss(relative)
    assert read_opendss(relative).head_p_mw == pytest.approx(3.567, abs=1e-3)


def test_topology_screen_skips_exactly_the_outages_whose_flows_leave_load_unsupplied(ieee123):
    """The screen that spares firm capacity the flows of islanding outages must agree with the
    flows themselves: single outages of IEEE 123's every branch, and pairs of them (tested
    by connected components), against state_limits' "supplied" test on solved flows."""
    import copy

    from siting.capacity import CapacitySettings, contingency_limits, net_outages
    from siting.engine.flow import prepare
    from siting.engine.search import States, state_limits
    from siting.engine.topology import islanding_outages

    model = prepare(copy.deepcopy(ieee123.net), [int(ieee123.net.ext_grid["bus"].iloc[0])], "ieee123")
    singles = net_outages(model.net)
    rng = np.random.default_rng(7)
    pairs = [tuple(singles[i] for i in rng.choice(len(singles), 2, replace=False)) for _ in range(40)]
    outages = [*singles, *pairs]
    screen = islanding_outages(model, outages)
    limits = state_limits(
        model, States({}, tuple(outages), len(outages)), contingency_limits(model, CapacitySettings())
    )
    assert limits.converged.all()
    np.testing.assert_array_equal(screen, ~limits.usable)
    assert 0 < screen[: len(singles)].sum() < len(singles)  # both kinds occur


def test_opendss_check_finds_the_first_limit_whatever_it_starts_from():
    """The interpolating search gives what a scan up from zero gives: the largest grid value
    within every limit below the first that breaks one, from starts below, at and above it."""
    from siting.capacity import CapacitySettings
    from siting.verify_dss import DssVerifier

    settings = CapacitySettings(cap_mw=3.0)
    buses = ["650", "671", "675"]
    verifier = DssVerifier(IEEE13, settings, buses)
    step = settings.resolution_mw
    for bus in buses:
        scan = 0
        while scan < settings.steps and verifier.check(bus, (scan + 1) * step).ok:
            scan += 1
        for start_mw in (0.0, scan * step, scan * step + 0.7, max(scan * step - 0.9, 0.0), 3.0):
            row = verifier.capacity(bus, start_mw)
            assert row["opendss_mw"] == pytest.approx(scan * step), (bus, start_mw)
            if scan < settings.steps:
                assert row["binding_criterion"] not in ("cap", "")
