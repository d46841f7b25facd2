"""A planner's own contingency set: CSV, MATPOWER change tables and PSS/E .con OPEN BRANCH records."""

from pathlib import Path

import pytest

from siting import UsageError, load_grid
from siting.sources.contingencies import read_contingencies

ROOT = Path(__file__).resolve().parents[1]
RTS = ROOT / "grids" / "psse" / "RTS-GMLC.RAW"
CONTAB = ROOT.parent / "shared" / "data" / "grids" / "activsg" / "matpower" / "contab_ACTIVSg2000.m"


@pytest.fixture(scope="module")
def net():
    return load_grid(RTS).net


def _line(net, name: str) -> tuple[str, int]:
    return ("line", int(net.line.index[net.line["name"] == name][0]))


def test_csv_names_elements_or_end_buses_and_groups_rows_by_contingency(tmp_path, net):
    path = tmp_path / "c.csv"
    path.write_text(
        "contingency,element,from_bus,to_bus,circuit\n"
        "tower 7,L-101-102-1,,,\n"
        "tower 7,,103,101,1\n"  # end buses in either order
        "xfmr 103,,103,124,\n"
    )
    found = read_contingencies(path, net)
    trafo = int(net.trafo.index[net.trafo["name"] == "T-103-124-1"][0])
    assert found == {
        "tower 7": (_line(net, "L-101-102-1"), _line(net, "L-101-103-1")),
        "xfmr 103": (("trafo", trafo),),
    }


def test_psse_con_reads_single_and_multi_branch_contingencies(tmp_path, net):
    path = tmp_path / "c.con"
    path.write_text(
        "CONTINGENCY 'SINGLE_101_102'\n OPEN BRANCH FROM BUS 101 TO BUS 102 CIRCUIT 1\nEND\n"
        "CONTINGENCY DOUBLE\n OPEN BRANCH FROM BUS 101 TO BUS 102 CIRCUIT 1 / tower\n"
        " OPEN BRANCH FROM BUS 101 TO BUS 103\nEND\nEND\n"
    )
    found = read_contingencies(path, net)
    assert found["DOUBLE"] == (_line(net, "L-101-102-1"), _line(net, "L-101-103-1"))
    assert found["'SINGLE_101_102'"] == (_line(net, "L-101-102-1"),)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.csv", "contingency,element\nX,L-999-998-1\n", "names 'L-999-998-1', no line or transformer"),
        ("c.csv", "contingency,from_bus,to_bus\nX,101,999\n", "no branch 1 between buses 101 and 999"),
        ("c.csv", "contingency,element\n,L-101-102-1\n", "a contingency without a name"),
        ("c.con", "CONTINGENCY EMPTY\nEND\n", "line 2: contingency 'EMPTY' opens nothing"),
        (
            "c.con",
            "CONTINGENCY X\n OPEN BRANCH FROM BUS 101 TO BUS 102 CIRCUIT 3\nEND\n",
            "line 2: no branch 3",
        ),
        ("c.con", "CONTINGENCY X\n TRIP MACHINE 1 FROM BUS 101\nEND\n", "line 2: only OPEN BRANCH"),
        ("c.con", "", "no contingencies in the file"),
    ],
    ids=["unknown-name", "unknown-buses", "unnamed", "empty", "circuit", "unsupported", "none"],
)
def test_bad_contingencies_are_refused_in_one_line(tmp_path, net, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        read_contingencies(path, net)


@pytest.mark.slow
@pytest.mark.skipif(not CONTAB.exists(), reason="contab_ACTIVSg2000.m is in the shared data folder")
def test_matpower_contab_maps_branch_rows_to_the_nets_elements():
    from siting.sources.grid import read_matpower

    case = ROOT / "grids" / "activsg" / "case_ACTIVSg2000.m"
    net = read_matpower(case)
    found = read_contingencies(CONTAB, net, case=case)
    assert len(found) == 3190 and all(len(outages) == 1 for outages in found.values())
    # row 1 of mpc.branch is 1001–1064 circuit 1; MATPOWER bus i is index i − 1
    table, index = found["contab 1"][0]
    assert {net[table].at[index, "from_bus"], net[table].at[index, "to_bus"]} == {1000, 1063}
    with pytest.raises(UsageError, match="give that case too"):
        read_contingencies(CONTAB, net)


BANKS_BOTH = "BANKS both transformers"


@pytest.fixture(scope="module")
def rts_with_set(tmp_path_factory):
    """RTS-GMLC with a planner's set: BANKS (bus 210) losing both its 230/138 kV transformers,
    one single line, and one contingency of a line the case already has out of service."""
    from siting.sources.own import with_own_data

    grid = load_grid(RTS)
    idle = int(grid.net.line.index[grid.net.line["name"] == "L-101-102-1"][0])
    grid.net.line.at[idle, "in_service"] = False
    path = tmp_path_factory.mktemp("contingencies") / "set.csv"
    path.write_text(
        "contingency,element,from_bus,to_bus,circuit\n"
        f"{BANKS_BOTH},,210,211,1\n"
        f"{BANKS_BOTH},T-210-212-1,,,\n"
        "single 107-108,L-107-108-1,,,\n"
        "already open,L-101-102-1,,,\n"
    )
    return with_own_data(grid, contingencies=path)


def test_firm_capacity_runs_over_the_planners_set_and_names_the_contingency(rts_with_set):
    from siting.capacity import CapacitySettings, substation_capacity
    from siting.engine.reference import reference_hosting_capacity
    from siting.sources.peak import operating_point

    settings = CapacitySettings(year=False)
    study = substation_capacity(rts_with_set, settings)
    table = study.table.set_index("name")
    net = rts_with_set.net
    trafo = net.trafo.reset_index().set_index("name")["index"]
    both = (("trafo", int(trafo["T-210-211-1"])), ("trafo", int(trafo["T-210-212-1"])))
    values = operating_point(rts_with_set, None).values
    for name, bus in (("BANKS", 210), ("BALZAC", 209)):
        # every single outage leaves BANKS its 100 MW cap; the double outage leaves it 0.2 MW
        assert table.at[name, "hc_n1_mw"] == pytest.approx(
            reference_hosting_capacity(net, bus, settings, values, both), abs=1e-9
        )
        assert table.at[name, "binding_outage"] == BANKS_BOTH
    assert table.at["BANKS", "hc_n1_mw"] == pytest.approx(0.2)
    skipped = study.skipped_outages.set_index("outage")["reason"]
    assert skipped["already open"] == "opens nothing in service in the model"
    assert study.record()["contingencies"]["contingencies"] == 3
    assert study.record()["contingencies"]["multi_element"] == 1


def test_selection_checks_picks_and_the_joint_set_against_the_planners_set(rts_with_set):
    import dataclasses

    from siting.capacity import CapacitySettings, substation_capacity
    from siting.selection import SelectionSettings, select_sites

    settings = SelectionSettings(sites=9, criterion="firm")
    reasons, firm = {}, {}
    automatic = dataclasses.replace(rts_with_set, contingencies=None)
    for label, grid in (("automatic", automatic), ("own", rts_with_set)):
        capacity = substation_capacity(grid, CapacitySettings(year=False)).table
        firm[label] = capacity.set_index("name")["hc_n1_mw"]
        selection = select_sites(grid, capacity, settings)
        reasons[label] = selection.candidates.set_index("name")["reason"]
        assert selection.joint.set_index("set").at["selected", "passes"]
    # single outages leave BANKS its 100 MW; the double outage 0.2 MW, below the 5 MW minimum
    assert reasons["automatic"]["BANKS"].startswith("pick ")
    assert reasons["own"]["BANKS"] == "firm capacity 0.2 MW is below the 5 MW minimum"
    # ADLER's worst single outage (about 40 MW) is not in the planner's set
    assert firm["automatic"]["ADLER"] < 50
    assert f"firm capacity alone {firm['automatic']['ADLER']:.1f} MW" in reasons["automatic"]["ADLER"]
    assert "firm capacity alone 100.0 MW" in reasons["own"]["ADLER"]


def test_cli_capacity_takes_a_psse_con_file_and_records_it(tmp_path):
    import json

    import pandas as pd

    from siting.cli import main

    con = tmp_path / "banks.con"
    con.write_text(
        "CONTINGENCY BANKS_XF\n OPEN BRANCH FROM BUS 210 TO BUS 211 CIRCUIT 1\n"
        " OPEN BRANCH FROM BUS 210 TO BUS 212 CIRCUIT 1\nEND\nEND\n"
    )
    out = tmp_path / "out"
    argv = ["capacity", str(RTS), "--out", str(out), "--no-year", "--substations", "5"]
    assert main([*argv, "--contingencies", str(con)]) == 0
    table = pd.read_csv(out / "capacity.csv")
    assert table.loc[0, "name"] == "BANKS"
    assert table.loc[0, "hc_n1_mw"] == pytest.approx(0.2)
    assert table.loc[0, "binding_outage"] == "BANKS_XF"
    manifest = json.loads((out / "manifest.json").read_text())
    assert "banks.con" in json.dumps(manifest)
    assert '"multi_element": 1' in json.dumps(manifest)
