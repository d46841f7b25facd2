"""PSS/E RAW cases: the converted net solves like pypowsybl's own OpenLoadFlow and like the engine."""

import csv
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from siting import GridError, load_grid
from siting.engine.flow import Scenarios, prepare, solve
from siting.sources.psse import iidm_to_pandapower, scan_raw

PSSE = Path(__file__).resolve().parents[1] / "grids" / "psse"
RTS = PSSE / "RTS-GMLC.RAW"
WECC = PSSE / "240busWECC_2018_PSS33.raw"
TEXAS = PSSE / "ACTIVSg2000.RAW"
V_TOL = 1e-4
LOADING_TOL = 0.1


def openloadflow_agreement(path: Path) -> tuple[float, float, float]:
    """Largest |ΔV| (pu), |Δθ| (degrees) and |ΔP| of lines (MW), pandapower runpp vs OpenLoadFlow.

    Both solve the same data the same way: fixed slack (the RAW swing bus), no reactive
    limits, taps and switched shunts fixed at the importer's positions, remote voltage
    control held locally, generators at PV buses regulating.
    """
    import pypowsybl
    import pypowsybl.loadflow as lf

    buses = scan_raw(path)
    network = pypowsybl.network.load(str(path))
    gens = network.get_generators(all_attributes=True)
    pv_bus = buses.loc[gens["bus_breaker_bus_id"].str[1:].astype(int), "kind"].to_numpy() >= 2
    turn_on = gens.index[~gens["voltage_regulator_on"].to_numpy() & pv_bus]
    if len(turn_on):
        network.update_generators(id=list(turn_on), voltage_regulator_on=[True] * len(turn_on))
    buses.attrs["switched_shunt_mvar"] = {}  # the importer's shunt sections, which OLF solves with
    net = iidm_to_pandapower(network, buses, str(path), f_hz=buses.attrs["f_hz"])
    parameters = lf.Parameters(
        distributed_slack=False,
        use_reactive_limits=False,
        transformer_voltage_control_on=False,
        shunt_compensator_voltage_control_on=False,
        phase_shifter_regulation_on=False,
        read_slack_bus=True,
        voltage_init_mode=lf.VoltageInitMode.DC_VALUES,
        provider_parameters={"voltageRemoteControl": "false", "newtonRaphsonConvEpsPerEq": "1e-8"},
    )
    assert lf.run_ac(network, parameters)[0].status == lf.ComponentStatus.CONVERGED
    pp.runpp(net, tolerance_mva=1e-8, init="dc")
    view = network.get_bus_breaker_view_buses(all_attributes=True)
    number = view.index.str[1:].astype(int)
    vm = view["v_mag"].to_numpy() / net.bus["vn_kv"].loc[number].to_numpy()
    dv = np.abs(net.res_bus["vm_pu"].loc[number].to_numpy() - vm).max()
    da = np.abs(net.res_bus["va_degree"].loc[number].to_numpy() - view["v_angle"].to_numpy()).max()
    p1 = network.get_lines()["p1"]
    p1.index = p1.index.str.strip()  # pypowsybl keeps the RAW circuit field's padding in its ids
    ours = pd.Series(net.res_line["p_from_mw"].to_numpy(), index=net.line["name"])
    dp = np.abs(ours - p1.reindex(ours.index)).max()
    return dv, da, dp


@pytest.mark.slow  # the Java load flow's start-up alone takes ~30 s on a shared machine
@pytest.mark.parametrize("path", [RTS, WECC], ids=["rts-gmlc", "wecc240"])
def test_raw_case_solves_like_openloadflow(path):
    dv, da, dp = openloadflow_agreement(path)
    assert dv < 1e-6 and da < 1e-4 and dp < 1e-3


@pytest.mark.slow
def test_activsg2000_raw_solves_like_openloadflow():
    dv, da, dp = openloadflow_agreement(TEXAS)
    assert dv < 1e-6 and da < 1e-4 and dp < 1e-3


@pytest.mark.parametrize(
    "path", [RTS, WECC, pytest.param(TEXAS, marks=pytest.mark.slow)], ids=["rts-gmlc", "wecc240", "texas"]
)
def test_engine_matches_pandapower_on_raw_cases(path):
    grid = load_grid(path)
    net = grid.net
    result = solve(prepare(net, source=str(path)), Scenarios(n=1))
    pp.runpp(net)
    assert result.converged.all()
    assert np.nanmax(np.abs(result.vm_pu[0] - net.res_bus["vm_pu"].to_numpy())) <= V_TOL
    for ours, theirs in (
        (result.line_loading_percent[0], net.res_line["loading_percent"].to_numpy()),
        (result.trafo_loading_percent[0], net.res_trafo["loading_percent"].to_numpy()),
    ):
        assert np.nanmax(np.abs(ours - theirs)) <= LOADING_TOL


def test_rts_raw_case_comes_through_element_by_element():
    net = load_grid(RTS).net
    assert (len(net.bus), len(net.line), len(net.trafo), len(net.load)) == (73, 105, 15, 51)
    # the swing bus (IDE 3) is 113; the importer's slack terminal there is a load, not a generator
    assert net.ext_grid["bus"].tolist() == [113] and net.ext_grid["name"].iloc[0].startswith("B113-G")
    assert net.bus.loc[101, "name"] == "ABEL" and net.bus.loc[101, "vn_kv"] == 138.0
    # PSS/E switched shunt BINIT −100 Mvar at 1 pu: a 100 Mvar reactor
    assert net.shunt.loc[net.shunt["bus"] == 106, "q_mvar"].sum() == pytest.approx(100.0)
    # RATEA 175 MVA of line 101–102 at 138 kV
    line = net.line[net.line["name"].str.strip() == "L-101-102-1"].iloc[0]
    assert line["max_i_ka"] == pytest.approx(175 / (np.sqrt(3) * 138), rel=1e-6)


def _edit(tmp_path: Path, source: Path, edit) -> Path:
    lines = source.read_text().splitlines()
    path = tmp_path / "case.raw"
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


def _line_of(lines: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(lines) if line.lstrip().startswith(prefix))


def test_unsupported_version_is_refused(tmp_path):
    path = _edit(tmp_path, RTS, lambda lines: [lines[0].replace(" 33,", " 30,", 1), *lines[1:]])
    with pytest.raises(GridError, match="version 30 is not supported"):
        load_grid(path)


def test_truncated_file_names_the_line(tmp_path):
    def cut(lines):
        at = _line_of(lines, "0 / END OF BRANCH DATA")
        return lines[: at - 3]  # inside the branch data

    path = _edit(tmp_path, RTS, cut)
    with pytest.raises(GridError, match=r"line \d+: the file ends inside the branch data"):
        load_grid(path)


def test_truncated_transformer_record_names_the_line(tmp_path):
    def cut(lines):
        end = _line_of(lines, "0 / END OF TRANSFORMER DATA")
        return [*lines[: end - 1], *lines[end:]]  # last transformer loses its fourth line

    path = _edit(tmp_path, RTS, cut)
    with pytest.raises(GridError, match=r"line \d+: transformer record ends after 3 of its 4 lines"):
        load_grid(path)


def test_duplicate_bus_number_is_refused(tmp_path):
    def duplicate(lines):
        at = _line_of(lines, "102,")
        return [*lines[: at + 1], lines[at].replace("102,", "101,", 1), *lines[at + 1 :]]

    path = _edit(tmp_path, RTS, duplicate)
    with pytest.raises(GridError, match="bus number 101 is already used at line"):
        load_grid(path)


def test_branch_to_a_missing_bus_is_refused(tmp_path):
    def rewire(lines):
        at = _line_of(lines, "0 / END OF GENERATOR DATA") + 1
        while lines[at].lstrip().startswith("@!"):
            at += 1
        lines[at] = lines[at].replace("102,", "999,", 1)
        return lines

    path = _edit(tmp_path, RTS, rewire)
    with pytest.raises(GridError, match="branch record names bus 999, which is not in the bus data"):
        load_grid(path)


@pytest.mark.slow
def test_capacity_runs_on_a_raw_case_without_coordinates():
    from siting.capacity import CapacitySettings, substation_capacity

    grid = load_grid(RTS)
    study = substation_capacity(grid, CapacitySettings(n1=False, year=False), substations=[6])
    row = study.table.iloc[0]
    assert row["name"] == "CAESAR" and np.isnan(row["lon"])
    # bound by undervoltage at 31.2 MW (RTS-GMLC's 138 kV area 3 at the case's dispatch)
    assert row["hc_n0_mw"] == pytest.approx(31.2, abs=0.1) and row["binding_criterion"] == "undervoltage"


def _branches(net, values: dict[str, np.ndarray], offset: int) -> pd.DataFrame:
    """Branch values keyed by (lower bus number, higher bus number, n-th parallel)."""
    rows = []
    for table, ends in (("line", ("from_bus", "to_bus")), ("trafo", ("hv_bus", "lv_bus"))):
        a, b = (net[table][end].to_numpy() + offset for end in ends)
        rows.append(pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b), "value": values[table]}))
    frame = pd.concat(rows, ignore_index=True)
    frame["k"] = frame.groupby(["a", "b"]).cumcount()
    return frame.set_index(["a", "b", "k"])["value"]


def _ratings_mva(net) -> dict[str, np.ndarray]:
    line_kv = net.bus["vn_kv"].loc[net.line["from_bus"]].to_numpy()
    return {
        "line": np.sqrt(3) * line_kv * net.line["max_i_ka"].to_numpy(),
        "trafo": net.trafo["sn_mva"].to_numpy(),
    }


@pytest.mark.slow
def test_activsg2000_raw_matches_the_matpower_case():
    """Same grid, two files: equal once the MATPOWER case's own operating data is applied.

    The files differ in data, not in conversion: the MATPOWER case holds other switched-shunt
    settings at 80 buses and other ratings on 125 branches. pandapower's MATPOWER converter
    also keeps the first generator of a bus as its ``gen`` even when it is out of service,
    which leaves buses 5444, 6349 and 8155 without voltage control; that is undone here.
    """
    from siting.sources.grid import read_matpower

    net = load_grid(TEXAS).net
    case = read_matpower(Path(__file__).resolve().parents[1] / "grids" / "activsg" / "case_ACTIVSg2000.m")
    assert sorted(net.bus.index) == sorted(case.bus.index + 1)  # MATPOWER's bus i is index i − 1
    assert (net.bus["vn_kv"].to_numpy() == case.bus["vn_kv"].loc[net.bus.index - 1].to_numpy()).all()
    shunts = case.shunt[case.shunt["in_service"]].groupby(case.shunt["bus"] + 1)["q_mvar"].sum()
    raw_shunts = net.shunt[net.shunt["in_service"]].groupby("bus")["q_mvar"].sum()
    union = shunts.index.union(raw_shunts.index)
    differ = ~np.isclose(
        raw_shunts.reindex(union, fill_value=0), shunts.reindex(union, fill_value=0), atol=0.01
    )
    assert differ.sum() == 80
    net.shunt = net.shunt[~net.shunt["bus"].isin(shunts.index) & ~net.shunt["name"].str.contains("SwSH")]
    pp.create_shunts(
        net, shunts.index, q_mvar=shunts.to_numpy(), p_mw=0.0, vn_kv=net.bus["vn_kv"].loc[shunts.index]
    )
    for bus in case.gen.loc[~case.gen["in_service"], "bus"]:
        units = case.sgen[(case.sgen["bus"] == bus) & case.sgen["in_service"]]
        if len(units) and not (case.gen["in_service"] & (case.gen["bus"] == bus)).any():
            case.gen.loc[case.gen.index[case.gen["bus"] == bus][0], ["in_service", "p_mw"]] = [
                True,
                units["p_mw"].sum(),
            ]
            case.sgen.loc[units.index, "in_service"] = False
    pp.runpp(net)
    pp.runpp(case)
    vm_case = case.res_bus["vm_pu"].loc[net.bus.index - 1].to_numpy()
    assert np.abs(net.res_bus["vm_pu"].to_numpy() - vm_case).max() <= V_TOL
    raw = _branches(net, {t: net[f"res_{t}"]["loading_percent"].to_numpy() for t in ("line", "trafo")}, 0)
    mpc = _branches(case, {t: case[f"res_{t}"]["loading_percent"].to_numpy() for t in ("line", "trafo")}, 1)
    same_rating = np.isclose(
        _branches(net, _ratings_mva(net), 0),
        _branches(case, _ratings_mva(case), 1).reindex(raw.index),
        rtol=1e-3,
    )
    assert len(raw) == len(mpc) == 3206 and (~same_rating).sum() == 125
    gap = np.abs(raw - mpc.reindex(raw.index))[same_rating]
    # MATPOWER rounds loads and branch data to 0.01: one branch of 3,081 is 0.103 points off
    assert np.quantile(gap, 0.999) <= LOADING_TOL and gap.max() <= 0.11


SAVNW35 = PSSE.parents[2] / "shared" / "data" / "grids" / "psse" / "case25_v35_savnwb.raw"
NOT_MODELLED = ("TWO-TERMINAL DC", "VSC DC LINE", "MULTI-TERMINAL DC", "FACTS DEVICE")


@pytest.mark.skipif(not SAVNW35.exists(), reason="the v35 savnw variant is in the shared data folder")
def test_v35_case_with_dc_lines_is_refused_at_the_dc_section(tmp_path):
    # its "@!" header comes before the case identification; its DC lines are not modelled
    with pytest.raises(GridError, match=r"line 201: two-terminal DC data; siting cannot model DC lines"):
        load_grid(SAVNW35)


@pytest.mark.skipif(not SAVNW35.exists(), reason="the v35 savnw variant is in the shared data folder")
def test_v35_case_reads_and_its_three_winding_star_points_are_no_substations(tmp_path):
    def ac_only(lines):
        kept, skip = [], False
        for line in lines:
            if line.lstrip().startswith("0 /") and "BEGIN" in line:
                kept.append(line)
                skip = any(f"BEGIN {name} DATA" in line for name in NOT_MODELLED)
            elif not skip:
                kept.append(line)
        return kept

    grid = load_grid(_edit(tmp_path, SAVNW35, ac_only))
    stars = grid.net.bus.index[grid.net.bus["star_point"]]
    assert len(stars) == 1  # one three-winding unit: three legs to its star point
    assert (grid.net.trafo["lv_bus"] == stars[0]).sum() == 3
    assert not grid.substations["bus"].isin(stars).any()
    assert sorted(grid.substations["name"]) == ["CONDENS-Y2", "EASTIE-1-N9", "MIDTIE-1-H1", "WESTIE-1-M4"]


@pytest.fixture(scope="module")
def rts_v35(tmp_path_factory) -> tuple[Path, list[str]]:
    """RTS-GMLC written as v35 by pypowsybl's exporter, and substation blocks for it.

    The exporter numbers buses 1…73 in the v33 file's order and writes an empty substation
    section; its duplicate fixed shunts are removed. The blocks added are one per IIDM
    substation (the importer's grouping of buses joined by transformers), named after its
    first bus in ``RTS-GMLC_bus.csv`` and placed at that bus's latitude/longitude; every bus
    has two busbar sections joined by a closed coupler, with its loads, machines and branch
    ends on alternating sections. Returns the bus-branch v35 file and the lines of the file
    with blocks.
    """
    import pypowsybl

    folder = tmp_path_factory.mktemp("rts35")
    network = pypowsybl.network.load(str(RTS))
    plain = folder / "rts35.raw"
    network.save(str(plain), format="PSS/E", parameters={"psse.export.update": "false"})
    lines = plain.read_text().splitlines()
    # pypowsybl 1.16.1's exporter writes each switched reactor a second time as a fixed shunt
    fixed = next(i for i, line in enumerate(lines) if "BEGIN FIXED SHUNT DATA" in line)
    end = next(i for i in range(fixed + 1, len(lines)) if lines[i].startswith("0 /"))
    lines = [*lines[: fixed + 1], *lines[end:]]
    plain.write_text("\n".join(lines) + "\n")

    def records(section: str) -> list[list[str]]:
        start = next(i for i, line in enumerate(lines) if f"BEGIN {section} DATA" in line)
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("0 /"))
        return [next(csv.reader([line], quotechar="'")) for line in lines[start + 1 : end]]

    view = network.get_bus_breaker_view_buses(all_attributes=True)
    station = network.get_voltage_levels()["substation_id"].reindex(view["voltage_level_id"]).to_numpy()
    members: dict[str, list[int]] = {}
    for number, name in enumerate(station, start=1):
        members.setdefault(name, []).append(number)
    terminals: dict[int, list[str]] = {}
    for fields in records("LOAD"):
        terminals.setdefault(int(fields[0]), []).append(f"'L','{fields[1]}'")
    for fields in records("GENERATOR"):
        terminals.setdefault(int(fields[0]), []).append(f"'M','{fields[1]}'")
    for fields in records("BRANCH"):
        terminals.setdefault(int(fields[0]), []).append(f"'B',{fields[1]},'{fields[2]}'")
        terminals.setdefault(int(fields[1]), []).append(f"'B',{fields[0]},'{fields[2]}'")
    places = pd.read_csv(PSSE / "RTS-GMLC_bus.csv", index_col="Bus ID")
    block = []
    for number, buses in enumerate(members.values(), start=1):
        first = int(view.index[buses[0] - 1].removeprefix("B"))
        block.append(f"{number},'{places.at[first, 'Bus Name'].upper()}',"
                     f"{places.at[first, 'lat']:.6f},{places.at[first, 'lng']:.6f},0.1")  # fmt: skip
        node = {bus: 2 * k + 1 for k, bus in enumerate(buses)}
        for bus in buses:
            block += [f"{node[bus]},'{bus}-A',{bus},1,1.0,0.0", f"{node[bus] + 1},'{bus}-B',{bus},1,1.0,0.0"]
        block.append("0 / END OF SUBSTATION NODE DATA, BEGIN SUBSTATION SWITCHING DEVICE DATA")
        block += [f"{node[bus]},{node[bus] + 1},'1','COUPLER {bus}',2,1,1,1e-4,0.0,0.0,0.0" for bus in buses]
        block.append("0 / END OF SUBSTATION SWITCHING DEVICE DATA, BEGIN SUBSTATION EQUIPMENT TERMINAL DATA")
        for bus in buses:
            block += [f"{bus},{node[bus] + k % 2},{t}" for k, t in enumerate(terminals.get(bus, []))]
        block.append("0 / END OF SUBSTATION EQUIPMENT TERMINAL DATA")
    end = next(i for i, line in enumerate(lines) if "END OF SUBSTATION DATA" in line)
    return plain, [*lines[:end], *block, *lines[end:]]


def _with_blocks(tmp_path: Path, lines: list[str], replace: dict[str, str] | None = None) -> Path:
    path = tmp_path / "with-substations.raw"
    text = "\n".join(lines) + "\n"
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new, 1)
    path.write_text(text)
    return path


def test_v35_substation_blocks_become_substations_at_their_places(rts_v35, tmp_path):
    plain, lines = rts_v35
    grid = load_grid(_with_blocks(tmp_path, lines))
    without = load_grid(plain)
    # the blocks replace the detection: 9 transformer stations without them
    assert set(without.substations["rule"]) == {"transformer LV bus"} and len(without.substations) == 9
    assert set(grid.substations["rule"]) == {"model substation"} and len(grid.substations) == 51
    abel = grid.substations.set_index("name").loc["ABEL"]
    assert abel["bus"] == 1 and (abel["lat"], abel["lon"]) == (33.396103, -113.835642)
    # a four-bus station (109, 110 at 138 kV; 111, 112 at 230 kV) connects at 110, its larger load
    assert grid.substations.set_index("name").loc["ALI", ["bus", "n_transformers"]].tolist() == [10, 2]
    # the bus-branch case is the same; and it is the v33 case the exporter wrote it from
    for net in (grid.net, without.net):
        pp.runpp(net, tolerance_mva=1e-9, init="dc")
    assert np.array_equal(grid.net.res_bus["vm_pu"], without.net.res_bus["vm_pu"])
    v33 = load_grid(RTS).net
    pp.runpp(v33, tolerance_mva=1e-9, init="dc")
    assert np.abs(grid.net.res_bus["vm_pu"].to_numpy() - v33.res_bus["vm_pu"].to_numpy()).max() < 1e-9


def test_a_substation_block_whose_open_coupler_splits_a_bus_is_refused(rts_v35, tmp_path):
    path = _with_blocks(tmp_path, rts_v35[1], {"1,2,'1','COUPLER 1',2,1,": "1,2,'1','COUPLER 1',2,0,"})
    with pytest.raises(GridError, match=r"substation 'ABEL': its open switching devices split bus 1 in 2"):
        load_grid(path)


def test_a_substation_block_whose_closed_switch_joins_two_buses_is_refused(rts_v35, tmp_path):
    joined = "0 / END OF SUBSTATION SWITCHING DEVICE DATA"
    lines = rts_v35[1]
    ali = next(i for i, line in enumerate(lines) if line.startswith("9,'ALI',") or ",'ALI'," in line)
    switch_end = next(i for i in range(ali, len(lines)) if lines[i].startswith(joined))
    edited = [*lines[:switch_end], "1,3,'1','TIE',2,1,1,0.0001,0.0,0.0,0.0", *lines[switch_end:]]
    with pytest.raises(GridError, match=r"'ALI': its closed switching devices join buses 9 and 10"):
        load_grid(_with_blocks(tmp_path, edited))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("1,'1-A',1,1,1.0,0.0", "1,'1-A',999,1,1.0,0.0", r"node names bus 999, which is not in the bus data"),
        ("'ABEL',33.396103,", "'ABEL',133.396103,", r"'ABEL' is at latitude 133.396.*LATI must lie in"),
        (
            "'ABEL',33.396103,-113.835642",
            "'ABEL',0.0,0.0",
            r"'ABEL' has no place \(LATI, LONG 0, 0\) where 60",
        ),
        ("1,1,'L','01'", "1,7,'L','01'", r"terminal at bus 1 names node 7, which is not a node of bus 1"),
    ],
)
def test_bad_substation_blocks_are_refused_naming_the_line(rts_v35, tmp_path, old, new, message):
    with pytest.raises(GridError, match=r"line \d+: .*" + message):
        load_grid(_with_blocks(tmp_path, rts_v35[1], {old: new}))


def test_a_case_truncated_inside_a_substation_block_is_refused(rts_v35, tmp_path):
    lines = rts_v35[1]
    cut = next(i for i, line in enumerate(lines) if "'ADAMS'" in line) + 2
    with pytest.raises(GridError, match=r"the file ends inside substation 'ADAMS''s node data"):
        load_grid(_with_blocks(tmp_path, lines[:cut]))
