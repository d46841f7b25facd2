"""OpenDSS feeders: the balanced model against OpenDSS's own solution, verification, bad input."""

from __future__ import annotations

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


def test_ieee13_balanced_model_matches_opendss(ieee13):
    # OpenDSS: 3.567 MW, 1.736 Mvar in, 0.112 MW lost; the feeder is strongly unbalanced, so the
    # balanced model loses less (losses grow with the square of the unbalanced phase currents).
    p, q, losses = _solved(ieee13)
    assert ieee13.head_p_mw == pytest.approx(3.567, abs=1e-3)
    assert p == pytest.approx(ieee13.head_p_mw, rel=0.005)
    assert q == pytest.approx(ieee13.head_q_mvar, rel=0.03)
    assert losses == pytest.approx(ieee13.losses_mw, rel=0.12)
    three_phase = (ieee13.net.bus["phases"] == 3).to_numpy()
    vm = ieee13.net.res_bus["vm_pu"].to_numpy()
    assert np.abs(vm - ieee13.vm_pu["mean"].to_numpy())[three_phase].max() < 0.02
    # the three single-phase regulators are one unit at their solved taps
    assert len(ieee13.net.trafo) == 3
    taps = ieee13.states[ieee13.states["element"] == "transformer.reg1"]
    assert taps["value"].max() > 1.05  # OpenDSS moved reg1's tap: the model carries it


def test_ieee123_balanced_model_matches_opendss(ieee123):
    p, q, losses = _solved(ieee123)
    assert p == pytest.approx(ieee123.head_p_mw, rel=0.003)
    assert q == pytest.approx(ieee123.head_q_mvar, rel=0.01)
    assert losses == pytest.approx(ieee123.losses_mw, rel=0.06)
    primary = (ieee123.net.bus["phases"] == 3).to_numpy()
    vm = ieee123.net.res_bus["vm_pu"].to_numpy()
    assert np.abs(vm - ieee123.vm_pu["mean"].to_numpy())[primary].max() < 0.01
    # the normally open tie switches are open, the regulators' tiny impedance is reported
    assert ieee123.coordinates == "planar"
    assert ieee123.unrepresented["reason"].str.startswith("approximated").sum() == 7


def test_single_phase_lateral_equivalent_keeps_losses(ieee123):
    """A one-phase line carries its load on one phase: three times the impedance, a third of the rating."""
    line = ieee123.net.line
    single = line[line["name"] == "line.l1"].iloc[0]  # 1-2, phase b only
    three = line[line["name"] == "line.l2"].iloc[0]  # 1-3, three-phase
    assert single["max_i_ka"] == pytest.approx(three["max_i_ka"] / 3, rel=1e-6) or single["max_i_ka"] < 0.2


@pytest.mark.slow
def test_ieee13_capacity_verified_by_opendss():
    from siting.capacity import substation_capacity
    from siting.sources.grid import load_grid
    from siting.verify_dss import verify_capacities

    grid = load_grid("ieee13")
    table = substation_capacity(grid, n1=False, year=False).table
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
        (CIRCUIT + LINE + "New PVsystem.p bus1=b kV=12.47 kVA=100 Pmpp=100 Mode=7\n", "OpenDSS refused the circuit"),
        ("New Line.a bus1=src bus2=b\n", "OpenDSS refused the circuit"),
        (
            CIRCUIT + LINE + "New Load.big bus1=b kV=12.47 kW=50000 model=1 vminpu=0.01\nSet maxiterations=2\n",
            "does not converge",
        ),
        (CIRCUIT + LINE + "Set voltagebases=[12.47]\nCalcvoltagebases\nBuscoords xy.csv\n", "coordinate rows"),
    ],
)
def test_bad_master_files_are_one_line_errors(tmp_path, text, message):
    (tmp_path / "xy.csv").write_text("src, 0, 0\nb, 1, 1\nghost1, 2, 2\nghost2, 3, 3\n")
    with pytest.raises(SitingError) as err:
        read_opendss(_master(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_load_shape_shorter_than_the_year(tmp_path):
    text = CIRCUIT + LINE + (
        "New Loadshape.short npts=100 interval=1 mult=(" + " ".join(["0.5"] * 100) + ")\n"
        "New Load.l bus1=b kV=12.47 kW=100 yearly=short\n"
    )
    with pytest.raises(GridError, match="100 hourly points, shorter than the 8760 hours"):
        read_opendss(_master(tmp_path, text), year=2021)


def test_9500_node_generators_file_is_refused_with_opendss_message():
    master = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grids" / "opendss" / "ieee9500"
    master = master / "Master-unbal-initial-config.dss"
    if not master.exists():
        pytest.skip(f"the IEEE 9500-node feeder is not at {master.parent.name}/ next to the repository")
    with pytest.raises(GridError) as err:
        read_opendss(master)
    text = str(err.value)
    assert "Generators.dss" in text and "line: 7" in text and '"7" is not a valid value' in text


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
    assert ratio.T.drop_duplicates().shape[0] == 3  # the three shapes of Loadshapes_ckt5.dss
    peak = net_peak_step(grid.profiles)
    assert p.sum(axis=1).iloc[peak] == pytest.approx(p.sum(axis=1).max(), rel=0.02)
